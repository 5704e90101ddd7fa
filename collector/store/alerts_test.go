package store

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

func openTemp(t *testing.T) (*SQLite, string) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "events.db")
	s, err := OpenSQLite(file)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, file
}

var t0 = time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)

func testAlerts() []*watchpostv1.Alert {
	mk := func(agent string, kind watchpostv1.AlertKind, sev watchpostv1.Severity, min int) *watchpostv1.Alert {
		return &watchpostv1.Alert{AgentId: agent, Host: agent + ".plant", Kind: kind, Severity: sev,
			State: watchpostv1.AlertState_ALERT_STATE_OPEN, TimeUnixNano: t0.Add(time.Duration(min) * time.Minute).UnixNano(), Message: "m"}
	}
	return []*watchpostv1.Alert{
		mk("gw1", watchpostv1.AlertKind_ALERT_KIND_MISSED_HEARTBEAT, watchpostv1.Severity_SEVERITY_HIGH, 0),
		mk("gw2", watchpostv1.AlertKind_ALERT_KIND_SEQUENCE_GAP, watchpostv1.Severity_SEVERITY_MEDIUM, 1),
		mk("gw1", watchpostv1.AlertKind_ALERT_KIND_PROGRAMS_DETACHED, watchpostv1.Severity_SEVERITY_CRITICAL, 2),
		mk("gw2", watchpostv1.AlertKind_ALERT_KIND_DROP_JUMP, watchpostv1.Severity_SEVERITY_MEDIUM, 3),
	}
}

// TestAlertTriage walks alerts through acknowledge, resolve and reopen in
// the SQLite store and checks what is stored, who and when, and that an
// update naming an unknown alert changes nothing.
func TestAlertTriage(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	as := testAlerts()
	if err := s.RecordAlerts(ctx, as); err != nil {
		t.Fatal(err)
	}
	at := t0.Add(time.Hour)
	got, err := s.UpdateAlerts(ctx, AlertUpdate{IDs: []uint64{as[0].Id, as[2].Id}, State: watchpostv1.AlertState_ALERT_STATE_ACKNOWLEDGED,
		By: "ops", Note: "looking", At: at})
	if err != nil {
		t.Fatal(err)
	}
	want0 := proto.Clone(as[0]).(*watchpostv1.Alert)
	want0.State, want0.AcknowledgedBy, want0.AcknowledgedUnixNano, want0.Note = watchpostv1.AlertState_ALERT_STATE_ACKNOWLEDGED, "ops", at.UnixNano(), "looking"
	if d := cmp.Diff(want0, got[0], protocmp.Transform()); d != "" {
		t.Fatalf("acknowledged alert (-want +got):\n%s", d)
	}
	// A second acknowledgement keeps the first; resolving records who resolved.
	later := at.Add(time.Minute)
	if _, err := s.UpdateAlerts(ctx, AlertUpdate{IDs: []uint64{as[0].Id}, State: watchpostv1.AlertState_ALERT_STATE_ACKNOWLEDGED, By: "soc", At: later}); err != nil {
		t.Fatal(err)
	}
	got, err = s.UpdateAlerts(ctx, AlertUpdate{IDs: []uint64{as[0].Id}, State: watchpostv1.AlertState_ALERT_STATE_RESOLVED, By: "soc", Note: "agent restarted by maintenance", At: later})
	if err != nil {
		t.Fatal(err)
	}
	want0.State, want0.ResolvedBy, want0.ResolvedUnixNano, want0.Note = watchpostv1.AlertState_ALERT_STATE_RESOLVED, "soc", later.UnixNano(), "agent restarted by maintenance"
	if d := cmp.Diff(want0, got[0], protocmp.Transform()); d != "" {
		t.Fatalf("resolved alert (-want +got):\n%s", d)
	}
	// Stored as returned.
	stored, err := s.Alerts(ctx, AlertFilter{States: []watchpostv1.AlertState{watchpostv1.AlertState_ALERT_STATE_RESOLVED}}, 10)
	if err != nil || len(stored) != 1 {
		t.Fatalf("resolved alerts: %v %v", stored, err)
	}
	if d := cmp.Diff(want0, stored[0], protocmp.Transform()); d != "" {
		t.Fatalf("stored resolved alert (-want +got):\n%s", d)
	}
	// Reopen clears the resolution, keeps the acknowledgement.
	got, err = s.UpdateAlerts(ctx, AlertUpdate{IDs: []uint64{as[0].Id}, State: watchpostv1.AlertState_ALERT_STATE_OPEN, By: "soc", At: later})
	if err != nil {
		t.Fatal(err)
	}
	if a := got[0]; a.State != watchpostv1.AlertState_ALERT_STATE_OPEN || a.ResolvedBy != "" || a.ResolvedUnixNano != 0 || a.AcknowledgedBy != "ops" {
		t.Fatalf("reopened alert: %v", a)
	}
	// All or none: an unknown id fails the update and changes nothing.
	_, err = s.UpdateAlerts(ctx, AlertUpdate{IDs: []uint64{as[1].Id, 999}, State: watchpostv1.AlertState_ALERT_STATE_RESOLVED, By: "soc", At: later})
	if !errors.Is(err, ErrUnknownAlert) {
		t.Fatalf("update with an unknown id: %v", err)
	}
	open, err := s.Alerts(ctx, AlertFilter{AgentID: "gw2", States: []watchpostv1.AlertState{watchpostv1.AlertState_ALERT_STATE_OPEN}}, 10)
	if err != nil || len(open) != 2 {
		t.Fatalf("gw2's open alerts after the refused update: %v %v", open, err)
	}
	for _, bad := range []AlertUpdate{
		{State: watchpostv1.AlertState_ALERT_STATE_RESOLVED, By: "x", At: at},
		{IDs: []uint64{1}, State: watchpostv1.AlertState_ALERT_STATE_UNSPECIFIED, By: "x", At: at},
		{IDs: []uint64{1}, State: watchpostv1.AlertState_ALERT_STATE_RESOLVED, At: at},
		{IDs: []uint64{1}, State: watchpostv1.AlertState_ALERT_STATE_RESOLVED, By: "x", At: at, Note: string(make([]byte, MaxAlertNote+1))},
	} {
		if _, err := s.UpdateAlerts(ctx, bad); err == nil {
			t.Fatalf("update %+v accepted", bad)
		}
	}
}

