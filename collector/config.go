package collector

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config is the collector's configuration: defaults, then the YAML file,
// then flags, then Validate.
type Config struct {
	// DataDir holds the event database (events.db).
	DataDir  string `yaml:"data_dir"`
	LogLevel string `yaml:"log_level"`
	// ShutdownTimeout bounds the graceful stop before a forced stop.
	ShutdownTimeout time.Duration   `yaml:"shutdown_timeout"`
	Ingest          IngestConfig    `yaml:"ingest"`
	Query           QueryConfig     `yaml:"query"`
	Retention       RetentionConfig `yaml:"retention"`
	Dashboard       DashboardConfig `yaml:"dashboard"`
}

// IngestConfig is the agents' endpoint (gRPC, mutual TLS required).
type IngestConfig struct {
	Listen       string `yaml:"listen"`
	CertFile     string `yaml:"cert_file"`
	KeyFile      string `yaml:"key_file"`
	ClientCAFile string `yaml:"client_ca_file"`
	// MaxMessageBytes caps a received message before decompression.
	MaxMessageBytes int `yaml:"max_message_bytes"`
	// MaxUncompressedBytes caps a batch after decompression.
	MaxUncompressedBytes int `yaml:"max_uncompressed_bytes"`
	MaxEventsPerBatch    int `yaml:"max_events_per_batch"`
	MaxStringBytes       int `yaml:"max_string_bytes"`
	MaxListLen           int `yaml:"max_list_len"`
	// MaxStreams caps concurrent ingest streams in total;
	// MaxStreamsPerConnection is the HTTP/2 limit per connection.
	MaxStreams              int `yaml:"max_streams"`
	MaxStreamsPerConnection int `yaml:"max_streams_per_connection"`
	// RateEventsPerSecond and RateBurst limit each agent; a faster agent is
	// slowed down (its stream is read more slowly), not refused.
	RateEventsPerSecond float64 `yaml:"rate_events_per_second"`
	RateBurst           int     `yaml:"rate_burst"`
	// Keepalive: agents may ping every KeepaliveMinTime; the collector pings
	// idle connections every KeepaliveTime and drops them after KeepaliveTimeout.
	KeepaliveMinTime time.Duration `yaml:"keepalive_min_time"`
	KeepaliveTime    time.Duration `yaml:"keepalive_time"`
	KeepaliveTimeout time.Duration `yaml:"keepalive_timeout"`
	// MaxPendingBatches is how many received batches of one stream may
	// wait for their commit (they are committed together).
	MaxPendingBatches int `yaml:"max_pending_batches"`
}

// QueryConfig is the query endpoint: gRPC QueryService and HTTP/JSON on
// one port.
type QueryConfig struct {
	Listen   string `yaml:"listen"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// Tokens are bearer tokens; required unless Listen is a loopback address.
	Tokens       []Token `yaml:"tokens"`
	DefaultLimit int     `yaml:"default_limit"`
	MaxLimit     int     `yaml:"max_limit"`
}

// Token is one API credential.
type Token struct {
	Name  string `yaml:"name"`
	Token string `yaml:"token"`
	// Role is "read" (queries) or "admin" (queries and retention).
	Role string `yaml:"role"`
}

// Roles.
const (
	RoleRead  = "read"
	RoleAdmin = "admin"
)

// DashboardConfig is the web dashboard served under /ui/ on the query
// listener. Login takes one of query.tokens and is required whenever the
// query API needs tokens (off loopback, or tokens configured).
type DashboardConfig struct {
	Enabled bool `yaml:"enabled"`
	// SessionTTL is how long a dashboard session lives after its last use.
	SessionTTL  time.Duration `yaml:"session_ttl"`
	MaxSessions int           `yaml:"max_sessions"`
}

// RetentionConfig bounds the store by age and size (whole hourly
// partitions are dropped).
type RetentionConfig struct {
	MaxAge   time.Duration `yaml:"max_age"`
	MaxBytes int64         `yaml:"max_bytes"`
	Interval time.Duration `yaml:"interval"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		DataDir:         "/var/lib/watchpost-collector",
		LogLevel:        "info",
		ShutdownTimeout: 10 * time.Second,
		Ingest: IngestConfig{
			Listen:                  "0.0.0.0:7443",
			MaxMessageBytes:         8 << 20,
			MaxUncompressedBytes:    32 << 20,
			MaxEventsPerBatch:       10000,
			MaxStringBytes:          16 << 10,
			MaxListLen:              1024,
			MaxStreams:              1024,
			MaxStreamsPerConnection: 4,
			RateEventsPerSecond:     50000,
			RateBurst:               100000,
			KeepaliveMinTime:        20 * time.Second,
			KeepaliveTime:           60 * time.Second,
			KeepaliveTimeout:        20 * time.Second,
			MaxPendingBatches:       16,
		},
		Query: QueryConfig{
			Listen:       "127.0.0.1:7444",
			DefaultLimit: 100,
			MaxLimit:     10000,
		},
		Retention: RetentionConfig{
			MaxAge:   30 * 24 * time.Hour,
			MaxBytes: 20 << 30,
			Interval: time.Minute,
		},
		Dashboard: DashboardConfig{Enabled: true, SessionTTL: 8 * time.Hour, MaxSessions: 1024},
	}
}

