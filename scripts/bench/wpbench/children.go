package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/watchpost/watchpost/agent/kernel"
	"github.com/watchpost/watchpost/collector"
	"github.com/watchpost/watchpost/collector/certs"
)

// childStats is what a child process serves on /stats.
type childStats struct {
	// collector-child
	EventsStored, BatchesStored uint64
	Rejected                    map[string]uint64
	// sensor-child
	Read, Consumed uint64
	Kernel         kernel.KindStats
	ProgramMisses  uint64
	DecodeErrors   uint64
}

// serveStats serves f as JSON on /stats at addr until ctx ends.
func serveStats(ctx context.Context, addr string, f func() childStats) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/stats", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(f())
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { <-ctx.Done(); _ = srv.Close() }()
	if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
		return err
	}
	return nil
}

// collectorChild runs a collector (collector.New, its own process so that
// its RSS is its own) with the per-agent rate limit lifted.
func collectorChild(args []string) error {
	fs := flag.NewFlagSet("collector-child", flag.ContinueOnError)
	dir := fs.String("dir", "", "data and certificate directory")
	listen := fs.String("listen", "", "ingest address")
	query := fs.String("query", "", "query address")
	stats := fs.String("stats", "", "stats address")
	limit := fs.Float64("rate", 1e9, "per-agent events/s")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	cfg := collector.DefaultConfig()
	cfg.DataDir = filepath.Join(*dir, "data")
	cfg.LogLevel = "warn"
	cfg.Ingest.Listen = *listen
	cfg.Query.Listen = *query
	cfg.Ingest.CertFile = filepath.Join(*dir, certs.ServerFile)
	cfg.Ingest.KeyFile = filepath.Join(*dir, certs.ServerKeyFile)
	cfg.Ingest.ClientCAFile = filepath.Join(*dir, certs.CAFile)
	cfg.Ingest.RateEventsPerSecond = *limit
	cfg.Ingest.RateBurst = int(min(*limit, 1e7))
	c, err := collector.New(cfg, collector.Deps{Logger: zerolog.New(os.Stderr).Level(zerolog.WarnLevel)})
	if err != nil {
		return err
	}
	if err := c.Start(ctx); err != nil {
		_ = c.Shutdown(context.Background())
		return err
	}
	err = serveStats(ctx, *stats, func() childStats {
		s := c.Stats()
		return childStats{EventsStored: s.EventsStored, BatchesStored: s.BatchesStored, Rejected: s.Rejected}
	})
	return errors.Join(err, c.Shutdown(context.Background()))
}

// sensorChild loads the kernel side alone (full capture) and discards what
// it decodes: the kernel -> ring -> reader -> decoder path without the
// pipeline and its JSON output.
func sensorChild(args []string) error {
	fs := flag.NewFlagSet("sensor-child", flag.ContinueOnError)
	stats := fs.String("stats", "", "stats address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	cfg := kernel.DefaultConfig()
	cfg.Threads = true
	cfg.Filters.ReadOpens = true
	cfg.Filters.RatePerSec = 0
	cfg.Filters.UserRatePerSec = 0
	s, err := kernel.Load(cfg, zerolog.New(os.Stderr).Level(zerolog.WarnLevel))
	if err != nil {
		return err
	}
	var consumed atomic.Uint64
	runDone := make(chan error, 1)
	go func() { runDone <- s.Run(ctx) }()
	go func() {
		for range s.Events() {
			consumed.Add(1)
		}
	}()
	err = serveStats(ctx, *stats, func() childStats {
		st, err := s.Stats()
		if err != nil {
			return childStats{}
		}
		out := childStats{Read: st.Read, Consumed: consumed.Load(), Kernel: st.Total(), DecodeErrors: st.DecodeErrors}
		for _, n := range st.ProgramMisses {
			out.ProgramMisses += n
		}
		return out
	})
	stop()
	return errors.Join(err, <-runDone, s.Close())
}

// child is a wpbench child process serving /stats.
type child struct {
	cmd       *exec.Cmd
	statsAddr string
	done      chan struct{}
	err       error
}

func startChild(ctx context.Context, logPath string, args ...string) (*child, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	c := &child{statsAddr: addr, done: make(chan struct{})}
	c.cmd = exec.Command(self, append(append([]string{args[0]}, "--stats", addr), args[1:]...)...)
	c.cmd.Stdout, c.cmd.Stderr = io.Discard, logf
	if err := c.cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting %s: %w", args[0], err)
	}
	go func() { c.err = c.cmd.Wait(); logf.Close(); close(c.done) }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := c.stats(); err == nil {
			return c, nil
		}
		select {
		case <-c.done:
			b, _ := os.ReadFile(logPath)
			return nil, fmt.Errorf("%s exited during start-up: %v: %s", args[0], c.err, b)
		case <-ctx.Done():
			c.stop()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			c.stop()
			return nil, fmt.Errorf("%s did not answer within 60 s", args[0])
		}
	}
}

func (c *child) pid() int { return c.cmd.Process.Pid }

func (c *child) stats() (childStats, error) {
	var s childStats
	client := http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + c.statsAddr + "/stats")
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	return s, json.NewDecoder(resp.Body).Decode(&s)
}

func (c *child) stop() error {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(30 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
		return fmt.Errorf("%s did not stop within 30 s; killed", c.cmd.Args[1])
	}
	return nil
}
