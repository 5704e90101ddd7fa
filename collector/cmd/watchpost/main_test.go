package main

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/watchpost/watchpost/collector"
	"github.com/watchpost/watchpost/collector/collectortest"
	"github.com/watchpost/watchpost/collector/store"
	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

const (
	readToken  = "cli-read-token-0123456789"
	adminToken = "cli-admin-token-0123456789"
)

// cli runs the watchpost command with args; stdout and stderr go to one
// buffer, as on a terminal.
func cli(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	root := newRoot()
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := root.ExecuteContext(ctx)
	return out.String(), err
}

// TestAlertsTriageCLI lists alerts of a real collector by state and
// severity, acknowledges and resolves them with an admin token, and is
// refused with a read token.
func TestAlertsTriageCLI(t *testing.T) {
	c, _ := collectortest.Loopback(t, nil, func(cfg *collector.Config) {
		cfg.Query.Tokens = []collector.Token{{Name: "soc", Token: readToken, Role: collector.RoleRead}, {Name: "ops", Token: adminToken, Role: collector.RoleAdmin}}
	})
	now := time.Now()
	as := []*watchpostv1.Alert{
		{AgentId: "gw1", Host: "gw1", Kind: watchpostv1.AlertKind_ALERT_KIND_MISSED_HEARTBEAT, Severity: watchpostv1.Severity_SEVERITY_HIGH,
			TimeUnixNano: now.Add(-2 * time.Minute).UnixNano(), Message: "no heartbeat for 30s"},
		{AgentId: "gw2", Host: "gw2", Kind: watchpostv1.AlertKind_ALERT_KIND_SEQUENCE_GAP, Severity: watchpostv1.Severity_SEVERITY_MEDIUM,
			TimeUnixNano: now.Add(-time.Minute).UnixNano(), Message: "heartbeats 4 to 5 never arrived", Count: 2},
	}
	if err := c.Store().RecordAlerts(context.Background(), as); err != nil {
		t.Fatal(err)
	}
	srv := "--server=" + c.QueryAddr()
	id1, id2 := strconv.FormatUint(as[0].Id, 10), strconv.FormatUint(as[1].Id, 10)

	out, err := cli(t, "alerts", srv, "--token", readToken, "--severity", "high", "--state", "open")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "ID ") || !strings.Contains(lines[1], "high") || !strings.Contains(lines[1], "missed_heartbeat") ||
		!strings.HasPrefix(lines[1], id1+" ") || strings.Contains(out, "gw2") {
		t.Fatalf("open alerts of high severity:\n%s", out)
	}

	if out, err := cli(t, "alerts", "ack", id1, srv, "--token", readToken); err == nil || !strings.Contains(err.Error(), "needs admin") {
		t.Fatalf("ack with a read token: %v\n%s", err, out)
	}
	out, err = cli(t, "alerts", "ack", id1, id2, srv, "--token", adminToken, "--note", "on it")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(out, "acknowledged by ops") != 2 {
		t.Fatalf("ack output:\n%s", out)
	}
	if _, err := cli(t, "alerts", "resolve", id2, srv, "--token", adminToken); err != nil {
		t.Fatal(err)
	}
	if out, err := cli(t, "alerts", "resolve", "999", srv, "--token", adminToken); err == nil || !strings.Contains(err.Error(), "no such alert") {
		t.Fatalf("resolve of an unknown alert: %v\n%s", err, out)
	}
	if out, err := cli(t, "alerts", "ack", "x1", srv, "--token", adminToken); err == nil || !strings.Contains(err.Error(), `"x1" is not an alert id`) {
		t.Fatalf("ack of a bad id: %v\n%s", err, out)
	}

	stored, err := c.Store().Alerts(context.Background(), store.AlertFilter{}, 10)
	if err != nil {
		t.Fatal(err)
	}
	got := map[uint64]string{}
	for _, a := range stored {
		got[a.Id] = a.State.String() + " " + a.AcknowledgedBy + " " + a.ResolvedBy + " " + a.Note
	}
	if got[as[0].Id] != "ALERT_STATE_ACKNOWLEDGED ops  on it" || got[as[1].Id] != "ALERT_STATE_RESOLVED ops ops on it" {
		t.Fatalf("stored states: %v", got)
	}

	// A truncated list ends with a note on a line of its own.
	out, err = cli(t, "alerts", srv, "--token", readToken, "--limit", "1")
	if err != nil {
		t.Fatal(err)
	}
	lines = strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[1], id2+" ") || lines[2] != "watchpost: more alerts matched; showing the newest 1: narrow the filter, raise --limit or page with --before-id "+id2 {
		t.Fatalf("truncated list:\n%s", out)
	}
	if out, err := cli(t, "alerts", srv, "--token", readToken, "--before-id", id2); err != nil || !strings.Contains(out, "\n"+id1+" ") || strings.Contains(out, "\n"+id2+" ") {
		t.Fatalf("next page: %v\n%s", err, out)
	}
}

// TestHelp: --help prints the usage and succeeds (exit 0).
func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"alerts", "ack", "-h"}} {
		out, err := cli(t, args...)
		if err != nil || !strings.Contains(out, "Usage:") || !strings.Contains(out, "-h, --help") {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
}
