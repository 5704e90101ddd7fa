package spool_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/watchpost/watchpost/agent/event"
	"github.com/watchpost/watchpost/agent/shipper"
	"github.com/watchpost/watchpost/agent/spool"
	"github.com/watchpost/watchpost/collector"
	"github.com/watchpost/watchpost/collector/certs"
)

// The fault tests run the agent side (shipper + spool) and sometimes the
// collector in helper processes: the test binary re-executed with
// WP_FAULT_HELPER set, so that they can be killed with real signals.
const helperEnv = "WP_FAULT_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "agent":
		os.Exit(agentHelper())
	case "collector":
		os.Exit(collectorHelper())
	}
	os.Exit(m.Run())
}

// agentSpec describes one run of the agent helper.
type agentSpec struct {
	Addr, PKI, Spool string
	SpoolMax         int64
	Events           int     // to produce in this run
	Rate             int     // events per second
	FirstSeq         uint64  // of the first event of this run
	Produced         string  // file counting produced events (the "kernel" counter)
	Drain            bool    // wait until everything is acknowledged before a clean stop
	DrainRate        int     // backlog bytes per second
	Mix              string  // "mixed" (four kinds) or "tiers" (spool-full test)
	BulkAt, ShedAt   float64 // shipper shed thresholds (0: defaults)
}

// result is what the agent helper prints when it stops cleanly.
type result struct {
	Stats shipper.Stats
	Spool spool.Stats
}

// mapCounter maps an 8-byte counter file shared between the helper and the
// test: it survives the helper's SIGKILL.
func mapCounter(path string) (*atomic.Uint64, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := f.Truncate(4096); err != nil {
		return nil, err
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, err
	}
	return (*atomic.Uint64)(unsafe.Pointer(&mem[0])), nil
}

// synth is event seq of a deterministic mix.
func synth(seq uint64, mix string) *event.Event {
	ev := &event.Event{
		Time: time.Now(), Seq: seq, Host: "gw-fault", BootNS: seq,
		Process: event.Process{PID: uint32(1000 + seq%50), PPID: 1, Comm: "plcd", Exe: "/usr/sbin/plcd", Args: []string{"plcd", "-c", "/etc/plcd.conf"}},
	}
	n := 4
	if mix == "tiers" {
		n = 3
	}
	switch seq % uint64(n) {
	case 0:
		ev.Kind = event.KindExec
		ev.Exec = &event.Exec{Argc: 3, ExeInode: seq}
	case 1:
		ev.Kind = event.KindFileOpen // a read: bulk
		ev.File = &event.File{Path: fmt.Sprintf("/var/lib/plc/data-%d.csv", seq), Result: 3}
	case 2:
		ev.Kind = event.KindFileOpen // a write: normal
		ev.File = &event.File{Path: fmt.Sprintf("/var/lib/plc/project-%d.st", seq), Write: true, Result: 3}
	case 3:
		ev.Kind = event.KindNetConnect // industrial: critical
		ev.Net = &event.Net{Family: "inet", Protocol: "tcp", DstAddr: "10.0.0.9", DstPort: 502, SrcPort: uint16(40000 + seq%1000)}
		ev.Industrial = &event.Industrial{Protocol: "modbus"}
	}
	return ev
}

