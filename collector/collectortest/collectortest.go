// Package collectortest starts a real collector on loopback for tests in
// other packages: a fresh PKI, ephemeral ports, a temporary store.
package collectortest

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/watchpost/watchpost/collector"
	"github.com/watchpost/watchpost/collector/certs"
)

// Loopback creates a CA with certificates for the collector (127.0.0.1) and
// for each agent, and starts a collector listening on 127.0.0.1. mutate,
// when set, adjusts the configuration first. It returns the collector and
// the PKI directory; the collector is shut down when the test ends.
func Loopback(t testing.TB, agents []string, mutate func(*collector.Config)) (*collector.Collector, string) {
	t.Helper()
	pki := t.TempDir()
	if err := certs.Generate(certs.Options{Dir: pki, Agents: agents, Hosts: []string{"127.0.0.1"}}); err != nil {
		t.Fatal(err)
	}
	cfg := collector.DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.Ingest.Listen = "127.0.0.1:0"
	cfg.Ingest.CertFile = filepath.Join(pki, certs.ServerFile)
	cfg.Ingest.KeyFile = filepath.Join(pki, certs.ServerKeyFile)
	cfg.Ingest.ClientCAFile = filepath.Join(pki, certs.CAFile)
	cfg.Query.Listen = "127.0.0.1:0"
	cfg.ShutdownTimeout = 5 * time.Second
	if mutate != nil {
		mutate(&cfg)
	}
	c, err := collector.New(cfg, collector.Deps{Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Shutdown(context.Background()) })
	return c, pki
}
