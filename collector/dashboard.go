package collector

import (
	"context"
	"crypto/subtle"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/watchpost/watchpost/collector/web"
	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

// Rate history of the dashboard's chart: one hour in 10-second buckets.
const (
	dashboardRateStep    = 10 * time.Second
	dashboardRateBuckets = 360
)

// hubTail is a live-hub subscription as the dashboard sees it.
type hubTail struct {
	h *hub
	s *subscriber
}

func (t hubTail) Events() <-chan []*watchpostv1.Event { return t.s.ch }
func (t hubTail) Done() <-chan struct{}               { return t.s.done }
func (t hubTail) TakeDropped() uint64                 { return t.s.takeDropped() }
func (t hubTail) Close()                              { t.h.unsubscribe(t.s) }

// newDashboard builds the web dashboard over the query service, the live
// hub and the query tokens; nil when it is disabled.
func (c *Collector) newDashboard() (*web.Dashboard, error) {
	if !c.cfg.Dashboard.Enabled {
		return nil, nil
	}
	return web.New(web.Config{
		LoginRequired: c.authNeeded,
		SessionTTL:    c.cfg.Dashboard.SessionTTL,
		MaxSessions:   c.cfg.Dashboard.MaxSessions,
		MaxLimit:      c.cfg.Query.MaxLimit,
		RateStep:      dashboardRateStep,
		RateBuckets:   dashboardRateBuckets,
	}, web.Deps{
		Logger: c.log,
		Query:  &queryService{c: c},
		Subscribe: func(f *watchpostv1.EventFilter) web.Tail {
			return hubTail{h: c.hub, s: c.hub.subscribe(toStoreFilter(f))}
		},
		Authenticate:  c.tokenIdentity,
		UpdateAlerts:  c.updateAlerts,
		AddException:  c.addException,
		PolicyCommand: c.policyCommand,
	})
}

// tokenIdentity finds a query token (constant time per comparison).
func (c *Collector) tokenIdentity(token string) (web.Identity, bool) {
	var who web.Identity
	found := false
	for _, t := range c.cfg.Query.Tokens {
		if subtle.ConstantTimeCompare([]byte(t.Token), []byte(token)) == 1 {
			who, found = web.Identity{Name: t.Name, Role: t.Role}, true
		}
	}
	return who, found && token != ""
}

// mountDashboard serves the dashboard under /ui/ and sends / there.
func (c *Collector) mountDashboard(mux *http.ServeMux) {
	if c.web == nil {
		return
	}
	h := c.web.Handler()
	mux.Handle(web.Prefix, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A view's reads share one query budget; the live stream runs
		// on (its backfill has a budget of its own).
		if r.URL.Path != web.Prefix+"api/stream" {
			ctx, cancel := c.withQueryBudget(r.Context())
			defer cancel()
			r = r.WithContext(ctx)
		}
		h.ServeHTTP(w, r)
	}))
	mux.Handle("GET /{$}", http.RedirectHandler(web.Prefix, http.StatusFound))
}

// startDashboard runs the dashboard's rate counter until ctx ends.
func (c *Collector) startDashboard(ctx context.Context) {
	if c.web == nil {
		return
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.web.Run(ctx)
	}()
}

// DashboardURL is the dashboard's address on the query listener ("" when
// disabled or not started).
func (c *Collector) DashboardURL() string {
	if c.web == nil || c.queryLn == nil {
		return ""
	}
	scheme := "http"
	if c.cfg.Query.CertFile != "" {
		scheme = "https"
	}
	host, port, _ := net.SplitHostPort(c.QueryAddr())
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		// Listening on every address: the machine's name is what users type.
		if name, err := os.Hostname(); err == nil {
			host = name
		}
	}
	return scheme + "://" + net.JoinHostPort(host, port) + web.Prefix
}
