package detect

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/watchpost/watchpost/agent/event"
)

const shellRule = `title: Shell from nginx
id: t-shell
logsource: {product: linux, category: process_creation}
detection:
  sel:
    Image|endswith: /bash
    ParentImage|endswith: /nginx
  condition: sel
level: high
`

// TestUnsupportedRefusedOthersLoad: a rule with an unsupported construct is
// refused with the file, the line and the construct; the other rules of the
// directory load and fire.
func TestUnsupportedRefusedOthersLoad(t *testing.T) {
	cases := []struct {
		body      string
		line      int
		construct string
	}{
		{"title: x\nid: t-expand\nlogsource: {product: linux, category: process_creation}\ndetection:\n  sel:\n    CommandLine|expand: '%x%'\n  condition: sel\n", 6, "|expand"},
		{"title: x\nid: t-agg\nlogsource: {product: linux, category: process_creation}\ndetection:\n  sel:\n    Image: /bin/sh\n  condition: sel | count() > 5\n", 7, "count()"},
		{"title: x\nid: t-svc\nlogsource:\n  product: linux\n  service: auditd\ndetection:\n  sel:\n    type: EXECVE\n  condition: sel\n", 5, "logsource.service"},
		{"title: x\nid: t-field\nlogsource: {product: linux, category: process_creation}\ndetection:\n  sel:\n    TargetFilename|endswith: /x\n  condition: sel\n", 6, "TargetFilename"},
		{"title: x\nid: t-wide\nlogsource: {product: linux, category: process_creation}\ndetection:\n  sel:\n    CommandLine|wide|base64: x\n  condition: sel\n", 6, "|wide"},
	}
	for _, c := range cases {
		t.Run(c.construct, func(t *testing.T) {
			e, dir := newTestEngine(t, map[string]string{"good.yml": shellRule, "bad.yml": c.body})
			st := e.Status()
			if st.Rules != 1 || len(st.Errors) != 1 {
				t.Fatalf("rules %d errors %q: want the good rule and one error", st.Rules, st.Errors)
			}
			want := filepath.Join(dir, "bad.yml") + ":" + strconv.Itoa(c.line) + ":"
			if msg := st.Errors[0]; !strings.HasPrefix(msg, want) || !strings.Contains(msg, c.construct) {
				t.Fatalf("error %q: want it to start with %q and name %q", msg, want, c.construct)
			}
			if out := e.Detect(execEvent("/usr/bin/bash")); len(out) != 1 || out[0].Alert.RuleID != "t-shell" {
				t.Fatalf("the good rule did not fire: %v", out)
			}
		})
	}
}

