package web_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/watchpost/watchpost/agent/config"
	"github.com/watchpost/watchpost/internal/agenttest"
)

// TestPoliciesInBrowser: the real agent with a monitor kill_exec policy for
// a copy of true made by the test, which the test runs once: the agent
// reports that it would have killed it. The policies page lists the
// policy with its action, mode, enforceability, status, the would-have
// count and that latest outcome linking to the process; Enforce asks for
// a confirmation first (nothing is sent before it); confirmed, the agent
// enforces and the page and the collector's ListPolicies say so; Back to
// monitor undoes it; the kill switch goes on, and off again through its
// confirmation. The screenshots are non-blank, nothing sticks out sideways
// at 1400 px, and the page loads nothing from outside 127.0.0.1.
func TestPoliciesInBrowser(t *testing.T) {
	requireRoot(t)
	chromium := chromiumPath(t)
	shots := artifacts(t)
	c, pki := startCollector(t)
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	tool := filepath.Join(dir, "wp-policy-tool")
	if b, err := os.ReadFile("/bin/true"); err != nil {
		t.Fatal(err)
	} else if err := os.WriteFile(tool, b, 0o755); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "policies.yaml")
	doc := "policies:\n  - id: " + policyID + "\n    action: kill_exec\n    selector: {exe: [" + tool + "]}\n"
	if err := os.WriteFile(file, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	ag := agenttest.Start(t, agenttest.Options{ID: agentID, CollectorAddr: c.Addr(), PKI: pki, CommandsDir: t.TempDir(), Mutate: func(cfg *config.Config) {
		cfg.Response.Enabled = true
		cfg.Response.PolicyFile = file
	}})
	q := queryClient(t, c)
	waitListed(t, q, "monitor", true)
	// Monitor mode: it runs, and the agent says it would have killed it.
	if out, err := exec.Command(tool).CombinedOutput(); err != nil {
		t.Fatalf("%s in monitor mode: %v %s", tool, err, out)
	}

	b := newBrowser(t, chromium, shots)
	o, step := &b.o, b.step
	// shot: also nothing sticks out sideways (a confirmation box included).
	shot := func(name string) {
		t.Helper()
		if out := b.eval(overflow); len(out) != 0 {
			t.Fatalf("%s: the page overflows sideways at 1400 px: %q", name, out)
		}
		b.shot(name)
	}
	sec := fmt.Sprintf(`section.host-policies[data-agent=%q]`, agentID)
	row := fmt.Sprintf(`%s tr.policy[data-policy=%q]`, sec, policyID)
	// rowIs: the row says mode, status and enforceability (with the
	// kill switch on, the agent reports every hook detached), and shows
	// the would-have.
	rowIs := func(mode, status, enforceable string) string {
		return fmt.Sprintf(`(r => r && r.dataset.mode === %q && r.querySelector('td.mode').textContent === %q &&
			r.querySelector('td.status').textContent === %q && r.querySelector('td.enforceable').textContent === %q &&
			r.children[1].textContent === 'kill_exec' && Number(r.querySelector('td.would').textContent) >= 1 &&
			[...r.querySelectorAll('td.latest li')].some(li => li.dataset.outcome === 'would_kill' && li.textContent.includes(%q) &&
				li.querySelector('a.proc').getAttribute('href').startsWith('#/process?')))(document.querySelector(%q))`,
			mode, mode, status, enforceable, tool, row)
	}

	step("login", chromedp.Navigate(c.DashboardURL()), chromedp.WaitVisible(chromedp.CSS("#login-form")),
		chromedp.SetValue(chromedp.CSS("#token"), adminToken), chromedp.Click(chromedp.CSS("#login-form button")),
		chromedp.WaitVisible(chromedp.CSS("#nav")))
	step("policies", chromedp.Click(chromedp.CSS(`#nav a[data-view=policies]`)), poll(rowIs("monitor", "monitoring", "yes")),
		poll(fmt.Sprintf(`document.querySelector(%q).textContent.startsWith('kill switch off')`, sec+" .kill.off")))
	shot("policies")

	// Enforce: a confirmation first, and nothing is sent before it.
	step("enforce asks", chromedp.Click(chromedp.CSS(row+" button.switch")),
		poll(fmt.Sprintf(`(b => b && !b.hidden && b.textContent.includes('a false block can stop production'))(document.querySelector(%q))`, row+" .confirm")))
	shot("policies-confirm")
	if m := ag.App.Respond.Status().Policies[0].Mode; m != "monitor" {
		t.Fatalf("the agent is in %s before the confirmation", m)
	}
	step("enforce confirmed", chromedp.Click(chromedp.CSS(row+" .confirm button.confirm-yes")), poll(rowIs("enforce", "enforced", "yes")))
	if m := ag.App.Respond.Status().Policies[0].Mode; m != "enforce" {
		t.Fatalf("the agent is in %s after the confirmation", m)
	}
	waitListed(t, q, "enforce", true)

	step("back to monitor", chromedp.Click(chromedp.CSS(row+" button.switch")), poll(rowIs("monitor", "monitoring", "yes")))
	if m := ag.App.Respond.Status().Policies[0].Mode; m != "monitor" {
		t.Fatalf("the agent is in %s after back to monitor", m)
	}
	waitListed(t, q, "monitor", true)

	step("kill switch on", chromedp.Click(chromedp.CSS(sec+" button.kill-switch")), poll(rowIs("monitor", "kill switch on", "no: kill switch: detached")),
		poll(fmt.Sprintf(`document.querySelector(%q) !== null`, sec+" .kill.on")))
	if ag.App.Respond.Status().Enforcing {
		t.Fatal("the agent enforces with the kill switch on")
	}
	waitListed(t, q, "monitor", false)
	step("kill switch off", chromedp.Click(chromedp.CSS(sec+" .toolbar button.switch")),
		poll(fmt.Sprintf(`(b => b && !b.hidden)(document.querySelector(%q))`, sec+" .toolbar .confirm")),
		chromedp.Click(chromedp.CSS(sec+" .toolbar .confirm button.confirm-yes")), poll(rowIs("monitor", "monitoring", "yes")))
	waitListed(t, q, "monitor", true)
	o.check(t, "policies")
}
