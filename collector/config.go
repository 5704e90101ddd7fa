package collector

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/watchpost/watchpost/proto/limits"
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
	// Store is the engine: "embedded" (SQLite in DataDir, the default) or
	// "postgres" (a database shared by any number of collectors and writers).
	Store    string         `yaml:"store"`
	Postgres PostgresConfig `yaml:"postgres"`
	// Queue is where validated batches go before the store: "none" (the
	// collector stores them itself) or "nats" (a JetStream stream; store
	// writers consume it and write PostgreSQL).
	Queue  string       `yaml:"queue"`
	NATS   NATSConfig   `yaml:"nats"`
	Writer WriterConfig `yaml:"writer"`
}

// WriterConfig is the store writer's own endpoint (`watchpost-collector writer`).
type WriterConfig struct {
	// Listen serves /metrics and /healthz ("" for none).
	Listen string `yaml:"listen"`
	// Concurrency is the number of transactions a writer has in flight.
	Concurrency int `yaml:"concurrency"`
}

// Store engines and queues.
const (
	StoreEmbedded = "embedded"
	StorePostgres = "postgres"
	QueueNone     = "none"
	QueueNATS     = "nats"
)

// PostgresConfig is the shared PostgreSQL database (store: postgres).
type PostgresConfig struct {
	// URL is a libpq connection string (postgres://user@host:5432/db?sslmode=verify-full).
	URL string `yaml:"url"`
	// MaxConns bounds the connection pool of this process.
	MaxConns int32 `yaml:"max_conns"`
}

// NATSConfig is the JetStream queue (queue: nats).
type NATSConfig struct {
	// URLs of the NATS servers (nats://host:4222); any member of a cluster will do, list several.
	URLs []string `yaml:"urls"`
	// Stream is the JetStream stream; its subjects are <stream prefix>.<site>.<agent>.<kind>.
	Stream string `yaml:"stream"`
	// Subject is the first token of every subject (watchpost).
	Subject string `yaml:"subject"`
	// Site names this collector's site in the subjects.
	Site string `yaml:"site"`
	// Replicas of the stream: 3 in a cluster, 1 on a single node.
	Replicas int `yaml:"replicas"`
	// MaxBytes bounds the stream; when it is full, publishes fail and the
	// agents are asked to retry (they keep the batches in their spools).
	MaxBytes int64 `yaml:"max_bytes"`
	// PublishTimeout bounds the wait for JetStream's acknowledgement of a batch.
	PublishTimeout time.Duration `yaml:"publish_timeout"`
	// CredsFile, CAFile, CertFile and KeyFile authenticate to NATS (all optional).
	CredsFile string `yaml:"creds_file"`
	CAFile    string `yaml:"ca_file"`
	CertFile  string `yaml:"cert_file"`
	KeyFile   string `yaml:"key_file"`
	// Consumer is the durable consumer the store writers share.
	Consumer string `yaml:"consumer"`
	// AckWait is how long a writer may hold a batch before it is delivered
	// to another writer.
	AckWait time.Duration `yaml:"ack_wait"`
	// FetchBatches is how many messages a writer takes (and commits) at once.
	FetchBatches int `yaml:"fetch_batches"`
	// Mode is "central" (the stream the writers consume) or "site" (a
	// plant's own JetStream node, which the central stream sources).
	Mode string `yaml:"mode"`
	// Sources are the site streams the central stream takes batches from,
	// across leaf node connections (central mode).
	Sources []NATSSource `yaml:"sources"`
}

// NATS modes.
const (
	NATSCentral = "central"
	NATSSite    = "site"
)

