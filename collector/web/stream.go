package web

import (
	"bytes"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/watchpost/watchpost/collector/filter"
	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

// keepalive is how often an idle live stream sends a comment line, so
// proxies and the browser keep it open and a closed tab is noticed.
var keepalive = 15 * time.Second

// Backfill of the live feed: at most this far back and this many events.
const (
	maxBackfill       = time.Hour
	maxBackfillEvents = 500
)

// eventKey identifies an event of an agent (its boot and sequence).
type eventKey struct {
	agent, boot string
	seq         uint64
}

func keyOf(ev *watchpostv1.Event) eventKey {
	h := ev.GetHeader()
	return eventKey{h.GetAgentId(), h.GetBootId(), h.GetSeq()}
}

// stream is the live feed as server-sent events: with backfill=<duration>
// (at most an hour) first one "backfill" message with the most recent
// stored events of that window ({"events": [...], "more": bool}, oldest
// first, at most 500), then one "events" message per stored batch that
// matches, {"events": [...], "dropped": n}, without the events the
// backfill already had. It ends when the client goes away, the session
// ends (logout, expiry) or the collector stops.
func (d *Dashboard) stream(w http.ResponseWriter, r *http.Request) {
	v := r.URL.Query()
	f, err := parseFilter(v)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	var backfill time.Duration
	if s := v.Get("backfill"); s != "" {
		if backfill, err = time.ParseDuration(s); err != nil || backfill < 0 || backfill > maxBackfill {
			writeError(w, http.StatusBadRequest, "backfill: "+strconv.Quote(s)+" is not a duration of at most 1h")
			return
		}
	}
	var ended <-chan struct{}
	if ss := current(r.Context()); ss != nil {
		ended = ss.done
	}
	t := d.deps.Subscribe(f)
	defer t.Close()
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	// The first message says the subscription is live.
	if _, err := w.Write([]byte("retry: 3000\nevent: ready\ndata: {}\n\n")); err != nil {
		return
	}
	if rc.Flush() != nil {
		return
	}
	// Subscribed first, then read: an event stored in between comes both
	// ways and is sent once.
	var sent map[eventKey]bool
	if backfill > 0 {
		bf := proto.Clone(f).(*watchpostv1.EventFilter)
		if since := time.Now().Add(-backfill).UnixNano(); bf.SinceUnixNano < since {
			bf.SinceUnixNano = since
		}
		resp, err := d.deps.Query.QueryEvents(r.Context(), &watchpostv1.QueryEventsRequest{Filter: bf, Limit: uint32(min(maxBackfillEvents, d.cfg.MaxLimit))})
		if err != nil {
			return
		}
		sent = make(map[eventKey]bool, len(resp.GetEvents()))
		for _, ev := range resp.GetEvents() {
			sent[keyOf(ev)] = true
		}
		b, err := json.Marshal(struct {
			Events []json.RawMessage `json:"events"`
			More   bool              `json:"more"`
		}{rawEvents(resp.GetEvents()), resp.GetTruncated()})
		if err != nil {
			return
		}
		if _, err := w.Write(append(append([]byte("event: backfill\ndata: "), b...), "\n\n"...)); err != nil || rc.Flush() != nil {
			return
		}
	}
	tick := time.NewTicker(keepalive)
	defer tick.Stop()
	var buf bytes.Buffer
	for {
		buf.Reset()
		select {
		case <-r.Context().Done():
			return
		case <-ended:
			buf.WriteString("event: logout\ndata: {}\n\n")
		case <-t.Done():
			buf.WriteString("event: shutdown\ndata: {}\n\n")
		case <-tick.C:
			buf.WriteString(": keepalive\n\n")
		case evs := <-t.Events():
			if len(sent) > 0 {
				evs = slices.DeleteFunc(slices.Clone(evs), func(ev *watchpostv1.Event) bool { return sent[keyOf(ev)] })
				if len(evs) == 0 {
					continue
				}
			}
			b, err := json.Marshal(struct {
				Events  []json.RawMessage `json:"events"`
				Dropped uint64            `json:"dropped"`
			}{rawEvents(evs), t.TakeDropped()})
			if err != nil {
				return
			}
			buf.WriteString("event: events\ndata: ")
			buf.Write(b) // JSON has no raw newlines
			buf.WriteString("\n\n")
		}
		if _, err := w.Write(buf.Bytes()); err != nil || rc.Flush() != nil {
			return
		}
		if bytes.HasPrefix(buf.Bytes(), []byte("event: logout")) || bytes.HasPrefix(buf.Bytes(), []byte("event: shutdown")) {
			return
		}
	}
}

// rates counts stored events by type in fixed time buckets (a ring), by
// the time the collector stored them.
type rates struct {
	mu      sync.Mutex
	step    time.Duration
	start   []int64    // bucket start, unix seconds (0: unused)
	counts  [][]uint64 // [bucket][type index]
	dropped []uint64   // events the counter missed (slow reader)
	index   map[watchpostv1.EventType]int
	names   []string
}

func newRates(step time.Duration, buckets int) *rates {
	r := &rates{step: step, start: make([]int64, buckets), counts: make([][]uint64, buckets), dropped: make([]uint64, buckets),
		index: map[watchpostv1.EventType]int{}}
	types, _ := filter.ParseTypes("*")
	for i, t := range types {
		r.index[t] = i
		r.names = append(r.names, filter.TypeName(t))
	}
	for i := range r.counts {
		r.counts[i] = make([]uint64, len(types))
	}
	return r
}

func (r *rates) slot(now time.Time) int {
	step := int64(r.step / time.Second)
	bucket := now.Unix() / step * step
	i := int(now.Unix() / step % int64(len(r.start)))
	if r.start[i] != bucket {
		r.start[i] = bucket
		clear(r.counts[i])
		r.dropped[i] = 0
	}
	return i
}

func (r *rates) add(now time.Time, evs []*watchpostv1.Event, dropped uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	i := r.slot(now)
	for _, ev := range evs {
		if k, ok := r.index[ev.GetHeader().GetType()]; ok {
			r.counts[i][k]++
		}
	}
	r.dropped[i] += dropped
}

// Event classes of the rate chart: a handful of series rather than one
// per type; a class can be broken down into its types.
var classOrder = []string{"process", "file", "network", "security", "industrial", "agent", "other"}

var classOf = map[string]string{
	"exec": "process", "clone": "process", "exit": "process", "memfd_exec": "process",
	"module_load": "security", "ptrace": "security", "cred_change": "security", "bpf": "security",
	"mount": "security", "umount": "security", "clock_change": "security", "signal": "security",
	"health": "agent", "gap": "agent", "agent_start": "agent", "agent_stop": "agent",
}

// eventClass is the chart class of an event type name.
func eventClass(name string) string {
	switch {
	case classOf[name] != "":
		return classOf[name]
	case strings.HasPrefix(name, "file_"):
		return "file"
	case strings.HasPrefix(name, "net_"):
		return "network"
	case strings.HasPrefix(name, "ics_"):
		return "industrial"
	}
	return "other"
}

// minRateBuckets: the chart shows at least this many buckets (a minute
// at the default step) even right after the collector started.
const minRateBuckets = 6

// rateSeries is the chart's data: events per second in each bucket,
// oldest first, per class (or per type of one class); only series with
// events in the window. The window starts at the first bucket with events
// (at least minRateBuckets before now), so the axis follows the data.
type rateSeries struct {
	StepSeconds int64                `json:"step_seconds"`
	Times       []int64              `json:"times"` // bucket starts, unix seconds
	Series      map[string][]float64 `json:"series"`
	// Order is the series' names in display order.
	Order []string `json:"order"`
	// Class is the class broken down into types, "" for every class.
	Class   string   `json:"class"`
	Classes []string `json:"classes"` // the classes with events in the window
	Dropped uint64   `json:"dropped"` // events stored but not counted
}

func (r *rates) series(now time.Time, class string) rateSeries {
	r.mu.Lock()
	defer r.mu.Unlock()
	step := int64(r.step / time.Second)
	cur := now.Unix() / step * step
	n := int64(len(r.start))
	// slot is the ring index of the bucket back buckets before now, -1
	// when that bucket holds nothing of this window.
	slot := func(back int64) int {
		t := cur - back*step
		if i := int(t / step % n); r.start[i] == t {
			return i
		}
		return -1
	}
	oldest := int64(minRateBuckets - 1)
	for back := n - 1; back > oldest; back-- {
		if i := slot(back); i >= 0 && slices.ContainsFunc(r.counts[i], func(c uint64) bool { return c > 0 }) {
			oldest = back
			break
		}
	}
	out := rateSeries{StepSeconds: step, Series: map[string][]float64{}, Class: class, Order: []string{}, Classes: []string{}}
	seen := map[string]bool{}
	for back := oldest; back >= 0; back-- {
		x := len(out.Times)
		out.Times = append(out.Times, cur-back*step)
		i := slot(back)
		if i < 0 {
			continue
		}
		out.Dropped += r.dropped[i]
		for k, name := range r.names {
			if r.counts[i][k] == 0 {
				continue
			}
			c := eventClass(name)
			seen[c] = true
			key := c
			if class != "" {
				if c != class {
					continue
				}
				key = name
			}
			if out.Series[key] == nil {
				out.Series[key] = make([]float64, oldest+1)
			}
			out.Series[key][x] += float64(r.counts[i][k]) / float64(step)
		}
	}
	for _, c := range classOrder {
		if seen[c] {
			out.Classes = append(out.Classes, c)
			if class == "" {
				out.Order = append(out.Order, c)
			}
		}
	}
	if class != "" {
		for _, name := range r.names {
			if out.Series[name] != nil {
				out.Order = append(out.Order, name)
			}
		}
	}
	return out
}

// ratesHandler serves GET rates?class=: series per class, or per type of
// one class.
func (d *Dashboard) ratesHandler(w http.ResponseWriter, r *http.Request) {
	class := r.URL.Query().Get("class")
	if class != "" && !slices.Contains(classOrder, class) {
		writeError(w, http.StatusBadRequest, "class: "+strconv.Quote(class)+" is not one of "+strings.Join(classOrder, ", "))
		return
	}
	writeJSON(w, d.rates.series(time.Now(), class))
}