// TestBrokenReloadKeepsPrevious: a file broken by an edit keeps its last
// good version (and reports the error); fixing it loads the new version;
// removing it removes its rules.
func TestBrokenReloadKeepsPrevious(t *testing.T) {
	e, dir := newTestEngine(t, map[string]string{"a.yml": shellRule})
	path := filepath.Join(dir, "a.yml")
	gen := e.Status().Generation
	if err := os.WriteFile(path, []byte(strings.Replace(shellRule, "condition: sel", "condition: sel and", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	e.ReloadNow()
	st := e.Status()
	if st.Generation == gen || st.Rules != 1 || len(st.Errors) != 1 || !strings.HasPrefix(st.Errors[0], path+":") {
		t.Fatalf("after a broken edit: generation %d (was %d), rules %d, errors %q", st.Generation, gen, st.Rules, st.Errors)
	}
	if out := e.Detect(execEvent("/usr/bin/bash")); len(out) != 1 {
		t.Fatalf("the previous version stopped firing: %v", out)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(shellRule, "/bash", "/dash", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	e.ReloadNow()
	if st := e.Status(); st.Rules != 1 || len(st.Errors) != 0 {
		t.Fatalf("after the fix: rules %d, errors %q", st.Rules, st.Errors)
	}
	if out := e.Detect(execEvent("/usr/bin/bash")); len(out) != 0 {
		t.Fatalf("the old version still fires: %v", out)
	}
	if out := e.Detect(execEvent("/usr/bin/dash")); len(out) != 1 {
		t.Fatalf("the new version does not fire: %v", out)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	e.ReloadNow()
	if st := e.Status(); st.Rules != 0 || len(st.Errors) != 0 {
		t.Fatalf("after removal: rules %d, errors %q", st.Rules, st.Errors)
	}
}

// The field registered by this package's tests (see TestRegisteredField):
// a stand-in for the fields of an event kind produced elsewhere.
func init() {
	if err := RegisterField(FieldSpec{Name: "TestPeerTag", Kinds: []event.Kind{event.KindNetConnect}, Doc: "test only",
		Append: func(ev *event.Event, b []byte) []byte {
			if ev.Industrial != nil {
				b = append(b, ev.Industrial.Protocol...)
			}
			b = append(b, '/')
			if ev.Net != nil {
				b = strconv.AppendUint(b, uint64(ev.Net.DstPort), 10)
			}
			return b
		}}); err != nil {
		panic(err)
	}
}

// TestRegisteredField: a field registered for a kind matches with the
// usual modifiers in that kind's log source, and is refused (file, line)
// in a log source that covers other kinds too; registering after an
// engine exists, or twice, fails.
func TestRegisteredField(t *testing.T) {
	e, dir := newTestEngine(t, map[string]string{
		"ok.yml": "title: x\nid: t-reg\nlogsource: {product: linux, category: net_connect}\ndetection:\n  sel:\n    TestPeerTag|startswith: modbus/\n    Image|endswith: /python3\n  condition: sel\nlevel: high\n",
		"bad.yml": "title: x\nid: t-reg-bad\nlogsource: {product: linux, category: network_connection}\ndetection:\n  sel:\n" +
			"    TestPeerTag: x\n  condition: sel\n",
	})
	st := e.Status()
	if st.Rules != 1 || len(st.Errors) != 1 || !strings.HasPrefix(st.Errors[0], filepath.Join(dir, "bad.yml")+":6:") ||
		!strings.Contains(st.Errors[0], "TestPeerTag does not exist for network_connection") {
		t.Fatalf("rules %d errors %q", st.Rules, st.Errors)
	}
	ev := func(exe, proto string, port uint16) *event.Event {
		seq++
		return &event.Event{Kind: event.KindNetConnect, Seq: seq, Process: event.Process{PID: 7, Exe: exe},
			Net: &event.Net{DstPort: port}, Industrial: &event.Industrial{Protocol: proto}}
	}
	out := e.Detect(ev("/usr/bin/python3", "modbus", 502))
	if len(out) != 1 || out[0].Alert.RuleID != "t-reg" {
		t.Fatalf("alerts %v", out)
	}
	found := false
	for _, m := range out[0].Alert.Matches {
		found = found || (m.Field == "TestPeerTag" && m.Value == "modbus/502")
	}
	if !found {
		t.Fatalf("matches %+v do not name TestPeerTag=modbus/502", out[0].Alert.Matches)
	}
	if out := e.Detect(ev("/usr/bin/python3", "s7comm", 102)); len(out) != 0 {
		t.Fatalf("s7comm fired: %v", out)
	}
	if out := e.Detect(ev("/opt/scada/bin/hmi", "modbus", 502)); len(out) != 0 {
		t.Fatalf("the HMI fired: %v", out)
	}
	if err := RegisterField(FieldSpec{Name: "Late", Kinds: []event.Kind{event.KindExec}, Append: func(_ *event.Event, b []byte) []byte { return b }}); !errors.Is(err, ErrFieldsSealed) {
		t.Fatalf("registering after New: %v", err)
	}
	made := engines.Swap(0) // the duplicate check comes after the sealed one
	defer engines.Store(made)
	if err := RegisterField(FieldSpec{Name: "Image", Kinds: []event.Kind{event.KindExec}, Append: func(_ *event.Event, b []byte) []byte { return b }}); err == nil {
		t.Fatal("a second Image field was registered")
	}
}
