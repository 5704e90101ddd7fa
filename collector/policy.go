package collector

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/watchpost/watchpost/collector/store"
	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

// Waiting for an agent to acknowledge a policy command.
const (
	policyWaitDefault = 10 * time.Second
	policyWaitMax     = time.Minute
	policyWaitPoll    = 100 * time.Millisecond
	// An agent is offline after this many heartbeat intervals of silence
	// (as the dashboard judges it).
	offlineIntervals = 3
)

// ListPolicies implements QueryService: each agent's response policies as
// its last heartbeat reported them.
func (q *queryService) ListPolicies(ctx context.Context, req *watchpostv1.ListPoliciesRequest) (*watchpostv1.ListPoliciesResponse, error) {
	hosts, err := q.c.storedHosts(ctx)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	resp := &watchpostv1.ListPoliciesResponse{}
	for _, h := range hosts {
		if req.GetAgentId() != "" && h.AgentId != req.GetAgentId() {
			continue
		}
		resp.Hosts = append(resp.Hosts, &watchpostv1.HostPolicies{AgentId: h.AgentId, Host: h.Host,
			LastSeenUnixNano: h.LastSeenUnixNano, Online: q.c.online(h, now), Policies: h.Response})
	}
	if req.GetAgentId() != "" && len(resp.Hosts) == 0 {
		return nil, unknownAgent(req.GetAgentId())
	}
	return resp, nil
}

// storedHosts reads the agent registry for a client, under the query
// limits.
func (c *Collector) storedHosts(ctx context.Context) ([]*watchpostv1.HostInfo, error) {
	var hosts []*watchpostv1.HostInfo
	err := c.bounded(ctx, "listing hosts", func(ctx context.Context) (err error) {
		hosts, err = c.store.Hosts(ctx)
		return err
	})
	return hosts, err
}

func unknownAgent(agent string) error {
	return status.Errorf(codes.NotFound, "agent_id: no agent %q has connected to this collector's store", agent)
}

// online: the agent streams to this collector, or its heartbeats (to any
// collector of the fleet) are fresh and the last was not a clean stop's.
func (c *Collector) online(h *watchpostv1.HostInfo, now time.Time) bool {
	c.cmds.mu.Lock()
	live := len(c.cmds.byAgent[h.AgentId]) > 0
	c.cmds.mu.Unlock()
	if live {
		return true
	}
	interval := time.Duration(h.HeartbeatIntervalNanos)
	if interval <= 0 {
		interval = 10 * time.Second
	}
	return h.LastSeenUnixNano != 0 && !h.Stopped && now.Sub(time.Unix(0, h.LastSeenUnixNano)) < offlineIntervals*interval
}

// PolicyCommand implements QueryService: a policy's mode or the kill
// switch of one agent, sent over its stream like every command, then
// waited for until the agent acknowledges it, the wait ends, or at once
// when the agent is offline (the command is queued for its return).
func (q *queryService) PolicyCommand(ctx context.Context, req *watchpostv1.PolicyCommandRequest) (*watchpostv1.PolicyCommandResponse, error) {
	return q.c.policyCommand(ctx, caller(ctx), req)
}

