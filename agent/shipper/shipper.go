// Package shipper sends the agent's events to the collector: it converts
// them to protobuf, batches them by count, bytes and age, compresses each
// batch with zstd and streams the batches over one bidirectional gRPC
// stream with mutual TLS, keeping a bounded window of unacknowledged
// batches. Unacknowledged batches wait in a Queue (in memory by default, the
// disk spool of package agent/spool in the agent) and are sent again after a
// reconnect; the collector stores each (agent, boot, run, batch sequence)
// once. Ship never blocks: as the queue fills, low-value events are shed
// first and security-critical ones kept; whatever is lost is counted by
// reason and described by a gap event that travels with the next batch.
// After a reconnect, new batches go first and the backlog drains behind them
// at a bounded rate.
package shipper

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/rs/zerolog"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	"github.com/watchpost/watchpost/agent/event"
	"github.com/watchpost/watchpost/internal/version"
	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

// Config holds the shipper's settings. Zero values take the defaults below.
type Config struct {
	// Address of the collector's ingest endpoint, host:port; several
	// collectors as a comma-separated list (c1:7443,c2:7443), or one name
	// that resolves to several addresses. The shipper holds one stream to
	// one of them (picked at random at start) and moves to another when
	// that one fails.
	Address string
	// AgentID must equal the identity in the client certificate.
	AgentID string
	// Host is put on events that carry none.
	Host string
	// BootID defaults to /proc/sys/kernel/random/boot_id.
	BootID string
	// RunID defaults to a random id per start (a durable spool restores it).
	RunID string

	CAFile, CertFile, KeyFile string
	// ServerName overrides the name checked in the collector's certificate.
	ServerName string

	// QueueEvents bounds the channel between Ship and the batcher (16384).
	QueueEvents int
	// A batch is sealed at BatchMaxEvents events (1000), BatchMaxBytes
	// uncompressed bytes (1 MiB) or when its first event is BatchMaxAge old (1s).
	BatchMaxEvents int
	BatchMaxBytes  int
	BatchMaxAge    time.Duration
	// Window is the number of batches sent but not yet acknowledged (8).
	Window int
	// MaxQueuedBatches and MaxQueuedBytes bound the unacknowledged batches
	// kept in memory (256 batches, 64 MiB compressed).
	MaxQueuedBatches int
	MaxQueuedBytes   int64
	// Reconnect backoff: exponential from BackoffInitial (500ms) to
	// BackoffMax (30s) with full jitter.
	BackoffInitial time.Duration
	BackoffMax     time.Duration
	// gRPC keepalive: ping after KeepaliveTime idle (30s), fail the
	// connection when the ping is not answered in KeepaliveTimeout (10s).
	// The collector's enforcement policy allows pings every 20s.
	KeepaliveTime    time.Duration
	KeepaliveTimeout time.Duration
	// HeartbeatInterval between heartbeats on the stream (10s).
	HeartbeatInterval time.Duration
	// MaxMessageBytes is the largest batch message sent (8 MiB, matching
	// the collector's default receive limit).
	MaxMessageBytes int
	// DrainBytesPerSecond bounds how fast the backlog (batches queued
	// before the current stream opened) is sent, in compressed bytes per
	// second (1 MiB/s); new batches are not limited and go first.
	DrainBytesPerSecond int
	// ShedBulkAt and ShedAt are queue fill fractions: from ShedBulkAt
	// (0.75) bulk events (reads, socket bookkeeping, forks, exits) are
	// shed, from ShedAt (0.9) every event that is not security-critical.
	ShedBulkAt float64
	ShedAt     float64
}

// Defaults fills zero fields.
func (c *Config) Defaults() {
	setDefault(&c.QueueEvents, 16384)
	setDefault(&c.BatchMaxEvents, 1000)
	setDefault(&c.BatchMaxBytes, 1<<20)
	setDefault(&c.BatchMaxAge, time.Second)
	setDefault(&c.Window, 8)
	setDefault(&c.MaxQueuedBatches, 256)
	setDefault(&c.MaxQueuedBytes, 64<<20)
	setDefault(&c.BackoffInitial, 500*time.Millisecond)
	setDefault(&c.BackoffMax, 30*time.Second)
	setDefault(&c.KeepaliveTime, 30*time.Second)
	setDefault(&c.KeepaliveTimeout, 10*time.Second)
	setDefault(&c.HeartbeatInterval, 10*time.Second)
	setDefault(&c.MaxMessageBytes, 8<<20)
	setDefault(&c.DrainBytesPerSecond, 1<<20)
	setDefault(&c.ShedBulkAt, 0.75)
	setDefault(&c.ShedAt, 0.9)
}

