// Command watchpost-collector receives events from Watchpost agents, stores
// them and serves the query API.
//
//	watchpost-collector serve --config /etc/watchpost/collector.yaml
//	watchpost-collector certs --dir /etc/watchpost/pki --agents gw1,gw2 --hosts collector.plant,10.1.2.3
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/watchpost/watchpost/collector"
	"github.com/watchpost/watchpost/collector/certs"
	"github.com/watchpost/watchpost/internal/version"
)

func main() {
	if err := newRoot().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "watchpost-collector:", err)
		os.Exit(1)
	}
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "watchpost-collector",
		Short:         "Receive, store and serve Watchpost events",
		Version:       version.Version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newServe(), newWriter(), newCerts())
	return root
}

func newServe() *cobra.Command {
	var configFile, dataDir, ingestListen, queryListen, logLevel string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the collector",
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(configFile)
			if err != nil {
				return err
			}
			flags := cmd.Flags()
			if flags.Changed("data-dir") {
				cfg.DataDir = dataDir
			}
			if flags.Changed("ingest-listen") {
				cfg.Ingest.Listen = ingestListen
			}
			if flags.Changed("query-listen") {
				cfg.Query.Listen = queryListen
			}
			if flags.Changed("log-level") {
				cfg.LogLevel = logLevel
			}
			if err := cfg.Validate(); err != nil {
				return fmt.Errorf("config: %w", err)
			}
			log, err := newLogger(cfg)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			c, err := collector.New(cfg, collector.Deps{Logger: log})
			if err != nil {
				return err
			}
			if err := c.Start(ctx); err != nil {
				_ = c.Shutdown(context.Background())
				return err
			}
			<-ctx.Done()
			log.Info().Msg("signal received, stopping")
			return c.Shutdown(context.Background())
		},
	}
	f := cmd.Flags()
	f.StringVar(&configFile, "config", "", "YAML configuration file")
	f.StringVar(&dataDir, "data-dir", "", "directory of the event database (data_dir)")
	f.StringVar(&ingestListen, "ingest-listen", "", "agents' mutual-TLS endpoint (ingest.listen)")
	f.StringVar(&queryListen, "query-listen", "", "query API endpoint (query.listen)")
	f.StringVar(&logLevel, "log-level", "", "debug, info, warn or error (log_level)")
	return cmd
}

// loadConfig overlays the file, if any, on the defaults.
func loadConfig(file string) (collector.Config, error) {
	cfg := collector.DefaultConfig()
	if file != "" {
		if err := cfg.LoadFile(file); err != nil {
			return cfg, err
		}
	}
	return cfg, nil
}

func newLogger(cfg collector.Config) (zerolog.Logger, error) {
	level, err := zerolog.ParseLevel(cfg.LogLevel)
	if err != nil {
		return zerolog.Logger{}, fmt.Errorf("config: log_level: %w", err)
	}
	return zerolog.New(os.Stderr).Level(level).With().Timestamp().Logger(), nil
}

func newWriter() *cobra.Command {
	var configFile, logLevel string
	cmd := &cobra.Command{
		Use:   "writer",
		Short: "Run a store writer: batches from the JetStream queue into PostgreSQL (queue: nats, store: postgres)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(configFile)
			if err != nil {
				return err
			}
			if cmd.Flags().Changed("log-level") {
				cfg.LogLevel = logLevel
			}
			log, err := newLogger(cfg)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			w, err := collector.NewWriter(cfg, collector.Deps{Logger: log})
			if err != nil {
				return fmt.Errorf("config: %w", err)
			}
			if err := w.Start(ctx); err != nil {
				_ = w.Shutdown(context.Background())
				return err
			}
			<-ctx.Done()
			log.Info().Msg("signal received, stopping")
			return w.Shutdown(context.Background())
		},
	}
	cmd.Flags().StringVar(&configFile, "config", "", "YAML configuration file (the collector's: store, postgres, queue, nats, retention, writer)")
	cmd.Flags().StringVar(&logLevel, "log-level", "", "debug, info, warn or error (log_level)")
	return cmd
}

func newCerts() *cobra.Command {
	var dir, agents, hosts string
	cmd := &cobra.Command{
		Use:   "certs",
		Short: "Create a CA, the collector's certificate and one certificate per agent (ECDSA P-256, files 0600)",
		RunE: func(_ *cobra.Command, _ []string) error {
			var names []string
			for _, a := range strings.Split(agents, ",") {
				if a = strings.TrimSpace(a); a != "" {
					names = append(names, a)
				}
			}
			var hs []string
			for _, h := range strings.Split(hosts, ",") {
				if h = strings.TrimSpace(h); h != "" {
					hs = append(hs, h)
				}
			}
			if err := certs.Generate(certs.Options{Dir: dir, Agents: names, Hosts: hs}); err != nil {
				return err
			}
			fmt.Printf("wrote %s, %s, %s, %s", certs.CAFile, certs.CAKeyFile, certs.ServerFile, certs.ServerKeyFile)
			for _, n := range names {
				c, k := certs.AgentFiles(n)
				fmt.Printf(", %s, %s", c, k)
			}
			fmt.Printf(" to %s\n", dir)
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "output directory (created 0700)")
	cmd.Flags().StringVar(&agents, "agents", "", "comma-separated agent ids (certificate common names)")
	cmd.Flags().StringVar(&hosts, "hosts", "127.0.0.1,localhost", "comma-separated DNS names and IPs of the collector")
	_ = cmd.MarkFlagRequired("dir")
	return cmd
}
