package collector

import (
	"sync"

	"github.com/watchpost/watchpost/collector/ingest"
	"github.com/watchpost/watchpost/collector/store"
	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

// hub fans stored events out to live tails. Publishing never blocks: a
// subscriber that reads too slowly loses events, and is told how many.
type hub struct {
	mu     sync.Mutex
	subs   map[*subscriber]struct{}
	closed bool
}

type subscriber struct {
	filter  store.Filter
	ch      chan []*watchpostv1.Event
	mu      sync.Mutex
	dropped uint64
	done    chan struct{}
}

func newHub() *hub { return &hub{subs: map[*subscriber]struct{}{}} }

func (h *hub) subscribe(f store.Filter) *subscriber {
	s := &subscriber{filter: f, ch: make(chan []*watchpostv1.Event, 64), done: make(chan struct{})}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		close(s.done)
		return s
	}
	h.subs[s] = struct{}{}
	return s
}

func (h *hub) unsubscribe(s *subscriber) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.subs[s]; ok {
		delete(h.subs, s)
		close(s.done)
	}
}

// takeDropped returns and resets the subscriber's drop count.
func (s *subscriber) takeDropped() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.dropped
	s.dropped = 0
	return d
}

// publish hands a stored batch to the subscribers. The events get the
// batch's identity first (store.Bind), as a query would show them.
func (h *hub) publish(agent, bootID string, d *ingest.Decoded) {
	for _, ev := range d.Events {
		store.Bind(ev, agent, bootID)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		var out []*watchpostv1.Event
		for i, ev := range d.Events {
			if store.Match(&s.filter, ev, d.Raw[i]) {
				out = append(out, ev)
			}
		}
		if len(out) == 0 {
			continue
		}
		select {
		case s.ch <- out:
		default:
			s.mu.Lock()
			s.dropped += uint64(len(out))
			s.mu.Unlock()
		}
	}
}

func (h *hub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for s := range h.subs {
		close(s.done)
		delete(h.subs, s)
	}
}
