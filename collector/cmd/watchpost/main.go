// Command watchpost queries a Watchpost collector.
//
//	watchpost events --host gw1 --type exec --since 1h
//	watchpost tail --type 'net_*' --port 502
//	watchpost hosts
//	watchpost policies --host gw1
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/watchpost/watchpost/agent/shipper"
	"github.com/watchpost/watchpost/collector/filter"
	"github.com/watchpost/watchpost/internal/version"
	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

type globals struct {
	server, token, caFile string
	json                  bool
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRoot().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "watchpost:", printable(err.Error()))
		os.Exit(1)
	}
}

func newRoot() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "watchpost",
		Short:         "Query a Watchpost collector",
		Version:       version.Version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	pf := root.PersistentFlags()
	pf.StringVar(&g.server, "server", envOr("WATCHPOST_SERVER", "127.0.0.1:7444"), "collector query address (env WATCHPOST_SERVER)")
	pf.StringVar(&g.token, "token", os.Getenv("WATCHPOST_TOKEN"), "bearer token (env WATCHPOST_TOKEN)")
	pf.StringVar(&g.caFile, "ca-file", os.Getenv("WATCHPOST_CA_FILE"), "CA of the collector's query certificate; plain HTTP/2 when empty (env WATCHPOST_CA_FILE)")
	pf.BoolVar(&g.json, "json", false, "print JSON, one object per line")
	root.AddCommand(newEvents(g), newTail(g), newHosts(g), newAlerts(g), newExceptions(g), newBaseline(g),
		newPolicies(g), newPolicy(g), newKillSwitch(g))
	return root
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func (g *globals) client(ctx context.Context) (watchpostv1.QueryServiceClient, context.Context, func(), error) {
	creds := insecure.NewCredentials()
	if g.caFile != "" {
		pem, err := os.ReadFile(g.caFile)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("reading ca file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, nil, nil, fmt.Errorf("ca file %s: no PEM certificate", g.caFile)
		}
		creds = credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool})
	}
	conn, err := grpc.NewClient(g.server, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("connecting to %s: %w", g.server, err)
	}
	if g.token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+g.token)
	}
	return watchpostv1.NewQueryServiceClient(conn), ctx, func() { _ = conn.Close() }, nil
}

// unary makes one call of the query API with a client of the global flags.
func unary[Req, Resp any](ctx context.Context, g *globals, rpc func(watchpostv1.QueryServiceClient, context.Context, Req, ...grpc.CallOption) (Resp, error), req Req) (Resp, error) {
	cl, ctx, done, err := g.client(ctx)
	if err != nil {
		var zero Resp
		return zero, err
	}
	defer done()
	return rpc(cl, ctx, req)
}

// filterFlags are the filters shared by events and tail.
type filterFlags struct{ p filter.Params }

func (f *filterFlags) register(cmd *cobra.Command, withTime bool) {
	fl := cmd.Flags()
	fl.StringVar(&f.p.Host, "host", "", "host name")
	fl.StringVar(&f.p.Agent, "agent", "", "agent id")
	fl.StringVar(&f.p.Types, "type", "", "event types, comma-separated (exec,file_open) or prefix* (net_*)")
	fl.StringVar(&f.p.PID, "pid", "", "process id")
	fl.StringVar(&f.p.Exe, "exe", "", "executable path, base name or comm")
	fl.StringVar(&f.p.Exe, "process", "", "alias of --exe")
	fl.StringVar(&f.p.Path, "path", "", "file path prefix")
	fl.StringVar(&f.p.Port, "port", "", "source or destination port")
	fl.StringVar(&f.p.Protocol, "protocol", "", "industrial protocol (modbus, s7comm, dnp3 ...)")
	fl.StringVar(&f.p.Text, "text", "", "substring of any field")
	if withTime {
		fl.StringVar(&f.p.Since, "since", "", "RFC 3339 time or duration ago (1h)")
		fl.StringVar(&f.p.Until, "until", "", "RFC 3339 time or duration ago")
	}
}

