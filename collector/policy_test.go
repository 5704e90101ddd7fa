package collector_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

// policyHeartbeat is a heartbeat of an agent with one monitor policy.
func policyHeartbeat(agent string, seq uint64, final bool) *watchpostv1.IngestRequest {
	return &watchpostv1.IngestRequest{Msg: &watchpostv1.IngestRequest_Heartbeat{Heartbeat: &watchpostv1.Heartbeat{
		Seq: seq, BootId: "boot-1", RunId: "run-1", Host: agent, InstanceId: "i-1", TimeUnixNano: time.Now().UnixNano(),
		IntervalNanos: int64(10 * time.Second), Final: final,
		Response: &watchpostv1.Policies{Generation: 1, Source: "file", Enforcing: true, Policies: []*watchpostv1.PolicyStatus{
			{Id: "plc-egress", Action: "deny_connect", Mode: "monitor", Acted: 0, WouldHave: 7},
			{Id: "no-sniffing", Action: "deny_socket", Mode: "enforce", Unenforceable: "cgroup/sock_create: not attached", Failed: 1}}},
	}}}
}

// fakePolicyAgent answers every command of its stream: a mode switch is
// applied, the kill switch refused (so both outcomes reach the caller).
func fakePolicyAgent(t *testing.T, c *ingestClient, got chan<- *watchpostv1.Command) {
	go func() {
		for {
			resp, err := c.stream.Recv()
			if err != nil {
				return
			}
			cmd := resp.GetCommand()
			if cmd == nil || cmd.Seq == 0 {
				continue
			}
			ack := &watchpostv1.CommandAck{Seq: cmd.Seq, Status: watchpostv1.CommandStatus_COMMAND_STATUS_APPLIED}
			if _, ok := cmd.Action.(*watchpostv1.Command_Enforcing); ok {
				ack.Status, ack.Message = watchpostv1.CommandStatus_COMMAND_STATUS_FAILED, "detaching: test refusal"
			}
			got <- cmd
			if err := c.stream.Send(&watchpostv1.IngestRequest{Msg: &watchpostv1.IngestRequest_CommandAck{CommandAck: ack}}); err != nil {
				return
			}
		}
	}()
}

