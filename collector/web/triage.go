package web

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

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

// alertUpdate serves POST alert-update with an UpdateAlertsRequest in the
// query API's JSON: the triage step is recorded under the session's name.
func (d *Dashboard) alertUpdate(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		writeError(w, http.StatusBadRequest, "reading the request failed")
		return
	}
	req := &watchpostv1.UpdateAlertsRequest{}
	if err := protojson.Unmarshal(body, req); err != nil {
		writeError(w, http.StatusBadRequest, "request: "+err.Error())
		return
	}
	who := "local"
	if ss := current(r.Context()); ss != nil {
		who = ss.who.Name
	}
	resp, err := d.deps.UpdateAlerts(r.Context(), who, req)
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
	watchpostv1.AlertKind_ALERT_KIND_PROGRAMS_DETACHED: "bpf,module_load,ptrace,health,agent_stop",
}

type alertEvents struct {
	Alert json.RawMessage `json:"alert"`
	// The search that finds these events (the Search view's parameters).
	Search map[string]string `json:"search"`
	// Events, newest first.
	Events []json.RawMessage `json:"events"`
	More   bool              `json:"more"`
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
