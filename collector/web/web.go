// Package web is the collector's dashboard: a plain HTML/CSS/JS front end
// and the vendored uPlot chart library, embedded in the binary (nothing is
// loaded from outside, so it works on an air-gapped plant network), and the
// session-authenticated JSON and server-sent-events endpoints it reads.
//
// The collector mounts Handler under Prefix on its query listener.
package web

import (
	"context"
	"embed"
	"errors"
	"io/fs"
	"net/http"
	"path"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/time/rate"

	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

// Prefix is where the dashboard is mounted.
const Prefix = "/ui/"

// Roles, as in the collector's query tokens.
const (
	RoleRead  = "read"
	RoleAdmin = "admin"
)

//go:embed static vendor
var assets embed.FS

// Tail is one live subscription to stored events.
type Tail interface {
	// Events delivers batches of matching events.
	Events() <-chan []*watchpostv1.Event
	// Done is closed when the collector stops.
	Done() <-chan struct{}
	// TakeDropped returns and resets the events lost because the reader was slow.
	TakeDropped() uint64
	Close()
}

// Identity is who a credential belongs to.
type Identity struct {
	Name string
	Role string // RoleRead or RoleAdmin
}

// Deps are the dashboard's collaborators, provided by the collector.
type Deps struct {
	Logger zerolog.Logger
	// Query answers queries exactly as the query API does.
	Query watchpostv1.QueryServiceServer
	// Subscribe starts a live tail.
	Subscribe func(*watchpostv1.EventFilter) Tail
	// Authenticate maps a token to its identity.
	Authenticate func(token string) (Identity, bool)
	// UpdateAlerts is a triage step made by who (the session's name).
	UpdateAlerts func(ctx context.Context, who string, req *watchpostv1.UpdateAlertsRequest) (*watchpostv1.UpdateAlertsResponse, error)
	// AddException sends a detection exception to agents, as who (nil:
	// the dashboard offers no exceptions).
	AddException func(ctx context.Context, who string, req *watchpostv1.AddExceptionRequest) (*watchpostv1.AddExceptionResponse, error)
	// PolicyCommand sends a policy's mode or the kill switch to an agent,
	// as who (nil: the dashboard cannot change policies).
	PolicyCommand func(ctx context.Context, who string, req *watchpostv1.PolicyCommandRequest) (*watchpostv1.PolicyCommandResponse, error)
}

// Config configures the dashboard.
type Config struct {
	// LoginRequired makes every page and endpoint need a session. Without
	// it every caller is an admin (the query API's loopback rule).
	LoginRequired bool
	// SessionTTL is how long a session lives after its last use.
	SessionTTL time.Duration
	// MaxSessions bounds the session table; the least recently used one
	// is dropped beyond it.
	MaxSessions int
	// MaxLimit caps the events one search or aggregation reads.
	MaxLimit int
	// RateStep and RateBuckets shape the event-rate history.
	RateStep    time.Duration
	RateBuckets int
}

// Dashboard serves the web UI.
type Dashboard struct {
	cfg      Config
	deps     Deps
	log      zerolog.Logger
	sessions *sessions
	rates    *rates
	failures *rate.Limiter
	static   fs.FS
	memo     industrialMemo
}

// New builds the dashboard.
func New(cfg Config, deps Deps) (*Dashboard, error) {
	switch {
	case deps.Query == nil || deps.Subscribe == nil || deps.Authenticate == nil || deps.UpdateAlerts == nil:
		return nil, errors.New("dashboard: query, subscribe, authenticate and update alerts are required")
	case cfg.SessionTTL <= 0 || cfg.MaxSessions < 1 || cfg.MaxLimit < 1 || cfg.RateStep <= 0 || cfg.RateBuckets < 2:
		return nil, errors.New("dashboard: session ttl, max sessions, max limit and rate history must be positive")
	}
	return &Dashboard{
		cfg:      cfg,
		deps:     deps,
		log:      deps.Logger.With().Str("component", "dashboard").Logger(),
		sessions: newSessions(cfg.SessionTTL, cfg.MaxSessions),
		rates:    newRates(cfg.RateStep, cfg.RateBuckets),
		// Failed logins: a few per second for everyone, then 429.
		failures: rate.NewLimiter(rate.Limit(2), 10),
		static:   assets,
	}, nil
}

// Run counts stored events by type for the rate chart until ctx ends or
// the collector stops.
func (d *Dashboard) Run(ctx context.Context) {
	t := d.deps.Subscribe(&watchpostv1.EventFilter{})
	defer t.Close()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.Done():
			return
		case evs := <-t.Events():
			d.rates.add(time.Now(), evs, t.TakeDropped())
		}
	}
}

