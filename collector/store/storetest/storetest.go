// Package storetest is the test suite every store.Store engine passes: the
// embedded SQLite store and PostgreSQL run the same cases, so the query
// language, deduplication, the agent registry, alerts and retention mean the
// same on both.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/watchpost/watchpost/collector/store"
	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

// Opener returns a new, empty store; the suite closes it.
type Opener func(t *testing.T) store.Store

// Run runs every case against stores from open.
func Run(t *testing.T, open Opener) {
	for _, c := range []struct {
		name string
		f    func(t *testing.T, s store.Store)
	}{
		{"Dedup", testDedup},
		{"ConcurrentDedup", testConcurrentDedup},
		{"QueryFilters", testQueryFilters},
		{"QueryLimit", testQueryLimit},
		{"QueryManyBatches", testManyBatches},
		{"HostsAndHeartbeats", testHosts},
		{"Alerts", testAlerts},
		{"AlertTriage", testAlertTriage},
		{"AlertFilter", testAlertFilter},
		{"RetentionMaxAge", testRetention},
		{"DetectionAlerts", testDetectionAlerts},
		{"Commands", testCommands},
		{"QuotaKeepsEachAgentsShare", testQuota},
		{"QuotaPerAgent", testQuotaPerAgent},
		{"Refusals", testRefusals},
		{"HostIsTheIdentity", testHostBinding},
		{"CostBound", testCostBound},
		{"BatchWithoutEvents", testEmptyBatch},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("close: %v", err)
				}
			})
			c.f(t, s)
		})
	}
}

// base is the event time of event 0.
var base = time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC).UnixNano()

// Event builds event i of host: a cycle of exec, file open (and a rename
// every 8th), Modbus connect and exit with values derived from i.
func Event(i int, host string) *watchpostv1.Event {
	ev := &watchpostv1.Event{
		Header: &watchpostv1.Header{Host: host, Seq: uint64(i + 1), TimeUnixNano: base + int64(i)*int64(time.Millisecond)},
		Process: &watchpostv1.Process{Pid: uint32(1000 + i%50), Ppid: 1, Comm: "proc", Exe: "/usr/bin/proc",
			Args: []string{"proc", fmt.Sprint(i)}},
	}
	switch i % 4 {
	case 0:
		ev.Header.Type = watchpostv1.EventType_EVENT_TYPE_EXEC
		ev.Process.Exe, ev.Process.Comm = "/opt/plc/bin/modbusd", "modbusd"
		ev.Detail = &watchpostv1.Event_Exec{Exec: &watchpostv1.Exec{}}
	case 1:
		ev.Header.Type = watchpostv1.EventType_EVENT_TYPE_FILE_OPEN
		ev.Detail = &watchpostv1.Event_File{File: &watchpostv1.File{Path: fmt.Sprintf("/var/lib/plc/project-%d/cfg", i%13)}}
		if i%8 == 5 {
			ev.Header.Type = watchpostv1.EventType_EVENT_TYPE_FILE_RENAME
			ev.Detail = &watchpostv1.Event_File{File: &watchpostv1.File{Path: "/tmp/x", NewPath: fmt.Sprintf("/etc/plc/%d.conf", i)}}
		}
	case 2:
		ev.Header.Type = watchpostv1.EventType_EVENT_TYPE_NET_CONNECT
		ev.Detail = &watchpostv1.Event_Net{Net: &watchpostv1.Net{SrcPort: uint32(40000 + i), DstPort: 502}}
		ev.Industrial = &watchpostv1.Industrial{Protocol: "modbus"}
	case 3:
		ev.Header.Type = watchpostv1.EventType_EVENT_TYPE_EXIT
		ev.Process.Comm = "sh"
		ev.Detail = &watchpostv1.Event_Exit{Exit: &watchpostv1.Exit{}}
	}
	return ev
}

// Batch builds the input of events [from, to) of agent, naming the host
// agent (as an agent does whose identity is its host name).
func Batch(agent, boot string, seq uint64, from, to int) store.BatchInput {
	b := store.BatchInput{Key: store.BatchKey{AgentID: agent, BootID: boot, RunID: "run-1", BatchSeq: seq}}
	for i := from; i < to; i++ {
		ev := Event(i, agent)
		raw, err := proto.Marshal(ev)
		if err != nil {
			panic(err)
		}
		b.Events = append(b.Events, ev)
		b.Raw = append(b.Raw, raw)
	}
	return b
}

// query runs a query without a cost bound, in the shape most cases want.
func query(ctx context.Context, s store.Store, f store.Filter, limit int) ([]*watchpostv1.Event, bool, error) {
	res, err := s.Query(ctx, store.Query{Filter: f, Limit: limit})
	return res.Events, res.Truncated, err
}

func seqs(evs []*watchpostv1.Event) []uint64 {
	out := make([]uint64, len(evs))
	for i, ev := range evs {
		out[i] = ev.Header.Seq
	}
	return out
}

func count(t *testing.T, s store.Store, f store.Filter) int {
	t.Helper()
	evs, more, err := query(context.Background(), s, f, 1_000_000)
	if err != nil || more {
		t.Fatalf("query %+v: %v (more %v)", f, err, more)
	}
	return len(evs)
}

func mustStore(t *testing.T, s store.Store, bs ...store.BatchInput) []store.Result {
	t.Helper()
	res, err := s.StoreBatches(context.Background(), bs)
	if err != nil {
		t.Fatalf("StoreBatches: %v", err)
	}
	return res
}

