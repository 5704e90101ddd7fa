package web_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/watchpost/watchpost/agent/config"
	"github.com/watchpost/watchpost/collector"
	"github.com/watchpost/watchpost/internal/agenttest"
	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

// policyID is the policy the policies tests give the real agent: a kill at
// exec of a program that does not exist, so it never acts in either mode.
const policyID = "no-dashboard-tool"

// startPolicyAgent runs the real agent with one monitor policy, shipping
// to c.
func startPolicyAgent(t *testing.T, c *collector.Collector, pki string) *agenttest.Agent {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, "policies.yaml")
	doc := "policies:\n  - id: " + policyID + "\n    action: kill_exec\n    selector: {exe: [" + filepath.Join(dir, "absent-tool") + "]}\n"
	if err := os.WriteFile(file, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return agenttest.Start(t, agenttest.Options{ID: agentID, CollectorAddr: c.Addr(), PKI: pki, CommandsDir: t.TempDir(), Mutate: func(cfg *config.Config) {
		cfg.Response.Enabled = true
		cfg.Response.PolicyFile = file
	}})
}

// listedMode is the policy's mode as the collector's ListPolicies (what
// `watchpost policies` prints) reports it, and whether the host enforces.
func listedMode(t *testing.T, q watchpostv1.QueryServiceClient) (string, bool) {
	t.Helper()
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+readToken)
	resp, err := q.ListPolicies(ctx, &watchpostv1.ListPoliciesRequest{AgentId: agentID})
	if err != nil {
		return err.Error(), false
	}
	for _, p := range resp.GetHosts()[0].GetPolicies().GetPolicies() {
		if p.Id == policyID {
			return p.Mode, resp.GetHosts()[0].GetPolicies().GetEnforcing()
		}
	}
	return "absent", false
}

// queryClient is a query API client of c (loopback, no token needed).
func queryClient(t *testing.T, c *collector.Collector) watchpostv1.QueryServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(c.QueryAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return watchpostv1.NewQueryServiceClient(conn)
}

// waitListed polls ListPolicies until the policy has mode and the host's
// enforcing is as wanted (the agent reports in its next heartbeat).
func waitListed(t *testing.T, q watchpostv1.QueryServiceClient, mode string, enforcing bool) {
	t.Helper()
	var got string
	var en bool
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if got, en = listedMode(t, q); got == mode && en == enforcing {
			return
		}
	}
	t.Fatalf("ListPolicies never said %s (enforcing %v): last %q (enforcing %v)", mode, enforcing, got, en)
}

