// Package collector is the Watchpost collector: it receives agents' batches
// over gRPC with mutual TLS, validates and stores them durably before
// acknowledging, and serves the stored events through a gRPC and HTTP/JSON
// query API.
package collector

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sync/semaphore"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	"github.com/watchpost/watchpost/collector/alerts"
	"github.com/watchpost/watchpost/collector/ingest"
	natsq "github.com/watchpost/watchpost/collector/queue/nats"
	"github.com/watchpost/watchpost/collector/store"
	"github.com/watchpost/watchpost/collector/store/postgres"
	"github.com/watchpost/watchpost/collector/web"
	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

// Deps are the collector's collaborators.
type Deps struct {
	Logger zerolog.Logger
	// Store replaces the store the configuration names (SQLite in DataDir,
	// or PostgreSQL); the caller then owns it and closes it.
	Store store.Store
}

// ingestSink is where validated batches, heartbeats and refusals go: the
// store itself, or the queue in front of the store writers (queue: nats).
type ingestSink interface {
	StoreBatches(ctx context.Context, batches []store.BatchInput) ([]store.Result, error)
	RecordHeartbeat(ctx context.Context, agentID string, hb *watchpostv1.Heartbeat, received time.Time) error
	RecordRejected(ctx context.Context, agentID string) error
}

// Stats are the collector's ingest counters.
type Stats struct {
	BatchesStored, BatchesDuplicate, BatchesRetry uint64
	EventsStored                                  uint64
	EventsRefused                                 uint64            // malformed events refused alone (their batches stored)
	Rejected                                      map[string]uint64 // batches by gRPC code name
	Heartbeats                                    uint64
	StreamsActive                                 int64
	StreamsRefused                                uint64
	Alerts                                        map[string]uint64 // raised, by kind
	AlertStoreErrors                              uint64
	// QueryRefused counts query requests refused, by reason: host (a Host
	// header a loopback listener does not answer for), auth_throttled
	// (unknown tokens beyond the failure budget), max_concurrent (no slot
	// free within query.timeout), timeout (store reads outlasted
	// query.timeout).
	QueryRefused map[string]uint64
}

// Collector is the server.
type Collector struct {
	cfg      Config
	log      zerolog.Logger
	store    store.Store
	ownStore bool
	sink     ingestSink
	queue    *natsq.Conn // queue: nats
	dec      *ingest.Decoder
	hub      *hub
	alerts   *alerts.Engine // set by Start
	web      *web.Dashboard

	ingestSrv  *grpc.Server
	querySrv   *grpc.Server
	httpSrv    *http.Server
	ingestLn   net.Listener
	queryLn    net.Listener
	streams    chan struct{}
	queries    chan struct{} // event queries running now (query.max_concurrent)
	agents     sync.Map      // agent id -> *agentState
	lastSerial sync.Map      // agent id -> serial of its last stream's certificate
	inflight   *semaphore.Weighted
	// streamOpened holds the agents whose stream opened since their last
	// heartbeat (a fleet collector then catches up from the store).
	streamOpened sync.Map
	tokens       map[string]Token
	revocations  *revocations
	authNeeded   bool
	// queryLoopback: the query listener is on loopback, where the Host
	// header is checked (query.allowed_hosts).
	queryLoopback bool
	authFailures  *rate.Limiter
	hostsRefused  atomic.Uint64
	authThrottled atomic.Uint64
	// Client requests refused by the query limits: no slot in time, or
	// reads that outlasted query.timeout.
	queriesBusy, queriesTimedOut atomic.Uint64

	started  atomic.Bool
	stopping chan struct{} // closed when Shutdown begins
	stopOnce sync.Once
	stopErr  error
	cancel   context.CancelFunc
	wg       sync.WaitGroup

	batchesStored, batchesDup, batchesRetry, eventsStored, heartbeats, streamsRefused atomic.Uint64
	streamsActive                                                                     atomic.Int64
	countMu                                                                           sync.Mutex
	rejected                                                                          map[string]uint64
	alertsRaised                                                                      map[string]uint64    // under countMu
	responseAlerted                                                                   map[string]time.Time // under countMu: the last response alert per agent, policy and outcome
	alertStoreErr                                                                     atomic.Uint64
	cmds                                                                              cmdStreams
	commandsSent, detectionAlerts                                                     atomic.Uint64
	eventsRefused                                                                     atomic.Uint64

	noticeMu      sync.Mutex
	notices       map[noticeKey]*pendingNotice
	refusalCounts map[noticeKey]uint64

	watchpostv1.UnimplementedIngestServiceServer
}

