// Package app runs a whole Watchpost agent: kernel sensor, process table,
// pipeline, outputs and metrics. The watchpost-agent binary is a thin
// wrapper around Run; tests start the real agent through it too.
package app

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/watchpost/watchpost/agent/baseline"
	"github.com/watchpost/watchpost/agent/commands"
	"github.com/watchpost/watchpost/agent/config"
	"github.com/watchpost/watchpost/agent/container"
	"github.com/watchpost/watchpost/agent/detect"
	"github.com/watchpost/watchpost/agent/event"
	"github.com/watchpost/watchpost/agent/industrial/inspect"
	"github.com/watchpost/watchpost/agent/internal/sdnotify"
	"github.com/watchpost/watchpost/agent/kernel"
	"github.com/watchpost/watchpost/agent/metrics"
	"github.com/watchpost/watchpost/agent/netctx"
	"github.com/watchpost/watchpost/agent/output"
	"github.com/watchpost/watchpost/agent/pipeline"
	"github.com/watchpost/watchpost/agent/proctable"
	"github.com/watchpost/watchpost/agent/respond"
	"github.com/watchpost/watchpost/agent/shipper"
	"github.com/watchpost/watchpost/agent/spool"
	"github.com/watchpost/watchpost/internal/version"
)

// Options are the parts of a run that are not configuration.
type Options struct {
	// Stdout receives JSON lines when the output includes stdout.
	Stdout io.Writer
	// Ready, when set, is called once everything is attached and running.
	Ready func(*Agent)
	// Reload, when set, reloads the detection rules and the response
	// policies on every receive (main sends SIGHUP here).
	Reload <-chan os.Signal
	// NoEnforce starts with the response kill switch on (--no-enforce).
	NoEnforce bool
}

// Agent is a running agent, as handed to Options.Ready.
type Agent struct {
	Sensor   *kernel.Sensor
	Table    *proctable.Table
	Pipeline *pipeline.Pipeline
	Shipper  *shipper.Shipper // nil unless the output includes the collector
	Metrics  *metrics.Server  // nil when metrics_addr is empty
	// Containers is nil when container attribution is off.
	Containers *container.Resolver
	Detect     *detect.Engine     // nil when detection is off
	Baseline   *baseline.Baseline // nil when the baseline is off
	Respond    *respond.Engine    // nil when response is off
	Commands   *commands.Log      // nil without commands.dir
	// Network is the network context: interface and zone lookups by
	// address or index (nil when network.inventory and
	// network.watch_interfaces are both off).
	Network *netctx.Monitor
	// Inspection is the industrial protocol inspection (nil when off).
	Inspection *inspect.Service
}