// TestDashboardPolicyCommands: the dashboard's policy-command endpoint,
// with a real agent and collector. A read session and a request without
// the CSRF token are refused; an unknown host or policy, a mode that is
// neither monitor nor enforce, a request that is not JSON and one with no
// action get a clear error naming what is wrong; set_mode enforce and back
// to monitor, and the kill switch, are applied by the agent and change
// what the collector's ListPolicies (`watchpost policies`) reports; the
// command is stored under the session's name.
func TestDashboardPolicyCommands(t *testing.T) {
	requireRoot(t)
	c, pki := startCollector(t)
	ag := startPolicyAgent(t, c, pki)
	q := queryClient(t, c)
	waitListed(t, q, "monitor", true)

	base := c.DashboardURL()
	admin, reader := signIn(t, base, adminToken), signIn(t, base, readToken)
	enforce := `{"agent_id":"` + agentID + `","set_mode":{"id":"` + policyID + `","mode":"enforce"}}`

	// The page's read: the host and its policy, nothing done yet.
	code, b := reader.do(http.MethodGet, "api/policies", "")
	var page struct {
		Hosts []struct {
			Host struct {
				AgentID  string `json:"agent_id"`
				Policies struct {
					Enforcing bool `json:"enforcing"`
					Policies  []struct{ ID, Mode, Action string }
				} `json:"policies"`
			} `json:"host"`
			Latest map[string][]json.RawMessage `json:"latest"`
			Types  string                       `json:"types"`
		} `json:"hosts"`
	}
	if err := json.Unmarshal(b, &page); err != nil || code != http.StatusOK || len(page.Hosts) != 1 {
		t.Fatalf("policies: %d %v %s", code, err, b)
	}
	if h := page.Hosts[0]; h.Host.AgentID != agentID || !h.Host.Policies.Enforcing || len(h.Host.Policies.Policies) != 1 ||
		h.Host.Policies.Policies[0].ID != policyID || h.Host.Policies.Policies[0].Mode != "monitor" || h.Host.Policies.Policies[0].Action != "kill_exec" ||
		len(h.Latest) != 0 || h.Types != "response_exec,response_connect,response_socket,response_device,response" {
		t.Fatalf("policies: %s", b)
	}

	refused := []struct {
		name string
		s    *session
		csrf string
		body string
		code int
		msg  string
	}{
		{"read role", reader, reader.csrf, enforce, http.StatusForbidden, `"role read cannot do this; it needs admin"`},
		{"no csrf", admin, "", enforce, http.StatusForbidden, `"missing or wrong X-Watchpost-CSRF header"`},
		{"unknown policy", admin, admin.csrf, `{"agent_id":"` + agentID + `","set_mode":{"id":"no-such","mode":"enforce"}}`, http.StatusNotFound,
			`"set_mode.id: agent \"` + agentID + `\" has no policy \"no-such\" (it has ` + policyID + `)"`},
		{"unknown host", admin, admin.csrf, `{"agent_id":"gw-nope","kill_switch":true}`, http.StatusNotFound,
			`"agent_id: no agent \"gw-nope\" has connected to this collector's store"`},
		{"bad mode", admin, admin.csrf, `{"agent_id":"` + agentID + `","set_mode":{"id":"` + policyID + `","mode":"block"}}`, http.StatusBadRequest,
			`"set_mode.mode: \"block\" is not monitor or enforce"`},
		{"no host", admin, admin.csrf, `{"kill_switch":true}`, http.StatusBadRequest, `"agent_id: required (policies are one host's)"`},
		{"no action", admin, admin.csrf, `{"agent_id":"` + agentID + `"}`, http.StatusBadRequest, `"set_mode or kill_switch: required"`},
		{"not json", admin, admin.csrf, `mode=enforce`, http.StatusBadRequest, `"request: `},
	}
	for _, r := range refused {
		saved := r.s.csrf
		r.s.csrf = r.csrf
		code, b := r.s.do(http.MethodPost, "api/policy-command", r.body)
		r.s.csrf = saved
		if code != r.code || !strings.Contains(string(b), `{"error":`+r.msg) {
			t.Errorf("%s: %d %s, want %d %s", r.name, code, b, r.code, r.msg)
		}
	}
	if m, _ := listedMode(t, q); m != "monitor" || ag.App.Respond.Status().Policies[0].Mode != "monitor" {
		t.Fatalf("a refused request changed the mode: listed %s, agent %+v", m, ag.App.Respond.Status())
	}

	// send posts a command and checks that the agent applied it.
	send := func(body string) {
		t.Helper()
		code, b := admin.do(http.MethodPost, "api/policy-command", body)
		var resp struct {
			Status     string `json:"status"`
			AgentID    string `json:"agent_id"`
			CommandSeq string `json:"command_seq"`
		}
		if err := json.Unmarshal(b, &resp); err != nil || code != http.StatusOK || resp.Status != "COMMAND_STATUS_APPLIED" || resp.AgentID != agentID || resp.CommandSeq == "" {
			t.Fatalf("policy-command %s: %d %v %s", body, code, err, b)
		}
	}
	send(enforce)
	if st := ag.App.Respond.Status(); st.Policies[0].Mode != "enforce" {
		t.Fatalf("the agent after enforce: %+v", st)
	}
	waitListed(t, q, "enforce", true)
	send(`{"agent_id":"` + agentID + `","kill_switch":true}`)
	waitListed(t, q, "enforce", false)
	send(`{"agent_id":"` + agentID + `","kill_switch":false}`)
	waitListed(t, q, "enforce", true)
	send(`{"agent_id":"` + agentID + `","set_mode":{"id":"` + policyID + `","mode":"monitor"},"comment":"back after the shift"}`)
	waitListed(t, q, "monitor", true)

	cmds, err := c.Store().Commands(context.Background(), agentID)
	if err != nil {
		t.Fatal(err)
	}
	var mine int
	for _, sc := range cmds {
		switch sc.Command.GetAction().(type) {
		case *watchpostv1.Command_SetPolicyMode, *watchpostv1.Command_Enforcing:
			if sc.Command.GetIssuedBy() != "admin" {
				t.Errorf("command %d issued by %q, want admin", sc.Command.GetSeq(), sc.Command.GetIssuedBy())
			}
			mine++
		}
	}
	if mine != 4 {
		t.Fatalf("%d policy commands stored, want 4: %v", mine, cmds)
	}
	if last := cmds[len(cmds)-1].Command; last.GetSetPolicyMode().GetMode() != "monitor" || last.GetComment() != "back after the shift" {
		t.Fatalf("the last command: %v", last)
	}
}
