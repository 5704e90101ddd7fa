package main

import (
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

// newBaseline is `watchpost baseline [allow|relearn|mode]`.
func newBaseline(g *globals) *cobra.Command {
	var agent string
	cmd := &cobra.Command{
		Use:   "baseline",
		Short: "The learned baselines per host: mode, learning progress, items per family; allow an item, relearn, set the mode",
		Long: "Lists each agent's learned baseline as its last heartbeat reported it: learning or enforcing,\n" +
			"the uptime learned of the learning period, anomalies raised, and per family the items learned,\n" +
			"pending (alerted, not allowed) and dropped (the family was full). docs/baseline.md.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			resp, err := unary(cmd.Context(), g, watchpostv1.QueryServiceClient.ListHosts, &watchpostv1.ListHostsRequest{})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			if !g.json {
				fmt.Fprintln(w, "AGENT\tMODE\tLEARNED\tALERTS\tFAMILIES (items/pending/dropped)\tPROBLEMS")
			}
			for _, h := range resp.Hosts {
				if agent != "" && h.AgentId != agent {
					continue
				}
				b := h.Baseline
				if g.json {
					if b == nil {
						b = &watchpostv1.BaselineStatus{Mode: "off"}
					}
					if err := printJSON(out, &watchpostv1.HostInfo{AgentId: h.AgentId, Host: h.Host, Baseline: b}); err != nil {
						return err
					}
					continue
				}
				if b == nil {
					row(w, h.AgentId, "off", "", "", "", "")
					continue
				}
				var fams, problems []string
				for _, f := range b.Families {
					fams = append(fams, fmt.Sprintf("%s %d/%d/%d", f.Family, f.Items, f.Pending, f.Dropped))
				}
				if b.LoadError != "" {
					problems = append(problems, "load: "+b.LoadError)
				}
				if b.SaveError != "" {
					problems = append(problems, "save: "+b.SaveError)
				}
				alerts := strconv.FormatUint(b.Alerts, 10)
				if b.Throttled > 0 {
					alerts += fmt.Sprintf(" (+%d throttled)", b.Throttled)
				}
				row(w, h.AgentId, b.Mode, learned(b), alerts, strings.Join(fams, " "), strings.Join(problems, "; "))
			}
			return w.Flush()
		},
	}
	cmd.Flags().StringVar(&agent, "agent", "", "only this agent")
	cmd.AddCommand(newBaselineAllow(g), newBaselineRelearn(g), newBaselineMode(g))
	return cmd
}

// learned is the learning progress: "3d4h of 7d (45%)".
func learned(b *watchpostv1.BaselineStatus) string {
	if b.PeriodNs == 0 {
		return ""
	}
	pct := 100 * float64(b.LearnedNs) / float64(b.PeriodNs)
	if b.Mode == "enforcing" || pct > 100 {
		pct = 100
	}
	return fmt.Sprintf("%s of %s (%.0f%%)", days(time.Duration(b.LearnedNs)), days(time.Duration(b.PeriodNs)), pct)
}

func days(d time.Duration) string {
	if d < 24*time.Hour {
		return d.Truncate(time.Second).String()
	}
	n := d / (24 * time.Hour)
	if h := (d - n*24*time.Hour) / time.Hour; h > 0 {
		return fmt.Sprintf("%dd%dh", n, h)
	}
	return fmt.Sprintf("%dd", n)
}

func newBaselineAllow(g *globals) *cobra.Command {
	var agent, family, comment string
	cmd := &cobra.Command{
		Use:   "allow (ALERT-ID | --agent A --family F FIELD...)",
		Short: "Add an item to an agent's baseline: the item of a baseline alert, or one given by its fields",
		Long: "Adds the item to the agent's baseline (with the items its alert named as also new); its program\n" +
			"then learns its other new items for baseline.allow_learning (1h). The fields of a family are in\n" +
			"docs/baseline.md, e.g. --family connect /opt/scada/bin/poller 10.0.0.9:502/tcp.",
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &watchpostv1.BaselineCommandRequest{AgentId: agent, Comment: comment}
			switch {
			case family == "" && len(args) == 1:
				id, err := alertID(args[0])
				if err != nil {
					return err
				}
				req.Action = &watchpostv1.BaselineCommandRequest_AllowAlertId{AllowAlertId: id}
			case family != "" && len(args) > 0:
				req.Action = &watchpostv1.BaselineCommandRequest_Allow{Allow: &watchpostv1.BaselineItem{Family: family, Item: args}}
			default:
				return fmt.Errorf("give an alert id, or --agent, --family and the item's fields")
			}
			return sendBaseline(cmd, g, req)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&agent, "agent", "", "the agent (taken from the alert when an alert id is given)")
	fl.StringVar(&family, "family", "", "the item's family: exec, args, user, file_write, connect, accept, listen, device, module")
	fl.StringVar(&comment, "comment", "", "why (kept with the command)")
	return cmd
}

func newBaselineRelearn(g *globals) *cobra.Command {
	var comment string
	cmd := &cobra.Command{
		Use:   "relearn AGENT",
		Short: "Forget an agent's baseline and learn again for the whole learning period",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return sendBaseline(cmd, g, &watchpostv1.BaselineCommandRequest{AgentId: args[0], Comment: comment,
				Action: &watchpostv1.BaselineCommandRequest_Relearn{Relearn: &watchpostv1.BaselineRelearn{}}})
		},
	}
	cmd.Flags().StringVar(&comment, "comment", "", "why (kept with the command)")
	return cmd
}

func newBaselineMode(g *globals) *cobra.Command {
	var comment string
	cmd := &cobra.Command{
		Use:   "mode AGENT learning|enforcing",
		Short: "Learn again for a whole period keeping what is known (learning), or end learning now (enforcing)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return sendBaseline(cmd, g, &watchpostv1.BaselineCommandRequest{AgentId: args[0], Comment: comment,
				Action: &watchpostv1.BaselineCommandRequest_Mode{Mode: args[1]}})
		},
	}
	cmd.Flags().StringVar(&comment, "comment", "", "why (kept with the command)")
	return cmd
}

func sendBaseline(cmd *cobra.Command, g *globals, req *watchpostv1.BaselineCommandRequest) error {
	resp, err := unary(cmd.Context(), g, watchpostv1.QueryServiceClient.BaselineCommand, req)
	if err != nil {
		return err
	}
	if g.json {
		return printJSON(cmd.OutOrStdout(), resp)
	}
	what := "baseline command"
	if it := resp.Allowed; it != nil {
		what = fmt.Sprintf("allow of %s %s", it.Family, strings.Join(it.Item, " "))
	}
	fmt.Fprintf(cmd.OutOrStdout(), "%s sent to %s (command %d)\n", printable(what), printable(resp.AgentId), resp.CommandSeq)
	return nil
}
