package detect

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/watchpost/watchpost/agent/event"
)

// newTestEngine loads the given rules files (name -> content) from a
// temporary rules directory, without the packs.
func newTestEngine(t testing.TB, files map[string]string) (*Engine, string) {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	e, err := New(Config{RulesDir: dir, Host: "gw-test"}, Deps{Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	return e, dir
}

var seq uint64

func execEvent(exe string, args ...string) *event.Event {
	seq++
	return &event.Event{Kind: event.KindExec, Seq: seq, Time: time.Unix(1700000000, 0), BootNS: seq * 1e6,
		Process:  event.Process{PID: 100, PPID: 1, Exe: exe, Args: append([]string{exe}, args...), Cwd: "/root"},
		Ancestry: []event.Ancestor{{PID: 1, Exe: "/usr/sbin/nginx", Args: []string{"nginx: worker"}}},
		Exec:     &event.Exec{}}
}

func TestBasicMatch(t *testing.T) {
	e, _ := newTestEngine(t, map[string]string{"a.yml": `
title: Shell from nginx
id: t-shell
logsource: {product: linux, category: process_creation}
detection:
  sel:
    Image|endswith: [/bash, /sh]
    ParentImage|endswith: /nginx
  filter:
    CommandLine|contains: healthcheck
  condition: sel and not filter
level: high
tags: [attack.t1059.004]
`})
	if st := e.Status(); len(st.Errors) != 0 || st.Rules != 1 {
		t.Fatalf("status %+v", st)
	}
	out := e.Detect(execEvent("/usr/bin/bash", "-c", "id"))
	if len(out) != 1 {
		t.Fatalf("alerts %v", out)
	}
	a := out[0].Alert
	if a.RuleID != "t-shell" || a.Level != "high" || len(a.Techniques) != 1 || a.Techniques[0] != "T1059.004" {
		t.Fatalf("alert %+v", a)
	}
	t.Logf("matches %+v events %+v", a.Matches, a.Events)
	if out := e.Detect(execEvent("/usr/bin/bash", "healthcheck")); len(out) != 0 {
		t.Fatalf("filtered: %v", out)
	}
	if out := e.Detect(execEvent("/usr/bin/zsh")); len(out) != 0 {
		t.Fatalf("other shell: %v", out)
	}
}

// TestPacks: the built-in packs load without an error, and every rule that
// raises alerts names an ATT&CK technique, a level and a description.
func TestPacks(t *testing.T) {
	e, err := New(Config{Packs: Packs()}, Deps{Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	if st := e.Status(); len(st.Errors) > 0 {
		t.Fatalf("pack errors: %v", st.Errors)
	}
	set := e.cur.Load()
	n := 0
	check := func(p *parsedRule, generates bool) {
		if !generates {
			return
		}
		n++
		if len(p.techniques) == 0 || p.description == "" || p.level == "" || !strings.HasPrefix(p.id, "wp-") {
			t.Errorf("%s (%s): technique %v, level %q, description %q", p.id, p.file, p.techniques, p.level, p.description)
		}
	}
	for _, r := range set.rules {
		check(r.p, r.generate)
	}
	for _, c := range set.corrs {
		check(c.p, c.generate)
	}
	t.Logf("%d alerting rules in %v", n, Packs())
}

// TestNoAllocationCommonPath: an event no rule fires on costs no
// allocation, with the packs and 150 Sigma rules loaded.
func TestNoAllocationCommonPath(t *testing.T) {
	dir := t.TempDir()
	if err := benchRules(dir, 150); err != nil {
		t.Fatal(err)
	}
	e, err := New(Config{Packs: Packs(), RulesDir: dir, Host: "gw"}, Deps{Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	evs := benchEvents(4096, false)
	for _, ev := range evs {
		if out := e.Detect(ev); len(out) != 0 {
			t.Fatalf("%v raised %s", ev, out[0].Alert.RuleID)
		}
	}
	i := 0
	if n := testing.AllocsPerRun(20000, func() { e.Detect(evs[i%len(evs)]); i++ }); n != 0 {
		t.Fatalf("%.2f allocations per event", n)
	}
}
