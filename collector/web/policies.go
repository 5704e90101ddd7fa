package web

import (
	"encoding/json"
	"net/http"
	"slices"

	"github.com/watchpost/watchpost/collector/filter"
	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

// The policies page: each host's response policies as its last heartbeat
// reported them, with the latest of what each did or would have done.
const (
	// Response events read per host for the latest outcomes.
	policyEventsRead = 200
	// Latest outcomes kept per policy.
	policyLatest = 5
)

// responseTypes are the events that carry what a policy did.
var responseTypes = []watchpostv1.EventType{
	watchpostv1.EventType_EVENT_TYPE_RESPONSE_EXEC, watchpostv1.EventType_EVENT_TYPE_RESPONSE_CONNECT,
	watchpostv1.EventType_EVENT_TYPE_RESPONSE_SOCKET, watchpostv1.EventType_EVENT_TYPE_RESPONSE_DEVICE,
	watchpostv1.EventType_EVENT_TYPE_RESPONSE,
}

type hostPolicies struct {
	// The host's HostPolicies in the query API's JSON (as
	// `watchpost policies --json`).
	Host json.RawMessage `json:"host"`
	// Latest response events by policy id, newest first.
	Latest map[string][]json.RawMessage `json:"latest"`
	// The response event types, for a search of them.
	Types string `json:"types"`
}

// policies serves GET policies?agent=: every host's policies (or one
// host's) and the latest events of each policy.
func (d *Dashboard) policies(w http.ResponseWriter, r *http.Request) {
	resp, err := d.deps.Query.ListPolicies(r.Context(), &watchpostv1.ListPoliciesRequest{AgentId: r.URL.Query().Get("agent")})
	if err != nil {
		d.queryError(w, err)
		return
	}
	types := ""
	for i, t := range responseTypes {
		if i > 0 {
			types += ","
		}
		types += filter.TypeName(t)
	}
	out := struct {
		Hosts []hostPolicies `json:"hosts"`
	}{Hosts: make([]hostPolicies, 0, len(resp.GetHosts()))}
	for _, h := range resp.GetHosts() {
		hp := hostPolicies{Host: raw(h), Latest: map[string][]json.RawMessage{}, Types: types}
		if len(h.GetPolicies().GetPolicies()) > 0 {
			er, err := d.deps.Query.QueryEvents(r.Context(), &watchpostv1.QueryEventsRequest{
				Filter: &watchpostv1.EventFilter{AgentId: h.GetAgentId(), Types: responseTypes},
				Limit:  uint32(min(policyEventsRead, d.cfg.MaxLimit)),
			})
			if err != nil {
				d.queryError(w, err)
				return
			}
			evs := slices.Clone(er.GetEvents())
			slices.Reverse(evs) // newest first
			for _, ev := range evs {
				id := ev.GetResponse().GetPolicy()
				if id != "" && len(hp.Latest[id]) < policyLatest {
					hp.Latest[id] = append(hp.Latest[id], raw(ev))
				}
			}
		}
		out.Hosts = append(out.Hosts, hp)
	}
	writeJSON(w, out)
}

// policyCommand serves POST policy-command with a PolicyCommandRequest in
// the query API's JSON (a policy's mode, or the kill switch): sent to the
// agent over its stream under the session's name, as `watchpost policy
// set-mode` and `watchpost kill-switch` do, and answered with the agent's
// acknowledgement (or why it is queued).
func (d *Dashboard) policyCommand(w http.ResponseWriter, r *http.Request) {
	if d.deps.PolicyCommand == nil {
		writeError(w, http.StatusNotImplemented, "policy commands are not available here")
		return
	}
	req := &watchpostv1.PolicyCommandRequest{}
	if !readRequest(w, r, req) {
		return
	}
	resp, err := d.deps.PolicyCommand(r.Context(), who(r), req)
	if err != nil {
		d.queryError(w, err)
		return
	}
	if resp.GetStatus() == watchpostv1.CommandStatus_COMMAND_STATUS_FAILED {
		writeError(w, http.StatusConflict, "the agent refused it: "+resp.GetMessage())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(raw(resp))
}
