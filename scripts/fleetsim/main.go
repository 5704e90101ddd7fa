// Command fleetsim runs N simulated gateways in one process against any
// collectors (internal/fleetsim: real shippers, gRPC over mutual TLS, one
// client certificate each, a realistic event mix at a set rate), prints
// the fleet's counters as it goes, and at the end drains every agent and
// prints the exact accounting: shipped = acknowledged + dropped.
//
//	go run ./scripts/fleetsim -pki /tmp/simpki -create -agents 1000      # a new PKI: give the collectors its server.pem, server-key.pem and ca.pem
//	go run ./scripts/fleetsim -pki /tmp/simpki -address c1:7443,c2:7443 -agents 1000 -rate 100 -duration 5m
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/watchpost/watchpost/internal/fleetsim"
)

func main() {
	pki := flag.String("pki", "", "directory with ca.pem and the agents' certificates (sim-00000 ...)")
	create := flag.Bool("create", false, "create the PKI in -pki (CA, collector certificate for -hosts, one certificate per agent) and exit")
	hosts := flag.String("hosts", "127.0.0.1,localhost", "with -create: the collectors' names and addresses")
	address := flag.String("address", "127.0.0.1:7443", "the collectors' ingest addresses, comma-separated")
	agents := flag.Int("agents", 100, "simulated agents")
	rate := flag.Float64("rate", 100, "events per second per agent")
	duration := flag.Duration("duration", time.Minute, "how long to send (Ctrl-C ends earlier)")
	flag.Parse()
	if err := run(*pki, *create, *hosts, *address, *agents, *rate, *duration); err != nil {
		fmt.Fprintln(os.Stderr, "fleetsim:", err)
		os.Exit(1)
	}
}

func run(pki string, create bool, hosts, address string, agents int, rate float64, duration time.Duration) error {
	if pki == "" {
		return fmt.Errorf("-pki: required")
	}
	if create {
		if err := fleetsim.WritePKI(pki, agents, strings.Split(hosts, ",")); err != nil {
			return err
		}
		fmt.Printf("wrote a CA, the collector's certificate (server.pem, for %s) and %d agent certificates to %s\n", hosts, agents, pki)
		return nil
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	sim, err := fleetsim.New(fleetsim.Config{Agents: agents, Address: address, PKIDir: pki, Rate: rate,
		Logger: zerolog.New(os.Stderr).Level(zerolog.ErrorLevel)})
	if err != nil {
		return err
	}
	if err := sim.Start(ctx); err != nil {
		return err
	}
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	end := time.After(duration)
	start, last := time.Now(), sim.Totals()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-end:
			break loop
		case <-t.C:
			now := sim.Totals()
			fmt.Printf("%6.0fs  shipped %d, acknowledged %d (%.0f/s), dropped %d, batches queued %d, reconnects %d\n",
				time.Since(start).Seconds(), now.Shipped, now.Acked, float64(now.Acked-last.Acked)/5, now.Dropped, now.Queued, now.Reconnects)
			last = now
		}
	}
	fmt.Println("draining: waiting for every batch to be acknowledged")
	dctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	derr := sim.Drain(dctx)
	tot := sim.Totals()
	fmt.Printf("shipped %d = acknowledged %d + dropped %d (+ %d unacknowledged); %d batches sent, %d resent, %d duplicates, %d reconnects\n",
		tot.Shipped, tot.Acked, tot.Dropped, tot.Shipped-tot.Acked-tot.Dropped, tot.BatchesSent, tot.Resent, tot.Duplicates, tot.Reconnects)
	if err := sim.Shutdown(context.Background()); err != nil && derr == nil {
		derr = err
	}
	return derr
}
