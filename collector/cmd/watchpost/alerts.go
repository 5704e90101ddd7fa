package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/watchpost/watchpost/collector/alerts"
	"github.com/watchpost/watchpost/collector/filter"
	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

func newAlerts(g *globals) *cobra.Command {
	var p filter.AlertParams
	var limit uint32
	var before uint64
	cmd := &cobra.Command{
		Use:   "alerts",
		Short: "List alerts newest first, with their severity and triage state; ack, resolve or reopen them",
		Long: "List alerts (detections raised by the agents' rules; tamper evidence from heartbeats: missed\n" +
			"heartbeats, sequence gaps, unclean restarts, drop jumps, detached programs), newest first,\n" +
			"move them through triage, show the events behind a detection and turn it into an exception\n" +
			"with the subcommands. Changing a state or adding an exception needs an admin token when the\n" +
			"collector has tokens.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req, err := filter.ParseAlerts(p, time.Now())
			if err != nil {
				return err
			}
			req.Limit, req.BeforeId = limit, before
			resp, err := unary(cmd.Context(), g, watchpostv1.QueryServiceClient.ListAlerts, req)
			if err != nil {
				return err
			}
			if err := printAlerts(cmd.OutOrStdout(), resp.Alerts, g.json); err != nil {
				return err
			}
			if resp.Truncated && !g.json {
				note(cmd, "more alerts matched; showing the newest %d: narrow the filter, raise --limit or page with --before-id %d",
					len(resp.Alerts), resp.Alerts[len(resp.Alerts)-1].Id)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&p.Agent, "agent", "", "agent id")
	fl.StringVar(&p.Host, "host", "", "host name")
	fl.StringVar(&p.Since, "since", "", "RFC 3339 time or duration ago (1h)")
	fl.StringVar(&p.Until, "until", "", "RFC 3339 time or duration ago")
	fl.StringVar(&p.State, "state", "", "states, comma-separated: open, acknowledged (ack), resolved")
	fl.StringVar(&p.Severity, "severity", "", "lowest severity shown: info, low, medium, high, critical")
	fl.StringVar(&p.Kind, "kind", "", "kinds, comma-separated (detection, missed_heartbeat, sequence_gap, unclean_restart, drop_jump, programs_detached)")
	fl.StringVar(&p.Rule, "rule", "", "detections of this rule id")
	fl.StringVar(&p.Technique, "technique", "", "detections tagged with this ATT&CK technique (T0855; its sub-techniques too)")
	fl.Uint32Var(&limit, "limit", 100, "maximum alerts")
	fl.Uint64Var(&before, "before-id", 0, "only alerts older than this id (the next page)")
	cmd.AddCommand(
		newAlertState(g, "ack", "Acknowledge alerts: someone is looking at them", watchpostv1.AlertState_ALERT_STATE_ACKNOWLEDGED),
		newAlertState(g, "resolve", "Resolve alerts: dealt with", watchpostv1.AlertState_ALERT_STATE_RESOLVED),
		newAlertState(g, "reopen", "Reopen resolved or acknowledged alerts", watchpostv1.AlertState_ALERT_STATE_OPEN),
		newAlertEvents(g), newAlertExcept(g))
	return cmd
}

// newAlertState is `watchpost alerts ack|resolve|reopen ID...`.
func newAlertState(g *globals, name, short string, state watchpostv1.AlertState) *cobra.Command {
	var noteText string
	cmd := &cobra.Command{
		Use:   name + " ID...",
		Short: short,
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &watchpostv1.UpdateAlertsRequest{State: state, Note: noteText}
			for _, a := range args {
				id, err := strconv.ParseUint(a, 10, 64)
				if err != nil || id == 0 {
					return fmt.Errorf("%q is not an alert id", a)
				}
				req.Ids = append(req.Ids, id)
			}
			resp, err := unary(cmd.Context(), g, watchpostv1.QueryServiceClient.UpdateAlerts, req)
			if err != nil {
				return err
			}
			return printAlerts(cmd.OutOrStdout(), resp.Alerts, g.json)
		},
	}
	cmd.Flags().StringVar(&noteText, "note", "", "why (kept with the alert)")
	return cmd
}

func printAlerts(out io.Writer, as []*watchpostv1.Alert, asJSON bool) error {
	if asJSON {
		return printEach(out, as)
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tTIME\tSEVERITY\tSTATE\tAGENT\tHOST\tALERT\tCOUNT\tMESSAGE")
	for _, a := range as {
		st := filter.AlertStateName(a.State)
		switch {
		case a.State == watchpostv1.AlertState_ALERT_STATE_RESOLVED:
			st += " by " + a.ResolvedBy
		case a.AcknowledgedBy != "":
			st += " by " + a.AcknowledgedBy
		}
		kind := alerts.KindName(a.Kind)
		if d := a.GetDetection(); d != nil {
			kind = d.RuleId
		}
		row(w, a.Id, formatTime(a.TimeUnixNano), alerts.SeverityName(a.Severity), st, a.AgentId, a.Host, kind, a.Count, a.Message)
	}
	return w.Flush()
}

func alertID(s string) (uint64, error) {
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil || id == 0 {
		return 0, fmt.Errorf("%q is not an alert id", s)
	}
	return id, nil
}

// newAlertEvents is `watchpost alerts events ID`: the stored events a
// detection names, oldest first.
func newAlertEvents(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "events ID",
		Short: "Show the events behind a detection alert (the rule's matched fields first)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := alertID(args[0])
			if err != nil {
				return err
			}
			resp, err := unary(cmd.Context(), g, watchpostv1.QueryServiceClient.AlertEvents, &watchpostv1.AlertEventsRequest{AlertId: id})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if g.json {
				return printEvents(out, resp.Events, true, false)
			}
			if d := resp.Alert.GetDetection(); d != nil {
				fmt.Fprintf(out, "%s (%s, %s) %s\n", printable(d.RuleId), printable(d.Level), printable(strings.Join(d.Techniques, " ")), printable(d.Title))
				for _, m := range d.Matches {
					fmt.Fprintf(out, "  %s = %s\n", printable(m.Field), printable(m.Value))
				}
			}
			if err := printEvents(out, resp.Events, false, true); err != nil {
				return err
			}
			if len(resp.Missing) > 0 {
				note(cmd, "%d of the alert's events are not stored (retention, or not yet received)", len(resp.Missing))
			}
			return nil
		},
	}
}

