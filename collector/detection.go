package collector

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/watchpost/watchpost/collector/alerts"
	"github.com/watchpost/watchpost/collector/store"
	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

// detectionAlerts turns a batch's alert events into alerts for the store.
func detectionAlerts(agent, bootID string, events []*watchpostv1.Event) []*watchpostv1.Alert {
	var out []*watchpostv1.Alert
	for _, ev := range events {
		d := ev.GetAlert()
		if d == nil {
			continue
		}
		h := ev.Header
		kind, msg := watchpostv1.AlertKind_ALERT_KIND_DETECTION, alerts.DetectionMessage(d)
		if d.Baseline != nil {
			// The title already says the item and what the baseline knows.
			kind, msg = watchpostv1.AlertKind_ALERT_KIND_BASELINE_ANOMALY, alerts.Clip(d.Title)
		}
		out = append(out, &watchpostv1.Alert{
			AgentId: agent, Host: agent, Kind: kind, TimeUnixNano: h.TimeUnixNano,
			Message: msg, BootId: bootID, Count: d.Count,
			Severity: alerts.LevelSeverity(d.Level), State: watchpostv1.AlertState_ALERT_STATE_OPEN,
			Detection: d, Process: ev.Process, Ancestry: ev.Ancestry, Industrial: ev.Industrial, EventSeq: h.Seq,
		})
	}
	return out
}

// countDetections counts stored detection alerts by kind for /metrics.
func (c *Collector) countDetections(as []*watchpostv1.Alert) {
	if len(as) == 0 {
		return
	}
	c.detectionAlerts.Add(uint64(len(as)))
	c.countMu.Lock()
	for _, a := range as {
		c.alertsRaised[alerts.KindName(a.Kind)]++
	}
	c.countMu.Unlock()
}

// cmdStream is one open ingest stream's command delivery: the stream's
// commit loop sends commands after the agent's first heartbeat and when
// notified of new ones.
type cmdStream struct {
	notify  chan struct{}
	known   bool   // the agent's first heartbeat arrived
	epoch   string // the agent's command epoch
	sent    uint64 // highest seq sent (or applied) on this stream
	started bool   // the epoch was announced
}

type cmdStreams struct {
	mu      sync.Mutex
	byAgent map[string]map[*cmdStream]bool
}

func (r *cmdStreams) add(agent string) *cmdStream {
	cs := &cmdStream{notify: make(chan struct{}, 1)}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byAgent == nil {
		r.byAgent = map[string]map[*cmdStream]bool{}
	}
	if r.byAgent[agent] == nil {
		r.byAgent[agent] = map[*cmdStream]bool{}
	}
	r.byAgent[agent][cs] = true
	return cs
}

func (r *cmdStreams) remove(agent string, cs *cmdStream) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.byAgent[agent], cs)
	if len(r.byAgent[agent]) == 0 {
		delete(r.byAgent, agent)
	}
}

// wake notifies the streams of an agent, or of every agent when agent is "".
func (r *cmdStreams) wake(agent string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for a, set := range r.byAgent {
		if agent != "" && a != agent {
			continue
		}
		for cs := range set {
			select {
			case cs.notify <- struct{}{}:
			default:
			}
		}
	}
}

// wakeCommands tells the agent's streams that it has new commands: on
// this collector, and through the queue on the other collectors of a fleet.
func (c *Collector) wakeCommands(agent string) {
	c.cmds.wake(agent)
	if c.queue != nil {
		if err := c.queue.NotifyCommands(agent); err != nil {
			c.log.Warn().Err(err).Str("agent", agentName(agent)).Msg("telling the other collectors about new commands; they find them within commandSweep")
		}
	}
}

// commandSweep is how often a fleet collector looks for commands of the
// agents streaming to it that another collector's notification missed.
const commandSweep = 30 * time.Second

// commandsFromFleet delivers what other collectors of the fleet issued.
func (c *Collector) commandsFromFleet(ctx context.Context) error {
	if err := c.queue.OnCommands(c.cmds.wake); err != nil {
		return fmt.Errorf("subscribing to command notifications: %w", err)
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		t := time.NewTicker(commandSweep)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				c.cmds.wake("")
			}
		}
	}()
	return nil
}

