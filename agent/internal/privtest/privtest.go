// Package privtest holds the helpers of the privileged test tier: tests that
// load real BPF programs into the running kernel and trigger real syscalls.
//
// A privileged test skips, saying why, only when it is not running as root.
// When it runs as root on a kernel that should support the sensor it fails
// rather than skips: a missing feature there is a bug to see, not to hide.
// WATCHPOST_REQUIRE_PRIVILEGED=1 (set by CI and the vmtests) turns the
// root skip into a failure too.
package privtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Require marks t as privileged.
func Require(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("WATCHPOST_REQUIRE_PRIVILEGED") == "1" {
		t.Fatalf("privileged test needs root, and WATCHPOST_REQUIRE_PRIVILEGED=1 forbids skipping")
	}
	t.Skip("privileged test: needs root to load BPF programs (run `sudo make test`)")
}

// InVM reports whether the test runs inside a vmtests guest, and on which
// kernel series (e.g. "5.10").
func InVM() (string, bool) {
	if os.Getenv("WATCHPOST_VMTEST") != "1" {
		return "", false
	}
	return os.Getenv("WATCHPOST_VMTEST_KERNEL"), true
}

// HelperEnv selects what the test binary does when a test re-executes it
// as a helper process. Call HelperMain from TestMain.
const HelperEnv = "WATCHPOST_TEST_HELPER"

// HelperMain turns the test binary into a helper process when HelperEnv is
// set, and never returns in that case. Modes:
//
//	exit:N   exit with status N
//	sleep    block until killed
//	spawn    read one line from stdin, then run the rest of argv after "--child"
//	         as a child process, wait for it and exit 0
func HelperMain() {
	mode := os.Getenv(HelperEnv)
	if mode == "" {
		return
	}
	os.Exit(helper(mode))
}

func helper(mode string) int {
	switch {
	case strings.HasPrefix(mode, "exit:"):
		n, err := strconv.Atoi(strings.TrimPrefix(mode, "exit:"))
		if err != nil {
			return 100
		}
		return n
	case mode == "sleep":
		for {
			time.Sleep(time.Hour)
		}
	case mode == "spawn":
		var line string
		fmt.Fscanln(os.Stdin, &line)
		args := os.Args
		for i, a := range args {
			if a == "--child" && i+1 < len(args) {
				cmd := exec.Command(args[i+1], args[i+2:]...)
				cmd.Env = append(os.Environ(), HelperEnv+"="+os.Getenv(HelperEnv+"_CHILD"))
				if err := cmd.Run(); err != nil {
					return 101
				}
				return 0
			}
		}
		return 102
	}
	return 103
}

// Self returns the canonical path of the running test binary: what the
// kernel reports as the executable of a helper process.
func Self(t testing.TB) string {
	t.Helper()
	p, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p, err = filepath.EvalSymlinks(p)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Dir returns a canonical temporary directory for the test.
func Dir(t testing.TB) string {
	t.Helper()
	d, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return d
}
