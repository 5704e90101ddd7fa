package web

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"mime"
	"net/http"
	"sync"
	"time"
)

// CookieName is the session cookie.
const CookieName = "watchpost_session"

// CSRFHeader carries the session's CSRF token on state-changing requests.
const CSRFHeader = "X-Watchpost-CSRF"

type session struct {
	id, csrf string
	who      Identity
	expires  time.Time
	done     chan struct{} // closed at logout or expiry: ends the session's live streams
}

// sessions is the server-side session table. A cookie holds only the
// random id; logout and expiry delete the entry.
type sessions struct {
	mu   sync.Mutex
	ttl  time.Duration
	max  int
	byID map[string]*session
}

func newSessions(ttl time.Duration, max int) *sessions {
	return &sessions{ttl: ttl, max: max, byID: map[string]*session{}}
}

func randomToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func (s *sessions) create(who Identity, now time.Time) *session {
	ss := &session{id: randomToken(), csrf: randomToken(), who: who, expires: now.Add(s.ttl), done: make(chan struct{})}
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, old := range s.byID {
		if now.After(old.expires) {
			s.dropLocked(id)
		}
	}
	for len(s.byID) >= s.max {
		var oldest *session
		for _, o := range s.byID {
			if oldest == nil || o.expires.Before(oldest.expires) {
				oldest = o
			}
		}
		s.dropLocked(oldest.id)
	}
	s.byID[ss.id] = ss
	return ss
}

// get returns the live session and extends it.
func (s *sessions) get(id string, now time.Time) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.byID[id]
	if !ok {
		return nil
	}
	if now.After(ss.expires) {
		s.dropLocked(id)
		return nil
	}
	ss.expires = now.Add(s.ttl)
	return ss
}

func (s *sessions) drop(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dropLocked(id)
}

func (s *sessions) dropLocked(id string) {
	if ss, ok := s.byID[id]; ok {
		delete(s.byID, id)
		close(ss.done)
	}
}

func (s *sessions) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byID)
}

type sessionKey struct{}

// current is the request's session; nil when login is not required.
func current(ctx context.Context) *session {
	ss, _ := ctx.Value(sessionKey{}).(*session)
	return ss
}

// lookup returns the request's session, or nil.
func (d *Dashboard) lookup(r *http.Request) *session {
	c, err := r.Cookie(CookieName)
	if err != nil || c.Value == "" {
		return nil
	}
	return d.sessions.get(c.Value, time.Now())
}

// authed admits a request with a session of at least role (every request
// when login is not required). State-changing requests also need the
// session's CSRF token in CSRFHeader.
func (d *Dashboard) authed(role string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		if !d.cfg.LoginRequired {
			h(w, r)
			return
		}
		ss := d.lookup(r)
		if ss == nil {
			writeError(w, http.StatusUnauthorized, "login required")
			return
		}
		if role == RoleAdmin && ss.who.Role != RoleAdmin {
			writeError(w, http.StatusForbidden, "role "+ss.who.Role+" cannot do this; it needs admin")
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead &&
			subtle.ConstantTimeCompare([]byte(r.Header.Get(CSRFHeader)), []byte(ss.csrf)) != 1 {
			writeError(w, http.StatusForbidden, "missing or wrong "+CSRFHeader+" header")
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), sessionKey{}, ss)))
	}
}

type sessionInfo struct {
	LoginRequired bool   `json:"login_required"`
	Name          string `json:"name"`
	Role          string `json:"role"`
	CSRF          string `json:"csrf,omitempty"`
}

func (d *Dashboard) session(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if !d.cfg.LoginRequired {
		writeJSON(w, sessionInfo{Name: "local", Role: RoleAdmin})
		return
	}
	ss := d.lookup(r)
	if ss == nil {
		writeError(w, http.StatusUnauthorized, "login required")
		return
	}
	writeJSON(w, sessionInfo{LoginRequired: true, Name: ss.who.Name, Role: ss.who.Role, CSRF: ss.csrf})
}

// login takes {"token": "..."} as JSON (a cross-site form cannot send
// JSON without a preflight, and CrossOriginProtection refuses it anyway).
func (d *Dashboard) login(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		writeError(w, http.StatusUnsupportedMediaType, "login takes application/json")
		return
	}
	if !d.cfg.LoginRequired {
		writeError(w, http.StatusBadRequest, "login is not required on this listener")
		return
	}
	var req struct {
		Token string `json:"token"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "login: body is not {\"token\": \"...\"}")
		return
	}
	who, ok := d.deps.Authenticate(req.Token)
	if !ok {
		if !d.failures.Allow() {
			writeError(w, http.StatusTooManyRequests, "too many failed logins; wait")
			return
		}
		writeError(w, http.StatusUnauthorized, "unknown token")
		return
	}
	ss := d.sessions.create(who, time.Now())
	http.SetCookie(w, &http.Cookie{
		Name: CookieName, Value: ss.id, Path: Prefix, HttpOnly: true, Secure: r.TLS != nil,
		SameSite: http.SameSiteStrictMode, MaxAge: int(d.cfg.SessionTTL.Seconds()),
	})
	d.log.Info().Str("user", who.Name).Str("role", who.Role).Msg("dashboard login")
	writeJSON(w, sessionInfo{LoginRequired: true, Name: who.Name, Role: who.Role, CSRF: ss.csrf})
}

// logout deletes the session (which also ends its live streams) and the
// cookie. It needs the CSRF token so another page cannot log a user out.
func (d *Dashboard) logout(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if ss := d.lookup(r); ss != nil {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get(CSRFHeader)), []byte(ss.csrf)) != 1 {
			writeError(w, http.StatusForbidden, "missing or wrong "+CSRFHeader+" header")
			return
		}
		d.sessions.drop(ss.id)
		d.log.Info().Str("user", ss.who.Name).Msg("dashboard logout")
	}
	http.SetCookie(w, &http.Cookie{
		Name: CookieName, Value: "", Path: Prefix, HttpOnly: true, Secure: r.TLS != nil,
		SameSite: http.SameSiteStrictMode, MaxAge: -1,
	})
	w.WriteHeader(http.StatusNoContent)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}
