// Package fleetsim simulates a fleet of gateways in one process: each
// simulated agent is a real agent/shipper.Shipper (batching, zstd, the
// window of unacknowledged batches, reconnects) with its own client
// certificate, speaking gRPC over mutual TLS to the collectors, and fed a
// realistic mix of events at a configured rate. It counts what each agent
// shipped and what the collectors acknowledged, so that tests can check
// that every acknowledged event is stored exactly once.
package fleetsim

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/watchpost/watchpost/agent/event"
	"github.com/watchpost/watchpost/agent/shipper"
	"github.com/watchpost/watchpost/collector/certs"
	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

// Config describes the fleet.
type Config struct {
	// Agents is the number of simulated gateways, named AgentID(i).
	Agents int
	// Address is the collectors' ingest address list (c1:7443,c2:7443).
	Address string
	// PKIDir holds ca.pem and one certificate per agent (WritePKI).
	PKIDir string
	// Rate is each agent's events per second.
	Rate float64
	// BatchMaxEvents and BatchMaxAge: the shipper's batch sealing (1000, 1s).
	BatchMaxEvents int
	BatchMaxAge    time.Duration
	// HeartbeatInterval of each shipper (10s).
	HeartbeatInterval time.Duration
	// BackoffMax caps the reconnect backoff (shipper default 30s).
	BackoffMax time.Duration
	// Commands gives every agent an in-memory command log that applies and
	// acknowledges the collectors' commands (Agent.Commands lists them).
	Commands bool
	// Seed makes the event mix reproducible.
	Seed   uint64
	Logger zerolog.Logger
}

// AgentID is the id (and certificate name) of simulated agent i.
func AgentID(i int) string { return fmt.Sprintf("sim-%05d", i) }

// WritePKI creates the CA, the collectors' certificate (valid for hosts)
// and one client certificate per agent in dir.
func WritePKI(dir string, agents int, hosts []string) error {
	names := make([]string, agents)
	for i := range names {
		names[i] = AgentID(i)
	}
	return certs.Generate(certs.Options{Dir: dir, Agents: names, Hosts: hosts})
}

// Agent is one simulated gateway.
type Agent struct {
	ID      string
	sh      *shipper.Shipper
	gen     *generator
	shipped atomic.Uint64
	credit  float64 // events owed at the current rate (generator goroutine only)
	cmds    *commandLog
}

// commandLog applies commands in memory: each sequence once, a new epoch
// starts over.
type commandLog struct {
	mu      sync.Mutex
	epoch   string
	applied uint64
	got     []*watchpostv1.Command
}

func (c *commandLog) Apply(cmd *watchpostv1.Command) *watchpostv1.CommandAck {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cmd.Epoch != c.epoch {
		c.epoch, c.applied, c.got = cmd.Epoch, 0, nil
	}
	if cmd.Seq == 0 {
		return nil // the epoch's announcement
	}
	if cmd.Seq > c.applied {
		c.applied = cmd.Seq
		c.got = append(c.got, cmd)
	}
	return &watchpostv1.CommandAck{Seq: cmd.Seq, Status: watchpostv1.CommandStatus_COMMAND_STATUS_APPLIED}
}

func (c *commandLog) State() (string, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.epoch, c.applied
}

// Commands are the commands agent a applied (with Config.Commands).
func (a *Agent) Commands() []*watchpostv1.Command {
	if a.cmds == nil {
		return nil
	}
	a.cmds.mu.Lock()
	defer a.cmds.mu.Unlock()
	return append([]*watchpostv1.Command(nil), a.cmds.got...)
}

// Sim is the fleet.
type Sim struct {
	cfg     Config
	agents  []*Agent
	rate    atomic.Uint64 // math.Float64bits of the per-agent rate
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	started bool
}