// Run starts the agent and blocks until ctx ends; then it detaches the
// programs, drains the ring, flushes the outputs and returns.
func Run(ctx context.Context, cfg config.Config, log zerolog.Logger, opt Options) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	if opt.Stdout == nil {
		opt.Stdout = os.Stdout
	}
	kcfg, _ := cfg.KernelConfig()
	kcfg.AgentPID = selfPID(cfg.ProcRoot)

	table, err := proctable.New(cfg.TableConfig())
	if err != nil {
		return err
	}
	sensor, err := kernel.Load(kcfg, log)
	if err != nil {
		return err
	}
	defer func() {
		if err := sensor.Close(); err != nil {
			log.Warn().Err(err).Msg("detaching kernel programs")
		}
		log.Info().Msg("kernel programs detached")
	}()
	// Seeded after attaching, so no process falls between the snapshot and
	// the first event; events override the snapshot.
	if err := table.Seed(); err != nil {
		return err
	}
	log.Info().Int("processes", table.Stats().Live).Msg("process table seeded")

	a := &Agent{Sensor: sensor, Table: table}
	var sinks []output.Sink
	if cfg.Output == config.OutputStdout || cfg.Output == config.OutputBoth {
		sinks = append(sinks, output.NewJSONLines(opt.Stdout, nil))
	}
	pcfg := cfg.PipelineConfig()
	pcfg.SelfPID = kcfg.AgentPID
	if pcfg.Tagger, err = cfg.Classifier(); err != nil {
		return err
	}
	if cfg.Container.Enabled {
		containers, err := container.New(cfg.ContainerConfig(), log)
		if err != nil {
			return err
		}
		if err := containers.Start(ctx); err != nil {
			return err
		}
		defer func() { _ = containers.Shutdown(context.Background()) }()
		a.Containers = containers
		pcfg.Containers = containers
	}
	if cfg.Network.Inventory || cfg.Network.WatchInterfaces || len(cfg.Network.Zones) > 0 {
		ncfg := cfg.NetworkConfig()
		ncfg.SelfPID = kcfg.AgentPID
		if a.Network, err = netctx.New(ncfg, netctx.Deps{Logger: log, Processes: table}); err != nil {
			return err
		}
		// After the table is seeded, so inventoried sockets find their owners.
		if err := a.Network.Start(ctx); err != nil {
			return fmt.Errorf("network context: %w", err)
		}
		defer func() { _ = a.Network.Shutdown(context.Background()) }()
		pcfg.Network = a.Network
	}
	if cfg.Detection.Enabled {
		if a.Detect, err = detect.New(cfg.DetectConfig(), detect.Deps{Logger: log, Processes: table}); err != nil {
			return fmt.Errorf("detection: %w", err)
		}
		if err := a.Detect.Start(ctx); err != nil {
			return err
		}
		defer func() { _ = a.Detect.Shutdown(context.Background()) }()
		pcfg.Detector = a.Detect
	}
	if cfg.Response.Enabled {
		rcfg := cfg.RespondConfig()
		rcfg.SelfPID = kcfg.AgentPID
		if opt.NoEnforce {
			rcfg.NoEnforce = true
		}
		if rcfg.CgroupRoot == "" {
			if rcfg.CgroupRoot, err = kernel.Cgroup2Root(); err != nil {
				return fmt.Errorf("response: %w (set response.cgroup_root, or response.enabled: false)", err)
			}
		}
		if a.Respond, err = respond.New(rcfg, sensor, log); err != nil {
			return err
		}
		defer func() { _ = a.Respond.Close() }()
		if err := a.Respond.Watch(ctx); err != nil {
			log.Warn().Err(err).Msg("the policy file is not watched for changes; SIGHUP reloads it")
		}
		pcfg.Responder = a.Respond
	}
	if cfg.Industrial.Inspect.Enabled {
		svc := startInspection(ctx, cfg, sensor, log)
		defer func() { _ = svc.Close() }()
		a.Inspection = svc.Service
		pcfg.Inspection = svc.Service
	}
	// SIGHUP reloads the detection rules and the response policies.
	if opt.Reload != nil && (a.Detect != nil || a.Respond != nil) {
		go func() {
			for {
				select {
				case <-ctx.Done():
					return
				case <-opt.Reload:
					if a.Detect != nil {
						a.Detect.Reload()
					}
					if a.Respond != nil {
						_ = a.Respond.Reload()
					}
				}
			}
		}()
	}
	if cfg.Baseline.Enabled {
		if a.Baseline, err = baseline.New(cfg.BaselineConfig(), log); err != nil {
			return fmt.Errorf("baseline: %w", err)
		}
		if err := a.Baseline.Start(ctx); err != nil {
			return err
		}
		defer func() {
			if err := a.Baseline.Shutdown(context.Background()); err != nil {
				log.Warn().Err(err).Msg("saving the baseline")
			}
		}()
		pcfg.Baseline = a.Baseline
	}
	// The collector's commands (detection exceptions) are replayed from the
	// log whatever the output, so they hold while the collector is away.
	var cmdLog *commands.Log
	if cfg.Commands.Dir != "" {
		var handlers []commands.Handler
		if a.Detect != nil {
			handlers = append(handlers, a.Detect.CommandHandler())
		}
		if a.Baseline != nil {
			handlers = append(handlers, a.Baseline.CommandHandler())
		}
		if a.Respond != nil {
			handlers = append(handlers, a.Respond.CommandHandler())
		}
		if cmdLog, err = commands.Open(cfg.Commands.Dir, log, handlers...); err != nil {
			return err
		}
		defer func() { _ = cmdLog.Close() }()
		a.Commands = cmdLog
	}
	var p *pipeline.Pipeline
	if cfg.Output == config.OutputCollector || cfg.Output == config.OutputBoth {
		health := func() event.Health {
			if p == nil {
				return event.Health{}
			}
			return *p.Health()
		}
		var queue shipper.Queue
		if cfg.Spool.Dir != "" {
			sp, err := spool.New(spool.Config{Dir: cfg.Spool.Dir, MaxBytes: cfg.Spool.MaxBytes, FsyncInterval: cfg.Spool.FsyncInterval}, log)
			if err != nil {
				return fmt.Errorf("spool: %w", err)
			}
			if err := sp.Start(ctx); err != nil {
				return err
			}
			// Runs after the shipper's Shutdown below (deferred calls run last).
			defer func() {
				if err := sp.Shutdown(context.Background()); err != nil {
					log.Warn().Err(err).Msg("closing the spool")
				}
			}()
			queue = sp
		}
		a.Shipper, err = newShipper(cfg, health, queue, cmdLog, log)
		if err != nil {
			return err
		}
		if err := a.Shipper.Start(ctx); err != nil {
			return fmt.Errorf("starting the collector output: %w", err)
		}
		sinks = append(sinks, shipperSink{a.Shipper})
		// A reload's outcome reaches `watchpost hosts` at once, not at the
		// next heartbeat.
		pcfg.Reloaded = a.Shipper.HeartbeatNow
	}
	p, err = pipeline.New(pcfg, log, sensor, table, sinks...)
	if err != nil {
		return err
	}
	a.Pipeline = p
	if cfg.MetricsAddr != "" {
		a.Metrics, err = metrics.New(cfg.MetricsAddr, metrics.Sources{
			Kernel: sensor.Stats, Programs: sensor.Programs, Delivered: p.Delivered, Table: table.Stats,
			Containers: containerStats(a.Containers), Inspection: inspectionStatus(a.Inspection),
		}, log)
		if err != nil {
			return err
		}
		a.Metrics.Start()
		log.Info().Str("addr", a.Metrics.Addr()).Msg("serving /metrics and /healthz")
	}
	log.Info().Str("output", cfg.Output).Str("version", version.Version).Msg("watchpost agent running")
	if opt.Ready != nil {
		opt.Ready(a)
	}
	stopNotify := notifySystemd(ctx, p, log)
	err = p.Run(ctx)
	stopNotify()

	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, s := range sinks {
		if cerr := s.Close(); cerr != nil {
			log.Warn().Err(cerr).Msg("closing output")
		}
	}
	if a.Shipper != nil {
		if serr := a.Shipper.Shutdown(shutdownCtx); serr != nil {
			log.Warn().Err(serr).Msg("stopping the collector output")
		}
	}
	if a.Metrics != nil {
		_ = a.Metrics.Shutdown(shutdownCtx)
	}
	return err
}

