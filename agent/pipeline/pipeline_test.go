package pipeline

import (
	"context"
	"os"
	"os/exec"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"

	"github.com/watchpost/watchpost/agent/event"
	"github.com/watchpost/watchpost/agent/internal/privtest"
	"github.com/watchpost/watchpost/agent/kernel"
	"github.com/watchpost/watchpost/agent/proctable"
)

func TestMain(m *testing.M) {
	privtest.HelperMain()
	os.Exit(m.Run())
}

// captureSink keeps what it is given.
type captureSink struct {
	mu     sync.Mutex
	events []*event.Event
	signal chan struct{}
}

func newCaptureSink() *captureSink { return &captureSink{signal: make(chan struct{}, 1)} }

func (c *captureSink) Write(ev *event.Event) {
	c.mu.Lock()
	c.events = append(c.events, ev)
	c.mu.Unlock()
	select {
	case c.signal <- struct{}{}:
	default:
	}
}
func (c *captureSink) Flush() error { return nil }
func (c *captureSink) Close() error { return nil }

func (c *captureSink) waitFor(t *testing.T, timeout time.Duration, pred func(*event.Event) bool) *event.Event {
	t.Helper()
	deadline := time.After(timeout)
	for {
		c.mu.Lock()
		for _, ev := range c.events {
			if pred(ev) {
				c.mu.Unlock()
				return ev
			}
		}
		c.mu.Unlock()
		select {
		case <-c.signal:
		case <-deadline:
			t.Fatalf("no matching event within %s", timeout)
		}
	}
}

// fakeSource replays a fixed list of events and fixed counters.
type fakeSource struct {
	ch    chan *event.Event
	stats kernel.Stats
}

func (f *fakeSource) Run(ctx context.Context) error {
	<-ctx.Done()
	close(f.ch)
	return nil
}
func (f *fakeSource) Events() <-chan *event.Event  { return f.ch }
func (f *fakeSource) Stats() (kernel.Stats, error) { return f.stats, nil }
func (f *fakeSource) Features() kernel.Features {
	return kernel.Features{Kernel: "6.1.0-test", CapturePath: "tp_btf+tracepoint"}
}
func (f *fakeSource) Programs() []string { return []string{"tp_btf/sched_process_exec"} }

func TestPipelineSequencesEnrichesAndReportsHealth(t *testing.T) {
	src := &fakeSource{ch: make(chan *event.Event, 4), stats: kernel.Stats{Kinds: map[event.Kind]kernel.KindStats{
		event.KindExec: {Produced: 10, Emitted: 7, RingFull: 2, Filtered: 1},
	}}}
	tcfg := proctable.DefaultConfig()
	tcfg.ProcRoot = t.TempDir()
	table, _ := proctable.New(tcfg)
	sink := newCaptureSink()
	p, err := New(Config{Host: "gw-01", HealthInterval: time.Hour, SweepInterval: time.Hour}, zerolog.Nop(), src, table, sink)
	if err != nil {
		t.Fatal(err)
	}
	src.ch <- &event.Event{Kind: event.KindExec, Process: event.Process{PID: 5, PPID: 1, Exe: "/usr/bin/modpoll", Args: []string{"modpoll"}}}
	src.ch <- &event.Event{Kind: event.KindExit, Process: event.Process{PID: 5, PPID: 1}, Exit: &event.Exit{Code: 1}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Run(ctx) }()
	sink.waitFor(t, 5*time.Second, func(ev *event.Event) bool { return ev.Kind == event.KindExit })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var kinds []event.Kind
	for i, ev := range sink.events {
		kinds = append(kinds, ev.Kind)
		if ev.Seq != uint64(i+1) || ev.Host != "gw-01" {
			t.Errorf("event %d: seq %d host %q", i, ev.Seq, ev.Host)
		}
	}
	if diff := cmp.Diff([]event.Kind{event.KindAgentStart, event.KindExec, event.KindExit, event.KindHealth, event.KindAgentStop}, kinds); diff != "" {
		t.Errorf("kinds (-want +got):\n%s", diff)
	}
	if exit := sink.events[2]; exit.Process.Exe != "/usr/bin/modpoll" {
		t.Errorf("exit not enriched with the exe: %+v", exit.Process)
	}
	h := sink.events[3].Health
	if h.Produced != 10 || h.Filtered != 1 || h.Dropped != 2 || h.Kernel != "6.1.0-test" {
		t.Errorf("health %+v", h)
	}
	wantCounters := []event.Counter{{Kind: "exec", Reason: "produced", Count: 10}, {Kind: "exec", Reason: "filtered", Count: 1}, {Kind: "exec", Reason: "ring_full", Count: 2}}
	if diff := cmp.Diff(wantCounters, h.Counters); diff != "" {
		t.Errorf("counters (-want +got):\n%s", diff)
	}
}

