package kernel

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/watchpost/watchpost/agent/event"
	"github.com/watchpost/watchpost/agent/internal/privtest"
)

// respondHarness is a sensor with a responder attached at a test cgroup.
type respondHarness struct {
	*harness
	r  *Responder
	cg string
}

// startResponder attaches a responder at a test cgroup (with children
// cgroups); a hook this kernel cannot load for lack of a helper is noted
// for need, any other load failure fails the test.
func startResponder(t *testing.T, children ...string) *respondHarness {
	t.Helper()
	h := startSensor(t, nil)
	cg := privtest.Cgroup(t, children...)
	r, err := h.sensor.NewResponder(cg)
	if err != nil {
		t.Fatalf("attaching the responder: %v", err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("closing the responder: %v", err)
		}
	})
	for _, st := range r.Hooks() {
		if !st.Attached && !strings.Contains(st.Error, "unknown func") {
			t.Fatalf("hook %s not attached: %s", st.Hook, st.Error)
		}
	}
	return &respondHarness{harness: h, r: r, cg: cg}
}

// need skips a test whose hooks this kernel's program types cannot run
// (the verifier knows no such helper there, e.g. cgroup/dev programs on
// 5.10 cannot read the caller's pid), and clears the rules after it.
func (h *respondHarness) need(t *testing.T, hooks ...Hook) {
	t.Helper()
	states := h.r.Hooks()
	for _, hk := range hooks {
		if st := states[hk]; !st.Attached {
			t.Skipf("hook %s cannot load on this kernel, which lacks a helper for its program type: %s", st.Hook, st.Error)
		}
	}
	t.Cleanup(func() {
		if err := h.r.Apply(RuleSet{}); err != nil {
			t.Errorf("clearing the rules: %v", err)
		}
	})
}

// TestRespond runs the response hooks' tests against one sensor and
// responder (loading them is most of a test's time under emulation); the
// kill switch test detaches it, so it runs last.
func TestRespond(t *testing.T) {
	h := startResponder(t, "fieldbus-gw.service", "hmi.service")
	t.Run("KillAtExec", func(t *testing.T) { respondKillAtExec(t, h) })
	t.Run("ConnectAllowlist", func(t *testing.T) { respondConnectAllowlist(t, h) })
	t.Run("RawAndPacketSockets", func(t *testing.T) { respondRawAndPacketSockets(t, h) })
	t.Run("DeviceForUnit", func(t *testing.T) { respondDeviceForUnit(t, h) })
	t.Run("DetachLiftsEveryEffect", func(t *testing.T) { respondDetachLiftsEveryEffect(t, h) })
}

func (h *respondHarness) apply(t *testing.T, set RuleSet) {
	t.Helper()
	if err := h.r.Apply(set); err != nil {
		t.Fatalf("applying rules: %v", err)
	}
}

func respOf(k event.Kind, pid int) func(*event.Event) bool {
	return func(ev *event.Event) bool {
		return ev.Kind == k && ev.Process.PID == uint32(pid) && ev.Response != nil
	}
}

func respondKillAtExec(t *testing.T, h *respondHarness) {
	h.need(t, HookExec)
	dir := privtest.Dir(t)
	touch, err := exec.LookPath("touch")
	if err != nil {
		t.Skip("no touch(1) to copy")
	}
	denied := privtest.CopyExe(t, touch, dir, "denied-touch")
	for _, enforce := range []bool{false, true} {
		name := map[bool]string{false: "monitor", true: "enforce"}[enforce]
		t.Run(name, func(t *testing.T) {
			h.apply(t, RuleSet{
				Policies: []PolicyRef{{ID: "no-" + name, Action: "kill_exec"}},
				Rules:    [hookCount][]Rule{HookExec: {{Policy: 0, Enforce: enforce, Exe: true}}},
				Exes:     map[string]Masks{denied: {Sel: 1}},
			})
			marker := filepath.Join(dir, "marker-"+name)
			cmd := exec.Command(denied, marker)
			cmd.Args[0] = "touch" // a multi-call binary (busybox) picks its applet by argv[0]; the policy matches the inode
			err := cmd.Run()
			_, statErr := os.Stat(marker)
			if enforce {
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
					t.Fatalf("denied binary: want killed by SIGKILL, got %v", err)
				}
				if statErr == nil {
					t.Fatalf("the killed binary created its marker: it ran")
				}
			} else if err != nil || statErr != nil {
				t.Fatalf("monitor mode: the binary must run (%v) and create its marker (%v)", err, statErr)
			}
			ev := h.waitFor("response_exec", respOf(event.KindResponseExec, cmd.Process.Pid))
			want := event.Response{Policy: "no-" + name, Action: "kill_exec", Mode: name, Outcome: "would_kill", Exe: denied}
			if enforce {
				want.Outcome = "killed"
			}
			if diff := cmp.Diff(want, *ev.Response); diff != "" {
				t.Errorf("response (-want +got):\n%s", diff)
			}
		})
	}
	// An exe that is not named runs.
	other := privtest.CopyExe(t, touch, dir, "other-touch")
	cmd := exec.Command(other, filepath.Join(dir, "other"))
	cmd.Args[0] = "touch"
	if err := cmd.Run(); err != nil {
		t.Fatalf("an executable no policy names: %v", err)
	}
}

