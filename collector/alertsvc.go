package collector

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/watchpost/watchpost/collector/alerts"
	"github.com/watchpost/watchpost/collector/filter"
	"github.com/watchpost/watchpost/collector/store"
	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

// maxInstanceID bounds a heartbeat's instance id (it keys the alert state).
const maxInstanceID = 128

// alertCheckInterval is how often silent agents are looked for.
const alertCheckInterval = 200 * time.Millisecond

// startAlerts seeds the alert engine with each agent's last stored
// heartbeat and checks for missed heartbeats in the background.
func (c *Collector) startAlerts(ctx context.Context) {
	c.alerts = alerts.New(alerts.Config{}, time.Now())
	last, err := c.store.LastHeartbeats(ctx)
	if err != nil {
		c.log.Error().Err(err).Msg("reading last heartbeats; alerts start without history")
	}
	for id, h := range last {
		if c.sharedStore() {
			// Any collector of the fleet may have received it; the one
			// the agent streams to next takes over.
			c.alerts.SeedRemote(id, h.Heartbeat, h.Received)
		} else {
			c.alerts.Seed(id, h.Heartbeat, h.Received)
		}
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		t := time.NewTicker(alertCheckInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				c.raise(ctx, c.confirmSilence(ctx, c.alerts.Check(now)))
				c.flushNotices(ctx, now)
			}
		}
	}()
}

// heartbeatAlerts feeds a stored heartbeat to the alert engine.
func (c *Collector) heartbeatAlerts(ctx context.Context, agent string, hb *watchpostv1.Heartbeat, received time.Time) {
	if c.alerts == nil {
		return
	}
	if _, fresh := c.streamOpened.LoadAndDelete(agent); fresh {
		c.catchUp(ctx, agent)
	}
	c.raise(ctx, c.alerts.Heartbeat(agent, hb, received))
}

// lastHeartbeater is what a shared store offers to follow an agent that
// moves between collectors.
type lastHeartbeater interface {
	LastHeartbeat(ctx context.Context, agentID string) (store.HeartbeatAt, bool, error)
}

// sharedStore reports that other collectors write the same store.
func (c *Collector) sharedStore() bool {
	_, ok := c.store.(lastHeartbeater)
	return ok && c.cfg.Store == StorePostgres
}

// catchUp takes, when an agent opens a stream, the last heartbeat another
// collector of the fleet received from it since this one last saw it, so
// that a move between collectors is not taken for a sequence gap.
func (c *Collector) catchUp(ctx context.Context, agent string) {
	if !c.sharedStore() {
		return
	}
	h, ok, err := c.store.(lastHeartbeater).LastHeartbeat(ctx, agent)
	if err != nil || !ok {
		return
	}
	if mine, known := c.alerts.LastReceived(agent); !known || h.Received.After(mine) {
		c.alerts.SeedRemote(agent, h.Heartbeat, h.Received)
	}
}

// confirmSilence drops the missed-heartbeat alerts of agents that went on
// sending to another collector of the fleet (the shared store has a newer
// heartbeat); that collector reports their silence if it comes.
func (c *Collector) confirmSilence(ctx context.Context, as []*watchpostv1.Alert) []*watchpostv1.Alert {
	if !c.sharedStore() || len(as) == 0 {
		return as
	}
	out := as[:0]
	for _, a := range as {
		if a.Kind == watchpostv1.AlertKind_ALERT_KIND_MISSED_HEARTBEAT {
			h, ok, err := c.store.(lastHeartbeater).LastHeartbeat(ctx, a.AgentId)
			mine, _ := c.alerts.LastReceived(a.AgentId)
			if err == nil && ok && h.Received.After(mine) {
				c.alerts.SeedRemote(a.AgentId, h.Heartbeat, h.Received)
				continue
			}
		}
		out = append(out, a)
	}
	return out
}

// noteAgentEvents tells the alert engine about a stored agent_stop event
// and raises an alert for each agent_tamper event (the agent found its own
// state damaged).
func (c *Collector) noteAgentEvents(ctx context.Context, agent string, events []*watchpostv1.Event) {
	var tamper []*watchpostv1.Alert
	for _, ev := range events {
		switch ev.Header.Type {
		case watchpostv1.EventType_EVENT_TYPE_AGENT_STOP:
			if c.alerts != nil {
				c.alerts.AgentStopped(agent)
			}
		case watchpostv1.EventType_EVENT_TYPE_AGENT_TAMPER:
			t := ev.GetTamper()
			k := watchpostv1.AlertKind_ALERT_KIND_AGENT_TAMPER
			tamper = append(tamper, &watchpostv1.Alert{
				AgentId: agent, Host: agent, Kind: k, TimeUnixNano: time.Now().UnixNano(), Count: 1, BootId: ev.Header.BootId,
				Message:  fmt.Sprintf("the agent found %s (%s) damaged and %s: %s", t.GetWhat(), t.GetFile(), t.GetAction(), t.GetError()),
				Severity: alerts.KindSeverity(k), State: watchpostv1.AlertState_ALERT_STATE_OPEN,
			})
		default:
			if a := c.responseAlert(agent, ev); a != nil {
				tamper = append(tamper, a)
			}
		}
	}
	c.raise(ctx, tamper)
}

