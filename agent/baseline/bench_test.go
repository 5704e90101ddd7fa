package baseline

import (
	"testing"
	"time"

	"github.com/watchpost/watchpost/agent/event"
)

// BenchmarkObserve is the per-event cost on a learned, enforcing
// baseline of known items (the steady state of a gateway): an exec (three
// families), a file write, a connect and an event no family takes.
//
//	go test -run '^$' -bench BenchmarkObserve -benchmem ./agent/baseline
func BenchmarkObserve(b *testing.B) {
	c := newClock()
	cfg := testConfig(b, c, b.TempDir())
	bl := open(b, cfg)
	// A baseline of a realistic size: a few thousand items.
	for i := range 3000 {
		bl.Observe(connectEv(c, "/opt/scada/bin/poller", "10.0.0.5", uint16(1000+i)))
	}
	exec := execEv(c, 10, "/opt/scada/bin/healthcheck", "/usr/bin/dash", 999, "--quiet", "--timeout", "5")
	write := &event.Event{Kind: event.KindFileOpen, Time: c.t, Process: event.Process{PID: 9, Exe: "/opt/historian/bin/historian"},
		File: &event.File{Path: "/var/lib/historian/2026/03/01/tags-10.csv", Write: true, Result: 3}}
	conn := connectEv(c, "/opt/scada/bin/poller", "10.0.0.5", 502)
	exit := &event.Event{Kind: event.KindExit, Time: c.t, Process: event.Process{PID: 9}}
	evs := []*event.Event{exec, write, conn, exit}
	for _, ev := range evs {
		bl.Observe(ev)
	}
	learnTick(bl, c, 2*time.Hour)
	if bl.Mode() != ModeEnforcing {
		b.Fatal("not enforcing")
	}
	for _, ev := range evs {
		ev.Time = c.t
	}
	for _, ev := range evs {
		b.Run(ev.Kind.String(), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if bl.Observe(ev) != nil {
					b.Fatal("a known item alerted")
				}
			}
		})
	}
}
