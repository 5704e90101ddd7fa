// Command helper is the entrypoint of the image the container attribution
// test builds: it execs itself, then writes a file, so the test sees an
// exec and a file event from inside the container.
//
//	helper exec-open PATH   exec "helper open PATH"
//	helper open PATH        create PATH, write to it, stay 2 s, exit 0
package main

import (
	"fmt"
	"os"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: helper exec-open|open PATH")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "exec-open":
		self, err := os.Executable()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		err = syscall.Exec(self, []string{self, "open", os.Args[2]}, os.Environ())
		fmt.Fprintln(os.Stderr, "exec:", err)
		os.Exit(1)
	case "open":
		if err := os.WriteFile(os.Args[2], []byte("watchpost\n"), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		// Alive while the agent reads the process's cgroup.
		time.Sleep(2 * time.Second)
	default:
		os.Exit(2)
	}
}