func newEvents(g *globals) *cobra.Command {
	var ff filterFlags
	var limit uint32
	cmd := &cobra.Command{
		Use:   "events",
		Short: "List the most recent matching events, oldest first",
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := filter.Parse(ff.p, time.Now())
			if err != nil {
				return err
			}
			resp, err := unary(cmd.Context(), g, watchpostv1.QueryServiceClient.QueryEvents, &watchpostv1.QueryEventsRequest{Filter: f, Limit: limit})
			if err != nil {
				return err
			}
			if err := printEvents(cmd.OutOrStdout(), resp.Events, g.json, true); err != nil {
				return err
			}
			if resp.Truncated && !g.json {
				note(cmd, "more events matched; showing the last %d: narrow the filter or raise --limit", len(resp.Events))
			}
			return nil
		},
	}
	ff.register(cmd, true)
	cmd.Flags().Uint32Var(&limit, "limit", 100, "maximum events")
	return cmd
}

func newTail(g *globals) *cobra.Command {
	var ff filterFlags
	cmd := &cobra.Command{
		Use:   "tail",
		Short: "Follow matching events as they are stored",
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := filter.Parse(ff.p, time.Now())
			if err != nil {
				return err
			}
			cl, ctx, done, err := g.client(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			st, err := cl.TailEvents(ctx, &watchpostv1.TailEventsRequest{Filter: f})
			if err != nil {
				return err
			}
			header := true
			for {
				resp, err := st.Recv()
				if err == io.EOF || cmd.Context().Err() != nil {
					return nil
				}
				if err != nil {
					return err
				}
				if resp.Dropped > 0 {
					note(cmd, "%d events skipped: this terminal reads too slowly", resp.Dropped)
				}
				if len(resp.Events) == 0 {
					continue
				}
				if err := printEvents(cmd.OutOrStdout(), resp.Events, g.json, header); err != nil {
					return err
				}
				header = false
			}
		},
	}
	ff.register(cmd, false)
	return cmd
}

func newHosts(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "hosts",
		Short: "List the agents: host, last seen, version, kernel, capture path and drop counters",
		RunE: func(cmd *cobra.Command, _ []string) error {
			resp, err := unary(cmd.Context(), g, watchpostv1.QueryServiceClient.ListHosts, &watchpostv1.ListHostsRequest{})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if g.json {
				return printEach(out, resp.Hosts)
			}
			w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "AGENT\tHOST\tLAST SEEN\tVERSION\tKERNEL\tCAPTURE\tEVENTS\tDROPPED\tDETECTION\tDROPS BY REASON")
			for _, h := range resp.Hosts {
				var drops []string
				for _, c := range h.Drops {
					drops = append(drops, fmt.Sprintf("%s/%s=%d", c.Kind, c.Reason, c.Count))
				}
				row(w, h.AgentId, h.Host, formatTime(h.LastSeenUnixNano), h.Version, h.Kernel, h.CapturePath,
					h.EventsStored, h.Dropped, detectionSummary(h.Detection), strings.Join(drops, " "))
			}
			return w.Flush()
		},
	}
}

// detectionSummary is the hosts table's detection column: rules loaded,
// alerts, suppressed matches, and the rule load's errors.
func detectionSummary(d *watchpostv1.DetectionStatus) string {
	if d == nil {
		return "off"
	}
	var suppressed uint64
	for _, c := range d.Suppressed {
		suppressed += c.Count
	}
	s := fmt.Sprintf("%d rules, %d alerts, %d suppressed", d.Rules, d.Alerts, suppressed)
	var folded uint64
	for _, c := range d.Folded {
		folded += c.Count
	}
	if folded > 0 {
		s += fmt.Sprintf(", %d folded", folded)
	}
	if len(d.Errors) > 0 {
		s += fmt.Sprintf(", %d errors: %s", len(d.Errors), strings.Join(d.Errors, "; "))
	}
	return s
}

// note writes a remark for the reader to stderr, as a line of its own
// after everything printed so far (tables are flushed before a note).
func note(cmd *cobra.Command, format string, args ...any) {
	fmt.Fprintf(cmd.ErrOrStderr(), "watchpost: "+format+"\n", args...)
}

var jsonOut = protojson.MarshalOptions{UseProtoNames: true}

func printJSON(w io.Writer, m proto.Message) error {
	b, err := jsonOut.Marshal(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, string(b))
	return err
}

// printEach prints messages as JSON, one a line.
func printEach[M proto.Message](w io.Writer, ms []M) error {
	for _, m := range ms {
		if err := printJSON(w, m); err != nil {
			return err
		}
	}
	return nil
}

