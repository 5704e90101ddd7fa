package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/watchpost/watchpost/collector/collectortest"
	"github.com/watchpost/watchpost/collector/store"
	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

func TestPrintable(t *testing.T) {
	for in, want := range map[string]string{
		"/usr/bin/modbusd":           "/usr/bin/modbusd",
		"a\nb\rc\td":                 `a\nb\rc\td`,
		"\x1b[2K\x1b[1Agone":         `\x1b[2K\x1b[1Agone`,
		"csi\u009b2J":                `csi\x9b2J`,
		"exe\u202eftp.sh":            `exe\u202eftp.sh`,
		"sep\u2028x":                 `sep\u2028x`,
		"bad\xffutf8":                `bad\xffutf8`,
		"Grüße /var/lib/plc/proj.st": "Grüße /var/lib/plc/proj.st",
		"del\x7f":                    `del\x7f`,
	} {
		if got := printable(in); got != want {
			t.Errorf("printable(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestHostileValuesCannotForgeRows: an attacker on a gateway runs a program
// whose argv holds newlines, tabs and ANSI escapes (a forged table row, a
// line erase), and reports a heartbeat and an alert message carrying the
// same. Every table the CLI prints (events, hosts, alerts) keeps one line
// per row with the escapes shown, and --json keeps the exact bytes.
func TestHostileValuesCannotForgeRows(t *testing.T) {
	c, _ := collectortest.Loopback(t, nil, nil)
	ctx := context.Background()
	now := time.Now()
	forged := "2026-01-01 00:00:00.000  plc-gw-1  exec  1  sshd  harmless"
	args := []string{"sh", "-c", "x\n" + forged + "\x1b[1A\x1b[2K\tcol"}
	ev := &watchpostv1.Event{
		Header:  &watchpostv1.Header{Type: watchpostv1.EventType_EVENT_TYPE_EXEC, TimeUnixNano: now.UnixNano(), Seq: 1, Host: "gw-evil"},
		Process: &watchpostv1.Process{Pid: 4242, Comm: "sh", Exe: "/bin/sh\x1b]0;pwned\x07", Args: args},
		Detail:  &watchpostv1.Event_Exec{Exec: &watchpostv1.Exec{Argc: 3}},
	}
	raw, err := proto.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Store().StoreBatches(ctx, []store.BatchInput{{
		Key: store.BatchKey{AgentID: "gw-evil", BootID: "b", RunID: "r", BatchSeq: 1}, Events: []*watchpostv1.Event{ev}, Raw: [][]byte{raw},
	}}); err != nil {
		t.Fatal(err)
	}
	hb := &watchpostv1.Heartbeat{Seq: 1, BootId: "b", RunId: "r", InstanceId: "i", Host: "gw-evil", Version: "1.0\n" + forged, Kernel: "6.1\x1b[31m"}
	if err := c.Store().RecordHeartbeat(ctx, "gw-evil", hb, now); err != nil {
		t.Fatal(err)
	}
	if err := c.Store().RecordAlerts(ctx, []*watchpostv1.Alert{{AgentId: "gw-evil", Host: "gw-evil", Kind: watchpostv1.AlertKind_ALERT_KIND_DROP_JUMP,
		Severity: watchpostv1.Severity_SEVERITY_HIGH, TimeUnixNano: now.UnixNano(), Message: "jump\n" + forged + "\r\x1b[2K"}}); err != nil {
		t.Fatal(err)
	}
	srv := "--server=" + c.QueryAddr()
	for _, cmd := range [][]string{{"events"}, {"hosts"}, {"alerts"}} {
		out, err := cli(t, append(cmd, srv)...)
		if err != nil {
			t.Fatalf("%v: %v\n%s", cmd, err, out)
		}
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		if len(lines) != 2 {
			t.Fatalf("%v: %d lines, want a header and one row:\n%s", cmd, len(lines), out)
		}
		if strings.ContainsAny(out, "\x1b\r\t\x07") || !strings.Contains(lines[1], `\n`+forged) {
			t.Fatalf("%v: control characters printed raw or the forged row not shown escaped:\n%q", cmd, out)
		}
	}
	out, err := cli(t, "events", srv)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, `x\n`+forged+`\x1b[1A\x1b[2K\tcol`) {
		t.Fatalf("events: argv not shown escaped:\n%q", out)
	}
	out, err = cli(t, "events", srv, "--json")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, `\u001b[1A\u001b[2K\tcol`) {
		t.Fatalf("events --json: exact argv not kept:\n%s", out)
	}
}