// New validates the configuration, loads the TLS material and opens the store.
func New(cfg Config, deps Deps) (*Collector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &Collector{
		cfg:           cfg,
		log:           deps.Logger.With().Str("component", "collector").Logger(),
		streams:       make(chan struct{}, cfg.Ingest.MaxStreams),
		rejected:      map[string]uint64{},
		alertsRaised:  map[string]uint64{},
		tokens:        map[string]Token{},
		hub:           newHub(),
		stopping:      make(chan struct{}),
		inflight:      semaphore.NewWeighted(cfg.Ingest.MaxInflightBytes),
		queries:       make(chan struct{}, cfg.Query.MaxConcurrent),
		notices:       map[noticeKey]*pendingNotice{},
		refusalCounts: map[noticeKey]uint64{},
	}
	for _, t := range cfg.Query.Tokens {
		c.tokens[t.Token] = t
	}
	loop, _ := isLoopback(cfg.Query.Listen)
	c.authNeeded = !loop || len(cfg.Query.Tokens) > 0
	c.queryLoopback = loop
	c.authFailures = rate.NewLimiter(rate.Limit(cfg.Query.AuthFailuresPerSecond), cfg.Query.AuthFailureBurst)
	dec, err := ingest.NewDecoder(ingest.Limits{
		MaxUncompressedBytes: cfg.Ingest.MaxUncompressedBytes, MaxEvents: cfg.Ingest.MaxEventsPerBatch,
		MaxStringBytes: cfg.Ingest.MaxStringBytes, MaxListLen: cfg.Ingest.MaxListLen,
		MaxEventBytes: cfg.Ingest.MaxEventBytes, MaxCompressionRatio: cfg.Ingest.MaxCompressionRatio,
		MaxClockSkew: cfg.Ingest.MaxClockSkew,
	})
	if err != nil {
		return nil, err
	}
	c.dec = dec
	ingestTLS, err := serverTLS(cfg.Ingest.CertFile, cfg.Ingest.KeyFile, cfg.Ingest.ClientCAFile)
	if err != nil {
		dec.Close()
		return nil, fmt.Errorf("ingest tls: %w", err)
	}
	c.ingestSrv = grpc.NewServer(
		grpc.Creds(credentials.NewTLS(ingestTLS)),
		grpc.MaxRecvMsgSize(cfg.Ingest.MaxMessageBytes),
		grpc.MaxConcurrentStreams(uint32(cfg.Ingest.MaxStreamsPerConnection)),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: cfg.Ingest.KeepaliveMinTime, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: cfg.Ingest.KeepaliveTime, Timeout: cfg.Ingest.KeepaliveTimeout}),
		grpc.ConnectionTimeout(10*time.Second),
	)
	watchpostv1.RegisterIngestServiceServer(c.ingestSrv, c)
	c.querySrv = grpc.NewServer(
		grpc.UnaryInterceptor(c.unaryAuth),
		grpc.StreamInterceptor(c.streamAuth),
		grpc.MaxRecvMsgSize(1<<20),
	)
	watchpostv1.RegisterQueryServiceServer(c.querySrv, &queryService{c: c})
	if c.web, err = c.newDashboard(); err != nil {
		dec.Close()
		return nil, err
	}
	if c.revocations, err = newRevocations(cfg.RevocationPath(), c.log); err != nil {
		dec.Close()
		return nil, err
	}
	if deps.Store != nil {
		c.store = deps.Store
	} else {
		st, err := OpenStore(context.Background(), cfg)
		if err != nil {
			dec.Close()
			return nil, err
		}
		c.store, c.ownStore = st, true
	}
	c.sink = c.store
	return c, nil
}

// OpenStore opens the store the configuration names.
func OpenStore(ctx context.Context, cfg Config) (store.Store, error) {
	if cfg.Store == StorePostgres {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		// Behind the queue the collector only reads (and records alerts):
		// it starts while the database is away, and queries wait for it.
		return postgres.Open(ctx, cfg.Postgres.URL, postgres.Options{MaxConns: cfg.Postgres.MaxConns, ReadOnly: cfg.Queue == QueueNATS})
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating data_dir: %w", err)
	}
	return store.OpenSQLite(cfg.DBPath())
}

// NATSOptions are the queue connection's options from the configuration.
func (cfg Config) NATSOptions(name string) natsq.Options {
	n := cfg.NATS
	o := natsq.Options{URLs: n.URLs, Name: name, Stream: n.Stream, Subject: n.Subject, Site: n.Site, Replicas: n.Replicas,
		MaxBytes: n.MaxBytes, CredsFile: n.CredsFile, CAFile: n.CAFile, CertFile: n.CertFile, KeyFile: n.KeyFile}
	for _, src := range n.Sources {
		stream := src.Stream
		if stream == "" {
			stream = n.Stream
		}
		o.Sources = append(o.Sources, natsq.Source{Domain: src.Domain, Stream: stream})
	}
	return o
}