func setDefault[T comparable](p *T, v T) {
	var zero T
	if *p == zero {
		*p = v
	}
}

// Validate names the first bad setting.
func (c *Config) Validate() error {
	switch {
	case c.Address == "":
		return errors.New("shipper.address: required")
	case c.AgentID == "":
		return errors.New("shipper.agent_id: required")
	case c.BatchMaxEvents < 1:
		return errors.New("shipper.batch_max_events: must be at least 1")
	case c.Window < 1:
		return errors.New("shipper.window: must be at least 1")
	case c.MaxQueuedBatches < c.Window:
		return errors.New("shipper.max_queued_batches: must be at least the window")
	case c.BackoffMax < c.BackoffInitial:
		return errors.New("shipper.backoff_max: must not be below backoff_initial")
	case c.DrainBytesPerSecond < 1:
		return errors.New("shipper.drain_bytes_per_second: must be positive")
	case c.ShedBulkAt <= 0 || c.ShedBulkAt > c.ShedAt || c.ShedAt > 1:
		return errors.New("shipper.shed_bulk_at, shed_at: want 0 < shed_bulk_at <= shed_at <= 1")
	}
	return nil
}

// Deps are the shipper's collaborators.
type Deps struct {
	Logger zerolog.Logger
	// Health, if set, supplies the agent's counters for heartbeats.
	Health func() event.Health
	// Queue replaces the in-memory queue. A DurableQueue (the spool) also
	// supplies the run id, the batch sequence and persistent counters; its
	// owner closes it after Shutdown.
	Queue Queue
	// TLS replaces the configuration loaded from the certificate files.
	TLS *tls.Config
	// Commands, when set, carries out the collector's commands (agent/
	// commands); without it commands are ignored and none is acknowledged.
	Commands Commands
}

// Commands applies the collector's commands and tells the heartbeat where
// it stands.
type Commands interface {
	// Apply carries out and persists one command and returns the
	// acknowledgement to send (nil: none).
	Apply(cmd *watchpostv1.Command) *watchpostv1.CommandAck
	// State is the epoch and the highest seq applied.
	State() (epoch string, applied uint64)
}

// Stats are the shipper's counters.
type Stats struct {
	Received       uint64 // events handed to Ship, ever (cumulative across restarts with a spool)
	Injected       uint64 // gap events the shipper added, ever
	Accepted       uint64 // events taken by Ship into the batcher's channel
	BatchesSealed  uint64
	BatchesSent    uint64 // sends, including resends
	BatchesResent  uint64
	BatchesAcked   uint64 // stored or duplicate
	BatchesDup     uint64 // acknowledged as already stored
	BatchesRefused uint64
	EventsRefused  uint64 // events of stored batches the collector refused alone
	EventsAcked    uint64
	Reconnects     uint64
	Heartbeats     uint64
	QueuedBatches  int
	QueuedBytes    int64
	Dropped        map[string]uint64 // events by reason
	PendingGap     int               // lines of loss not yet carried by a queued gap marker
	DroppedByKind  map[string]uint64 // "reason/kind" for spool_full, batch_queue_full, spool_write_error
}

// Shipper is the agent's collector client.
type Shipper struct {
	cfg   Config
	log   zerolog.Logger
	deps  Deps
	queue Queue
	tls   *tls.Config

	in      chan *event.Event
	urgent  chan *event.Event // alerts: their own lane, so a flood cannot crowd them out
	kick    chan struct{}     // HeartbeatNow
	closed  atomic.Bool
	started atomic.Bool

	cancel     context.CancelFunc
	batcherOut chan struct{} // closed when the batcher has flushed and exited
	wg         sync.WaitGroup
	conn       *grpc.ClientConn
	shutdown   sync.Once
	shutErr    error

	flush chan chan struct{} // a flush request; nil asks for the final flush

	accepted, sealed, sent, resent, acked, dup, refused, eventsAcked, reconnects, heartbeats atomic.Uint64
	highestSent, lastPushed, refusedEvents                                                   atomic.Uint64
	refusedLogged                                                                            atomic.Bool
	cnt                                                                                      *counters
	durable                                                                                  DurableQueue // nil with a memory queue
	instanceID                                                                               string
	stopping                                                                                 atomic.Bool
	drain                                                                                    *rate.Limiter

	nextSeq    uint64    // batcher goroutine only
	gaps       gapLedger // batcher goroutine only (and New)
	pushFailed bool      // batcher goroutine only: the last push failed
	pendingGap atomic.Int64
	hbSeq      uint64 // sender goroutine only
}

