package collector_test

import (
	"net/http"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

// scrape reads the collector's /metrics and returns each sample's value by
// "name{label=value}" (one label at most, as the collector's metrics have).
func scrape(t *testing.T, queryAddr string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + queryAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %s", resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics is not the Prometheus text format: %v", err)
	}
	out := map[string]float64{}
	for name, f := range fams {
		for _, m := range f.Metric {
			key := name
			for _, l := range m.Label {
				key += "{" + l.GetName() + "=" + l.GetValue() + "}"
			}
			out[key] = value(m)
		}
	}
	return out
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	return -1
}

func TestMetricsCountBatchesEventsAndRejections(t *testing.T) {
	p := newPKI(t)
	c := startCollector(t, testConfig(t, p, t.TempDir()))
	cl := dialIngest(t, c.Addr(), agentTLS(t, p.dir, "agent-a"))
	b := buildBatch(t, "agent-a", 1, 0, 25, nil)
	for range 2 { // stored, then a duplicate
		if _, err := cl.send(b); err != nil {
			t.Fatal(err)
		}
	}
	bad := buildBatch(t, "agent-a", 2, 0, 5, nil)
	bad.EventCount = 6 // declares an event it does not carry: refused whole
	if ack, err := cl.send(bad); err != nil || ack.Status != watchpostv1.AckStatus_ACK_STATUS_REJECTED {
		t.Fatalf("bad batch: ack %v, err %v", ack, err)
	}
	got := scrape(t, c.QueryAddr())
	want := map[string]float64{
		"watchpost_collector_batches_total{result=stored}":                 1,
		"watchpost_collector_batches_total{result=duplicate}":              1,
		"watchpost_collector_batches_total{result=retry}":                  0,
		"watchpost_collector_events_stored_total":                          25,
		"watchpost_collector_batches_rejected_total{code=InvalidArgument}": 1,
		"watchpost_collector_ingest_streams":                               1,
		"watchpost_collector_alerts_total{kind=missed_heartbeat}":          0,
		"watchpost_collector_alerts_total{kind=programs_detached}":         0,
		"watchpost_collector_alert_store_errors_total":                     0,
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
	if got["process_resident_memory_bytes"] <= 0 || got["go_goroutines"] <= 0 {
		t.Errorf("process and Go runtime metrics missing: rss %v goroutines %v", got["process_resident_memory_bytes"], got["go_goroutines"])
	}
}