// inspectionStatus is the metrics source of the inspection (nil when off).
func inspectionStatus(s *inspect.Service) func() *event.Inspection {
	if s == nil {
		return nil
	}
	return s.Status
}

// inspection is the inspection service and the kernel side it runs on.
type inspection struct {
	*inspect.Service
	in *kernel.Inspector // nil when the kernel cannot inspect here
}

func (i inspection) Close() error {
	if i.in == nil {
		return nil
	}
	return i.in.Close()
}

// startInspection attaches the inspection at the cgroup v2 root. Where it
// cannot (no cgroup v2, a refused program) the agent runs without it: the
// health events say why, and port tags stay.
func startInspection(ctx context.Context, cfg config.Config, sensor *kernel.Sensor, log zerolog.Logger) inspection {
	icfg := cfg.Industrial.Inspect
	deps := inspect.Deps{ProcRoot: cfg.ProcRoot}
	ports, _ := icfg.Ports() // validated
	root, err := kernel.Cgroup2Root()
	if err == nil {
		var in *kernel.Inspector
		if in, err = sensor.NewInspector(root, ports); err == nil {
			svc := inspect.NewService(icfg, in, root, "", deps)
			svc.Start(ctx)
			log.Info().Str("cgroup", root).Int("ports", len(ports)).Msg("industrial inspection attached")
			return inspection{Service: svc, in: in}
		}
	}
	log.Warn().Err(err).Msg("industrial inspection unavailable: ports are still tagged")
	return inspection{Service: inspect.NewService(icfg, nil, root, err.Error(), deps)}
}