func respondConnectAllowlist(t *testing.T, h *respondHarness) {
	h.need(t, HookConnect)
	dir := privtest.Dir(t)
	allowed := privtest.CopyExe(t, privtest.Self(t), dir, "poller")
	other := privtest.CopyExe(t, privtest.Self(t), dir, "intruder")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	addr := "WATCHPOST_TEST_ADDR=" + ln.Addr().String()
	for _, enforce := range []bool{false, true} {
		name := map[bool]string{false: "monitor", true: "enforce"}[enforce]
		t.Run(name, func(t *testing.T) {
			h.apply(t, RuleSet{
				Policies: []PolicyRef{{ID: "plc-" + name, Action: "deny_connect"}},
				Rules: [hookCount][]Rule{HookConnect: {{Policy: 0, Enforce: enforce, Protocol: unix.IPPROTO_TCP,
					Dest: netip.MustParsePrefix("127.0.0.1/32"), PortLo: port, PortHi: port}}},
				Exes: map[string]Masks{allowed: {Allow: 1}},
			})
			cmd := privtest.RespondCmd(t, other, "connect", h.cg, addr)
			code := privtest.ExitCode(t, cmd)
			want := 0
			if enforce {
				want = int(unix.EPERM)
			}
			if code != want {
				t.Fatalf("connect from a binary not allowlisted: exit %d, want %d", code, want)
			}
			ev := h.waitFor("response_connect", respOf(event.KindResponseConnect, cmd.Process.Pid))
			wantR := event.Response{Policy: "plc-" + name, Action: "deny_connect", Mode: name, Outcome: "would_block",
				Family: "inet", Protocol: "tcp", SockType: "stream", DstAddr: "127.0.0.1", DstPort: port}
			if enforce {
				wantR.Outcome = "blocked"
			}
			if ev.Response.Policy != wantR.Policy || ev.Response.Outcome != wantR.Outcome || ev.Response.DstAddr != wantR.DstAddr ||
				ev.Response.DstPort != port || ev.Response.Protocol != "tcp" || ev.Response.Mode != name {
				t.Errorf("response: got %+v, want %+v", *ev.Response, wantR)
			}
			ok := privtest.RespondCmd(t, allowed, "connect", h.cg, addr)
			if code := privtest.ExitCode(t, ok); code != 0 {
				t.Fatalf("connect from the allowlisted binary: exit %d", code)
			}
			if n := h.count(respOf(event.KindResponseConnect, ok.Process.Pid)); n != 0 {
				t.Errorf("the allowlisted binary was reported %d times", n)
			}
		})
	}
}

// Raw IP sockets are refused by cgroup/sock_create with EPERM; packet
// sockets (which that hook never sees) kill the caller at socket() entry.
func respondRawAndPacketSockets(t *testing.T, h *respondHarness) {
	h.need(t, HookSocket)
	dir := privtest.Dir(t)
	sniffer := privtest.CopyExe(t, privtest.Self(t), dir, "sniffer")
	capture := privtest.CopyExe(t, privtest.Self(t), dir, "approved-capture")
	for _, enforce := range []bool{false, true} {
		name := map[bool]string{false: "monitor", true: "enforce"}[enforce]
		t.Run(name, func(t *testing.T) {
			h.apply(t, RuleSet{
				Policies: []PolicyRef{{ID: "raw-" + name, Action: "deny_socket"}},
				Rules: [hookCount][]Rule{HookSocket: {{Policy: 0, Enforce: enforce, Family: unix.AF_PACKET, SockProtocol: -1},
					{Policy: 0, Enforce: enforce, Family: unix.AF_INET, SockType: unix.SOCK_RAW, SockProtocol: -1}}},
				Exes: map[string]Masks{capture: {Allow: 1}},
			})
			outcome := map[bool]string{false: "would_block", true: "blocked"}[enforce]
			raw := privtest.RespondCmd(t, sniffer, "raw", h.cg)
			code := privtest.ExitCode(t, raw)
			if want := map[bool]int{false: 0, true: int(unix.EPERM)}[enforce]; code != want {
				t.Fatalf("raw socket from a binary not allowlisted: exit %d, want %d", code, want)
			}
			ev := h.waitFor("response_socket", respOf(event.KindResponseSocket, raw.Process.Pid))
			if ev.Response.Policy != "raw-"+name || ev.Response.Family != "inet" || ev.Response.SockType != "raw" ||
				ev.Response.Protocol != "icmp" || ev.Response.Outcome != outcome {
				t.Errorf("raw socket response: %+v", *ev.Response)
			}

			packet := privtest.RespondCmd(t, sniffer, "packet", h.cg)
			err := packet.Run()
			if enforce {
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
					t.Fatalf("packet socket from a binary not allowlisted: want SIGKILL, got %v", err)
				}
			} else if err != nil {
				t.Fatalf("packet socket in monitor mode: %v", err)
			}
			ev = h.waitFor("response_socket", respOf(event.KindResponseSocket, packet.Process.Pid))
			if ev.Response.Family != "packet" || ev.Response.Outcome != map[bool]string{false: "would_kill", true: "killed"}[enforce] {
				t.Errorf("packet socket response: %+v", *ev.Response)
			}
			for _, mode := range []string{"raw", "packet"} {
				if code := privtest.ExitCode(t, privtest.RespondCmd(t, capture, mode, h.cg)); code != 0 {
					t.Fatalf("%s socket from the allowlisted binary: exit %d", mode, code)
				}
			}
		})
	}
}