// LoadFile overlays a YAML file on c. Unknown keys are errors.
func (c *Config) LoadFile(name string) error {
	data, err := os.ReadFile(name)
	if err != nil {
		return fmt.Errorf("reading config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil {
		return fmt.Errorf("parsing config %s: %w", name, err)
	}
	return nil
}

// Validate names the first bad key.
func (c *Config) Validate() error {
	i, q, r := &c.Ingest, &c.Query, &c.Retention
	switch {
	case c.DataDir == "":
		return errors.New("data_dir: required")
	case c.ShutdownTimeout <= 0:
		return errors.New("shutdown_timeout: must be positive")
	case i.Listen == "":
		return errors.New("ingest.listen: required")
	case i.CertFile == "" || i.KeyFile == "":
		return errors.New("ingest.cert_file, ingest.key_file: required (agents connect with mutual TLS)")
	case i.ClientCAFile == "":
		return errors.New("ingest.client_ca_file: required (agents connect with mutual TLS)")
	case i.MaxMessageBytes < 1024:
		return errors.New("ingest.max_message_bytes: must be at least 1024")
	case i.MaxUncompressedBytes < i.MaxMessageBytes:
		return errors.New("ingest.max_uncompressed_bytes: must be at least ingest.max_message_bytes")
	case i.MaxEventsPerBatch < 1:
		return errors.New("ingest.max_events_per_batch: must be at least 1")
	case i.MaxStringBytes < 256:
		return errors.New("ingest.max_string_bytes: must be at least 256")
	case i.MaxListLen < 1:
		return errors.New("ingest.max_list_len: must be at least 1")
	case i.MaxStreams < 1:
		return errors.New("ingest.max_streams: must be at least 1")
	case i.MaxStreamsPerConnection < 1:
		return errors.New("ingest.max_streams_per_connection: must be at least 1")
	case i.RateEventsPerSecond <= 0:
		return errors.New("ingest.rate_events_per_second: must be positive")
	case i.RateBurst < i.MaxEventsPerBatch:
		return errors.New("ingest.rate_burst: must be at least ingest.max_events_per_batch")
	case i.KeepaliveMinTime <= 0 || i.KeepaliveTime <= 0 || i.KeepaliveTimeout <= 0:
		return errors.New("ingest.keepalive_min_time, keepalive_time, keepalive_timeout: must be positive")
	case i.MaxPendingBatches < 1:
		return errors.New("ingest.max_pending_batches: must be at least 1")
	case q.Listen == "":
		return errors.New("query.listen: required")
	case q.DefaultLimit < 1 || q.MaxLimit < q.DefaultLimit:
		return errors.New("query.default_limit, query.max_limit: need 1 <= default_limit <= max_limit")
	case r.MaxAge < 0 || r.MaxBytes < 0:
		return errors.New("retention.max_age, retention.max_bytes: must not be negative")
	case r.Interval <= 0:
		return errors.New("retention.interval: must be positive")
	case c.Dashboard.Enabled && c.Dashboard.SessionTTL < time.Minute:
		return errors.New("dashboard.session_ttl: must be at least 1m")
	case c.Dashboard.Enabled && c.Dashboard.MaxSessions < 1:
		return errors.New("dashboard.max_sessions: must be at least 1")
	}
	for n, t := range q.Tokens {
		switch {
		case len(t.Token) < 16:
			return fmt.Errorf("query.tokens[%d].token: must be at least 16 characters", n)
		case t.Role != RoleRead && t.Role != RoleAdmin:
			return fmt.Errorf("query.tokens[%d].role: %q is not read or admin", n, t.Role)
		}
	}
	loop, err := isLoopback(q.Listen)
	if err != nil {
		return fmt.Errorf("query.listen: %w", err)
	}
	if !loop {
		if len(q.Tokens) == 0 {
			return errors.New("query.tokens: required when query.listen is not a loopback address")
		}
		if q.CertFile == "" || q.KeyFile == "" {
			return errors.New("query.cert_file, query.key_file: required when query.listen is not a loopback address")
		}
	}
	return nil
}

// DBPath is the event database file.
func (c *Config) DBPath() string { return filepath.Join(c.DataDir, "events.db") }

func isLoopback(addr string) (bool, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false, err
	}
	if host == "localhost" {
		return true, nil
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback(), nil
}
