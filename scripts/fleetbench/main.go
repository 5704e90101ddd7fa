// Command fleetbench measures the fleet mode on one machine: simulated
// agents (internal/fleetsim, each a real shipper with its own certificate,
// gRPC over mutual TLS) send to collectors that queue in a 3-node JetStream
// cluster; store writers move the batches into PostgreSQL. Three phases:
//
//  1. ingest: agents -> collectors -> JetStream (no writer running), events
//     acknowledged per second and per CPU-second of the collectors and of
//     the NATS nodes;
//  2. store: the writer drains the backlog the first phase left in the
//     stream into PostgreSQL, events per second and per CPU-second of the
//     writer and of PostgreSQL;
//  3. queries while ingesting: the same load with the writer running, and a
//     loop of queries against a collector's HTTP API (latency per kind).
//
// At the end every acknowledged event must be stored exactly once. The
// report is markdown with a sizing table for a larger fleet derived from
// the measured per-core figures.
//
//	go build -o bin/ ./collector/cmd/... && go run ./scripts/fleetbench -agents 1000 -rate 40 -phase 30s -out docs/benchmarks-fleet.md
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/watchpost/watchpost/collector/store/postgres"
	"github.com/watchpost/watchpost/internal/fleet"
	"github.com/watchpost/watchpost/internal/fleetsim"
	"github.com/watchpost/watchpost/internal/services"
)

func main() {
	agents := flag.Int("agents", 1000, "simulated agents")
	rate := flag.Float64("rate", 40, "events per second per agent in the ingest and query phases")
	phase := flag.Duration("phase", 30*time.Second, "length of the ingest and query phases")
	collectors := flag.Int("collectors", 2, "collector processes")
	bin := flag.String("bin", "bin/watchpost-collector", "the watchpost-collector binary")
	out := flag.String("out", "", "write the markdown report here (stdout when empty)")
	target := flag.Float64("target", 1_000_000, "events per second of the fleet the sizing table is for")
	flag.Parse()
	if err := run(*agents, *rate, *phase, *collectors, *bin, *out, *target); err != nil {
		fmt.Fprintln(os.Stderr, "fleetbench:", err)
		os.Exit(1)
	}
}

type stage struct {
	name           string
	events         float64 // events processed in the phase
	seconds        float64
	cpu            map[string]float64 // CPU-seconds by component
	componentOrder []string
}

func (s stage) rate() float64 { return s.events / s.seconds }

type queryStat struct {
	name      string
	latencies []time.Duration
	errors    int
}