// New checks the configuration and loads the TLS material.
func New(cfg Config, deps Deps) (*Shipper, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.BootID == "" {
		b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
		if err != nil {
			return nil, fmt.Errorf("reading boot id: %w", err)
		}
		cfg.BootID = strings.TrimSpace(string(b))
	}
	if cfg.RunID == "" {
		var b [16]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("creating run id: %w", err)
		}
		cfg.RunID = hex.EncodeToString(b[:])
	}
	tlsCfg := deps.TLS
	if tlsCfg == nil {
		var err error
		if tlsCfg, err = ClientTLS(cfg.CAFile, cfg.CertFile, cfg.KeyFile, cfg.ServerName); err != nil {
			return nil, err
		}
	}
	q := deps.Queue
	if q == nil {
		q = NewMemoryQueue(cfg.MaxQueuedBatches, cfg.MaxQueuedBytes)
	}
	var inst [8]byte
	if _, err := rand.Read(inst[:]); err != nil {
		return nil, fmt.Errorf("creating instance id: %w", err)
	}
	s := &Shipper{
		cfg: cfg, deps: deps, queue: q, tls: tlsCfg,
		log:        deps.Logger.With().Str("component", "shipper").Logger(),
		in:         make(chan *event.Event, cfg.QueueEvents),
		urgent:     make(chan *event.Event, urgentQueue),
		kick:       make(chan struct{}, 1),
		batcherOut: make(chan struct{}),
		flush:      make(chan chan struct{}),
		instanceID: hex.EncodeToString(inst[:]),
		gaps:       gapLedger{},
		drain:      rate.NewLimiter(rate.Limit(cfg.DrainBytesPerSecond), max(cfg.DrainBytesPerSecond, cfg.MaxMessageBytes)),
	}
	alloc := func(string) *atomic.Uint64 { return new(atomic.Uint64) }
	if d, ok := q.(DurableQueue); ok {
		s.durable = d
		s.cfg.RunID = d.RunID()
		s.nextSeq = d.LastSeq()
		alloc = func(name string) *atomic.Uint64 {
			c, err := d.Counter(name)
			if err != nil {
				s.log.Warn().Err(err).Str("counter", name).Msg("counter kept in memory only")
				return new(atomic.Uint64)
			}
			return c
		}
	}
	s.cnt = newCounters(alloc)
	if s.durable != nil {
		s.settleCrash()
	}
	s.pendingGap.Store(int64(len(s.gaps)))
	return s, nil
}

// settleCrash counts the events a previous process received but neither
// queued nor counted: it died holding them in memory.
func (s *Shipper) settleCrash() {
	received, settled := s.cnt.received.Load(), s.durable.SpooledEvents()+s.cnt.preQueue()
	if received > settled {
		lost := received - settled
		s.cnt.drop(DropCrash, event.KindUnknown, lost)
		s.gaps.add("shipper", DropCrash, lost)
		s.log.Warn().Uint64("events", lost).Msg("the previous agent process stopped with events in memory; counted as crash_in_flight")
	}
}

// Ship hands one event to the shipper. It never blocks: when the queue is
// full the event is dropped and counted. The shipper owns ev afterwards.
func (s *Shipper) Ship(ev *event.Event) {
	s.cnt.received.Add(1)
	if s.closed.Load() {
		s.cnt.drop(DropShutdown, ev.Kind, 1)
		return
	}
	in := s.in
	if ev.Kind == event.KindAlert {
		in = s.urgent
	}
	select {
	case in <- ev:
		s.accepted.Add(1)
	default:
		s.cnt.drop(DropQueueFull, ev.Kind, 1)
	}
}

// shipTampers sends an agent_tamper event for each of the durable queue's
// files found damaged and rebuilt (made by the agent, like gap markers).
func (s *Shipper) shipTampers() {
	if s.durable == nil {
		return
	}
	host := s.cfg.Host
	if host == "" {
		host = s.cfg.AgentID
	}
	for _, t := range s.durable.TakeTampers() {
		ev := &event.Event{Kind: event.KindAgentTamper, Time: time.Now(), Host: host,
			Process: event.Process{PID: uint32(os.Getpid()), Comm: "watchpost-agent", LoginUID: event.AUIDUnset}, Tamper: &t}
		s.cnt.received.Add(1)
		s.cnt.injected.Add(1)
		select {
		case s.urgent <- ev:
			s.accepted.Add(1)
		default:
			s.cnt.drop(DropQueueFull, ev.Kind, 1)
		}
	}
}

