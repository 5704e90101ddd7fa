package respond

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/watchpost/watchpost/agent/event"
	"github.com/watchpost/watchpost/agent/internal/privtest"
	"github.com/watchpost/watchpost/agent/kernel"
)

func TestMain(m *testing.M) {
	privtest.HelperMain()
	os.Exit(m.Run())
}

// engineHarness runs a real sensor with the engine attached at a test
// cgroup, and keeps the events.
type engineHarness struct {
	t      *testing.T
	e      *Engine
	file   string
	dir    string
	mu     sync.Mutex
	events []*event.Event
}

func startEngine(t *testing.T, protected ...string) *engineHarness {
	t.Helper()
	privtest.Require(t)
	kcfg := kernel.DefaultConfig()
	kcfg.Kinds = []event.Kind{event.KindExec, event.KindResponseExec, event.KindResponseConnect, event.KindResponseSocket, event.KindResponseDevice}
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	s, err := kernel.Load(kcfg, log)
	if err != nil {
		t.Fatalf("loading the sensor: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	h := &engineHarness{t: t, dir: privtest.Dir(t)}
	h.file = filepath.Join(h.dir, "policies.yaml")
	go func() { _ = s.Run(ctx) }()
	go func() {
		defer close(done)
		for ev := range s.Events() {
			h.mu.Lock()
			h.events = append(h.events, ev)
			h.mu.Unlock()
			if h.e != nil {
				h.e.Respond(ev)
			}
		}
	}()
	e, err := New(Config{PolicyFile: h.file, CgroupRoot: privtest.Cgroup(t), Protected: protected}, s, log)
	if err != nil {
		cancel()
		s.Close()
		t.Fatalf("starting the engine: %v", err)
	}
	h.mu.Lock()
	h.e = e
	h.mu.Unlock()
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("closing the engine: %v", err)
		}
		cancel()
		<-done
		if err := s.Close(); err != nil {
			t.Errorf("closing the sensor: %v", err)
		}
	})
	return h
}

func (h *engineHarness) write(doc string) {
	h.t.Helper()
	tmp := h.file + ".tmp"
	if err := os.WriteFile(tmp, []byte(doc), 0o644); err != nil {
		h.t.Fatal(err)
	}
	if err := os.Rename(tmp, h.file); err != nil {
		h.t.Fatal(err)
	}
}