// commandBatch bounds the commands sent at once.
const commandBatch = 64

// heartbeatCommands learns where the agent stands from its heartbeat.
func (cs *cmdStream) heartbeat(hb *watchpostv1.Heartbeat) {
	if !cs.known {
		cs.known, cs.epoch, cs.sent = true, hb.CommandsEpoch, hb.CommandsApplied
	}
	if hb.CommandsEpoch == cs.epoch && hb.CommandsApplied > cs.sent {
		cs.sent = hb.CommandsApplied
	}
}

// sendCommands sends the commands the agent has not applied, in order,
// announcing the epoch first on each stream.
func (c *Collector) sendCommands(ctx context.Context, agent string, st grpc.BidiStreamingServer[watchpostv1.IngestRequest, watchpostv1.IngestResponse], cs *cmdStream) error {
	if !cs.known {
		return nil
	}
	epoch, err := c.store.CommandEpoch(ctx)
	if err != nil {
		c.log.Error().Err(err).Msg("reading the command epoch")
		return nil
	}
	if !cs.started {
		cs.started = true
		if cs.epoch != epoch {
			cs.sent = 0 // commands of another collector: the agent drops them
		}
		if err := st.Send(&watchpostv1.IngestResponse{Msg: &watchpostv1.IngestResponse_Command{Command: &watchpostv1.Command{Epoch: epoch}}}); err != nil {
			return err
		}
	}
	for {
		cmds, err := c.store.PendingCommands(ctx, agent, cs.sent, commandBatch)
		if err != nil {
			c.log.Error().Err(err).Str("agent", agent).Msg("reading commands")
			return nil
		}
		for _, cmd := range cmds {
			cmd.Epoch = epoch
			if err := st.Send(&watchpostv1.IngestResponse{Msg: &watchpostv1.IngestResponse_Command{Command: cmd}}); err != nil {
				return err
			}
			cs.sent = cmd.Seq
			c.commandsSent.Add(1)
		}
		if len(cmds) < commandBatch {
			return nil
		}
	}
}

func (c *Collector) commandAck(ctx context.Context, agent string, ack *watchpostv1.CommandAck, at time.Time) {
	if err := c.store.RecordCommandAck(ctx, agent, ack, at); err != nil {
		c.log.Error().Err(err).Str("agent", agent).Msg("storing a command acknowledgement failed")
		return
	}
	if ack.Status == watchpostv1.CommandStatus_COMMAND_STATUS_FAILED {
		c.log.Warn().Str("agent", agent).Uint64("seq", ack.Seq).Str("reason", ack.Message).Msg("an agent could not apply a command")
	}
}

// AlertEvents implements QueryService: the stored events an alert names.
func (q *queryService) AlertEvents(ctx context.Context, req *watchpostv1.AlertEventsRequest) (*watchpostv1.AlertEventsResponse, error) {
	var resp *watchpostv1.AlertEventsResponse
	err := q.c.bounded(ctx, "reading the alert's events", func(ctx context.Context) error {
		a, err := q.c.alertByID(ctx, req.GetAlertId())
		if err != nil {
			return err
		}
		resp = &watchpostv1.AlertEventsResponse{Alert: a}
		for _, ref := range a.GetDetection().GetEvents() {
			ev, err := q.c.findEvent(ctx, a, ref)
			if err != nil {
				return err
			}
			if ev == nil {
				resp.Missing = append(resp.Missing, ref)
				continue
			}
			resp.Events = append(resp.Events, ev)
		}
		return nil
	})
	return resp, err
}

// alertByID reads one alert for a client (NotFound when unknown).
func (c *Collector) alertByID(ctx context.Context, id uint64) (a *watchpostv1.Alert, err error) {
	err = c.bounded(ctx, "reading the alert", func(ctx context.Context) error {
		a, err = c.store.AlertByID(ctx, id)
		if errors.Is(err, store.ErrUnknownAlert) {
			return status.Error(codes.NotFound, err.Error())
		}
		return err
	})
	return a, err
}

