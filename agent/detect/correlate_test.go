package detect

import (
	"fmt"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/watchpost/watchpost/agent/event"
)

func packEngine(t *testing.T) *Engine {
	t.Helper()
	e, err := New(Config{Packs: Packs(), Host: "gw"}, Deps{Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// clock hands out events at chosen boot times.
type clock struct{ seq uint64 }

func (c *clock) ev(at time.Duration, k event.Kind, pid, ppid uint32, anc ...uint32) *event.Event {
	c.seq++
	ev := &event.Event{Kind: k, Seq: c.seq, BootNS: uint64(at), Time: time.Unix(1800000000, 0).Add(at),
		Process: event.Process{PID: pid, PPID: ppid, Exe: "/usr/bin/curl", Args: []string{"curl"}}}
	for _, a := range anc {
		ev.Ancestry = append(ev.Ancestry, event.Ancestor{PID: a, Exe: "/usr/bin/bash"})
	}
	return ev
}

func ruleIDs(out []*event.Event) []string {
	var ids []string
	for _, a := range out {
		ids = append(ids, a.Alert.RuleID)
	}
	return ids
}

// TestWriteThenExec: a file written to /tmp and executed in the same
// process tree within the window raises wp-host-write-then-exec, with
// both events named; outside the window, or by an unrelated tree, or
// executing another file, it does not.
func TestWriteThenExec(t *testing.T) {
	cases := []struct {
		name     string
		execAt   time.Duration
		execPID  uint32
		execAnc  []uint32
		execPath string
		fires    bool
	}{
		{"within the window, child of the writer's parent", 59 * time.Second, 301, []uint32{200, 1}, "/tmp/payload", true},
		{"the writer itself", 10 * time.Second, 300, []uint32{200, 1}, "/tmp/payload", true},
		{"outside the window", 61 * time.Second, 301, []uint32{200, 1}, "/tmp/payload", false},
		{"another process tree", 5 * time.Second, 901, []uint32{900, 1}, "/tmp/payload", false},
		{"another file", 5 * time.Second, 301, []uint32{200, 1}, "/tmp/other", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := packEngine(t)
			var c clock
			w := c.ev(time.Hour, event.KindFileOpen, 300, 200, 200, 1)
			w.File = &event.File{Path: "/tmp/payload", Write: true, Flags: 0o1101}
			if out := e.Detect(w); len(out) != 0 {
				t.Fatalf("the write alone raised %v", ruleIDs(out))
			}
			x := c.ev(time.Hour+tc.execAt, event.KindExec, tc.execPID, tc.execAnc[0], tc.execAnc...)
			x.Process.Exe, x.Exec = tc.execPath, &event.Exec{}
			out := e.Detect(x)
			if !tc.fires {
				if len(out) != 0 {
					t.Fatalf("raised %v", ruleIDs(out))
				}
				return
			}
			if len(out) != 1 || out[0].Alert.RuleID != "wp-host-write-then-exec" {
				t.Fatalf("alerts %v", ruleIDs(out))
			}
			a := out[0].Alert
			if a.Correlation != "temporal_ordered" || len(a.Events) != 2 || a.Events[0].Seq != w.Seq || a.Events[1].Seq != x.Seq ||
				a.Techniques[0] != "T1105" || a.Matches[0] != (event.Match{Field: "file", Value: "/tmp/payload"}) {
				t.Fatalf("alert %+v", a)
			}
		})
	}
}

// TestCountThreshold: wp-host-bulk-delete fires at the 100th deletion of
// one process within 10 s and not at the 99th; deletions spread over more
// than the window, or over two processes, do not add up.
func TestCountThreshold(t *testing.T) {
	del := func(e *Engine, c *clock, at time.Duration, pid uint32, i int) []*event.Event {
		ev := c.ev(at, event.KindFileUnlink, pid, 1)
		ev.File = &event.File{Path: fmt.Sprintf("/srv/data/f%d", i)}
		return e.Detect(ev)
	}
	e := packEngine(t)
	var c clock
	for i := 0; i < 99; i++ {
		if out := del(e, &c, time.Duration(i)*time.Millisecond, 40, i); len(out) != 0 {
			t.Fatalf("deletion %d raised %v", i+1, ruleIDs(out))
		}
	}
	out := del(e, &c, 99*time.Millisecond, 40, 99)
	if len(out) != 1 || out[0].Alert.RuleID != "wp-host-bulk-delete" || out[0].Alert.Count != 100 || len(out[0].Alert.Events) != maxRefs {
		t.Fatalf("100th deletion: %v", out)
	}
	if a := out[0].Alert; a.Events[maxRefs-1].Seq != c.seq || a.Matches[0] != (event.Match{Field: "ProcessId", Value: "40"}) {
		t.Fatalf("alert %+v", a)
	}
	// The group starts again after an alert: 99 more do not fire.
	for i := 0; i < 99; i++ {
		if out := del(e, &c, time.Second+time.Duration(i)*time.Millisecond, 40, i); len(out) != 0 {
			t.Fatalf("after the alert, deletion %d raised %v", i+1, ruleIDs(out))
		}
	}
	// Slower than 100 per 10 s: never.
	e, c = packEngine(t), clock{}
	for i := 0; i < 300; i++ {
		if out := del(e, &c, time.Duration(i)*102*time.Millisecond, 41, i); len(out) != 0 {
			t.Fatalf("slow deletions raised %v at %d", ruleIDs(out), i)
		}
	}
	// Two processes, 60 each: no.
	e, c = packEngine(t), clock{}
	for i := 0; i < 120; i++ {
		if out := del(e, &c, time.Duration(i)*time.Millisecond, 50+uint32(i%2), i); len(out) != 0 {
			t.Fatalf("two processes raised %v", ruleIDs(out))
		}
	}
}

// TestDistinctPeers: wp-ot-ics-scan fires at the 10th distinct Modbus peer
// of one process and not at the 9th; a peer seen twice counts once.
func TestDistinctPeers(t *testing.T) {
	e := packEngine(t)
	var c clock
	conn := func(i int) []*event.Event {
		ev := c.ev(time.Duration(i)*time.Second, event.KindNetConnect, 77, 1)
		ev.Process.Exe = "/opt/scada/bin/poller"
		ev.Net = &event.Net{Family: "inet", Protocol: "tcp", SrcAddr: "10.0.0.1", SrcPort: 40000, DstAddr: fmt.Sprintf("10.0.1.%d", i%9+1), DstPort: 502}
		ev.Industrial = &event.Industrial{Protocol: "modbus"}
		return e.Detect(ev)
	}
	for i := 0; i < 18; i++ { // 9 distinct peers, each twice
		if out := conn(i); len(out) != 0 {
			t.Fatalf("connection %d raised %v", i, ruleIDs(out))
		}
	}
	ev := c.ev(19*time.Second, event.KindNetConnect, 77, 1)
	ev.Process.Exe = "/opt/scada/bin/poller"
	ev.Net = &event.Net{Family: "inet", Protocol: "tcp", DstAddr: "10.0.1.200", DstPort: 502}
	ev.Industrial = &event.Industrial{Protocol: "modbus"}
	out := e.Detect(ev)
	if len(out) != 1 || out[0].Alert.RuleID != "wp-ot-ics-scan" || out[0].Alert.Count != 10 || out[0].Alert.Techniques[0] != "T0846" {
		t.Fatalf("10th peer: %v", out)
	}
}
