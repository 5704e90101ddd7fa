package vmtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// VM is one guest boot.
type VM struct {
	Kernel    string // vmlinux ELF (PVH entry) or bzImage
	Initramfs string
	MemoryMB  int
	Timeout   time.Duration
	Append    string // extra kernel command line
	Name      string // matrix name, passed to the guest
	Release   string // expected uname -r, passed to the guest
	// Dir receives console.log (ttyS0), output.log (ttyS1) and rc (ttyS2).
	Dir string
}

// Outcome is what came back from a guest.
type Outcome struct {
	Output   []byte // ttyS1: the tests' output
	Console  []byte // ttyS0: kernel log and init messages
	ExitCode int    // the guest's status, -1 when none came back
	TimedOut bool
	QemuErr  error
	Duration time.Duration
}

// BaseCmdline is the kernel command line every guest gets: panic=-1 oops=panic with
// qemu's -no-reboot turns a panic or oops into a prompt qemu exit.
const BaseCmdline = "console=ttyS0 panic=-1 oops=panic"

func (v *VM) args() []string {
	cmdline := fmt.Sprintf("%s wp.kernel=%s wp.release=%s", BaseCmdline, v.Name, v.Release)
	if v.Append != "" {
		cmdline += " " + v.Append
	}
	return []string{
		"-accel", "tcg", "-cpu", "max", "-smp", "1", "-m", strconv.Itoa(v.MemoryMB),
		"-nodefaults", "-no-reboot", "-display", "none", "-monitor", "none",
		"-kernel", v.Kernel, "-initrd", v.Initramfs, "-append", cmdline,
		"-serial", "file:" + filepath.Join(v.Dir, "console.log"),
		"-serial", "file:" + filepath.Join(v.Dir, "output.log"),
		"-serial", "file:" + filepath.Join(v.Dir, "rc"),
	}
}

// Run boots the guest under timeout(1), so qemu cannot outlive its budget even if
// this process dies, and collects what the serial ports received.
func (v *VM) Run(ctx context.Context) Outcome {
	for _, f := range []string{"console.log", "output.log", "rc"} {
		os.Remove(filepath.Join(v.Dir, f))
	}
	secs := strconv.Itoa(int(v.Timeout.Seconds()))
	argv := append([]string{"--kill-after=10", secs, "qemu-system-x86_64"}, v.args()...)
	cmd := exec.CommandContext(ctx, "timeout", argv...)
	cmd.Stdin = nil
	var stderr strings.Builder
	cmd.Stdout = &stderr
	cmd.Stderr = &stderr
	// If the runner dies, timeout(1) gets SIGTERM and passes it on to qemu.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 20 * time.Second
	start := time.Now()
	err := cmd.Run()
	o := Outcome{ExitCode: -1, Duration: time.Since(start)}
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 124 {
			o.TimedOut = true
		} else {
			o.QemuErr = fmt.Errorf("qemu: %w: %s", err, strings.TrimSpace(stderr.String()))
		}
	}
	o.Output, _ = os.ReadFile(filepath.Join(v.Dir, "output.log"))
	o.Console, _ = os.ReadFile(filepath.Join(v.Dir, "console.log"))
	if rc, err := os.ReadFile(filepath.Join(v.Dir, "rc")); err == nil {
		o.ExitCode = parseRC(rc)
	}
	return o
}

// parseRC reads the guest's "rc=N" line; -1 if there is none.
func parseRC(b []byte) int {
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if v, ok := strings.CutPrefix(line, "rc="); ok {
			if n, err := strconv.Atoi(v); err == nil {
				return n
			}
		}
	}
	return -1
}