// findEvent looks an alert's event up by agent, time, type and pid, and
// picks it by boot id and sequence number.
func (c *Collector) findEvent(ctx context.Context, a *watchpostv1.Alert, ref *watchpostv1.EventRef) (ev *watchpostv1.Event, err error) {
	t := time.Unix(0, ref.TimeUnixNano)
	f := store.Filter{AgentID: a.AgentId, Since: t, Until: t, Types: []watchpostv1.EventType{ref.Type}, PID: ref.Pid}
	err = c.bounded(ctx, "reading the alert's events", func(ctx context.Context) error {
		res, err := c.store.Query(ctx, store.Query{Filter: f, Limit: c.cfg.Query.MaxLimit, MaxRows: c.cfg.Query.MaxScanRows})
		for _, e := range res.Events {
			if e.Header.GetSeq() == ref.Seq && (a.BootId == "" || e.Header.GetBootId() == a.BootId) {
				ev = e
			}
		}
		return err
	})
	return ev, err
}

// Exception attributes an alert can give (AddExceptionRequest.by).
var exceptionAttrs = []string{"exe", "ancestor", "user", "path", "peer", "host", "cgroup", "unit"}

// AddException implements QueryService.
func (q *queryService) AddException(ctx context.Context, req *watchpostv1.AddExceptionRequest) (*watchpostv1.AddExceptionResponse, error) {
	return q.c.addException(ctx, caller(ctx), req)
}

func (c *Collector) addException(ctx context.Context, who string, req *watchpostv1.AddExceptionRequest) (*watchpostv1.AddExceptionResponse, error) {
	var ex *watchpostv1.DetectionException
	agent := req.GetAgentId()
	switch {
	case req.GetAlertId() != 0 && req.GetException() != nil:
		return nil, status.Error(codes.InvalidArgument, "alert_id and exception: give one")
	case req.GetAlertId() != 0:
		var a *watchpostv1.Alert
		if err := c.bounded(ctx, "reading the alert", func(ctx context.Context) (err error) {
			if a, err = c.alertByID(ctx, req.GetAlertId()); err != nil {
				return err
			}
			if a.GetDetection() == nil {
				return status.Errorf(codes.InvalidArgument, "alert_id: alert %d is a %s alert, not a detection: nothing to except", a.Id, alerts.KindName(a.Kind))
			}
			if a.GetDetection().GetBaseline() != nil {
				return status.Errorf(codes.InvalidArgument, "alert_id: alert %d is a baseline anomaly: allow its item (watchpost baseline allow %d) instead of an exception", a.Id, a.Id)
			}
			ex, err = c.exceptionFromAlert(ctx, a, req.GetBy())
			return err
		}); err != nil {
			return nil, err
		}
		if agent == "" && !req.GetAllAgents() {
			agent = a.AgentId
		}
	case req.GetException() != nil:
		ex = proto.Clone(req.GetException()).(*watchpostv1.DetectionException)
		if agent == "" && !req.GetAllAgents() {
			return nil, status.Error(codes.InvalidArgument, "agent_id: required (or all_agents)")
		}
	default:
		return nil, status.Error(codes.InvalidArgument, "alert_id or exception: required")
	}
	if req.GetAllAgents() {
		if req.GetAgentId() != "" {
			return nil, status.Error(codes.InvalidArgument, "agent_id and all_agents: give one")
		}
		agent = ""
	}
	if req.GetComment() != "" {
		ex.Comment = req.GetComment()
	}
	if ex.Id == "" {
		var b [6]byte
		_, _ = rand.Read(b[:])
		ex.Id = "ex-" + hex.EncodeToString(b[:])
	}
	if err := validateException(ex); err != nil {
		return nil, status.Error(codes.InvalidArgument, "exception."+err.Error())
	}
	cmd, err := c.store.AddCommand(ctx, agent, &watchpostv1.Command{IssuedBy: who, Comment: ex.Comment,
		Action: &watchpostv1.Command_AddException{AddException: ex}})
	if err != nil {
		c.log.Error().Err(err).Msg("storing a command failed")
		return nil, status.Error(codes.Internal, "storing the exception failed")
	}
	c.wakeCommands(agent)
	c.log.Info().Str("user", who).Str("exception", ex.Id).Strs("rules", ex.Rules).Str("agent", agentName(agent)).Uint64("seq", cmd.Seq).Msg("detection exception added")
	return &watchpostv1.AddExceptionResponse{Exception: ex, CommandSeq: cmd.Seq, AgentId: agent}, nil
}