// TestAncestryReachesProcessesOlderThanTheAgent starts a process before the
// sensor, then has it exec a child: the child's event must carry the old
// process's exe and argv, known only from the /proc seed.
func TestAncestryReachesProcessesOlderThanTheAgent(t *testing.T) {
	privtest.Require(t)
	self := privtest.Self(t)
	parentArgs := []string{"-test.run=^$", "wp-started-before-the-agent", "--child", self, "-test.run=^$", "wp-child-after"}
	parent := exec.Command(self, parentArgs...)
	parent.Env = append(os.Environ(), privtest.HelperEnv+"=spawn", privtest.HelperEnv+"_CHILD=exit:0")
	stdin, err := parent.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := parent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = parent.Process.Kill(); _ = parent.Wait() })

	kcfg := kernel.DefaultConfig()
	sensor, err := kernel.Load(kcfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer sensor.Close()
	table, err := proctable.New(proctable.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	if err := table.Seed(); err != nil {
		t.Fatal(err)
	}
	sink := newCaptureSink()
	p, err := New(Config{Host: "test", HealthInterval: time.Hour, SweepInterval: time.Hour}, zerolog.Nop(), sensor, table, sink)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	if _, err := stdin.Write([]byte("go\n")); err != nil {
		t.Fatal(err)
	}
	timeout := 20 * time.Second
	if _, vm := privtest.InVM(); vm {
		timeout = 120 * time.Second
	}
	child := sink.waitFor(t, timeout, func(ev *event.Event) bool {
		return ev.Kind == event.KindExec && slices.Contains(ev.Process.Args, "wp-child-after")
	})
	if len(child.Ancestry) < 2 {
		t.Fatalf("ancestry too short: %+v", child.Ancestry)
	}
	want := event.Ancestor{PID: uint32(parent.Process.Pid), Exe: self, Args: append([]string{self}, parentArgs...), UID: uint32(os.Getuid())}
	got := child.Ancestry[0]
	got.Comm = ""
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("parent in ancestry (-want +got):\n%s", diff)
	}
	if gp := child.Ancestry[1]; gp.PID != uint32(os.Getpid()) || gp.Exe != self {
		t.Errorf("grandparent %+v, want pid %d exe %s", gp, os.Getpid(), self)
	}
}

// Alive answers while the loop runs and times out once it has stopped:
// the systemd watchdog is pinged only in the first case.
func TestAliveAnswersOnlyWhileRunning(t *testing.T) {
	src := &fakeSource{ch: make(chan *event.Event)}
	table, _ := proctable.New(proctable.DefaultConfig())
	p, err := New(Config{Host: "gw-01", HealthInterval: time.Hour, SweepInterval: time.Hour}, zerolog.Nop(), src, table, newCaptureSink())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	actx, acancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer acancel()
	if err := p.Alive(actx); err != nil {
		t.Fatalf("running pipeline: %v", err)
	}
	cancel() // the source closes its channel
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	sctx, scancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer scancel()
	if err := p.Alive(sctx); err == nil {
		t.Fatal("a stopped pipeline answered")
	}
}

// fakeNet is a network context: one zone for every network event, and its
// own events.
type fakeNet struct{ ch chan *event.Event }

func (f *fakeNet) Enrich(ev *event.Event) {
	if ev.Net != nil {
		ev.Net.Interface, ev.Net.Zone = "eth1", "cell-1"
	}
}
func (f *fakeNet) Events() <-chan *event.Event { return f.ch }
func (f *fakeNet) Counters() []event.Counter {
	return []event.Counter{{Kind: "netctx", Reason: "queue_full", Count: 2}}
}
func (f *fakeNet) Dropped() uint64 { return 2 }

