// Package metrics serves the agent's counters for Prometheus (/metrics)
// and a liveness check (/healthz). Counters are read from their sources
// at scrape time; nothing is counted twice.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/watchpost/watchpost/agent/container"
	"github.com/watchpost/watchpost/agent/event"
	"github.com/watchpost/watchpost/agent/kernel"
	"github.com/watchpost/watchpost/agent/proctable"
)

// Sources are what the agent exposes.
type Sources struct {
	Kernel    func() (kernel.Stats, error)
	Programs  func() []string
	Delivered func() uint64
	Table     func() proctable.Stats
	// Containers is nil when container attribution is off.
	Containers func() container.Stats
	// Inspection is nil when industrial inspection is off.
	Inspection func() *event.Inspection
}

type collector struct {
	src       Sources
	events    *prometheus.Desc
	missed    *prometheus.Desc
	decodeErr *prometheus.Desc
	delivered *prometheus.Desc
	programs  *prometheus.Desc
	procs     *prometheus.Desc
	up        *prometheus.Desc
	ctrs      *prometheus.Desc
	ctrWork   *prometheus.Desc
	icsUp     *prometheus.Desc
	icsWork   *prometheus.Desc
	icsBad    *prometheus.Desc
}

func newCollector(src Sources) *collector {
	return &collector{
		src: src,
		events: prometheus.NewDesc("watchpost_events_total",
			"Events by type and outcome: produced (seen by a hook), emitted (written to the ring), and every drop reason (filtered, rate_limited, ring_full, queue_full, recursion_miss).",
			[]string{"type", "reason"}, nil),
		missed: prometheus.NewDesc("watchpost_program_missed_runs_total",
			"Runs of a multi-type program the kernel skipped (recursion protection).", []string{"program"}, nil),
		decodeErr: prometheus.NewDesc("watchpost_decode_errors_total", "Ring records that could not be decoded.", nil, nil),
		delivered: prometheus.NewDesc("watchpost_delivered_total", "Events handed to the outputs.", nil, nil),
		programs:  prometheus.NewDesc("watchpost_programs_attached", "Kernel hooks attached.", nil, nil),
		procs:     prometheus.NewDesc("watchpost_process_table_entries", "Processes tracked.", []string{"state"}, nil),
		up:        prometheus.NewDesc("watchpost_kernel_counters_up", "1 when the kernel counters could be read.", nil, nil),
		ctrs:      prometheus.NewDesc("watchpost_containers", "Containers the agent knows now.", nil, nil),
		ctrWork: prometheus.NewDesc("watchpost_container_lookups_total",
			"Container attribution work by result: cgroup_read, cgroup_miss (process gone first), lookup, lookup_error (runtime unreachable or slow), lookup_unknown, prefetched (announced by the runtime), queue_full (retried later), cache_reset.",
			[]string{"result"}, nil),
		icsUp: prometheus.NewDesc("watchpost_inspection_attached", "1 when the industrial inspection's packet programs are attached.", nil, nil),
		icsWork: prometheus.NewDesc("watchpost_inspection_total",
			"Industrial inspection work: segments and messages the kernel parsed, unparsed (more messages than parsed), retransmitted (bytes seen before, not counted again), no_owner (sent without the process), events and urgent ics_op events, owner_lookups, owner_unknown, queue_full and groups_full (lost).",
			[]string{"what"}, nil),
		icsBad: prometheus.NewDesc("watchpost_inspection_malformed_total",
			"Malformed application bytes the kernel counted and never reported, by reason: truncated, protocol_id, length, overrun.", []string{"reason"}, nil),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.events, c.missed, c.decodeErr, c.delivered, c.programs, c.procs, c.up, c.ctrs, c.ctrWork, c.icsUp, c.icsWork, c.icsBad} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	st, err := c.src.Kernel()
	if err != nil {
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 0)
	} else {
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 1)
		for k, ks := range st.Kinds {
			for reason, v := range map[string]uint64{
				"produced": ks.Produced, "emitted": ks.Emitted, kernel.ReasonFiltered: ks.Filtered,
				kernel.ReasonRateLimited: ks.RateLimited, kernel.ReasonRingFull: ks.RingFull,
				kernel.ReasonQueueFull: ks.QueueFull, kernel.ReasonMissed: ks.Missed,
			} {
				ch <- prometheus.MustNewConstMetric(c.events, prometheus.CounterValue, float64(v), k.String(), reason)
			}
		}
		for prog, v := range st.ProgramMisses {
			ch <- prometheus.MustNewConstMetric(c.missed, prometheus.CounterValue, float64(v), prog)
		}
		ch <- prometheus.MustNewConstMetric(c.decodeErr, prometheus.CounterValue, float64(st.DecodeErrors))
	}
	ch <- prometheus.MustNewConstMetric(c.delivered, prometheus.CounterValue, float64(c.src.Delivered()))
	ch <- prometheus.MustNewConstMetric(c.programs, prometheus.GaugeValue, float64(len(c.src.Programs())))
	ts := c.src.Table()
	ch <- prometheus.MustNewConstMetric(c.procs, prometheus.GaugeValue, float64(ts.Live), "live")
	ch <- prometheus.MustNewConstMetric(c.procs, prometheus.GaugeValue, float64(ts.Exited), "exited")
	if c.src.Containers != nil {
		cs := c.src.Containers()
		ch <- prometheus.MustNewConstMetric(c.ctrs, prometheus.GaugeValue, float64(cs.Containers))
		for result, v := range map[string]uint64{
			"cgroup_read": cs.CgroupReads, "cgroup_miss": cs.CgroupMisses, "lookup": cs.Lookups,
			"lookup_error": cs.LookupErrors, "lookup_unknown": cs.LookupUnknown, "prefetched": cs.Prefetched,
			"queue_full": cs.QueueFull, "cache_reset": cs.Evictions,
		} {
			ch <- prometheus.MustNewConstMetric(c.ctrWork, prometheus.CounterValue, float64(v), result)
		}
	}
	if c.src.Inspection != nil {
		st := c.src.Inspection()
		up := 0.0
		if st.Attached {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(c.icsUp, prometheus.GaugeValue, up)
		for what, v := range map[string]uint64{
			"segments": st.Segments, "messages": st.Messages, "unparsed": st.Unparsed, "no_owner": st.NoOwner, "retransmitted": st.Retransmitted,
			"events": st.Events, "urgent": st.Urgent, "owner_lookups": st.OwnerLookups, "owner_unknown": st.OwnerUnknown,
			"queue_full": st.QueueFull, "groups_full": st.GroupsFull,
		} {
			ch <- prometheus.MustNewConstMetric(c.icsWork, prometheus.CounterValue, float64(v), what)
		}
		for reason, v := range st.Malformed {
			ch <- prometheus.MustNewConstMetric(c.icsBad, prometheus.CounterValue, float64(v), reason)
		}
	}
}

// Server serves /metrics and /healthz.
type Server struct {
	log zerolog.Logger
	srv *http.Server
	ln  net.Listener
}

// New listens on addr; the server runs from Start.
func New(addr string, src Sources, log zerolog.Logger) (*Server, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(newCollector(src), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if len(src.Programs()) == 0 {
			http.Error(w, "no kernel programs attached", http.StatusServiceUnavailable)
			return
		}
		if _, err := src.Kernel(); err != nil {
			http.Error(w, "kernel counters unreadable: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics_addr: listening on %s: %w", addr, err)
	}
	return &Server{log: log.With().Str("component", "metrics").Logger(), ln: ln,
		srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}}, nil
}

// Addr is the listening address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Start serves in the background.
func (s *Server) Start() {
	go func() {
		if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error().Err(err).Msg("metrics server stopped")
		}
	}()
}

// Shutdown stops the server.
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }
