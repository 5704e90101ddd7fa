package respond

import (
	"fmt"

	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

// Commands applies the collector's response commands (a handler of
// agent/commands): a pushed policy document, a policy's mode, the kill
// switch. The command log replays them at start, so they hold while the
// collector is away.
type Commands struct{ e *Engine }

// CommandHandler returns the engine's command handler.
func (e *Engine) CommandHandler() *Commands { return &Commands{e: e} }

// Handles takes set_policies, set_policy_mode and enforcing.
func (h *Commands) Handles(cmd *watchpostv1.Command) bool {
	switch cmd.Action.(type) {
	case *watchpostv1.Command_SetPolicies, *watchpostv1.Command_SetPolicyMode, *watchpostv1.Command_Enforcing:
		return true
	}
	return false
}

// Apply carries one command out; an error is acknowledged as failed and
// the policies in force stay.
func (h *Commands) Apply(cmd *watchpostv1.Command, _ bool) error {
	switch a := cmd.Action.(type) {
	case *watchpostv1.Command_SetPolicies:
		name := "collector:" + a.SetPolicies.GetName()
		if len(a.SetPolicies.GetYaml()) == 0 {
			return h.e.SetPushed("", nil)
		}
		return h.e.SetPushed(name, a.SetPolicies.GetYaml())
	case *watchpostv1.Command_SetPolicyMode:
		return h.e.SetMode(a.SetPolicyMode.GetId(), a.SetPolicyMode.GetMode())
	case *watchpostv1.Command_Enforcing:
		return h.e.SetEnforcing(a.Enforcing, fmt.Sprintf("command %d by %s", cmd.Seq, cmd.IssuedBy))
	}
	return fmt.Errorf("not a response command")
}

// Reset forgets the collector's commands (a new epoch).
func (h *Commands) Reset() { h.e.ResetCommands() }
