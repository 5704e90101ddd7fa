package detect

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/watchpost/watchpost/agent/event"
)

const exceptionRules = `title: Shell
id: t-exec
logsource: {product: linux, category: process_creation}
detection:
  sel:
    Image|endswith: /bash
  condition: sel
level: high
---
title: File under /etc
id: t-file
logsource: {product: linux, category: file_event}
detection:
  sel:
    TargetFilename|startswith: /etc/
  condition: sel
level: high
---
title: Modbus peer
id: t-net
logsource: {product: linux, category: network_connection}
detection:
  sel:
    DestinationPort: 502
  condition: sel
level: high
`

// TestExceptionAttributes: each attribute of an exception, from a rules
// directory document, inside a rule and from the collector, suppresses
// the matching event (counted per rule and per exception) and lets its
// neighbour alert; an exception naming rules leaves the others alone.
func TestExceptionAttributes(t *testing.T) {
	// Cgroup ids resolve to paths through the engine's cache (filled from
	// the cgroup2 mount on a live host): 4242 is a systemd service here.
	const cgID, cgPath = 4242, "/system.slice/historian.service"
	exec := func(exe, anc string, uid uint32) *event.Event {
		ev := execEvent(exe)
		ev.Process.UID, ev.Process.EUID, ev.Process.CgroupID = uid, uid, cgID
		ev.Ancestry = []event.Ancestor{{PID: 1, Exe: anc}}
		return ev
	}
	file := func(exe, path string) *event.Event {
		seq++
		return &event.Event{Kind: event.KindFileOpen, Seq: seq, Process: event.Process{PID: 9, Exe: exe},
			File: &event.File{Path: path, Write: true, Flags: 0o1101}}
	}
	net := func(addr string) *event.Event {
		seq++
		return &event.Event{Kind: event.KindNetConnect, Seq: seq, Process: event.Process{PID: 9, Exe: "/usr/bin/poller"},
			Net: &event.Net{DstAddr: addr, DstPort: 502, Protocol: "tcp"}}
	}
	type exceptionCase struct {
		name       string
		exception  string // one item of an exceptions list
		rule       string
		suppressed *event.Event
		neighbour  *event.Event
	}
	cases := []exceptionCase{
		{"exe glob", "exe: /opt/plant/*", "t-exec", exec("/opt/plant/bin/bash", "/usr/lib/systemd/systemd", 0), exec("/usr/bin/bash", "/usr/lib/systemd/systemd", 0)},
		{"ancestor", "ancestor: /usr/sbin/cron", "t-exec", exec("/usr/bin/bash", "/usr/sbin/cron", 0), exec("/usr/bin/bash", "/usr/sbin/sshd", 0)},
		{"user by name", "user: historian", "t-exec", exec("/usr/bin/bash", "/sbin/init", 1234), exec("/usr/bin/bash", "/sbin/init", 1235)},
		{"user by uid", "user: '1235'", "t-exec", exec("/usr/bin/bash", "/sbin/init", 1235), exec("/usr/bin/bash", "/sbin/init", 1234)},
		{"path", "path: /etc/plant/*.conf", "t-file", file("/usr/bin/vi", "/etc/plant/a.conf"), file("/usr/bin/vi", "/etc/shadow")},
		{"peer cidr and port", "peer: 10.1.0.0/16:502", "t-net", net("10.1.2.3"), net("10.2.2.3")},
		{"host", "host: gw-*", "t-exec", exec("/usr/bin/bash", "/sbin/init", 0), nil},
		{"rules scope", "rules: [t-file]\n    exe: /usr/bin/bash", "t-file", file("/usr/bin/bash", "/etc/x"), exec("/usr/bin/bash", "/sbin/init", 0)},
	}
	cgNeighbour := exec("/usr/bin/bash", "/sbin/init", 0)
	cgNeighbour.Process.CgroupID = 4243
	cases = append(cases,
		exceptionCase{"cgroup", "cgroup: /system.slice/historian.*", "t-exec", exec("/usr/bin/bash", "/sbin/init", 0), cgNeighbour},
		exceptionCase{"unit", "unit: historian.service", "t-exec", exec("/usr/bin/bash", "/sbin/init", 0), cgNeighbour})
	passwd := filepath.Join(t.TempDir(), "passwd")
	if err := os.WriteFile(passwd, []byte("root:x:0:0::/root:/bin/sh\nhistorian:x:1234:1234::/srv:/bin/false\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	alertsOf := func(e *Engine, ev *event.Event) []string {
		var ids []string
		for _, a := range e.Detect(ev) {
			ids = append(ids, a.Alert.RuleID)
		}
		return ids
	}
	for _, c := range cases {
		for _, where := range []string{"document", "rule", "collector"} {
			t.Run(c.name+"/"+where, func(t *testing.T) {
				dir := t.TempDir()
				rules := exceptionRules
				switch where {
				case "document":
					rules += "---\nexceptions:\n  - id: ex1\n    " + c.exception + "\n"
				case "rule":
					// In a rule the exception applies to that rule only.
					if strings.HasPrefix(c.exception, "rules:") {
						t.Skip("rules: is for documents and the collector")
					}
					rules = strings.Replace(rules, "id: "+c.rule+"\n", "id: "+c.rule+"\nwatchpost:\n  exceptions:\n    - id: ex1\n      "+
						strings.ReplaceAll(c.exception, "\n    ", "\n      ")+"\n", 1)
				}
				if err := os.WriteFile(filepath.Join(dir, "r.yml"), []byte(rules), 0o644); err != nil {
					t.Fatal(err)
				}
				e, err := New(Config{RulesDir: dir, Host: "gw-test", PasswdFile: passwd}, Deps{Logger: zerolog.Nop()})
				if err != nil {
					t.Fatal(err)
				}
				cg := e.ctx.cgroups
				cg.root, cg.found = "/sys/fs/cgroup", true
				cg.cache[cgID], cg.cache[4243] = cgPath, "/system.slice/poller.service"
				if st := e.Status(); len(st.Errors) > 0 || st.Rules != 3 {
					t.Fatalf("rules %d errors %v", st.Rules, st.Errors)
				}
				if where == "collector" {
					ex := parseOne(t, c.exception)
					ex.ID = "ex1"
					if err := e.SetExceptions([]Exception{ex}); err != nil {
						t.Fatal(err)
					}
				}
				if got := alertsOf(e, c.suppressed); len(got) != 0 {
					t.Fatalf("suppressed event alerted: %v", got)
				}
				if n := e.Status().Suppressed[c.rule]; n != 1 {
					t.Fatalf("suppressed count of %s: %d, want 1 (%v)", c.rule, n, e.Status().Suppressed)
				}
				if n := e.ExceptionHits()["ex1"]; n != 1 {
					t.Fatalf("exception hits %v, want ex1: 1", e.ExceptionHits())
				}
				if c.neighbour != nil {
					if got := alertsOf(e, c.neighbour); len(got) != 1 {
						t.Fatalf("neighbour raised %v, want one alert", got)
					}
				}
			})
		}
	}
}

// parseOne reads one exception written as in a document.
func parseOne(t *testing.T, item string) Exception {
	t.Helper()
	pf, err := parseFile("x.yml", "x.yml", []byte("exceptions:\n  - id: x\n    "+item+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(pf.exceptions) != 1 {
		t.Fatalf("%d exceptions", len(pf.exceptions))
	}
	return pf.exceptions[0]
}
