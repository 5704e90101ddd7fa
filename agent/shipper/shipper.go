// Package shipper sends the agent's events to the collector: it converts
// them to protobuf, batches them by count, bytes and age, compresses each
// batch with zstd and streams the batches over one bidirectional gRPC
// stream with mutual TLS, keeping a bounded window of unacknowledged
// batches. Unacknowledged batches wait in a Queue (in memory by default, a
// durable spool later) and are sent again after a reconnect; the collector
// stores each (agent, boot, run, batch sequence) once. Ship never blocks:
// what does not fit is dropped and counted by reason.
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
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	"github.com/watchpost/watchpost/agent/event"
	"github.com/watchpost/watchpost/agent/version"
	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

// Drop reasons counted by the shipper.
const (
	DropQueueFull      = "shipper_queue_full" // the event channel to the batcher was full
	DropBatchQueueFull = "batch_queue_full"   // the queue of unacknowledged batches was full
	DropRejected       = "rejected"           // the collector refused the batch for good
	DropShutdown       = "shutdown"           // unacknowledged when the shipper stopped
	DropEncode         = "encode_error"       // the event could not be serialized
)

var dropReasons = []string{DropQueueFull, DropBatchQueueFull, DropRejected, DropShutdown, DropEncode}

// Config holds the shipper's settings. Zero values take the defaults below.
type Config struct {
	// Address of the collector's ingest endpoint, host:port.
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
	}
	return nil
}

// Deps are the shipper's collaborators.
type Deps struct {
	Logger zerolog.Logger
	// Health, if set, supplies the agent's counters for heartbeats.
	Health func() event.Health
	// Queue replaces the in-memory queue (a durable spool).
	Queue Queue
	// TLS replaces the configuration loaded from the certificate files.
	TLS *tls.Config
}

// Stats are the shipper's counters.
type Stats struct {
	Accepted       uint64 // events taken by Ship
	BatchesSealed  uint64
	BatchesSent    uint64 // sends, including resends
	BatchesResent  uint64
	BatchesAcked   uint64 // stored or duplicate
	BatchesDup     uint64 // acknowledged as already stored
	BatchesRefused uint64
	EventsAcked    uint64
	Reconnects     uint64
	Heartbeats     uint64
	QueuedBatches  int
	QueuedBytes    int64
	Dropped        map[string]uint64 // events by reason
}

// Shipper is the agent's collector client.
type Shipper struct {
	cfg   Config
	log   zerolog.Logger
	deps  Deps
	queue Queue
	tls   *tls.Config

	in      chan *event.Event
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
	highestSent                                                                              atomic.Uint64
	dropped                                                                                  map[string]*atomic.Uint64 // events by reason

	nextSeq uint64 // batcher goroutine only
	hbSeq   uint64 // sender goroutine only
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
	s := &Shipper{
		cfg: cfg, deps: deps, queue: q, tls: tlsCfg,
		log:        deps.Logger.With().Str("component", "shipper").Logger(),
		in:         make(chan *event.Event, cfg.QueueEvents),
		batcherOut: make(chan struct{}),
		dropped:    map[string]*atomic.Uint64{},
		flush:      make(chan chan struct{}),
	}
	for _, r := range dropReasons {
		s.dropped[r] = new(atomic.Uint64)
	}
	return s, nil
}

// Ship hands one event to the shipper. It never blocks: when the queue is
// full the event is dropped and counted. The shipper owns ev afterwards.
func (s *Shipper) Ship(ev *event.Event) {
	if s.closed.Load() {
		s.dropped[DropShutdown].Add(1)
		return
	}
	select {
	case s.in <- ev:
		s.accepted.Add(1)
	default:
		s.dropped[DropQueueFull].Add(1)
	}
}

// Start connects (lazily: gRPC dials in the background) and starts the
// batcher and the sender.
func (s *Shipper) Start(ctx context.Context) error {
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("shipper already started")
	}
	conn, err := grpc.NewClient(s.cfg.Address,
		grpc.WithTransportCredentials(credentials.NewTLS(s.tls)),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{
			Time: s.cfg.KeepaliveTime, Timeout: s.cfg.KeepaliveTimeout, PermitWithoutStream: true,
		}),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(s.cfg.MaxMessageBytes)),
	)
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
	s.log.Info().Str("collector", s.cfg.Address).Str("run_id", s.cfg.RunID).Msg("shipper started")
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
// collector has acknowledged every queued batch or ctx ends; what is still
// unacknowledged then is counted as dropped (reason "shutdown"). It is
// idempotent and safe without Start.
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
		s.cancel()
		s.wg.Wait()
		for b := s.queue.Next(0); b != nil; b = s.queue.Next(b.BatchSeq) {
			s.dropped[DropShutdown].Add(uint64(b.EventCount))
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
		BatchesRefused: s.refused.Load(), EventsAcked: s.eventsAcked.Load(), Reconnects: s.reconnects.Load(),
		Heartbeats: s.heartbeats.Load(), QueuedBatches: s.queue.Len(), QueuedBytes: s.queue.Bytes(),
		Dropped: make(map[string]uint64, len(s.dropped)),
	}
	for r, c := range s.dropped {
		st.Dropped[r] = c.Load()
	}
	return st
}

// RunID is the sender incarnation id put on every batch.
func (s *Shipper) RunID() string { return s.cfg.RunID }

