package web

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/watchpost/watchpost/collector/filter"
	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

// The alerts page: one list across agents, filtered and paged, and triage.
const (
	triagePage    = 100
	maxTriagePage = 500
	// Events behind an alert: the agent's events in a window around it.
	alertEventsBefore = 10 * time.Minute
	alertEventsAfter  = time.Minute
	alertEventsLimit  = 200
)

type triageList struct {
	// Alerts in the query API's JSON, newest first.
	Alerts []json.RawMessage `json:"alerts"`
	// More older alerts match: ask again with before_id = NextBeforeID.
	More         bool   `json:"more"`
	NextBeforeID string `json:"next_before_id,omitempty"`
}

// alertList serves GET alert-list?agent=&host=&since=&until=&state=&severity=&kind=&before_id=&limit=
// with the filters of `watchpost alerts`.
func (d *Dashboard) alertList(w http.ResponseWriter, r *http.Request) {
	req, err := filter.AlertsQuery(r.URL.Query(), time.Now())
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if req.Limit == 0 {
		req.Limit = triagePage
	}
	req.Limit = min(req.Limit, maxTriagePage)
	resp, err := d.deps.Query.ListAlerts(r.Context(), req)
	if err != nil {
		d.queryError(w, err)
		return
	}
	out := triageList{Alerts: make([]json.RawMessage, 0, len(resp.GetAlerts())), More: resp.GetTruncated()}
	for _, a := range resp.GetAlerts() {
		out.Alerts = append(out.Alerts, raw(a))
	}
	if out.More && len(resp.GetAlerts()) > 0 {
		out.NextBeforeID = strconv.FormatUint(resp.GetAlerts()[len(resp.GetAlerts())-1].GetId(), 10)
	}
	writeJSON(w, out)
}

// readRequest reads a request message in the query API's JSON, or answers
// the error and returns false.
func readRequest(w http.ResponseWriter, r *http.Request, m proto.Message) bool {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		writeError(w, http.StatusBadRequest, "reading the request failed")
		return false
	}
	if err := protojson.Unmarshal(body, m); err != nil {
		writeError(w, http.StatusBadRequest, "request: "+err.Error())
		return false
	}
	return true
}

// who is the session's name ("local" without login).
func who(r *http.Request) string {
	if ss := current(r.Context()); ss != nil {
		return ss.who.Name
	}
	return "local"
}

