package web

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

// Bounds of one process view.
const (
	processEvents  = 2000 // events of the process itself
	processKids    = 64   // children looked up
	childEvents    = 50   // events read per child
	industrialRead = 10000
)

type child struct {
	PID uint32 `json:"pid"`
	// Event is the child's exec (or, without one, its first stored event
	// naming this process as parent); null when only the fork is known.
	Event json.RawMessage `json:"event"`
}

type processView struct {
	Host        string            `json:"host"`
	PID         uint32            `json:"pid"`
	StartBootNS string            `json:"start_boot_ns,omitempty"`
	BootID      string            `json:"boot_id,omitempty"`
	Process     json.RawMessage   `json:"process"` // from the exec when stored, else the latest event
	Ancestry    []json.RawMessage `json:"ancestry"`
	Children    []child           `json:"children"`
	Files       []json.RawMessage `json:"files"`
	Net         []json.RawMessage `json:"net"`
	Other       []json.RawMessage `json:"other"` // exec, clone, exit, security
	Truncated   bool              `json:"truncated"`
}

// sameProcess keeps events of one process instance: pid numbers are
// reused, the start time (boot-relative) and boot id tell instances apart.
func sameProcess(ev *watchpostv1.Event, start uint64, boot string) bool {
	return (start == 0 || ev.GetProcess().GetStartBootNs() == start) &&
		(boot == "" || ev.GetHeader().GetBootId() == boot)
}

// process answers host+pid(+start_boot_ns, +boot): the process, its
// ancestry, its children, its file and network events.
func (d *Dashboard) process(w http.ResponseWriter, r *http.Request) {
	v := r.URL.Query()
	host := v.Get("host")
	pid, err := uintParam(v, "pid", 32)
	if err != nil || host == "" || pid == 0 {
		writeError(w, http.StatusBadRequest, "process: host and pid are required")
		return
	}
	start, err := uintParam(v, "start", 64)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	boot := v.Get("boot")
	resp, err := d.deps.Query.QueryEvents(r.Context(), &watchpostv1.QueryEventsRequest{
		Filter: &watchpostv1.EventFilter{Host: host, Pid: uint32(pid)}, Limit: uint32(min(processEvents, d.cfg.MaxLimit)),
	})
	if err != nil {
		d.queryError(w, err)
		return
	}
	pv := processView{Host: host, PID: uint32(pid), BootID: boot, Truncated: resp.GetTruncated(),
		Ancestry: []json.RawMessage{}, Children: []child{}, Files: []json.RawMessage{}, Net: []json.RawMessage{}, Other: []json.RawMessage{}}
	if start != 0 {
		pv.StartBootNS = strconv.FormatUint(start, 10)
	}
	var best *watchpostv1.Event
	var kids []uint32
	seen := map[uint32]bool{}
	for _, ev := range resp.GetEvents() {
		if !sameProcess(ev, start, boot) {
			continue
		}
		t := ev.GetHeader().GetType()
		isExec := t == watchpostv1.EventType_EVENT_TYPE_EXEC
		if best == nil || isExec || best.GetHeader().GetType() != watchpostv1.EventType_EVENT_TYPE_EXEC {
			best = ev
		}
		switch {
		case strings.HasPrefix(t.String(), "EVENT_TYPE_FILE_"):
			pv.Files = append(pv.Files, raw(ev))
		case strings.HasPrefix(t.String(), "EVENT_TYPE_NET_"):
			pv.Net = append(pv.Net, raw(ev))
		default:
			pv.Other = append(pv.Other, raw(ev))
		}
		if c := ev.GetClone(); c != nil && !c.GetThread() && !seen[c.GetChildPid()] && len(kids) < processKids {
			seen[c.GetChildPid()] = true
			kids = append(kids, c.GetChildPid())
		}
	}
	if best == nil {
		writeError(w, http.StatusNotFound, "no stored event of that process")
		return
	}
	pv.Process = raw(best.GetProcess())
	for _, a := range best.GetAncestry() {
		pv.Ancestry = append(pv.Ancestry, raw(a))
	}
	if boot == "" {
		boot = best.GetHeader().GetBootId()
	}
	for _, kid := range kids {
		c := child{PID: kid, Event: json.RawMessage("null")}
		kr, err := d.deps.Query.QueryEvents(r.Context(), &watchpostv1.QueryEventsRequest{
			Filter: &watchpostv1.EventFilter{Host: host, Pid: kid}, Limit: childEvents,
		})
		if err != nil {
			d.queryError(w, err)
			return
		}
		var pick *watchpostv1.Event
		for _, ev := range kr.GetEvents() {
			if ev.GetProcess().GetPpid() != uint32(pid) || ev.GetHeader().GetBootId() != boot {
				continue
			}
			if pick == nil || ev.GetHeader().GetType() == watchpostv1.EventType_EVENT_TYPE_EXEC {
				pick = ev
			}
		}
		if pick != nil {
			c.Event = raw(pick)
		}
		pv.Children = append(pv.Children, c)
	}
	writeJSON(w, pv)
}