// responseAlertEvery bounds the alerts one policy raises on one agent per
// outcome: a policy that blocks a retrying client is one alert a minute,
// its events keep every attempt.
const responseAlertEvery = time.Minute

// responseAlert raises the alert of a response event: a kill or block, a
// monitor-mode "would have", a refused policy set, the kill switch.
func (c *Collector) responseAlert(agent string, ev *watchpostv1.Event) *watchpostv1.Alert {
	var k watchpostv1.AlertKind
	var msg, key string
	switch d := ev.Detail.(type) {
	case *watchpostv1.Event_Response:
		r := d.Response
		k = watchpostv1.AlertKind_ALERT_KIND_RESPONSE
		if r.Outcome == "would_kill" || r.Outcome == "would_block" {
			k = watchpostv1.AlertKind_ALERT_KIND_RESPONSE_WOULD_HAVE
		}
		what := r.Exe
		switch {
		case r.DstAddr != "":
			what = fmt.Sprintf("%s %s:%d", r.Protocol, r.DstAddr, r.DstPort)
		case r.Device != "":
			what = fmt.Sprintf("%s device %s", r.DevKind, r.Device)
		case r.Family != "":
			what = fmt.Sprintf("%s %s socket", r.Family, r.SockType)
		case r.RuleId != "":
			what = "rule " + r.RuleId
		}
		p := ev.GetProcess()
		msg = fmt.Sprintf("policy %s (%s, %s): %s pid %d %s: %s", r.Policy, r.Action, r.Mode, r.Outcome, p.GetPid(), p.GetExe(), what)
		if r.Error != "" {
			msg += " (" + r.Error + ")"
		}
		key = agent + "\x00" + r.Policy + "\x00" + r.Outcome
	case *watchpostv1.Event_Policies:
		p := d.Policies
		switch {
		case len(p.Errors) > 0:
			k, msg = watchpostv1.AlertKind_ALERT_KIND_POLICIES_REFUSED, "policies refused, the previous set stays: "+strings.Join(p.Errors, "; ")
		case !p.Enforcing:
			k, msg = watchpostv1.AlertKind_ALERT_KIND_KILL_SWITCH, "the response kill switch is on: no policy is enforced on this host"
		default:
			return nil
		}
	default:
		return nil
	}
	if key != "" {
		now := time.Now()
		c.countMu.Lock()
		if c.responseAlerted == nil {
			c.responseAlerted = map[string]time.Time{}
		}
		last, seen := c.responseAlerted[key]
		if seen && now.Sub(last) < responseAlertEvery {
			c.countMu.Unlock()
			return nil
		}
		if len(c.responseAlerted) > 100000 {
			clear(c.responseAlerted) // bounded: at worst an extra alert
		}
		c.responseAlerted[key] = now
		c.countMu.Unlock()
	}
	if len(msg) > 1024 {
		msg = msg[:1024]
	}
	return &watchpostv1.Alert{AgentId: agent, Host: agent, Kind: k, TimeUnixNano: time.Now().UnixNano(), Count: 1,
		BootId: ev.GetHeader().GetBootId(), Message: strings.ToValidUTF8(msg, "?"), Severity: alerts.KindSeverity(k),
		State: watchpostv1.AlertState_ALERT_STATE_OPEN}
}

// raise stores alerts and logs each (alerts are rare state changes).
func (c *Collector) raise(ctx context.Context, as []*watchpostv1.Alert) {
	if len(as) == 0 {
		return
	}
	if err := c.store.RecordAlerts(ctx, as); err != nil {
		c.alertStoreErr.Add(uint64(len(as)))
		c.log.Error().Err(err).Int("alerts", len(as)).Msg("storing alerts failed")
	}
	c.countMu.Lock()
	for _, a := range as {
		c.alertsRaised[alerts.KindName(a.Kind)]++
	}
	c.countMu.Unlock()
	for _, a := range as {
		c.log.Warn().Str("agent", a.AgentId).Str("alert", a.Kind.String()).Uint64("count", a.Count).Msg(a.Message)
	}
}