func agentHelper() int {
	var spec agentSpec
	if err := json.Unmarshal([]byte(os.Getenv("WP_AGENT_SPEC")), &spec); err != nil {
		fmt.Fprintln(os.Stderr, "agent helper: spec:", err)
		return 2
	}
	log := zerolog.New(os.Stderr).With().Timestamp().Logger()
	produced, err := mapCounter(spec.Produced)
	if err != nil {
		log.Error().Err(err).Msg("produced counter")
		return 2
	}
	sp, err := spool.New(spool.Config{Dir: spec.Spool, MaxBytes: spec.SpoolMax, FsyncInterval: 100 * time.Millisecond}, log)
	if err != nil {
		log.Error().Err(err).Msg("spool")
		return 2
	}
	ctx := context.Background()
	if err := sp.Start(ctx); err != nil {
		log.Error().Err(err).Msg("spool start")
		return 2
	}
	cert, key := certs.AgentFiles("agent-a")
	sh, err := shipper.New(shipper.Config{
		Address: spec.Addr, AgentID: "agent-a", Host: "gw-fault", BootID: "boot-1",
		CAFile: filepath.Join(spec.PKI, certs.CAFile), CertFile: filepath.Join(spec.PKI, cert), KeyFile: filepath.Join(spec.PKI, key),
		BatchMaxEvents: 200, BatchMaxAge: 50 * time.Millisecond, Window: 8,
		BackoffInitial: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond, HeartbeatInterval: 100 * time.Millisecond,
		DrainBytesPerSecond: spec.DrainRate, ShedBulkAt: spec.BulkAt, ShedAt: spec.ShedAt,
	}, shipper.Deps{Logger: log, Queue: sp, Health: func() event.Health {
		return event.Health{Version: "fault", Kernel: "6.1", CapturePath: "ringbuf", Programs: []string{"exec", "exit", "openat"}, Produced: produced.Load()}
	}})
	if err != nil {
		log.Error().Err(err).Msg("shipper")
		return 2
	}
	if err := sh.Start(ctx); err != nil {
		log.Error().Err(err).Msg("shipper start")
		return 2
	}
	// Produce at the given rate, in steps of 10ms.
	start := time.Now()
	for i := 0; i < spec.Events; i++ {
		if due := start.Add(time.Duration(i) * time.Second / time.Duration(spec.Rate)); time.Until(due) > 0 {
			time.Sleep(time.Until(due))
		}
		produced.Add(1) // before Ship: the kernel counts what it hands over
		sh.Ship(synth(spec.FirstSeq+uint64(i), spec.Mix))
	}
	fmt.Println("produced")
	if spec.Drain {
		fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_ = sh.Flush(fctx)
		cancel()
		for sh.Stats().QueuedBatches > 0 || sh.Stats().PendingGap > 0 {
			time.Sleep(10 * time.Millisecond)
		}
	}
	// A clean stop, or SIGTERM from the test while waiting.
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if !spec.Drain {
		sctx, cancel = context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
	}
	_ = sh.Shutdown(sctx)
	_ = sp.Shutdown(ctx)
	b, _ := json.Marshal(result{Stats: sh.Stats(), Spool: sp.Stats()})
	fmt.Println("result " + string(b))
	return 0
}

func collectorHelper() int {
	log := zerolog.New(os.Stderr).With().Timestamp().Logger()
	cfg := collectorConfig(os.Getenv("WP_PKI"), os.Getenv("WP_DATA"), os.Getenv("WP_INGEST"))
	c, err := collector.New(cfg, collector.Deps{Logger: log})
	if err != nil {
		log.Error().Err(err).Msg("collector")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if err := c.Start(ctx); err != nil {
		log.Error().Err(err).Msg("collector start")
		return 2
	}
	fmt.Println("ready " + c.Addr())
	<-ctx.Done()
	_ = c.Shutdown(context.Background())
	return 0
}

func collectorConfig(pki, data, ingest string) collector.Config {
	cfg := collector.DefaultConfig()
	cfg.DataDir = data
	cfg.Ingest.Listen = ingest
	cfg.Ingest.CertFile = filepath.Join(pki, certs.ServerFile)
	cfg.Ingest.KeyFile = filepath.Join(pki, certs.ServerKeyFile)
	cfg.Ingest.ClientCAFile = filepath.Join(pki, certs.CAFile)
	cfg.Query.Listen = "127.0.0.1:0"
	cfg.ShutdownTimeout = 5 * time.Second
	return cfg
}

// proc is a running helper process.
type proc struct {
	cmd   *exec.Cmd
	lines chan string
	done  chan struct{}
}

func startHelper(t *testing.T, mode string, env ...string) *proc {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), helperEnv+"="+mode), env...)
	cmd.Stderr = &testLog{t: t, prefix: mode}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, lines: make(chan string, 16), done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		_ = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
	})
	return p
}

// line waits for the next stdout line starting with prefix.
func (p *proc) line(t *testing.T, prefix string, within time.Duration) string {
	t.Helper()
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	for {
		select {
		case l := <-p.lines:
			if rest, ok := strings.CutPrefix(l, prefix); ok {
				return strings.TrimSpace(rest)
			}
		case <-p.done:
			select {
			case l := <-p.lines:
				if rest, ok := strings.CutPrefix(l, prefix); ok {
					return strings.TrimSpace(rest)
				}
			default:
			}
			t.Fatalf("helper exited (%v) before printing %q", p.cmd.ProcessState, prefix)
		case <-deadline.C:
			t.Fatalf("no %q from the helper within %s", prefix, within)
		}
	}
}

// kill sends SIGKILL and waits for the process to end.
func (p *proc) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.done
}

// testLog forwards a helper's stderr to the test log, keeping the
// interesting lines only (warnings and errors).
type testLog struct {
	t      *testing.T
	prefix string
}

func (l *testLog) Write(b []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if (strings.Contains(line, `"level":"warn"`) || strings.Contains(line, `"level":"error"`)) && !strings.Contains(line, "collector stream ended") {
			l.t.Log(l.prefix + ": " + line)
		}
	}
	return len(b), nil
}

func waitFor(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func itoa[T ~int | ~int64 | ~uint64](v T) string { return strconv.FormatInt(int64(v), 10) }
