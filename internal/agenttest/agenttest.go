// Package agenttest runs the real agent in the test's process for tests on
// either side (the agent's detection, the CLI, the dashboard): kernel
// programs attached (root only), stdout parsed for alerts, shipping to a
// collector when one is given, state in the test's directories.
package agenttest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/watchpost/watchpost/agent/app"
	"github.com/watchpost/watchpost/agent/config"
	"github.com/watchpost/watchpost/agent/event"
	"github.com/watchpost/watchpost/collector/certs"
)

// Options say what to run.
type Options struct {
	// ID is the agent id and host name.
	ID string
	// CollectorAddr and PKI, when set, ship to a collector (and keep stdout).
	CollectorAddr, PKI string
	// CommandsDir keeps the collector's commands; it survives a Stop, so
	// a second Start with it is a restart.
	CommandsDir string
	// Mutate adjusts the configuration last.
	Mutate func(*config.Config)
	// Lines keeps every line the agent prints (Lines returns them), not
	// only its alerts.
	Lines bool
}

// Agent is a running agent.
type Agent struct {
	App    *app.Agent
	cancel context.CancelFunc
	done   chan error

	mu     sync.Mutex
	alerts []Alert
	keep   bool
	lines  []string
	notify chan struct{}
}

// Alert is one alert the agent wrote to stdout, and its JSON line.
type Alert struct {
	Event *event.Event
	JSON  string
}

// Start runs the agent until the test ends (or Stop).
func Start(t testing.TB, o Options) *Agent {
	t.Helper()
	a := &Agent{notify: make(chan struct{}, 1), done: make(chan error, 1), keep: o.Lines}
	pr, pw := io.Pipe()
	go a.read(pr)
	cfg := config.Default()
	cfg.Host = o.ID
	cfg.Output = config.OutputStdout
	cfg.MetricsAddr = ""
	cfg.Commands.Dir = o.CommandsDir
	if cfg.Commands.Dir == "" {
		cfg.Commands.Dir = t.TempDir()
	}
	cfg.Detection.RulesDir = t.TempDir()
	cfg.Spool.Dir = t.TempDir()
	cfg.Baseline.Dir = t.TempDir()
	if o.CollectorAddr != "" {
		cert, key := certs.AgentFiles(o.ID)
		cfg.Output = config.OutputBoth
		cfg.Collector.Address = o.CollectorAddr
		cfg.Collector.AgentID = o.ID
		cfg.Collector.CA = filepath.Join(o.PKI, certs.CAFile)
		cfg.Collector.Cert = filepath.Join(o.PKI, cert)
		cfg.Collector.Key = filepath.Join(o.PKI, key)
	}
	if o.Mutate != nil {
		o.Mutate(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	ready := make(chan struct{})
	go func() {
		a.done <- app.Run(ctx, cfg, zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
			app.Options{Stdout: pw, Ready: func(ag *app.Agent) { a.App = ag; close(ready) }})
		_ = pw.Close()
	}()
	select {
	case <-ready:
	case err := <-a.done:
		cancel()
		t.Fatalf("agent stopped before it was ready: %v", err)
	}
	t.Cleanup(func() { a.Stop(t) })
	return a
}

func (a *Agent) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if a.keep {
			a.mu.Lock()
			a.lines = append(a.lines, string(line))
			a.mu.Unlock()
		}
		if !bytes.Contains(line, []byte(`"type":"alert"`)) {
			continue
		}
		ev := &event.Event{}
		if err := json.Unmarshal(line, ev); err != nil || ev.Alert == nil {
			continue
		}
		a.mu.Lock()
		a.alerts = append(a.alerts, Alert{ev, string(line)})
		a.mu.Unlock()
		select {
		case a.notify <- struct{}{}:
		default:
		}
	}
	_, _ = io.Copy(io.Discard, r)
}

// Stop stops the agent (its last events flushed); safe to call twice.
func (a *Agent) Stop(t testing.TB) {
	if a.cancel == nil {
		return
	}
	a.cancel()
	a.cancel = nil
	if err := <-a.done; err != nil {
		t.Errorf("agent: %v", err)
	}
}

// Lines returns the lines the agent printed so far (Options.Lines).
func (a *Agent) Lines() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.lines)
}

// Find returns the alerts of rule whose JSON contains marker.
func (a *Agent) Find(rule, marker string) []Alert {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []Alert
	for _, al := range a.alerts {
		if al.Event.Alert.RuleID == rule && strings.Contains(al.JSON, marker) {
			out = append(out, al)
		}
	}
	return out
}

// Wait waits up to 30 s for an alert of rule containing marker.
func (a *Agent) Wait(t testing.TB, rule, marker string) Alert {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		if as := a.Find(rule, marker); len(as) > 0 {
			return as[0]
		}
		select {
		case <-a.notify:
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			t.Fatalf("no %s alert naming %q", rule, marker)
		}
	}
}

// Suppressed is how many matches of rule an exception suppressed in this run.
func (a *Agent) Suppressed(rule string) uint64 {
	return a.App.Detect.Status().Suppressed[rule]
}

// NewProgram copies /usr/bin/true to a uniquely named executable in dir: a
// program the host has never run.
func NewProgram(t testing.TB, dir, name string) string {
	t.Helper()
	var r [4]byte
	_, _ = rand.Read(r[:])
	path := filepath.Join(dir, name+"-"+hex.EncodeToString(r[:]))
	src, err := os.Open("/usr/bin/true")
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}
