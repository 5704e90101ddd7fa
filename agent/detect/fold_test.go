package detect

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/watchpost/watchpost/agent/event"
)

// TestAlertFolding: one actor repeating a behaviour raises alert_burst
// alerts per window and the rest are folded, counted per rule and named by
// the actor's next alert; other actors and other rules keep alerting
// meanwhile; with every slot in a live window, matches alert rather than
// fold.
func TestAlertFolding(t *testing.T) {
	dir := t.TempDir()
	rules := shellRule + "---\ntitle: Curl\nid: t-curl\nlogsource: {product: linux, category: process_creation}\n" +
		"detection:\n  sel:\n    Image|endswith: /curl\n  condition: sel\nlevel: medium\n"
	if err := os.WriteFile(filepath.Join(dir, "r.yml"), []byte(rules), 0o644); err != nil {
		t.Fatal(err)
	}
	e, err := New(Config{RulesDir: dir, AlertBurst: 3, AlertWindow: 10 * time.Second, MaxGroups: 4}, Deps{Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	at := func(exe string, uid uint32, sec float64) *event.Event {
		ev := execEvent(exe)
		ev.Process.UID = uid
		ev.BootNS = uint64(1e12 + sec*1e9)
		return ev
	}
	detect := func(ev *event.Event) []*event.Alert {
		var out []*event.Alert
		for _, a := range e.Detect(ev) {
			out = append(out, a.Alert)
		}
		return out
	}
	// The loop: 10 shells by uid 0 in 5 s.
	for i := 0; i < 10; i++ {
		got := detect(at("/usr/bin/bash", 0, float64(i)/2))
		if want := i < 3; (len(got) == 1) != want {
			t.Fatalf("shell %d: alerts %+v, want alert %v", i+1, got, want)
		}
		if i < 3 && got[0].Folded != 0 {
			t.Fatalf("shell %d: folded %d", i+1, got[0].Folded)
		}
		if i == 5 {
			// Meanwhile another user's shell and the same user's curl alert.
			if got := detect(at("/usr/bin/bash", 1000, 3)); len(got) != 1 || got[0].RuleID != "t-shell" {
				t.Fatalf("another user's shell: %+v", got)
			}
			if got := detect(at("/usr/bin/curl", 0, 3)); len(got) != 1 || got[0].RuleID != "t-curl" {
				t.Fatalf("the same user's curl: %+v", got)
			}
		}
	}
	if n := e.Status().Folded["t-shell"]; n != 7 {
		t.Fatalf("folded %d, want 7 (%v)", n, e.Status().Folded)
	}
	// The window passed: the next shell alerts and names the 7.
	got := detect(at("/usr/bin/bash", 0, 10.5))
	if len(got) != 1 || got[0].Folded != 7 {
		t.Fatalf("after the window: %+v, want one alert with 7 folded", got)
	}
	if a := e.Detect(at("/usr/bin/bash", 0, 10.6)); len(a) != 1 || a[0].Alert.Folded != 0 {
		t.Fatalf("the next alert repeats the count: %+v", a)
	}

	// Four actors fill the slots (MaxGroups 4) in a live window: a fifth
	// is not folded, however often it repeats.
	for uid := uint32(2000); uid < 2002; uid++ {
		detect(at("/usr/bin/bash", uid, 11))
	}
	for i := 0; i < 5; i++ {
		if got := detect(at("/usr/bin/bash", 3000, 11)); len(got) != 1 {
			t.Fatalf("repeat %d of an actor without a slot: %+v", i, got)
		}
	}
}

func TestAlertFoldingConfig(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{AlertBurst: -1}, "detection.alert_burst: -1 is negative (0 never folds)"},
		{Config{AlertBurst: 5, AlertWindow: time.Millisecond}, "detection.alert_window: 1ms is below 1s"},
	} {
		c.cfg.Defaults()
		if err := c.cfg.Validate(); err == nil || err.Error() != c.want {
			t.Errorf("%+v: %v, want %q", c.cfg, err, c.want)
		}
	}
}
