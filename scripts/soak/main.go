// Command wpsoak is the agent side of scripts/soak.sh: the real shipper and
// disk spool, fed synthetic events at a fixed rate, sending to a real
// collector. Every interval it prints one tab-separated line of counters
// and its own RSS and CPU time; at the end, a summary line.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/watchpost/watchpost/agent/event"
	"github.com/watchpost/watchpost/agent/shipper"
	"github.com/watchpost/watchpost/agent/spool"
	"github.com/watchpost/watchpost/collector/certs"
)

func main() {
	addr := flag.String("collector", "127.0.0.1:7443", "collector ingest address")
	pki := flag.String("pki", "", "directory made by watchpost-collector certs (agent soak-agent)")
	spoolDir := flag.String("spool", "", "spool directory")
	rate := flag.Int("rate", 2000, "events per second")
	duration := flag.Duration("duration", 10*time.Minute, "how long to produce")
	interval := flag.Duration("interval", 30*time.Second, "reporting interval")
	flag.Parse()
	if err := run(*addr, *pki, *spoolDir, *rate, *duration, *interval); err != nil {
		fmt.Fprintln(os.Stderr, "wpsoak:", err)
		os.Exit(1)
	}
}

func run(addr, pki, spoolDir string, rate int, duration, interval time.Duration) error {
	log := zerolog.New(os.Stderr).Level(zerolog.WarnLevel).With().Timestamp().Logger()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	sp, err := spool.New(spool.Config{Dir: spoolDir}, log)
	if err != nil {
		return err
	}
	if err := sp.Start(ctx); err != nil {
		return err
	}
	defer sp.Shutdown(context.Background())
	cert, key := certs.AgentFiles("soak-agent")
	sh, err := shipper.New(shipper.Config{
		Address: addr, AgentID: "soak-agent", Host: "soak-gw",
		CAFile: filepath.Join(pki, certs.CAFile), CertFile: filepath.Join(pki, cert), KeyFile: filepath.Join(pki, key),
	}, shipper.Deps{Logger: log, Queue: sp})
	if err != nil {
		return err
	}
	if err := sh.Start(ctx); err != nil {
		return err
	}
	fmt.Println("elapsed_s\tproduced\tacked\tdropped\tspool_bytes\tagent_rss_kib\tagent_cpu_s")
	report := func(start time.Time, produced uint64) {
		st := sh.Stats()
		var dropped uint64
		for _, n := range st.Dropped {
			dropped += n
		}
		rss, cpu := self()
		fmt.Printf("%.0f\t%d\t%d\t%d\t%d\t%d\t%.2f\n", time.Since(start).Seconds(), produced, st.EventsAcked, dropped, st.QueuedBytes, rss, cpu)
	}
	start := time.Now()
	next := start.Add(interval)
	var produced uint64
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	perTick := float64(rate) / 100
	var owed float64
produce:
	for time.Since(start) < duration {
		select {
		case <-ctx.Done():
			break produce
		case <-tick.C:
		}
		for owed += perTick; owed >= 1; owed-- {
			produced++
			sh.Ship(synthetic(produced))
		}
		if time.Now().After(next) {
			report(start, produced)
			next = next.Add(interval)
		}
	}
	// Drain what is left, then stop cleanly.
	dctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_ = sh.Flush(dctx)
	for sh.Stats().QueuedBatches > 0 && dctx.Err() == nil {
		time.Sleep(50 * time.Millisecond)
	}
	report(start, produced)
	_ = sh.Shutdown(dctx)
	st := sh.Stats()
	fmt.Printf("summary\tproduced=%d\tacked=%d\tinjected=%d\tdropped=%v\n", produced, st.EventsAcked, st.Injected, st.Dropped)
	return nil
}

// synthetic is a plausible gateway event: mostly file reads and writes,
// some connections to a PLC and process starts.
func synthetic(seq uint64) *event.Event {
	ev := &event.Event{Time: time.Now(), Seq: seq, Host: "soak-gw",
		Process: event.Process{PID: uint32(2000 + seq%300), PPID: 1, Comm: "historian", Exe: "/opt/historian/bin/historian",
			Args: []string{"historian", "--db", "/var/lib/historian"}}}
	switch seq % 10 {
	case 0:
		ev.Kind = event.KindExec
		ev.Exec = &event.Exec{Argc: 3, ExeInode: seq % 4096}
	case 1, 2:
		ev.Kind = event.KindNetConnect
		ev.Net = &event.Net{Family: "inet", Protocol: "tcp", SrcAddr: "10.1.0.5", SrcPort: uint16(30000 + seq%20000), DstAddr: "10.1.0.20", DstPort: 502}
		ev.Industrial = &event.Industrial{Protocol: "modbus"}
	default:
		ev.Kind = event.KindFileOpen
		ev.File = &event.File{Path: "/var/lib/historian/tag-" + strconv.FormatUint(seq%5000, 10) + ".dat", Write: seq%3 == 0, Result: 5}
	}
	return ev
}

// self returns this process's RSS (KiB) and CPU time (s) from /proc.
func self() (int64, float64) {
	var rss int64
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
				rss, _ = strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			}
		}
	}
	var cpu float64
	if b, err := os.ReadFile("/proc/self/stat"); err == nil {
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		ut, _ := strconv.ParseFloat(f[11], 64)
		st, _ := strconv.ParseFloat(f[12], 64)
		cpu = (ut + st) / 100 // USER_HZ
	}
	return rss, cpu
}