// New creates the shippers (they connect at Start).
func New(cfg Config) (*Sim, error) {
	if cfg.Agents < 1 {
		return nil, errors.New("fleetsim: at least one agent")
	}
	s := &Sim{cfg: cfg}
	s.SetRate(cfg.Rate)
	for i := 0; i < cfg.Agents; i++ {
		id := AgentID(i)
		cert, key := certs.AgentFiles(id)
		tlsCfg, err := shipper.ClientTLS(filepath.Join(cfg.PKIDir, certs.CAFile), filepath.Join(cfg.PKIDir, cert), filepath.Join(cfg.PKIDir, key), "")
		if err != nil {
			return nil, fmt.Errorf("agent %s: %w", id, err)
		}
		var cmds *commandLog
		deps := shipper.Deps{Logger: cfg.Logger.With().Str("agent", id).Logger(), TLS: tlsCfg}
		if cfg.Commands {
			cmds = &commandLog{}
			deps.Commands = cmds
		}
		sh, err := shipper.New(shipper.Config{
			Address: cfg.Address, AgentID: id, Host: "gw-" + id, BootID: "boot-" + id,
			BatchMaxEvents: cfg.BatchMaxEvents, BatchMaxAge: cfg.BatchMaxAge, HeartbeatInterval: cfg.HeartbeatInterval,
			BackoffInitial: 200 * time.Millisecond, BackoffMax: cfg.BackoffMax,
			MaxQueuedBatches: 4096, MaxQueuedBytes: 256 << 20,
		}, deps)
		if err != nil {
			return nil, fmt.Errorf("agent %s: %w", id, err)
		}
		s.agents = append(s.agents, &Agent{ID: id, sh: sh, gen: newGenerator(cfg.Seed+uint64(i), "gw-"+id), cmds: cmds})
	}
	return s, nil
}

// Agents returns the simulated agents.
func (s *Sim) Agents() []*Agent { return s.agents }

// SetRate changes every agent's event rate (events/s; 0 pauses).
func (s *Sim) SetRate(r float64) { s.rate.Store(uint64(r * 1000)) }

func (s *Sim) currentRate() float64 { return float64(s.rate.Load()) / 1000 }

// tick is the generators' period.
const tick = 20 * time.Millisecond

// Start connects every shipper and starts generating events: one
// goroutine per 64 agents, each shipping what the rate owes every 20 ms.
func (s *Sim) Start(ctx context.Context) error {
	for _, a := range s.agents {
		if err := a.sh.Start(ctx); err != nil {
			return fmt.Errorf("agent %s: %w", a.ID, err)
		}
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	s.started = true
	for from := 0; from < len(s.agents); from += 64 {
		group := s.agents[from:min(from+64, len(s.agents))]
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			t := time.NewTicker(tick)
			defer t.Stop()
			for {
				select {
				case <-runCtx.Done():
					return
				case <-t.C:
				}
				owed := s.currentRate() * tick.Seconds()
				for _, a := range group {
					a.credit += owed
					for ; a.credit >= 1; a.credit-- {
						a.sh.Ship(a.gen.next())
						a.shipped.Add(1)
					}
				}
			}
		}()
	}
	return nil
}

// Ship hands n events to agent i now (tests drive exact counts with it).
func (s *Sim) Ship(i, n int) {
	a := s.agents[i]
	for k := 0; k < n; k++ {
		a.sh.Ship(a.gen.next())
		a.shipped.Add(1)
	}
}

// ShipAlert hands agent i one detection alert event (a shell started by
// the PLC runtime), as the agent's rule engine would.
func (s *Sim) ShipAlert(i int) {
	a := s.agents[i]
	ev := a.gen.next()
	ev.Kind, ev.File, ev.Net, ev.Exec, ev.Exit, ev.Clone, ev.Security, ev.Industrial = event.KindAlert, nil, nil, nil, nil, nil, nil, nil
	ev.Alert = &event.Alert{RuleID: "ot-fieldbus-shell", Title: "Shell started by the PLC runtime", Level: "high",
		Techniques: []string{"T0807"}, Source: "pack:ot", Matches: []event.Match{{Field: "exe", Value: ev.Process.Exe}},
		Events: []event.EventRef{{Seq: ev.Seq - 1, Kind: event.KindExec, Time: ev.Time, BootNS: ev.BootNS, PID: ev.Process.PID}}}
	a.sh.Ship(ev)
	a.shipped.Add(1)
}