// exceptionAdd serves POST exception-add with an AddExceptionRequest in
// the query API's JSON (from an alert: its id, the attributes to keep and
// the scope): the exception goes to the agents under the session's name.
func (d *Dashboard) exceptionAdd(w http.ResponseWriter, r *http.Request) {
	if d.deps.AddException == nil {
		writeError(w, http.StatusNotImplemented, "exceptions are not available here")
		return
	}
	req := &watchpostv1.AddExceptionRequest{}
	if !readRequest(w, r, req) {
		return
	}
	resp, err := d.deps.AddException(r.Context(), who(r), req)
	if err != nil {
		d.queryError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(raw(resp))
}

// alertUpdate serves POST alert-update with an UpdateAlertsRequest in the
// query API's JSON: the triage step is recorded under the session's name.
func (d *Dashboard) alertUpdate(w http.ResponseWriter, r *http.Request) {
	req := &watchpostv1.UpdateAlertsRequest{}
	if !readRequest(w, r, req) {
		return
	}
	resp, err := d.deps.UpdateAlerts(r.Context(), who(r), req)
	if err != nil {
		d.queryError(w, err)
		return
	}
	out := triageList{Alerts: make([]json.RawMessage, 0, len(resp.GetAlerts()))}
	for _, a := range resp.GetAlerts() {
		out.Alerts = append(out.Alerts, raw(a))
	}
	writeJSON(w, out)
}

// alertEventTypes are the event types that explain an alert of a kind;
// kinds not listed show every event of the agent in the window.
var alertEventTypes = map[watchpostv1.AlertKind]string{
	watchpostv1.AlertKind_ALERT_KIND_SEQUENCE_GAP:      "gap,health,agent_start,agent_stop",
	watchpostv1.AlertKind_ALERT_KIND_UNCLEAN_RESTART:   "agent_start,agent_stop,health,gap",
	watchpostv1.AlertKind_ALERT_KIND_DROP_JUMP:         "health,gap",
	watchpostv1.AlertKind_ALERT_KIND_EVENTS_SHED:       "health,gap",
	watchpostv1.AlertKind_ALERT_KIND_PROGRAMS_DETACHED: "bpf,module_load,ptrace,health,agent_stop",
}

type alertEvents struct {
	Alert json.RawMessage `json:"alert"`
	// The search that finds these events (the Search view's parameters).
	Search map[string]string `json:"search"`
	// Events, newest first.
	Events []json.RawMessage `json:"events"`
	More   bool              `json:"more"`
	// Missing: events a detection names that are not (or no longer) stored.
	Missing int `json:"missing,omitempty"`
}

// alertEventsHandler serves GET alert-events?id=: the alert and the events
// of its agent that explain it, from alertEventsBefore before it was
// raised to alertEventsAfter after.
func (d *Dashboard) alertEventsHandler(w http.ResponseWriter, r *http.Request) {
	id, err := uintParam(r.URL.Query(), "id", 64)
	if err != nil || id == 0 {
		writeError(w, http.StatusBadRequest, "id: an alert id is required")
		return
	}
	lr, err := d.deps.Query.ListAlerts(r.Context(), &watchpostv1.ListAlertsRequest{BeforeId: id + 1, Limit: 1})
	if err != nil {
		d.queryError(w, err)
		return
	}
	if len(lr.GetAlerts()) == 0 || lr.GetAlerts()[0].GetId() != id {
		writeError(w, http.StatusNotFound, "no such alert")
		return
	}
	a := lr.GetAlerts()[0]
	at := time.Unix(0, a.GetTimeUnixNano())
	search := map[string]string{
		"agent": a.GetAgentId(),
		"since": at.Add(-alertEventsBefore).UTC().Format(time.RFC3339Nano),
		"until": at.Add(alertEventsAfter).UTC().Format(time.RFC3339Nano),
	}
	if t, ok := alertEventTypes[a.GetKind()]; ok {
		search["type"] = t
	}
	if det := a.GetDetection(); det != nil {
		// A detection names its events: exactly those, oldest first.
		d.detectionEvents(w, r, a, search)
		return
	}
	f, err := filter.Parse(filter.Params{Agent: search["agent"], Types: search["type"], Since: search["since"], Until: search["until"]}, time.Now())
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	er, err := d.deps.Query.QueryEvents(r.Context(), &watchpostv1.QueryEventsRequest{Filter: f, Limit: uint32(min(alertEventsLimit, d.cfg.MaxLimit))})
	if err != nil {
		d.queryError(w, err)
		return
	}
	evs := er.GetEvents()
	out := alertEvents{Alert: raw(a), Search: search, Events: make([]json.RawMessage, 0, len(evs)), More: er.GetTruncated()}
	for i := len(evs) - 1; i >= 0; i-- {
		out.Events = append(out.Events, raw(evs[i]))
	}
	writeJSON(w, out)
}

// detectionEvents answers alert-events for a detection: the events it
// names (newest first), and a search around them.
func (d *Dashboard) detectionEvents(w http.ResponseWriter, r *http.Request, a *watchpostv1.Alert, search map[string]string) {
	resp, err := d.deps.Query.AlertEvents(r.Context(), &watchpostv1.AlertEventsRequest{AlertId: a.GetId()})
	if err != nil {
		d.queryError(w, err)
		return
	}
	refs := a.GetDetection().GetEvents()
	if len(refs) > 0 {
		search["since"] = time.Unix(0, refs[0].GetTimeUnixNano()).Add(-time.Minute).UTC().Format(time.RFC3339Nano)
		search["until"] = time.Unix(0, refs[len(refs)-1].GetTimeUnixNano()).Add(time.Minute).UTC().Format(time.RFC3339Nano)
	}
	if p := a.GetProcess(); p != nil && p.Pid != 0 {
		search["pid"] = strconv.FormatUint(uint64(p.Pid), 10)
	}
	evs := resp.GetEvents()
	out := alertEvents{Alert: raw(a), Search: search, Events: make([]json.RawMessage, 0, len(evs)), Missing: len(resp.GetMissing())}
	for i := len(evs) - 1; i >= 0; i-- {
		out.Events = append(out.Events, raw(evs[i]))
	}
	writeJSON(w, out)
}