// TestPolicyAPI: ListPolicies shows what the agents' heartbeats report;
// PolicyCommand validates its input (unknown agent or policy named, bad
// mode, admin only), delivers the command over the agent's stream and
// reports the agent's acknowledgement, or that the command is queued
// for an agent that is offline.
func TestPolicyAPI(t *testing.T) {
	p := newPKI(t)
	c := startCollector(t, testConfig(t, p, t.TempDir()))
	a := dialIngest(t, c.Addr(), agentTLS(t, p.dir, "agent-a"))
	if err := a.stream.Send(policyHeartbeat("agent-a", 1, false)); err != nil {
		t.Fatal(err)
	}
	cmds := make(chan *watchpostv1.Command, 4)
	fakePolicyAgent(t, a, cmds)
	// agent-b stopped cleanly: offline.
	b := dialIngest(t, c.Addr(), agentTLS(t, p.dir, "agent-b"))
	if err := b.stream.Send(policyHeartbeat("agent-b", 1, true)); err != nil {
		t.Fatal(err)
	}
	_ = b.stream.CloseSend()
	q := queryClient(t, c.QueryAddr())
	read, admin := withToken(readToken), withToken(adminToken)

	var hosts []*watchpostv1.HostPolicies
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		resp, err := q.ListPolicies(read, &watchpostv1.ListPoliciesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		hosts = resp.Hosts
		if len(hosts) == 2 && hosts[0].Online != hosts[1].Online {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("hosts never listed, one online: %v", hosts)
		}
	}
	for _, h := range hosts {
		ps := h.GetPolicies().GetPolicies()
		if h.Online != (h.AgentId == "agent-a") || len(ps) != 2 || ps[0].Id != "plc-egress" || ps[0].Mode != "monitor" || ps[0].WouldHave != 7 ||
			ps[1].Unenforceable == "" || ps[1].Failed != 1 || h.LastSeenUnixNano == 0 {
			t.Fatalf("host %s: %v", h.AgentId, h)
		}
	}
	if resp, err := q.ListPolicies(read, &watchpostv1.ListPoliciesRequest{AgentId: "agent-a"}); err != nil || len(resp.Hosts) != 1 || resp.Hosts[0].AgentId != "agent-a" {
		t.Fatalf("one agent: %v %v", resp, err)
	}

	mode := func(agent, id, m string) *watchpostv1.PolicyCommandRequest {
		return &watchpostv1.PolicyCommandRequest{AgentId: agent, WaitMillis: 5000,
			Action: &watchpostv1.PolicyCommandRequest_SetMode{SetMode: &watchpostv1.PolicyMode{Id: id, Mode: m}}}
	}
	for _, tc := range []struct {
		name string
		do   func() error
		code codes.Code
		msg  string
	}{
		{"list an unknown agent", func() error {
			_, err := q.ListPolicies(read, &watchpostv1.ListPoliciesRequest{AgentId: "gw-nope"})
			return err
		}, codes.NotFound, `no agent "gw-nope"`},
		{"read token", func() error { _, err := q.PolicyCommand(read, mode("agent-a", "plc-egress", "enforce")); return err }, codes.PermissionDenied, "admin"},
		{"unknown agent", func() error { _, err := q.PolicyCommand(admin, mode("gw-nope", "plc-egress", "enforce")); return err }, codes.NotFound, `no agent "gw-nope"`},
		{"unknown policy", func() error { _, err := q.PolicyCommand(admin, mode("agent-a", "plc-egres", "enforce")); return err },
			codes.NotFound, `set_mode.id: agent "agent-a" has no policy "plc-egres" (it has plc-egress, no-sniffing)`},
		{"bad mode", func() error { _, err := q.PolicyCommand(admin, mode("agent-a", "plc-egress", "on")); return err },
			codes.InvalidArgument, `set_mode.mode: "on" is not monitor or enforce`},
		{"no agent", func() error { _, err := q.PolicyCommand(admin, mode("", "plc-egress", "enforce")); return err }, codes.InvalidArgument, "agent_id: required"},
		{"no action", func() error {
			_, err := q.PolicyCommand(admin, &watchpostv1.PolicyCommandRequest{AgentId: "agent-a"})
			return err
		}, codes.InvalidArgument, "set_mode or kill_switch: required"},
		{"long wait", func() error {
			r := mode("agent-a", "plc-egress", "enforce")
			r.WaitMillis = 120000
			_, err := q.PolicyCommand(admin, r)
			return err
		}, codes.InvalidArgument, "wait_millis: 120000 is more than 60000"},
	} {
		err := tc.do()
		if status.Code(err) != tc.code || !strings.Contains(status.Convert(err).Message(), tc.msg) {
			t.Errorf("%s: %v, want %v %q", tc.name, err, tc.code, tc.msg)
		}
	}
	select {
	case cmd := <-cmds:
		t.Fatalf("a refused request reached the agent: %v", cmd)
	default:
	}

	resp, err := q.PolicyCommand(admin, mode("agent-a", "plc-egress", "enforce"))
	if err != nil || resp.Status != watchpostv1.CommandStatus_COMMAND_STATUS_APPLIED || !resp.AgentOnline || resp.CommandSeq == 0 {
		t.Fatalf("set mode: %v %v", resp, err)
	}
	if cmd := <-cmds; cmd.GetSetPolicyMode().GetId() != "plc-egress" || cmd.GetSetPolicyMode().GetMode() != "enforce" || cmd.IssuedBy != "admin" || cmd.Seq != resp.CommandSeq {
		t.Fatalf("the agent got %v", cmd)
	}
	resp, err = q.PolicyCommand(admin, &watchpostv1.PolicyCommandRequest{AgentId: "agent-a", Action: &watchpostv1.PolicyCommandRequest_KillSwitch{KillSwitch: true}})
	if err != nil || resp.Status != watchpostv1.CommandStatus_COMMAND_STATUS_FAILED || resp.Message != "detaching: test refusal" {
		t.Fatalf("kill switch: %v %v", resp, err)
	}
	if cmd := <-cmds; cmd.Action.(*watchpostv1.Command_Enforcing).Enforcing {
		t.Fatalf("kill switch on sent as %v", cmd)
	}

	// The same over HTTP/JSON: listing with a read token, a command only
	// with an admin one.
	do := func(method, path, token, body string) (int, string) {
		req, _ := http.NewRequest(method, "http://"+c.QueryAddr()+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		hr, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer hr.Body.Close()
		b, _ := io.ReadAll(hr.Body)
		return hr.StatusCode, string(b)
	}
	defer http.DefaultClient.CloseIdleConnections()
	if code, body := do("GET", "/api/v1/policies?agent=agent-a", readToken, ""); code != http.StatusOK || !strings.Contains(body, `"would_have":"7"`) ||
		!strings.Contains(body, `"online":true`) {
		t.Fatalf("GET policies: %d %s", code, body)
	}
	const setMonitor = `{"agent_id":"agent-a","set_mode":{"id":"plc-egress","mode":"monitor"}}`
	if code, body := do("POST", "/api/v1/policies", readToken, setMonitor); code != http.StatusForbidden {
		t.Fatalf("POST policies with a read token: %d %s", code, body)
	}
	if code, body := do("POST", "/api/v1/policies", adminToken, setMonitor); code != http.StatusOK || !strings.Contains(body, `"status":"COMMAND_STATUS_APPLIED"`) {
		t.Fatalf("POST policies: %d %s", code, body)
	}
	if cmd := <-cmds; cmd.GetSetPolicyMode().GetMode() != "monitor" {
		t.Fatalf("the agent got %v", cmd)
	}

	start := time.Now()
	resp, err = q.PolicyCommand(admin, mode("agent-b", "plc-egress", "enforce"))
	if err != nil || resp.Status != watchpostv1.CommandStatus_COMMAND_STATUS_PENDING || resp.AgentOnline ||
		!strings.HasPrefix(resp.Message, "queued: the agent is offline") || time.Since(start) > 2*time.Second {
		t.Fatalf("offline agent: %v %v after %s", resp, err, time.Since(start))
	}
}