func respondDeviceForUnit(t *testing.T, h *respondHarness) {
	h.need(t, HookDevice)
	dir := privtest.Dir(t)
	node := filepath.Join(dir, "ttyUSB-test")
	// major 188 (USB serial), a minor no adapter on a test host uses
	if err := unix.Mknod(node, unix.S_IFCHR|0o600, int(unix.Mkdev(188, 250))); err != nil {
		t.Fatalf("mknod: %v", err)
	}
	gw := filepath.Join(h.cg, "fieldbus-gw.service")
	hmi := filepath.Join(h.cg, "hmi.service")
	self := privtest.Self(t)
	path := "WATCHPOST_TEST_PATH=" + node
	// Without a policy the open passes the cgroup check and fails in the
	// driver lookup (no such device).
	base := privtest.ExitCode(t, privtest.RespondCmd(t, self, "open", hmi, path))
	if base == int(unix.EPERM) || base == 200 {
		t.Fatalf("open without a policy: exit %d", base)
	}
	for _, enforce := range []bool{false, true} {
		name := map[bool]string{false: "monitor", true: "enforce"}[enforce]
		t.Run(name, func(t *testing.T) {
			h.apply(t, RuleSet{
				Policies: []PolicyRef{{ID: "serial-" + name, Action: "deny_device"}},
				Rules: [hookCount][]Rule{HookDevice: {{Policy: 0, Enforce: enforce, DevType: 2, DevMajor: 188,
					DevMinorLo: 0, DevMinorHi: 1<<20 - 1, DevAccess: DevMknod | DevRead | DevWrite}}},
				Cgroups: map[string]Masks{gw: {Allow: 1}},
			})
			cmd := privtest.RespondCmd(t, self, "open", hmi, path)
			code := privtest.ExitCode(t, cmd)
			want := base
			if enforce {
				want = int(unix.EPERM)
			}
			if code != want {
				t.Fatalf("open from a unit not allowlisted: exit %d, want %d", code, want)
			}
			ev := h.waitFor("response_device", respOf(event.KindResponseDevice, cmd.Process.Pid))
			if ev.Response.Policy != "serial-"+name || ev.Response.Device != "188:250" || ev.Response.DevKind != "char" ||
				ev.Response.Outcome != map[bool]string{false: "would_block", true: "blocked"}[enforce] {
				t.Errorf("response: %+v", *ev.Response)
			}
			if code := privtest.ExitCode(t, privtest.RespondCmd(t, self, "open", gw, path)); code != base {
				t.Fatalf("open from the allowlisted unit: exit %d, want %d", code, base)
			}
		})
	}
}

func respondDetachLiftsEveryEffect(t *testing.T, h *respondHarness) {
	h.need(t, HookExec, HookSocket)
	dir := privtest.Dir(t)
	self := privtest.Self(t)
	denied := privtest.CopyExe(t, self, dir, "denied")
	h.apply(t, RuleSet{
		Policies: []PolicyRef{{ID: "kill", Action: "kill_exec"}, {ID: "raw", Action: "deny_socket"}},
		Rules: [hookCount][]Rule{
			HookExec:   {{Policy: 0, Enforce: true, Exe: true}},
			HookSocket: {{Policy: 1, Enforce: true, Family: unix.AF_INET, SockType: unix.SOCK_RAW, SockProtocol: -1}},
		},
		Exes: map[string]Masks{denied: {Sel: 1}},
	})
	cmd := privtest.RespondCmd(t, denied, "raw", h.cg)
	if err := cmd.Run(); err == nil {
		t.Fatalf("the denied binary ran")
	}
	if code := privtest.ExitCode(t, privtest.RespondCmd(t, self, "raw", h.cg)); code != int(unix.EPERM) {
		t.Fatalf("raw socket before the kill switch: exit %d", code)
	}
	start := time.Now()
	if err := h.r.Detach(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("the kill switch took %s, more than a second", d)
	}
	if code := privtest.ExitCode(t, privtest.RespondCmd(t, denied, "raw", h.cg)); code != 0 {
		t.Fatalf("after the kill switch: exit %d, want 0 (runs, and its socket is allowed)", code)
	}
	for _, st := range h.r.Hooks() {
		if st.Attached {
			t.Errorf("hook %s still attached after the kill switch", st.Hook)
		}
	}
}
