// Package config is the agent's configuration: defaults, then the YAML
// file, then command-line flags, then Validate, which names the bad key.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/watchpost/watchpost/agent/event"
	"github.com/watchpost/watchpost/agent/kernel"
	"github.com/watchpost/watchpost/agent/pipeline"
	"github.com/watchpost/watchpost/agent/proctable"
)

// Outputs the agent can write to.
const (
	OutputStdout    = "stdout"
	OutputCollector = "collector"
	OutputBoth      = "both"
)

// Config is the whole agent configuration. YAML keys are documented in
// docs/configuration.md.
type Config struct {
	Host           string        `yaml:"host"`
	Output         string        `yaml:"output"`
	LogLevel       string        `yaml:"log_level"`
	HealthInterval time.Duration `yaml:"health_interval"`
	MetricsAddr    string        `yaml:"metrics_addr"`
	Kernel         Kernel        `yaml:"kernel"`
	ProcessTable   ProcessTable  `yaml:"process_table"`
	Collector      Collector     `yaml:"collector"`
}

// Kernel configures capture.
type Kernel struct {
	RingBytes    int           `yaml:"ring_bytes"`
	WakeupBytes  uint64        `yaml:"wakeup_bytes"`
	PollInterval time.Duration `yaml:"poll_interval"`
	QueueLen     int           `yaml:"queue_len"`
	Threads      bool          `yaml:"threads"`
	// Events lists the wanted event types by name; empty means all.
	Events []string `yaml:"events"`
}

// ProcessTable configures ancestry tracking.
type ProcessTable struct {
	MaxEntries    int           `yaml:"max_entries"`
	MaxExited     int           `yaml:"max_exited"`
	Grace         time.Duration `yaml:"grace"`
	Depth         int           `yaml:"depth"`
	SweepInterval time.Duration `yaml:"sweep_interval"`
}

// Collector configures the connection to the collector (output collector or both).
type Collector struct {
	Address string `yaml:"address"`
	CA      string `yaml:"ca"`
	Cert    string `yaml:"cert"`
	Key     string `yaml:"key"`
	// ServerName overrides the name checked in the collector's certificate.
	ServerName string `yaml:"server_name"`
}

// Default returns the documented defaults.
func Default() Config {
	k := kernel.DefaultConfig()
	pt := proctable.DefaultConfig()
	host, _ := os.Hostname()
	return Config{
		Host:           host,
		Output:         OutputStdout,
		LogLevel:       "info",
		HealthInterval: 30 * time.Second,
		MetricsAddr:    "127.0.0.1:9464",
		Kernel: Kernel{
			RingBytes: k.RingBytes, WakeupBytes: k.WakeupBytes, PollInterval: k.PollInterval,
			QueueLen: k.QueueLen,
		},
		ProcessTable: ProcessTable{
			MaxEntries: pt.MaxEntries, MaxExited: pt.MaxExited, Grace: pt.Grace, Depth: pt.Depth,
			SweepInterval: 30 * time.Second,
		},
		Collector: Collector{Address: "127.0.0.1:7443"},
	}
}

// Load reads a YAML file over the defaults. Unknown keys are errors.
func Load(path string) (Config, error) {
	c := Default()
	if path == "" {
		return c, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return c, fmt.Errorf("reading config: %w", err)
	}
	defer f.Close()
	if err := decode(f, &c); err != nil {
		return c, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

func decode(r io.Reader, c *Config) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// Validate checks every setting; the error names the key.
func (c Config) Validate() error {
	switch c.Output {
	case OutputStdout, OutputCollector, OutputBoth:
	default:
		return fmt.Errorf("output: %q is not one of stdout, collector, both", c.Output)
	}
	if c.Output != OutputStdout {
		if c.Collector.Address == "" {
			return errors.New("collector.address: required when output is collector or both")
		}
		for key, v := range map[string]string{"collector.ca": c.Collector.CA, "collector.cert": c.Collector.Cert, "collector.key": c.Collector.Key} {
			if v == "" {
				return fmt.Errorf("%s: required when output is collector or both (mutual TLS)", key)
			}
		}
	}
	if c.Host == "" {
		return errors.New("host: empty, and the hostname could not be read")
	}
	if _, err := ParseLogLevel(c.LogLevel); err != nil {
		return err
	}
	if _, err := c.KernelConfig(); err != nil {
		return err
	}
	if err := c.TableConfig().Validate(); err != nil {
		return err
	}
	return c.PipelineConfig().Validate()
}

// KernelConfig translates to the kernel package's settings.
func (c Config) KernelConfig() (kernel.Config, error) {
	k := kernel.DefaultConfig()
	k.RingBytes = c.Kernel.RingBytes
	k.WakeupBytes = c.Kernel.WakeupBytes
	k.PollInterval = c.Kernel.PollInterval
	k.QueueLen = c.Kernel.QueueLen
	k.Threads = c.Kernel.Threads
	for i, name := range c.Kernel.Events {
		kind, err := event.ParseKind(name)
		if err != nil {
			return k, fmt.Errorf("kernel.events[%d]: %w", i, err)
		}
		k.Kinds = append(k.Kinds, kind)
	}
	return k, k.Validate()
}

// TableConfig translates to the process table's settings.
func (c Config) TableConfig() proctable.Config {
	t := proctable.DefaultConfig()
	t.MaxEntries = c.ProcessTable.MaxEntries
	t.MaxExited = c.ProcessTable.MaxExited
	t.Grace = c.ProcessTable.Grace
	t.Depth = c.ProcessTable.Depth
	return t
}

// PipelineConfig translates to the pipeline's settings.
func (c Config) PipelineConfig() pipeline.Config {
	return pipeline.Config{Host: c.Host, HealthInterval: c.HealthInterval, SweepInterval: c.ProcessTable.SweepInterval}
}

// ParseLogLevel accepts debug, info, warn, error.
func ParseLogLevel(s string) (string, error) {
	switch strings.ToLower(s) {
	case "debug", "info", "warn", "error":
		return strings.ToLower(s), nil
	}
	return "", fmt.Errorf("log_level: %q is not one of debug, info, warn, error", s)
}
