package kernel

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"

	"github.com/watchpost/watchpost/agent/event"
	"github.com/watchpost/watchpost/agent/internal/privtest"
)

func TestMain(m *testing.M) {
	privtest.HelperMain()
	os.Exit(m.Run())
}

// harness runs a real sensor and records every event it delivers.
type harness struct {
	t      testing.TB
	sensor *Sensor
	cancel context.CancelFunc
	done   chan error

	run      func()
	stopOnce sync.Once

	mu     sync.Mutex
	cond   *sync.Cond
	events []*event.Event
	closed bool
}

// waitTimeout is generous: under qemu's software emulation (vmtests) code
// runs 7-10 times slower. Tests never sleep to wait; they wait for events.
func waitTimeout() time.Duration {
	if _, vm := privtest.InVM(); vm {
		return 120 * time.Second
	}
	return 20 * time.Second
}

func startSensor(t testing.TB, mutate func(*Config)) *harness {
	t.Helper()
	h := loadSensor(t, mutate)
	h.run()
	return h
}

// loadSensor attaches the programs but does not read the ring until run.
func loadSensor(t testing.TB, mutate func(*Config)) *harness {
	t.Helper()
	privtest.Require(t)
	cfg := DefaultConfig()
	cfg.AgentPID = 0 // the test's own process is what it observes
	if mutate != nil {
		mutate(&cfg)
	}
	s, err := Load(cfg, zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel))
	if err != nil {
		t.Fatalf("loading the sensor: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{t: t, sensor: s, cancel: cancel, done: make(chan error, 1)}
	h.cond = sync.NewCond(&h.mu)
	h.run = sync.OnceFunc(func() {
		go func() { h.done <- s.Run(ctx) }()
		go h.collect()
	})
	t.Cleanup(func() {
		h.run()
		h.stop()
		if err := s.Close(); err != nil {
			t.Errorf("closing the sensor: %v", err)
		}
	})
	return h
}

func (h *harness) collect() {
	for ev := range h.sensor.Events() {
		h.mu.Lock()
		h.events = append(h.events, ev)
		h.cond.Broadcast()
		h.mu.Unlock()
	}
	h.mu.Lock()
	h.closed = true
	h.cond.Broadcast()
	h.mu.Unlock()
}

// stop detaches, drains and waits for the queue to close; the counters
// stay readable until cleanup closes the sensor. Idempotent.
func (h *harness) stop() {
	h.stopOnce.Do(func() {
		h.cancel()
		if err := <-h.done; err != nil {
			h.t.Errorf("sensor run: %v", err)
		}
		h.mu.Lock()
		for !h.closed {
			h.cond.Wait()
		}
		h.mu.Unlock()
	})
}

// waitFor returns the first event matching pred, failing after the timeout.
func (h *harness) waitFor(desc string, pred func(*event.Event) bool) *event.Event {
	h.t.Helper()
	ev, misses := h.tryWaitFor(waitTimeout(), pred)
	if ev == nil {
		h.t.Fatalf("no %s event within %s (%d events seen%s)", desc, waitTimeout(), h.count(func(*event.Event) bool { return true }), misses)
	}
	return ev
}

// tryWaitFor returns the first event matching pred within d, or nil and
// the skipped program runs the kernel counted so far (on preemptible
// kernels a run can be skipped, a recursion miss: naming them tells such
// a loss apart).
func (h *harness) tryWaitFor(d time.Duration, pred func(*event.Event) bool) (*event.Event, string) {
	deadline := time.Now().Add(d)
	timer := time.AfterFunc(d, func() { h.mu.Lock(); h.cond.Broadcast(); h.mu.Unlock() })
	defer timer.Stop()
	h.mu.Lock()
	defer h.mu.Unlock()
	for {
		for _, ev := range h.events {
			if pred(ev) {
				return ev, ""
			}
		}
		if h.closed || time.Now().After(deadline) {
			misses := ""
			if st, err := h.sensor.Stats(); err == nil {
				misses = fmt.Sprintf("; skipped program runs: %v", st.ProgramMisses)
				for k, ks := range st.Kinds {
					if ks.Missed > 0 {
						misses += fmt.Sprintf(" %s:%d", k, ks.Missed)
					}
				}
			}
			return nil, misses
		}
		h.cond.Wait()
	}
}

// missed is the number of program runs the kernel skipped, of every
// program.
func (h *harness) missed() uint64 {
	st, err := h.sensor.Stats()
	if err != nil {
		return 0
	}
	var n uint64
	for _, m := range st.ProgramMisses {
		n += m
	}
	return n + st.Total().Missed
}

func (h *harness) count(pred func(*event.Event) bool) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, ev := range h.events {
		if pred(ev) {
			n++
		}
	}
	return n
}

