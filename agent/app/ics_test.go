package app_test

import (
	"context"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/simonvetter/modbus"

	"github.com/watchpost/watchpost/agent/app"
	"github.com/watchpost/watchpost/agent/config"
	"github.com/watchpost/watchpost/agent/event"
	"github.com/watchpost/watchpost/agent/industrial/inspect"
	"github.com/watchpost/watchpost/agent/internal/privtest"
)

// TestICSOpThroughTheAgent runs the whole agent with inspection on a
// Modbus server's port: a write from this process is in the agent's
// output as an urgent ics_op event of both ends, and health events report
// the inspection attached.
func TestICSOpThroughTheAgent(t *testing.T) {
	privtest.Require(t)
	srvExe := privtest.SelfCopy(t, "wp-modbus-server")
	srv, port := privtest.ModbusServer(t, srvExe, "127.0.0.1")
	cfg := config.Default()
	cfg.Host = "ics-gw"
	cfg.MetricsAddr = ""
	cfg.Commands.Dir = ""
	cfg.Baseline.Enabled = false
	cfg.Detection.Enabled = false
	cfg.Network.Inventory, cfg.Network.WatchInterfaces = false, false
	cfg.Kernel.Events = []string{"net_connect", "net_accept"}
	cfg.Industrial.Inspect = inspect.Config{Enabled: true, Interval: time.Hour,
		Protocols: []inspect.Protocol{{Name: "modbus", Ports: strconv.Itoa(port)}}}
	cfg.HealthInterval = time.Second
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
	c, err := modbus.NewClient(&modbus.ClientConfiguration{URL: "tcp://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Open(); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.WriteRegister(3, 99); err != nil {
		t.Fatal(err)
	}
	writes := map[string]*event.Event{}
	var health *event.Event
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline) && (len(writes) < 2 || health == nil); time.Sleep(50 * time.Millisecond) {
		for _, ev := range out.events(t) {
			switch {
			case ev.Kind == event.KindICSOp && ev.ICS.Urgent && ev.ICS.Code == 6:
				writes[ev.ICS.Role] = &ev
			case ev.Kind == event.KindHealth && ev.Health.Inspection != nil:
				health = &ev
			}
		}
	}
	for role, pid := range map[string]int{"client": os.Getpid(), "server": srv.Process.Pid} {
		ev := writes[role]
		if ev == nil {
			t.Fatalf("no urgent %s write in the agent's output", role)
		}
		if ev.Process.PID != uint32(pid) || ev.Host != "ics-gw" || ev.Industrial == nil || ev.Industrial.Protocol != "modbus" ||
			len(ev.ICS.Values) != 1 || ev.ICS.Values[0] != 99 || ev.ICS.Class != "write" {
			t.Errorf("%s write: %+v %+v %+v", role, ev.Process, ev.ICS, ev.Industrial)
		}
	}
	if health == nil || !health.Health.Inspection.Attached || health.Health.Inspection.Error != "" {
		t.Fatalf("health without the inspection attached: %+v", health)
	}
	if want := "modbus:" + strconv.Itoa(port); len(health.Health.Inspection.Ports) != 1 || health.Health.Inspection.Ports[0] != want {
		t.Errorf("inspected ports %v, want [%s]", health.Health.Inspection.Ports, want)
	}
}
