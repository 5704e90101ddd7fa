package alerts

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

var t0 = time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC)

func hb(seq uint64, instance string, mod func(*watchpostv1.Heartbeat)) *watchpostv1.Heartbeat {
	h := &watchpostv1.Heartbeat{Seq: seq, BootId: "boot-1", InstanceId: instance, Host: "gw1",
		IntervalNanos: int64(time.Second), Programs: []string{"exec", "exit", "openat"}}
	if mod != nil {
		mod(h)
	}
	return h
}

func kinds(as []*watchpostv1.Alert) []watchpostv1.AlertKind {
	var out []watchpostv1.AlertKind
	for _, a := range as {
		out = append(out, a.Kind)
	}
	return out
}

func TestAlerts(t *testing.T) {
	e := New(Config{DropJump: 100}, t0)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	steps := []struct {
		name string
		hb   *watchpostv1.Heartbeat
		at   int
		want []*watchpostv1.Alert
	}{
		{"first heartbeat", hb(1, "i1", nil), 0, nil},
		{"next in sequence", hb(2, "i1", nil), 1, nil},
		{"two missing", hb(5, "i1", nil), 4, []*watchpostv1.Alert{{AgentId: "a", Host: "a", Kind: watchpostv1.AlertKind_ALERT_KIND_SEQUENCE_GAP, Severity: watchpostv1.Severity_SEVERITY_MEDIUM, State: watchpostv1.AlertState_ALERT_STATE_OPEN,
			TimeUnixNano: at(4).UnixNano(), Message: "heartbeats 3 to 4 never arrived", BootId: "boot-1", InstanceId: "i1", Count: 2}}},
		{"program detached", hb(6, "i1", func(h *watchpostv1.Heartbeat) { h.Programs = []string{"exec", "exit"} }), 5,
			[]*watchpostv1.Alert{{AgentId: "a", Host: "a", Kind: watchpostv1.AlertKind_ALERT_KIND_PROGRAMS_DETACHED, Severity: watchpostv1.Severity_SEVERITY_CRITICAL, State: watchpostv1.AlertState_ALERT_STATE_OPEN, TimeUnixNano: at(5).UnixNano(),
				Message: "1 kernel programs detached while the agent runs: openat", BootId: "boot-1", InstanceId: "i1", Count: 1, Programs: []string{"openat"}}}},
		{"drops below the jump", hb(7, "i1", func(h *watchpostv1.Heartbeat) {
			h.Programs = []string{"exec", "exit"}
			h.Dropped = 99
			h.Drops = []*watchpostv1.Counter{{Kind: "shipper", Reason: "spool_full", Count: 99}}
		}), 6, nil},
		{"drop jump", hb(8, "i1", func(h *watchpostv1.Heartbeat) {
			h.Programs = []string{"exec", "exit"}
			h.Dropped = 250
			h.Drops = []*watchpostv1.Counter{{Kind: "shipper", Reason: "spool_full", Count: 200}, {Kind: "kernel", Reason: "ring_full", Count: 50}}
		}), 7, []*watchpostv1.Alert{{AgentId: "a", Host: "a", Kind: watchpostv1.AlertKind_ALERT_KIND_DROP_JUMP, Severity: watchpostv1.Severity_SEVERITY_MEDIUM, State: watchpostv1.AlertState_ALERT_STATE_OPEN, TimeUnixNano: at(7).UnixNano(),
			Message: "151 events lost since the previous heartbeat", BootId: "boot-1", InstanceId: "i1", Count: 151,
			Drops: []*watchpostv1.Counter{{Kind: "shipper", Reason: "spool_full", Count: 101}, {Kind: "kernel", Reason: "ring_full", Count: 50}}}}},
		{"restart without a clean stop", hb(1, "i2", nil), 8, []*watchpostv1.Alert{{AgentId: "a", Host: "a", Kind: watchpostv1.AlertKind_ALERT_KIND_UNCLEAN_RESTART, Severity: watchpostv1.Severity_SEVERITY_MEDIUM, State: watchpostv1.AlertState_ALERT_STATE_OPEN,
			TimeUnixNano: at(8).UnixNano(), BootId: "boot-1", InstanceId: "i2",
			Message: "a new agent process (boot boot-1, instance i2) without a clean stop of the previous one (boot boot-1, instance i1, last heartbeat 8 at 2026-11-03T10:00:07Z)"}}},
		{"final heartbeat, programs detached by the stop", hb(2, "i2", func(h *watchpostv1.Heartbeat) { h.Final, h.Programs = true, nil }), 9, nil},
		{"restart after a clean stop", hb(1, "i3", nil), 10, nil},
		{"replayed sequence", hb(1, "i3", nil), 11, []*watchpostv1.Alert{{AgentId: "a", Host: "a", Kind: watchpostv1.AlertKind_ALERT_KIND_SEQUENCE_GAP, Severity: watchpostv1.Severity_SEVERITY_MEDIUM, State: watchpostv1.AlertState_ALERT_STATE_OPEN,
			TimeUnixNano: at(11).UnixNano(), BootId: "boot-1", InstanceId: "i3",
			Message: "heartbeat sequence went back from 1 to 1 within one agent process (replayed or forged)"}}},
		{"reboot without a clean stop", hb(1, "i4", func(h *watchpostv1.Heartbeat) { h.BootId = "boot-2" }), 12, []*watchpostv1.Alert{{AgentId: "a", Host: "a",
			Kind: watchpostv1.AlertKind_ALERT_KIND_UNCLEAN_RESTART, Severity: watchpostv1.Severity_SEVERITY_MEDIUM, State: watchpostv1.AlertState_ALERT_STATE_OPEN, TimeUnixNano: at(12).UnixNano(), BootId: "boot-2", InstanceId: "i4",
			Message: "a new boot (boot boot-2, instance i4) without a clean stop of the previous one (boot boot-1, instance i3, last heartbeat 1 at 2026-11-03T10:00:11Z)"}}},
	}
	for _, s := range steps {
		got := e.Heartbeat("a", s.hb, at(s.at))
		if diff := cmp.Diff(s.want, got, protocmp.Transform()); diff != "" {
			t.Fatalf("%s: alerts (-want +got):\n%s", s.name, diff)
		}
	}
	// Silence: nothing before three intervals, one alert after, only once.
	if got := e.Check(at(14)); len(got) != 0 {
		t.Fatalf("check after 2 intervals: %v, want none", kinds(got))
	}
	got := e.Check(at(15))
	want := []*watchpostv1.Alert{{AgentId: "a", Host: "a", Kind: watchpostv1.AlertKind_ALERT_KIND_MISSED_HEARTBEAT, Severity: watchpostv1.Severity_SEVERITY_HIGH, State: watchpostv1.AlertState_ALERT_STATE_OPEN, TimeUnixNano: at(15).UnixNano(),
		BootId: "boot-2", InstanceId: "i4", Count: 3, Message: "no heartbeat for 3s (3 intervals of 1s); last was 1 at 2026-11-03T10:00:12Z"}}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Fatalf("missed heartbeat (-want +got):\n%s", diff)
	}
	if got := e.Check(at(30)); len(got) != 0 {
		t.Fatalf("second check of the same silence: %v, want none", kinds(got))
	}
	// A heartbeat closes the silence; an agent_stop event means no alert.
	e.Heartbeat("a", hb(2, "i4", func(h *watchpostv1.Heartbeat) { h.BootId = "boot-2" }), at(31))
	e.AgentStopped("a")
	if got := e.Check(at(60)); len(got) != 0 {
		t.Fatalf("check after a clean stop: %v, want none", kinds(got))
	}
}

