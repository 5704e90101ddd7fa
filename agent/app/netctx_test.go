package app_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/watchpost/watchpost/agent/app"
	"github.com/watchpost/watchpost/agent/config"
	"github.com/watchpost/watchpost/agent/event"
	"github.com/watchpost/watchpost/agent/industrial"
	"github.com/watchpost/watchpost/agent/internal/privtest"
	"github.com/watchpost/watchpost/agent/netctx"
)

// lockedBuffer is the agent's stdout, read while the agent writes it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) events(t *testing.T) []event.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []event.Event
	sc := bufio.NewScanner(bytes.NewReader(l.b.Bytes()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var ev event.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("agent output %q: %v", sc.Bytes(), err)
		}
		out = append(out, ev)
	}
	return out
}

// TestStartupInventoryThroughTheAgent runs the whole agent after a TCP
// server has started: its listening socket is in the agent's output as a
// net_inventory event with the server's pid and exe, the industrial tag of
// its port, and the zone of loopback; loopback itself is reported present
// with its zone.
func TestStartupInventoryThroughTheAgent(t *testing.T) {
	privtest.Require(t)
	if _, err := netlink.SocketDiagTCP(unix.AF_INET); err != nil {
		t.Skipf("this kernel has no TCP socket diagnostics (inet_diag/tcp_diag), so there is no start-up inventory: %v", err)
	}
	srv, port := privtest.Listener(t)
	cfg := config.Default()
	cfg.Host = "inventory-gw"
	cfg.MetricsAddr = ""
	cfg.Commands.Dir = ""
	cfg.Baseline.Enabled = false
	cfg.Detection.Enabled = false
	cfg.Kernel.Events = []string{"exec"}
	cfg.Network.Zones = []netctx.Zone{{Name: "host-local", Interfaces: []string{"lo"}}}
	cfg.Industrial.Protocols = append(cfg.Industrial.Protocols, industrialPort(port))
	out := &lockedBuffer{}

	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- app.Run(ctx, cfg, zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
			app.Options{Stdout: out, Ready: func(*app.Agent) { close(ready) }})
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("agent stopped before it was ready: %v", err)
	}
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent: %v", err)
		}
	}()

	var listen, lo *event.Event
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && (listen == nil || lo == nil); time.Sleep(50 * time.Millisecond) {
		for _, ev := range out.events(t) {
			switch {
			case ev.Kind == event.KindNetInventory && ev.Net.SrcPort == uint16(port) && ev.Net.State == "listen":
				listen = &ev
			case ev.Kind == event.KindNetInterface && ev.Interface.Name == "lo":
				lo = &ev
			}
		}
	}
	if listen == nil || lo == nil {
		t.Fatalf("no inventory of port %d (%v) or no loopback interface (%v) in the agent's output", port, listen != nil, lo != nil)
	}
	self := privtest.Self(t)
	if p := listen.Process; p.PID != uint32(srv.Process.Pid) || p.Exe != self || len(listen.Ancestry) == 0 || listen.Host != "inventory-gw" {
		t.Errorf("inventory: process %+v ancestry %+v host %q, want pid %d exe %s", p, listen.Ancestry, listen.Host, srv.Process.Pid, self)
	}
	want := event.Net{Family: "inet", Protocol: "tcp", SockType: "stream", SrcAddr: "127.0.0.1", SrcPort: uint16(port),
		State: "listen", Interface: "lo", Zone: "host-local"}
	if *listen.Net != want {
		t.Errorf("inventory: net\n got %+v\nwant %+v", *listen.Net, want)
	}
	if listen.Industrial == nil || listen.Industrial.Protocol != "test-plc" {
		t.Errorf("inventory: industrial %+v, want test-plc", listen.Industrial)
	}
	if n := lo.Interface; n.Action != "present" || n.Zone != "host-local" || n.Type != "device" || !n.Up {
		t.Errorf("loopback: %+v", n)
	}
}

func industrialPort(port int) industrial.Protocol {
	return industrial.Protocol{Name: "test-plc", Transport: "tcp", Ports: strconv.Itoa(port)}
}
