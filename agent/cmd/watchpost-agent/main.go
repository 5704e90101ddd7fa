// Command watchpost-agent is Watchpost's host sensor: it loads the kernel
// programs, enriches what they report and writes events to stdout as JSON
// lines and/or streams them to a collector.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/watchpost/watchpost/agent/config"
	"github.com/watchpost/watchpost/agent/kernel"
	"github.com/watchpost/watchpost/agent/metrics"
	"github.com/watchpost/watchpost/agent/output"
	"github.com/watchpost/watchpost/agent/pipeline"
	"github.com/watchpost/watchpost/agent/proctable"
	"github.com/watchpost/watchpost/agent/version"
)

// Exit codes.
const (
	exitOK          = 0
	exitRuntime     = 1
	exitUsage       = 2
	exitUnsupported = 3
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	fs := flag.NewFlagSet("watchpost-agent", flag.ContinueOnError)
	configPath := fs.String("config", "", "YAML configuration file (see docs/configuration.md)")
	out := fs.String("output", "", "where events go: stdout, collector or both (overrides the file)")
	logLevel := fs.String("log-level", "", "debug, info, warn or error (overrides the file)")
	host := fs.String("host", "", "host name reported with every event (default: the hostname)")
	collector := fs.String("collector", "", "collector address host:port (overrides the file)")
	probeOnly := fs.Bool("probe", false, "probe the kernel, print what was found as JSON and exit")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if *showVersion {
		fmt.Println(version.Version)
		return exitOK
	}

	cfg, err := config.Load(*configPath)
	if err != nil {
		fmt.Fprintf(os.Stderr, "watchpost-agent: %v\n", err)
		return exitUsage
	}
	if *out != "" {
		cfg.Output = *out
	}
	if *logLevel != "" {
		cfg.LogLevel = *logLevel
	}
	if *host != "" {
		cfg.Host = *host
	}
	if *collector != "" {
		cfg.Collector.Address = *collector
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(os.Stderr, "watchpost-agent: configuration: %v\n", err)
		return exitUsage
	}

	lvl, _ := zerolog.ParseLevel(cfg.LogLevel)
	log := zerolog.New(os.Stderr).Level(lvl).With().Timestamp().Str("agent", cfg.Host).Logger()

	if *probeOnly {
		f, err := kernel.Probe()
		fmt.Printf("%+v\n", f)
		if err != nil {
			fmt.Fprintf(os.Stderr, "watchpost-agent: %v\n", err)
			return exitUnsupported
		}
		return exitOK
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := runAgent(ctx, cfg, log); err != nil {
		log.Error().Err(err).Msg("agent stopped")
		if errors.Is(err, kernel.ErrUnsupported) {
			fmt.Fprintf(os.Stderr, "watchpost-agent: %v\n", err)
			return exitUnsupported
		}
		return exitRuntime
	}
	return exitOK
}

func runAgent(ctx context.Context, cfg config.Config, log zerolog.Logger) error {
	kcfg, _ := cfg.KernelConfig()
	kcfg.AgentPID = uint32(os.Getpid())

	table, err := proctable.New(cfg.TableConfig())
	if err != nil {
		return err
	}
	// Seed before attaching would miss processes started in between; seed
	// after attaching and let events override the snapshot.
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
	if err := table.Seed(); err != nil {
		return err
	}
	log.Info().Int("processes", table.Stats().Live).Msg("process table seeded")

	var sinks []output.Sink
	if cfg.Output == config.OutputStdout || cfg.Output == config.OutputBoth {
		sinks = append(sinks, output.NewJSONLines(os.Stdout, nil))
	}
	if cfg.Output == config.OutputCollector || cfg.Output == config.OutputBoth {
		s, err := newCollectorSink(ctx, cfg, sensor.Features(), log)
		if err != nil {
			return err
		}
		sinks = append(sinks, s)
	}
	pcfg := cfg.PipelineConfig()
	if pcfg.Tagger, err = cfg.Classifier(); err != nil {
		return err
	}
	p, err := pipeline.New(pcfg, log, sensor, table, sinks...)
	if err != nil {
		return err
	}
	if cfg.MetricsAddr != "" {
		m, err := metrics.New(cfg.MetricsAddr, metrics.Sources{
			Kernel: sensor.Stats, Programs: sensor.Programs, Delivered: p.Delivered, Table: table.Stats,
		}, log)
		if err != nil {
			return err
		}
		m.Start()
		log.Info().Str("addr", m.Addr()).Msg("serving /metrics and /healthz")
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_ = m.Shutdown(ctx)
		}()
	}
	log.Info().Str("output", cfg.Output).Str("version", version.Version).Msg("watchpost agent running")
	err = p.Run(ctx)

	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, s := range sinks {
		if cerr := closeSink(shutdownCtx, s); cerr != nil {
			log.Warn().Err(cerr).Msg("closing output")
		}
	}
	return err
}

func closeSink(_ context.Context, s output.Sink) error { return s.Close() }