func run(nAgents int, rate float64, phase time.Duration, nCollectors int, bin, out string, target float64) error {
	ctx := context.Background()
	started := time.Now()
	logf := func(format string, args ...any) { fmt.Fprintf(os.Stderr, "fleetbench: "+format+"\n", args...) }
	logf("starting PostgreSQL, 3 nats-server nodes, %d collectors; PKI for %d agents", nCollectors, nAgents)
	f, err := fleet.Start(ctx, fleet.Options{NATSNodes: 3, Collectors: nCollectors, Writers: 1, Agents: nAgents, Binary: bin, DeferWriters: true})
	if err != nil {
		return err
	}
	defer f.Close()
	// The writer starts in phase 2; the schema is there from the start, as
	// in a deployment where writers ran before.
	schema, err := postgres.Open(ctx, f.PGURL, postgres.Options{MaxConns: 1})
	if err != nil {
		return err
	}
	_ = schema.Close()
	sim, err := fleetsim.New(fleetsim.Config{Agents: nAgents, Address: f.IngestAddrs(), PKIDir: f.PKI, Logger: zerolog.Nop(), Seed: 1})
	if err != nil {
		return err
	}
	if err := sim.Start(ctx); err != nil {
		return err
	}
	defer func() { _ = sim.Shutdown(context.Background()) }()
	nc, err := natsgo.Connect(strings.Join(f.NATS.URLs(), ","))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	collectorPids := func() []int {
		var p []int
		for _, c := range f.Collectors {
			p = append(p, c.Pid())
		}
		return p
	}
	// Let every agent connect (a heartbeat each) before measuring.
	time.Sleep(3 * time.Second)

	// 1. ingest into JetStream.
	logf("phase 1: %d agents x %.0f events/s for %s, no writer", nAgents, rate, phase)
	cpu0 := map[string]float64{"collectors": services.CPUSeconds(collectorPids()...), "nats (3 nodes)": services.CPUSeconds(f.NATS.Pids()...),
		"simulated agents": ownCPU()}
	acked0 := sim.Totals().Acked
	t0 := time.Now()
	sim.SetRate(rate)
	time.Sleep(phase)
	sim.SetRate(0)
	ingest := stage{name: "ingest: agents → collectors → JetStream (R3)", seconds: time.Since(t0).Seconds(),
		events: float64(sim.Totals().Acked - acked0), componentOrder: []string{"collectors", "nats (3 nodes)", "simulated agents"}}
	ingest.cpu = map[string]float64{"collectors": services.CPUSeconds(collectorPids()...) - cpu0["collectors"],
		"nats (3 nodes)": services.CPUSeconds(f.NATS.Pids()...) - cpu0["nats (3 nodes)"], "simulated agents": ownCPU() - cpu0["simulated agents"]}
	dctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	err = sim.Drain(dctx)
	cancel()
	if err != nil {
		return err
	}
	backlog := pending(ctx, js)
	backlogBytes, err := streamBytes(ctx, js)
	if err != nil {
		return err
	}
	logf("phase 1: %.0f events/s acknowledged; %d messages queued", ingest.rate(), backlog)

	// 2. the writer drains the backlog into PostgreSQL.
	stored0, err := storedEvents(ctx, f.PGURL)
	if err != nil {
		return err
	}
	w := f.Writers[0]
	cpuPG0 := services.CPUSeconds(f.PG.Pid())
	t0 = time.Now()
	if err := w.Start(ctx); err != nil {
		return err
	}
	cpuW0 := 0.0 // the writer's CPU is counted from its start
	waitUntil(func() bool { return pending(ctx, js) == 0 }, 30*time.Minute)
	stored1, err := storedEvents(ctx, f.PGURL)
	if err != nil {
		return err
	}
	store := stage{name: "store: JetStream → writer → PostgreSQL (COPY)", seconds: time.Since(t0).Seconds(), events: float64(stored1 - stored0),
		componentOrder: []string{"writer", "postgresql"}}
	store.cpu = map[string]float64{"writer": services.CPUSeconds(w.Pid()) - cpuW0, "postgresql": services.CPUSeconds(f.PG.Pid()) - cpuPG0}
	logf("phase 2: %.0f events/s stored", store.rate())

	// 3. queries while ingesting, writer running.
	logf("phase 3: the same load with the writer running, and queries")
	cpu0 = map[string]float64{"collectors": services.CPUSeconds(collectorPids()...), "nats (3 nodes)": services.CPUSeconds(f.NATS.Pids()...),
		"writer": services.CPUSeconds(w.Pid()), "postgresql": services.CPUSeconds(f.PG.Pid()), "simulated agents": ownCPU()}
	acked0 = sim.Totals().Acked
	t0 = time.Now()
	sim.SetRate(rate)
	qctx, qcancel := context.WithTimeout(ctx, phase)
	queries := runQueries(qctx, "http://"+f.Collectors[0].Query, nAgents)
	qcancel()
	sim.SetRate(0)
	mixed := stage{name: "ingest and store together, with queries", seconds: time.Since(t0).Seconds(), events: float64(sim.Totals().Acked - acked0),
		componentOrder: []string{"collectors", "nats (3 nodes)", "writer", "postgresql", "simulated agents"}}
	mixed.cpu = map[string]float64{"collectors": services.CPUSeconds(collectorPids()...) - cpu0["collectors"],
		"nats (3 nodes)": services.CPUSeconds(f.NATS.Pids()...) - cpu0["nats (3 nodes)"], "writer": services.CPUSeconds(w.Pid()) - cpu0["writer"],
		"postgresql": services.CPUSeconds(f.PG.Pid()) - cpu0["postgresql"], "simulated agents": ownCPU() - cpu0["simulated agents"]}

	// Exact accounting: everything acknowledged is stored once.
	dctx, cancel = context.WithTimeout(ctx, 10*time.Minute)
	err = sim.Drain(dctx)
	cancel()
	if err != nil {
		return err
	}
	waitUntil(func() bool { return pending(ctx, js) == 0 }, 10*time.Minute)
	tot := sim.Totals()
	var stored int64
	waitUntil(func() bool { stored, _ = storedEvents(ctx, f.PGURL); return uint64(stored) >= tot.Acked }, time.Minute)
	dbBytes, err := dbSize(ctx, f.PGURL)
	if err != nil {
		return err
	}
	logf("accounting: shipped %d, acknowledged %d, dropped %d, stored %d", tot.Shipped, tot.Acked, tot.Dropped, stored)
	r := report{agents: nAgents, rate: rate, phase: phase, collectors: nCollectors, stages: []stage{ingest, store, mixed}, queries: queries,
		shipped: tot.Shipped, acked: tot.Acked, dropped: tot.Dropped, stored: uint64(stored), dbBytes: dbBytes, streamBytes: backlogBytes,
		target: target, took: time.Since(started), started: started, backlog: backlog}
	w2 := io.Writer(os.Stdout)
	if out != "" {
		file, err := os.Create(out)
		if err != nil {
			return err
		}
		defer file.Close()
		w2 = file
	}
	r.render(w2)
	if uint64(stored) != tot.Acked {
		return fmt.Errorf("stored %d events, acknowledged %d", stored, tot.Acked)
	}
	return nil
}