// Handler serves everything under Prefix.
func (d *Dashboard) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+Prefix+"{$}", d.serveAsset("static/index.html"))
	mux.HandleFunc("GET "+Prefix+"static/{file}", d.serveDir("static"))
	mux.HandleFunc("GET "+Prefix+"vendor/uplot/{file}", d.serveDir("vendor/uplot"))
	mux.HandleFunc("POST "+Prefix+"api/login", d.login)
	mux.HandleFunc("POST "+Prefix+"api/logout", d.logout)
	mux.HandleFunc("GET "+Prefix+"api/session", d.session)
	mux.HandleFunc("GET "+Prefix+"api/events", d.authed(RoleRead, d.events))
	mux.HandleFunc("GET "+Prefix+"api/hosts", d.authed(RoleRead, d.hosts))
	mux.HandleFunc("GET "+Prefix+"api/alerts", d.authed(RoleRead, d.alerts))
	mux.HandleFunc("GET "+Prefix+"api/alert-list", d.authed(RoleRead, d.alertList))
	mux.HandleFunc("GET "+Prefix+"api/alert-events", d.authed(RoleRead, d.alertEventsHandler))
	mux.HandleFunc("POST "+Prefix+"api/alert-update", d.authed(RoleAdmin, d.alertUpdate))
	mux.HandleFunc("POST "+Prefix+"api/exception-add", d.authed(RoleAdmin, d.exceptionAdd))
	mux.HandleFunc("GET "+Prefix+"api/policies", d.authed(RoleRead, d.policies))
	mux.HandleFunc("POST "+Prefix+"api/policy-command", d.authed(RoleAdmin, d.policyCommand))
	mux.HandleFunc("GET "+Prefix+"api/overview", d.authed(RoleRead, d.overview))
	mux.HandleFunc("GET "+Prefix+"api/names", d.authed(RoleRead, d.names))
	mux.HandleFunc("GET "+Prefix+"api/process", d.authed(RoleRead, d.process))
	mux.HandleFunc("GET "+Prefix+"api/industrial", d.authed(RoleRead, d.industrial))
	mux.HandleFunc("GET "+Prefix+"api/rates", d.authed(RoleRead, d.ratesHandler))
	mux.HandleFunc("GET "+Prefix+"api/stream", d.authed(RoleRead, d.stream))
	mux.HandleFunc("POST "+Prefix+"api/retention", d.authed(RoleAdmin, d.retention))
	cop := http.NewCrossOriginProtection()
	return securityHeaders(cop.Handler(mux))
}

// contentTypes are set explicitly: the host's MIME tables do not decide
// how the browser reads a script.
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
	"":      "text/plain; charset=utf-8", // LICENSE
}

func (d *Dashboard) serveDir(dir string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		d.serveAsset(path.Join(dir, r.PathValue("file")))(w, r)
	}
}

func (d *Dashboard) serveAsset(name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ct, ok := contentTypes[path.Ext(name)]
		if !ok {
			http.NotFound(w, r)
			return
		}
		b, err := fs.ReadFile(d.static, name)
		if err != nil {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", ct)
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = w.Write(b)
	}
}

// csp allows nothing from outside the collector.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", csp)
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("X-Frame-Options", "DENY")
		h.ServeHTTP(w, r)
	})
}