func agentName(a string) string {
	if a == "" {
		return "every agent"
	}
	return a
}

// exceptionFromAlert covers the alert's rule and the alert's values of the
// attributes named in by.
func (c *Collector) exceptionFromAlert(ctx context.Context, a *watchpostv1.Alert, by []string) (*watchpostv1.DetectionException, error) {
	d := a.GetDetection()
	ex := &watchpostv1.DetectionException{Rules: []string{d.RuleId},
		Comment: fmt.Sprintf("from alert %d (%s)", a.Id, d.Title)}
	p := a.GetProcess()
	var trigger *watchpostv1.Event
	if refs := d.GetEvents(); len(refs) > 0 {
		var err error
		if trigger, err = c.findEvent(ctx, a, refs[len(refs)-1]); err != nil {
			return nil, err
		}
	}
	matched := func(fields ...string) string {
		for _, f := range fields {
			for _, m := range d.GetMatches() {
				if m.Field == f && m.Value != "" {
					return m.Value
				}
			}
		}
		return ""
	}
	for _, attr := range by {
		missing := func() error {
			return status.Errorf(codes.FailedPrecondition, "by: alert %d has no %s", a.Id, attr)
		}
		switch attr {
		case "exe":
			if p.GetExe() == "" {
				return nil, missing()
			}
			ex.Exe = append(ex.Exe, p.GetExe())
		case "ancestor":
			if len(a.GetAncestry()) == 0 || a.GetAncestry()[0].GetExe() == "" {
				return nil, missing()
			}
			ex.Ancestor = append(ex.Ancestor, a.GetAncestry()[0].GetExe())
		case "user":
			if p == nil {
				return nil, missing()
			}
			ex.User = append(ex.User, strconv.FormatUint(uint64(p.GetUid()), 10))
		case "path":
			v := ""
			if f := trigger.GetFile(); f != nil {
				v = f.Path
				if f.NewPath != "" && (trigger.Header.Type == watchpostv1.EventType_EVENT_TYPE_FILE_RENAME || trigger.Header.Type == watchpostv1.EventType_EVENT_TYPE_FILE_LINK) {
					v = f.NewPath
				}
			} else if s := trigger.GetSecurity(); s != nil {
				v = s.Path
			}
			if v == "" {
				v = matched("TargetFilename", "SourceFilename", "Path", "Device")
			}
			if v == "" {
				return nil, missing()
			}
			ex.Path = append(ex.Path, v)
		case "peer":
			n := trigger.GetNet()
			if n == nil || n.DstAddr == "" {
				return nil, missing()
			}
			addr, err := netip.ParseAddr(n.DstAddr)
			if err != nil {
				return nil, missing()
			}
			ex.Peer = append(ex.Peer, netip.AddrPortFrom(addr, uint16(n.DstPort)).String())
		case "host":
			ex.Host = append(ex.Host, a.Host)
		case "cgroup":
			if d.GetCgroup() == "" {
				return nil, missing()
			}
			ex.Cgroup = append(ex.Cgroup, d.GetCgroup())
		case "unit":
			u := unitOf(d.GetCgroup())
			if u == "" {
				return nil, missing()
			}
			ex.Unit = append(ex.Unit, u)
		default:
			return nil, status.Errorf(codes.InvalidArgument, "by: %q is not one of %s", attr, strings.Join(exceptionAttrs, ", "))
		}
	}
	return ex, nil
}

// unitOf is the innermost systemd unit of a cgroup path.
func unitOf(cg string) string {
	parts := strings.Split(cg, "/")
	for i := len(parts) - 1; i >= 0; i-- {
		for _, suffix := range []string{".service", ".scope", ".socket", ".mount"} {
			if strings.HasSuffix(parts[i], suffix) {
				return parts[i]
			}
		}
	}
	return ""
}