// notifySystemd tells systemd the agent is ready (Type=notify) and, when
// the unit sets WatchdogSec, pings the watchdog while the pipeline's loop
// answers. It returns the function that says STOPPING=1 and ends the pings.
func notifySystemd(ctx context.Context, p *pipeline.Pipeline, log zerolog.Logger) func() {
	if ok, err := sdnotify.Notify(sdnotify.Ready); err != nil {
		log.Warn().Err(err).Msg("notifying systemd")
	} else if !ok {
		return func() {}
	}
	done := make(chan struct{})
	stopped := make(chan struct{})
	interval := sdnotify.WatchdogInterval()
	go func() {
		defer close(stopped)
		if interval == 0 {
			return
		}
		log.Info().Dur("interval", interval).Msg("pinging the systemd watchdog")
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				actx, cancel := context.WithTimeout(ctx, interval)
				err := p.Alive(actx)
				cancel()
				if err != nil {
					log.Warn().Err(err).Msg("not pinging the systemd watchdog")
					continue
				}
				_, _ = sdnotify.Notify(sdnotify.Watchdog)
			}
		}
	}()
	return func() {
		close(done)
		<-stopped
		_, _ = sdnotify.Notify(sdnotify.Stopping)
	}
}

// shipperSink adapts the shipper to the pipeline's sink interface: Ship
// never blocks (it counts what it cannot take).
type shipperSink struct{ s *shipper.Shipper }

func (w shipperSink) Write(ev *event.Event) { w.s.Ship(ev) }
func (w shipperSink) Flush() error          { return nil }
func (w shipperSink) Close() error          { return nil }

func newShipper(cfg config.Config, health func() event.Health, queue shipper.Queue, cmds *commands.Log, log zerolog.Logger) (*shipper.Shipper, error) {
	tlsCfg, err := shipper.ClientTLS(cfg.Collector.CA, cfg.Collector.Cert, cfg.Collector.Key, cfg.Collector.ServerName)
	if err != nil {
		return nil, fmt.Errorf("collector: %w", err)
	}
	agentID := cfg.Collector.AgentID
	if agentID == "" {
		agentID = cfg.Host
	}
	scfg := shipper.Config{
		Address: cfg.Collector.Address, AgentID: agentID, Host: cfg.Host, BootID: bootID(),
		ServerName: cfg.Collector.ServerName, DrainBytesPerSecond: cfg.Spool.DrainRate,
	}
	deps := shipper.Deps{Logger: log, Health: health, TLS: tlsCfg, Queue: queue}
	if cmds != nil {
		deps.Commands = cmds
	}
	return shipper.New(scfg, deps)
}

// containerStats is the resolver's Stats, or nil when attribution is off.
func containerStats(r *container.Resolver) func() container.Stats {
	if r == nil {
		return nil
	}
	return r.Stats
}

// selfPID is the agent's process id as the kernel reports it: read from
// the host's proc (proc_root/self) when the agent runs in a container
// with its own pid namespace.
func selfPID(procRoot string) uint32 {
	if l, err := os.Readlink(procRoot + "/self"); err == nil {
		if pid, err := strconv.ParseUint(l, 10, 32); err == nil {
			return uint32(pid)
		}
	}
	return uint32(os.Getpid())
}

// bootID identifies this boot of the host (the kernel's random boot id).
func bootID() string {
	if b, err := os.ReadFile("/proc/sys/kernel/random/boot_id"); err == nil {
		return strings.TrimSpace(string(b))
	}
	var r [16]byte
	_, _ = rand.Read(r[:])
	return hex.EncodeToString(r[:])
}
