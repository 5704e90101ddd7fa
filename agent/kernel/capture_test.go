package kernel

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"golang.org/x/sys/unix"

	"github.com/watchpost/watchpost/agent/event"
	"github.com/watchpost/watchpost/agent/industrial"
	"github.com/watchpost/watchpost/agent/internal/privtest"
)

func kinds(k ...event.Kind) func(*Config) {
	return func(c *Config) { c.Kinds = k }
}

// with applies several configuration changes in order.
func with(ms ...func(*Config)) func(*Config) {
	return func(c *Config) {
		for _, m := range ms {
			m(c)
		}
	}
}

// eachArgsPath runs a capture test once per way syscall arguments can reach
// the sys_exit programs on this kernel: registers read at sys_exit where
// bpf_task_pt_regs exists (5.15+), and the sys_enter stash, which older
// kernels use, on every kernel.
func eachArgsPath(t *testing.T, run func(t *testing.T, args func(*Config))) {
	privtest.Require(t)
	f, err := Probe()
	if err != nil {
		t.Fatalf("probe: %v", err)
	}
	paths := []string{syscallArgsEnterStash}
	if f.TaskPtRegs {
		paths = []string{syscallArgsExitRegs, syscallArgsEnterStash}
	}
	for _, p := range paths {
		t.Run(p, func(t *testing.T) {
			run(t, func(c *Config) { c.SyscallArgs = p })
		})
	}
}

func mine(k event.Kind, match func(*event.Event) bool) func(*event.Event) bool {
	pid := uint32(os.Getpid())
	return func(ev *event.Event) bool { return ev.Kind == k && ev.Process.PID == pid && match(ev) }
}

