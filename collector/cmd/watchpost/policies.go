package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

// newPolicies is `watchpost policies [--host H]`.
func newPolicies(g *globals) *cobra.Command {
	var host string
	cmd := &cobra.Command{
		Use:   "policies",
		Short: "The response policies per host: mode, whether enforced, and what each blocked or would have blocked",
		Long: "Lists each agent's response policies as its last heartbeat reported them (docs/response.md):\n" +
			"the action, the mode (monitor or enforce), the status (enforced, monitoring, kill switch on, or\n" +
			"unenforceable on that kernel and why) and the counts since the agent started: killed or blocked,\n" +
			"would have (monitor mode), failed.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			resp, err := unary(cmd.Context(), g, watchpostv1.QueryServiceClient.ListPolicies, &watchpostv1.ListPoliciesRequest{AgentId: host})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if g.json {
				return printEach(out, resp.Hosts)
			}
			w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "HOST\tPOLICY\tACTION\tMODE\tSTATUS\tBLOCKED\tWOULD HAVE\tFAILED")
			var notes []string
			for _, h := range resp.Hosts {
				p := h.Policies
				if !h.Online {
					notes = append(notes, fmt.Sprintf("%s is offline (last heartbeat %s): its policies are as it last reported them", printable(h.AgentId), formatTime(h.LastSeenUnixNano)))
				}
				switch {
				case p == nil:
					row(w, h.AgentId, "-", "-", "-", "response off", "", "", "")
					continue
				case len(p.Policies) == 0:
					row(w, h.AgentId, "-", "-", "-", "no policies", "", "", "")
				}
				for _, ps := range p.Policies {
					row(w, h.AgentId, ps.Id, ps.Action, ps.Mode, policyState(p, ps), ps.Acted, ps.WouldHave, ps.Failed)
				}
				if len(p.Errors) > 0 {
					notes = append(notes, fmt.Sprintf("%s refused its last policy load (the set above stays): %s", printable(h.AgentId), printable(fmt.Sprint(p.Errors))))
				}
			}
			if err := w.Flush(); err != nil {
				return err
			}
			for _, n := range notes {
				note(cmd, "%s", n)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&host, "host", "", "only this host (agent id)")
	return cmd
}

// policyState is what a policy does on its host now.
func policyState(p *watchpostv1.Policies, ps *watchpostv1.PolicyStatus) string {
	switch {
	case !p.Enforcing: // every hook detached: nothing is enforceable
		return "kill switch on"
	case ps.Unenforceable != "":
		return "unenforceable: " + ps.Unenforceable
	case ps.Mode == "enforce":
		return "enforced"
	}
	return "monitoring"
}

// policyFlags are the flags of the commands that change a host's policies.
type policyFlags struct {
	host, comment string
	wait          time.Duration
}

func (f *policyFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.host, "host", "", "the host (agent id); required")
	fl.StringVar(&f.comment, "comment", "", "why (kept with the command)")
	fl.DurationVar(&f.wait, "wait", 10*time.Second, "how long to wait for the agent to apply it (at most 1m)")
}

// request checks the flags and starts the command's request.
func (f *policyFlags) request() (*watchpostv1.PolicyCommandRequest, error) {
	if f.host == "" {
		return nil, fmt.Errorf("--host: required (a policy command goes to one host)")
	}
	if f.wait <= 0 || f.wait > time.Minute {
		return nil, fmt.Errorf("--wait: %s is not between 1ms and 1m", f.wait)
	}
	return &watchpostv1.PolicyCommandRequest{AgentId: f.host, Comment: f.comment, WaitMillis: uint32(f.wait.Milliseconds())}, nil
}

// newPolicy is `watchpost policy set-mode`.
func newPolicy(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Change one response policy of a host",
		Args:  cobra.NoArgs,
	}
	var f policyFlags
	setMode := &cobra.Command{
		Use:   "set-mode --host H ID monitor|enforce",
		Short: "Switch a policy between monitor (report what it would have done) and enforce, without a restart",
		Long: "Sends the mode to the agent over its stream; the agent applies it on top of its policy file\n" +
			"(a reload keeps it) and the command waits for its acknowledgement. An offline agent applies it\n" +
			"when it reconnects. The kill switch still overrides every enforce.",
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if args[1] != "monitor" && args[1] != "enforce" {
				return fmt.Errorf("mode: %q is not monitor or enforce", args[1])
			}
			req, err := f.request()
			if err != nil {
				return err
			}
			req.Action = &watchpostv1.PolicyCommandRequest_SetMode{SetMode: &watchpostv1.PolicyMode{Id: args[0], Mode: args[1]}}
			return sendPolicy(cmd, g, req, fmt.Sprintf("policy %s set to %s", args[0], args[1]))
		},
	}
	f.register(setMode)
	cmd.AddCommand(setMode)
	return cmd
}

// newKillSwitch is `watchpost kill-switch --host H on|off`.
func newKillSwitch(g *globals) *cobra.Command {
	var f policyFlags
	cmd := &cobra.Command{
		Use:   "kill-switch --host H on|off",
		Short: "Turn a host's response kill switch on (detach every enforcing hook: nothing is blocked) or off",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			on := args[0] == "on"
			if !on && args[0] != "off" {
				return fmt.Errorf("kill switch: %q is not on or off", args[0])
			}
			req, err := f.request()
			if err != nil {
				return err
			}
			req.Action = &watchpostv1.PolicyCommandRequest_KillSwitch{KillSwitch: on}
			return sendPolicy(cmd, g, req, "kill switch "+args[0])
		},
	}
	f.register(cmd)
	return cmd
}

// sendPolicy sends a policy command and says what became of it: applied,
// queued (the agent is offline or slow), or refused by the agent (an error).
func sendPolicy(cmd *cobra.Command, g *globals, req *watchpostv1.PolicyCommandRequest, what string) error {
	resp, err := unary(cmd.Context(), g, watchpostv1.QueryServiceClient.PolicyCommand, req)
	if err != nil {
		return err
	}
	if g.json {
		if err := printJSON(cmd.OutOrStdout(), resp); err != nil {
			return err
		}
	}
	on := fmt.Sprintf("%s for %s (command %d)", printable(what), printable(resp.AgentId), resp.CommandSeq)
	switch resp.Status {
	case watchpostv1.CommandStatus_COMMAND_STATUS_FAILED:
		return fmt.Errorf("%s: the agent refused it: %s", on, resp.Message)
	case watchpostv1.CommandStatus_COMMAND_STATUS_APPLIED:
		if !g.json {
			fmt.Fprintf(cmd.OutOrStdout(), "%s: applied\n", on)
		}
	default:
		if !g.json {
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s\n", on, printable(resp.Message))
		}
	}
	return nil
}