func TestSeedAndCollectorDowntime(t *testing.T) {
	// The agent's last heartbeat is an hour old, but the collector only
	// started now: silence is counted from the start.
	e := New(Config{}, t0)
	e.Seed("a", hb(9, "i1", nil), t0.Add(-time.Hour))
	if got := e.Check(t0.Add(2 * time.Second)); len(got) != 0 {
		t.Fatalf("check 2s after start: %v, want none", kinds(got))
	}
	if got := e.Check(t0.Add(3 * time.Second)); len(got) != 1 || got[0].Kind != watchpostv1.AlertKind_ALERT_KIND_MISSED_HEARTBEAT {
		t.Fatalf("check 3s after start: %v, want one missed heartbeat", kinds(got))
	}
	// The seeded heartbeat counts for sequence checks.
	if got := e.Heartbeat("a", hb(10, "i1", nil), t0.Add(4*time.Second)); len(got) != 0 {
		t.Fatalf("next heartbeat after seed: %v, want none", kinds(got))
	}
}

// TestRemoteAgent follows an agent that streams to another collector of a
// fleet: its heartbeats there are the base for the next comparison here,
// and its silence is not this collector's to report until it returns.
func TestRemoteAgent(t *testing.T) {
	e := New(Config{}, t0)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	if got := e.Heartbeat("gw1", hb(1, "i1", nil), at(0)); len(got) != 0 {
		t.Fatalf("first heartbeat: %v", got)
	}
	// The agent moved to another collector, which stored heartbeats 2..9.
	e.SeedRemote("gw1", hb(9, "i1", nil), at(8))
	if got := e.Check(at(60)); len(got) != 0 {
		t.Fatalf("a remote agent's silence reported here: %v", kinds(got))
	}
	if r, ok := e.LastReceived("gw1"); !ok || !r.Equal(at(8)) {
		t.Fatalf("last received %v %v", r, ok)
	}
	// Back here: 10 follows 9, no gap; now this collector watches it again.
	if got := e.Heartbeat("gw1", hb(10, "i1", nil), at(61)); len(got) != 0 {
		t.Fatalf("returning agent: %v", kinds(got))
	}
	if got := kinds(e.Check(at(65))); len(got) != 1 || got[0] != watchpostv1.AlertKind_ALERT_KIND_MISSED_HEARTBEAT {
		t.Fatalf("silence after returning: %v", got)
	}
}