func testDedup(t *testing.T, s store.Store) {
	b1, b2, b3 := Batch("a", "boot-1", 1, 0, 100), Batch("a", "boot-1", 2, 100, 200), Batch("a", "boot-1", 3, 200, 250)
	if got := mustStore(t, s, b1, b2); !slices.Equal(got, []store.Result{store.Stored, store.Stored}) {
		t.Fatalf("first store: %v", got)
	}
	// Resent with a new one between them, and one key twice in one call.
	if got := mustStore(t, s, b2, b3, b1, b3); !slices.Equal(got, []store.Result{store.Duplicate, store.Stored, store.Duplicate, store.Duplicate}) {
		t.Fatalf("resend: %v", got)
	}
	// Another boot or run with the same sequence is another batch.
	other := Batch("a", "boot-2", 1, 300, 310)
	if got := mustStore(t, s, other); got[0] != store.Stored {
		t.Fatalf("other boot: %v", got)
	}
	if n := count(t, s, store.Filter{AgentID: "a"}); n != 260 {
		t.Fatalf("stored %d events, want 260", n)
	}
}

// testConcurrentDedup stores the same batches from several goroutines at
// once (writers racing on a redelivery): each is stored exactly once.
func testConcurrentDedup(t *testing.T, s store.Store) {
	const writers, batches = 4, 12
	var wg sync.WaitGroup
	stored := make([]int, batches)
	var mu sync.Mutex
	errs := make(chan error, writers)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			var in []store.BatchInput
			for k := 0; k < batches; k++ {
				i := (k + w*5) % batches // each writer in another order
				in = append(in, Batch("c", "boot-1", uint64(i+1), i*10, i*10+10))
			}
			res, err := s.StoreBatches(context.Background(), in)
			if err != nil {
				errs <- err
				return
			}
			mu.Lock()
			for k, r := range res {
				if r == store.Stored {
					stored[in[k].Key.BatchSeq-1]++
				}
			}
			mu.Unlock()
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i, n := range stored {
		if n != 1 {
			t.Errorf("batch %d reported stored %d times", i+1, n)
		}
	}
	if n := count(t, s, store.Filter{AgentID: "c"}); n != batches*10 {
		t.Fatalf("stored %d events, want %d", n, batches*10)
	}
}

func testQueryFilters(t *testing.T, s store.Store) {
	mustStore(t, s, Batch("a", "boot-1", 1, 0, 200), Batch("a", "boot-1", 2, 200, 400), Batch("b", "boot-9", 1, 1000, 1040))
	ctx := context.Background()
	// One event, every field and the identity filled in.
	evs, more, err := query(ctx, s, store.Filter{Host: "a", Port: 40002, Types: []watchpostv1.EventType{watchpostv1.EventType_EVENT_TYPE_NET_CONNECT}}, 100)
	if err != nil || more || len(evs) != 1 {
		t.Fatalf("one event: %v %v %v", evs, more, err)
	}
	want := Event(2, "a")
	want.Header.AgentId, want.Header.BootId = "a", "boot-1"
	if !proto.Equal(evs[0], want) {
		t.Fatalf("got %v\nwant %v", evs[0], want)
	}
	ms := func(i int) time.Time { return time.Unix(0, base+int64(i)*int64(time.Millisecond)) }
	cases := []struct {
		name string
		f    store.Filter
		want []uint64
	}{
		{"pid", store.Filter{PID: 1007, AgentID: "a"}, []uint64{8, 58, 108, 158, 208, 258, 308, 358}},
		{"path prefix", store.Filter{PathPrefix: "/var/lib/plc/project-10", Host: "a"}, nil}, // computed below
		{"rename target", store.Filter{PathPrefix: "/etc/plc/3", AgentID: "a"}, nil},         // computed below
		{"text", store.Filter{Text: "project-12/", AgentID: "a", Until: ms(199)}, nil},       // computed below
		{"exe base name and type", store.Filter{Exe: "modbusd", Types: []watchpostv1.EventType{watchpostv1.EventType_EVENT_TYPE_EXEC}, AgentID: "b", Since: ms(1020)}, []uint64{1021, 1025, 1029, 1033, 1037}},
		{"exe path", store.Filter{Exe: "/opt/plc/bin/modbusd", AgentID: "b", Until: ms(1010)}, []uint64{1001, 1005, 1009}},
		{"comm", store.Filter{Exe: "sh", AgentID: "b", Since: ms(1030)}, []uint64{1032, 1036, 1040}},
		{"port", store.Filter{Port: 40102}, []uint64{103}},
		{"protocol and time", store.Filter{Protocol: "modbus", Since: ms(390), Until: ms(1006)}, []uint64{391, 395, 399, 1003, 1007}},
		{"text absent", store.Filter{Text: "project-99/"}, nil},
		{"agent and host mismatch", store.Filter{AgentID: "a", Host: "b"}, nil},
		{"absent port", store.Filter{Port: 9999}, nil},
	}
	// Event i opens project-(i%13)/cfg when i%4 == 1 (except the renames,
	// i%8 == 5, whose target is /etc/plc/<i>.conf).
	for i := 0; i < 400; i++ {
		opens, rename := i%4 == 1 && i%8 != 5, i%8 == 5
		if opens && i%13 == 10 {
			cases[1].want = append(cases[1].want, uint64(i+1))
		}
		if rename && fmt.Sprint(i)[0] == '3' {
			cases[2].want = append(cases[2].want, uint64(i+1))
		}
		if opens && i%13 == 12 && i <= 199 {
			cases[3].want = append(cases[3].want, uint64(i+1))
		}
	}
	for _, c := range cases {
		evs, more, err := query(ctx, s, c.f, 1000)
		if err != nil || more {
			t.Errorf("%s: %v (more %v)", c.name, err, more)
			continue
		}
		if got := seqs(evs); !slices.Equal(got, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, got, c.want)
		}
	}
}

