package collector_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/watchpost/watchpost/agent/event"
	"github.com/watchpost/watchpost/agent/shipper"
	"github.com/watchpost/watchpost/collector"
	"github.com/watchpost/watchpost/collector/certs"
	"github.com/watchpost/watchpost/collector/store"
)

func newShipper(t *testing.T, p pki, addr string) *shipper.Shipper {
	t.Helper()
	cert, key := certs.AgentFiles("agent-a")
	s, err := shipper.New(shipper.Config{
		Address: addr, AgentID: "agent-a", Host: "gw-1", BootID: "boot-1",
		CAFile: p.file(certs.CAFile), CertFile: filepath.Join(p.dir, cert), KeyFile: filepath.Join(p.dir, key),
		BatchMaxEvents: 100, BatchMaxAge: 20 * time.Millisecond, Window: 4,
		BackoffInitial: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond,
		HeartbeatInterval: 50 * time.Millisecond,
	}, shipper.Deps{Logger: zerolog.Nop(), Health: func() event.Health {
		return event.Health{Version: "1.2.3", Kernel: "6.1.0", CapturePath: "ringbuf", Programs: []string{"exec", "exit"}, Produced: 42}
	}})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestShipperReconnectsAndDeliversExactlyOnce restarts the collector while
// the shipper is sending and checks every event is stored exactly once.
func TestShipperReconnectsAndDeliversExactlyOnce(t *testing.T) {
	p := newPKI(t)
	dataDir := t.TempDir()
	cfg := testConfig(t, p, dataDir)
	c1, err := collector.New(cfg, collector.Deps{Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	if err := c1.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	addr := c1.Addr()
	s := newShipper(t, p, addr)
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	const total = 3000
	ship := func(from, to int) {
		for i := from; i < to; i++ {
			s.Ship(testEvent(i, ""))
			if i%200 == 0 {
				time.Sleep(time.Millisecond) // stay below the 16384-event queue
			}
		}
	}
	ship(0, 1000)
	waitFor(t, "first events acknowledged", func() bool { return s.Stats().EventsAcked >= 500 })
	ship(1000, 2000)
	if err := c1.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	ship(2000, 2500) // while the collector is down
	cfg.Ingest.Listen = addr
	c2 := startCollector(t, cfg)
	ship(2500, total)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "all events acknowledged", func() bool { return s.Stats().EventsAcked == total })
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Shutdown(ctx); err != nil { // idempotent
		t.Fatal(err)
	}
	st := s.Stats()
	if st.Accepted != total || st.EventsAcked != total || st.QueuedBatches != 0 || st.Reconnects == 0 {
		t.Fatalf("shipper stats %+v: want %d accepted and acked, nothing queued, at least one reconnect", st, total)
	}
	for reason, n := range st.Dropped {
		if n != 0 {
			t.Errorf("dropped %d events (%s), want 0", n, reason)
		}
	}
	res, err := c2.Store().Query(context.Background(), store.Query{Filter: store.Filter{AgentID: "agent-a"}, Limit: 10 * total})
	if err != nil {
		t.Fatal(err)
	}
	evs := res.Events
	if len(evs) != total {
		t.Fatalf("stored %d events, want %d", len(evs), total)
	}
	seen := make(map[uint64]bool, total)
	for _, ev := range evs {
		if seen[ev.Header.Seq] {
			t.Fatalf("event seq %d stored twice", ev.Header.Seq)
		}
		seen[ev.Header.Seq] = true
		// The host shown is the certificate's identity; the agent's own name is kept as claimed.
		if ev.Header.Host != "agent-a" || ev.Header.ClaimedHost != "gw-1" || ev.Header.AgentId != "agent-a" || ev.Header.BootId != "boot-1" {
			t.Fatalf("header %v: want host agent-a claimed gw-1, agent-a, boot-1", ev.Header)
		}
	}
	hosts, err := c2.Store().Hosts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(hosts) != 1 || hosts[0].AgentId != "agent-a" || hosts[0].Host != "agent-a" || hosts[0].ClaimedHost != "gw-1" || hosts[0].Version != "1.2.3" ||
		hosts[0].Kernel != "6.1.0" || hosts[0].CapturePath != "ringbuf" || hosts[0].Produced != 42 || hosts[0].EventsStored != total {
		t.Fatalf("hosts = %v", hosts)
	}
}

// TestShipperDropsAndCountsWhenFull never blocks the caller: with no
// collector, the batch queue fills and further events are counted.
func TestShipperDropsAndCountsWhenFull(t *testing.T) {
	p := newPKI(t)
	cert, key := certs.AgentFiles("agent-a")
	s, err := shipper.New(shipper.Config{
		Address: "127.0.0.1:1", AgentID: "agent-a", Host: "gw-1", BootID: "boot-1",
		CAFile: p.file(certs.CAFile), CertFile: filepath.Join(p.dir, cert), KeyFile: filepath.Join(p.dir, key),
		BatchMaxEvents: 10, Window: 2, MaxQueuedBatches: 3, QueueEvents: 1000,
	}, shipper.Deps{Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		s.Ship(testEvent(i, "gw-1"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	short, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	_ = s.Shutdown(short) // nothing can be acknowledged
	s.Ship(testEvent(100, "gw-1"))
	st := s.Stats()
	// Three batches fit; then the queue is full: exits and file events are
	// shed (spool_full) before they are batched, and the batches of what
	// remains do not fit (batch_queue_full). No gap marker fits either.
	if st.Received != 101 || st.Accepted != 100 || st.BatchesSealed != 7 || st.Dropped[shipper.DropSpoolFull] != 30 ||
		st.Dropped[shipper.DropBatchQueueFull] != 40 || st.Dropped[shipper.DropShutdown] != 31 || st.EventsAcked != 0 || st.Injected != 0 {
		t.Fatalf("stats %+v: want 101 received, 100 accepted, 7 sealed, 30 shed, 40 dropped batch_queue_full, 30+1 dropped shutdown", st)
	}
}
