package store

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

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
