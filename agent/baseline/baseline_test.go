package baseline

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"

	"github.com/watchpost/watchpost/agent/event"
)

// clock is a settable time for tests.
type clock struct{ t time.Time }

func (c *clock) now() time.Time      { return c.t }
func (c *clock) add(d time.Duration) { c.t = c.t.Add(d) }
func newClock() *clock               { return &clock{t: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)} }
func testLog(t testing.TB) zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
}

func testConfig(t testing.TB, c *clock, dir string) Config {
	cfg := DefaultConfig()
	cfg.Dir, cfg.Host, cfg.Learning, cfg.Now = dir, "gw-test", time.Hour, c.now
	return cfg
}

func open(t testing.TB, cfg Config) *Baseline {
	t.Helper()
	b, err := New(cfg, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func execEv(c *clock, pid uint32, exe, parent string, uid uint32, args ...string) *event.Event {
	return &event.Event{Kind: event.KindExec, Time: c.t, Seq: uint64(pid),
		Process:  event.Process{PID: pid, EUID: uid, UID: uid, Exe: exe, Args: append([]string{exe}, args...), Comm: filepath.Base(exe)},
		Ancestry: []event.Ancestor{{PID: 1, Exe: parent}}, Exec: &event.Exec{}}
}

func connectEv(c *clock, exe, addr string, port uint16) *event.Event {
	return &event.Event{Kind: event.KindNetConnect, Time: c.t, Process: event.Process{PID: 77, Exe: exe},
		Ancestry: []event.Ancestor{{PID: 1, Exe: "/usr/lib/systemd/systemd"}},
		Net:      &event.Net{Family: "inet", Protocol: "tcp", DstAddr: addr, DstPort: port, Result: errInProgress}}
}

// learnTick advances the clock by d in one-minute ticks.
func learnTick(b *Baseline, c *clock, d time.Duration) {
	for end := c.t.Add(d); c.t.Before(end); {
		c.add(time.Minute)
		b.Tick(c.t)
	}
}

func TestLearnThenEnforce(t *testing.T) {
	c := newClock()
	b := open(t, testConfig(t, c, t.TempDir()))
	if b.Mode() != ModeLearning {
		t.Fatalf("a new host is in mode %s, want learning", b.Mode())
	}
	poller := "/opt/scada/bin/poller"
	if a := b.Observe(execEv(c, 10, poller, "/usr/lib/systemd/systemd", 999, "--plc", "10.0.0.5", "--interval", "500")); a != nil {
		t.Fatalf("learning raised %v", a)
	}
	b.Observe(connectEv(c, poller, "10.0.0.5", 502))
	learnTick(b, c, 59*time.Minute)
	if b.Mode() != ModeLearning {
		t.Fatal("learning ended before its period")
	}
	learnTick(b, c, 2*time.Minute)
	if b.Mode() != ModeEnforcing {
		t.Fatalf("mode %s after the learning period, want enforcing", b.Mode())
	}
	// The known: the same program, arguments of the same shape, the same peer.
	if a := b.Observe(execEv(c, 11, poller, "/usr/lib/systemd/systemd", 999, "--plc", "10.0.0.5", "--interval", "750")); a != nil {
		t.Fatalf("a known program alerted: %s", a[0].Alert.Title)
	}
	if a := b.Observe(connectEv(c, poller, "10.0.0.5", 502)); a != nil {
		t.Fatalf("a known peer alerted: %s", a[0].Alert.Title)
	}
	// A new peer of the known program.
	a := b.Observe(connectEv(c, poller, "10.0.0.9", 4444))
	if len(a) != 1 {
		t.Fatalf("a new peer raised %d alerts, want 1", len(a))
	}
	al := a[0].Alert
	want := "/opt/scada/bin/poller (pid 77, uid 0, child of /usr/lib/systemd/systemd) connected to 10.0.0.9:4444/tcp; " +
		"this host's baseline saw it connect to 10.0.0.5:502/tcp, learned over 1h0m0s"
	if al.Title != want {
		t.Errorf("explanation\n got: %s\nwant: %s", al.Title, want)
	}
	if al.RuleID != "baseline.connect" || al.Level != "medium" || al.Source != "baseline" || a[0].Kind != event.KindAlert {
		t.Errorf("alert %+v", al)
	}
	if diff := cmp.Diff(&event.Anomaly{Family: "connect", Item: []string{poller, "10.0.0.9:4444/tcp"},
		Known: []string{"10.0.0.5:502/tcp"}, KnownCount: 1, LearnedNS: uint64(time.Hour)}, al.Baseline); diff != "" {
		t.Errorf("anomaly (-want +got):\n%s", diff)
	}
	// Alerted once: the item is pending, not raised again.
	if a := b.Observe(connectEv(c, poller, "10.0.0.9", 4444)); a != nil {
		t.Fatal("a pending item alerted twice")
	}
	// A new program, started by a shell.
	a = b.Observe(execEv(c, 12, "/tmp/.x/implant", "/usr/bin/bash", 0))
	if len(a) != 1 { // exec, naming args and user
		t.Fatalf("a new program raised %d alerts, want 1", len(a))
	}
	want = "/tmp/.x/implant (pid 12, uid 0) was started by /usr/bin/bash; this host's baseline never ran it, learned over 1h0m0s; also new: args , user 0"
	if got := a[0].Alert.Title; got != want {
		t.Errorf("exec explanation\n got: %s\nwant: %s", got, want)
	}
	if got := a[0].Alert.Baseline.Also; !slices.Equal(got, []string{"args ", "user 0"}) {
		t.Errorf("also %q", got)
	}
	st := b.Status()
	if st.Alerts != 2 || st.Mode != ModeEnforcing {
		t.Errorf("status %+v", st)
	}
	if st.Families[FamilyConnect].Items != 1 || st.Families[FamilyConnect].Pending != 1 {
		t.Errorf("connect family %+v", st.Families[FamilyConnect])
	}
}

func TestAllowLearnsTheProgramForAShortClock(t *testing.T) {
	c := newClock()
	cfg := testConfig(t, c, t.TempDir())
	cfg.AllowLearning = 10 * time.Minute
	b := open(t, cfg)
	b.Observe(execEv(c, 1, "/usr/sbin/cron", "/usr/lib/systemd/systemd", 0))
	learnTick(b, c, time.Hour)
	tool := "/opt/vendor/bin/updater"
	if a := b.Observe(execEv(c, 2, tool, "/usr/sbin/cron", 0)); len(a) != 1 {
		t.Fatalf("%d alerts, want 1", len(a))
	}
	if err := b.Allow("exec", []string{tool, "/usr/sbin/cron"}, false); err != nil {
		t.Fatal(err)
	}
	// Its other items learn while its clock runs...
	if a := b.Observe(connectEv(c, tool, "10.1.1.1", 443)); a != nil {
		t.Fatalf("an allowed program's clock did not hold: %s", a[0].Alert.Title)
	}
	learnTick(b, c, 11*time.Minute)
	// ...and alert after it.
	if a := b.Observe(connectEv(c, tool, "10.1.1.2", 443)); len(a) != 1 {
		t.Fatalf("after the clock: %d alerts, want 1", len(a))
	}
	// The learned peer stays known.
	if a := b.Observe(connectEv(c, tool, "10.1.1.1", 443)); a != nil {
		t.Fatal("what the clock learned was lost")
	}
	for _, bad := range [][]string{{"nosuch", "a"}, {"exec", "only-one"}, {"exec", "", "x"}} {
		if err := b.Allow(bad[0], bad[1:], false); err == nil {
			t.Errorf("Allow(%q) accepted", bad)
		}
	}
}

func TestBaselineSurvivesRestart(t *testing.T) {
	c := newClock()
	dir := t.TempDir()
	b := open(t, testConfig(t, c, dir))
	b.Observe(execEv(c, 1, "/opt/historian/bin/historian", "/usr/lib/systemd/systemd", 998))
	learnTick(b, c, 30*time.Minute)
	if err := b.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	// Down for a day: downtime does not count as learning.
	c.add(24 * time.Hour)
	b = open(t, testConfig(t, c, dir))
	if st := b.Status(); st.Mode != ModeLearning || time.Duration(st.LearnedNS) != 30*time.Minute || st.LoadError != "" {
		t.Fatalf("after restart: %+v", st)
	}
	learnTick(b, c, 31*time.Minute)
	if b.Mode() != ModeEnforcing {
		t.Fatal("learning did not continue where it stopped")
	}
	if a := b.Observe(execEv(c, 2, "/opt/historian/bin/historian", "/usr/lib/systemd/systemd", 998)); a != nil {
		t.Fatalf("an item learned before the restart alerted: %s", a[0].Alert.Title)
	}
	a := b.Observe(execEv(c, 3, "/usr/bin/nc", "/usr/bin/bash", 0))
	if len(a) == 0 {
		t.Fatal("no alert")
	}
	_ = b.Shutdown(t.Context())
	b = open(t, testConfig(t, c, dir))
	// Pending and enforcing survive: no second alert, no relearning.
	if b.Mode() != ModeEnforcing {
		t.Fatal("mode lost")
	}
	if a := b.Observe(execEv(c, 4, "/usr/bin/nc", "/usr/bin/bash", 0)); a != nil {
		t.Fatal("a pending item alerted again after a restart")
	}
	// A shorter learning period in the configuration applies at once.
	if err := b.Relearn(); err != nil {
		t.Fatal(err)
	}
	learnTick(b, c, 10*time.Minute)
	cfg := testConfig(t, c, dir)
	cfg.Learning = 5 * time.Minute
	_ = b.Shutdown(t.Context())
	if b = open(t, cfg); b.Mode() != ModeEnforcing {
		t.Fatal("a learning period already passed did not end learning at start")
	}
}

func TestDamagedBaselineIsSetAside(t *testing.T) {
	c := newClock()
	good := func(dir string) []byte {
		b := open(t, testConfig(t, c, dir))
		b.Observe(execEv(c, 1, "/usr/sbin/sshd", "/usr/lib/systemd/systemd", 0))
		if err := b.Save(); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(b.Path())
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	data := good(t.TempDir())
	flip := append([]byte(nil), data...)
	flip[len(flip)-5] ^= 0x20
	cases := map[string]struct {
		data []byte
		want string
	}{
		"flipped byte":    {flip, "checksum mismatch"},
		"cut":             {data[:len(data)/2], "checksum mismatch"},
		"empty":           {nil, "no header line"},
		"garbage":         {[]byte("hello\nworld"), "is not \"watchpost-baseline <version> sha256:<hex>\""},
		"future version":  {[]byte(strings.Replace(string(data), "watchpost-baseline 1 ", "watchpost-baseline 9 ", 1)), "format version 9 (this agent reads 1)"},
		"valid sum, junk": {withSum([]byte(`{"mode":"sideways"}`)), `mode "sideways"`},
		"unknown family":  {withSum([]byte(`{"mode":"learning","families":{"dreams":[]}}`)), `unknown family "dreams"`},
		"wrong fields":    {withSum([]byte(`{"mode":"learning","families":{"exec":[{"k":["a"]}]}}`)), "exec item 0 has 1 fields, not 2"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			file := filepath.Join(dir, FileName)
			if err := os.WriteFile(file, tc.data, 0o600); err != nil {
				t.Fatal(err)
			}
			b := open(t, testConfig(t, c, dir))
			st := b.Status()
			if st.Mode != ModeLearning || st.LearnedNS != 0 || !strings.Contains(st.LoadError, file) || !strings.Contains(st.LoadError, tc.want) {
				t.Fatalf("status %+v, want learning and an error naming %s with %q", st, file, tc.want)
			}
			evs := b.Startup()
			if len(evs) != 1 || evs[0].Kind != event.KindAgentTamper || evs[0].Tamper.What != "baseline" || evs[0].Tamper.File != file ||
				!strings.Contains(evs[0].Tamper.Action, "set aside as "+file+".damaged-") {
				t.Fatalf("startup events %+v", evs)
			}
			if b.Startup() != nil {
				t.Error("the tamper event was reported twice")
			}
			aside, _ := filepath.Glob(file + ".damaged-*")
			if len(aside) != 1 {
				t.Fatalf("set aside: %v", aside)
			}
			if kept, _ := os.ReadFile(aside[0]); string(kept) != string(tc.data) {
				t.Error("the damaged file was not kept as it was")
			}
			// Learning restarts and is saved over the damaged one.
			if err := b.Shutdown(t.Context()); err != nil {
				t.Fatal(err)
			}
			if b2 := open(t, testConfig(t, c, dir)); b2.Status().LoadError != "" {
				t.Fatalf("the new baseline did not load: %s", b2.Status().LoadError)
			}
		})
	}
}

func withSum(body []byte) []byte { return []byte(sumHeader(body) + string(body)) }

func TestFamiliesAreBounded(t *testing.T) {
	c := newClock()
	cfg := testConfig(t, c, t.TempDir())
	cfg.MaxItems, cfg.AlertsPerMinute = 16, 5
	b := open(t, cfg)
	for i := range 40 {
		b.Observe(connectEv(c, "/usr/bin/curl", "10.0.0.1", uint16(1000+i)))
	}
	st := b.Status().Families[FamilyConnect]
	if st.Items != 16 || st.Dropped != 24 {
		t.Fatalf("connect family %+v, want 16 items and 24 dropped", st)
	}
	learnTick(b, c, time.Hour)
	// Enforcing with a full family: new items still alert, at the alert rate.
	n := 0
	for i := range 40 {
		n += len(b.Observe(connectEv(c, "/usr/bin/curl", "10.0.0.2", uint16(1000+i))))
	}
	if st := b.Status(); n != 5 || st.Throttled != 35 {
		t.Fatalf("%d alerts and %d throttled, want 5 and 35", n, st.Throttled)
	}
}

func TestItemShapes(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"logrotate", "/etc/logrotate.conf"}, "/etc/logrotate.conf"},
		{[]string{"gzip", "-9", "/var/log/syslog.2"}, "-# /var/log/syslog.#"},
		{[]string{"sh", "-c", "run-parts --report /etc/cron.daily"}, "-c run-parts --report /etc/cron.daily"},
		{[]string{"mktemp", "/tmp/tmp.Ab3dE9xQ"}, "/tmp/tmp.*"},
		{[]string{"poller", "--since=2026-03-01T10:00:00"}, "--since=#-#-#T#:#:#"},
		{[]string{"x", "1", "2", "3", "4", "5", "6", "7", "8", "9"}, "# # # # # # # # …"},
	} {
		if got := string(appendShape(nil, tc.args)); got != tc.want {
			t.Errorf("shape %q = %q, want %q", tc.args, got, tc.want)
		}
	}
	roots := []string{"/etc", "/var/lib", "/var/log"}
	for _, tc := range []struct{ path, want string }{
		{"/etc/passwd", "/etc"},
		{"/etc/ssh/sshd_config", "/etc/ssh"},
		{"/var/lib/historian/2026/03/01/tags.csv", "/var/lib/historian/#"},
		{"/var/log/journal/0a1b2c3d4e5f/system.journal", "/var/log/journal/*"},
		{"/tmp/x", ""},
		{"/etcetera/x", ""},
	} {
		got, ok := appendDirPrefix(nil, tc.path, roots, 2)
		if string(got) != tc.want || ok != (tc.want != "") {
			t.Errorf("dir prefix %s = %q %v, want %q", tc.path, got, ok, tc.want)
		}
	}
}