func ownCPU() float64 { return services.CPUSeconds(os.Getpid()) }

func waitUntil(cond func() bool, limit time.Duration) {
	end := time.Now().Add(limit)
	for !cond() && time.Now().Before(end) {
		time.Sleep(200 * time.Millisecond)
	}
}

func pending(ctx context.Context, js jetstream.JetStream) uint64 {
	c, err := js.Consumer(ctx, "WATCHPOST", "writers")
	if err != nil {
		s, err := js.Stream(ctx, "WATCHPOST")
		if err != nil {
			return 1
		}
		info, err := s.Info(ctx)
		if err != nil {
			return 1
		}
		return info.State.Msgs
	}
	info, err := c.Info(ctx)
	if err != nil {
		return 1
	}
	return info.NumPending + uint64(info.NumAckPending)
}

func streamBytes(ctx context.Context, js jetstream.JetStream) (uint64, error) {
	s, err := js.Stream(ctx, "WATCHPOST")
	if err != nil {
		return 0, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.Bytes, nil
}

func storedEvents(ctx context.Context, url string) (int64, error) {
	var n int64
	err := withDB(ctx, url, func(c *pgx.Conn) error {
		return c.QueryRow(ctx, "SELECT COALESCE(sum(events_stored), 0)::bigint FROM agents").Scan(&n)
	})
	return n, err
}

func dbSize(ctx context.Context, url string) (int64, error) {
	var n int64
	err := withDB(ctx, url, func(c *pgx.Conn) error {
		return c.QueryRow(ctx, "SELECT pg_database_size(current_database())").Scan(&n)
	})
	return n, err
}

func withDB(ctx context.Context, url string, f func(*pgx.Conn) error) error {
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	return f(c)
}

// runQueries asks a collector's HTTP API in a loop until ctx ends: the
// kinds an analyst runs during an investigation.
func runQueries(ctx context.Context, base string, agents int) []*queryStat {
	kinds := []struct {
		name string
		q    func(i int) url.Values
	}{
		{"one host, last 5 min", func(i int) url.Values {
			return url.Values{"host": {"gw-" + fleetsim.AgentID(i%agents)}, "since": {"5m"}}
		}},
		{"exec events, all hosts, last 5 min", func(int) url.Values { return url.Values{"type": {"exec"}, "since": {"5m"}} }},
		{"Modbus connects of one host", func(i int) url.Values {
			return url.Values{"host": {"gw-" + fleetsim.AgentID((i*7)%agents)}, "protocol": {"modbus"}}
		}},
		{"path prefix, all hosts, last 5 min", func(int) url.Values {
			return url.Values{"path": {"/etc/"}, "since": {"5m"}}
		}},
		{"host list", nil},
	}
	stats := make([]*queryStat, len(kinds))
	for i, k := range kinds {
		stats[i] = &queryStat{name: k.name}
	}
	client := &http.Client{Timeout: 30 * time.Second}
	for i := 0; ctx.Err() == nil; i++ {
		k := i % len(kinds)
		u := base + "/api/v1/hosts"
		if kinds[k].q != nil {
			v := kinds[k].q(i)
			v.Set("limit", "100")
			u = base + "/api/v1/events?" + v.Encode()
		}
		t := time.Now()
		resp, err := client.Get(u)
		if err == nil {
			var body map[string]any
			err = json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			if err == nil && resp.StatusCode != 200 {
				err = fmt.Errorf("status %d", resp.StatusCode)
			}
		}
		if err != nil {
			stats[k].errors++
			continue
		}
		stats[k].latencies = append(stats[k].latencies, time.Since(t))
		time.Sleep(100 * time.Millisecond)
	}
	return stats
}

type report struct {
	agents, collectors           int
	rate                         float64
	phase, took                  time.Duration
	started                      time.Time
	stages                       []stage
	queries                      []*queryStat
	shipped, acked, dropped      uint64
	stored, backlog, streamBytes uint64
	dbBytes                      int64
	target                       float64
}

func machine() string {
	model := "unknown"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				model = strings.TrimSpace(l[strings.IndexByte(l, ':')+1:])
				break
			}
		}
	}
	load := ""
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		load = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	kernel, _ := exec.Command("uname", "-r").Output()
	return fmt.Sprintf("%d CPUs (%s), kernel %s, %s; load average at the end %s", runtime.NumCPU(), model,
		strings.TrimSpace(string(kernel)), runtime.Version(), load)
}

