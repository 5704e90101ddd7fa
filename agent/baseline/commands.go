package baseline

import (
	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

// Commands applies the collector's baseline commands (a handler of
// agent/commands).
type Commands struct{ b *Baseline }

// CommandHandler returns the baseline's handler of commands.
func (b *Baseline) CommandHandler() *Commands { return &Commands{b: b} }

// Handles takes baseline_allow, baseline_relearn and baseline_mode.
func (h *Commands) Handles(cmd *watchpostv1.Command) bool {
	switch cmd.Action.(type) {
	case *watchpostv1.Command_BaselineAllow, *watchpostv1.Command_BaselineRelearn, *watchpostv1.Command_BaselineMode:
		return true
	}
	return false
}

// Apply carries a command out. The command log replays every command at
// start; the baseline file already holds what they did, so a replayed
// allow only makes sure of its item (without a new clock) and a replayed
// relearn or mode is not done again.
func (h *Commands) Apply(cmd *watchpostv1.Command, replay bool) error {
	switch a := cmd.Action.(type) {
	case *watchpostv1.Command_BaselineAllow:
		return h.b.Allow(a.BaselineAllow.GetFamily(), a.BaselineAllow.GetItem(), replay)
	case *watchpostv1.Command_BaselineRelearn:
		if replay {
			return nil
		}
		return h.b.Relearn()
	case *watchpostv1.Command_BaselineMode:
		if replay {
			return nil
		}
		return h.b.SetMode(a.BaselineMode)
	}
	return nil
}

// Reset is a new collector epoch: the baseline is the host's own and
// stays as it is.
func (h *Commands) Reset() {}