// printEventJSON prints a stored event as the agent prints it
// (`watchpost-agent --output stdout`: the same fields, names and values),
// followed by what the collector added: agent_id and boot_id, and when
// set time_clamped with the agent's own time and claimed_host.
func printEventJSON(w io.Writer, ev *watchpostv1.Event) error {
	b, err := shipper.FromProto(ev).AppendJSON(nil)
	if err != nil {
		return err
	}
	b = b[:len(b)-1] // the closing brace
	h := ev.GetHeader()
	add := func(key string, v any) {
		enc, _ := json.Marshal(v) // strings, bools and times only
		b = append(append(append(append(b, ",\""...), key...), "\":"...), enc...)
	}
	add("agent_id", h.GetAgentId())
	add("boot_id", h.GetBootId())
	if h.GetTimeClamped() {
		add("time_clamped", true)
		add("agent_time", time.Unix(0, h.GetAgentTimeUnixNano()))
	}
	if h.GetClaimedHost() != "" {
		add("claimed_host", h.GetClaimedHost())
	}
	_, err = w.Write(append(b, '}', '\n'))
	return err
}

func printEvents(out io.Writer, evs []*watchpostv1.Event, asJSON, header bool) error {
	if asJSON {
		for _, ev := range evs {
			if err := printEventJSON(out, ev); err != nil {
				return err
			}
		}
		return nil
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	if header {
		fmt.Fprintln(w, "TIME\tHOST\tTYPE\tPID\tPROCESS\tDETAIL")
	}
	for _, ev := range evs {
		h, p := ev.GetHeader(), ev.GetProcess()
		proc := p.GetComm()
		if p.GetExe() != "" {
			proc = path.Base(p.GetExe())
		}
		row(w, formatTime(h.GetTimeUnixNano()), h.GetHost(), filter.TypeName(h.GetType()), p.GetPid(), proc, detail(ev))
	}
	return w.Flush()
}

func formatTime(ns int64) string {
	if ns == 0 {
		return "-"
	}
	return time.Unix(0, ns).Local().Format("2006-01-02 15:04:05.000")
}

// responseDetail: "blocked plc-egress (deny_connect): tcp 10.20.0.5:502".
func responseDetail(r *watchpostv1.Response) string {
	s := fmt.Sprintf("%s %s (%s, %s)", r.Outcome, r.Policy, r.Action, r.Mode)
	switch {
	case r.DstAddr != "":
		send := ""
		if r.Send {
			send = " send"
		}
		s += fmt.Sprintf(": %s%s %s:%d", r.Protocol, send, r.DstAddr, r.DstPort)
	case r.Device != "":
		s += fmt.Sprintf(": %s %s %s", r.DevKind, r.Device, strings.Join(r.Access, ","))
	case r.Family != "":
		s += fmt.Sprintf(": %s %s socket", r.Family, r.SockType)
	case r.RuleId != "":
		s += fmt.Sprintf(": rule %s, pids %v", r.RuleId, r.Targets)
	case r.Exe != "":
		s += ": " + r.Exe
	}
	if r.Error != "" {
		s += " [" + r.Error + "]"
	}
	return s
}

// policiesDetail lists each policy's mode and counts.
func policiesDetail(p *watchpostv1.Policies) string {
	var parts []string
	for _, ps := range p.Policies {
		part := fmt.Sprintf("%s %s/%s acted=%d would=%d", ps.Id, ps.Action, ps.Mode, ps.Acted, ps.WouldHave)
		if ps.Unenforceable != "" {
			part += " unenforceable"
		}
		parts = append(parts, part)
	}
	s := fmt.Sprintf("generation %d from %s: %s", p.Generation, p.Source, strings.Join(parts, "; "))
	if !p.Enforcing {
		s = "KILL SWITCH ON; " + s
	}
	if len(p.Errors) > 0 {
		s += " refused: " + strings.Join(p.Errors, "; ")
	}
	return s
}

// failure names a failed call's errno (" failed: EACCES"), or its number
// when the agent sent no name; "" for a success.
func failure(result int32, errno string) string {
	switch {
	case result >= 0:
		return ""
	case errno == "EINPROGRESS":
		return " (in progress)"
	case errno != "":
		return " failed: " + errno
	}
	return fmt.Sprintf(" failed: %d", result)
}

// detail is a one-line summary of an event's details.
func detail(ev *watchpostv1.Event) string {
	var s string
	switch d := ev.Detail.(type) {
	case *watchpostv1.Event_Exec:
		s = strings.Join(ev.GetProcess().GetArgs(), " ")
	case *watchpostv1.Event_Clone:
		s = fmt.Sprintf("child %d thread=%v", d.Clone.ChildPid, d.Clone.Thread)
	case *watchpostv1.Event_Exit:
		s = fmt.Sprintf("code %d signal %d", d.Exit.Code, d.Exit.Signal)
	case *watchpostv1.Event_File:
		s = d.File.Path
		if d.File.NewPath != "" {
			s += " -> " + d.File.NewPath
		}
		if d.File.Watched {
			s += " (watched read)"
		}
		s += failure(d.File.Result, d.File.Errno)
	case *watchpostv1.Event_Net:
		n := d.Net
		s = fmt.Sprintf("%s %s:%d -> %s:%d", n.Protocol, n.SrcAddr, n.SrcPort, n.DstAddr, n.DstPort)
		if n.Family == "packet" || n.Family == "netlink" || n.SockType == "raw" {
			s = fmt.Sprintf("%s %s socket", n.Family, dash(n.Protocol))
		}
		if n.State == "listen" {
			s = fmt.Sprintf("%s listen %s:%d", n.Protocol, n.SrcAddr, n.SrcPort)
		} else if n.State != "" {
			s += " " + n.State
		}
		if n.BytesSent > 0 || n.BytesRecv > 0 {
			s += fmt.Sprintf(" sent %d recv %d", n.BytesSent, n.BytesRecv)
		}
		if n.State == "" {
			s += failure(n.Result, n.Errno)
		}
		if n.Interface != "" || n.Zone != "" || n.PeerZone != "" {
			s += fmt.Sprintf(" if=%s zone=%s", dash(n.Interface), dash(n.Zone))
			if n.PeerZone != "" {
				s += " peer_zone=" + n.PeerZone
			}
		}
	case *watchpostv1.Event_Ics:
		i := d.Ics
		s = fmt.Sprintf("%s %s %s %s x%d unit %d %s:%d -> %s:%d", i.Protocol, i.Role, i.Class, i.Function, i.Count, i.Unit,
			i.SrcAddr, i.SrcPort, i.DstAddr, i.DstPort)
		for _, r := range i.Ranges {
			s += fmt.Sprintf(" @%d+%d", r.Address, r.Count)
		}
		if len(i.Values) > 0 {
			s += fmt.Sprintf(" values %v", i.Values)
		}
		for _, e := range i.Exceptions {
			s += fmt.Sprintf(" %s x%d", e.Name, e.Count)
		}
		if i.Urgent {
			s += " urgent"
		}
	case *watchpostv1.Event_NetInterface:
		n := d.NetInterface
		s = fmt.Sprintf("%s %s (%d, %s) zone=%s", n.Action, n.Name, n.Index, dash(n.Type), dash(n.Zone))
		if n.Address != "" {
			s = fmt.Sprintf("%s %s on %s zone=%s", n.Action, n.Address, n.Name, dash(n.AddressZone))
		} else if len(n.Changed) > 0 {
			s += " changed " + strings.Join(n.Changed, ",")
		}
	case *watchpostv1.Event_Security:
		sec := d.Security
		s = strings.TrimSpace(strings.Join([]string{sec.Operation, sec.Name, sec.Path}, " "))
		if sec.TargetPid != 0 {
			name := sec.TargetComm
			if sec.TargetExe != "" {
				name = sec.TargetExe
			}
			s += fmt.Sprintf(" target %d %s", sec.TargetPid, name)
			if sec.TargetUid != nil {
				s += fmt.Sprintf(" uid %d", *sec.TargetUid)
			}
		}
	case *watchpostv1.Event_Health:
		s = fmt.Sprintf("produced %d delivered %d dropped %d", d.Health.Produced, d.Health.Delivered, d.Health.Dropped)
	case *watchpostv1.Event_Gap:
		var parts []string
		for _, c := range d.Gap.Counters {
			parts = append(parts, fmt.Sprintf("%s/%s=%d", c.Kind, c.Reason, c.Count))
		}
		s = d.Gap.Reason + " " + strings.Join(parts, " ")
	case *watchpostv1.Event_Response:
		s = responseDetail(d.Response)
	case *watchpostv1.Event_Policies:
		s = policiesDetail(d.Policies)
	}
	if in := ev.GetIndustrial(); in != nil && in.Protocol != "" {
		s += " [" + in.Protocol + "]"
	}
	return s
}

// dash stands in for an empty value in a one-line summary.
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
