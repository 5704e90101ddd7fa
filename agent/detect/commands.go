package detect

import (
	"fmt"
	"sync"

	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

// ExceptionCommands applies the collector's exception commands to the
// engine (it is a handler of agent/commands).
type ExceptionCommands struct {
	e     *Engine
	mu    sync.Mutex
	order []string
	byID  map[string]Exception
}

// CommandHandler returns the engine's handler of exception commands.
func (e *Engine) CommandHandler() *ExceptionCommands {
	return &ExceptionCommands{e: e, byID: map[string]Exception{}}
}

// Handles takes add_exception and remove_exception.
func (h *ExceptionCommands) Handles(cmd *watchpostv1.Command) bool {
	switch cmd.Action.(type) {
	case *watchpostv1.Command_AddException, *watchpostv1.Command_RemoveException:
		return true
	}
	return false
}

// Apply adds (or replaces) or removes one exception.
func (h *ExceptionCommands) Apply(cmd *watchpostv1.Command, _ bool) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch a := cmd.Action.(type) {
	case *watchpostv1.Command_AddException:
		ex := ExceptionFromProto(a.AddException)
		ex.Origin = fmt.Sprintf("command %d by %s", cmd.Seq, cmd.IssuedBy)
		if ex.ID == "" {
			return fmt.Errorf("add_exception: no id")
		}
		if err := CheckException(ex); err != nil {
			return fmt.Errorf("exception %s: %w", ex.ID, err)
		}
		if _, ok := h.byID[ex.ID]; !ok {
			h.order = append(h.order, ex.ID)
		}
		h.byID[ex.ID] = ex
	case *watchpostv1.Command_RemoveException:
		if _, ok := h.byID[a.RemoveException]; !ok {
			return fmt.Errorf("remove_exception: %q is not in force here", a.RemoveException)
		}
		delete(h.byID, a.RemoveException)
		for i, id := range h.order {
			if id == a.RemoveException {
				h.order = append(h.order[:i], h.order[i+1:]...)
				break
			}
		}
	}
	return h.publish()
}

// Reset drops every exception from the collector.
func (h *ExceptionCommands) Reset() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.order, h.byID = nil, map[string]Exception{}
	_ = h.publish()
}

func (h *ExceptionCommands) publish() error {
	list := make([]Exception, 0, len(h.order))
	for _, id := range h.order {
		list = append(list, h.byID[id])
	}
	return h.e.SetExceptions(list)
}

// ExceptionFromProto converts the wire form.
func ExceptionFromProto(p *watchpostv1.DetectionException) Exception {
	return Exception{ID: p.Id, Rules: p.Rules, Exe: p.Exe, Ancestor: p.Ancestor, User: p.User, Path: p.Path,
		Peer: p.Peer, Host: p.Host, Cgroup: p.Cgroup, Unit: p.Unit, Comment: p.Comment}
}
