package fleet

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/watchpost/watchpost/collector/store"
	"github.com/watchpost/watchpost/collector/store/postgres"
	"github.com/watchpost/watchpost/internal/fleetsim"
	"github.com/watchpost/watchpost/internal/services"
	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

var (
	pgOnce sync.Once
	pg     *services.Postgres
	pgErr  error
	dbN    atomic.Int64
)

func TestMain(m *testing.M) {
	HelperMain()
	code := m.Run()
	if pg != nil {
		pg.Close()
	}
	os.Exit(code)
}

// sharedPostgres is one server for the package's tests (each gets its own database).
func sharedPostgres(t *testing.T) *services.Postgres {
	t.Helper()
	pgOnce.Do(func() { pg, pgErr = services.StartPostgres(context.Background(), "") })
	if pgErr != nil {
		if services.Required() {
			t.Fatal(pgErr)
		}
		t.Skipf("postgresql: %v", pgErr)
	}
	return pg
}

// startFleet starts PostgreSQL, a 3-node JetStream cluster, the collectors
// and writers, and the simulated agents (not yet generating).
func startFleet(t *testing.T, collectors, writers, agents int) (*Fleet, *fleetsim.Sim) {
	t.Helper()
	return startFleetOpt(t, testOptions{Options: Options{NATSNodes: 3, Collectors: collectors, Writers: writers, Agents: agents}})
}

type testOptions struct {
	Options
	agentsTo func(*Fleet) string // the agents' address list (default: every collector)
}

func startFleetOpt(t *testing.T, opt testOptions) (*Fleet, *fleetsim.Sim) {
	t.Helper()
	server := sharedPostgres(t)
	ctx := context.Background()
	t0 := time.Now()
	defer func() { t.Logf("fleet up in %v", time.Since(t0).Round(time.Millisecond)) }()
	opt.AckWait, opt.Postgres, opt.Database = 2*time.Second, server, fmt.Sprintf("fleet%d", dbN.Add(1))
	f, err := Start(ctx, opt.Options)
	if err != nil {
		if services.Required() {
			t.Fatal(err)
		}
		t.Skipf("fleet services: %v", err)
	}
	t.Cleanup(f.Close)
	addr := f.IngestAddrs()
	if opt.agentsTo != nil {
		addr = opt.agentsTo(f)
	}
	sim, err := fleetsim.New(fleetsim.Config{Agents: opt.Agents, Address: addr, PKIDir: f.PKI, Commands: true,
		BatchMaxEvents: 200, BatchMaxAge: 100 * time.Millisecond, HeartbeatInterval: time.Second, BackoffMax: time.Second,
		Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Shutdown(context.Background()) })
	return f, sim
}

