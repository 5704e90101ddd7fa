package web

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/watchpost/watchpost/collector/filter"
	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

// Alerts on the hosts view: the newest of each agent's alerts within the
// window, read per agent so that one noisy agent cannot hide the others.
const (
	alertsWindow      = "24h"
	alertsPerAgent    = 20
	maxAlertsPerAgent = 100
)

// agentAlerts are one agent's newest alerts.
type agentAlerts struct {
	AgentID string `json:"agent_id"`
	Host    string `json:"host"`
	// Alerts in the query API's JSON, newest first, at most the limit.
	Alerts []json.RawMessage `json:"alerts"`
	// More: the agent has older alerts in the window than the limit.
	More bool `json:"more"`
}

type alertsView struct {
	// Agents with at least one alert in the window, in the hosts' order.
	Agents  []agentAlerts `json:"agents"`
	SinceNS string        `json:"since_ns"`
	Limit   int           `json:"limit"` // per agent
}

// alerts serves GET alerts?agent=&since=&limit=: each agent's newest
// alerts (limit per agent, 20 by default, at most 100) since the window's
// start (24h by default).
func (d *Dashboard) alerts(w http.ResponseWriter, r *http.Request) {
	v, now := r.URL.Query(), time.Now()
	f, err := filter.Parse(filter.Params{Agent: v.Get("agent"), Since: v.Get("since")}, now)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if f.SinceUnixNano == 0 {
		f.SinceUnixNano, _ = filter.ParseTime(alertsWindow, now)
	}
	n, err := uintParam(v, "limit", 32)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	limit := alertsPerAgent
	if n > 0 {
		limit = int(min(n, maxAlertsPerAgent))
	}
	// One more than shown tells whether there are more; the query API
	// caps every read at MaxLimit.
	limit = max(1, min(limit, d.cfg.MaxLimit-1))

	type agentRef struct{ id, host string }
	var agents []agentRef
	if f.AgentId != "" {
		agents = append(agents, agentRef{id: f.AgentId})
	} else {
		hosts, err := d.deps.Query.ListHosts(r.Context(), &watchpostv1.ListHostsRequest{})
		if err != nil {
			d.queryError(w, err)
			return
		}
		for _, h := range hosts.GetHosts() {
			agents = append(agents, agentRef{id: h.GetAgentId(), host: h.GetHost()})
		}
	}
	out := alertsView{Agents: []agentAlerts{}, SinceNS: strconv.FormatInt(f.SinceUnixNano, 10), Limit: limit}
	for _, a := range agents {
		resp, err := d.deps.Query.ListAlerts(r.Context(), &watchpostv1.ListAlertsRequest{
			AgentId: a.id, SinceUnixNano: f.SinceUnixNano, Limit: uint32(limit + 1),
		})
		if err != nil {
			d.queryError(w, err)
			return
		}
		as := resp.GetAlerts()
		if len(as) == 0 {
			continue
		}
		aa := agentAlerts{AgentID: a.id, Host: a.host, More: len(as) > limit}
		if aa.Host == "" {
			aa.Host = as[0].GetHost()
		}
		for _, al := range as[:min(len(as), limit)] {
			aa.Alerts = append(aa.Alerts, raw(al))
		}
		out.Agents = append(out.Agents, aa)
	}
	writeJSON(w, out)
}