func testQueryLimit(t *testing.T, s store.Store) {
	mustStore(t, s, Batch("a", "boot-1", 1, 0, 100), Batch("a", "boot-1", 2, 100, 200), Batch("a", "boot-1", 3, 200, 300))
	evs, more, err := query(context.Background(), s, store.Filter{Types: []watchpostv1.EventType{watchpostv1.EventType_EVENT_TYPE_EXIT}}, 3)
	if err != nil || !more {
		t.Fatalf("limit: %v more=%v", err, more)
	}
	if got := seqs(evs); !slices.Equal(got, []uint64{292, 296, 300}) {
		t.Fatalf("newest 3 exits, oldest first: got %v", got)
	}
	if _, _, err := query(context.Background(), s, store.Filter{}, 0); err == nil {
		t.Fatal("limit 0 accepted")
	}
}

// testManyBatches stores 1500 one-event batches: the newest events come
// from the newest summaries, and an event of the oldest batch is still found
// past however many summaries an engine reads at a time.
func testManyBatches(t *testing.T, s store.Store) {
	var in []store.BatchInput
	for i := 0; i < 1500; i++ {
		in = append(in, Batch("m", "boot-1", uint64(i+1), i, i+1))
	}
	mustStore(t, s, in...)
	ctx := context.Background()
	evs, more, err := query(ctx, s, store.Filter{AgentID: "m"}, 3)
	if err != nil || !more || !slices.Equal(seqs(evs), []uint64{1498, 1499, 1500}) {
		t.Fatalf("newest 3: %v more=%v %v", seqs(evs), more, err)
	}
	evs, more, err = query(ctx, s, store.Filter{Port: 40002}, 10)
	if err != nil || more || !slices.Equal(seqs(evs), []uint64{3}) {
		t.Fatalf("port of the oldest batches: %v more=%v %v", seqs(evs), more, err)
	}
	if n := count(t, s, store.Filter{AgentID: "m"}); n != 1500 {
		t.Fatalf("all: %d events", n)
	}
}

