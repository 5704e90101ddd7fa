package kernel

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/watchpost/watchpost/agent/event"
	"github.com/watchpost/watchpost/agent/internal/privtest"
)

// nsInode is the inode number of a namespace file (/proc/PID/ns/TYPE).
func nsInode(t *testing.T, path string) uint32 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return uint32(st.Ino)
}

// startNetns starts a helper that moved into a new network namespace and
// keeps it alive until the test ends.
func startNetns(t *testing.T, dir string) *exec.Cmd {
	t.Helper()
	holder := helperCmd(t, "netns", dir, "-test.run=^$")
	out, err := holder.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = holder.Process.Kill()
		_ = holder.Wait()
	})
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("network namespace helper: %q %v", line, err)
	}
	return holder
}

func TestNamespaceChanges(t *testing.T) { eachArgsPath(t, testNamespaceChanges) }

func testNamespaceChanges(t *testing.T, args func(*Config)) {
	h := startSensor(t, with(kinds(event.KindNamespace), args))
	dir := privtest.Dir(t)

	// unshare -n: the helper moves into a network namespace of its own.
	holder := startNetns(t, dir)
	hpid := holder.Process.Pid
	netns := filepath.Join("/proc", strconv.Itoa(hpid), "ns", "net")
	ino := nsInode(t, netns)
	if ino == nsInode(t, "/proc/self/ns/net") {
		t.Fatal("the helper did not leave the test's network namespace")
	}
	un := h.waitFor("unshare", isKind(event.KindNamespace, hpid))
	want := &event.Namespace{Operation: "unshare", Namespaces: []string{"net"}, Flags: unix.CLONE_NEWNET, Inodes: map[string]uint32{"net": ino}}
	if diff := cmp.Diff(want, un.Namespace); diff != "" {
		t.Errorf("unshare (-want +got):\n%s", diff)
	}

	// setns into it from another process.
	joiner := helperCmd(t, "setns", dir, "-test.run=^$")
	joiner.Env = append(joiner.Env, "WATCHPOST_TEST_PATH="+netns)
	if out, err := joiner.CombinedOutput(); err != nil {
		t.Fatalf("setns helper: %v %s", err, out)
	}
	sn := h.waitFor("setns", isKind(event.KindNamespace, joiner.Process.Pid))
	want = &event.Namespace{Operation: "setns", Namespaces: []string{"net"}, Flags: unix.CLONE_NEWNET, Inodes: map[string]uint32{"net": ino}, TargetInode: ino}
	if diff := cmp.Diff(want, sn.Namespace); diff != "" {
		t.Errorf("setns (-want +got):\n%s", diff)
	}

	// A child started in new UTS and network namespaces: the clone is the
	// parent's event, its result the child's pid.
	child := helperCmd(t, "exit:0", dir, "-test.run=^$")
	child.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWUTS | unix.CLONE_NEWNET}
	if err := child.Run(); err != nil {
		t.Fatal(err)
	}
	cl := h.waitFor("clone with CLONE_NEWUTS|CLONE_NEWNET", mine(event.KindNamespace, func(ev *event.Event) bool {
		return ev.Namespace.Result == int32(child.Process.Pid)
	}))
	if op := cl.Namespace.Operation; op != "clone" && op != "clone3" {
		t.Errorf("clone operation %q", op)
	}
	if diff := cmp.Diff([]string{"uts", "net"}, cl.Namespace.Namespaces); diff != "" || cl.Namespace.Flags != unix.CLONE_NEWUTS|unix.CLONE_NEWNET {
		t.Errorf("clone namespaces (-want +got):\n%s flags %#x", diff, cl.Namespace.Flags)
	}

	// Plain forks are not namespace events.
	h.stop()
	if n := h.count(mine(event.KindNamespace, func(ev *event.Event) bool { return ev.Namespace.Flags == 0 && ev.Namespace.Operation != "setns" })); n != 0 {
		t.Errorf("%d namespace events without CLONE_NEW* flags", n)
	}
}

func TestUserfaultfdAndMemfdCreate(t *testing.T) {
	privtest.Require(t)
	h := startSensor(t, kinds(event.KindUserfaultfd, event.KindMemfdCreate))
	if tracepointExists("syscalls", "sys_enter_userfaultfd") {
		fd, _, errno := unix.Syscall(unix.SYS_USERFAULTFD, unix.O_CLOEXEC|unix.O_NONBLOCK, 0, 0)
		if errno != 0 {
			t.Fatalf("userfaultfd: %v", errno)
		}
		unix.Close(int(fd))
		uf := h.waitFor("userfaultfd", mine(event.KindUserfaultfd, func(*event.Event) bool { return true }))
		want := &event.Security{Operation: "userfaultfd", Flags: unix.O_CLOEXEC | unix.O_NONBLOCK, Result: int32(fd)}
		if diff := cmp.Diff(want, uf.Security); diff != "" {
			t.Errorf("userfaultfd (-want +got):\n%s", diff)
		}
	} else {
		t.Log("this kernel is built without userfaultfd (no syscalls:sys_enter_userfaultfd): only memfd_create is tested")
	}

	mfd, err := unix.MemfdCreate("wp-stage2", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(mfd)
	mc := h.waitFor("memfd_create", mine(event.KindMemfdCreate, func(ev *event.Event) bool { return ev.Security.Name == "wp-stage2" }))
	want := &event.Security{Operation: "memfd_create", Name: "wp-stage2", Flags: unix.MFD_CLOEXEC | unix.MFD_ALLOW_SEALING, Result: int32(mfd)}
	if diff := cmp.Diff(want, mc.Security); diff != "" {
		t.Errorf("memfd_create (-want +got):\n%s", diff)
	}
}

// TestExecOfDeletedAndMemfdFiles: the exe is named as the kernel names it
// (/proc/PID/exe), never "/".
func TestExecOfDeletedAndMemfdFiles(t *testing.T) {
	privtest.Require(t)
	h := startSensor(t, kinds(event.KindExec, event.KindMemfdExec))
	img, err := os.ReadFile(privtest.Self(t))
	if err != nil {
		t.Fatal(err)
	}
	run := func(f *os.File) *exec.Cmd {
		t.Helper()
		cmd := exec.Command("/proc/self/fd/3", "-test.run=^$")
		cmd.ExtraFiles = []*os.File{f}
		cmd.Env = append(os.Environ(), privtest.HelperEnv+"=exit:0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("exec of %s: %v %s", f.Name(), err, out)
		}
		return cmd
	}

	mfd, err := unix.MemfdCreate("payload", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := unix.Write(mfd, img); err != nil {
		t.Fatal(err)
	}
	mf := os.NewFile(uintptr(mfd), "memfd")
	defer mf.Close()
	cmd := run(mf)
	ex := h.waitFor("exec of a memfd", isKind(event.KindExec, cmd.Process.Pid))
	if want := "/memfd:payload (deleted)"; ex.Process.Exe != want {
		t.Errorf("memfd exec: exe %q, want %q", ex.Process.Exe, want)
	}
	h.waitFor("memfd_exec", isKind(event.KindMemfdExec, cmd.Process.Pid))

	path := filepath.Join(privtest.Dir(t), "dropper")
	if err := os.WriteFile(path, img, 0o700); err != nil {
		t.Fatal(err)
	}
	df, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer df.Close()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	cmd = run(df)
	ex = h.waitFor("exec of a deleted file", isKind(event.KindExec, cmd.Process.Pid))
	if want := path + " (deleted)"; ex.Process.Exe != want {
		t.Errorf("deleted exec: exe %q, want %q", ex.Process.Exe, want)
	}
}
