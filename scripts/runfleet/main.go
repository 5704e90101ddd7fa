// Command runfleet is `make run-fleet`: the fleet mode on loopback, with
// no root and no kernel needed. It starts PostgreSQL, a 3-node JetStream
// cluster, two collectors and a store writer (bin/watchpost-collector), and
// a few simulated agents sending a realistic event mix; it prints where the
// query API, the dashboards and the daemons are, and writes an agent
// configuration for a real agent to join. Ctrl-C stops everything it
// started and removes its directory.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/watchpost/watchpost/collector/certs"
	"github.com/watchpost/watchpost/internal/fleet"
	"github.com/watchpost/watchpost/internal/fleetsim"
)

func main() {
	agents := flag.Int("agents", 5, "simulated agents")
	rate := flag.Float64("rate", 50, "events per second per simulated agent")
	bin := flag.String("bin", "bin/watchpost-collector", "the watchpost-collector binary")
	flag.Parse()
	if err := run(*agents, *rate, *bin); err != nil {
		fmt.Fprintln(os.Stderr, "run-fleet:", err)
		os.Exit(1)
	}
}

func run(agents int, rate float64, bin string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fmt.Println("run-fleet: starting PostgreSQL, 3 nats-server nodes, 2 collectors and a writer on loopback ...")
	// One certificate more than simulated agents: fleetsim.AgentID(agents) is for a real agent.
	f, err := fleet.Start(ctx, fleet.Options{NATSNodes: 3, Collectors: 2, Writers: 1, Agents: agents + 1, Binary: bin,
		AckWait: 30 * time.Second, Output: os.Stderr})
	if err != nil {
		return err
	}
	defer f.Close()
	sim, err := fleetsim.New(fleetsim.Config{Agents: agents, Address: f.IngestAddrs(), PKIDir: f.PKI, Rate: rate,
		Logger: zerolog.New(os.Stderr).Level(zerolog.WarnLevel)})
	if err != nil {
		return err
	}
	if err := sim.Start(ctx); err != nil {
		return err
	}
	defer func() { _ = sim.Shutdown(context.Background()) }()
	real := fleetsim.AgentID(agents)
	cert, key := certs.AgentFiles(real)
	agentConf := filepath.Join(filepath.Dir(f.PKI), "agent.yaml")
	conf := fmt.Sprintf("output: collector\nhost: %s\ncollector:\n  address: %s\n  agent_id: %s\n  ca: %s\n  cert: %s\n  key: %s\nspool:\n  dir: %s\n",
		real, f.IngestAddrs(), real, filepath.Join(f.PKI, certs.CAFile), filepath.Join(f.PKI, cert), filepath.Join(f.PKI, key),
		filepath.Join(filepath.Dir(f.PKI), "spool"))
	if err := os.WriteFile(agentConf, []byte(conf), 0o600); err != nil {
		return err
	}
	fmt.Printf(`
run-fleet: %d simulated agents at %.0f events/s each, sending to both collectors.

  collectors (agents' address list)  %s
  query API / dashboard              http://%s/ui/   http://%s/ui/
  store writer metrics               http://%s/metrics
  PostgreSQL                         %s
  NATS JetStream (stream WATCHPOST)  %v

  bin/watchpost --server %s hosts
  bin/watchpost --server %s events --type exec --since 5m
  psql '%s' -c 'SELECT agent_id, events_stored FROM agents'
  sudo bin/watchpost-agent --config %s     # a real agent on this host joins the fleet

Ctrl-C stops everything.
`, agents, rate, f.IngestAddrs(), f.Collectors[0].Query, f.Collectors[1].Query, f.Writers[0].Metrics, f.PGURL, f.NATS.URLs(),
		f.Collectors[0].Query, f.Collectors[1].Query, f.PGURL, agentConf)
	<-ctx.Done()
	fmt.Println("\nrun-fleet: stopping")
	return nil
}