func helperCmd(t testing.TB, mode, dir string, args ...string) *exec.Cmd {
	cmd := exec.Command(privtest.Self(t), args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), privtest.HelperEnv+"="+mode)
	return cmd
}

func isKind(k event.Kind, pid int) func(*event.Event) bool {
	return func(ev *event.Event) bool { return ev.Kind == k && ev.Process.PID == uint32(pid) }
}

func TestExecForkExitOfAHelperProcess(t *testing.T) {
	h := startSensor(t, nil)
	dir := privtest.Dir(t)
	self := privtest.Self(t)
	args := []string{"-test.run=^$", "wp-distinctive-argv", "two words", "ünïcødé", ""}
	isClone := func(pid int) func(*event.Event) bool {
		return func(ev *event.Event) bool {
			return ev.Kind == event.KindClone && ev.Clone != nil && ev.Clone.ChildPID == uint32(pid)
		}
	}
	// On preemptible kernels the kernel may skip a program run (a
	// recursion miss, counted): the helper runs again when one of its
	// events is missing and such a skip was counted meanwhile.
	var pid int
	var ex, cl, xt *event.Event
	for attempt := 1; ; attempt++ {
		missedBefore := h.missed()
		cmd := helperCmd(t, "exit:3", dir, args...)
		err := cmd.Run()
		var exitErr *exec.ExitError
		if !errors.As(err, &exitErr) || exitErr.ExitCode() != 3 {
			t.Fatalf("helper: want exit status 3, got %v", err)
		}
		pid = cmd.Process.Pid
		wait := waitTimeout()
		if attempt < 3 {
			wait = 10 * time.Second
		}
		ex, _ = h.tryWaitFor(wait, isKind(event.KindExec, pid))
		cl, _ = h.tryWaitFor(wait, isClone(pid))
		xt, _ = h.tryWaitFor(wait, isKind(event.KindExit, pid))
		if ex != nil && cl != nil && xt != nil {
			break
		}
		if attempt < 3 && h.missed() > missedBefore {
			t.Logf("attempt %d: an event of pid %d is missing and the kernel skipped %d program runs meanwhile; again", attempt, pid, h.missed()-missedBefore)
			continue
		}
		ex = h.waitFor("exec", isKind(event.KindExec, pid))
		cl = h.waitFor("clone", isClone(pid))
		xt = h.waitFor("exit", isKind(event.KindExit, pid))
		break
	}
	wantProc := event.Process{
		PID: uint32(pid), TID: uint32(pid), PPID: uint32(os.Getpid()),
		UID: uint32(os.Getuid()), GID: uint32(os.Getgid()), EUID: uint32(os.Geteuid()), EGID: uint32(os.Getegid()),
		Exe: self, Args: append([]string{self}, args...), Cwd: dir,
	}
	got := ex.Process
	// Fields the test cannot predict exactly are checked separately.
	if got.StartBootNS == 0 || got.StartBootNS > ex.BootNS {
		t.Errorf("start_boot_ns %d not in (0, %d]", got.StartBootNS, ex.BootNS)
	}
	if got.CgroupID == 0 {
		t.Errorf("cgroup_id is 0")
	}
	if !strings.HasPrefix(self, "/") || got.Comm == "" || !strings.HasPrefix(filepathBase(self), got.Comm) {
		t.Errorf("comm %q is not a prefix of the executable's name %q", got.Comm, filepathBase(self))
	}
	got.StartBootNS, got.CgroupID, got.Comm = 0, 0, ""
	got.LoginUID, got.SessionID, got.TTY = 0, 0, ""
	if diff := cmp.Diff(wantProc, got); diff != "" {
		t.Errorf("exec process (-want +got):\n%s", diff)
	}
	if ex.Exec == nil || ex.Exec.Argc != uint32(len(args)+1) || ex.Exec.ArgsTruncated || ex.Exec.ExeInode == 0 {
		t.Errorf("exec details: %+v", ex.Exec)
	}
	if ex.Time.IsZero() || time.Since(ex.Time) > time.Hour || time.Since(ex.Time) < -time.Minute {
		t.Errorf("wall time %s is not now", ex.Time)
	}

	if cl.Process.PID != uint32(os.Getpid()) || cl.Clone.Thread || cl.Clone.ChildTID != uint32(pid) {
		t.Errorf("clone: parent %d (want %d), %+v", cl.Process.PID, os.Getpid(), cl.Clone)
	}

	if diff := cmp.Diff(&event.Exit{Code: 3}, xt.Exit, cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".LifetimeNS" }, cmp.Ignore())); diff != "" {
		t.Errorf("exit (-want +got):\n%s", diff)
	}
	if xt.Exit.LifetimeNS == 0 || xt.Exit.LifetimeNS > uint64(waitTimeout()) {
		t.Errorf("lifetime %dns is not plausible", xt.Exit.LifetimeNS)
	}
	if xt.Process.PPID != uint32(os.Getpid()) {
		t.Errorf("exit ppid %d, want %d", xt.Process.PPID, os.Getpid())
	}
}

