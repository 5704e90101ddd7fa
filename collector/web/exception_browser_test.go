package web_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/watchpost/watchpost/collector/store"
	"github.com/watchpost/watchpost/internal/agenttest"
	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

const keyRule = "wp-host-credential-search"

// keySearch performs the rule's behaviour for real: grep looking for
// private keys under dir/name.
func keySearch(t *testing.T, dir, name string) string {
	t.Helper()
	d := filepath.Join(dir, name)
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d, "key"), []byte("-----BEGIN OPENSSH PRIVATE KEY-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("grep", "-r", "-l", "BEGIN OPENSSH PRIVATE KEY", d).CombinedOutput(); err != nil {
		t.Fatalf("grep: %v %s", err, out)
	}
	return d
}

// setuid raises another rule: once its alert is seen, every earlier event
// has been matched.
func setuid(t *testing.T, ag *agenttest.Agent, dir, name string) {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("chmod", "4755", p).CombinedOutput(); err != nil {
		t.Fatalf("chmod: %v %s", err, out)
	}
	ag.Wait(t, "wp-host-setuid-file", p)
}

// TestDetectionExceptionInBrowser: a real detection, on the alerts page
// with its rule, matched fields, process and the exact events behind it;
// the admin adds an exception from it in the browser; the agent stops
// alerting on the same behaviour within seconds and counts it as
// suppressed, and still does after a restart without the collector. The
// page loads nothing from outside 127.0.0.1.
func TestDetectionExceptionInBrowser(t *testing.T) {
	requireRoot(t)
	chromium := chromiumPath(t)
	shots := artifacts(t)
	c, pki := startCollector(t)
	state := t.TempDir()
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ag := agenttest.Start(t, agenttest.Options{ID: agentID, CollectorAddr: c.Addr(), PKI: pki, CommandsDir: state})
	first := keySearch(t, dir, "first")
	ag.Wait(t, keyRule, first)
	var stored *watchpostv1.Alert
	deadline := time.Now().Add(30 * time.Second)
	for stored == nil {
		as, err := c.Store().Alerts(context.Background(), store.AlertFilter{RuleID: keyRule}, 10)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range as {
			if strings.Contains(a.Message, first) {
				stored = a
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the detection never reached the collector")
		}
		time.Sleep(100 * time.Millisecond)
	}

	b := newBrowser(t, chromium, shots)
	o, step, shot := &b.o, b.step, b.shot
	row := fmt.Sprintf(`#alerts-table tr.alert[data-id="%d"]`, stored.Id)
	detail := fmt.Sprintf(`#alerts-table tr.details[data-id="%d"]`, stored.Id)

	step("login", chromedp.Navigate(c.DashboardURL()), chromedp.WaitVisible(chromedp.CSS("#login-form")),
		chromedp.SetValue(chromedp.CSS("#token"), adminToken), chromedp.Click(chromedp.CSS("#login-form button")),
		chromedp.WaitVisible(chromedp.CSS("#nav")))
	// Filtered by rule and technique: the detection is listed by its rule.
	step("alerts", chromedp.Navigate(c.DashboardURL()+"#/alerts?rule="+keyRule+"&technique=T1552&state=open"),
		poll(fmt.Sprintf(`(r => r && r.querySelector('td.rule').textContent === %q)(document.querySelector(%q))`, keyRule, row)))
	step("details", chromedp.Click(chromedp.CSS(row+" button.details")),
		poll(fmt.Sprintf(`(d => d && d.textContent.includes('CommandLine = grep -r -l BEGIN OPENSSH PRIVATE KEY %s') &&
			d.textContent.includes('T1552.001') && [...d.querySelectorAll('tbody tr')].some(r => r.dataset.type === 'exec'))(document.querySelector(%q))`, first, detail)))
	shot("detection-alert")
	sent := time.Now()
	step("add an exception", chromedp.Click(chromedp.CSS(detail+" form.exception-form button[type=submit]")),
		poll(fmt.Sprintf(`/^exception ex-[0-9a-f]+ sent to %s \(command \d+\)$/.test(document.querySelector(%q).textContent)`, agentID, detail+" .exception-status")))
	shot("detection-exception-added")
	for len(ag.App.Detect.RemoteExceptions()) == 0 {
		if time.Since(sent) > 20*time.Second {
			t.Fatal("the agent did not apply the exception")
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("exception applied on the agent %s after the click", time.Since(sent).Round(time.Millisecond))
	if ex := ag.App.Detect.RemoteExceptions()[0]; len(ex.Exe) != 1 || ex.Exe[0] != "/usr/bin/grep" || ex.Rules[0] != keyRule || !strings.Contains(ex.Origin, "by admin") {
		t.Fatalf("exception %+v", ex)
	}
	o.check(t, "alerts")

	second := keySearch(t, dir, "second")
	setuid(t, ag, dir, "control-1")
	if got := ag.Find(keyRule, second); len(got) != 0 {
		t.Fatalf("alerted despite the exception: %s", got[0].JSON)
	}
	if n := ag.Suppressed(keyRule); n != 1 {
		t.Fatalf("suppressed %d, want 1", n)
	}

	// Restarted without the collector: the agent's command log holds it.
	ag.Stop(t)
	ag = agenttest.Start(t, agenttest.Options{ID: agentID, CommandsDir: state})
	third := keySearch(t, dir, "third")
	setuid(t, ag, dir, "control-2")
	if got := ag.Find(keyRule, third); len(got) != 0 {
		t.Fatalf("alerted after the restart: %s", got[0].JSON)
	}
	if n := ag.Suppressed(keyRule); n != 1 {
		t.Fatalf("suppressed %d after the restart, want 1", n)
	}
}