// NATSSource is a site's stream as the central stream sources it.
type NATSSource struct {
	// Domain is the site node's JetStream domain.
	Domain string `yaml:"domain"`
	// Stream is the site's stream name (default: nats.stream).
	Stream string `yaml:"stream"`
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

	// Per-agent budgets (one agent certificate cannot exhaust the
	// collector): streams per identity, independent of max_streams;
	// decompressed bytes per second; heartbeats per second; memory held
	// for batches waiting for their commit, per agent and in total.
	MaxStreamsPerAgent       int     `yaml:"max_streams_per_agent"`
	RateBytesPerSecond       float64 `yaml:"rate_bytes_per_second"`
	RateBytesBurst           int64   `yaml:"rate_bytes_burst"`
	HeartbeatsPerSecond      float64 `yaml:"heartbeats_per_second"`
	HeartbeatBurst           int     `yaml:"heartbeat_burst"`
	MaxInflightBytesPerAgent int64   `yaml:"max_inflight_bytes_per_agent"`
	MaxInflightBytes         int64   `yaml:"max_inflight_bytes"`
	// MaxEventBytes caps one event after over-long fields were shortened;
	// MaxCompressionRatio caps uncompressed/compressed size of a batch.
	MaxEventBytes       int `yaml:"max_event_bytes"`
	MaxCompressionRatio int `yaml:"max_compression_ratio"`
	// MaxClockSkew: event times later than receipt + this are clamped to
	// the receipt time (and flagged).
	MaxClockSkew time.Duration `yaml:"max_clock_skew"`
	// RevocationFile lists revoked agent certificates
	// (watchpost-collector certs revoke); re-read when it changes.
	// Default: data_dir/revoked.json.
	RevocationFile string `yaml:"revocation_file"`
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
	// Timeout is the deadline of each client request's store reads (the
	// wait for a slot included); MaxScanRows bounds the stored rows one
	// event search reads. A search that reaches either returns the newest
	// events it found, marked cost_limited. MaxConcurrent client requests
	// read the store at once (the others wait, within their Timeout), so
	// that ingest keeps its share of the CPU.
	Timeout       time.Duration `yaml:"timeout"`
	MaxScanRows   uint64        `yaml:"max_scan_rows"`
	MaxConcurrent int           `yaml:"max_concurrent"`
	// AllowedHosts are Host header values (without port) the query
	// listener answers on a loopback address, besides localhost,
	// 127.0.0.1 and ::1: a page on another site that rebinds its DNS
	// name to 127.0.0.1 is refused.
	AllowedHosts []string `yaml:"allowed_hosts"`
	// AuthFailuresPerSecond and AuthFailureBurst bound wrong bearer
	// tokens, as the dashboard login is bounded: beyond them an unknown
	// token is answered ResourceExhausted (a valid token still works).
	AuthFailuresPerSecond float64 `yaml:"auth_failures_per_second"`
	AuthFailureBurst      int     `yaml:"auth_failure_burst"`
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
	MaxAge time.Duration `yaml:"max_age"`
	// MaxBytes caps the database (the pages its tables use). Each agent
	// keeps at least its share of it (MaxBytes / agents); over MaxBytes,
	// the agents above their share lose their own oldest events.
	MaxBytes int64 `yaml:"max_bytes"`
	// MaxBytesPerAgent is a hard quota per agent (0: none but the share).
	MaxBytesPerAgent int64         `yaml:"max_bytes_per_agent"`
	Interval         time.Duration `yaml:"interval"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		DataDir:         "/var/lib/watchpost-collector",
		LogLevel:        "info",
		ShutdownTimeout: 10 * time.Second,
		Ingest: IngestConfig{
			Listen:                   "0.0.0.0:7443",
			MaxMessageBytes:          8 << 20,
			MaxUncompressedBytes:     32 << 20,
			MaxEventsPerBatch:        10000,
			MaxStringBytes:           16 << 10,
			MaxListLen:               1024,
			MaxStreams:               1024,
			MaxStreamsPerConnection:  4,
			RateEventsPerSecond:      50000,
			RateBurst:                100000,
			KeepaliveMinTime:         20 * time.Second,
			KeepaliveTime:            60 * time.Second,
			KeepaliveTimeout:         20 * time.Second,
			MaxPendingBatches:        16,
			MaxStreamsPerAgent:       4,
			RateBytesPerSecond:       16 << 20,
			RateBytesBurst:           64 << 20,
			HeartbeatsPerSecond:      1,
			HeartbeatBurst:           10,
			MaxInflightBytesPerAgent: 64 << 20,
			MaxInflightBytes:         256 << 20,
			MaxEventBytes:            limits.EventBytes,
			MaxCompressionRatio:      limits.CompressionRatio,
			MaxClockSkew:             5 * time.Minute,
		},
		Query: QueryConfig{
			Listen:                "127.0.0.1:7444",
			DefaultLimit:          100,
			MaxLimit:              10000,
			Timeout:               10 * time.Second,
			MaxScanRows:           20_000_000,
			MaxConcurrent:         2,
			AuthFailuresPerSecond: 2,
			AuthFailureBurst:      10,
		},
		Retention: RetentionConfig{
			MaxAge:   30 * 24 * time.Hour,
			MaxBytes: 20 << 30,
			Interval: time.Minute,
		},
		Dashboard: DashboardConfig{Enabled: true, SessionTTL: 8 * time.Hour, MaxSessions: 1024},
		Writer:    WriterConfig{Listen: "127.0.0.1:7445", Concurrency: 4},
		Store:     StoreEmbedded,
		Postgres:  PostgresConfig{MaxConns: 8},
		Queue:     QueueNone,
		NATS: NATSConfig{
			Stream: "WATCHPOST", Subject: "watchpost", Site: "default", Replicas: 1, MaxBytes: 10 << 30,
			PublishTimeout: 10 * time.Second, Consumer: "writers", AckWait: 30 * time.Second, FetchBatches: 64,
			Mode: NATSCentral,
		},
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
	if err := c.validateStorage(); err != nil {
		return err
	}
	switch {
	case c.Store == StoreEmbedded && c.DataDir == "":
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
	case i.MaxStreamsPerAgent < 1 || i.MaxStreamsPerAgent > i.MaxStreams:
		return errors.New("ingest.max_streams_per_agent: must be between 1 and ingest.max_streams")
	case i.RateBytesPerSecond <= 0:
		return errors.New("ingest.rate_bytes_per_second: must be positive")
	case i.RateBytesBurst < int64(i.MaxUncompressedBytes):
		return errors.New("ingest.rate_bytes_burst: must be at least ingest.max_uncompressed_bytes")
	case i.HeartbeatsPerSecond <= 0 || i.HeartbeatBurst < 1:
		return errors.New("ingest.heartbeats_per_second, ingest.heartbeat_burst: must be positive")
	case i.MaxInflightBytesPerAgent < int64(i.MaxUncompressedBytes+i.MaxMessageBytes):
		return errors.New("ingest.max_inflight_bytes_per_agent: must be at least ingest.max_uncompressed_bytes + ingest.max_message_bytes")
	case i.MaxInflightBytes < i.MaxInflightBytesPerAgent:
		return errors.New("ingest.max_inflight_bytes: must be at least ingest.max_inflight_bytes_per_agent")
	case i.MaxEventBytes < 4096:
		return errors.New("ingest.max_event_bytes: must be at least 4096")
	case i.MaxCompressionRatio < limits.CompressionRatio:
		return fmt.Errorf("ingest.max_compression_ratio: must be at least %d (agents keep their batches within it)", limits.CompressionRatio)
	case i.MaxClockSkew < 0:
		return errors.New("ingest.max_clock_skew: must not be negative")
	case q.Listen == "":
		return errors.New("query.listen: required")
	case q.DefaultLimit < 1 || q.MaxLimit < q.DefaultLimit:
		return errors.New("query.default_limit, query.max_limit: need 1 <= default_limit <= max_limit")
	case q.Timeout <= 0:
		return errors.New("query.timeout: must be positive")
	case q.MaxScanRows < uint64(q.MaxLimit):
		return errors.New("query.max_scan_rows: must be at least query.max_limit")
	case q.MaxConcurrent < 1:
		return errors.New("query.max_concurrent: must be at least 1")
	case q.AuthFailuresPerSecond <= 0 || q.AuthFailureBurst < 1:
		return errors.New("query.auth_failures_per_second, query.auth_failure_burst: must be positive")
	case r.MaxAge < 0 || r.MaxBytes < 0 || r.MaxBytesPerAgent < 0:
		return errors.New("retention.max_age, retention.max_bytes, retention.max_bytes_per_agent: must not be negative")
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

func (c *Config) validateStorage() error {
	n := &c.NATS
	switch {
	case c.Store != StoreEmbedded && c.Store != StorePostgres:
		return fmt.Errorf("store: %q is not embedded or postgres", c.Store)
	case c.Store == StorePostgres && c.Postgres.URL == "":
		return errors.New("postgres.url: required with store: postgres")
	case c.Store == StorePostgres && c.Postgres.MaxConns < 1:
		return errors.New("postgres.max_conns: must be at least 1")
	case c.Queue != QueueNone && c.Queue != QueueNATS:
		return fmt.Errorf("queue: %q is not none or nats", c.Queue)
	case c.Queue == QueueNone:
		return nil
	case c.Store != StorePostgres:
		return errors.New("queue: nats needs store: postgres (the writers store into PostgreSQL; queries read it)")
	case len(n.URLs) == 0:
		return errors.New("nats.urls: required with queue: nats")
	}
	return n.Validate()
}

// Validate names the first bad key of the nats section.
func (n *NATSConfig) Validate() error {
	for _, tok := range []struct{ key, v string }{{"nats.stream", n.Stream}, {"nats.subject", n.Subject}, {"nats.site", n.Site}, {"nats.consumer", n.Consumer}} {
		if tok.v == "" || strings.ContainsAny(tok.v, ". *>\t\r\n") {
			return fmt.Errorf("%s: %q must be one non-empty token without '.', '*', '>' or spaces", tok.key, tok.v)
		}
	}
	switch {
	case n.Replicas < 1 || n.Replicas > 5:
		return errors.New("nats.replicas: must be 1 to 5 (3 in a cluster)")
	case n.MaxBytes < 1<<20:
		return errors.New("nats.max_bytes: must be at least 1 MiB")
	case n.PublishTimeout <= 0:
		return errors.New("nats.publish_timeout: must be positive")
	case n.AckWait < time.Second:
		return errors.New("nats.ack_wait: must be at least 1s")
	case n.FetchBatches < 1:
		return errors.New("nats.fetch_batches: must be at least 1")
	case (n.CertFile == "") != (n.KeyFile == ""):
		return errors.New("nats.cert_file, nats.key_file: set both or neither")
	case n.Mode != NATSCentral && n.Mode != NATSSite:
		return fmt.Errorf("nats.mode: %q is not central or site", n.Mode)
	case n.Mode == NATSSite && len(n.Sources) > 0:
		return errors.New("nats.sources: only the central stream sources site streams (nats.mode: central)")
	}
	for i, src := range n.Sources {
		if src.Domain == "" || strings.ContainsAny(src.Domain, ". *>\t\r\n") {
			return fmt.Errorf("nats.sources[%d].domain: %q must be one non-empty token", i, src.Domain)
		}
	}
	return nil
}

// RevocationPath is the revocation file (ingest.revocation_file, or
// revoked.json in data_dir).
func (c *Config) RevocationPath() string {
	if c.Ingest.RevocationFile != "" {
		return c.Ingest.RevocationFile
	}
	return filepath.Join(c.DataDir, "revoked.json")
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