// verifyExactlyOnce drains the agents and checks that every event each
// agent shipped was acknowledged and is stored exactly once.
func verifyExactlyOnce(t *testing.T, f *Fleet, sim *fleetsim.Sim) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	t0 := time.Now()
	if err := sim.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("drained in %v", time.Since(t0).Round(time.Millisecond))
	tot := sim.Totals()
	if tot.Dropped != 0 || tot.Acked != tot.Shipped {
		t.Fatalf("agents: shipped %d, acknowledged %d, dropped %d", tot.Shipped, tot.Acked, tot.Dropped)
	}
	st, err := postgres.Open(ctx, f.PGURL, postgres.Options{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	// The writers commit shortly after the collectors' acknowledgement.
	var stored int
	for {
		stored = 0
		hosts, err := st.Hosts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range hosts {
			stored += int(h.EventsStored)
		}
		if uint64(stored) >= tot.Acked || ctx.Err() != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("stored in %v", time.Since(t0).Round(time.Millisecond))
	total := 0
	for _, a := range sim.Agents() {
		res, err := st.Query(ctx, store.Query{Filter: store.Filter{AgentID: a.ID}, Limit: 10_000_000})
		evs, more := res.Events, res.Truncated
		if err != nil || more {
			t.Fatalf("query %s: %v (more %v)", a.ID, err, more)
		}
		seen := make(map[uint64]int, len(evs))
		for _, ev := range evs {
			seen[ev.Header.Seq]++
		}
		for seq := uint64(1); seq <= a.Shipped(); seq++ {
			if n := seen[seq]; n != 1 {
				t.Errorf("%s: event %d stored %d times", a.ID, seq, n)
				break
			}
		}
		if uint64(len(evs)) != a.Shipped() {
			t.Errorf("%s: %d events stored, %d shipped and acknowledged", a.ID, len(evs), a.Shipped())
		}
		total += len(evs)
	}
	if uint64(total) != tot.Acked || stored != total {
		t.Fatalf("stored %d events (registry %d), acknowledged %d", total, stored, tot.Acked)
	}
	t.Logf("%d events from %d agents acknowledged and stored exactly once (%d batches sent, %d resent, %d duplicates, %d reconnects)",
		total, len(sim.Agents()), tot.BatchesSent, tot.Resent, tot.Duplicates, tot.Reconnects)
}

// during generates events at rate for d, runs fault after half of it,
// then lets the fleet settle.
func during(t *testing.T, sim *fleetsim.Sim, rate float64, d time.Duration, fault func()) {
	t.Helper()
	sim.SetRate(rate)
	time.Sleep(d / 2)
	fault()
	time.Sleep(d / 2)
	sim.SetRate(0)
}

func TestFaultNATSNodeKilled(t *testing.T) {
	f, sim := startFleet(t, 2, 1, 20)
	during(t, sim, 200, 3*time.Second, func() {
		f.NATS.Kill(0)
		t.Log("killed nats node n1")
	})
	verifyExactlyOnce(t, f, sim)
}

func TestFaultWriterKilled(t *testing.T) {
	f, sim := startFleet(t, 2, 2, 20)
	during(t, sim, 200, 3*time.Second, func() {
		f.Writers[0].Kill()
		t.Log("killed writer 1 mid-batch")
	})
	// The other writer takes over; the killed one's unacknowledged
	// batches come back after ack_wait. Restarted, it resumes from the
	// durable consumer.
	if err := f.Writers[0].Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	verifyExactlyOnce(t, f, sim)
	// The killed writer held batches it had taken and not acknowledged:
	// JetStream delivered them again.
	nc, err := natsgo.Connect(strings.Join(f.NATS.URLs(), ","))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := js.Consumer(context.Background(), "WATCHPOST", "writers")
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// Every delivery takes a consumer sequence number, every message one
	// stream sequence number: the difference is the deliveries repeated.
	again := info.Delivered.Consumer - info.Delivered.Stream
	if again == 0 {
		t.Errorf("no batch was delivered again after the writer was killed: delivered %+v", info.Delivered)
	}
	t.Logf("consumer: %d of %d messages delivered again", again, info.Delivered.Stream)
}

func TestFaultPostgresRestarted(t *testing.T) {
	f, sim := startFleet(t, 2, 1, 20)
	during(t, sim, 200, 3*time.Second, func() {
		f.PG.Kill()
		t.Log("postgres stopped (immediate shutdown)")
		time.Sleep(time.Second)
		if err := f.PG.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Log("postgres started again")
	})
	verifyExactlyOnce(t, f, sim)
}

func TestFaultCollectorKilled(t *testing.T) {
	f, sim := startFleet(t, 2, 1, 20)
	during(t, sim, 200, 3*time.Second, func() {
		f.Collectors[0].Kill()
		t.Log("killed collector 1 with agents connected")
	})
	tot := sim.Totals()
	if tot.Reconnects == 0 {
		t.Errorf("no agent reconnected")
	}
	verifyExactlyOnce(t, f, sim)
	// The agents went on heartbeating to the other collector: none is
	// reported silent.
	st, err := postgres.Open(context.Background(), f.PGURL, postgres.Options{MaxConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	missed, err := st.Alerts(context.Background(), store.AlertFilter{Kinds: []watchpostv1.AlertKind{watchpostv1.AlertKind_ALERT_KIND_MISSED_HEARTBEAT}}, 100)
	if err != nil || len(missed) != 0 {
		t.Fatalf("missed-heartbeat alerts for agents that moved to the other collector: %v %v", missed, err)
	}
}

// TestFaultSiteLinkDown runs a plant's own JetStream node whose stream the
// central cluster sources over a leaf node connection. The central cluster
// goes away (the link is down, as far as the plant can tell) while the
// plant's collectors go on acknowledging; when it returns, sourcing
// resumes and every event is stored once.
func TestFaultSiteLinkDown(t *testing.T) {
	f, sim := startFleetOpt(t, testOptions{Options: Options{NATSNodes: 3, Collectors: 1, Writers: 1, Agents: 10, Site: "plant-a"}})
	during(t, sim, 200, 3*time.Second, func() {
		for i := range f.NATS.Nodes {
			f.NATS.Kill(i)
		}
		t.Log("central JetStream cluster down")
		time.Sleep(2 * time.Second)
		for i := range f.NATS.Nodes {
			if err := f.NATS.Start(context.Background(), i); err != nil {
				t.Fatal(err)
			}
		}
		t.Log("central JetStream cluster back")
	})
	verifyExactlyOnce(t, f, sim)
}

// TestFleetCommandFromAnyCollector issues a detection exception through
// one collector's API for an agent streaming to the other collector: the
// other collector hears of it through NATS and delivers it at once (well
// before its periodic sweep), and the agent's acknowledgement is stored.
// The agent's detection alerts, carried in its batches, reach the alert
// store through the queue and the writer.
func TestFleetCommandFromAnyCollector(t *testing.T) {
	f, sim := startFleetOpt(t, testOptions{Options: Options{NATSNodes: 1, Collectors: 2, Writers: 1, Agents: 2},
		agentsTo: func(f *Fleet) string { return f.Collectors[1].Ingest }})
	sim.SetRate(50)
	time.Sleep(time.Second) // connected, first heartbeats in
	body := `{"agent_id": "` + fleetsim.AgentID(0) + `", "exception": {"rules": ["wp-test-rule"], "exe": ["/usr/bin/python3.11"], "comment": "maintenance window"}}`
	resp, err := http.Post("http://"+f.Collectors[0].Query+"/api/v1/exceptions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("add exception on collector 1: %d %s", resp.StatusCode, out)
	}
	a := sim.Agents()[0]
	deadline := time.Now().Add(10 * time.Second)
	for len(a.Commands()) == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	cmds := a.Commands()
	if len(cmds) != 1 || cmds[0].GetAddException().GetComment() != "maintenance window" || cmds[0].GetAddException().GetRules()[0] != "wp-test-rule" {
		t.Fatalf("agent on collector 2 applied %v, want the exception issued on collector 1", cmds)
	}
	if other := sim.Agents()[1].Commands(); len(other) != 0 {
		t.Fatalf("the other agent got %v", other)
	}
	sim.ShipAlert(0)
	verifyExactlyOnce(t, f, sim)
	st, err := postgres.Open(context.Background(), f.PGURL, postgres.Options{MaxConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	as, err := st.Alerts(context.Background(), store.AlertFilter{Kinds: []watchpostv1.AlertKind{watchpostv1.AlertKind_ALERT_KIND_DETECTION}}, 10)
	if err != nil || len(as) != 1 || as[0].AgentId != fleetsim.AgentID(0) || as[0].GetDetection().GetRuleId() != "ot-fieldbus-shell" {
		t.Fatalf("detection alerts stored by the writer: %v %v", as, err)
	}
}