func (q *queryService) ListAlerts(ctx context.Context, req *watchpostv1.ListAlertsRequest) (*watchpostv1.ListAlertsResponse, error) {
	limit := int(req.GetLimit())
	if limit == 0 {
		limit = q.c.cfg.Query.DefaultLimit
	}
	limit = min(limit, q.c.cfg.Query.MaxLimit)
	f := store.AlertFilter{AgentID: req.GetAgentId(), Host: req.GetHost(), States: req.GetStates(),
		MinSeverity: req.GetMinSeverity(), Kinds: req.GetKinds(), BeforeID: req.GetBeforeId(),
		RuleID: req.GetRuleId(), Technique: req.GetTechnique()}
	if req.GetSinceUnixNano() != 0 {
		f.Since = time.Unix(0, req.GetSinceUnixNano())
	}
	if req.GetUntilUnixNano() != 0 {
		f.Until = time.Unix(0, req.GetUntilUnixNano())
	}
	// One more than asked tells whether more matched.
	var as []*watchpostv1.Alert
	err := q.c.bounded(ctx, "listing alerts", func(ctx context.Context) (err error) {
		as, err = q.c.store.Alerts(ctx, f, limit+1)
		return err
	})
	if err != nil {
		return nil, err
	}
	resp := &watchpostv1.ListAlertsResponse{Alerts: as}
	if len(as) > limit {
		resp.Alerts, resp.Truncated = as[:limit], true
	}
	return resp, nil
}

func (q *queryService) UpdateAlerts(ctx context.Context, req *watchpostv1.UpdateAlertsRequest) (*watchpostv1.UpdateAlertsResponse, error) {
	return q.c.updateAlerts(ctx, caller(ctx), req)
}

// updateAlerts is one triage step by who (the token's name): the query
// API and the dashboard's session both end here.
func (c *Collector) updateAlerts(ctx context.Context, who string, req *watchpostv1.UpdateAlertsRequest) (*watchpostv1.UpdateAlertsResponse, error) {
	u := store.AlertUpdate{IDs: req.GetIds(), State: req.GetState(), By: who, Note: req.GetNote(), At: time.Now()}
	if err := u.Validate(); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	as, err := c.store.UpdateAlerts(ctx, u)
	switch {
	case errors.Is(err, store.ErrUnknownAlert):
		return nil, status.Error(codes.NotFound, err.Error())
	case err != nil:
		c.log.Error().Err(err).Msg("updating alerts failed")
		return nil, status.Error(codes.Internal, "updating alerts failed")
	}
	c.log.Info().Str("user", who).Str("state", filter.AlertStateName(u.State)).Uints64("alerts", u.IDs).Msg("alert triage")
	return &watchpostv1.UpdateAlertsResponse{Alerts: as}, nil
}

// httpAlerts serves GET /api/v1/alerts?agent=&host=&since=&until=&state=&severity=&kind=&before_id=&limit=.
func (c *Collector) httpAlerts(w http.ResponseWriter, r *http.Request) {
	req, err := filter.AlertsQuery(r.URL.Query(), time.Now())
	if err != nil {
		httpError(w, status.Error(codes.InvalidArgument, err.Error()))
		return
	}
	q := &queryService{c: c}
	resp, err := q.ListAlerts(r.Context(), req)
	writeProto(w, resp, err)
}

// httpUpdateAlerts serves POST /api/v1/alerts with an UpdateAlertsRequest
// as JSON ({"ids": ["12"], "state": "ALERT_STATE_ACKNOWLEDGED", "note": "..."}).
func (c *Collector) httpUpdateAlerts(w http.ResponseWriter, r *http.Request) {
	req := &watchpostv1.UpdateAlertsRequest{}
	if !readJSON(w, r, req) {
		return
	}
	q := &queryService{c: c}
	resp, err := q.UpdateAlerts(r.Context(), req)
	writeProto(w, resp, err)
}

// readJSON reads a request message from a JSON body (JSON only: a
// cross-site form cannot send it without a preflight), or answers the
// error and returns false.
func readJSON(w http.ResponseWriter, r *http.Request, m proto.Message) bool {
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		httpError(w, status.Error(codes.InvalidArgument, "Content-Type: application/json required"))
		return false
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		httpError(w, status.Error(codes.InvalidArgument, "reading the request body failed"))
		return false
	}
	if err := protojson.Unmarshal(body, m); err != nil {
		httpError(w, status.Errorf(codes.InvalidArgument, "request body: %v", err))
		return false
	}
	return true
}