// TestSheddingIsNotLoss: events the configuration sheds (rate_limited,
// filtered) raise one informational events_shed alert when the shedding
// begins, none while it goes on; lost events (ring_full, queue_full,
// rejected) raise a drop_jump alert of medium severity, whatever is shed
// beside them.
func TestSheddingIsNotLoss(t *testing.T) {
	e := New(Config{DropJump: 100}, t0)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	// counters builds a heartbeat: the total counts rate-limited and lost
	// events (as the agent's health does), not filtered ones.
	counters := func(seq uint64, rateLimited, filtered, ringFull, queueFull, rejected uint64) *watchpostv1.Heartbeat {
		return hb(seq, "i1", func(h *watchpostv1.Heartbeat) {
			h.Dropped = rateLimited + ringFull + queueFull + rejected
			h.Drops = []*watchpostv1.Counter{{Kind: "file_open", Reason: "produced", Count: 100000 * seq},
				{Kind: "file_open", Reason: "rate_limited", Count: rateLimited}, {Kind: "file_open", Reason: "filtered", Count: filtered},
				{Kind: "net_connect", Reason: "ring_full", Count: ringFull}, {Kind: "exec", Reason: "queue_full", Count: queueFull},
				{Kind: "shipper", Reason: "rejected", Count: rejected}}
		})
	}
	alert := func(s int, kind watchpostv1.AlertKind, sev watchpostv1.Severity, count uint64, msg string, drops ...*watchpostv1.Counter) *watchpostv1.Alert {
		return &watchpostv1.Alert{AgentId: "a", Host: "a", Kind: kind, Severity: sev, State: watchpostv1.AlertState_ALERT_STATE_OPEN,
			TimeUnixNano: at(s).UnixNano(), BootId: "boot-1", InstanceId: "i1", Count: count, Message: msg, Drops: drops}
	}
	shed := watchpostv1.AlertKind_ALERT_KIND_EVENTS_SHED
	jump := watchpostv1.AlertKind_ALERT_KIND_DROP_JUMP
	steps := []struct {
		name string
		hb   *watchpostv1.Heartbeat
		want []*watchpostv1.Alert
	}{
		{"first", counters(1, 0, 0, 0, 0, 0), nil},
		{"rate limiting begins", counters(2, 5000, 300, 0, 0, 0), []*watchpostv1.Alert{alert(1, shed, watchpostv1.Severity_SEVERITY_INFO, 5300,
			"5300 events shed by configuration (file_open rate_limited 5000, file_open filtered 300) since the previous heartbeat",
			&watchpostv1.Counter{Kind: "file_open", Reason: "rate_limited", Count: 5000}, &watchpostv1.Counter{Kind: "file_open", Reason: "filtered", Count: 300})}},
		{"rate limiting goes on", counters(3, 12000, 900, 0, 0, 0), nil},
		{"loss beside shedding", counters(4, 20000, 1500, 70, 20, 30), []*watchpostv1.Alert{alert(3, jump, watchpostv1.Severity_SEVERITY_MEDIUM, 120,
			"120 events lost since the previous heartbeat",
			&watchpostv1.Counter{Kind: "net_connect", Reason: "ring_full", Count: 70}, &watchpostv1.Counter{Kind: "exec", Reason: "queue_full", Count: 20},
			&watchpostv1.Counter{Kind: "shipper", Reason: "rejected", Count: 30})}},
		{"shedding stops", counters(5, 20010, 1500, 70, 20, 30), nil},
		{"filtering alone begins again", counters(6, 20010, 1700, 70, 20, 30), []*watchpostv1.Alert{alert(5, shed, watchpostv1.Severity_SEVERITY_INFO, 200,
			"200 events shed by configuration (file_open filtered 200) since the previous heartbeat",
			&watchpostv1.Counter{Kind: "file_open", Reason: "filtered", Count: 200})}},
	}
	for i, s := range steps {
		got := e.Heartbeat("a", s.hb, at(i))
		if diff := cmp.Diff(s.want, got, protocmp.Transform()); diff != "" {
			t.Fatalf("%s: alerts (-want +got):\n%s", s.name, diff)
		}
	}
	if KindSeverity(shed) == KindSeverity(jump) {
		t.Fatalf("shedding and loss share severity %v", KindSeverity(shed))
	}
}
