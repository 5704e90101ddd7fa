package web

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

func TestJudgeHost(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	ago := func(d time.Duration) int64 { return now.Add(-d).UnixNano() }
	base := func(mut func(h *watchpostv1.HostInfo)) *watchpostv1.HostInfo {
		h := &watchpostv1.HostInfo{AgentId: "gw1", Host: "gw1", LastSeenUnixNano: ago(5 * time.Second), Programs: []string{"exec"},
			HeartbeatIntervalNanos: int64(10 * time.Second)}
		if mut != nil {
			mut(h)
		}
		return h
	}
	open := func(k watchpostv1.AlertKind, n int) map[watchpostv1.AlertKind]int {
		return map[watchpostv1.AlertKind]int{k: n}
	}
	for _, tc := range []struct {
		name    string
		h       *watchpostv1.HostInfo
		drops   uint64
		kinds   map[watchpostv1.AlertKind]int
		status  string
		reasons string
	}{
		{"healthy", base(nil), 0, nil, hostOK, ""},
		{"silent after 3 intervals", base(func(h *watchpostv1.HostInfo) { h.LastSeenUnixNano = ago(31 * time.Second) }), 0, nil, hostSilent, "no heartbeat for 31s"},
		{"not yet silent", base(func(h *watchpostv1.HostInfo) { h.LastSeenUnixNano = ago(29 * time.Second) }), 0, nil, hostOK, ""},
		{"its own interval", base(func(h *watchpostv1.HostInfo) {
			h.LastSeenUnixNano, h.HeartbeatIntervalNanos = ago(4*time.Second), int64(time.Second)
		}), 0, nil, hostSilent, "no heartbeat for 4s"},
		{"never", base(func(h *watchpostv1.HostInfo) { h.LastSeenUnixNano = 0 }), 0, nil, hostSilent, "no heartbeat ever received"},
		{"stopped cleanly", base(func(h *watchpostv1.HostInfo) { h.LastSeenUnixNano, h.Stopped = ago(time.Hour), true }), 0, nil, hostStopped, "stopped cleanly 1h0m0s ago"},
		{"dropping", base(nil), 42, nil, hostDropping, "42 events dropped in the last 10m0s"},
		{"drop jump alert", base(nil), 0, open(watchpostv1.AlertKind_ALERT_KIND_DROP_JUMP, 2), hostDropping, "2 open drop_jump alerts"},
		{"detached", base(nil), 0, open(watchpostv1.AlertKind_ALERT_KIND_PROGRAMS_DETACHED, 1), hostDegraded, "1 open programs_detached alerts"},
		{"spool backlog", base(func(h *watchpostv1.HostInfo) { h.SpoolBytes = 4096 }), 0, nil, hostDegraded, "4096 bytes waiting in the spool"},
		{"no programs", base(func(h *watchpostv1.HostInfo) { h.Programs = nil }), 0, nil, hostDegraded, "no kernel program attached"},
		{"silent wins over dropping", base(func(h *watchpostv1.HostInfo) { h.LastSeenUnixNano = ago(time.Minute) }), 7, open(watchpostv1.AlertKind_ALERT_KIND_MISSED_HEARTBEAT, 1), hostSilent,
			"no heartbeat for 1m0s; 7 events dropped in the last 10m0s; 1 open missed_heartbeat alerts"},
	} {
		got := judgeHost(tc.h, now, tc.drops, tc.kinds)
		if got.Status != tc.status || strings.Join(got.Reasons, "; ") != tc.reasons {
			t.Errorf("%s: %s %q, want %s %q", tc.name, got.Status, got.Reasons, tc.status, tc.reasons)
		}
	}
}

// fakeQuery answers QueryEvents from canned events, filtered by type and
// time, as the store would (oldest first).
type fakeQuery struct {
	watchpostv1.UnimplementedQueryServiceServer
	events []*watchpostv1.Event
}

func (f *fakeQuery) QueryEvents(_ context.Context, req *watchpostv1.QueryEventsRequest) (*watchpostv1.QueryEventsResponse, error) {
	fl := req.GetFilter()
	var out []*watchpostv1.Event
	for _, ev := range f.events {
		ts, typ := ev.GetHeader().GetTimeUnixNano(), ev.GetHeader().GetType()
		okType := len(fl.GetTypes()) == 0
		for _, t := range fl.GetTypes() {
			okType = okType || t == typ
		}
		if okType && (fl.GetSinceUnixNano() == 0 || ts >= fl.GetSinceUnixNano()) && (fl.GetUntilUnixNano() == 0 || ts <= fl.GetUntilUnixNano()) &&
			(fl.GetPathPrefix() == "" || strings.HasPrefix(ev.GetFile().GetPath(), fl.GetPathPrefix())) {
			out = append(out, ev)
		}
	}
	return &watchpostv1.QueryEventsResponse{Events: out}, nil
}