func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

func (r report) render(w io.Writer) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	p("# Fleet benchmark\n\n")
	p("Generated by `scripts/fleetbench` on %s; the run took %s. Machine: %s.\n\n", r.started.UTC().Format("2006-01-02 15:04 UTC"), r.took.Round(time.Second), machine())
	p("```sh\nmake build && go run ./scripts/fleetbench -agents %d -rate %.0f -phase %s -collectors %d -out docs/benchmarks-fleet.md\n```\n\n",
		r.agents, r.rate, r.phase, r.collectors)
	p("Everything runs on this one machine: PostgreSQL 15, a 3-node JetStream cluster (nats-server %s, stream R3, file storage, S2 compression), "+
		"%d collectors and one store writer as processes, and %d simulated agents in the benchmark's process (each a real shipper: batches of up to "+
		"1000 events or 1 s, zstd, its own client certificate, gRPC over mutual TLS; the event mix of internal/fleetsim, ~%d bytes per event "+
		"stored). Per-core figures are events divided by the CPU-seconds (user + system, from /proc) the component used in the phase, so they "+
		"hold whatever else shared the two cores; the simulated agents' own CPU is listed too.\n\n",
		services.NATSServerVersion, r.collectors, r.agents, r.dbBytes/int64(max(r.stored, 1)))
	p("| stage | events | seconds | events/s | component | CPU-seconds | cores used | events/s per core |\n|---|---|---|---|---|---|---|---|\n")
	for _, s := range r.stages {
		for i, c := range s.componentOrder {
			name, ev, sec, rt := "", "", "", ""
			if i == 0 {
				name, ev, sec, rt = s.name, fmt.Sprintf("%.0f", s.events), fmt.Sprintf("%.1f", s.seconds), fmt.Sprintf("**%.0f**", s.rate())
			}
			cpu := s.cpu[c]
			per := "—"
			if cpu > 0 {
				per = fmt.Sprintf("**%.0f**", s.events/cpu)
			}
			p("| %s | %s | %s | %s | %s | %.1f | %.2f | %s |\n", name, ev, sec, rt, c, cpu, cpu/s.seconds, per)
		}
	}
	p("\nPhase 1 left %d messages in the stream for phase 2. Exact accounting over the run: %d events shipped, %d acknowledged, "+
		"%d dropped, **%d stored** (each once: the batch key is unique).\n\n", r.backlog, r.shipped, r.acked, r.dropped, r.stored)
	p("Queries while ingesting (phase 3, HTTP API of one collector, limit 100, one query every 100 ms):\n\n")
	p("| query | queries | p50 ms | p95 ms | max ms | errors |\n|---|---|---|---|---|---|\n")
	for _, q := range r.queries {
		p("| %s | %d | %.1f | %.1f | %.1f | %d |\n", q.name, len(q.latencies), ms(pct(q.latencies, 0.5)), ms(pct(q.latencies, 0.95)),
			ms(pct(q.latencies, 1)), q.errors)
	}
	r.sizing(p)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// sizing derives a deployment for target events/s from the per-core
