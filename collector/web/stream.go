package web

import (
	"bytes"
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/watchpost/watchpost/collector/filter"
	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

// keepalive is how often an idle live stream sends a comment line, so
// proxies and the browser keep it open and a closed tab is noticed.
var keepalive = 15 * time.Second

// stream is the live feed as server-sent events: one "events" message per
// stored batch that matches, {"events": [...], "dropped": n}. It ends when
// the client goes away, the session ends (logout, expiry) or the collector
// stops.
func (d *Dashboard) stream(w http.ResponseWriter, r *http.Request) {
	f, err := parseFilter(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
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

// rateSeries is the chart's data: per type, events per second in each
// bucket, oldest first; only types seen in the window.
type rateSeries struct {
	StepSeconds int64                `json:"step_seconds"`
	Times       []int64              `json:"times"` // bucket starts, unix seconds
	Series      map[string][]float64 `json:"series"`
	Dropped     uint64               `json:"dropped"` // events stored but not counted
}

func (r *rates) series(now time.Time) rateSeries {
	r.mu.Lock()
	defer r.mu.Unlock()
	step := int64(r.step / time.Second)
	cur := now.Unix() / step * step
	n := len(r.start)
	out := rateSeries{StepSeconds: step, Series: map[string][]float64{}}
	sums := make([][]float64, len(r.names))
	for j := n - 1; j >= 0; j-- {
		t := cur - int64(j)*step
		out.Times = append(out.Times, t)
		i := int(t / step % int64(n))
		for k := range r.names {
			var v float64
			if r.start[i] == t {
				v = float64(r.counts[i][k]) / float64(step)
			}
			sums[k] = append(sums[k], v)
		}
		if r.start[i] == t {
			out.Dropped += r.dropped[i]
		}
	}
	for k, name := range r.names {
		for _, v := range sums[k] {
			if v > 0 {
				out.Series[name] = sums[k]
				break
			}
		}
	}
	return out
}

func (d *Dashboard) ratesHandler(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, d.rates.series(time.Now()))
}
