package collector

import (
	"context"
	"slices"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/watchpost/watchpost/collector/alerts"
	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

// baselineFamilies are the item families agents learn (agent/baseline),
// with the number of fields of each.
var baselineFamilies = map[string]int{"exec": 2, "args": 2, "user": 2, "file_write": 2, "connect": 2, "accept": 3,
	"listen": 2, "device": 2, "module": 1}

// BaselineCommand implements QueryService: allow an item, relearn, or set
// the mode of one agent's baseline; the command goes over the agent's
// stream like exceptions do.
func (q *queryService) BaselineCommand(ctx context.Context, req *watchpostv1.BaselineCommandRequest) (*watchpostv1.BaselineCommandResponse, error) {
	c := q.c
	agent := req.GetAgentId()
	cmd := &watchpostv1.Command{IssuedBy: caller(ctx), Comment: req.GetComment()}
	resp := &watchpostv1.BaselineCommandResponse{}
	switch a := req.GetAction().(type) {
	case *watchpostv1.BaselineCommandRequest_AllowAlertId:
		al, err := c.alertByID(ctx, a.AllowAlertId)
		if err != nil {
			return nil, err
		}
		an := al.GetDetection().GetBaseline()
		if an == nil {
			return nil, status.Errorf(codes.InvalidArgument, "allow_alert_id: alert %d is a %s alert, not a baseline anomaly", al.Id, alerts.KindName(al.Kind))
		}
		if agent != "" && agent != al.AgentId {
			return nil, status.Errorf(codes.InvalidArgument, "agent_id: alert %d is of agent %s, not %s", al.Id, al.AgentId, agent)
		}
		agent = al.AgentId
		resp.Allowed = &watchpostv1.BaselineItem{Family: an.Family, Item: an.Item}
	case *watchpostv1.BaselineCommandRequest_Allow:
		resp.Allowed = a.Allow
	case *watchpostv1.BaselineCommandRequest_Relearn:
		cmd.Action = &watchpostv1.Command_BaselineRelearn{BaselineRelearn: &watchpostv1.BaselineRelearn{}}
	case *watchpostv1.BaselineCommandRequest_Mode:
		if a.Mode != "learning" && a.Mode != "enforcing" {
			return nil, status.Errorf(codes.InvalidArgument, "mode: %q is not learning or enforcing", a.Mode)
		}
		cmd.Action = &watchpostv1.Command_BaselineMode{BaselineMode: a.Mode}
	default:
		return nil, status.Error(codes.InvalidArgument, "allow, allow_alert_id, relearn or mode: required")
	}
	if agent == "" {
		return nil, status.Error(codes.InvalidArgument, "agent_id: required (a baseline is one host's)")
	}
	if it := resp.Allowed; it != nil {
		n, ok := baselineFamilies[it.GetFamily()]
		if !ok {
			return nil, status.Errorf(codes.InvalidArgument, "allow.family: %q is not a baseline family", it.GetFamily())
		}
		if len(it.GetItem()) != n || slices.Contains(it.GetItem(), "") {
			return nil, status.Errorf(codes.InvalidArgument, "allow.item: a %s item has %d non-empty fields, not %d", it.GetFamily(), n, len(it.GetItem()))
		}
		for _, v := range it.GetItem() {
			if len(v) > 4096 {
				return nil, status.Error(codes.InvalidArgument, "allow.item: a field is longer than 4096 bytes")
			}
		}
		cmd.Action = &watchpostv1.Command_BaselineAllow{BaselineAllow: it}
	}
	stored, err := c.store.AddCommand(ctx, agent, cmd)
	if err != nil {
		c.log.Error().Err(err).Msg("storing a command failed")
		return nil, status.Error(codes.Internal, "storing the baseline command failed")
	}
	c.wakeCommands(agent)
	c.log.Info().Str("user", cmd.IssuedBy).Str("agent", agent).Uint64("seq", stored.Seq).Msg("baseline command sent")
	resp.CommandSeq, resp.AgentId = stored.Seq, agent
	return resp, nil
}