// newAlertExcept is `watchpost alerts except ID --by exe,user`.
func newAlertExcept(g *globals) *cobra.Command {
	var by []string
	var all bool
	var comment string
	cmd := &cobra.Command{
		Use:   "except ID",
		Short: "Stop a detection alerting again: an exception for its rule and the alert's values of --by, sent to the agent",
		Long: "Adds an exception for the alert's rule, limited to the alert's values of the attributes named\n" +
			"by --by (exe, ancestor, user, path, peer, host, cgroup, unit; none: the whole rule). It goes to\n" +
			"the alert's agent (every agent with --all-agents), which applies it at once and keeps it across\n" +
			"restarts; matches it suppresses are counted per rule (watchpost hosts). `watchpost exceptions`\n" +
			"lists and removes them.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := alertID(args[0])
			if err != nil {
				return err
			}
			resp, err := unary(cmd.Context(), g, watchpostv1.QueryServiceClient.AddException, &watchpostv1.AddExceptionRequest{AlertId: id, By: by, AllAgents: all, Comment: comment})
			if err != nil {
				return err
			}
			if g.json {
				return printJSON(cmd.OutOrStdout(), resp)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "exception %s sent to %s (command %d): %s\n", printable(resp.Exception.Id), printable(agentOrAll(resp.AgentId)),
				resp.CommandSeq, printable(describeException(resp.Exception)))
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringSliceVar(&by, "by", nil, "attributes whose values the exception keeps: exe, ancestor, user, path, peer, host, cgroup, unit")
	fl.BoolVar(&all, "all-agents", false, "send it to every agent, including those that connect later")
	fl.StringVar(&comment, "comment", "", "why (kept with the exception)")
	return cmd
}

func agentOrAll(a string) string {
	if a == "" {
		return "every agent"
	}
	return a
}

func describeException(e *watchpostv1.DetectionException) string {
	var parts []string
	add := func(name string, vs []string) {
		if len(vs) > 0 {
			parts = append(parts, name+"="+strings.Join(vs, ","))
		}
	}
	rules := e.Rules
	if len(rules) == 0 {
		rules = []string{"*"}
	}
	add("rules", rules)
	add("exe", e.Exe)
	add("ancestor", e.Ancestor)
	add("user", e.User)
	add("path", e.Path)
	add("peer", e.Peer)
	add("host", e.Host)
	add("cgroup", e.Cgroup)
	add("unit", e.Unit)
	return strings.Join(parts, " ")
}

// newExceptions is `watchpost exceptions [remove ID]`.
func newExceptions(g *globals) *cobra.Command {
	var agent string
	cmd := &cobra.Command{
		Use:   "exceptions",
		Short: "List the detection exceptions sent to agents and where they were applied; remove one",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			resp, err := unary(cmd.Context(), g, watchpostv1.QueryServiceClient.ListExceptions, &watchpostv1.ListExceptionsRequest{AgentId: agent})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if g.json {
				return printEach(out, resp.Exceptions)
			}
			w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "ID\tCREATED\tBY\tFOR\tDELIVERY\tEXCEPTION\tCOMMENT")
			for _, e := range resp.Exceptions {
				var del []string
				for _, d := range e.Deliveries {
					st := strings.ToLower(strings.TrimPrefix(d.Status.String(), "COMMAND_STATUS_"))
					if d.Message != "" {
						st += " (" + d.Message + ")"
					}
					del = append(del, d.AgentId+": "+st)
				}
				if len(del) == 0 {
					del = []string{"pending"}
				}
				row(w, e.Exception.Id, formatTime(e.CreatedUnixNano), e.IssuedBy, agentOrAll(e.AgentId), strings.Join(del, "; "),
					describeException(e.Exception), e.Exception.Comment)
			}
			return w.Flush()
		},
	}
	cmd.Flags().StringVar(&agent, "agent", "", "only the exceptions that apply to this agent")
	cmd.AddCommand(&cobra.Command{
		Use:   "remove ID",
		Short: "Withdraw an exception from the agents it was sent to",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			resp, err := unary(cmd.Context(), g, watchpostv1.QueryServiceClient.RemoveException, &watchpostv1.RemoveExceptionRequest{Id: args[0]})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "exception %s withdrawn from %s (command %d)\n", printable(args[0]), printable(agentOrAll(resp.AgentId)), resp.CommandSeq)
			return nil
		},
	})
	return cmd
}
