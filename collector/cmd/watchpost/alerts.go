package main

import (
	"fmt"
	"io"
	"strconv"
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
		Long: "List alerts (tamper evidence from heartbeats: missed heartbeats, sequence gaps, unclean restarts,\n" +
			"drop jumps, detached programs), newest first, and move them through triage with the\n" +
			"subcommands. Changing a state needs an admin token when the collector has tokens.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req, err := filter.ParseAlerts(p, time.Now())
			if err != nil {
				return err
			}
			req.Limit, req.BeforeId = limit, before
			cl, ctx, done, err := g.client(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			resp, err := cl.ListAlerts(ctx, req)
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
	fl.StringVar(&p.Kind, "kind", "", "kinds, comma-separated (missed_heartbeat, sequence_gap, unclean_restart, drop_jump, programs_detached)")
	fl.Uint32Var(&limit, "limit", 100, "maximum alerts")
	fl.Uint64Var(&before, "before-id", 0, "only alerts older than this id (the next page)")
	cmd.AddCommand(
		newAlertState(g, "ack", "Acknowledge alerts: someone is looking at them", watchpostv1.AlertState_ALERT_STATE_ACKNOWLEDGED),
		newAlertState(g, "resolve", "Resolve alerts: dealt with", watchpostv1.AlertState_ALERT_STATE_RESOLVED),
		newAlertState(g, "reopen", "Reopen resolved or acknowledged alerts", watchpostv1.AlertState_ALERT_STATE_OPEN))
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
			cl, ctx, done, err := g.client(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			resp, err := cl.UpdateAlerts(ctx, req)
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
		for _, a := range as {
			if err := printJSON(out, a); err != nil {
				return err
			}
		}
		return nil
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
		fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", a.Id, formatTime(a.TimeUnixNano), alerts.SeverityName(a.Severity), st,
			a.AgentId, a.Host, alerts.KindName(a.Kind), a.Count, a.Message)
	}
	return w.Flush()
}
