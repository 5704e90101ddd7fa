// Command watchpost-agent is Watchpost's host sensor: it loads the kernel
// programs, enriches what they report and writes events to stdout as JSON
// lines and/or streams them to a collector.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/pflag"

	"github.com/watchpost/watchpost/agent/app"
	"github.com/watchpost/watchpost/agent/config"
	"github.com/watchpost/watchpost/agent/kernel"
	"github.com/watchpost/watchpost/internal/version"
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

// usage is the head of --help; the flags follow, in the style of the
// collector's and the CLI's help.
const usage = `watchpost-agent is Watchpost's host sensor: it loads the kernel programs, enriches
what they report and writes events to stdout as JSON lines and/or streams them
to a collector. It needs root (or CAP_BPF and CAP_PERFMON). SIGINT or SIGTERM
detaches every program, drains the ring buffer, ships the last events and exits.

Usage:
  watchpost-agent [flags]

Flags:
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	// The same flag syntax as watchpost and watchpost-collector (pflag,
	// which cobra uses): --name value or --name=value, -h/--help.
	fs := pflag.NewFlagSet("watchpost-agent", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.SortFlags = false
	fs.Usage = func() {}
	configPath := fs.String("config", "", "YAML configuration file (see docs/configuration.md)")
	out := fs.String("output", "", "where events go: stdout, collector or both (overrides the file)")
	logLevel := fs.String("log-level", "", "debug, info, warn or error (overrides the file)")
	host := fs.String("host", "", "host name reported with every event (default: the hostname)")
	collector := fs.String("collector", "", "collector address host:port (overrides the file)")
	probeOnly := fs.Bool("probe", false, "probe the kernel, print what was found as JSON and exit")
	showVersion := fs.Bool("version", false, "print the version and exit")
	reloadEvery := fs.Duration("reload-interval", 10*time.Second, "how often the configuration file, the certificates it names and the rules directory are checked for changes; 0 disables")
	pprofAddr := fs.String("pprof", os.Getenv("WATCHPOST_PPROF"), "serve Go profiles (/debug/pprof/) on this address, e.g. 127.0.0.1:6060 (env WATCHPOST_PPROF); off when empty")
	noEnforce := fs.Bool("no-enforce", false, "kill switch: attach no response hook, so no policy kills or blocks anything (overrides response.no_enforce)")
	help := fs.BoolP("help", "h", false, "print this help and exit")
	if err := fs.Parse(args); err != nil {
		fmt.Fprintf(stderr, "watchpost-agent: %v\nRun 'watchpost-agent --help' for usage.\n", err)
		return exitUsage
	}
	if *help {
		fmt.Fprint(stdout, usage+fs.FlagUsages())
		return exitOK
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "watchpost-agent: unexpected argument %q\nRun 'watchpost-agent --help' for usage.\n", fs.Arg(0))
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

	load := func() (config.Config, error) {
		cfg, err := config.Load(*configPath)
		if err != nil {
			return cfg, err
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
			return cfg, fmt.Errorf("configuration: %w", err)
		}
		return cfg, nil
	}
	cfg, err := load()
	if err != nil {
		fmt.Fprintf(stderr, "watchpost-agent: %v\n", err)
		return exitUsage
	}
	if *pprofAddr != "" {
		stopProfiles, err := serveProfiles(*pprofAddr)
		if err != nil {
			fmt.Fprintf(stderr, "watchpost-agent: --pprof: %v\n", err)
			return exitUsage
		}
		defer stopProfiles()
	}
	// SIGHUP and a changed rules directory reload the detection rules.
	reload := make(chan os.Signal, 1)
	signal.Notify(reload, syscall.SIGHUP)
	defer signal.Stop(reload)
	for {
		lvl, _ := zerolog.ParseLevel(cfg.LogLevel)
		log := zerolog.New(stderr).Level(lvl).With().Timestamp().Str("agent", cfg.Host).Logger()
		runCtx, stop := context.WithCancel(ctx)
		restart := make(chan config.Config, 1)
		if *reloadEvery > 0 && *configPath != "" {
			w := newWatcher(*reloadEvery, *configPath, cfg, load, log)
			go func() {
				w.run(runCtx, reload, restart)
				if len(restart) > 0 {
					stop()
				}
			}()
		}
		err := app.Run(runCtx, cfg, log, app.Options{Stdout: stdout, Reload: reload, NoEnforce: *noEnforce})
		stop()
		if err != nil {
			if errors.Is(err, kernel.ErrUnsupported) {
				fmt.Fprintf(stderr, "watchpost-agent: %v\n", err)
				return exitUnsupported
			}
			log.Error().Err(err).Msg("agent stopped")
			return exitRuntime
		}
		select {
		case next := <-restart:
			if ctx.Err() == nil {
				cfg = next
				continue
			}
		default:
		}
		return exitOK
	}
}

// serveProfiles serves the Go runtime's profiles (net/http/pprof) on addr,
// for performance work; it returns the function that stops the server.
func serveProfiles(addr string) (func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return func() { _ = srv.Close() }, nil
}