func fileAt(k event.Kind, path string) func(*event.Event) bool {
	return mine(k, func(ev *event.Event) bool { return ev.File.Path == path })
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// ignoreVolatile compares file events without the fields a test cannot know.
var ignoreVolatile = cmpopts.IgnoreFields(event.File{}, "Dev", "Mode")

func TestOpenPathsAreCanonical(t *testing.T) { eachArgsPath(t, testOpenPathsAreCanonical) }

func testOpenPathsAreCanonical(t *testing.T, args func(*Config)) {
	h := startSensor(t, with(kinds(event.KindFileOpen), args))
	dir := privtest.Dir(t)
	sub := filepath.Join(dir, "plc", "project")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(sub, "line1.st")
	if err := os.WriteFile(target, []byte("PROGRAM main"), 0o644); err != nil {
		t.Fatal(err)
	}

	// Through a dirfd with ".." and "." in the relative name.
	dfd, err := unix.Open(filepath.Join(dir, "plc"), unix.O_DIRECTORY|unix.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dfd)
	fd, err := unix.Openat(dfd, "./project/../project/line1.st", unix.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(fd)
	ev := h.waitFor("open through a dirfd", mine(event.KindFileOpen, func(ev *event.Event) bool {
		return ev.File.Result == int32(fd) && ev.File.Path == target
	}))
	want := &event.File{Syscall: "openat", Path: target, Flags: unix.O_RDWR | unix.O_LARGEFILE, Write: true, Result: int32(fd), Inode: inode(t, target)}
	if diff := cmp.Diff(want, ev.File, ignoreVolatile); diff != "" {
		t.Errorf("open through a dirfd (-want +got):\n%s", diff)
	}

	// Through a symlink in another directory.
	link := filepath.Join(dir, "current.st")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(link, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	lfd := int32(f.Fd())
	f.Close()
	ev = h.waitFor("open through a symlink", mine(event.KindFileOpen, func(ev *event.Event) bool {
		return ev.File.Result == lfd && ev.File.Path == target && ev.File.Flags&unix.O_APPEND != 0
	}))
	if ev.File.Inode != inode(t, target) || !ev.File.Write {
		t.Errorf("open through a symlink: %+v", ev.File)
	}

	// A failed open reports the path it was asked for, and the error.
	missing := filepath.Join(sub, "missing.st")
	if _, err := os.OpenFile(missing, os.O_RDWR, 0); err == nil {
		t.Fatal("opening a missing file succeeded")
	}
	ev = h.waitFor("failed open", fileAt(event.KindFileOpen, missing))
	if ev.File.Result != -int32(unix.ENOENT) {
		t.Errorf("failed open: result %d, want -ENOENT", ev.File.Result)
	}
}

func TestFileOperationsByName(t *testing.T) { eachArgsPath(t, testFileOperationsByName) }

func testFileOperationsByName(t *testing.T, args func(*Config)) {
	h := startSensor(t, with(kinds(event.KindFileUnlink, event.KindFileRename, event.KindFileChmod, event.KindFileChown,
		event.KindFileTruncate, event.KindFileMkdir, event.KindFileRmdir, event.KindFileLink, event.KindFileSymlink), args))
	dir := privtest.Dir(t)
	a, b := filepath.Join(dir, "points.csv"), filepath.Join(dir, "points.csv.bak")
	if err := os.WriteFile(a, []byte("40001,setpoint"), 0o644); err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Rename(a, b))
	must(os.Chmod(b, 0o600))
	must(os.Chown(b, 1000, 1001))
	must(os.Truncate(b, 5))
	must(os.Link(b, a))
	must(os.Symlink("points.csv.bak", filepath.Join(dir, "latest")))
	must(os.Mkdir(filepath.Join(dir, "archive"), 0o750))
	must(os.Remove(filepath.Join(dir, "archive")))
	must(os.Remove(a))

	rn := h.waitFor("rename", fileAt(event.KindFileRename, a))
	if rn.File.NewPath != b || rn.File.Result != 0 || !rn.File.Write {
		t.Errorf("rename: %+v", rn.File)
	}
	if ch := h.waitFor("chmod", fileAt(event.KindFileChmod, b)); ch.File.Mode != 0o600 {
		t.Errorf("chmod mode %o", ch.File.Mode)
	}
	if co := h.waitFor("chown", fileAt(event.KindFileChown, b)); co.File.UID != 1000 || co.File.GID != 1001 {
		t.Errorf("chown: %+v", co.File)
	}
	if tr := h.waitFor("truncate", fileAt(event.KindFileTruncate, b)); tr.File.Size != 5 {
		t.Errorf("truncate size %d", tr.File.Size)
	}
	if ln := h.waitFor("link", fileAt(event.KindFileLink, b)); ln.File.NewPath != a {
		t.Errorf("link: %+v", ln.File)
	}
	if sl := h.waitFor("symlink", fileAt(event.KindFileSymlink, filepath.Join(dir, "latest"))); sl.File.NewPath != "points.csv.bak" {
		t.Errorf("symlink target %q", sl.File.NewPath)
	}
	if mk := h.waitFor("mkdir", fileAt(event.KindFileMkdir, filepath.Join(dir, "archive"))); mk.File.Mode != 0o750 {
		t.Errorf("mkdir mode %o", mk.File.Mode)
	}
	h.waitFor("rmdir", fileAt(event.KindFileRmdir, filepath.Join(dir, "archive")))
	if un := h.waitFor("unlink", fileAt(event.KindFileUnlink, a)); un.File.Result != 0 {
		t.Errorf("unlink: %+v", un.File)
	}
}

func TestTCPConnectAcceptCloseWithByteCounts(t *testing.T) {
	eachArgsPath(t, testTCPConnectAcceptCloseWithByteCounts)
}

func testTCPConnectAcceptCloseWithByteCounts(t *testing.T, args func(*Config)) {
	h := startSensor(t, with(kinds(event.KindNetConnect, event.KindNetAccept, event.KindNetListen, event.KindNetBind, event.KindNetClose), args))
	for attempt := 1; !tcpExchange(t, h, attempt); attempt++ {
	}
}

// tcpExchange runs one client connection against a listener and checks its
// events; false asks for another attempt (see lostToMiss).
func tcpExchange(t *testing.T, h *harness, attempt int) bool {
	missedBefore := h.missed()
	// await waits for one of the exchange's events; nil asks for another
	// attempt (see lostToMiss).
	await := func(desc string, pred func(*event.Event) bool) *event.Event {
		t.Helper()
		ev, misses := h.tryWaitFor(waitTimeout(), pred)
		if ev == nil {
			lostToMiss(t, h, desc, missedBefore, attempt, misses)
		}
		return ev
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	const up, down = 3000, 12345 // bytes written by the client, then by the server
	served := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			served <- err
			return
		}
		defer c.Close()
		if _, err := readN(c, up); err != nil {
			served <- err
			return
		}
		_, err = c.Write(make([]byte, down))
		served <- err
	}()
	client := helperCmd(t, "tcp", privtest.Dir(t), "-test.run=^$")
	client.Env = append(client.Env, "WATCHPOST_TEST_ADDR="+ln.Addr().String(), "WATCHPOST_TEST_N="+strconv.Itoa(up), "WATCHPOST_TEST_M="+strconv.Itoa(down))
	if out, err := client.CombinedOutput(); err != nil {
		t.Fatalf("client: %v %s", err, out)
	}
	if err := <-served; err != nil {
		t.Fatalf("server: %v", err)
	}
	cpid, self := uint32(client.Process.Pid), uint32(os.Getpid())

	if await("listen", func(ev *event.Event) bool {
		return ev.Kind == event.KindNetListen && ev.Process.PID == self && ev.Net.SrcPort == port
	}) == nil {
		return false
	}
	conn := await("connect", func(ev *event.Event) bool {
		return ev.Kind == event.KindNetConnect && ev.Process.PID == cpid && ev.Net.DstPort == port
	})
	if conn == nil {
		return false
	}
	cport := conn.Net.SrcPort
	wantConn := &event.Net{Syscall: "connect", Family: "inet", Protocol: "tcp", SockType: "stream", SrcAddr: "127.0.0.1",
		SrcPort: cport, DstAddr: "127.0.0.1", DstPort: port, Result: conn.Net.Result, Direction: "outbound"}
	if conn.Net.Result != 0 {
		wantConn.Errno = "EINPROGRESS"
	}
	if diff := cmp.Diff(wantConn, conn.Net); diff != "" || cport == 0 || (conn.Net.Result != 0 && conn.Net.Result != -int32(unix.EINPROGRESS)) {
		t.Errorf("connect (-want +got):\n%s (result %d)", diff, conn.Net.Result)
	}
	acc := await("accept", func(ev *event.Event) bool {
		return ev.Kind == event.KindNetAccept && ev.Process.PID == self && ev.Net.DstPort == cport
	})
	if acc == nil {
		return false
	}
	wantAcc := &event.Net{Syscall: acc.Net.Syscall, Family: "inet", Protocol: "tcp", SockType: "stream", SrcAddr: "127.0.0.1",
		SrcPort: port, DstAddr: "127.0.0.1", DstPort: cport, Result: acc.Net.Result, Direction: "inbound"}
	if diff := cmp.Diff(wantAcc, acc.Net); diff != "" || acc.Net.Result < 0 {
		t.Errorf("accept (-want +got):\n%s", diff)
	}
	cc := await("client close", func(ev *event.Event) bool {
		return ev.Kind == event.KindNetClose && ev.Process.PID == cpid && ev.Net.SrcPort == cport
	})
	if cc == nil {
		return false
	}
	if cc.Net.BytesSent != up || cc.Net.BytesRecv != down || cc.Net.DurationNS == 0 || cc.Net.Direction != "outbound" {
		t.Errorf("client close: sent %d (want %d) received %d (want %d), %+v", cc.Net.BytesSent, up, cc.Net.BytesRecv, down, cc.Net)
	}
	sc := await("server close", func(ev *event.Event) bool {
		return ev.Kind == event.KindNetClose && ev.Process.PID == self && ev.Net.DstPort == cport
	})
	if sc == nil {
		return false
	}
	if sc.Net.BytesSent != down || sc.Net.BytesRecv != up || sc.Net.Direction != "inbound" {
		t.Errorf("server close: sent %d (want %d) received %d (want %d)", sc.Net.BytesSent, down, sc.Net.BytesRecv, up)
	}
	return true
}

// lostToMiss decides on an event that did not come: when the kernel
// counted a skipped program run since the attempt began (a recursion miss
// on a preemptible kernel), the exchange is run again with a new
// connection, at most three times; otherwise the test fails.
func lostToMiss(t *testing.T, h *harness, desc string, missedBefore uint64, attempt int, misses string) {
	t.Helper()
	if missedBefore < h.missed() && attempt < 3 {
		t.Logf("attempt %d: no %s event and the kernel skipped a program run%s; again", attempt, desc, misses)
		return
	}
	t.Fatalf("no %s event within %s%s", desc, waitTimeout(), misses)
}

func readN(c net.Conn, n int) (int, error) {
	buf := make([]byte, n)
	got := 0
	for got < n {
		m, err := c.Read(buf[got:])
		got += m
		if err != nil {
			return got, err
		}
	}
	return got, nil
}

func TestUDPIsReportedAsOneFlowPerDirection(t *testing.T) {
	h := startSensor(t, kinds(event.KindNetUDPFlow))
	srv, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	port := uint16(srv.LocalAddr().(*net.UDPAddr).Port)
	const polls = 200
	go func() {
		buf := make([]byte, 64)
		for i := 0; i < polls; i++ {
			n, from, err := srv.ReadFromUDP(buf)
			if err != nil {
				return
			}
			_, _ = srv.WriteToUDP(buf[:n], from)
		}
	}()
	client := helperCmd(t, "udp", privtest.Dir(t), "-test.run=^$")
	client.Env = append(client.Env, "WATCHPOST_TEST_ADDR="+srv.LocalAddr().String(), "WATCHPOST_TEST_N="+strconv.Itoa(polls))
	if out, err := client.CombinedOutput(); err != nil {
		t.Fatalf("client: %v %s", err, out)
	}
	cpid, self := uint32(client.Process.Pid), uint32(os.Getpid())
	out := h.waitFor("client flow out", func(ev *event.Event) bool {
		return ev.Kind == event.KindNetUDPFlow && ev.Process.PID == cpid && ev.Net.Direction == "outbound"
	})
	if out.Net.DstAddr != "127.0.0.1" || out.Net.DstPort != port || out.Net.Protocol != "udp" {
		t.Errorf("client outbound flow: %+v", out.Net)
	}
	in := h.waitFor("server flow in", func(ev *event.Event) bool {
		return ev.Kind == event.KindNetUDPFlow && ev.Process.PID == self && ev.Net.Direction == "inbound"
	})
	if in.Net.SrcPort != port || in.Net.DstAddr != "127.0.0.1" || in.Net.DstPort != out.Net.SrcPort {
		t.Errorf("server inbound flow: %+v (client port %d)", in.Net, out.Net.SrcPort)
	}
	h.waitFor("client flow in", func(ev *event.Event) bool {
		return ev.Kind == event.KindNetUDPFlow && ev.Process.PID == cpid && ev.Net.Direction == "inbound"
	})
	h.waitFor("server flow out", func(ev *event.Event) bool {
		return ev.Kind == event.KindNetUDPFlow && ev.Process.PID == self && ev.Net.Direction == "outbound"
	})
	h.stop()
	for _, c := range []struct {
		pid uint32
		dir string
	}{{cpid, "outbound"}, {cpid, "inbound"}, {self, "outbound"}, {self, "inbound"}} {
		n := h.count(func(ev *event.Event) bool {
			return ev.Kind == event.KindNetUDPFlow && ev.Process.PID == c.pid && ev.Net.Direction == c.dir
		})
		if n != 1 {
			t.Errorf("pid %d %s: %d flow events for %d datagrams, want 1", c.pid, c.dir, n, polls)
		}
	}
}

func TestModbusConnectionIsTagged(t *testing.T) {
	h := startSensor(t, kinds(event.KindNetConnect))
	// Whether something listens on 502 or not, the attempt is the event.
	if c, err := net.Dial("tcp", "127.0.0.1:502"); err == nil {
		c.Close()
	}
	ev := h.waitFor("connect to 502", mine(event.KindNetConnect, func(ev *event.Event) bool { return ev.Net.DstPort == 502 }))
	cl, err := industrial.New(industrial.DefaultProtocols(), industrial.DefaultSerial())
	if err != nil {
		t.Fatal(err)
	}
	cl.Apply(ev)
	if ev.Industrial == nil || ev.Industrial.Protocol != "modbus" || ev.Net.DstAddr != "127.0.0.1" {
		t.Errorf("connect to 127.0.0.1:502: %+v %+v", ev.Net, ev.Industrial)
	}
}

func TestSerialDeviceOpenIsTaggedFieldbus(t *testing.T) {
	h := startSensor(t, kinds(event.KindFileOpen))
	dev := filepath.Join(privtest.Dir(t), "rs485-0")
	if err := unix.Mknod(dev, unix.S_IFCHR|0o600, int(unix.Mkdev(188, 0))); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Open(dev, unix.O_RDWR|unix.O_NOCTTY|unix.O_NONBLOCK, 0)
	if err == nil {
		unix.Close(fd)
	}
	ev := h.waitFor("open of the device", fileAt(event.KindFileOpen, dev))
	cl, _ := industrial.New(industrial.DefaultProtocols(), industrial.DefaultSerial())
	cl.Apply(ev)
	want := &event.Industrial{Fieldbus: "ttyUSB", Device: dev}
	if diff := cmp.Diff(want, ev.Industrial); diff != "" {
		t.Errorf("fieldbus tag (-want +got):\n%s (file %+v)", diff, ev.File)
	}
	if ev.File.RDev != "188:0" || ev.File.DevKind != "char" {
		t.Errorf("device numbers: %+v", ev.File)
	}
}

func TestSecurityEvents(t *testing.T) { eachArgsPath(t, testSecurityEvents) }

func testSecurityEvents(t *testing.T, args func(*Config)) {
	h := startSensor(t, with(kinds(event.KindCredChange, event.KindPtrace, event.KindNetSocket,
		event.KindSignal, event.KindMount, event.KindUmount, event.KindClockChange, event.KindMemfdExec, event.KindExec), args))
	self := uint32(os.Getpid())
	dir := privtest.Dir(t)

	// setuid in a helper process.
	su := helperCmd(t, "setuid", dir, "-test.run=^$")
	su.Env = append(su.Env, "WATCHPOST_TEST_N=65534")
	if out, err := su.CombinedOutput(); err != nil {
		t.Fatalf("setuid helper: %v %s", err, out)
	}
	cred := h.waitFor("setuid", func(ev *event.Event) bool {
		return ev.Kind == event.KindCredChange && ev.Process.PID == uint32(su.Process.Pid) && ev.Security.Operation == "setuid"
	})
	if cred.Security.NewID == nil || *cred.Security.NewID != 65534 || cred.Security.Result != 0 || cred.Process.EUID != 65534 {
		t.Errorf("setuid: %+v euid %d", cred.Security, cred.Process.EUID)
	}

	// A failed setresuid(0, -1, 0) from an unprivileged process: nothing
	// changed, and the ids it asked for are reported.
	deny := privtest.AsUser(t, privtest.Nobody, privtest.SelfCopy(t, "wp-setresuid"), "-test.run=^$")
	deny.Env = append(deny.Env, privtest.HelperEnv+"_CHILD=setresuid")
	if out, err := deny.CombinedOutput(); err != nil {
		t.Fatalf("setresuid helper as nobody: %v %s", err, out)
	}
	failed := h.waitFor("failed setresuid", func(ev *event.Event) bool {
		return ev.Kind == event.KindCredChange && ev.Process.PID == uint32(deny.Process.Pid) && ev.Security.Operation == "setresuid"
	})
	nobody := int64(privtest.Nobody)
	wantCred := &event.Security{Operation: "setresuid", Result: -int32(unix.EPERM), Errno: "EPERM",
		OldID: &nobody, NewID: &nobody, Requested: []int64{0, -1, 0}}
	if diff := cmp.Diff(wantCred, failed.Security); diff != "" || failed.Process.EUID != privtest.Nobody || failed.Process.UID != privtest.Nobody {
		t.Errorf("failed setresuid (-want +got):\n%s (uid %d euid %d)", diff, failed.Process.UID, failed.Process.EUID)
	}

	// ptrace attach to a sleeping helper, and a signal to it.
	victim := helperCmd(t, "sleep", dir, "-test.run=^$")
	if err := victim.Start(); err != nil {
		t.Fatal(err)
	}
	vpid := victim.Process.Pid
	ptraceAttachDetach(t, vpid)
	pt := h.waitFor("ptrace", mine(event.KindPtrace, func(ev *event.Event) bool { return ev.Security.TargetPID == uint32(vpid) }))
	if pt.Security.Name != "PTRACE_ATTACH" || pt.Security.Result != 0 {
		t.Errorf("ptrace: %+v", pt.Security)
	}
	// The attach's SIGSTOP left the helper's other threads group-stopped.
	if err := unix.Kill(vpid, unix.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if err := victim.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	_ = victim.Wait()
	sig := h.waitFor("signal", mine(event.KindSignal, func(ev *event.Event) bool {
		return ev.Security.TargetPID == uint32(vpid) && ev.Security.Signal == int(syscall.SIGTERM)
	}))
	// os.Process.Signal uses a pidfd where the kernel has them.
	if op := sig.Security.Operation; op != "kill" && op != "pidfd_send_signal" {
		t.Errorf("signal: %+v", sig.Security)
	}
	cont := h.waitFor("SIGCONT", mine(event.KindSignal, func(ev *event.Event) bool {
		return ev.Security.TargetPID == uint32(vpid) && ev.Security.Signal == int(syscall.SIGCONT)
	}))
	if cont.Security.Operation != "kill" || cont.Security.Result != 0 {
		t.Errorf("kill(SIGCONT): %+v", cont.Security)
	}

	// A packet socket (sniffing) and a raw IP socket.
	ps, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ALL)))
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(ps)
	pkt := h.waitFor("packet socket", mine(event.KindNetSocket, func(ev *event.Event) bool { return ev.Net.Family == "packet" }))
	cl, _ := industrial.New(industrial.DefaultProtocols(), industrial.DefaultSerial())
	cl.Apply(pkt)
	if pkt.Net.Result != int32(ps) || pkt.Industrial == nil || !pkt.Industrial.Sniffing || pkt.Net.SockType != "raw" {
		t.Errorf("packet socket: %+v %+v", pkt.Net, pkt.Industrial)
	}

	// A mount and its unmount.
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("wp-test", mnt, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	if err := unix.Unmount(mnt, 0); err != nil {
		t.Fatal(err)
	}
	mo := h.waitFor("mount", mine(event.KindMount, func(ev *event.Event) bool { return ev.Security.Path == mnt }))
	if mo.Security.Name != "wp-test" || mo.Security.FSType != "tmpfs" || mo.Security.Result != 0 {
		t.Errorf("mount: %+v", mo.Security)
	}
	h.waitFor("umount", mine(event.KindUmount, func(ev *event.Event) bool { return ev.Security.Path == mnt }))

	// A clock adjustment that changes nothing: set the tick to its value.
	var tx unix.Timex
	if _, err := unix.Adjtimex(&tx); err != nil {
		t.Fatal(err)
	}
	tx = unix.Timex{Modes: unix.ADJ_TICK, Tick: tx.Tick}
	if _, err := unix.Adjtimex(&tx); err != nil {
		t.Fatal(err)
	}
	ck := h.waitFor("clock change", mine(event.KindClockChange, func(*event.Event) bool { return true }))
	if ck.Security.Operation != "adjtimex" {
		t.Errorf("clock change: %+v", ck.Security)
	}

	// Fileless execution: this test binary copied into a memfd and run.
	mfd, err := unix.MemfdCreate("wp-fileless", 0)
	if err != nil {
		t.Fatal(err)
	}
	img, err := os.ReadFile(privtest.Self(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := unix.Write(mfd, img); err != nil {
		t.Fatal(err)
	}
	fileless := exec.Command("/proc/self/fd/3", "-test.run=^$")
	fileless.ExtraFiles = []*os.File{os.NewFile(uintptr(mfd), "memfd")}
	fileless.Env = append(os.Environ(), privtest.HelperEnv+"=exit:0")
	if out, err := fileless.CombinedOutput(); err != nil {
		t.Fatalf("memfd exec: %v %s", err, out)
	}
	unix.Close(mfd)
	me := h.waitFor("memfd exec", func(ev *event.Event) bool {
		return ev.Kind == event.KindMemfdExec && ev.Process.PID == uint32(fileless.Process.Pid)
	})
	if me.Security.Name != "wp-fileless" || me.Security.Path != "/memfd:wp-fileless" {
		t.Errorf("memfd exec: %+v", me.Security)
	}
	_ = self
}

// TestModuleLoadAttempt: a module-load attempt with a file that is not a
// module is refused by the kernel and reported with its path and error.
func TestModuleLoadAttempt(t *testing.T) {
	privtest.Require(t)
	if _, err := os.Stat("/proc/modules"); err != nil {
		// CONFIG_MODULES=n: the kernel has no module syscalls at all, so
		// no module can ever be loaded on this host.
		t.Skip("this kernel is built without loadable module support (no /proc/modules): module loading cannot happen here")
	}
	h := startSensor(t, kinds(event.KindModuleLoad))
	dir := privtest.Dir(t)
	notModule := filepath.Join(dir, "evil.ko")
	if err := os.WriteFile(notModule, []byte("not an ELF module"), 0o600); err != nil {
		t.Fatal(err)
	}
	mf, err := os.Open(notModule)
	if err != nil {
		t.Fatal(err)
	}
	modErr := unix.FinitModule(int(mf.Fd()), "debug=1", 0)
	mf.Close()
	if modErr == nil {
		t.Fatal("a text file was accepted as a kernel module")
	}
	mod := h.waitFor("module load", mine(event.KindModuleLoad, func(ev *event.Event) bool { return ev.Security.Path == notModule }))
	if mod.Security.Operation != "finit_module" || mod.Security.Result >= 0 || mod.Security.Params != "debug=1" {
		t.Errorf("module load: %+v", mod.Security)
	}

}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// ptraceAttachDetach attaches to pid and detaches again; ptrace binds the
// tracer to one OS thread.
func ptraceAttachDetach(t *testing.T, pid int) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := unix.PtraceAttach(pid); err != nil {
			done <- err
			return
		}
		var ws unix.WaitStatus
		if _, err := unix.Wait4(pid, &ws, unix.WALL, nil); err != nil {
			done <- err
			return
		}
		done <- unix.PtraceDetach(pid)
	}()
	if err := <-done; err != nil {
		t.Fatalf("ptrace: %v", err)
	}
}