// validateException checks what the collector can; the agent checks the
// rest and reports it in its acknowledgement.
func validateException(ex *watchpostv1.DetectionException) error {
	if len(ex.Id) > 128 {
		return errorString("id: longer than 128 bytes")
	}
	lists := map[string][]string{"rules": ex.Rules, "exe": ex.Exe, "ancestor": ex.Ancestor, "user": ex.User, "path": ex.Path,
		"peer": ex.Peer, "host": ex.Host, "cgroup": ex.Cgroup, "unit": ex.Unit}
	attrs := 0
	for name, l := range lists {
		if len(l) > 64 {
			return errorString(name + ": more than 64 values")
		}
		for i, v := range l {
			if v == "" || len(v) > 4096 {
				return errorString(fmt.Sprintf("%s[%d]: empty or longer than 4096 bytes", name, i))
			}
		}
		if name != "rules" {
			attrs += len(l)
		}
	}
	if attrs == 0 && len(ex.Rules) == 0 {
		return errorString("rules: an exception needs rules or at least one of " + strings.Join(exceptionAttrs, ", "))
	}
	return nil
}

type errorString string

func (e errorString) Error() string { return string(e) }

// RemoveException implements QueryService.
func (q *queryService) RemoveException(ctx context.Context, req *watchpostv1.RemoveExceptionRequest) (*watchpostv1.RemoveExceptionResponse, error) {
	who := caller(ctx)
	list, err := q.c.exceptionsInForce(ctx, "")
	if err != nil {
		return nil, err
	}
	i := slices.IndexFunc(list, func(s *watchpostv1.ExceptionStatus) bool { return s.Exception.GetId() == req.GetId() })
	if i < 0 {
		return nil, status.Errorf(codes.NotFound, "exception %q is not in force", req.GetId())
	}
	agent := list[i].AgentId
	cmd, err := q.c.store.AddCommand(ctx, agent, &watchpostv1.Command{IssuedBy: who,
		Action: &watchpostv1.Command_RemoveException{RemoveException: req.GetId()}})
	if err != nil {
		q.c.log.Error().Err(err).Msg("storing a command failed")
		return nil, status.Error(codes.Internal, "storing the removal failed")
	}
	q.c.wakeCommands(agent)
	q.c.log.Info().Str("user", who).Str("exception", req.GetId()).Str("agent", agentName(agent)).Msg("detection exception removed")
	return &watchpostv1.RemoveExceptionResponse{CommandSeq: cmd.Seq, AgentId: agent}, nil
}

// ListExceptions implements QueryService.
func (q *queryService) ListExceptions(ctx context.Context, req *watchpostv1.ListExceptionsRequest) (*watchpostv1.ListExceptionsResponse, error) {
	list, err := q.c.exceptionsInForce(ctx, req.GetAgentId())
	if err != nil {
		return nil, err
	}
	return &watchpostv1.ListExceptionsResponse{Exceptions: list}, nil
}

// exceptionsInForce replays the exception commands: those added and not
// removed, with the acknowledgements of their adding command.
func (c *Collector) exceptionsInForce(ctx context.Context, agent string) ([]*watchpostv1.ExceptionStatus, error) {
	var cmds []store.StoredCommand
	if err := c.bounded(ctx, "listing exceptions", func(ctx context.Context) (err error) {
		cmds, err = c.store.Commands(ctx, agent)
		return err
	}); err != nil {
		return nil, err
	}
	var out []*watchpostv1.ExceptionStatus
	for _, sc := range cmds {
		switch a := sc.Command.Action.(type) {
		case *watchpostv1.Command_AddException:
			out = slices.DeleteFunc(out, func(s *watchpostv1.ExceptionStatus) bool { return s.Exception.Id == a.AddException.Id })
			out = append(out, &watchpostv1.ExceptionStatus{Exception: a.AddException, AgentId: sc.AgentID, CommandSeq: sc.Command.Seq,
				CreatedUnixNano: sc.Command.CreatedUnixNano, IssuedBy: sc.Command.IssuedBy, Deliveries: sc.Deliveries})
		case *watchpostv1.Command_RemoveException:
			out = slices.DeleteFunc(out, func(s *watchpostv1.ExceptionStatus) bool { return s.Exception.Id == a.RemoveException })
		}
	}
	return out, nil
}