// HeartbeatNow sends a heartbeat without waiting for the interval (the
// agent's state changed: rules reloaded, a load error to report). It
// never blocks; while no stream is open the next stream's first heartbeat
// carries the state.
func (s *Shipper) HeartbeatNow() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// urgentQueue bounds the alerts waiting for the batcher.
const urgentQueue = 1024

// Start connects (lazily: gRPC dials in the background) and starts the
// batcher and the sender.
func (s *Shipper) Start(ctx context.Context) error {
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("shipper already started")
	}
	target, opts := dialTarget(s.cfg.Address)
	conn, err := grpc.NewClient(target, append(opts,
		grpc.WithTransportCredentials(credentials.NewTLS(s.tls)),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{
			Time: s.cfg.KeepaliveTime, Timeout: s.cfg.KeepaliveTimeout, PermitWithoutStream: true,
		}),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(s.cfg.MaxMessageBytes)),
	)...)
	if err != nil {
		return fmt.Errorf("creating client for %s: %w", s.cfg.Address, err)
	}
	s.conn = conn
	builder, err := NewBatchBuilder(zstd.SpeedDefault)
	if err != nil {
		_ = conn.Close()
		return err
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		defer close(s.batcherOut)
		defer builder.Close()
		s.batch(runCtx, builder)
	}()
	go func() {
		defer s.wg.Done()
		s.send(runCtx, watchpostv1.NewIngestServiceClient(conn))
	}()
	s.shipTampers()
	s.log.Info().Str("collector", s.cfg.Address).Str("run_id", s.cfg.RunID).Str("instance_id", s.instanceID).
		Uint64("next_seq", s.nextSeq+1).Bool("durable", s.durable != nil).Msg("shipper started")
	return nil
}