// waitGeneration waits for the policy set to reach generation g.
func (h *engineHarness) waitGeneration(g uint64) *event.Policies {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := h.e.Status()
		if st.Generation >= g {
			return st
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("policy generation %d not reached: %+v", g, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (h *engineHarness) waitResponse(pid int) *event.Response {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		h.mu.Lock()
		for _, ev := range h.events {
			if ev.Response != nil && ev.Process.PID == uint32(pid) {
				h.mu.Unlock()
				return ev.Response
			}
		}
		h.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	h.t.Fatalf("no response event for pid %d", pid)
	return nil
}

func killExecPolicy(id, exe, mode string) string {
	return fmt.Sprintf("policies:\n  - id: %s\n    action: kill_exec\n    mode: %s\n    selector:\n      exe: [%s]\n", id, mode, exe)
}

// runMarker runs exe to create a marker file; it reports whether the
// process was killed by SIGKILL and whether the marker exists.
func runMarker(t *testing.T, exe, marker string) (int, bool, bool) {
	t.Helper()
	cmd := exec.Command(exe, marker)
	err := cmd.Run()
	var ee *exec.ExitError
	killed := errors.As(err, &ee) && ee.Sys().(syscall.WaitStatus).Signal() == syscall.SIGKILL
	if err != nil && !killed {
		t.Fatalf("%s: %v", exe, err)
	}
	_, statErr := os.Stat(marker)
	return cmd.Process.Pid, killed, statErr == nil
}

func touchCopy(t *testing.T, dir, name string) string {
	touch, err := exec.LookPath("touch")
	if err != nil {
		t.Skip("no touch(1) to copy")
	}
	return privtest.CopyExe(t, touch, dir, name)
}

// A change of the file switches a policy from monitor to enforce without
// a restart; a broken edit keeps the policies in force and reports where
// it is broken; SIGHUP's Reload does the same as a change.
func TestHotReloadMonitorToEnforceAndKeepOnError(t *testing.T) {
	h := startEngine(t)
	denied := touchCopy(t, h.dir, "denied-tool")
	if err := h.e.Watch(t.Context()); err != nil {
		t.Fatal(err)
	}
	h.write(killExecPolicy("no-tool", denied, "monitor"))
	st := h.waitGeneration(2)
	if len(st.Policies) != 1 || st.Policies[0].Mode != ModeMonitor || st.Source != "file" {
		t.Fatalf("status after the first load: %+v", st)
	}
	pid, killed, ran := runMarker(t, denied, filepath.Join(h.dir, "m1"))
	if killed || !ran {
		t.Fatalf("monitor mode: killed %v, ran %v", killed, ran)
	}
	if r := h.waitResponse(pid); r.Outcome != "would_kill" || r.Policy != "no-tool" || r.Exe != denied {
		t.Errorf("monitor response: %+v", r)
	}

	h.write(killExecPolicy("no-tool", denied, "enforce"))
	h.waitGeneration(3)
	pid, killed, ran = runMarker(t, denied, filepath.Join(h.dir, "m2"))
	if !killed || ran {
		t.Fatalf("enforce mode after the reload: killed %v, ran %v", killed, ran)
	}
	if r := h.waitResponse(pid); r.Outcome != "killed" || r.Mode != ModeEnforce {
		t.Errorf("enforce response: %+v", r)
	}

	// A broken edit: the error names the file, line and key; the enforcing
	// policy stays.
	h.write(killExecPolicy("no-tool", denied, "enforce") + "    colour: red\n")
	if err := h.e.Reload(); err == nil {
		t.Fatal("a broken file was accepted")
	}
	st = h.e.Status()
	want := h.file + ":7: policies[0].colour: unknown key"
	if len(st.Errors) != 1 || st.Errors[0] != want {
		t.Errorf("errors %q, want [%q]", st.Errors, want)
	}
	if len(st.Policies) != 1 || st.Policies[0].Mode != ModeEnforce || st.Policies[0].Acted != 1 || st.Policies[0].WouldHave != 1 {
		t.Errorf("the policy in force changed or lost its counts: %+v", st.Policies)
	}
	if _, killed, ran = runMarker(t, denied, filepath.Join(h.dir, "m3")); !killed || ran {
		t.Fatalf("after the refused edit: killed %v, ran %v", killed, ran)
	}

	// The collector's push replaces the file's set; a broken push keeps it.
	if err := h.e.SetPushed("collector:bad", []byte("policies: [{id: x}]\n")); err == nil {
		t.Fatal("a broken push was accepted")
	}
	if err := h.e.SetPushed("collector:site", []byte(killExecPolicy("pushed", denied, "monitor"))); err != nil {
		t.Fatal(err)
	}
	if st := h.e.Status(); st.Source != "collector" || st.Policies[0].ID != "pushed" {
		t.Fatalf("after the push: %+v", st)
	}
	if _, killed, ran = runMarker(t, denied, filepath.Join(h.dir, "m4")); killed || !ran {
		t.Fatalf("the pushed monitor policy: killed %v, ran %v", killed, ran)
	}
	// One policy switched to enforce by command.
	if err := h.e.SetMode("pushed", ModeEnforce); err != nil {
		t.Fatal(err)
	}
	if _, killed, _ = runMarker(t, denied, filepath.Join(h.dir, "m5")); !killed {
		t.Fatal("the policy switched to enforce did not kill")
	}
}

// Protected executables are never killed; kill on detection never
// signals pid 1 or the agent.
func TestProtectedSetHolds(t *testing.T) {
	dir := privtest.Dir(t)
	guard := touchCopy(t, dir, "sshd-stand-in")
	h := startEngine(t, guard)
	h.write(killExecPolicy("kill-guard", guard, "enforce") + `  - id: contain
    action: kill_on_detection
    mode: enforce
    selector: {rule: [test.rule]}
`)
	if err := h.e.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, killed, ran := runMarker(t, guard, filepath.Join(dir, "m")); killed || !ran {
		t.Fatalf("a protected executable: killed %v, ran %v", killed, ran)
	}
	for _, pid := range []uint32{1, uint32(os.Getpid())} {
		h.e.cfg.SelfPID = uint32(os.Getpid())
		out := h.e.Respond(&event.Event{Kind: event.KindAlert, Process: event.Process{PID: pid},
			Alert: &event.Alert{RuleID: "test.rule"}})
		if len(out) != 1 || out[0].Response.Outcome != "failed" || !strings.Contains(out[0].Response.Error, "protected") ||
			len(out[0].Response.Targets) != 0 {
			t.Fatalf("kill on detection of pid %d: %+v", pid, out[0].Response)
		}
	}
}

// Kill on detection: monitor reports, enforce kills the process group.
func TestKillOnDetection(t *testing.T) {
	h := startEngine(t)
	doc := `policies:
  - id: contain
    action: kill_on_detection
    mode: %s
    selector: {rule: ["ot.write_*"]}
    kill: {group: true}
`
	for _, mode := range []string{ModeMonitor, ModeEnforce} {
		h.write(fmt.Sprintf(doc, mode))
		if err := h.e.Reload(); err != nil {
			t.Fatal(err)
		}
		// A shell in its own process group with a child.
		cmd := exec.Command("/bin/sh", "-c", "sleep 30 & wait")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		pid := cmd.Process.Pid
		alert := &event.Event{Kind: event.KindAlert, Process: event.Process{PID: uint32(pid), Exe: "/bin/sh"},
			Alert: &event.Alert{RuleID: "ot.write_from_interpreter"}}
		// Wait for the child to be in the group.
		var members []uint32
		for i := 0; i < 200 && len(members) < 2; i++ {
			members = h.e.group(uint32(pid))
			time.Sleep(10 * time.Millisecond)
		}
		out := h.e.Respond(alert)
		if len(out) != 1 {
			t.Fatalf("%s: %d responses", mode, len(out))
		}
		r := out[0].Response
		if len(r.Targets) != 2 || !r.Group || r.RuleID != "ot.write_from_interpreter" {
			t.Errorf("%s: response %+v (group members %v)", mode, r, members)
		}
		if mode == ModeMonitor {
			if r.Outcome != "would_kill" {
				t.Errorf("monitor outcome %q", r.Outcome)
			}
			select {
			case err := <-exited:
				t.Fatalf("monitor mode killed the process: %v", err)
			case <-time.After(100 * time.Millisecond):
			}
			syscall.Kill(-pid, syscall.SIGKILL)
			<-exited
			continue
		}
		if r.Outcome != "killed" {
			t.Errorf("enforce outcome %q (%s)", r.Outcome, r.Error)
		}
		select {
		case err := <-exited:
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Errorf("the shell ended with %v, want SIGKILL", err)
			}
		case <-time.After(5 * time.Second):
			syscall.Kill(-pid, syscall.SIGKILL)
			t.Fatal("enforce mode did not kill the process")
		}
		for _, m := range members {
			if m != uint32(pid) && !dead(m) {
				t.Errorf("group member %d still alive", m)
			}
		}
	}
}

// The kill switch detaches every enforcing hook within a second.
func TestKillSwitch(t *testing.T) {
	h := startEngine(t)
	denied := touchCopy(t, h.dir, "denied-tool")
	h.write(killExecPolicy("no-tool", denied, "enforce"))
	if err := h.e.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, killed, _ := runMarker(t, denied, filepath.Join(h.dir, "m1")); !killed {
		t.Fatal("not killed before the kill switch")
	}
	start := time.Now()
	if err := h.e.SetEnforcing(false, "test"); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("the kill switch took %s", d)
	}
	if _, killed, ran := runMarker(t, denied, filepath.Join(h.dir, "m2")); killed || !ran {
		t.Fatalf("after the kill switch: killed %v, ran %v", killed, ran)
	}
	st := h.e.Status()
	if st.Enforcing || !strings.Contains(st.Policies[0].Unenforceable, "kill switch") {
		t.Errorf("status after the kill switch: %+v", st)
	}
	if err := h.e.SetEnforcing(true, "test"); err != nil {
		t.Fatal(err)
	}
	if _, killed, _ := runMarker(t, denied, filepath.Join(h.dir, "m3")); !killed {
		t.Fatal("not killed after the kill switch was turned off")
	}
}

// dead: the process is gone or a zombie (killed, not yet reaped by its
// new parent), within a second.
func dead(pid uint32) bool {
	for i := 0; i < 100; i++ {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return true
		}
		if j := strings.LastIndexByte(string(b), ')'); j > 0 && len(b) > j+2 && b[j+2] == 'Z' {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}
