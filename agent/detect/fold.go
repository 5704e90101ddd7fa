package detect

import (
	"time"

	"github.com/watchpost/watchpost/agent/event"
)

// folder bounds the alerts one rule raises for one actor (executable and
// user), so that a behaviour repeated in a loop neither buries the alerts
// of other rules and actors nor floods the analyst: in a window that
// starts with an actor's first alert of a rule, the first burst matches
// raise alerts and the rest are folded. Folded matches are counted per
// rule (Status) and the actor's next alert of the rule says how many it
// stands for (event.Alert.Folded). It is used on the detecting goroutine
// only.
type folder struct {
	burst  int
	window uint64 // ns of the events' boot clock
	max    int
	keys   map[foldKey]*foldState
}

type foldKey struct {
	rule, exe string
	uid       uint32
}

type foldState struct {
	start  uint64 // boot clock of the window's first alert
	raised int    // alerts raised in the window
	folded uint64 // matches folded since the last alert raised
}

func newFolder(burst int, window time.Duration, max int) *folder {
	return &folder{burst: burst, window: uint64(window), max: max, keys: map[foldKey]*foldState{}}
}

// admit decides on one match of rule by ev's process: raise reports
// whether it becomes an alert, folded how many folded matches of the same
// rule and actor came before it.
func (f *folder) admit(rule string, ev *event.Event) (raise bool, folded uint64) {
	if f == nil || f.burst <= 0 {
		return true, 0
	}
	now := ev.BootNS
	k := foldKey{rule: rule, exe: ev.Process.Exe, uid: ev.Process.UID}
	s := f.keys[k]
	if s == nil {
		if len(f.keys) >= f.max {
			f.expire(now)
		}
		if len(f.keys) >= f.max {
			// Every slot is in a live window: alerting beats folding.
			return true, 0
		}
		s = &foldState{start: now}
		f.keys[k] = s
	}
	if now < s.start || now-s.start >= f.window {
		s.start, s.raised = now, 0
	}
	if s.raised < f.burst {
		s.raised++
		folded, s.folded = s.folded, 0
		return true, folded
	}
	s.folded++
	return false, 0
}

// expire forgets the actors whose window has passed (their folded counts
// stay in the rule's total).
func (f *folder) expire(now uint64) {
	for k, s := range f.keys {
		if now < s.start || now-s.start >= f.window {
			delete(f.keys, k)
		}
	}
}