// figures: each component at most 50% busy (room for bursts, a node
// lost, the backlog after an outage).
func (r report) sizing(p func(string, ...any)) {
	per := func(s stage, c string) float64 { return s.events / max(s.cpu[c], 1e-9) }
	ing, st := r.stages[0], r.stages[1]
	coll, nats, wr, pg := per(ing, "collectors"), per(ing, "nats (3 nodes)"), per(st, "writer"), per(st, "postgresql")
	bytesPerEvent := float64(r.dbBytes) / float64(max(r.stored, 1))
	const headroom = 0.5
	cores := func(perCore float64) float64 { return r.target / perCore / headroom }
	day := r.target * 86400
	p("\n## Sizing for %.0f events/s (10,000 gateways at 100 events/s)\n\n", r.target)
	p("Derived from the per-core figures above (phases 1 and 2), with every component at most %.0f%% busy so that a burst, the loss of a "+
		"node or the backlog after an outage still fit. Assumptions: the per-core rates measured here scale linearly with cores and "+
		"nodes (the components share nothing but the stream and the database: collectors are stateless, writers share one durable "+
		"consumer); the event mix and batch sizes are those of the simulator (agents batching up to 1000 events or 1 s); JetStream runs R3, "+
		"so the NATS figure already pays for three copies; PostgreSQL is one primary with the measured COPY cost per event, and "+
		"queries are a small share of its work.\n\n", headroom*100)
	p("| component | per core (measured) | cores at %.0f%% | deployment |\n|---|---|---|---|\n", headroom*100)
	// row sizes a scaled-out component: nodes of perNode cores, at least two (one may fail).
	row := func(name string, perCore float64, note string, perNode int) {
		c := cores(perCore)
		nodes := max(int(math.Ceil(c/float64(perNode))), 2)
		p("| %s | %.0f events/s | %.0f | %d nodes × %d cores%s |\n", name, perCore, c, nodes, perNode, note)
	}
	// node sizes a component of a fixed number of nodes: cores per node in
	// multiples of 4.
	node := func(c float64, nodes int) int { return int(math.Ceil(c/float64(nodes)/4)) * 4 }
	row("collectors (ingest, validation, publish)", coll, "", 8)
	c := cores(nats)
	p("| NATS JetStream (3 replicas included) | %.0f events/s | %.0f | 3 nodes × %d cores (one R3 cluster; beyond what one stream leader takes, one stream per region or site group) |\n",
		nats, c, node(c, 3))
	row("store writers", wr, "", 8)
	c = cores(pg)
	p("| PostgreSQL (COPY, the batch index, WAL) | %.0f events/s | %.0f | one primary × %d cores, and a standby of the same size for failover (writes do not spread over standbys; beyond one primary, sites split over several databases) |\n",
		pg, c, node(c, 1))
	jsPerEvent := float64(r.streamBytes) / max(ing.events, 1)
	p("\nStorage: %.0f bytes per event in PostgreSQL (data, the batch_id index, batch summaries, WAL not counted) → %.1f TB per day at %.0f events/s, "+
		"%.0f TB for 30 days of retention. JetStream holds only what the writers have not stored yet: %.0f bytes per event in the stream "+
		"(as the stream reports it, per replica), so an hour of writer or database outage at %.0f events/s is %.0f GB per replica; "+
		"size nats.max_bytes for the longest outage to ride out (when it is full, collectors answer RETRY and the agents' spools hold the rest). "+
		"At this rate retention, not CPU, sizes the database: filter at the agents what nobody will query, and keep days rather than months online.\n",
		bytesPerEvent, bytesPerEvent*day/1e12, r.target, 30*bytesPerEvent*day/1e12, jsPerEvent, r.target, r.target*3600*jsPerEvent/1e9)
}
