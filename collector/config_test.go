package collector_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/watchpost/watchpost/collector"
)

func TestConfigFileAndValidation(t *testing.T) {
	dir := t.TempDir()
	write := func(body string) string {
		f := filepath.Join(dir, "c.yaml")
		if err := os.WriteFile(f, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	base := "data_dir: /d\ningest:\n  cert_file: s.pem\n  key_file: s-key.pem\n  client_ca_file: ca.pem\n"
	cfg := collector.DefaultConfig()
	if err := cfg.LoadFile(write(base + "  rate_burst: 20000\nretention:\n  max_age: 48h\n")); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.Ingest.RateBurst != 20000 || cfg.Retention.MaxAge.Hours() != 48 || cfg.Ingest.MaxEventsPerBatch != 10000 {
		t.Fatalf("loaded %+v", cfg)
	}
	cfg = collector.DefaultConfig()
	err := cfg.LoadFile(write(base + "  rate_brust: 1\n"))
	if err == nil || err.Error() != "parsing config "+filepath.Join(dir, "c.yaml")+": yaml: unmarshal errors:\n  line 6: field rate_brust not found in type collector.IngestConfig" {
		t.Fatalf("unknown key: %v", err)
	}
	fleet := "store: postgres\npostgres:\n  url: postgres://wp@db/wp\nqueue: nats\n"
	cfg = collector.DefaultConfig()
	if err := cfg.LoadFile(write(base + fleet + "nats:\n  urls: [nats://n1:4222, nats://n2:4222]\n  replicas: 3\n  site: plant-7\n")); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil || cfg.NATS.Replicas != 3 || len(cfg.NATS.URLs) != 2 || cfg.NATS.Stream != "WATCHPOST" {
		t.Fatalf("fleet config: %v %+v", err, cfg.NATS)
	}
	cases := []struct {
		yaml, want string
	}{
		{base + "  rate_burst: 5\n", "ingest.rate_burst: must be at least ingest.max_events_per_batch"},
		{base + "query:\n  listen: 0.0.0.0:7444\n", "query.tokens: required when query.listen is not a loopback address"},
		{base + "query:\n  tokens: [{name: a, token: short, role: read}]\n", "query.tokens[0].token: must be at least 16 characters"},
		{base + "query:\n  tokens: [{name: a, token: 0123456789abcdef, role: root}]\n", `query.tokens[0].role: "root" is not read or admin`},
		{"data_dir: /d\n", "ingest.cert_file, ingest.key_file: required (agents connect with mutual TLS)"},
		{base + "store: mysql\n", `store: "mysql" is not embedded or postgres`},
		{base + "store: postgres\n", "postgres.url: required with store: postgres"},
		{base + "queue: kafka\n", `queue: "kafka" is not none or nats`},
		{base + "queue: nats\n", "queue: nats needs store: postgres (the writers store into PostgreSQL; queries read it)"},
		{base + fleet, "nats.urls: required with queue: nats"},
		{base + fleet + "nats:\n  urls: [nats://n1:4222]\n  site: plant.1\n", `nats.site: "plant.1" must be one non-empty token without '.', '*', '>' or spaces`},
		{base + fleet + "nats:\n  urls: [nats://n1:4222]\n  replicas: 7\n", "nats.replicas: must be 1 to 5 (3 in a cluster)"},
		{base + fleet + "nats:\n  urls: [nats://n1:4222]\n  cert_file: c.pem\n", "nats.cert_file, nats.key_file: set both or neither"},
	}
	for _, tc := range cases {
		cfg := collector.DefaultConfig()
		if err := cfg.LoadFile(write(tc.yaml)); err != nil {
			t.Fatal(err)
		}
		if err := cfg.Validate(); err == nil || err.Error() != tc.want {
			t.Errorf("%q: got %v, want %q", tc.yaml, err, tc.want)
		}
	}
}