// startQueue connects to JetStream and routes ingest through it.
func (c *Collector) startQueue(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	q, err := natsq.Connect(ctx, c.cfg.NATSOptions("watchpost-collector"), c.log)
	if err != nil {
		return err
	}
	// An events message holds a batch's decompressed events.
	if need := int64(c.cfg.Ingest.MaxUncompressedBytes) + 64<<10; q.MaxPayload() < need {
		q.Close()
		return fmt.Errorf("ingest.max_uncompressed_bytes: %d does not fit the NATS server's max_payload of %d bytes (set max_payload to at least %d, or lower the limit)",
			c.cfg.Ingest.MaxUncompressedBytes, q.MaxPayload(), need)
	}
	c.queue, c.sink = q, natsq.NewPublisher(q, c.cfg.NATS.PublishTimeout)
	return nil
}

// schemaEnsurer is a store opened without its schema (behind the queue).
type schemaEnsurer interface {
	EnsureSchema(ctx context.Context) error
}

// ensureSchema creates the shared database's schema in the background,
// retrying while the database is away, so that queries and alerts work
// even before any writer ran.
func (c *Collector) ensureSchema(ctx context.Context) {
	se, ok := c.store.(schemaEnsurer)
	if !ok || c.cfg.Queue != QueueNATS {
		return
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		for wait := time.Second; ; wait = min(wait*2, time.Minute) {
			err := se.EnsureSchema(ctx)
			if err == nil || ctx.Err() != nil {
				return
			}
			c.log.Warn().Err(err).Dur("retry_in", wait).Msg("the database is not reachable yet; queries fail until it is")
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
	}()
}

func serverTLS(certFile, keyFile, clientCAFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("loading server certificate: %w", err)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}}
	if clientCAFile != "" {
		pem, err := os.ReadFile(clientCAFile)
		if err != nil {
			return nil, fmt.Errorf("reading client ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("client ca %s: no PEM certificate", clientCAFile)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// Start listens on both endpoints and serves in the background.
func (c *Collector) Start(ctx context.Context) error {
	if !c.started.CompareAndSwap(false, true) {
		return errors.New("collector already started")
	}
	if c.cfg.Queue == QueueNATS {
		if err := c.startQueue(ctx); err != nil {
			return err
		}
	}
	var err error
	if c.ingestLn, err = net.Listen("tcp", c.cfg.Ingest.Listen); err != nil {
		return fmt.Errorf("ingest.listen: %w", err)
	}
	if c.queryLn, err = net.Listen("tcp", c.cfg.Query.Listen); err != nil {
		_ = c.ingestLn.Close()
		return fmt.Errorf("query.listen: %w", err)
	}
	c.httpSrv = &http.Server{
		Handler:           c.queryHandler(),
		ReadHeaderTimeout: 10 * time.Second,
		Protocols:         new(http.Protocols),
	}
	c.httpSrv.Protocols.SetHTTP1(true)
	qln := c.queryLn
	if c.cfg.Query.CertFile != "" {
		qtls, err := serverTLS(c.cfg.Query.CertFile, c.cfg.Query.KeyFile, "")
		if err != nil {
			_ = c.ingestLn.Close()
			_ = c.queryLn.Close()
			return fmt.Errorf("query tls: %w", err)
		}
		qtls.NextProtos = []string{"h2", "http/1.1"}
		c.httpSrv.Protocols.SetHTTP2(true)
		qln = tls.NewListener(qln, qtls)
	} else {
		c.httpSrv.Protocols.SetUnencryptedHTTP2(true)
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	c.cancel = cancel
	c.wg.Add(3)
	go func() {
		defer c.wg.Done()
		c.revocationLoop(runCtx)
	}()
	go func() {
		defer c.wg.Done()
		if err := c.ingestSrv.Serve(c.ingestLn); err != nil {
			c.log.Error().Err(err).Msg("ingest server stopped")
		}
	}()
	go func() {
		defer c.wg.Done()
		if err := c.httpSrv.Serve(qln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			c.log.Error().Err(err).Msg("query server stopped")
		}
	}()
	// With the queue, the store writers retire partitions.
	if c.cfg.Queue != QueueNATS {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.retentionLoop(runCtx)
		}()
	}
	c.ensureSchema(runCtx)
	c.startDashboard(runCtx)
	c.startAlerts(runCtx)
	if c.queue != nil {
		if err := c.commandsFromFleet(runCtx); err != nil {
			c.log.Error().Err(err).Msg("commands issued on other collectors reach this one's agents within the sweep only")
		}
	}
	c.log.Info().Str("ingest", c.Addr()).Str("query", c.QueryAddr()).Bool("query_auth", c.authNeeded).Str("dashboard", c.DashboardURL()).Msg("collector started")
	return nil
}

// Addr is the ingest listener's address.
func (c *Collector) Addr() string {
	if c.ingestLn == nil {
		return ""
	}
	return c.ingestLn.Addr().String()
}

// QueryAddr is the query listener's address.
func (c *Collector) QueryAddr() string {
	if c.queryLn == nil {
		return ""
	}
	return c.queryLn.Addr().String()
}

// Store returns the store (tests and tools read it directly).
func (c *Collector) Store() store.Store { return c.store }

// Shutdown stops gracefully, forcing the stop when ctx ends (or after
// shutdown_timeout). It is idempotent and safe without Start.
func (c *Collector) Shutdown(ctx context.Context) error {
	c.stopOnce.Do(func() {
		ctx, cancel := context.WithTimeout(ctx, c.cfg.ShutdownTimeout)
		defer cancel()
		close(c.stopping)
		if c.started.Load() {
			c.cancel()
			c.hub.close()
			done := make(chan struct{})
			go func() {
				c.ingestSrv.GracefulStop()
				c.querySrv.GracefulStop()
				close(done)
			}()
			if err := c.httpSrv.Shutdown(ctx); err != nil {
				_ = c.httpSrv.Close()
			}
			select {
			case <-done:
			case <-ctx.Done():
				c.log.Warn().Msg("graceful stop timed out, forcing")
				c.ingestSrv.Stop()
				c.querySrv.Stop()
				<-done
			}
			c.wg.Wait()
		}
		c.dec.Close()
		if c.queue != nil {
			c.queue.Close()
		}
		if c.ownStore {
			c.stopErr = c.store.Close()
		}
		c.log.Info().Msg("collector stopped")
	})
	return c.stopErr
}

// Stats returns a snapshot of the ingest counters.
func (c *Collector) Stats() Stats {
	s := Stats{
		BatchesStored: c.batchesStored.Load(), BatchesDuplicate: c.batchesDup.Load(), BatchesRetry: c.batchesRetry.Load(),
		EventsStored: c.eventsStored.Load(), EventsRefused: c.eventsRefused.Load(), Heartbeats: c.heartbeats.Load(),
		StreamsActive: c.streamsActive.Load(), StreamsRefused: c.streamsRefused.Load(),
		Rejected: map[string]uint64{}, Alerts: map[string]uint64{}, AlertStoreErrors: c.alertStoreErr.Load(),
		QueryRefused: map[string]uint64{"host": c.hostsRefused.Load(), "auth_throttled": c.authThrottled.Load(),
			"max_concurrent": c.queriesBusy.Load(), "timeout": c.queriesTimedOut.Load()},
	}
	c.countMu.Lock()
	for k, v := range c.rejected {
		s.Rejected[k] = v
	}
	for k, v := range c.alertsRaised {
		s.Alerts[k] = v
	}
	c.countMu.Unlock()
	return s
}

func (c *Collector) retentionLoop(ctx context.Context) {
	t := time.NewTicker(c.cfg.Retention.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := c.enforceRetention(ctx); err != nil {
				c.log.Error().Err(err).Msg("retention failed")
			}
		}
	}
}

func (c *Collector) quota() store.Quota {
	return store.Quota{MaxBytes: c.cfg.Retention.MaxBytes, PerAgent: c.cfg.Retention.MaxBytesPerAgent}
}

func (c *Collector) enforceRetention(ctx context.Context) ([]string, error) {
	dropped, trimmed, err := c.store.EnforceRetention(ctx, store.Retention{MaxAge: c.cfg.Retention.MaxAge, Quota: c.quota()}, time.Now())
	if len(dropped) > 0 {
		c.log.Info().Strs("partitions", dropped).Msg("retention dropped partitions")
	}
	c.noteTrimmed(trimmed)
	return dropped, err
}

// trimToQuota applies the storage quota after a commit, so that one
// agent's flood is cut from its own oldest events before it can outgrow
// the store between two retention runs.
func (c *Collector) trimToQuota(ctx context.Context) {
	trimmed, err := c.store.TrimToQuota(ctx, c.quota())
	if err != nil {
		c.log.Error().Err(err).Msg("applying the storage quota failed")
	}
	c.noteTrimmed(trimmed)
}

func (c *Collector) noteTrimmed(trimmed []store.Trimmed) {
	for _, t := range trimmed {
		c.noticeExample(t.AgentID, refusalStorage, "quota", t.Events,
			fmt.Sprintf("%d batches, %d bytes over the agent's share of retention.max_bytes", t.Batches, t.Bytes))
	}
}
