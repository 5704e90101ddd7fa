package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/watchpost/watchpost/agent/config"
	"github.com/watchpost/watchpost/agent/internal/privtest"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A changed rules file reloads the rules; an invalid configuration is
// refused once and the agent keeps running; the next valid one restarts it.
func TestWatchReloadsRulesAndRestartsOnValidConfig(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "agent.yaml")
	rules := filepath.Join(dir, "rules.d")
	if err := os.MkdirAll(rules, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(p, body string) {
		t.Helper()
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(conf, "host: gw-a\n")
	write(filepath.Join(rules, "a.yml"), "title: a\n")
	load := func() (config.Config, error) {
		c, err := config.Load(conf)
		if err != nil {
			return c, err
		}
		return c, c.Validate()
	}
	cfg, err := load()
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	reload := make(chan os.Signal, 1)
	restart := make(chan config.Config, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	w := newWatcher(10*time.Millisecond, conf, cfg, load, zerolog.New(&logs))
	go func() {
		w.run(ctx, reload, restart)
		close(done)
	}()

	write(filepath.Join(rules, "a.yml"), "title: a, changed\n")
	select {
	case <-reload:
	case <-time.After(10 * time.Second):
		t.Fatal("a changed rule file did not reload the rules")
	}

	write(conf, "host: gw-b\nkernel:\n  ring_bytes: 1000\n")
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "kernel.ring_bytes") {
		if time.Now().After(deadline) {
			t.Fatalf("the invalid configuration was not reported with its key:\n%s", logs.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case c := <-restart:
		t.Fatalf("restarted with an invalid configuration: %+v", c)
	default:
	}

	write(conf, "host: gw-b\n")
	select {
	case c := <-restart:
		if c.Host != "gw-b" {
			t.Errorf("restarted with host %q, want gw-b", c.Host)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a valid changed configuration did not restart the agent")
	}
	<-done
	if n := strings.Count(logs.String(), "not valid"); n != 1 {
		t.Errorf("the invalid configuration was reported %d times, want once:\n%s", n, logs.String())
	}
}

// The real agent, restarted in place when its configuration file changes.
func TestAgentRestartsWithChangedConfig(t *testing.T) {
	privtest.Require(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "agent.yaml")
	body := "host: %s\nmetrics_addr: \"\"\nkernel:\n  events: [exec]\ndetection:\n  enabled: false\ncommands:\n  dir: \"\"\n"
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(body, "gw-a")), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	code := make(chan int, 1)
	go func() { code <- run(ctx, []string{"--config", conf, "--reload-interval", "50ms"}, &stdout, &stderr) }()
	waitOut := func(s string) {
		t.Helper()
		wait := 60 * time.Second
		if _, vm := privtest.InVM(); vm {
			wait = 3 * time.Minute // a restart loads every program again, slowly under emulation
		}
		deadline := time.Now().Add(wait)
		for !strings.Contains(stdout.String(), s) {
			if time.Now().After(deadline) {
				t.Fatalf("no %s in the output; stderr:\n%s", s, stderr.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitOut(`"type":"agent_start","time"`)
	waitOut(`"host":"gw-a"`)
	// Replaced the way configuration tools do it (a new file renamed over
	// the old): a guest's CPU busy loading programs can stall an in-place
	// writer between the truncation and the write for longer than the
	// watcher's settling interval.
	next := conf + ".new"
	if err := os.WriteFile(next, []byte(fmt.Sprintf(body, "gw-b")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(next, conf); err != nil {
		t.Fatal(err)
	}
	waitOut(`"host":"gw-b"`)
	if n := strings.Count(stdout.String(), `"type":"agent_start"`); n != 2 {
		t.Errorf("%d agent_start events, want 2 (one per configuration)", n)
	}
	cancel()
	if c := <-code; c != exitOK {
		t.Errorf("exit %d; stderr:\n%s", c, stderr.String())
	}
}
