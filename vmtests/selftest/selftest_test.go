//go:build linux

// Package selftest is the vmtests runner's own smoke test: it proves that a guest
// booted by vmtests/run.sh can load BPF, attach a syscall tracepoint and see a real
// syscall, which is what the agent's privileged tests need from every kernel. It runs
// on the host too (as root); without root it skips.
package selftest

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("WATCHPOST_REQUIRE_PRIVILEGED") == "1" {
		t.Fatal("privileged test needs root, and WATCHPOST_REQUIRE_PRIVILEGED=1 forbids skipping")
	}
	t.Skip("privileged test: needs root (CAP_BPF, CAP_PERFMON, tracefs)")
}

// requireTracefs skips on a host where neither tracefs nor debugfs is mounted (the
// test does not mount file systems on the host); inside a guest the runner's init
// mounts both, so a missing one there is a failure.
func requireTracefs(t *testing.T) {
	t.Helper()
	for _, dir := range []string{"/sys/kernel/tracing/events", "/sys/kernel/debug/tracing/events"} {
		if _, err := os.Stat(dir); err == nil {
			return
		}
	}
	if os.Getenv("WATCHPOST_VMTEST") == "1" {
		t.Fatal("tracefs is not mounted in the guest: the runner's init must mount it on /sys/kernel/tracing")
	}
	t.Skip("tracefs is not mounted on this host (mount -t tracefs tracefs /sys/kernel/tracing)")
}

func kernelRelease(t *testing.T) string {
	t.Helper()
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatalf("uname: %v", err)
	}
	return unix.ByteSliceToString(u.Release[:])
}

// TestGuestKernel checks that the runner booted the kernel it says it booted: the
// runner passes the matrix name (for example "6.1") in WATCHPOST_VMTEST_KERNEL and the
// expected `uname -r` in WATCHPOST_VMTEST_RELEASE.
func TestGuestKernel(t *testing.T) {
	release := kernelRelease(t)
	t.Logf("kernel %s, GOARCH %s", release, runtime.GOARCH)
	if os.Getenv("WATCHPOST_VMTEST") != "1" {
		t.Skip("checks the runner's guest only (WATCHPOST_VMTEST is not 1)")
	}
	want := os.Getenv("WATCHPOST_VMTEST_RELEASE")
	if want == "" {
		t.Fatal("WATCHPOST_VMTEST_RELEASE is empty: the runner must pass the expected kernel release")
	}
	if release != want {
		t.Fatalf("uname -r = %q, runner booted %q", release, want)
	}
	name := os.Getenv("WATCHPOST_VMTEST_KERNEL")
	if name == "" {
		t.Fatal("WATCHPOST_VMTEST_KERNEL is empty: the runner must pass the matrix name")
	}
	// Matrix names that are versions ("5.10", "6.1") must prefix the release.
	if name[0] >= '0' && name[0] <= '9' && !strings.HasPrefix(release, name+".") && !strings.HasPrefix(release, name+"-") {
		t.Fatalf("matrix name %q does not match the release %q", name, release)
	}
}

func TestKernelBTF(t *testing.T) {
	requireRoot(t)
	fi, err := os.Stat("/sys/kernel/btf/vmlinux")
	if err != nil {
		t.Fatalf("kernel BTF: %v (CO-RE needs CONFIG_DEBUG_INFO_BTF)", err)
	}
	if fi.Size() < 1<<20 {
		t.Fatalf("/sys/kernel/btf/vmlinux is %d bytes, want at least 1 MiB", fi.Size())
	}
}

func TestRingBufferAvailable(t *testing.T) {
	requireRoot(t)
	if err := rlimit.RemoveMemlock(); err != nil {
		t.Fatalf("removing the memlock limit: %v", err)
	}
	if err := features.HaveMapType(ebpf.RingBuf); err != nil {
		t.Fatalf("BPF ring buffer (Linux 5.8+): %v", err)
	}
}

// TestTracepointSeesSyscall loads a program on syscalls:sys_enter_getppid that counts
// calls made by this process, makes a known number of getppid calls, and expects the
// exact count.
func TestTracepointSeesSyscall(t *testing.T) {
	requireRoot(t)
	requireTracefs(t)
	if err := rlimit.RemoveMemlock(); err != nil {
		t.Fatalf("removing the memlock limit: %v", err)
	}
	counter, err := ebpf.NewMap(&ebpf.MapSpec{
		Name:       "wp_selftest",
		Type:       ebpf.Array,
		KeySize:    4,
		ValueSize:  8,
		MaxEntries: 1,
	})
	if err != nil {
		t.Fatalf("creating the counter map: %v", err)
	}
	defer counter.Close()

	pid := os.Getpid()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:    "wp_selftest",
		Type:    ebpf.TracePoint,
		License: "GPL",
		Instructions: asm.Instructions{
			asm.FnGetCurrentPidTgid.Call(),
			asm.RSh.Imm(asm.R0, 32),
			asm.JNE.Imm(asm.R0, int32(pid), "exit"),
			asm.StoreImm(asm.RFP, -4, 0, asm.Word),
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Add.Imm(asm.R2, -4),
			asm.LoadMapPtr(asm.R1, counter.FD()),
			asm.FnMapLookupElem.Call(),
			asm.JEq.Imm(asm.R0, 0, "exit"),
			asm.Mov.Imm(asm.R1, 1),
			asm.StoreXAdd(asm.R0, asm.R1, asm.DWord),
			asm.Mov.Imm(asm.R0, 0).WithSymbol("exit"),
			asm.Return(),
		},
	})
	if err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			t.Fatalf("loading the tracepoint program: %+v", ve)
		}
		t.Fatalf("loading the tracepoint program: %v", err)
	}
	defer prog.Close()

	tp, err := link.Tracepoint("syscalls", "sys_enter_getppid", prog, nil)
	if err != nil {
		t.Fatalf("attaching syscalls:sys_enter_getppid: %v (is tracefs mounted?)", err)
	}
	defer tp.Close()

	const calls = 25
	for range calls {
		if _, _, errno := syscall.RawSyscall(syscall.SYS_GETPPID, 0, 0, 0); errno != 0 {
			t.Fatalf("getppid: %v", errno)
		}
	}
	var got uint64
	if err := counter.Lookup(uint32(0), &got); err != nil {
		t.Fatalf("reading the counter: %v", err)
	}
	if got != calls {
		t.Fatalf("tracepoint counted %d getppid calls, made %d", got, calls)
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	if code != 0 {
		fmt.Fprintln(os.Stderr, "selftest: the guest environment is not usable for the agent's privileged tests")
	}
	os.Exit(code)
}
