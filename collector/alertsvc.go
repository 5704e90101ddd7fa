package collector

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

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
		c.alerts.Seed(id, h.Heartbeat, h.Received)
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
				c.raise(ctx, c.alerts.Check(now))
			}
		}
	}()
}

// heartbeatAlerts feeds a stored heartbeat to the alert engine.
func (c *Collector) heartbeatAlerts(ctx context.Context, agent string, hb *watchpostv1.Heartbeat, received time.Time) {
	if c.alerts != nil {
		c.raise(ctx, c.alerts.Heartbeat(agent, hb, received))
	}
}

// noteAgentStop tells the alert engine about a stored agent_stop event.
func (c *Collector) noteAgentStop(agent string, events []*watchpostv1.Event) {
	if c.alerts == nil {
		return
	}
	for _, ev := range events {
		if ev.Header.Type == watchpostv1.EventType_EVENT_TYPE_AGENT_STOP {
			c.alerts.AgentStopped(agent)
			return
		}
	}
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
	f := store.AlertFilter{AgentID: req.GetAgentId()}
	if req.GetSinceUnixNano() != 0 {
		f.Since = time.Unix(0, req.GetSinceUnixNano())
	}
	as, err := q.c.store.Alerts(ctx, f, limit)
	if err != nil {
		q.c.log.Error().Err(err).Msg("listing alerts failed")
		return nil, status.Error(codes.Internal, "listing alerts failed")
	}
	return &watchpostv1.ListAlertsResponse{Alerts: as}, nil
}

// httpAlerts serves GET /api/v1/alerts?agent=&since=&limit=.
func (c *Collector) httpAlerts(w http.ResponseWriter, r *http.Request) {
	v := r.URL.Query()
	f, err := filter.Parse(filter.Params{Agent: v.Get("agent"), Since: v.Get("since")}, time.Now())
	if err != nil {
		httpError(w, status.Error(codes.InvalidArgument, err.Error()))
		return
	}
	var limit uint64
	if s := v.Get("limit"); s != "" {
		if limit, err = strconv.ParseUint(s, 10, 32); err != nil {
			httpError(w, status.Errorf(codes.InvalidArgument, "limit: %q is not a number", s))
			return
		}
	}
	q := &queryService{c: c}
	resp, err := q.ListAlerts(r.Context(), &watchpostv1.ListAlertsRequest{AgentId: f.AgentId, SinceUnixNano: f.SinceUnixNano, Limit: uint32(limit)})
	writeProto(w, resp, err)
}