// TestNetworkContextEventsTakeThePipeline: the network context's own
// events are enriched, tagged and numbered like the kernel's, kernel
// network events get their zone, the context's counters are in health,
// and what it still holds when the source stops is delivered.
func TestNetworkContextEventsTakeThePipeline(t *testing.T) {
	src := &fakeSource{ch: make(chan *event.Event, 4)}
	tcfg := proctable.DefaultConfig()
	tcfg.ProcRoot = t.TempDir()
	table, _ := proctable.New(tcfg)
	sink := newCaptureSink()
	net := &fakeNet{ch: make(chan *event.Event, 4)}
	p, err := New(Config{Host: "gw-01", HealthInterval: time.Hour, SweepInterval: time.Hour, Network: net}, zerolog.Nop(), src, table, sink)
	if err != nil {
		t.Fatal(err)
	}
	net.ch <- &event.Event{Kind: event.KindNetInventory, Process: event.Process{PID: 9},
		Net: &event.Net{Family: "inet", Protocol: "tcp", SrcAddr: "10.10.1.5", SrcPort: 502, State: "listen"}}
	src.ch <- &event.Event{Kind: event.KindNetConnect, Process: event.Process{PID: 7},
		Net: &event.Net{Family: "inet", Protocol: "tcp", SrcAddr: "10.10.1.5", DstAddr: "10.10.1.9", DstPort: 502}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Run(ctx) }()
	sink.waitFor(t, 5*time.Second, func(ev *event.Event) bool { return ev.Kind == event.KindNetConnect })
	sink.waitFor(t, 5*time.Second, func(ev *event.Event) bool { return ev.Kind == event.KindNetInventory })
	net.ch <- &event.Event{Kind: event.KindNetInterface, Interface: &event.NetInterface{Action: "added", Name: "wwan0"}}
	// Give the loop a chance to take it live; if it does not, the drain at stop must.
	time.Sleep(10 * time.Millisecond)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var health *event.Health
	seen := map[event.Kind]*event.Event{}
	for i, ev := range sink.events {
		if ev.Seq != uint64(i+1) || ev.Host != "gw-01" {
			t.Errorf("event %d (%s): seq %d host %q", i, ev.Kind, ev.Seq, ev.Host)
		}
		seen[ev.Kind] = ev
		if ev.Kind == event.KindHealth {
			health = ev.Health
		}
	}
	for _, k := range []event.Kind{event.KindNetInventory, event.KindNetConnect} {
		if ev := seen[k]; ev == nil || ev.Net.Zone != "cell-1" || ev.Net.Interface != "eth1" {
			t.Errorf("%s: %+v", k, ev)
		}
	}
	if seen[event.KindNetInterface] == nil {
		t.Error("the interface event queued at stop was lost")
	}
	if health == nil || health.Dropped != 2 || !slices.Contains(health.Counters, event.Counter{Kind: "netctx", Reason: "queue_full", Count: 2}) {
		t.Errorf("health %+v", health)
	}
}

// fakeInspection is the industrial inspection: its own events and state.
type fakeInspection struct{ ch chan *event.Event }

func (f *fakeInspection) Events() <-chan *event.Event { return f.ch }
func (f *fakeInspection) Status() *event.Inspection {
	return &event.Inspection{Attached: true, Cgroup: "/sys/fs/cgroup", Ports: []string{"modbus:502"}, Segments: 4, Messages: 6,
		Malformed: map[string]uint64{"overrun": 1}, QueueFull: 1}
}
func (f *fakeInspection) Dropped() uint64 { return 1 }

// TestInspectionEventsTakeThePipeline: an urgent ics_op is enriched,
// tagged and flushed at once, and health carries the inspection's state.
func TestInspectionEventsTakeThePipeline(t *testing.T) {
	src := &fakeSource{ch: make(chan *event.Event, 4)}
	tcfg := proctable.DefaultConfig()
	tcfg.ProcRoot = t.TempDir()
	table, _ := proctable.New(tcfg)
	sink := newCaptureSink()
	ins := &fakeInspection{ch: make(chan *event.Event, 4)}
	p, err := New(Config{Host: "gw-01", HealthInterval: time.Hour, SweepInterval: time.Hour, Inspection: ins}, zerolog.Nop(), src, table, sink)
	if err != nil {
		t.Fatal(err)
	}
	src.ch <- &event.Event{Kind: event.KindExec, Process: event.Process{PID: 5, PPID: 1, Exe: "/usr/bin/hmi", Args: []string{"hmi"}}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Run(ctx) }()
	sink.waitFor(t, 5*time.Second, func(ev *event.Event) bool { return ev.Kind == event.KindExec })
	ins.ch <- &event.Event{Kind: event.KindICSOp, Process: event.Process{PID: 5},
		Net: &event.Net{Family: "inet", Protocol: "tcp", SrcAddr: "10.0.0.2", SrcPort: 40000, DstAddr: "10.0.0.9", DstPort: 502},
		ICS: &event.ICS{Protocol: "modbus", Class: "write", Function: "write_single_register", Code: 6, Count: 1, Urgent: true}}
	op := sink.waitFor(t, 5*time.Second, func(ev *event.Event) bool { return ev.Kind == event.KindICSOp })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if op.Process.Exe != "/usr/bin/hmi" || op.Host != "gw-01" || op.Seq != 3 {
		t.Errorf("ics_op not enriched: %+v", op)
	}
	var health *event.Health
	for _, ev := range sink.events {
		if ev.Kind == event.KindHealth {
			health = ev.Health
		}
	}
	if health == nil || health.Inspection == nil || !health.Inspection.Attached || health.Inspection.Malformed["overrun"] != 1 || health.Dropped != 1 {
		t.Fatalf("health %+v", health)
	}
}