func testHosts(t *testing.T, s store.Store) {
	ctx := context.Background()
	mustStore(t, s, Batch("a", "boot-1", 1, 0, 30), Batch("a", "boot-1", 2, 30, 50))
	t0 := time.Now()
	hb1 := &watchpostv1.Heartbeat{Seq: 1, BootId: "boot-1", RunId: "run-1", Host: "gw-a", Version: "1.2", Kernel: "6.1.0",
		CapturePath: "tp_btf+tracepoint", Produced: 90, Delivered: 80, Dropped: 3, Programs: []string{"exec"},
		Drops: []*watchpostv1.Counter{{Kind: "file_open", Reason: "ring_full", Count: 3}}, SpoolBytes: 4096}
	hb2 := proto.Clone(hb1).(*watchpostv1.Heartbeat)
	hb2.Seq, hb2.Produced = 2, 120
	for i, hb := range []*watchpostv1.Heartbeat{hb1, hb2} {
		if err := s.RecordHeartbeat(ctx, "a", hb, t0.Add(time.Duration(i)*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 2; i++ {
		if err := s.RecordRejected(ctx, "a"); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.RecordRejected(ctx, "z"); err != nil {
		t.Fatal(err)
	}
	hosts, err := s.Hosts(ctx)
	if err != nil || len(hosts) != 2 {
		t.Fatalf("hosts: %v %v", hosts, err)
	}
	a, z := hosts[0], hosts[1]
	if a.AgentId != "a" || a.Host != "a" || a.ClaimedHost != "gw-a" || a.EventsStored != 50 || a.BatchesStored != 2 || a.BatchesRejected != 2 ||
		a.HeartbeatSeq != 2 || a.Produced != 120 || a.Delivered != 80 || a.Dropped != 3 || a.Version != "1.2" ||
		a.Kernel != "6.1.0" || a.CapturePath != "tp_btf+tracepoint" || a.BootId != "boot-1" || a.SpoolBytes != 4096 ||
		!slices.Equal(a.Programs, []string{"exec"}) || len(a.Drops) != 1 || a.Drops[0].Count != 3 || a.LastSeenUnixNano < t0.UnixNano() {
		t.Errorf("host a: %v", a)
	}
	if z.AgentId != "z" || z.BatchesRejected != 1 || z.EventsStored != 0 {
		t.Errorf("host z: %v", z)
	}
	last, err := s.LastHeartbeats(ctx)
	if err != nil || len(last) != 1 {
		t.Fatalf("last heartbeats: %v %v", last, err)
	}
	if got := last["a"]; got.Heartbeat.GetSeq() != 2 || !got.Received.Equal(t0.Add(time.Second)) {
		t.Errorf("last heartbeat of a: seq %d at %v, want 2 at %v", got.Heartbeat.GetSeq(), got.Received, t0.Add(time.Second))
	}
}

func testAlerts(t *testing.T, s store.Store) {
	ctx := context.Background()
	t0 := time.Now().Add(-time.Hour)
	var in []*watchpostv1.Alert
	for i := 0; i < 5; i++ {
		agent := "a"
		if i%2 == 1 {
			agent = "b"
		}
		in = append(in, &watchpostv1.Alert{AgentId: agent, TimeUnixNano: t0.Add(time.Duration(i) * time.Minute).UnixNano(),
			Kind: watchpostv1.AlertKind_ALERT_KIND_SEQUENCE_GAP, Count: uint64(i), Message: fmt.Sprintf("alert %d", i),
			Severity: watchpostv1.Severity_SEVERITY_MEDIUM})
	}
	if err := s.RecordAlerts(ctx, in); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(in); i++ {
		if in[i].Id <= in[i-1].Id {
			t.Fatalf("alert ids not increasing: %d then %d", in[i-1].Id, in[i].Id)
		}
	}
	got, err := s.Alerts(ctx, store.AlertFilter{AgentID: "a"}, 10)
	if err != nil || len(got) != 3 || got[0].Count != 4 || got[2].Count != 0 || got[0].Id != in[4].Id || got[0].Severity != watchpostv1.Severity_SEVERITY_MEDIUM {
		t.Fatalf("alerts of a, newest first: %v %v", got, err)
	}
	got, err = s.Alerts(ctx, store.AlertFilter{Since: t0.Add(150 * time.Second)}, 2)
	if err != nil || len(got) != 2 || got[0].Count != 4 || got[1].Count != 3 {
		t.Fatalf("alerts since, limited: %v %v", got, err)
	}
	if err := s.RecordAlerts(ctx, nil); err != nil {
		t.Fatal(err)
	}
}

func testRetention(t *testing.T, s store.Store) {
	ctx := context.Background()
	mustStore(t, s, Batch("a", "boot-1", 1, 0, 100))
	if err := s.RecordHeartbeat(ctx, "a", &watchpostv1.Heartbeat{Seq: 1, BootId: "boot-1", Host: "gw-a"}, time.Now()); err != nil {
		t.Fatal(err)
	}
	// Nothing is old enough yet.
	dropped, _, err := s.EnforceRetention(ctx, store.Retention{MaxAge: time.Hour}, time.Now())
	if err != nil || len(dropped) != 0 {
		t.Fatalf("retention now: %v %v", dropped, err)
	}
	if n := count(t, s, store.Filter{}); n != 100 {
		t.Fatalf("%d events after a retention that dropped nothing", n)
	}
	// Three hours later the hour of receipt is older than max_age.
	dropped, _, err = s.EnforceRetention(ctx, store.Retention{MaxAge: time.Hour}, time.Now().Add(3*time.Hour))
	if err != nil || len(dropped) == 0 {
		t.Fatalf("retention later: %v %v", dropped, err)
	}
	if n := count(t, s, store.Filter{}); n != 0 {
		t.Fatalf("%d events left after their partition was dropped", n)
	}
	// The registry stays; the batch key is forgotten with its partition.
	hosts, err := s.Hosts(ctx)
	if err != nil || len(hosts) != 1 || hosts[0].EventsStored != 100 {
		t.Fatalf("hosts after retention: %v %v", hosts, err)
	}
	if got := mustStore(t, s, Batch("a", "boot-1", 2, 100, 110)); got[0] != store.Stored {
		t.Fatalf("store after retention: %v", got)
	}
}

var alertT0 = time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)

func triageAlerts() []*watchpostv1.Alert {
	mk := func(agent string, kind watchpostv1.AlertKind, sev watchpostv1.Severity, min int) *watchpostv1.Alert {
		return &watchpostv1.Alert{AgentId: agent, Host: agent + ".plant", Kind: kind, Severity: sev,
			State: watchpostv1.AlertState_ALERT_STATE_OPEN, TimeUnixNano: alertT0.Add(time.Duration(min) * time.Minute).UnixNano(), Message: "m"}
	}
	return []*watchpostv1.Alert{
		mk("gw1", watchpostv1.AlertKind_ALERT_KIND_MISSED_HEARTBEAT, watchpostv1.Severity_SEVERITY_HIGH, 0),
		mk("gw2", watchpostv1.AlertKind_ALERT_KIND_SEQUENCE_GAP, watchpostv1.Severity_SEVERITY_MEDIUM, 1),
		mk("gw1", watchpostv1.AlertKind_ALERT_KIND_PROGRAMS_DETACHED, watchpostv1.Severity_SEVERITY_CRITICAL, 2),
		mk("gw2", watchpostv1.AlertKind_ALERT_KIND_DROP_JUMP, watchpostv1.Severity_SEVERITY_MEDIUM, 3),
	}
}

// testAlertTriage walks alerts through acknowledge, resolve and reopen and checks what is stored, who and when, and that an
// update naming an unknown alert changes nothing.
func testAlertTriage(t *testing.T, s store.Store) {
	ctx := context.Background()
	as := triageAlerts()
	if err := s.RecordAlerts(ctx, as); err != nil {
		t.Fatal(err)
	}
	at := alertT0.Add(time.Hour)
	got, err := s.UpdateAlerts(ctx, store.AlertUpdate{IDs: []uint64{as[0].Id, as[2].Id}, State: watchpostv1.AlertState_ALERT_STATE_ACKNOWLEDGED,
		By: "ops", Note: "looking", At: at})
	if err != nil {
		t.Fatal(err)
	}
	wanalertT0 := proto.Clone(as[0]).(*watchpostv1.Alert)
	wanalertT0.State, wanalertT0.AcknowledgedBy, wanalertT0.AcknowledgedUnixNano, wanalertT0.Note = watchpostv1.AlertState_ALERT_STATE_ACKNOWLEDGED, "ops", at.UnixNano(), "looking"
	if d := cmp.Diff(wanalertT0, got[0], protocmp.Transform()); d != "" {
		t.Fatalf("acknowledged alert (-want +got):\n%s", d)
	}
	// A second acknowledgement keeps the first; resolving records who resolved.
	later := at.Add(time.Minute)
	if _, err := s.UpdateAlerts(ctx, store.AlertUpdate{IDs: []uint64{as[0].Id}, State: watchpostv1.AlertState_ALERT_STATE_ACKNOWLEDGED, By: "soc", At: later}); err != nil {
		t.Fatal(err)
	}
	got, err = s.UpdateAlerts(ctx, store.AlertUpdate{IDs: []uint64{as[0].Id}, State: watchpostv1.AlertState_ALERT_STATE_RESOLVED, By: "soc", Note: "agent restarted by maintenance", At: later})
	if err != nil {
		t.Fatal(err)
	}
	wanalertT0.State, wanalertT0.ResolvedBy, wanalertT0.ResolvedUnixNano, wanalertT0.Note = watchpostv1.AlertState_ALERT_STATE_RESOLVED, "soc", later.UnixNano(), "agent restarted by maintenance"
	if d := cmp.Diff(wanalertT0, got[0], protocmp.Transform()); d != "" {
		t.Fatalf("resolved alert (-want +got):\n%s", d)
	}
	// Stored as returned.
	stored, err := s.Alerts(ctx, store.AlertFilter{States: []watchpostv1.AlertState{watchpostv1.AlertState_ALERT_STATE_RESOLVED}}, 10)
	if err != nil || len(stored) != 1 {
		t.Fatalf("resolved alerts: %v %v", stored, err)
	}
	if d := cmp.Diff(wanalertT0, stored[0], protocmp.Transform()); d != "" {
		t.Fatalf("stored resolved alert (-want +got):\n%s", d)
	}
	// Reopen clears the resolution, keeps the acknowledgement.
	got, err = s.UpdateAlerts(ctx, store.AlertUpdate{IDs: []uint64{as[0].Id}, State: watchpostv1.AlertState_ALERT_STATE_OPEN, By: "soc", At: later})
	if err != nil {
		t.Fatal(err)
	}
	if a := got[0]; a.State != watchpostv1.AlertState_ALERT_STATE_OPEN || a.ResolvedBy != "" || a.ResolvedUnixNano != 0 || a.AcknowledgedBy != "ops" {
		t.Fatalf("reopened alert: %v", a)
	}
	// All or none: an unknown id fails the update and changes nothing.
	_, err = s.UpdateAlerts(ctx, store.AlertUpdate{IDs: []uint64{as[1].Id, 999}, State: watchpostv1.AlertState_ALERT_STATE_RESOLVED, By: "soc", At: later})
	if !errors.Is(err, store.ErrUnknownAlert) {
		t.Fatalf("update with an unknown id: %v", err)
	}
	open, err := s.Alerts(ctx, store.AlertFilter{AgentID: "gw2", States: []watchpostv1.AlertState{watchpostv1.AlertState_ALERT_STATE_OPEN}}, 10)
	if err != nil || len(open) != 2 {
		t.Fatalf("gw2's open alerts after the refused update: %v %v", open, err)
	}
	for _, bad := range []store.AlertUpdate{
		{State: watchpostv1.AlertState_ALERT_STATE_RESOLVED, By: "x", At: at},
		{IDs: []uint64{1}, State: watchpostv1.AlertState_ALERT_STATE_UNSPECIFIED, By: "x", At: at},
		{IDs: []uint64{1}, State: watchpostv1.AlertState_ALERT_STATE_RESOLVED, At: at},
		{IDs: []uint64{1}, State: watchpostv1.AlertState_ALERT_STATE_RESOLVED, By: "x", At: at, Note: string(make([]byte, store.MaxAlertNote+1))},
	} {
		if _, err := s.UpdateAlerts(ctx, bad); err == nil {
			t.Fatalf("update %+v accepted", bad)
		}
	}
}

// testAlertFilter checks every filter field of the engine's query against
// store.AlertFilter.Match, the reference meaning.
func testAlertFilter(t *testing.T, s store.Store) {
	ctx := context.Background()
	as := triageAlerts()
	if err := s.RecordAlerts(ctx, as); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateAlerts(ctx, store.AlertUpdate{IDs: []uint64{as[1].Id}, State: watchpostv1.AlertState_ALERT_STATE_ACKNOWLEDGED, By: "ops", At: alertT0}); err != nil {
		t.Fatal(err)
	}
	all, err := s.Alerts(ctx, store.AlertFilter{}, 100)
	if err != nil || len(all) != 4 {
		t.Fatalf("all alerts: %v %v", all, err)
	}
	for name, f := range map[string]store.AlertFilter{
		"agent":     {AgentID: "gw1"},
		"host":      {Host: "gw2.plant"},
		"since":     {Since: alertT0.Add(time.Minute)},
		"until":     {Until: alertT0.Add(2 * time.Minute)},
		"open":      {States: []watchpostv1.AlertState{watchpostv1.AlertState_ALERT_STATE_OPEN}},
		"ack":       {States: []watchpostv1.AlertState{watchpostv1.AlertState_ALERT_STATE_ACKNOWLEDGED, watchpostv1.AlertState_ALERT_STATE_RESOLVED}},
		"high+":     {MinSeverity: watchpostv1.Severity_SEVERITY_HIGH},
		"kinds":     {Kinds: []watchpostv1.AlertKind{watchpostv1.AlertKind_ALERT_KIND_DROP_JUMP, watchpostv1.AlertKind_ALERT_KIND_SEQUENCE_GAP}},
		"before":    {BeforeID: as[2].Id},
		"combined":  {AgentID: "gw2", States: []watchpostv1.AlertState{watchpostv1.AlertState_ALERT_STATE_OPEN}, MinSeverity: watchpostv1.Severity_SEVERITY_MEDIUM},
		"nothing":   {AgentID: "gw3"},
		"every one": {},
	} {
		got, err := s.Alerts(ctx, f, 100)
		if err != nil {
			t.Fatal(err)
		}
		var want []uint64
		for _, a := range all {
			if f.Match(a) {
				want = append(want, a.Id)
			}
		}
		var ids []uint64
		for _, a := range got {
			ids = append(ids, a.Id)
		}
		if d := cmp.Diff(want, ids); d != "" {
			t.Errorf("%s: ids (-match +store):\n%s", name, d)
		}
	}
	if got, _ := s.Alerts(ctx, store.AlertFilter{States: []watchpostv1.AlertState{watchpostv1.AlertState_ALERT_STATE_OPEN}}, 100); len(got) != 3 {
		t.Fatalf("open alerts: %d, want 3", len(got))
	}
}

func detection(rule string, techniques ...string) *watchpostv1.Alert {
	return &watchpostv1.Alert{AgentId: "a1", Host: "gw-a1", Kind: watchpostv1.AlertKind_ALERT_KIND_DETECTION, TimeUnixNano: base,
		Severity: watchpostv1.Severity_SEVERITY_HIGH, Message: rule,
		Detection: &watchpostv1.DetectionAlert{RuleId: rule, Techniques: techniques}}
}

// testDetectionAlerts: alerts carried by a batch are stored with it, once
// (a resent batch adds none), and found by rule and by technique (a
// technique also finds its sub-techniques, never a longer id).
func testDetectionAlerts(t *testing.T, s store.Store) {
	ctx := context.Background()
	b := Batch("a1", "boot", 1, 0, 4)
	b.Alerts = []*watchpostv1.Alert{detection("r-shell", "T1059.004", "T0807"), detection("r-modbus", "T0855")}
	if res := mustStore(t, s, b); res[0] != store.Stored {
		t.Fatalf("first store: %v", res)
	}
	ids := []uint64{b.Alerts[0].Id, b.Alerts[1].Id}
	if ids[0] == 0 || ids[1] == 0 || ids[0] == ids[1] {
		t.Fatalf("alert ids %v", ids)
	}
	again := Batch("a1", "boot", 1, 0, 4)
	again.Alerts = []*watchpostv1.Alert{detection("r-shell", "T1059.004")}
	if res := mustStore(t, s, again); res[0] != store.Duplicate || again.Alerts[0].Id != 0 {
		t.Fatalf("resent batch: %v, alert id %d", res, again.Alerts[0].Id)
	}
	for _, c := range []struct {
		f    store.AlertFilter
		want []uint64
	}{
		{store.AlertFilter{}, []uint64{ids[1], ids[0]}},
		{store.AlertFilter{RuleID: "r-shell"}, []uint64{ids[0]}},
		{store.AlertFilter{Technique: "T1059"}, []uint64{ids[0]}},
		{store.AlertFilter{Technique: "t1059.004"}, []uint64{ids[0]}},
		{store.AlertFilter{Technique: "T0855"}, []uint64{ids[1]}},
		{store.AlertFilter{Technique: "T085"}, nil},
		{store.AlertFilter{Technique: "T0855", RuleID: "r-shell"}, nil},
	} {
		as, err := s.Alerts(ctx, c.f, 10)
		if err != nil {
			t.Fatal(err)
		}
		var got []uint64
		for _, a := range as {
			got = append(got, a.Id)
			if !c.f.Match(a) {
				t.Errorf("filter %+v: alert %d returned but Match says no", c.f, a.Id)
			}
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("filter %+v: alerts %v, want %v", c.f, got, c.want)
		}
	}
	a, err := s.AlertByID(ctx, ids[0])
	if err != nil || a.GetDetection().GetRuleId() != "r-shell" || a.State != watchpostv1.AlertState_ALERT_STATE_OPEN {
		t.Fatalf("AlertByID: %v %v", a, err)
	}
	if _, err := s.AlertByID(ctx, 999999); !errors.Is(err, store.ErrUnknownAlert) {
		t.Fatalf("AlertByID of an unknown id: %v", err)
	}
}

// testCommands: sequence numbers over every agent, pending commands per
// agent (its own and every agent's) in order, acknowledgements kept (the
// latest per agent), and a stable epoch.
func testCommands(t *testing.T, s store.Store) {
	ctx := context.Background()
	add := func(agent, id string) *watchpostv1.Command {
		c, err := s.AddCommand(ctx, agent, &watchpostv1.Command{IssuedBy: "ops",
			Action: &watchpostv1.Command_AddException{AddException: &watchpostv1.DetectionException{Id: id, Rules: []string{"r"}}}})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	c1, c2, c3 := add("a1", "x1"), add("", "x2"), add("a2", "x3")
	if c1.Seq == 0 || c2.Seq <= c1.Seq || c3.Seq <= c2.Seq || c1.CreatedUnixNano == 0 {
		t.Fatalf("seqs %d %d %d", c1.Seq, c2.Seq, c3.Seq)
	}
	pend := func(agent string, after uint64) []uint64 {
		cs, err := s.PendingCommands(ctx, agent, after, 10)
		if err != nil {
			t.Fatal(err)
		}
		var out []uint64
		for _, c := range cs {
			out = append(out, c.Seq)
		}
		return out
	}
	if got := pend("a1", 0); !slices.Equal(got, []uint64{c1.Seq, c2.Seq}) {
		t.Errorf("pending for a1: %v", got)
	}
	if got := pend("a1", c1.Seq); !slices.Equal(got, []uint64{c2.Seq}) {
		t.Errorf("pending for a1 after %d: %v", c1.Seq, got)
	}
	if got := pend("a3", 0); !slices.Equal(got, []uint64{c2.Seq}) {
		t.Errorf("pending for a new agent: %v", got)
	}
	at := time.Unix(1800000000, 0)
	for _, a := range []struct {
		agent string
		ack   *watchpostv1.CommandAck
	}{
		{"a1", &watchpostv1.CommandAck{Seq: c2.Seq, Status: watchpostv1.CommandStatus_COMMAND_STATUS_FAILED, Message: "first"}},
		{"a1", &watchpostv1.CommandAck{Seq: c2.Seq, Status: watchpostv1.CommandStatus_COMMAND_STATUS_APPLIED}},
		{"a2", &watchpostv1.CommandAck{Seq: c2.Seq, Status: watchpostv1.CommandStatus_COMMAND_STATUS_APPLIED}},
	} {
		if err := s.RecordCommandAck(ctx, a.agent, a.ack, at); err != nil {
			t.Fatal(err)
		}
	}
	all, err := s.Commands(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 3 || all[1].AgentID != "" || all[0].AgentID != "a1" || len(all[1].Deliveries) != 2 {
		t.Fatalf("commands: %+v", all)
	}
	d := all[1].Deliveries[0]
	if d.AgentId != "a1" || d.Status != watchpostv1.CommandStatus_COMMAND_STATUS_APPLIED || d.Message != "" || d.TimeUnixNano != at.UnixNano() {
		t.Errorf("delivery %v", d)
	}
	mine, err := s.Commands(ctx, "a2")
	if err != nil || len(mine) != 2 || mine[0].Command.Seq != c2.Seq || len(mine[0].Deliveries) != 1 {
		t.Fatalf("commands of a2: %+v %v", mine, err)
	}
	if mine[1].Command.GetAddException().GetId() != "x3" || mine[1].Command.IssuedBy != "ops" {
		t.Errorf("command body %v", mine[1].Command)
	}
	e1, err := s.CommandEpoch(ctx)
	if err != nil || len(e1) < 8 {
		t.Fatalf("epoch %q %v", e1, err)
	}
	if e2, _ := s.CommandEpoch(ctx); e2 != e1 {
		t.Errorf("epoch changed: %q then %q", e1, e2)
	}
}

func storedBytes(t *testing.T, s store.Store) map[string]int64 {
	t.Helper()
	hosts, err := s.Hosts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, h := range hosts {
		out[h.AgentId] = int64(h.StoredBytes)
	}
	return out
}

// testQuota: agent b keeps a small history; agent a floods far beyond
// MaxBytes. Trimming deletes only a's oldest events: b keeps all of its
// own, the store ends within MaxBytes, and a resent trimmed batch is still
// a duplicate.
func testQuota(t *testing.T, s store.Store) {
	ctx := context.Background()
	mustStore(t, s, Batch("b", "boot-1", 1, 0, 100))
	for i := 0; i < 20; i++ {
		mustStore(t, s, Batch("a", "boot-1", uint64(i+1), i*200, i*200+200))
	}
	before := storedBytes(t, s)
	if before["a"] <= 0 || before["b"] <= 0 {
		t.Fatalf("stored bytes %v, want both counted", before)
	}
	maxBytes := before["b"] + before["a"]/4 // a must lose three quarters of its events, b nothing
	trimmed, err := s.TrimToQuota(ctx, store.Quota{MaxBytes: maxBytes})
	if err != nil {
		t.Fatal(err)
	}
	if len(trimmed) != 1 || trimmed[0].AgentID != "a" || trimmed[0].Events == 0 {
		t.Fatalf("trimmed %+v, want only agent a", trimmed)
	}
	after := storedBytes(t, s)
	if after["b"] != before["b"] || count(t, s, store.Filter{AgentID: "b"}) != 100 {
		t.Fatalf("agent b: %d bytes (was %d), %d events; its history must survive another agent's flood", after["b"], before["b"],
			count(t, s, store.Filter{AgentID: "b"}))
	}
	if after["a"]+after["b"] > maxBytes {
		t.Fatalf("stored %d bytes after trimming, over MaxBytes %d", after["a"]+after["b"], maxBytes)
	}
	left := count(t, s, store.Filter{AgentID: "a"})
	if left != 4000-int(trimmed[0].Events) || left%200 != 0 {
		t.Fatalf("agent a keeps %d events after %d trimmed, want 4000 - trimmed in whole batches", left, trimmed[0].Events)
	}
	// The newest batches are the ones kept.
	evs, _, err := query(ctx, s, store.Filter{AgentID: "a"}, 1)
	if err != nil || len(evs) != 1 || evs[0].Header.Seq != 4000 {
		t.Fatalf("newest event of a after trimming: %v %v", evs, err)
	}
	if got := mustStore(t, s, Batch("a", "boot-1", 1, 0, 200)); got[0] != store.Duplicate {
		t.Fatalf("resending a trimmed batch: %v, want duplicate", got)
	}
}

// testQuotaPerAgent: a hard per-agent quota cuts an agent down to it.
func testQuotaPerAgent(t *testing.T, s store.Store) {
	for i := 0; i < 10; i++ {
		mustStore(t, s, Batch("a", "boot-1", uint64(i+1), i*100, i*100+100))
	}
	per := storedBytes(t, s)["a"] / 4
	trimmed, err := s.TrimToQuota(context.Background(), store.Quota{PerAgent: per})
	if err != nil {
		t.Fatal(err)
	}
	if got := storedBytes(t, s)["a"]; got > per || len(trimmed) != 1 || trimmed[0].AgentID != "a" {
		t.Fatalf("agent a: %d bytes after trimming to %d (trimmed %+v)", got, per, trimmed)
	}
	if n := count(t, s, store.Filter{AgentID: "a"}); n == 0 || n >= 1000 || n%100 != 0 {
		t.Fatalf("agent a keeps %d events, want some whole batches", n)
	}
}

func testRefusals(t *testing.T, s store.Store) {
	ctx := context.Background()
	for range 2 {
		if err := s.RecordRefusals(ctx, "a", []*watchpostv1.Counter{{Kind: "event", Reason: "truncated", Count: 3}, {Kind: "batch", Reason: "resourceexhausted", Count: 1}}); err != nil {
			t.Fatal(err)
		}
	}
	hosts, err := s.Hosts(ctx)
	if err != nil || len(hosts) != 1 {
		t.Fatalf("hosts %v %v", hosts, err)
	}
	want := []*watchpostv1.Counter{{Kind: "batch", Reason: "resourceexhausted", Count: 2}, {Kind: "event", Reason: "truncated", Count: 6}}
	if diff := cmp.Diff(want, hosts[0].Refusals, protocmp.Transform()); diff != "" || hosts[0].Host != "a" {
		t.Fatalf("refusals of a (host %q) (-want +got):\n%s", hosts[0].Host, diff)
	}
}

// testHostBinding: the host an agent writes into its events is shown as
// claimed_host; host is always the agent identity, and filters on it.
func testHostBinding(t *testing.T, s store.Store) {
	b := Batch("a", "boot-1", 1, 0, 10)
	for i, ev := range b.Events {
		ev.Header.Host = "plc-master-01" // another host's name
		raw, err := proto.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		b.Raw[i] = raw
	}
	mustStore(t, s, b)
	ctx := context.Background()
	evs, _, err := query(ctx, s, store.Filter{Host: "a"}, 100)
	if err != nil || len(evs) != 10 {
		t.Fatalf("by identity: %d events, %v", len(evs), err)
	}
	for _, ev := range evs {
		if ev.Header.Host != "a" || ev.Header.ClaimedHost != "plc-master-01" || ev.Header.AgentId != "a" {
			t.Fatalf("header %v: want host a, claimed plc-master-01", ev.Header)
		}
	}
	if n := count(t, s, store.Filter{Host: "plc-master-01"}); n != 0 {
		t.Fatalf("the claimed host finds %d events, want 0", n)
	}
}

// testCostBound: a row bound stops a query early with the newest events
// found so far and says so.
func testCostBound(t *testing.T, s store.Store) {
	for i := 0; i < 30; i++ {
		mustStore(t, s, Batch("a", "boot-1", uint64(i+1), i*100, i*100+100))
	}
	res, err := s.Query(context.Background(), store.Query{Filter: store.Filter{Text: "no such text"}, Limit: 10, MaxRows: 1000})
	if err != nil {
		t.Fatal(err)
	}
	// Within the bound, or over it by at most one batch (an engine that
	// cannot read part of a batch reads its first one whole).
	if !res.CostLimited || res.RowsScanned == 0 || res.RowsScanned > 1000+100 || len(res.Events) != 0 {
		t.Fatalf("bounded query: cost_limited %v, %d rows scanned, %d events; want limited within 1000 rows", res.CostLimited, res.RowsScanned, len(res.Events))
	}
	res, err = s.Query(context.Background(), store.Query{Filter: store.Filter{Text: "no such text"}, Limit: 10})
	if err != nil || res.CostLimited || res.RowsScanned < 3000 {
		t.Fatalf("unbounded query: %v, cost_limited %v, %d rows", err, res.CostLimited, res.RowsScanned)
	}
}

// testEmptyBatch: a batch whose events were all refused is still stored
// as a key, so that its resend is a duplicate.
func testEmptyBatch(t *testing.T, s store.Store) {
	b := store.BatchInput{Key: store.BatchKey{AgentID: "a", BootID: "boot-1", RunID: "run-1", BatchSeq: 1}}
	if got := mustStore(t, s, b); got[0] != store.Stored {
		t.Fatalf("empty batch: %v", got)
	}
	if got := mustStore(t, s, b); got[0] != store.Duplicate {
		t.Fatalf("empty batch again: %v", got)
	}
	if n := count(t, s, store.Filter{AgentID: "a"}); n != 0 {
		t.Fatalf("%d events stored", n)
	}
}