func filepathBase(p string) string { return p[strings.LastIndexByte(p, '/')+1:] }

func TestExitBySIGKILL(t *testing.T) {
	h := startSensor(t, nil)
	cmd := helperCmd(t, "sleep", privtest.Dir(t), "-test.run=^$", "wp-killed")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	h.waitFor("exec", isKind(event.KindExec, pid))
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	xt := h.waitFor("exit", isKind(event.KindExit, pid))
	if xt.Exit.Signal != int(syscall.SIGKILL) || xt.Exit.Code != 0 || xt.Exit.CoreDumped {
		t.Errorf("exit: want signal 9, got %+v", xt.Exit)
	}
}

func TestThreadsAreOnlyReportedWhenAsked(t *testing.T) {
	h := startSensor(t, func(c *Config) { c.Kinds = []event.Kind{event.KindClone, event.KindExit} })
	// Starting a process from Go spawns runtime threads in the child:
	// their clones must not appear, the process clone must.
	cmd := helperCmd(t, "exit:0", privtest.Dir(t), "-test.run=^$")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	h.waitFor("exit", isKind(event.KindExit, pid))
	if n := h.count(func(ev *event.Event) bool { return ev.Kind == event.KindClone && ev.Clone.Thread }); n != 0 {
		t.Errorf("%d thread clones reported with threads off", n)
	}
	if n := h.count(isKind(event.KindExec, pid)); n != 0 {
		t.Errorf("exec reported although only clone and exit were asked for")
	}
	h.stop()
	st, err := h.sensor.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Kinds[event.KindClone].Filtered == 0 || st.Kinds[event.KindExec].Filtered == 0 {
		t.Errorf("filtered counters did not move: clone %+v exec %+v", st.Kinds[event.KindClone], st.Kinds[event.KindExec])
	}
}