// TestAlertFilter checks every filter field of the SQLite query against
// AlertFilter.Match, the reference meaning.
func TestAlertFilter(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	as := testAlerts()
	if err := s.RecordAlerts(ctx, as); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateAlerts(ctx, AlertUpdate{IDs: []uint64{as[1].Id}, State: watchpostv1.AlertState_ALERT_STATE_ACKNOWLEDGED, By: "ops", At: t0}); err != nil {
		t.Fatal(err)
	}
	all, err := s.Alerts(ctx, AlertFilter{}, 100)
	if err != nil || len(all) != 4 {
		t.Fatalf("all alerts: %v %v", all, err)
	}
	for name, f := range map[string]AlertFilter{
		"agent":     {AgentID: "gw1"},
		"host":      {Host: "gw2.plant"},
		"since":     {Since: t0.Add(time.Minute)},
		"until":     {Until: t0.Add(2 * time.Minute)},
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
	if got, _ := s.Alerts(ctx, AlertFilter{States: []watchpostv1.AlertState{watchpostv1.AlertState_ALERT_STATE_OPEN}}, 100); len(got) != 3 {
		t.Fatalf("open alerts: %d, want 3", len(got))
	}
}

// TestAlertsTableUpgrade opens a database whose alerts table predates the
// host, severity and state columns: they are added and filled from the
// stored alerts.
func TestAlertsTableUpgrade(t *testing.T) {
	file := filepath.Join(t.TempDir(), "events.db")
	db, err := sql.Open("sqlite", "file:"+file)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TABLE alerts (id INTEGER PRIMARY KEY, agent_id TEXT NOT NULL, time_ns INTEGER NOT NULL, kind INTEGER NOT NULL, data BLOB NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	a := testAlerts()[2]
	a.State = watchpostv1.AlertState_ALERT_STATE_UNSPECIFIED // raised before alerts had a state
	data, _ := proto.Marshal(a)
	if _, err := db.Exec("INSERT INTO alerts (agent_id, time_ns, kind, data) VALUES (?, ?, ?, ?)", a.AgentId, a.TimeUnixNano, int64(a.Kind), data); err != nil {
		t.Fatal(err)
	}
	_ = db.Close()
	s, err := OpenSQLite(file)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.Alerts(context.Background(), AlertFilter{Host: "gw1.plant", MinSeverity: watchpostv1.Severity_SEVERITY_CRITICAL,
		States: []watchpostv1.AlertState{watchpostv1.AlertState_ALERT_STATE_OPEN}}, 10)
	if err != nil || len(got) != 1 || got[0].Id != 1 || got[0].State != watchpostv1.AlertState_ALERT_STATE_OPEN {
		t.Fatalf("upgraded alert: %v %v", got, err)
	}
}
