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
	"os"
	"testing"
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