// Flush seals the batch being built so that it is sent without waiting for
// its age limit. It returns once the batch is queued (or ctx ends).
func (s *Shipper) Flush(ctx context.Context) error {
	if !s.started.Load() || s.closed.Load() {
		return nil
	}
	done := make(chan struct{})
	select {
	case s.flush <- done:
	case <-s.batcherOut:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Shutdown stops taking events, seals the last batch and waits until the
// collector has acknowledged every queued batch or ctx ends, then sends a
// final heartbeat (a clean stop). What is still unacknowledged stays in a
// durable queue for the next start; with the memory queue it is counted as
// dropped (reason "shutdown"). It is idempotent and safe without Start.
func (s *Shipper) Shutdown(ctx context.Context) error {
	s.shutdown.Do(func() {
		s.closed.Store(true)
		if !s.started.Load() {
			return
		}
		s.cancelBatcher()
		// Wait for the sender to drain the queue.
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
	wait:
		for s.queue.Len() > 0 {
			select {
			case <-ctx.Done():
				s.shutErr = fmt.Errorf("shutdown with %d unacknowledged batches: %w", s.queue.Len(), ctx.Err())
				break wait
			case <-t.C:
			}
		}
		s.stopping.Store(true)
		s.cancel()
		s.wg.Wait()
		if s.durable == nil {
			for b := s.queue.Next(0); b != nil; b = s.queue.Next(b.BatchSeq) {
				s.cnt.drop(DropShutdown, event.KindUnknown, uint64(b.EventCount))
			}
		}
		if err := s.conn.Close(); err != nil && s.shutErr == nil {
			s.shutErr = fmt.Errorf("closing connection: %w", err)
		}
		st := s.Stats()
		s.log.Info().Uint64("batches_acked", st.BatchesAcked).Uint64("events_acked", st.EventsAcked).
			Interface("dropped", st.Dropped).Msg("shipper stopped")
	})
	return s.shutErr
}

// cancelBatcher asks the batcher to seal what it has and exit.
func (s *Shipper) cancelBatcher() {
	select {
	case s.flush <- nil:
	case <-s.batcherOut:
	}
	<-s.batcherOut
}

// Stats returns a snapshot of the counters.
func (s *Shipper) Stats() Stats {
	st := Stats{
		Accepted: s.accepted.Load(), BatchesSealed: s.sealed.Load(), BatchesSent: s.sent.Load(),
		BatchesResent: s.resent.Load(), BatchesAcked: s.acked.Load(), BatchesDup: s.dup.Load(),
		BatchesRefused: s.refused.Load(), EventsRefused: s.refusedEvents.Load(), EventsAcked: s.eventsAcked.Load(), Reconnects: s.reconnects.Load(),
		Heartbeats: s.heartbeats.Load(), QueuedBatches: s.queue.Len(), QueuedBytes: s.queue.Bytes(),
		Received: s.cnt.received.Load(), Injected: s.cnt.injected.Load(),
		Dropped: s.cnt.dropped(), DroppedByKind: s.cnt.droppedByKind(), PendingGap: int(s.pendingGap.Load()),
	}
	return st
}

// InstanceID is random per New: it tells the collector about restarts.
func (s *Shipper) InstanceID() string { return s.instanceID }

// RunID is the sender incarnation id put on every batch.
func (s *Shipper) RunID() string { return s.cfg.RunID }

// gapEvery is the least time between two gap markers: while events are
// being shed, each marker sums up a stretch of losses.
const gapEvery = time.Second

// batch converts events and seals batches until a final flush.
func (s *Shipper) batch(ctx context.Context, b *BatchBuilder) {
	var pev watchpostv1.Event
	var kinds [len(kindSlots)]uint32 // events per kind slot in the open batch
	age := time.NewTimer(time.Hour)
	age.Stop()
	armed := false
	arm := func() {
		if !armed {
			age.Reset(s.cfg.BatchMaxAge)
			armed = true
		}
	}
	fill, sinceFill := s.queue.Fill(), 0
	var lastGap time.Time
	host := s.cfg.Host
	if host == "" {
		host = s.cfg.AgentID
	}
	encode := func(ev *event.Event) bool {
		ToProto(ev, &pev)
		if pev.Header.Host == "" {
			pev.Header.Host = host
		}
		if err := b.Add(&pev); err != nil {
			s.cnt.drop(DropEncode, ev.Kind, 1)
			return false
		}
		kinds[kindSlot(ev.Kind)]++
		return true
	}
	seal := func() {
		if armed {
			age.Stop()
			armed = false
		}
		if s.durable != nil {
			if n := s.durable.TakeCorrupt(); n > 0 {
				s.gaps.add("spool", DropCorrupt, n)
			}
		}
		fill, sinceFill = s.queue.Fill(), 0
		var carried gapLedger
		if len(s.gaps) > 0 && fill < s.cfg.ShedAt && (!s.pushFailed || b.Count() == 0) && time.Since(lastGap) >= gapEvery {
			lastGap = time.Now()
			// The gap marker rides in this batch; if the batch is lost,
			// the ledger is restored and grows by what was lost.
			carried, s.gaps = s.gaps, gapLedger{}
			s.cnt.received.Add(1)
			s.cnt.injected.Add(1)
			encode(carried.marker(host, time.Now()))
		}
		if b.Count() == 0 {
			if len(s.gaps) > 0 {
				arm() // try again later
			}
			s.pendingGap.Store(int64(len(s.gaps)))
			return
		}
		s.nextSeq++
		batch := b.Seal(s.cfg.AgentID, s.cfg.BootID, s.cfg.RunID, s.nextSeq)
		s.sealed.Add(1)
		err := s.queue.Push(batch)
		if err != nil {
			reason := DropWriteError
			if errors.Is(err, ErrQueueFull) {
				reason = DropBatchQueueFull
			}
			if !s.pushFailed {
				s.log.Warn().Err(err).Str("reason", reason).Msg("queue refused batches; their events are counted and a gap marker will follow")
			}
			for i, n := range kinds {
				if n > 0 {
					s.cnt.drop(reason, kindList[i], uint64(n))
					s.gaps.add(kindList[i].String(), reason, uint64(n))
				}
			}
			s.gaps.merge(carried)
			s.nextSeq-- // the sequence stays dense: the collector sees no hole
			s.pushFailed = true
		} else {
			s.lastPushed.Store(batch.BatchSeq)
			if s.pushFailed {
				s.log.Info().Msg("queue accepts batches again")
			}
			s.pushFailed = false
			if carried != nil {
				s.log.Info().Str("lost", carried.String()).Msg("gap marker queued")
			}
		}
		kinds = [len(kindSlots)]uint32{}
		if len(s.gaps) > 0 {
			arm()
		}
		s.pendingGap.Store(int64(len(s.gaps)))
	}
	add := func(ev *event.Event) {
		if sinceFill++; sinceFill >= 64 {
			fill, sinceFill = s.queue.Fill(), 0
		}
		if t := tierOf(ev); (t == tierBulk && fill >= s.cfg.ShedBulkAt) || (t == tierNormal && fill >= s.cfg.ShedAt) {
			s.cnt.drop(DropSpoolFull, ev.Kind, 1)
			s.gaps.add(ev.Kind.String(), DropSpoolFull, 1)
			s.pendingGap.Store(int64(len(s.gaps)))
			arm()
			return
		}
		if !encode(ev) {
			return
		}
		if ev.Kind == event.KindAlert || b.Count() >= s.cfg.BatchMaxEvents || b.Size() >= s.cfg.BatchMaxBytes {
			// An alert leaves now, with the events before it.
			seal()
		} else {
			arm()
		}
	}
	// An alert follows the events queued before it (the events it names
	// travel with it or before it), then leaves at once.
	urgent := func(ev *event.Event) {
		for n := len(s.in); n > 0; n-- {
			add(<-s.in)
		}
		add(ev)
	}
	drain := func() {
		for {
			select {
			case ev := <-s.urgent:
				urgent(ev)
			case ev := <-s.in:
				add(ev)
			default:
				return
			}
		}
	}
	if len(s.gaps) > 0 {
		arm() // losses found at start travel in the first batch
	}
	for {
		select {
		case ev := <-s.urgent:
			urgent(ev)
			continue
		default:
		}
		select {
		case ev := <-s.urgent:
			urgent(ev)
		case ev := <-s.in:
			add(ev)
		case <-age.C:
			armed = false
			seal()
		case done := <-s.flush:
			drain()
			seal()
			if done == nil {
				return
			}
			close(done)
		case <-ctx.Done():
			drain()
			seal()
			return
		}
	}
}

// errRetry ends a stream so that the queue is sent again after a backoff.
var errRetry = errors.New("collector asked to retry")

// send keeps one stream open, reconnecting with backoff and jitter.
func (s *Shipper) send(ctx context.Context, client watchpostv1.IngestServiceClient) {
	backoff := s.cfg.BackoffInitial
	for first := true; ; first = false {
		if !first {
			s.reconnects.Add(1)
		}
		progressed, err := s.stream(ctx, client)
		if ctx.Err() != nil {
			return
		}
		if progressed {
			backoff = s.cfg.BackoffInitial
		}
		wait := jitter(backoff)
		s.log.Warn().Err(err).Dur("retry_in", wait).Msg("collector stream ended")
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		backoff = min(backoff*2, s.cfg.BackoffMax)
	}
}

// jitter returns a random duration in [d/2, d].
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	half := int64(d / 2)
	return time.Duration(half + mrand.Int64N(half+1))
}

// stream runs one Ingest stream: it sends queued batches within the window
// and heartbeats, and applies acknowledgements. progressed reports whether
// any batch was acknowledged.
func (s *Shipper) stream(ctx context.Context, client watchpostv1.IngestServiceClient) (progressed bool, err error) {
	// The stream outlives ctx by the final heartbeat of a clean stop.
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	st, err := client.Ingest(sctx, grpc.WaitForReady(false))
	if err != nil {
		return false, fmt.Errorf("opening stream: %w", err)
	}
	acks := make(chan *watchpostv1.Ack, s.cfg.Window)
	cmds := make(chan *watchpostv1.Command, 64)
	recvErr := make(chan error, 1)
	go func() {
		for {
			resp, err := st.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			if a := resp.GetAck(); a != nil {
				select {
				case acks <- a:
				case <-sctx.Done():
					return
				}
			}
			if c := resp.GetCommand(); c != nil && s.deps.Commands != nil {
				select {
				case cmds <- c:
				case <-sctx.Done():
					return
				}
			}
		}
	}()
	hb := time.NewTicker(s.cfg.HeartbeatInterval)
	defer hb.Stop()
	if err := st.Send(&watchpostv1.IngestRequest{Msg: &watchpostv1.IngestRequest_Heartbeat{Heartbeat: s.heartbeat(false)}}); err != nil {
		return false, fmt.Errorf("sending heartbeat: %w", err)
	}
	// Batches queued before this stream opened are the backlog: they are
	// sent behind newer batches, at most DrainBytesPerSecond.
	backlogEnd := s.lastPushed.Load()
	var liveCursor, backlogCursor uint64 = backlogEnd, 0
	drainWait := time.NewTimer(time.Hour)
	drainWait.Stop()
	defer drainWait.Stop()
	waiting := false
	inflight := make(map[uint64]uint32, s.cfg.Window)
	sendBatch := func(b *watchpostv1.Batch) error {
		if err := st.Send(&watchpostv1.IngestRequest{Msg: &watchpostv1.IngestRequest_Batch{Batch: b}}); err != nil {
			return fmt.Errorf("sending batch %d: %w", b.BatchSeq, err)
		}
		s.sent.Add(1)
		if b.BatchSeq <= s.highestSent.Load() {
			s.resent.Add(1)
		} else {
			s.highestSent.Store(b.BatchSeq)
		}
		inflight[b.BatchSeq] = b.EventCount
		return nil
	}
	// next returns the next batch to send: new ones first, then the
	// backlog when the drain rate allows.
	next := func() *watchpostv1.Batch {
		for {
			b := s.queue.Next(liveCursor)
			if b != nil {
				liveCursor = b.BatchSeq
			} else if backlogCursor < backlogEnd && !waiting {
				if b = s.queue.Next(backlogCursor); b == nil || b.BatchSeq > backlogEnd {
					backlogCursor = backlogEnd
					return nil
				}
				now := time.Now()
				if !s.drain.AllowN(now, len(b.Payload)) {
					need := float64(len(b.Payload)) - s.drain.TokensAt(now)
					drainWait.Reset(time.Duration(need / float64(s.drain.Limit()) * float64(time.Second)))
					waiting = true
					return nil
				}
				backlogCursor = b.BatchSeq
			}
			if b == nil {
				return nil
			}
			if b.AgentId != s.cfg.AgentID {
				// Spooled under another agent id (the configuration
				// changed): the collector would refuse the whole stream.
				if s.queue.Ack(b.BatchSeq) {
					s.refused.Add(1)
					s.cnt.drop(DropRejected, event.KindUnknown, uint64(b.EventCount))
					s.log.Error().Uint64("batch_seq", b.BatchSeq).Str("batch_agent_id", b.AgentId).Msg("dropping a spooled batch of another agent id (counted as rejected)")
				}
				continue
			}
			return b
		}
	}
	for {
		for len(inflight) < s.cfg.Window {
			b := next()
			if b == nil {
				break
			}
			if err := sendBatch(b); err != nil {
				return progressed, err
			}
		}
		select {
		case <-ctx.Done():
			if s.stopping.Load() {
				s.finalHeartbeat(st, recvErr)
			}
			_ = st.CloseSend()
			return progressed, ctx.Err()
		case err := <-recvErr:
			return progressed, fmt.Errorf("receiving: %w", err)
		case <-s.kick:
			hb.Reset(s.cfg.HeartbeatInterval)
			if err := st.Send(&watchpostv1.IngestRequest{Msg: &watchpostv1.IngestRequest_Heartbeat{Heartbeat: s.heartbeat(false)}}); err != nil {
				return progressed, fmt.Errorf("sending heartbeat: %w", err)
			}
		case <-hb.C:
			if err := st.Send(&watchpostv1.IngestRequest{Msg: &watchpostv1.IngestRequest_Heartbeat{Heartbeat: s.heartbeat(false)}}); err != nil {
				return progressed, fmt.Errorf("sending heartbeat: %w", err)
			}
		case <-drainWait.C:
			waiting = false
		case c := <-cmds:
			if ack := s.deps.Commands.Apply(c); ack != nil {
				if err := st.Send(&watchpostv1.IngestRequest{Msg: &watchpostv1.IngestRequest_CommandAck{CommandAck: ack}}); err != nil {
					return progressed, fmt.Errorf("sending command ack: %w", err)
				}
			}
		case <-s.queue.Ready():
		case a := <-acks:
			events, ok := inflight[a.BatchSeq]
			if !ok {
				continue // an ack from before a resend
			}
			delete(inflight, a.BatchSeq)
			switch a.Status {
			case watchpostv1.AckStatus_ACK_STATUS_STORED, watchpostv1.AckStatus_ACK_STATUS_DUPLICATE:
				if s.queue.Ack(a.BatchSeq) {
					s.acked.Add(1)
					// Events the collector refused alone (malformed) are
					// lost: counted, like a refused batch.
					refused := min(a.EventsRefused, events)
					s.eventsAcked.Add(uint64(events - refused))
					if refused > 0 {
						s.cnt.drop(DropRejected, event.KindUnknown, uint64(refused))
						s.refusedEvents.Add(uint64(refused))
						if s.refusedLogged.CompareAndSwap(false, true) {
							s.log.Error().Uint32("events", refused).Str("reason", a.Message).Msg("the collector refused events of a stored batch (counted as rejected; logged once)")
						}
					}
					if a.Status == watchpostv1.AckStatus_ACK_STATUS_DUPLICATE {
						s.dup.Add(1)
					}
				}
				progressed = true
			case watchpostv1.AckStatus_ACK_STATUS_REJECTED:
				if s.queue.Ack(a.BatchSeq) {
					s.refused.Add(1)
					s.cnt.drop(DropRejected, event.KindUnknown, uint64(events))
					s.log.Error().Uint64("batch_seq", a.BatchSeq).Int32("code", a.Code).Str("reason", a.Message).Msg("collector rejected a batch")
				}
				progressed = true
			default:
				return progressed, fmt.Errorf("batch %d: %w: %s", a.BatchSeq, errRetry, a.Message)
			}
		}
	}
}

// finalHeartbeat tells the collector that this is a clean stop, and waits
// briefly for it to close the stream (so that the heartbeat was read).
func (s *Shipper) finalHeartbeat(st grpc.BidiStreamingClient[watchpostv1.IngestRequest, watchpostv1.IngestResponse], recvErr <-chan error) {
	if err := st.Send(&watchpostv1.IngestRequest{Msg: &watchpostv1.IngestRequest_Heartbeat{Heartbeat: s.heartbeat(true)}}); err != nil {
		return
	}
	_ = st.CloseSend()
	t := time.NewTimer(2 * time.Second)
	defer t.Stop()
	select {
	case <-recvErr:
	case <-t.C:
	}
}

// heartbeat builds the next heartbeat from the agent's and the shipper's counters.
func (s *Shipper) heartbeat(final bool) *watchpostv1.Heartbeat {
	s.hbSeq++
	s.heartbeats.Add(1)
	hb := &watchpostv1.Heartbeat{
		Seq: s.hbSeq, BootId: s.cfg.BootID, RunId: s.cfg.RunID, TimeUnixNano: time.Now().UnixNano(),
		Host: s.cfg.Host, Version: version.Version,
		BatchesSent: s.sent.Load(), BatchesAcked: s.acked.Load(),
		InstanceId: s.instanceID, Final: final, IntervalNanos: int64(s.cfg.HeartbeatInterval),
		ShipperReceived: s.cnt.received.Load(),
	}
	var h event.Health
	if s.deps.Health != nil {
		h = s.deps.Health()
	}
	ph := HealthToProto(&h)
	hb.Produced, hb.Delivered, hb.Filtered, hb.Dropped = ph.Produced, ph.Delivered, ph.Filtered, ph.Dropped
	hb.Detection = ph.Detection
	hb.Baseline = ph.Baseline
	hb.Response = ph.Response
	if s.deps.Commands != nil {
		hb.CommandsEpoch, hb.CommandsApplied = s.deps.Commands.State()
	}
	hb.SpoolBytes, hb.Programs, hb.Kernel, hb.CapturePath = ph.SpoolBytes, ph.Programs, ph.Kernel, ph.CapturePath
	if s.durable != nil {
		hb.SpoolBytes = uint64(s.queue.Bytes())
		if c, ok := s.queue.(interface{ Cap() int64 }); ok {
			hb.SpoolCapacityBytes = uint64(c.Cap())
		}
	}
	if ph.Version != "" {
		hb.Version = ph.Version
	}
	hb.Drops = ph.Counters
	for _, r := range totalReasons {
		if n := s.cnt.total[r].Load(); n > 0 {
			hb.Drops = append(hb.Drops, &watchpostv1.Counter{Kind: "shipper", Reason: r, Count: n})
			hb.Dropped += n
		}
	}
	for _, r := range byKindReasons {
		for i, c := range s.cnt.byKind[r] {
			if n := c.Load(); n > 0 {
				hb.Drops = append(hb.Drops, &watchpostv1.Counter{Kind: kindList[i].String(), Reason: r, Count: n})
				hb.Dropped += n
			}
		}
	}
	return hb
}
