package collector

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/watchpost/watchpost/collector/alerts"
	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

// metricsCollector reads the collector's counters at scrape time. It
// exposes totals only, never agent or host names, so /metrics needs no
// token even where the query API does.
type metricsCollector struct {
	c                                          *Collector
	batches, events, rejected, heartbeats      *prometheus.Desc
	streams, refused, alerts, alertStoreErrors *prometheus.Desc
	queryRefused                               *prometheus.Desc
}

func newMetricsCollector(c *Collector) *metricsCollector {
	return &metricsCollector{
		c: c,
		batches: prometheus.NewDesc("watchpost_collector_batches_total",
			"Batches received and committed, by result: stored (new), duplicate (already stored; acknowledged again), retry (the store failed; the agent resends).",
			[]string{"result"}, nil),
		events: prometheus.NewDesc("watchpost_collector_events_stored_total", "Events committed to the store (duplicates not counted).", nil, nil),
		rejected: prometheus.NewDesc("watchpost_collector_batches_rejected_total",
			"Batches refused before storing, by gRPC code (InvalidArgument: validation, PermissionDenied: identity, ResourceExhausted: limits).",
			[]string{"code"}, nil),
		heartbeats: prometheus.NewDesc("watchpost_collector_heartbeats_total", "Agent heartbeats received.", nil, nil),
		streams:    prometheus.NewDesc("watchpost_collector_ingest_streams", "Ingest streams open now.", nil, nil),
		refused:    prometheus.NewDesc("watchpost_collector_ingest_streams_refused_total", "Ingest streams refused at the concurrency limit.", nil, nil),
		alerts: prometheus.NewDesc("watchpost_collector_alerts_total",
			"Tamper-evidence alerts raised, by kind (docs/reliability.md).", []string{"kind"}, nil),
		alertStoreErrors: prometheus.NewDesc("watchpost_collector_alert_store_errors_total",
			"Alerts raised that the store failed to keep (they were logged).", nil, nil),
		queryRefused: prometheus.NewDesc("watchpost_collector_query_refused_total",
			"Query requests refused, by reason: host (a Host header the loopback listener does not answer for), auth_throttled (unknown bearer tokens beyond query.auth_failures_per_second), max_concurrent (no query.max_concurrent slot free within query.timeout), timeout (store reads outlasted query.timeout).",
			[]string{"reason"}, nil),
	}
}

func (m *metricsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.batches, m.events, m.rejected, m.heartbeats, m.streams, m.refused, m.alerts, m.alertStoreErrors, m.queryRefused} {
		ch <- d
	}
}

func (m *metricsCollector) Collect(ch chan<- prometheus.Metric) {
	s := m.c.Stats()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	counter(m.batches, s.BatchesStored, "stored")
	counter(m.batches, s.BatchesDuplicate, "duplicate")
	counter(m.batches, s.BatchesRetry, "retry")
	counter(m.events, s.EventsStored)
	for code, n := range s.Rejected {
		counter(m.rejected, n, code)
	}
	counter(m.heartbeats, s.Heartbeats)
	ch <- prometheus.MustNewConstMetric(m.streams, prometheus.GaugeValue, float64(s.StreamsActive))
	counter(m.refused, s.StreamsRefused)
	// Every kind is present from the start, so a rate() over a new alert
	// kind does not begin at its first occurrence.
	for v := range watchpostv1.AlertKind_name {
		k := watchpostv1.AlertKind(v)
		if k == watchpostv1.AlertKind_ALERT_KIND_UNSPECIFIED {
			continue
		}
		name := alerts.KindName(k)
		counter(m.alerts, s.Alerts[name], name)
	}
	counter(m.alertStoreErrors, s.AlertStoreErrors)
	for reason, n := range s.QueryRefused {
		counter(m.queryRefused, n, reason)
	}
}

// metricsHandler serves the collector's counters and the Go runtime's and
// process's own metrics in the Prometheus text format.
func (c *Collector) metricsHandler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(newMetricsCollector(c), collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}