// Totals are the fleet's counters.
type Totals struct {
	Shipped     uint64 // events handed to the shippers
	Acked       uint64 // events the collectors acknowledged (stored or already stored)
	Dropped     uint64 // events the shippers counted as dropped, every reason
	Queued      int    // batches not yet acknowledged
	Reconnects  uint64
	BatchesSent uint64
	Resent      uint64
	Duplicates  uint64 // batches acknowledged as already stored
}

// Totals adds up every agent's counters.
func (s *Sim) Totals() Totals {
	var t Totals
	for _, a := range s.agents {
		st := a.sh.Stats()
		t.Shipped += a.shipped.Load()
		t.Acked += st.EventsAcked
		for _, n := range st.Dropped {
			t.Dropped += n
		}
		t.Queued += st.QueuedBatches
		t.Reconnects += st.Reconnects
		t.BatchesSent += st.BatchesSent
		t.Resent += st.BatchesResent
		t.Duplicates += st.BatchesDup
	}
	return t
}

// Shipped is what agent i was handed.
func (a *Agent) Shipped() uint64 { return a.shipped.Load() }

// Acked is what the collectors acknowledged for agent a.
func (a *Agent) Acked() uint64 { return a.sh.Stats().EventsAcked }

// Drain stops generating, seals the open batches and waits until every
// batch is acknowledged (or ctx ends).
func (s *Sim) Drain(ctx context.Context) error {
	s.SetRate(0)
	for _, a := range s.agents {
		if err := a.sh.Flush(ctx); err != nil {
			return err
		}
	}
	for {
		t := s.Totals()
		if t.Queued == 0 && t.Acked+t.Dropped >= t.Shipped {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("draining: %d batches unacknowledged, %d of %d events acknowledged: %w", t.Queued, t.Acked, t.Shipped, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Shutdown stops the generators and every shipper.
func (s *Sim) Shutdown(ctx context.Context) error {
	if s.cancel != nil {
		s.cancel()
	}
	s.wg.Wait()
	var errs []error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, a := range s.agents {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := a.sh.Shutdown(ctx); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("%s: %w", a.ID, err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// generator produces one gateway's events: a PLC runtime, its HMI bridge,
// shells and maintenance tools, with a mix measured on OT gateways' typical
// workloads: mostly file reads and writes of the runtime and network
// traffic to field devices, a few process starts, rare security events.
type generator struct {
	r    *rand.Rand
	host string
	seq  uint64
	boot uint64
}

func newGenerator(seed uint64, host string) *generator {
	return &generator{r: rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15)), host: host}
}

var (
	procs = []struct {
		comm, exe string
		args      []string
	}{
		{"codesyscontrol", "/opt/codesys/bin/codesyscontrol.bin", []string{"/opt/codesys/bin/codesyscontrol.bin", "/etc/CODESYSControl.cfg"}},
		{"modbusd", "/usr/sbin/modbusd", []string{"modbusd", "-c", "/etc/modbusd.conf"}},
		{"node-red", "/usr/bin/node", []string{"node-red", "--settings", "/data/settings.js"}},
		{"python3", "/usr/bin/python3.11", []string{"python3", "/opt/historian/collect.py", "--interval", "1"}},
		{"sh", "/usr/bin/dash", []string{"sh", "-c", "logrotate /etc/logrotate.conf"}},
		{"sshd", "/usr/sbin/sshd", []string{"sshd", "-D"}},
	}
	dirs = []string{"/var/lib/codesys/PlcLogic/", "/var/log/", "/etc/", "/data/node-red/", "/opt/historian/buffer/", "/tmp/"}
)

func (g *generator) next() *event.Event {
	g.seq++
	g.boot += uint64(1e6 + g.r.IntN(1e6))
	p := procs[g.r.IntN(len(procs))]
	pid := uint32(1000 + g.r.IntN(3000))
	ev := &event.Event{
		Time: time.Now(), BootNS: g.boot, Seq: g.seq, Host: g.host, CPU: uint32(g.r.IntN(4)),
		Process: event.Process{PID: pid, TID: pid, PPID: 1, UID: 0, LoginUID: event.AUIDUnset, Comm: p.comm, Exe: p.exe,
			Args: p.args, Cwd: "/"},
		Ancestry: []event.Ancestor{{PID: 1, Comm: "systemd", Exe: "/usr/lib/systemd/systemd"}},
	}
	switch x := g.r.IntN(100); {
	case x < 38: // reads and writes of the runtime's files
		ev.Kind = event.KindFileOpen
		write := x%3 == 0
		ev.File = &event.File{Syscall: "openat", Path: fmt.Sprintf("%sfile-%d.dat", dirs[g.r.IntN(len(dirs))], g.r.IntN(200)),
			Flags: 0, Result: int32(3 + g.r.IntN(20)), Inode: uint64(g.r.IntN(1 << 20)), Dev: "8:1", Write: write}
		if write {
			ev.File.Flags = 0x241
		}
	case x < 46:
		ev.Kind = event.KindFileRename
		d := dirs[g.r.IntN(len(dirs))]
		ev.File = &event.File{Syscall: "renameat2", Path: d + "tmp.new", NewPath: fmt.Sprintf("%sstate-%d.json", d, g.r.IntN(50)), Write: true}
	case x < 66: // field traffic
		ev.Kind = event.KindNetConnect
		port := []uint16{502, 502, 502, 4840, 44818, 20000, 443}[g.r.IntN(7)]
		ev.Net = &event.Net{Syscall: "connect", Family: "inet", Protocol: "tcp", SrcAddr: "10.20.0.5", SrcPort: uint16(32768 + g.r.IntN(28000)),
			DstAddr: fmt.Sprintf("10.20.1.%d", 1+g.r.IntN(40)), DstPort: port, Direction: "outbound"}
		switch port {
		case 502:
			ev.Industrial = &event.Industrial{Protocol: "modbus"}
		case 4840:
			ev.Industrial = &event.Industrial{Protocol: "opcua"}
		case 44818:
			ev.Industrial = &event.Industrial{Protocol: "enip"}
		case 20000:
			ev.Industrial = &event.Industrial{Protocol: "dnp3"}
		}
	case x < 78:
		ev.Kind = event.KindNetClose
		ev.Net = &event.Net{Family: "inet", Protocol: "tcp", SrcAddr: "10.20.0.5", SrcPort: uint16(32768 + g.r.IntN(28000)),
			DstAddr: fmt.Sprintf("10.20.1.%d", 1+g.r.IntN(40)), DstPort: 502, BytesSent: uint64(g.r.IntN(4096)), BytesRecv: uint64(g.r.IntN(8192)),
			DurationNS: uint64(g.r.IntN(1e9))}
	case x < 84:
		ev.Kind = event.KindNetUDPFlow
		ev.Net = &event.Net{Syscall: "sendto", Family: "inet", Protocol: "udp", SrcAddr: "10.20.0.5", SrcPort: 47808, DstAddr: "10.20.255.255", DstPort: 47808}
		ev.Industrial = &event.Industrial{Protocol: "bacnet"}
	case x < 90:
		ev.Kind = event.KindExec
		ev.Exec = &event.Exec{Argc: uint32(len(p.args)), ExeInode: uint64(g.r.IntN(1 << 20)), ExeDev: "8:1"}
	case x < 94:
		ev.Kind = event.KindClone
		ev.Clone = &event.Clone{ChildPID: pid + 1, ChildTID: pid + 1}
	case x < 99:
		ev.Kind = event.KindExit
		ev.Exit = &event.Exit{LifetimeNS: uint64(g.r.IntN(1e10))}
	default:
		ev.Kind = event.KindCredChange
		ev.Security = &event.Security{Operation: "setresuid", OldID: event.ID(1000), NewID: event.ID(0)}
	}
	return ev
}