// TestExecFloodIsFullyAccounted runs a flood of short-lived processes into
// a deliberately small ring that nobody reads while the flood runs, so
// events are lost, and asserts that every exec is either delivered or
// counted: delivered + ring_full + queue_full + filtered = produced.
func TestExecFloodIsFullyAccounted(t *testing.T) {
	n := 20000
	if _, vm := privtest.InVM(); vm {
		n = 2000 // the same accounting, at a size software emulation can run
	}
	h := loadSensor(t, func(c *Config) {
		c.RingBytes = 64 << 10
		c.WakeupBytes = 32 << 10
		c.Kinds = []event.Kind{event.KindExec}
		c.QueueLen = 1 << 20
	})
	runFlood(t, n, "/bin/true")
	h.run()
	h.stop() // detach, drain, close

	st, err := h.sensor.Stats()
	if err != nil {
		t.Fatal(err)
	}
	ks := st.Kinds[event.KindExec]
	delivered := uint64(h.count(func(ev *event.Event) bool { return ev.Kind == event.KindExec }))
	t.Logf("exec: produced %d delivered %d ring_full %d queue_full %d filtered %d missed %d", ks.Produced, delivered, ks.RingFull, ks.QueueFull, ks.Filtered, ks.Missed)
	// On preemptible kernels (PREEMPT_LAZY, 7.x) the kernel may skip a
	// program run when another task is inside it on the same CPU; those
	// execs were never produced and are counted as missed instead.
	if ks.Produced+ks.Missed < uint64(n) {
		t.Errorf("produced %d + missed %d < %d execs started", ks.Produced, ks.Missed, n)
	}
	if got := delivered + ks.RingFull + ks.QueueFull + ks.Filtered + ks.RateLimited; got != ks.Produced {
		t.Errorf("delivered+counted = %d, produced = %d", got, ks.Produced)
	}
	if ks.Emitted != delivered+ks.QueueFull {
		t.Errorf("emitted %d != delivered %d + queue_full %d", ks.Emitted, delivered, ks.QueueFull)
	}
	if st.DecodeErrors != 0 {
		t.Errorf("%d decode errors", st.DecodeErrors)
	}
	if ks.RingFull == 0 {
		t.Errorf("the flood overran nothing: the test did not exercise drop accounting")
	}
}

// runFlood starts n processes of prog, a few at a time.
func runFlood(t testing.TB, n int, prog string) {
	t.Helper()
	const workers = 4
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n; i += workers {
				if err := exec.Command(prog).Run(); err != nil {
					errs <- err
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("flood: %v", err)
	}
}

func TestProbeNamesMissingBTF(t *testing.T) {
	privtest.Require(t)
	_, err := probe(probeOptions{btfPath: "/nonexistent/btf/vmlinux"})
	if !errors.Is(err, ErrUnsupported) {
		t.Fatalf("want ErrUnsupported, got %v", err)
	}
	if !strings.Contains(err.Error(), "kernel BTF (/nonexistent/btf/vmlinux") || !strings.Contains(err.Error(), "CONFIG_DEBUG_INFO_BTF") {
		t.Errorf("error does not name the missing BTF clearly:\n%v", err)
	}
}

func TestProbeOnThisKernel(t *testing.T) {
	privtest.Require(t)
	f, err := Probe()
	if err != nil {
		t.Fatalf("probe: %v", err)
	}
	if !f.BTF || !f.RingBuf || !f.TPBTF || !f.RingbufQuery || f.CapturePath != "tp_btf+tracepoint" {
		t.Errorf("features: %+v", f)
	}
	t.Logf("kernel %s: capture %s, syscall args %s, fentry %v, lsm %v, kprobes %v", f.Kernel, f.CapturePath, f.SyscallArgs, f.Fentry, f.LSM, f.Kprobes)
	// bpf_task_pt_regs arrived in 5.15: every kernel of the matrix but 5.10,
	// and this host, read syscall arguments at sys_exit from the registers.
	wantRegs := true
	if name, vm := privtest.InVM(); vm && name == "5.10" {
		wantRegs = false
	}
	if want := map[bool]string{true: syscallArgsExitRegs, false: syscallArgsEnterStash}[wantRegs]; f.TaskPtRegs != wantRegs || f.SyscallArgs != want {
		t.Errorf("kernel %s: task_pt_regs=%v syscall_args=%q, want %v %q", f.Kernel, f.TaskPtRegs, f.SyscallArgs, wantRegs, want)
	}
	// In the kernel matrix the better hooks are known: Debian's cloud
	// kernels have kprobes and fentry trampolines, and boot without "bpf"
	// in the active LSM list. The agent must see exactly that, and still
	// choose the tracepoint path, which is the same on every kernel.
	if name, vm := privtest.InVM(); vm {
		if !f.Kprobes || !f.Fentry || f.LSM {
			t.Errorf("kernel %s: probed kprobes=%v fentry=%v lsm=%v, want true, true, false", name, f.Kprobes, f.Fentry, f.LSM)
		}
	}
}
