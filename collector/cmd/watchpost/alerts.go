package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/watchpost/watchpost/collector/alerts"
	"github.com/watchpost/watchpost/collector/filter"
	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

func newAlerts(g *globals) *cobra.Command {
	var p filter.Params
	var limit uint32
	cmd := &cobra.Command{
		Use:   "alerts",
		Short: "List tamper-evidence alerts (missed heartbeats, sequence gaps, unclean restarts, drop jumps, detached programs), newest first",
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := filter.Parse(filter.Params{Agent: p.Agent, Since: p.Since}, time.Now())
			if err != nil {
				return err
			}
			cl, ctx, done, err := g.client(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			resp, err := cl.ListAlerts(ctx, &watchpostv1.ListAlertsRequest{AgentId: f.AgentId, SinceUnixNano: f.SinceUnixNano, Limit: limit})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if g.json {
				for _, a := range resp.Alerts {
					if err := printJSON(out, a); err != nil {
						return err
					}
				}
				return nil
			}
			w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "TIME\tAGENT\tHOST\tALERT\tCOUNT\tMESSAGE")
			for _, a := range resp.Alerts {
				kind := alerts.KindName(a.Kind)
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%s\n", formatTime(a.TimeUnixNano), a.AgentId, a.Host, kind, a.Count, a.Message)
			}
			return w.Flush()
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&p.Agent, "agent", "", "agent id")
	fl.StringVar(&p.Since, "since", "", "RFC 3339 time or duration ago (1h)")
	fl.Uint32Var(&limit, "limit", 100, "maximum alerts")
	return cmd
}
