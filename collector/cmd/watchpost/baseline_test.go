package main

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/watchpost/watchpost/agent/config"
	"github.com/watchpost/watchpost/collector"
	"github.com/watchpost/watchpost/collector/collectortest"
	"github.com/watchpost/watchpost/internal/agenttest"
)

// TestBaselineCLI: a real agent learns for seconds and enforces; a program
// it never ran raises a baseline alert that reaches the collector;
// `watchpost baseline` shows the host enforcing; `watchpost baseline allow
// ALERT-ID` (admin only) makes the agent accept the program, so running it
// again raises nothing while another new program still alerts; `watchpost
// baseline relearn` makes the agent learn from nothing again, after which
// the program alerts once more.
func TestBaselineCLI(t *testing.T) {
	requireRoot(t)
	const id = "gw-cli-baseline"
	col, pki := collectortest.Loopback(t, []string{id}, func(cfg *collector.Config) {
		cfg.Query.Tokens = []collector.Token{{Name: "soc", Token: readToken, Role: collector.RoleRead}, {Name: "ops", Token: adminToken, Role: collector.RoleAdmin}}
	})
	srv := "--server=" + col.QueryAddr()
	progs, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ag := agenttest.Start(t, agenttest.Options{ID: id, CollectorAddr: col.Addr(), PKI: pki, Mutate: func(c *config.Config) {
		c.Baseline.Learning = 3 * time.Second
		c.Baseline.SaveInterval = time.Second
		// New programs elsewhere on a busy host must not take the alert
		// budget the test's programs need (throttling has its own test).
		c.Baseline.AlertsPerMinute = 100000
	}})
	until := func(what string, d time.Duration, ok func() (string, bool)) string {
		t.Helper()
		deadline := time.Now().Add(d)
		for {
			out, done := ok()
			if done {
				return out
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s:\n%s", what, out)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	table := func(want string) func() (string, bool) {
		return func() (string, bool) {
			out, err := cli(t, "baseline", srv, "--token", readToken, "--agent", id)
			return out, err == nil && strings.Contains(out, want)
		}
	}
	until("baseline enforcing in the table", 60*time.Second, table(id+"  enforcing"))

	prog := agenttest.NewProgram(t, progs, "wp-cli-new")
	runProg(t, prog)
	ag.Wait(t, "baseline.exec", prog)
	var alertID string
	until("the baseline alert at the collector", 30*time.Second, func() (string, bool) {
		out, err := cli(t, "alerts", srv, "--token", readToken, "--rule", "baseline.exec")
		for _, line := range strings.Split(out, "\n") {
			if err == nil && strings.Contains(line, filepath.Base(prog)) {
				alertID = strings.Fields(line)[0]
			}
		}
		return out, alertID != ""
	})
	if _, err := cli(t, "baseline", "allow", alertID, srv, "--token", readToken); err == nil || !strings.Contains(err.Error(), "admin") {
		t.Fatalf("a read token allowed a baseline item: %v", err)
	}
	out, err := cli(t, "baseline", "allow", alertID, "--comment", "new historian export", srv, "--token", adminToken)
	if err != nil || !strings.Contains(out, "allow of exec "+prog) || !strings.Contains(out, "sent to "+id) {
		t.Fatalf("baseline allow: %v\n%s", err, out)
	}
	// Applied once the agent holds the program's exec item as allowed
	// (other programs of a busy host may be pending beside it).
	until("the allow applied on the agent", 30*time.Second, func() (string, bool) {
		var states []string
		for _, it := range ag.App.Baseline.Items("exec") {
			if slices.Contains(it.Fields, prog) {
				if it.State == "allowed" {
					return "", true
				}
				states = append(states, it.State)
			}
		}
		return fmt.Sprintf("exec items naming %s: %v", prog, states), false
	})
	runProg(t, prog)
	sentinel := agenttest.NewProgram(t, progs, "wp-cli-sentinel")
	runProg(t, sentinel)
	ag.Wait(t, "baseline.exec", sentinel) // judged after the allowed run
	if n := len(ag.Find("baseline.exec", prog)); n != 1 {
		t.Fatalf("%d baseline alerts naming %s, want the 1 from before the allow", n, prog)
	}

	if out, err := cli(t, "baseline", "relearn", id, "--comment", "line 2 recommissioned", srv, "--token", adminToken); err != nil || !strings.Contains(out, "sent to "+id) {
		t.Fatalf("baseline relearn: %v\n%s", err, out)
	}
	// Learning again (for the 3 s period): then enforcing with a baseline
	// that has forgotten the allowed program, which alerts once more.
	until("the agent learning again", 30*time.Second, func() (string, bool) { return "", ag.App.Baseline.Mode() == "learning" })
	until("the agent enforcing after relearning", 30*time.Second, func() (string, bool) { return "", ag.App.Baseline.Mode() == "enforcing" })
	runProg(t, prog)
	until("a second alert for the forgotten program", 30*time.Second, func() (string, bool) {
		return "", len(ag.Find("baseline.exec", prog)) == 2
	})
}

func runProg(t *testing.T, path string) {
	t.Helper()
	if err := exec.Command(path).Run(); err != nil {
		t.Fatal(err)
	}
}