func TestExcludedPathPrefixIsFilteredAndCounted(t *testing.T) {
	dir := privtest.Dir(t)
	quiet := filepath.Join(dir, "historian") + "/"
	h := startSensor(t, func(c *Config) {
		c.Kinds = []event.Kind{event.KindFileOpen}
		c.Filters.ExcludePaths = []string{quiet}
	})
	if err := os.Mkdir(quiet, 0o755); err != nil {
		t.Fatal(err)
	}
	const n = 50
	for i := 0; i < n; i++ {
		if err := os.WriteFile(quiet+"sample-"+strconv.Itoa(i), []byte("1"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	loud := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(loud, []byte("a: 1"), 0o644); err != nil {
		t.Fatal(err)
	}
	h.waitFor("open outside the excluded prefix", fileAt(event.KindFileOpen, loud))
	h.stop()
	if n := h.count(mine(event.KindFileOpen, func(ev *event.Event) bool { return strings.HasPrefix(ev.File.Path, quiet) })); n != 0 {
		t.Errorf("%d events under the excluded prefix", n)
	}
	st, err := h.sensor.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if f := st.Kinds[event.KindFileOpen].Filtered; f < n {
		t.Errorf("filtered counter %d, want at least %d", f, n)
	}
}

// TestRateLimitCapsAFloodButNeverExec floods file events from one process
// against a tight bucket, while processes exec: the flood is capped and
// counted, every exec is delivered, and produced = delivered + counted.
func TestRateLimitCapsAFloodButNeverExec(t *testing.T) {
	const rate, burst = 50, 100
	h := startSensor(t, func(c *Config) {
		c.Kinds = []event.Kind{event.KindFileOpen, event.KindExec}
		c.Filters.RatePerSec, c.Filters.RateBurst = rate, burst
	})
	dir := privtest.Dir(t)
	const flood, execs = 5000, 50
	for i := 0; i < flood; i++ {
		f, err := os.Create(filepath.Join(dir, "f"))
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	runFlood(t, execs, "/bin/true")
	h.stop()
	st, err := h.sensor.Stats()
	if err != nil {
		t.Fatal(err)
	}
	opens := st.Kinds[event.KindFileOpen]
	delivered := uint64(h.count(func(ev *event.Event) bool { return ev.Kind == event.KindFileOpen }))
	mineDelivered := h.count(mine(event.KindFileOpen, func(*event.Event) bool { return true }))
	t.Logf("file_open: produced %d delivered %d (this process %d) rate_limited %d filtered %d ring_full %d", opens.Produced, delivered, mineDelivered, opens.RateLimited, opens.Filtered, opens.RingFull)
	if opens.RateLimited < flood/2 {
		t.Errorf("rate_limited %d: the bucket did not cap a flood of %d", opens.RateLimited, flood)
	}
	if mineDelivered > flood/4 {
		t.Errorf("%d of %d flooded opens delivered with a %d/s bucket", mineDelivered, flood, rate)
	}
	if got := delivered + opens.RateLimited + opens.Filtered + opens.RingFull + opens.QueueFull; got != opens.Produced {
		t.Errorf("file_open: delivered+counted %d != produced %d", got, opens.Produced)
	}
	// Exec events are never rate limited, and every one is accounted for:
	// delivered + counted = produced, and the flood's execs were all
	// produced or, on preemptible kernels, counted as skipped runs.
	ex := st.Kinds[event.KindExec]
	execsDelivered := uint64(h.count(func(ev *event.Event) bool { return ev.Kind == event.KindExec }))
	t.Logf("exec: produced %d delivered %d missed %d ring_full %d queue_full %d filtered %d", ex.Produced, execsDelivered, ex.Missed, ex.RingFull, ex.QueueFull, ex.Filtered)
	if ex.RateLimited != 0 {
		t.Errorf("%d exec events were rate limited", ex.RateLimited)
	}
	if got := execsDelivered + ex.RingFull + ex.QueueFull + ex.Filtered; got != ex.Produced {
		t.Errorf("exec: delivered+counted %d != produced %d", got, ex.Produced)
	}
	if ex.Produced+ex.Missed < execs {
		t.Errorf("exec: produced %d + missed %d < %d execs started", ex.Produced, ex.Missed, execs)
	}
	trueExe, err := filepath.EvalSymlinks("/bin/true") // busybox in the vmtests guests
	if err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	for _, ev := range h.events {
		if ev.Kind == event.KindExec && len(ev.Process.Args) > 0 && ev.Process.Args[0] == "/bin/true" && ev.Process.Exe != trueExe {
			t.Logf("exec of /bin/true reported with exe %q (pid %d)", ev.Process.Exe, ev.Process.PID)
		}
	}
	h.mu.Unlock()
}

// TestUserRateLimitCapsAForkLoop is the fork-loop attack on the
// per-process bucket: an unprivileged user starts a new process for every
// few hundred failed opens, so that no process ever empties its own
// bucket. The per-user bucket caps the user as a whole, while root's
// opens (another user, another bucket) are all delivered, and every
// event is accounted for.
func TestUserRateLimitCapsAForkLoop(t *testing.T) {
	const children, perChild = 40, 300 // 12,000 opens, each process far below its burst
	const userRate, userBurst = 200, 1000
	h := startSensor(t, func(c *Config) {
		c.Kinds = []event.Kind{event.KindFileOpen}
		c.Filters.RatePerSec, c.Filters.RateBurst = 2000, 4000
		c.Filters.UserRatePerSec, c.Filters.UserRateBurst = userRate, userBurst
	})
	start := time.Now()
	flood := privtest.AsUser(t, privtest.Nobody, "/bin/sh", "-c", privtest.FailedOpenLoop(children, perChild))
	if out, err := flood.CombinedOutput(); err != nil {
		t.Fatalf("flood as uid %d: %v %s", privtest.Nobody, err, out)
	}
	elapsed := time.Since(start)
	// Root's opens, from a process of another user: all delivered.
	dir := privtest.Dir(t)
	const rootOpens = 100
	root := exec.Command("/bin/sh", "-c", fmt.Sprintf(`i=0; while [ $i -lt %d ]; do : >%s/r$i; i=$((i+1)); done`, rootOpens, dir))
	if out, err := root.CombinedOutput(); err != nil {
		t.Fatalf("root writes: %v %s", err, out)
	}
	h.waitFor("root's last write", func(ev *event.Event) bool {
		return ev.Kind == event.KindFileOpen && ev.File.Path == fmt.Sprintf("%s/r%d", dir, rootOpens-1)
	})
	h.stop()
	st, err := h.sensor.Stats()
	if err != nil {
		t.Fatal(err)
	}
	opens := st.Kinds[event.KindFileOpen]
	floodDelivered := h.count(func(ev *event.Event) bool {
		return ev.Kind == event.KindFileOpen && ev.Process.UID == privtest.Nobody && strings.HasPrefix(ev.File.Path, "/nonexistent-wp-flood/")
	})
	// The user's other opens (its shells' 2>/dev/null) share the bucket.
	userDelivered := h.count(func(ev *event.Event) bool {
		return ev.Kind == event.KindFileOpen && ev.Process.UID == privtest.Nobody
	})
	rootDelivered := h.count(func(ev *event.Event) bool {
		return ev.Kind == event.KindFileOpen && ev.Process.UID == 0 && strings.HasPrefix(ev.File.Path, dir+"/r")
	})
	delivered := uint64(h.count(func(ev *event.Event) bool { return ev.Kind == event.KindFileOpen }))
	t.Logf("flood of %d opens in %s: delivered %d, rate_limited %d; root %d of %d", children*perChild, elapsed, floodDelivered, opens.RateLimited, rootDelivered, rootOpens)
	if rootDelivered != rootOpens {
		t.Errorf("root's opens: %d delivered, want %d", rootDelivered, rootOpens)
	}
	// The user's bucket lets through its burst plus the refill while the
	// flood ran, nothing more (one extra second of refill for the wait).
	if most := userBurst + int(float64(userRate)*(elapsed.Seconds()+1)); floodDelivered > most {
		t.Errorf("flood delivered %d opens, the user bucket allows at most %d", floodDelivered, most)
	}
	if userDelivered < userBurst {
		t.Errorf("the user's opens: %d delivered (%d of the flood), fewer than the user bucket's burst %d", userDelivered, floodDelivered, userBurst)
	}
	if got := delivered + opens.RateLimited + opens.Filtered + opens.RingFull + opens.QueueFull; got != opens.Produced {
		t.Errorf("file_open: delivered+counted %d != produced %d", got, opens.Produced)
	}
	if opens.RateLimited < uint64(children*perChild-floodDelivered) {
		t.Errorf("rate_limited %d, want at least the %d flood opens not delivered", opens.RateLimited, children*perChild-floodDelivered)
	}
}

// TestLongArgvKeepsHeadAndTail pads argv[0] past the kernel's argument
// buffer: the exec event keeps the start of argv[0] and the real command
// line at the end, and says it was cut.
func TestLongArgvKeepsHeadAndTail(t *testing.T) {
	h := startSensor(t, kinds(event.KindExec))
	pad := strings.Repeat("A", 5000)
	cmd := helperCmd(t, "exit:0", privtest.Dir(t), "-c", "exit 0", "--secret-flag", "payload.bin")
	cmd.Args[0] = pad // argv[0] as the attacker sets it (the test binary ignores it; busybox would not)
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	ev := h.waitFor("exec of the padded argv", isKind(event.KindExec, cmd.Process.Pid))
	args := ev.Process.Args
	if !ev.Exec.ArgsTruncated || ev.Exec.Argc != 5 {
		t.Fatalf("exec: args_truncated %v argc %d, want true and 5", ev.Exec.ArgsTruncated, ev.Exec.Argc)
	}
	// The first 2048 bytes of the area, the cut, and its last 2047 bytes:
	// the end of argv[0] and the whole real command line with its NUL.
	tail := "\x00-c\x00exit 0\x00--secret-flag\x00payload.bin\x00"
	a0 := strings.Repeat("A", 2048) + "…" + strings.Repeat("A", 2047-len(tail))
	want := []string{a0, "-c", "exit 0", "--secret-flag", "payload.bin"}
	if !slices.Equal(args, want) {
		t.Fatalf("argv %.60q (%d entries, argv[0] %d bytes), want %d entries ending %q", args, len(args), len(args[0]), len(want), want[1:])
	}
}

// TestDeepExePathKeepsTheTail execs a binary 80 directories deep (past the
// kernel walk's component bound): the exe keeps its last components, the
// ones that name the program, and says it was cut.
func TestDeepExePathKeepsTheTail(t *testing.T) {
	h := startSensor(t, kinds(event.KindExec))
	p := privtest.Dir(t)
	for i := 0; i < 80; i++ {
		p = filepath.Join(p, fmt.Sprintf("d%02d", i))
	}
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
	exe := privtest.CopyExe(t, privtest.Self(t), p, "deep-poller")
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), privtest.HelperEnv+"=exit:0")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	ev := h.waitFor("exec 80 directories deep", isKind(event.KindExec, cmd.Process.Pid))
	got := ev.Process.Exe
	if !ev.Exec.ExeTruncated || !strings.HasSuffix(exe, got) || !strings.HasSuffix(got, "/d78/d79/deep-poller") || len(got) < 200 {
		t.Errorf("exe %q (truncated %v), want a tail of %q flagged truncated", got, ev.Exec.ExeTruncated, exe)
	}
}
