package web

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/watchpost/watchpost/collector/filter"
	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

var pj = protojson.MarshalOptions{UseProtoNames: true}

func raw(m proto.Message) json.RawMessage {
	b, err := pj.Marshal(m)
	if err != nil {
		return json.RawMessage("null")
	}
	return b
}

func rawEvents(evs []*watchpostv1.Event) []json.RawMessage {
	out := make([]json.RawMessage, len(evs))
	for i, ev := range evs {
		out[i] = raw(ev)
	}
	return out
}

// parseFilter reads the CLI's filters from the query string (same names
// and meaning as `watchpost events` and /api/v1/events).
func parseFilter(v url.Values) (*watchpostv1.EventFilter, error) {
	return filter.Parse(filter.Params{
		Agent: v.Get("agent"), Host: v.Get("host"), Types: v.Get("type"), PID: v.Get("pid"), Exe: v.Get("exe"),
		Path: v.Get("path"), Port: v.Get("port"), Protocol: v.Get("protocol"), Since: v.Get("since"),
		Until: v.Get("until"), Text: v.Get("text"),
	}, time.Now())
}

func uintParam(v url.Values, name string, bits int) (uint64, error) {
	s := v.Get(name)
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(s, 10, bits)
	if err != nil {
		return 0, fmt.Errorf("%s: %q is not a number", name, s)
	}
	return n, nil
}

// queryError answers with the query service's status as an HTTP error.
func (d *Dashboard) queryError(w http.ResponseWriter, err error) {
	st := status.Convert(err)
	code := http.StatusInternalServerError
	switch st.Code() {
	case codes.InvalidArgument:
		code = http.StatusBadRequest
	case codes.NotFound:
		code = http.StatusNotFound
	case codes.PermissionDenied:
		code = http.StatusForbidden
	case codes.ResourceExhausted:
		code = http.StatusTooManyRequests
	case codes.FailedPrecondition:
		code = http.StatusConflict
	}
	writeError(w, code, st.Message())
}

type eventsPage struct {
	Events []json.RawMessage `json:"events"`
	// More older events match: ask again with before_ns = NextBeforeNS.
	More         bool   `json:"more"`
	NextBeforeNS string `json:"next_before_ns,omitempty"`
	// CostLimited: the search stopped at query.max_scan_rows or
	// query.timeout after RowsScanned stored rows; older events may match
	// (the next page goes on from the oldest found).
	CostLimited bool   `json:"cost_limited,omitempty"`
	RowsScanned uint64 `json:"rows_scanned,string,omitempty"`
}

// events is the search: the CLI's filters, newest page first; before_ns
// pages towards older events (events strictly older than it).
func (d *Dashboard) events(w http.ResponseWriter, r *http.Request) {
	v := r.URL.Query()
	f, err := parseFilter(v)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	limit, err := uintParam(v, "limit", 32)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	before, err := uintParam(v, "before_ns", 63)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if before > 0 && (f.UntilUnixNano == 0 || int64(before)-1 < f.UntilUnixNano) {
		f.UntilUnixNano = int64(before) - 1
	}
	resp, err := d.deps.Query.QueryEvents(r.Context(), &watchpostv1.QueryEventsRequest{Filter: f, Limit: uint32(limit)})
	if err != nil {
		d.queryError(w, err)
		return
	}
	evs := slices.Clone(resp.GetEvents())
	slices.Reverse(evs) // newest first
	page := eventsPage{Events: rawEvents(evs), More: resp.GetTruncated() || resp.GetCostLimited(),
		CostLimited: resp.GetCostLimited(), RowsScanned: resp.GetRowsScanned()}
	if page.More && len(evs) > 0 {
		page.NextBeforeNS = strconv.FormatInt(evs[len(evs)-1].GetHeader().GetTimeUnixNano(), 10)
	}
	writeJSON(w, page)
}

// hosts serves the agent registry with each agent's health (as on the
// overview), in the registry's order.
func (d *Dashboard) hosts(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	fl, err := d.fleet(r.Context(), now)
	if err != nil {
		d.queryError(w, err)
		return
	}
	out := struct {
		Hosts  []json.RawMessage `json:"hosts"`
		Health []hostHealth      `json:"health"` // hosts[i]'s health
		NowNS  string            `json:"now_ns"` // the collector's clock, for heartbeat ages
	}{make([]json.RawMessage, len(fl.hosts)), make([]hostHealth, len(fl.hosts)), strconv.FormatInt(now.UnixNano(), 10)}
	for i, h := range fl.hosts {
		out.Hosts[i], out.Health[i] = raw(h), fl.health[h.GetAgentId()]
	}
	writeJSON(w, out)
}

// names serves the names the page shows for numbers: errno values.
func (d *Dashboard) names(w http.ResponseWriter, _ *http.Request) {
	errnos := map[string]string{}
	for n := 1; n < 134; n++ {
		if name := unix.ErrnoName(unix.Errno(n)); name != "" {
			errnos[strconv.Itoa(n)] = name
		}
	}
	writeJSON(w, struct {
		Errnos map[string]string `json:"errnos"`
	}{errnos})
}

func (d *Dashboard) retention(w http.ResponseWriter, r *http.Request) {
	resp, err := d.deps.Query.EnforceRetention(r.Context(), &watchpostv1.EnforceRetentionRequest{})
	if err != nil {
		d.queryError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(raw(resp))
}