// batch converts events and seals batches until a final flush.
func (s *Shipper) batch(ctx context.Context, b *BatchBuilder) {
	var pev watchpostv1.Event
	age := time.NewTimer(time.Hour)
	age.Stop()
	armed := false
	seal := func() {
		if b.Count() == 0 {
			return
		}
		s.nextSeq++
		batch := b.Seal(s.cfg.AgentID, s.cfg.BootID, s.cfg.RunID, s.nextSeq)
		s.sealed.Add(1)
		if err := s.queue.Push(batch); err != nil {
			s.dropped[DropBatchQueueFull].Add(uint64(batch.EventCount))
			s.nextSeq-- // the sequence stays dense: the collector sees no hole
		}
		if armed {
			age.Stop()
			armed = false
		}
	}
	add := func(ev *event.Event) {
		ToProto(ev, &pev)
		if pev.Header.Host == "" {
			pev.Header.Host = s.cfg.Host
		}
		if err := b.Add(&pev); err != nil {
			s.dropped[DropEncode].Add(1)
			return
		}
		if b.Count() >= s.cfg.BatchMaxEvents || b.Size() >= s.cfg.BatchMaxBytes {
			seal()
		} else if !armed {
			age.Reset(s.cfg.BatchMaxAge)
			armed = true
		}
	}
	drain := func() {
		for {
			select {
			case ev := <-s.in:
				add(ev)
			default:
				return
			}
		}
	}
	for {
		select {
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
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := client.Ingest(sctx, grpc.WaitForReady(false))
	if err != nil {
		return false, fmt.Errorf("opening stream: %w", err)
	}
	acks := make(chan *watchpostv1.Ack, s.cfg.Window)
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
		}
	}()
	hb := time.NewTicker(s.cfg.HeartbeatInterval)
	defer hb.Stop()
	if err := st.Send(&watchpostv1.IngestRequest{Msg: &watchpostv1.IngestRequest_Heartbeat{Heartbeat: s.heartbeat()}}); err != nil {
		return false, fmt.Errorf("sending heartbeat: %w", err)
	}
	inflight := make(map[uint64]uint32, s.cfg.Window)
	var cursor uint64
	for {
		for len(inflight) < s.cfg.Window {
			b := s.queue.Next(cursor)
			if b == nil {
				break
			}
			if err := st.Send(&watchpostv1.IngestRequest{Msg: &watchpostv1.IngestRequest_Batch{Batch: b}}); err != nil {
				return progressed, fmt.Errorf("sending batch %d: %w", b.BatchSeq, err)
			}
			s.sent.Add(1)
			if b.BatchSeq <= s.highestSent.Load() {
				s.resent.Add(1)
			} else {
				s.highestSent.Store(b.BatchSeq)
			}
			inflight[b.BatchSeq] = b.EventCount
			cursor = b.BatchSeq
		}
		select {
		case <-ctx.Done():
			_ = st.CloseSend()
			return progressed, ctx.Err()
		case err := <-recvErr:
			return progressed, fmt.Errorf("receiving: %w", err)
		case <-hb.C:
			if err := st.Send(&watchpostv1.IngestRequest{Msg: &watchpostv1.IngestRequest_Heartbeat{Heartbeat: s.heartbeat()}}); err != nil {
				return progressed, fmt.Errorf("sending heartbeat: %w", err)
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
					s.eventsAcked.Add(uint64(events))
					if a.Status == watchpostv1.AckStatus_ACK_STATUS_DUPLICATE {
						s.dup.Add(1)
					}
				}
				progressed = true
			case watchpostv1.AckStatus_ACK_STATUS_REJECTED:
				if s.queue.Ack(a.BatchSeq) {
					s.refused.Add(1)
					s.dropped[DropRejected].Add(uint64(events))
					s.log.Error().Uint64("batch_seq", a.BatchSeq).Int32("code", a.Code).Str("reason", a.Message).Msg("collector rejected a batch")
				}
				progressed = true
			default:
				return progressed, fmt.Errorf("batch %d: %w: %s", a.BatchSeq, errRetry, a.Message)
			}
		}
	}
}

// heartbeat builds the next heartbeat from the agent's and the shipper's counters.
func (s *Shipper) heartbeat() *watchpostv1.Heartbeat {
	s.hbSeq++
	s.heartbeats.Add(1)
	hb := &watchpostv1.Heartbeat{
		Seq: s.hbSeq, BootId: s.cfg.BootID, RunId: s.cfg.RunID, TimeUnixNano: time.Now().UnixNano(),
		Host: s.cfg.Host, Version: version.Version,
		BatchesSent: s.sent.Load(), BatchesAcked: s.acked.Load(),
	}
	var h event.Health
	if s.deps.Health != nil {
		h = s.deps.Health()
	}
	ph := HealthToProto(&h)
	hb.Produced, hb.Delivered, hb.Filtered, hb.Dropped = ph.Produced, ph.Delivered, ph.Filtered, ph.Dropped
	hb.SpoolBytes, hb.Programs, hb.Kernel, hb.CapturePath = ph.SpoolBytes, ph.Programs, ph.Kernel, ph.CapturePath
	if ph.Version != "" {
		hb.Version = ph.Version
	}
	hb.Drops = ph.Counters
	for _, r := range dropReasons {
		if n := s.dropped[r].Load(); n > 0 {
			hb.Drops = append(hb.Drops, &watchpostv1.Counter{Kind: "shipper", Reason: r, Count: n})
			hb.Dropped += n
		}
	}
	return hb
}
