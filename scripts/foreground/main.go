// Command foreground runs a command as the terminal's foreground process
// group, so that Ctrl-C reaches that command and not the make (or shell)
// that started it:
//
//	foreground scripts/run.sh ARGS...
//
// It moves itself into a new process group, makes that group the
// terminal's foreground group, and executes the command in its place
// (same pid, same group). Without a controlling terminal it only executes
// the command. SIGTTOU stays ignored in the command: taking the terminal
// from a background group would otherwise stop it.
//
// `make run` needs it: GNU make, on SIGINT, waits for its recipe and then
// kills itself with the signal, so `make run` could never exit 0 on
// Ctrl-C if make received it; and make prints an error line for a recipe
// that a terminal signal ended.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: foreground COMMAND [ARG...]")
		os.Exit(2)
	}
	path, err := exec.LookPath(os.Args[1])
	if err != nil {
		fmt.Fprintf(os.Stderr, "foreground: %v\n", err)
		os.Exit(127)
	}
	if err := takeTerminal(); err != nil {
		fmt.Fprintf(os.Stderr, "foreground: %v (Ctrl-C also reaches the caller)\n", err)
	}
	err = syscall.Exec(path, os.Args[1:], os.Environ())
	fmt.Fprintf(os.Stderr, "foreground: executing %s: %v\n", path, err)
	os.Exit(126)
}

// takeTerminal makes a new process group of this process the foreground
// group of the controlling terminal, if there is one.
func takeTerminal() error {
	tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return nil // no controlling terminal: nothing to take
	}
	defer tty.Close()
	signal.Ignore(syscall.SIGTTOU)
	if err := unix.Setpgid(0, 0); err != nil {
		return fmt.Errorf("new process group: %w", err)
	}
	if err := unix.IoctlSetPointerInt(int(tty.Fd()), unix.TIOCSPGRP, unix.Getpgrp()); err != nil {
		return fmt.Errorf("taking the terminal: %w", err)
	}
	return nil
}
