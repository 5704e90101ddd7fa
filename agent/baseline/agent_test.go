package baseline_test

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/watchpost/watchpost/agent/baseline"
	"github.com/watchpost/watchpost/agent/config"
	"github.com/watchpost/watchpost/agent/internal/privtest"
	"github.com/watchpost/watchpost/internal/agenttest"
	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

func run(t *testing.T, path string) {
	t.Helper()
	if err := exec.Command(path).Run(); err != nil {
		t.Fatal(err)
	}
}

// TestAgentBaselineEndToEnd runs the real agent (kernel programs
// attached) with a learning period of seconds: once it enforces, a new
// executable the test runs raises exactly one baseline alert naming it;
// after an allow over the command channel, running it again raises none;
// after a restart the baseline is still enforcing and still knows it.
func TestAgentBaselineEndToEnd(t *testing.T) {
	privtest.Require(t)
	stateDir, cmdDir, progs := t.TempDir(), t.TempDir(), privtest.Dir(t)
	mutate := func(c *config.Config) {
		c.Baseline.Dir = stateDir
		c.Baseline.Learning = 3 * time.Second
		c.Baseline.SaveInterval = time.Second
		c.Kernel.Events = []string{"exec", "exit"}
	}
	a := agenttest.Start(t, agenttest.Options{ID: "baseline-e2e", CommandsDir: cmdDir, Mutate: mutate})
	waitMode(t, a.App.Baseline, baseline.ModeEnforcing)

	prog := agenttest.NewProgram(t, progs, "wp-new")
	run(t, prog)
	al := a.Wait(t, "baseline.exec", prog)
	an := al.Event.Alert.Baseline
	if an == nil || an.Family != "exec" || an.Item[0] != prog || al.Event.Process.Exe != prog ||
		!strings.HasPrefix(al.Event.Alert.Title, prog+" (pid ") || !strings.Contains(al.Event.Alert.Title, "this host's baseline never ran it") {
		t.Fatalf("alert %s", al.JSON)
	}

	// Allow it as the collector would.
	ack := a.App.Commands.Apply(&watchpostv1.Command{Seq: 1, IssuedBy: "test", Epoch: "e2e",
		Action: &watchpostv1.Command_BaselineAllow{BaselineAllow: &watchpostv1.BaselineItem{Family: an.Family, Item: an.Item}}})
	if ack == nil || ack.Status != watchpostv1.CommandStatus_COMMAND_STATUS_APPLIED {
		t.Fatalf("allow: %v", ack)
	}
	run(t, prog)
	// A second new program after it: its alert shows the agent has judged
	// the allowed run (events are judged in order).
	sentinel := agenttest.NewProgram(t, progs, "wp-sentinel")
	run(t, sentinel)
	a.Wait(t, "baseline.exec", sentinel)
	if n := countBaseline(a, prog); n != 1 {
		t.Fatalf("%d baseline alerts naming %s, want the 1 from before the allow", n, prog)
	}

	// Restart with the same state: still enforcing, the allowed program
	// still known, a new one still caught.
	a.Stop(t)
	a = agenttest.Start(t, agenttest.Options{ID: "baseline-e2e", CommandsDir: cmdDir, Mutate: mutate})
	if m := a.App.Baseline.Mode(); m != baseline.ModeEnforcing {
		t.Fatalf("mode %s after the restart", m)
	}
	if st := a.App.Baseline.Status(); st.LoadError != "" {
		t.Fatalf("load error after the restart: %s", st.LoadError)
	}
	run(t, prog)
	run(t, sentinel) // pending since its alert: no second alert
	third := agenttest.NewProgram(t, progs, "wp-third")
	run(t, third)
	a.Wait(t, "baseline.exec", third)
	if n := countBaseline(a, prog) + countBaseline(a, sentinel); n != 0 {
		t.Fatalf("%d baseline alerts after the restart for programs allowed or already raised", n)
	}
}

func countBaseline(a *agenttest.Agent, marker string) int {
	n := 0
	for _, f := range baseline.FamilyNames() {
		n += len(a.Find("baseline."+f, marker))
	}
	return n
}

func waitMode(t *testing.T, b *baseline.Baseline, mode string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for b.Mode() != mode {
		if time.Now().After(deadline) {
			t.Fatalf("baseline still %s, want %s", b.Mode(), mode)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
