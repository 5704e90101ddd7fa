package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/watchpost/watchpost/agent/config"
	"github.com/watchpost/watchpost/collector"
	"github.com/watchpost/watchpost/collector/collectortest"
	"github.com/watchpost/watchpost/internal/agenttest"
)

// TestPolicyCLIArguments: the policy commands refuse bad arguments before
// they connect, naming what is wrong.
func TestPolicyCLIArguments(t *testing.T) {
	srv := "--server=127.0.0.1:1" // nothing listens: an argument error comes first
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"policy", "set-mode", "plc-egress", "enforce"}, "--host: required"},
		{[]string{"policy", "set-mode", "--host", "gw1", "plc-egress", "on"}, `mode: "on" is not monitor or enforce`},
		{[]string{"policy", "set-mode", "--host", "gw1", "plc-egress"}, "accepts 2 arg(s), received 1"},
		{[]string{"kill-switch", "--host", "gw1", "maybe"}, `kill switch: "maybe" is not on or off`},
		{[]string{"kill-switch", "on"}, "--host: required"},
		{[]string{"kill-switch", "--host", "gw1", "--wait", "2m", "on"}, "--wait: 2m0s is not between 1ms and 1m"},
		{[]string{"kill-switch", "--host", "gw1"}, "accepts 1 arg(s), received 0"},
		{[]string{"policies", "gw1"}, `unknown command "gw1"`},
	} {
		out, err := cli(t, append(tc.args, srv)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q\n%s", tc.args, err, tc.want, out)
		}
	}
}

// TestPolicyCLI: a real agent with one monitor policy in its file, a real
// collector on loopback mTLS. `watchpost policies` lists the policy;
// `policy set-mode enforce` is applied by the running agent (acknowledged,
// and its next report says enforce) without a restart; `kill-switch on`
// makes it report enforcement off, `off` brings it back; a command to the
// stopped agent is queued and applied when it starts again.
func TestPolicyCLI(t *testing.T) {
	requireRoot(t)
	const id = "gw-cli-policy"
	col, pki := collectortest.Loopback(t, []string{id}, func(cfg *collector.Config) {
		cfg.Query.Tokens = []collector.Token{{Name: "soc", Token: readToken, Role: collector.RoleRead}, {Name: "ops", Token: adminToken, Role: collector.RoleAdmin}}
	})
	srv := "--server=" + col.QueryAddr()
	dir := t.TempDir()
	file := filepath.Join(dir, "policies.yaml")
	// A program that does not exist: the policy never acts, whatever its mode.
	doc := "policies:\n  - id: no-test-tool\n    action: kill_exec\n    selector: {exe: [" + filepath.Join(dir, "absent-tool") + "]}\n"
	if err := os.WriteFile(file, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	opts := agenttest.Options{ID: id, CollectorAddr: col.Addr(), PKI: pki, CommandsDir: state, Mutate: func(c *config.Config) {
		c.Response.Enabled = true
		c.Response.PolicyFile = file
	}}
	ag := agenttest.Start(t, opts)

	// waitList polls `watchpost policies` until a row matches want.
	waitList := func(want string) string {
		t.Helper()
		re := regexp.MustCompile(want)
		var out string
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			var err error
			// NotFound until the agent's first heartbeat.
			if out, err = cli(t, "policies", "--host", id, srv, "--token", readToken); err == nil && re.MatchString(out) {
				return out
			} else if err != nil {
				out = err.Error()
			}
		}
		t.Fatalf("`watchpost policies` never matched %q:\n%s", want, out)
		return ""
	}
	out := waitList(`(?m)^` + id + ` +no-test-tool +kill_exec +monitor +monitoring +0 +0 +0$`)
	if !strings.HasPrefix(out, "HOST ") || strings.Count(out, "\n") != 2 {
		t.Fatalf("policies table:\n%s", out)
	}

	if out, err := cli(t, "policy", "set-mode", "--host", id, "no-test-tool", "enforce", srv, "--token", readToken); err == nil || !strings.Contains(err.Error(), "admin") {
		t.Fatalf("a read token switched a policy: %v\n%s", err, out)
	}
	if out, err := cli(t, "policy", "set-mode", "--host", id, "no-such-policy", "enforce", srv, "--token", adminToken); err == nil ||
		!strings.Contains(err.Error(), `agent "`+id+`" has no policy "no-such-policy" (it has no-test-tool)`) {
		t.Fatalf("an unknown policy: %v\n%s", err, out)
	}
	if out, err := cli(t, "kill-switch", "--host", "gw-nope", "on", srv, "--token", adminToken); err == nil || !strings.Contains(err.Error(), `no agent "gw-nope"`) {
		t.Fatalf("an unknown host: %v\n%s", err, out)
	}

	gen := ag.App.Respond.Status().Generation
	out, err := cli(t, "policy", "set-mode", "--host", id, "no-test-tool", "enforce", "--comment", "reviewed a shift", srv, "--token", adminToken)
	if err != nil || !regexp.MustCompile(`^policy no-test-tool set to enforce for `+id+` \(command \d+\): applied\n$`).MatchString(out) {
		t.Fatalf("set-mode enforce: %v\n%s", err, out)
	}
	if st := ag.App.Respond.Status(); st.Policies[0].Mode != "enforce" || st.Generation != gen+1 {
		t.Fatalf("the agent after set-mode: %+v (generation before %d)", st, gen)
	}
	waitList(`(?m)^` + id + ` +no-test-tool +kill_exec +enforce +enforced `)

	out, err = cli(t, "kill-switch", "--host", id, "on", srv, "--token", adminToken)
	if err != nil || !regexp.MustCompile(`^kill switch on for `+id+` \(command \d+\): applied\n$`).MatchString(out) {
		t.Fatalf("kill-switch on: %v\n%s", err, out)
	}
	if ag.App.Respond.Status().Enforcing {
		t.Fatal("the agent enforces with the kill switch on")
	}
	waitList(`(?m)^` + id + ` +no-test-tool +kill_exec +enforce +kill switch on `)
	if out, err := cli(t, "policies", "--host", id, srv, "--token", readToken, "--json"); err != nil || strings.Contains(out, `"enforcing":true`) ||
		!strings.Contains(out, `"mode":"enforce"`) || !strings.Contains(out, `"online":true`) {
		t.Fatalf("policies --json with the kill switch on: %v\n%s", err, out)
	}
	if _, err := cli(t, "kill-switch", "--host", id, "off", srv, "--token", adminToken); err != nil {
		t.Fatal(err)
	}
	waitList(`(?m)^` + id + ` +no-test-tool +kill_exec +enforce +enforced `)

	// Stopped: the command waits for the agent, which applies it at start.
	ag.Stop(t)
	out, err = cli(t, "policy", "set-mode", "--host", id, "no-test-tool", "monitor", srv, "--token", adminToken)
	if err != nil || !strings.Contains(out, "): queued: the agent is offline (last heartbeat ") {
		t.Fatalf("set-mode to a stopped agent: %v\n%s", err, out)
	}
	ag = agenttest.Start(t, opts)
	waitList(`(?m)^` + id + ` +no-test-tool +kill_exec +monitor +monitoring `)
	if st := ag.App.Respond.Status(); st.Policies[0].Mode != "monitor" || !st.Enforcing {
		t.Fatalf("the restarted agent: %+v", st)
	}
}
