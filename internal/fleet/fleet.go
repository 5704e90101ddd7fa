// Package fleet starts a whole fleet-mode installation on loopback: a
// private PostgreSQL, a JetStream cluster of nats-server processes,
// collectors and store writers as separate processes (so that tests can
// kill them), and the PKI the simulated agents use. The fault tests, the
// fleet benchmark and `make run-fleet` use it.
package fleet

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/watchpost/watchpost/collector"
	"github.com/watchpost/watchpost/collector/certs"
	"github.com/watchpost/watchpost/internal/fleetsim"
	"github.com/watchpost/watchpost/internal/services"
)

const (
	envRole   = "WP_FLEET_ROLE"
	envConfig = "WP_FLEET_CONFIG"
)

// HelperMain runs a collector or a writer when a test binary is
// re-executed as one (call it first in TestMain); otherwise it returns.
func HelperMain() {
	role := os.Getenv(envRole)
	if role == "" {
		return
	}
	os.Exit(runRole(role, os.Getenv(envConfig)))
}

func runRole(role, config string) int {
	log := zerolog.New(os.Stderr).Level(zerolog.WarnLevel).With().Timestamp().Str("role", role).Logger()
	cfg := collector.DefaultConfig()
	if err := cfg.LoadFile(config); err != nil {
		log.Error().Err(err).Msg("config")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	type component interface {
		Start(context.Context) error
		Shutdown(context.Context) error
	}
	var c component
	var err error
	if role == "writer" {
		c, err = collector.NewWriter(cfg, collector.Deps{Logger: log})
	} else {
		c, err = collector.New(cfg, collector.Deps{Logger: log})
	}
	if err != nil {
		log.Error().Err(err).Msg("new")
		return 2
	}
	if err := c.Start(ctx); err != nil {
		log.Error().Err(err).Msg("start")
		_ = c.Shutdown(context.Background())
		return 1
	}
	<-ctx.Done()
	if err := c.Shutdown(context.Background()); err != nil {
		return 1
	}
	return 0
}

// Options size the installation.
type Options struct {
	Dir        string // parent of everything it creates ("" for a temporary directory)
	NATSNodes  int    // 3: an R3 cluster; 1: a single JetStream node
	Collectors int
	Writers    int
	Agents     int           // client certificates to create (fleetsim.AgentID names)
	AckWait    time.Duration // nats.ack_wait (30s)
	// Binary is watchpost-collector, run as `serve` and `writer`; empty
	// re-executes the current program, which must call HelperMain.
	Binary   string
	LogLevel string // of the processes (warn)
	// Stdout and Stderr of the processes; nil keeps their output in memory.
	Output *os.File
	// Site, when set, starts a plant's own JetStream node in that domain,
	// a leaf node of the central cluster: the collectors publish to it
	// (nats.mode: site), the central stream sources it, the writers
	// consume the central stream.
	Site string
	// DeferWriters writes the writers' configurations without starting
	// them (Process.Start starts one later).
	DeferWriters bool
	// Postgres, when set, is a running server to use (the fleet creates
	// database Database in it and leaves the server running at Close).
	Postgres *services.Postgres
	Database string
}

// Process is one collector or writer.
type Process struct {
	Role      string
	Config    string
	Ingest    string // collector: the agents' address
	Query     string // collector: the query API
	Metrics   string // writer: /metrics
	cmd       *exec.Cmd
	exited    chan struct{}
	log       bytes.Buffer
	binary    string
	output    *os.File
	probeAddr string
}

// Fleet is a running installation.
type Fleet struct {
	PG         *services.Postgres
	NATS       *services.NATSCluster
	SiteNATS   *services.NATSCluster // with Options.Site
	PKI        string
	Collectors []*Process
	Writers    []*Process
	PGURL      string
	dir        string
	own        bool
	ownPG      bool
}

// Start brings everything up: PostgreSQL, the JetStream cluster, the
// collectors and the writers, each waited for.
func Start(ctx context.Context, opt Options) (f *Fleet, err error) {
	if opt.NATSNodes == 0 {
		opt.NATSNodes = 3
	}
	if opt.AckWait == 0 {
		opt.AckWait = 30 * time.Second
	}
	if opt.LogLevel == "" {
		opt.LogLevel = "warn"
	}
	f = &Fleet{dir: opt.Dir}
	if f.dir == "" {
		if f.dir, err = os.MkdirTemp("", "wp-fleet-"); err != nil {
			return nil, err
		}
		f.own = true
	}
	// PostgreSQL runs as its own account and must reach its data directory.
	if err = os.Chmod(f.dir, 0o755); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	f.PKI = filepath.Join(f.dir, "pki")
	if err = fleetsim.WritePKI(f.PKI, opt.Agents, []string{"127.0.0.1", "localhost"}); err != nil {
		return f, fmt.Errorf("pki: %w", err)
	}
	if opt.Postgres != nil {
		f.PG = opt.Postgres
		if f.PGURL, err = f.PG.CreateDatabase(ctx, opt.Database); err != nil {
			return f, err
		}
	} else {
		if f.PG, err = services.StartPostgres(ctx, f.dir); err != nil {
			return f, err
		}
		f.PGURL, f.ownPG = f.PG.URL(), true
	}
	if f.NATS, err = services.StartNATSCluster(ctx, f.dir, opt.NATSNodes); err != nil {
		return f, err
	}
	if opt.Site != "" {
		if f.SiteNATS, err = services.StartNATSSite(ctx, f.dir, opt.Site, f.NATS); err != nil {
			return f, err
		}
	}
	replicas := 1
	if opt.NATSNodes >= 3 {
		replicas = 3
	}
	for i := 0; i < opt.Collectors+opt.Writers; i++ {
		role := "collector"
		if i >= opt.Collectors {
			role = "writer"
		}
		p := &Process{Role: role, binary: opt.Binary, output: opt.Output}
		ports := make([]int, 2)
		for k := range ports {
			if ports[k], err = services.FreePort(); err != nil {
				return f, err
			}
		}
		name := fmt.Sprintf("%s-%d", role, i+1)
		if role == "writer" {
			name = fmt.Sprintf("writer-%d", i-opt.Collectors+1)
		}
		p.Config = filepath.Join(f.dir, name+".yaml")
		conf := f.config(name, role, ports, replicas, opt)
		if role == "collector" {
			p.Ingest, p.Query, p.probeAddr = addr(ports[0]), addr(ports[1]), addr(ports[0])
			f.Collectors = append(f.Collectors, p)
		} else {
			p.Metrics, p.probeAddr = addr(ports[0]), addr(ports[0])
			f.Writers = append(f.Writers, p)
		}
		if err = os.WriteFile(p.Config, []byte(conf), 0o600); err != nil {
			return f, err
		}
	}
	// Writers first: they create the schema the collectors read.
	var start []*Process
	if !opt.DeferWriters {
		start = append(start, f.Writers...)
	}
	start = append(start, f.Collectors...)
	for _, p := range start {
		if err = p.Start(ctx); err != nil {
			return f, err
		}
	}
	return f, nil
}

func addr(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

func (f *Fleet) config(name, role string, ports []int, replicas int, opt Options) string {
	nodes, site, mode, sources := f.NATS, "plant1", "central", ""
	if opt.Site != "" {
		site = opt.Site
		if role == "collector" {
			nodes, mode, replicas = f.SiteNATS, "site", 1
		} else {
			sources = fmt.Sprintf("  sources: [{domain: %s}]\n", opt.Site)
		}
	}
	var urls []string
	for _, u := range nodes.URLs() {
		urls = append(urls, strconv.Quote(u))
	}
	conf := fmt.Sprintf(`# %s of a loopback fleet
data_dir: %q
log_level: %s
store: postgres
postgres:
  url: %q
  max_conns: 8
queue: nats
nats:
  urls: [%s]
  site: %s
  mode: %s
  replicas: %d
  max_bytes: 1073741824
  ack_wait: %s
  publish_timeout: 5s
%sretention:
  max_age: 720h
  max_bytes: 0
  interval: 1m
`, name, filepath.Join(f.dir, name), opt.LogLevel, f.PGURL, strings.Join(urls, ", "), site, mode, replicas, opt.AckWait, sources)
	if role == "writer" {
		return conf + fmt.Sprintf("writer:\n  listen: %s\n", addr(ports[0]))
	}
	return conf + fmt.Sprintf(`ingest:
  listen: %s
  cert_file: %q
  key_file: %q
  client_ca_file: %q
  max_message_bytes: 4194304
  max_uncompressed_bytes: 8323072
  rate_events_per_second: 1000000
  rate_burst: 2000000
  max_streams: 20000
  keepalive_min_time: 1s
query:
  listen: %s
`, addr(ports[0]), filepath.Join(f.PKI, certs.ServerFile), filepath.Join(f.PKI, certs.ServerKeyFile),
		filepath.Join(f.PKI, certs.CAFile), addr(ports[1]))
}

// Start starts the process (again, after Kill: same ports and configuration).
func (p *Process) Start(ctx context.Context) error {
	var cmd *exec.Cmd
	if p.binary != "" {
		sub := "serve"
		if p.Role == "writer" {
			sub = "writer"
		}
		cmd = exec.Command(p.binary, sub, "--config", p.Config)
	} else {
		self, err := os.Executable()
		if err != nil {
			return err
		}
		cmd = exec.Command(self)
		cmd.Env = append(os.Environ(), envRole+"="+p.Role, envConfig+"="+p.Config)
	}
	p.log.Reset()
	if p.output != nil {
		cmd.Stdout, cmd.Stderr = p.output, p.output
	} else {
		cmd.Stdout, cmd.Stderr = &p.log, &p.log
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", p.Role, err)
	}
	p.cmd, p.exited = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); close(p.exited) }()
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		if c, err := net.DialTimeout("tcp", p.probeAddr, 200*time.Millisecond); err == nil {
			_ = c.Close()
			return nil
		}
		select {
		case <-p.exited:
			return fmt.Errorf("%s exited at start-up: %s", p.Role, p.log.String())
		case <-ctx.Done():
			p.Kill()
			return fmt.Errorf("%s not listening on %s: %w\n%s", p.Role, p.probeAddr, ctx.Err(), p.log.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Kill ends the process with SIGKILL and waits for it.
func (p *Process) Kill() {
	if p.cmd == nil {
		return
	}
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// Stop ends the process with SIGTERM (a clean stop), killing it after 20s.
func (p *Process) Stop() {
	if p.cmd == nil {
		return
	}
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		p.Kill()
	}
}

// Pid is the process id (0 when it is not running).
func (p *Process) Pid() int {
	if p.cmd == nil {
		return 0
	}
	select {
	case <-p.exited:
		return 0
	default:
		return p.cmd.Process.Pid
	}
}

// Log is what the process printed (when its output is kept in memory).
func (p *Process) Log() string { return p.log.String() }

// IngestAddrs is the agents' address list of every collector.
func (f *Fleet) IngestAddrs() string {
	var a []string
	for _, c := range f.Collectors {
		a = append(a, c.Ingest)
	}
	return strings.Join(a, ",")
}

// Close stops everything it started and removes its directory.
func (f *Fleet) Close() {
	var wg sync.WaitGroup
	for _, p := range append(append([]*Process(nil), f.Collectors...), f.Writers...) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.Stop()
		}()
	}
	wg.Wait()
	if f.SiteNATS != nil {
		f.SiteNATS.Close()
	}
	if f.NATS != nil {
		f.NATS.Close()
	}
	if f.PG != nil && f.ownPG {
		f.PG.Close()
	}
	if f.own {
		_ = os.RemoveAll(f.dir)
	}
}
