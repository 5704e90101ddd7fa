// Command watchpost-agent is Watchpost's host sensor: it loads the kernel
// programs, enriches what they report and writes events to stdout as JSON
// lines and/or streams them to a collector.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/rs/zerolog"

	"github.com/watchpost/watchpost/agent/app"
	"github.com/watchpost/watchpost/agent/config"
	"github.com/watchpost/watchpost/agent/kernel"
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
	// main alone owns signals and exit codes.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("watchpost-agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
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
		fmt.Fprintln(stdout, version.Version)
		return exitOK
	}
	if *probeOnly {
		f, err := kernel.Probe()
		b, _ := json.MarshalIndent(f, "", "  ")
		fmt.Fprintln(stdout, string(b))
		if err != nil {
			fmt.Fprintf(stderr, "watchpost-agent: %v\n", err)
			return exitUnsupported
		}
		return exitOK
	}

	cfg, err := config.Load(*configPath)
	if err != nil {
		fmt.Fprintf(stderr, "watchpost-agent: %v\n", err)
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
		fmt.Fprintf(stderr, "watchpost-agent: configuration: %v\n", err)
		return exitUsage
	}

	lvl, _ := zerolog.ParseLevel(cfg.LogLevel)
	log := zerolog.New(stderr).Level(lvl).With().Timestamp().Str("agent", cfg.Host).Logger()
	if err := app.Run(ctx, cfg, log, app.Options{Stdout: stdout}); err != nil {
		if errors.Is(err, kernel.ErrUnsupported) {
			fmt.Fprintf(stderr, "watchpost-agent: %v\n", err)
			return exitUnsupported
		}
		log.Error().Err(err).Msg("agent stopped")
		return exitRuntime
	}
	return exitOK
}