func testDashboard(t *testing.T, q watchpostv1.QueryServiceServer) *Dashboard {
	t.Helper()
	d, err := New(Config{SessionTTL: time.Hour, MaxSessions: 4, MaxLimit: 10000, RateStep: 10 * time.Second, RateBuckets: 6}, Deps{
		Logger: zerolog.Nop(), Query: q, Subscribe: func(*watchpostv1.EventFilter) Tail { return nil },
		Authenticate: func(string) (Identity, bool) { return Identity{}, false },
		UpdateAlerts: func(context.Context, string, *watchpostv1.UpdateAlertsRequest) (*watchpostv1.UpdateAlertsResponse, error) {
			return nil, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestNewIndustrialAndDrops: what is new in the last 24 h against the week
// before, and the drop counter's rise from health events.
func TestNewIndustrialAndDrops(t *testing.T) {
	now := time.Now()
	at := func(d time.Duration) *watchpostv1.Header {
		return &watchpostv1.Header{TimeUnixNano: now.Add(-d).UnixNano(), Host: "gw1", AgentId: "gw1"}
	}
	modbus := func(d time.Duration, exe, peer string) *watchpostv1.Event {
		h := at(d)
		h.Type = watchpostv1.EventType_EVENT_TYPE_NET_CONNECT
		return &watchpostv1.Event{Header: h, Process: &watchpostv1.Process{Pid: 10, Exe: exe, Comm: exe[strings.LastIndex(exe, "/")+1:]},
			Detail:     &watchpostv1.Event_Net{Net: &watchpostv1.Net{DstAddr: peer, DstPort: 502, Direction: "outbound", Protocol: "tcp"}},
			Industrial: &watchpostv1.Industrial{Protocol: "modbus"}}
	}
	serial := func(d time.Duration, dev string) *watchpostv1.Event {
		h := at(d)
		h.Type = watchpostv1.EventType_EVENT_TYPE_FILE_OPEN
		return &watchpostv1.Event{Header: h, Process: &watchpostv1.Process{Pid: 11, Exe: "/usr/bin/plcflash", Comm: "plcflash"},
			Detail:     &watchpostv1.Event_File{File: &watchpostv1.File{Path: dev, Write: true}},
			Industrial: &watchpostv1.Industrial{Fieldbus: "modbus_rtu", Device: dev}}
	}
	health := func(d time.Duration, dropped uint64) *watchpostv1.Event {
		h := at(d)
		h.Type = watchpostv1.EventType_EVENT_TYPE_HEALTH
		return &watchpostv1.Event{Header: h, Process: &watchpostv1.Process{Pid: 1}, Detail: &watchpostv1.Event_Health{Health: &watchpostv1.Health{Dropped: dropped}}}
	}
	q := &fakeQuery{events: []*watchpostv1.Event{
		modbus(72*time.Hour, "/opt/scada/poller", "10.0.0.5"), // seen before: not new
		serial(48*time.Hour, "/dev/ttyUSB0"),
		modbus(3*time.Hour, "/opt/scada/poller", "10.0.0.5"),
		modbus(2*time.Hour, "/usr/bin/python3", "10.0.0.5"), // a new process speaking modbus
		modbus(time.Hour, "/opt/scada/poller", "10.0.0.9"),  // a new peer
		serial(30*time.Minute, "/dev/ttyUSB0"),
		serial(20*time.Minute, "/dev/ttyS1"), // a new device
		health(9*time.Minute, 100), health(5*time.Minute, 130), health(3*time.Minute, 5), health(time.Minute, 25),
	}}
	d := testDashboard(t, q)
	v, err := d.newIndustrial(context.Background(), now)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range v.Flows {
		got = append(got, f.Exe+"→"+f.Peer)
	}
	for _, u := range v.Devices {
		got = append(got, u.Exe+" "+u.Device)
	}
	if want := "/opt/scada/poller→10.0.0.9 /usr/bin/python3→10.0.0.5 /usr/bin/plcflash /dev/ttyS1"; strings.Join(got, " ") != want {
		t.Fatalf("new industrial activity %q, want %q", strings.Join(got, " "), want)
	}
	drops, more, err := d.recentDrops(context.Background(), now)
	if err != nil || more {
		t.Fatal(err, more)
	}
	// 100 -> 130 (+30), restart to 5 (+5), 5 -> 25 (+20).
	if drops["gw1"] != 55 {
		t.Fatalf("drops in the window: %v, want 55", drops)
	}
}