// policyCommand is PolicyCommand issued by who: the query API's caller or
// a dashboard session.
func (c *Collector) policyCommand(ctx context.Context, who string, req *watchpostv1.PolicyCommandRequest) (*watchpostv1.PolicyCommandResponse, error) {
	agent := req.GetAgentId()
	if agent == "" {
		return nil, status.Error(codes.InvalidArgument, "agent_id: required (policies are one host's)")
	}
	wait := time.Duration(req.GetWaitMillis()) * time.Millisecond
	switch {
	case wait == 0:
		wait = policyWaitDefault
	case wait > policyWaitMax:
		return nil, status.Errorf(codes.InvalidArgument, "wait_millis: %d is more than %d", req.GetWaitMillis(), policyWaitMax.Milliseconds())
	}
	hosts, err := c.storedHosts(ctx)
	if err != nil {
		return nil, err
	}
	var h *watchpostv1.HostInfo
	for _, x := range hosts {
		if x.AgentId == agent {
			h = x
		}
	}
	if h == nil {
		return nil, unknownAgent(agent)
	}
	pols := h.Response
	if pols == nil {
		return nil, status.Errorf(codes.FailedPrecondition, "agent %q reports no response policies (response.enabled is false there, or the agent predates them)", agent)
	}
	cmd := &watchpostv1.Command{IssuedBy: who, Comment: req.GetComment()}
	var what string
	switch a := req.GetAction().(type) {
	case *watchpostv1.PolicyCommandRequest_SetMode:
		id, mode := a.SetMode.GetId(), a.SetMode.GetMode()
		if mode != "monitor" && mode != "enforce" {
			return nil, status.Errorf(codes.InvalidArgument, "set_mode.mode: %q is not monitor or enforce", mode)
		}
		known := false
		for _, p := range pols.Policies {
			known = known || p.Id == id
		}
		if !known {
			return nil, status.Errorf(codes.NotFound, "set_mode.id: agent %q has no policy %q (%s)", agent, id, policyIDs(pols))
		}
		cmd.Action = &watchpostv1.Command_SetPolicyMode{SetPolicyMode: &watchpostv1.PolicyMode{Id: id, Mode: mode}}
		what = fmt.Sprintf("policy %s to %s", id, mode)
	case *watchpostv1.PolicyCommandRequest_KillSwitch:
		cmd.Action = &watchpostv1.Command_Enforcing{Enforcing: !a.KillSwitch}
		what = fmt.Sprintf("kill switch %s", map[bool]string{true: "on", false: "off"}[a.KillSwitch])
	default:
		return nil, status.Error(codes.InvalidArgument, "set_mode or kill_switch: required")
	}
	stored, err := c.store.AddCommand(ctx, agent, cmd)
	if err != nil {
		c.log.Error().Err(err).Msg("storing a command failed")
		return nil, status.Error(codes.Internal, "storing the policy command failed")
	}
	c.wakeCommands(agent)
	c.log.Info().Str("user", cmd.IssuedBy).Str("agent", agent).Uint64("seq", stored.Seq).Str("command", what).Msg("policy command sent")
	resp := &watchpostv1.PolicyCommandResponse{CommandSeq: stored.Seq, AgentId: agent, Status: watchpostv1.CommandStatus_COMMAND_STATUS_PENDING,
		AgentOnline: c.online(h, time.Now())}
	if !resp.AgentOnline {
		resp.Message = fmt.Sprintf("queued: the agent is offline (last heartbeat %s); it applies the command when it reconnects",
			lastSeen(h.LastSeenUnixNano))
		return resp, nil
	}
	d, err := c.awaitAck(ctx, agent, stored.Seq, wait)
	switch {
	case err != nil:
		return nil, err
	case d == nil:
		resp.Message = fmt.Sprintf("queued: the agent did not acknowledge within %s; it applies the command when it reads it", wait)
	default:
		resp.Status, resp.Message = d.Status, d.Message
	}
	return resp, nil
}

// awaitAck polls the store for the agent's acknowledgement of command seq
// (the agent may stream to another collector of the fleet); nil when the
// wait ended first. Each poll is a read under the query limits of its own:
// the wait holds no query slot between polls.
func (c *Collector) awaitAck(ctx context.Context, agent string, seq uint64, wait time.Duration) (*watchpostv1.CommandDelivery, error) {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	t := time.NewTicker(policyWaitPoll)
	defer t.Stop()
	for {
		var cmds []store.StoredCommand
		err := c.bounded(ctx, "reading the command's delivery", func(ctx context.Context) (err error) {
			cmds, err = c.store.Commands(ctx, agent)
			return err
		})
		if ctx.Err() != nil {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		for _, sc := range cmds {
			if sc.Command.GetSeq() != seq {
				continue
			}
			for _, d := range sc.Deliveries {
				if d.AgentId == agent && d.Status != watchpostv1.CommandStatus_COMMAND_STATUS_PENDING {
					return d, nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil, nil
		case <-t.C:
		}
	}
}

// policyIDs names an agent's policies for an error message.
func policyIDs(p *watchpostv1.Policies) string {
	if len(p.Policies) == 0 {
		return "it has none"
	}
	s := "it has "
	for i, ps := range p.Policies {
		if i == 8 {
			return s + fmt.Sprintf(" and %d more", len(p.Policies)-i)
		}
		if i > 0 {
			s += ", "
		}
		s += ps.Id
	}
	return s
}

func lastSeen(ns int64) string {
	if ns == 0 {
		return "never"
	}
	return time.Unix(0, ns).UTC().Format(time.RFC3339)
}
