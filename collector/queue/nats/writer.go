package nats

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"google.golang.org/protobuf/proto"

	"github.com/watchpost/watchpost/collector/store"
	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

// WriterOptions configure a store writer.
type WriterOptions struct {
	// Consumer is the durable consumer every writer shares.
	Consumer string
	// AckWait: a batch not acknowledged this long after delivery goes to
	// another writer (or to this one again).
	AckWait time.Duration
	// FetchBatches is how many messages are taken, stored in one
	// transaction and acknowledged together.
	FetchBatches int
	// Concurrency is how many fetch-and-commit loops run at once: a commit
	// waits for the database's fsync, so one loop alone is bound by its
	// latency, not by the CPU.
	Concurrency int
	// Derive fills what the store keeps beside a batch's events and the
	// collector derived from them (the alerts that alert events carry),
	// before the batch is stored.
	Derive func(*store.BatchInput)
	// Retention is enforced every RetentionInterval (by one writer at a time).
	Retention         store.Retention
	RetentionInterval time.Duration
}

// WriterStats are a writer's counters.
type WriterStats struct {
	Messages, BatchesStored, BatchesDuplicate, EventsStored uint64
	Heartbeats, Rejected                                    uint64
	// Poison counts messages that could not be decoded; they are
	// terminated (never redelivered) and logged.
	Poison uint64
	// StoreErrors counts failed commits; their messages are redelivered.
	StoreErrors uint64
}

// Writer consumes the stream and writes to the store.
type Writer struct {
	c    *Conn
	st   store.Store
	opt  WriterOptions
	log  zerolog.Logger
	cons jetstream.Consumer

	messages, stored, dup, events, heartbeats, rejected, poison, storeErrs atomic.Uint64
	lastTrim                                                               atomic.Int64 // unix nanoseconds
}

// trimEvery bounds how often a writer applies the storage quota after its
// commits: the check reads every agent's usage, and an agent can outgrow
// its quota by at most this much of its own ingest.
const trimEvery = time.Second

// writeTimeout bounds one fetch's store transaction.
const writeTimeout = 2 * time.Minute

// maxAckPending bounds the batches delivered and not yet acknowledged, over all writers.
const maxAckPending = 8192

// NewWriter creates or updates the durable consumer.
func NewWriter(ctx context.Context, c *Conn, st store.Store, opt WriterOptions, log zerolog.Logger) (*Writer, error) {
	w := &Writer{c: c, st: st, opt: opt, log: log}
	cfg := jetstream.ConsumerConfig{
		Durable:       opt.Consumer,
		Description:   "Watchpost store writers",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       opt.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: maxAckPending,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
	for {
		cctx, cancel := context.WithTimeout(ctx, apiTimeout)
		cons, err := c.js.CreateOrUpdateConsumer(cctx, c.opt.Stream, cfg)
		cancel()
		if err == nil {
			w.cons = cons
			return w, nil
		}
		w.log.Warn().Err(err).Msg("creating the consumer; retrying")
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("creating consumer %s: %w", opt.Consumer, err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// Stats returns a snapshot of the counters.
func (w *Writer) Stats() WriterStats {
	return WriterStats{Messages: w.messages.Load(), BatchesStored: w.stored.Load(), BatchesDuplicate: w.dup.Load(),
		EventsStored: w.events.Load(), Heartbeats: w.heartbeats.Load(), Rejected: w.rejected.Load(),
		Poison: w.poison.Load(), StoreErrors: w.storeErrs.Load()}
}

// Run takes batches until ctx ends, in Concurrency loops, and enforces
// retention. A failed commit is retried with a backoff; nothing is
// acknowledged before its commit.
func (w *Writer) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for i := 0; i < max(w.opt.Concurrency, 1); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.loop(ctx)
		}()
	}
	if w.opt.RetentionInterval > 0 {
		t := time.NewTicker(w.opt.RetentionInterval)
		defer t.Stop()
	retention:
		for {
			select {
			case <-ctx.Done():
				break retention
			case <-t.C:
				dropped, trimmed, err := w.st.EnforceRetention(ctx, w.opt.Retention, time.Now())
				if err != nil {
					w.log.Error().Err(err).Msg("retention failed")
				}
				if len(dropped) > 0 {
					w.log.Info().Strs("partitions", dropped).Msg("retention dropped partitions")
				}
				for _, t := range trimmed {
					w.log.Warn().Str("agent", t.AgentID).Uint64("events", t.Events).Int64("bytes", t.Bytes).Msg("storage quota: the agent's oldest events deleted")
				}
			}
		}
	}
	wg.Wait()
	return nil
}

func (w *Writer) loop(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		batch, err := w.cons.Fetch(w.opt.FetchBatches, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			w.log.Warn().Err(err).Msg("fetch failed")
			sleep(ctx, backoff)
			backoff = min(backoff*2, 5*time.Second)
			continue
		}
		var msgs []jetstream.Msg
		for m := range batch.Messages() {
			msgs = append(msgs, m)
		}
		if len(msgs) == 0 {
			continue
		}
		// A stop lets the batches taken finish: they are committed and
		// acknowledged, not left for ack_wait.
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
		err = w.write(wctx, msgs)
		cancel()
		if err != nil {
			w.storeErrs.Add(1)
			w.log.Error().Err(err).Int("messages", len(msgs)).Dur("retry_in", backoff).Msg("storing failed; the batches will be delivered again")
			for _, m := range msgs {
				_ = m.NakWithDelay(backoff)
			}
			sleep(ctx, backoff)
			backoff = min(backoff*2, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// write stores one fetch: the batches in one transaction, then the
// heartbeats and rejections, then acknowledges every message.
func (w *Writer) write(ctx context.Context, msgs []jetstream.Msg) error {
	var inputs []store.BatchInput
	var inputMsgs []jetstream.Msg
	var rest []jetstream.Msg
	for _, m := range msgs {
		w.messages.Add(1)
		kind := m.Subject()[strings.LastIndexByte(m.Subject(), '.')+1:]
		switch kind {
		case KindEvents:
			in, err := decodeBatch(m)
			if err != nil {
				w.terminate(m, err)
				continue
			}
			if w.opt.Derive != nil {
				w.opt.Derive(&in)
			}
			inputs = append(inputs, in)
			inputMsgs = append(inputMsgs, m)
		case KindHeartbeat, KindRejected:
			rest = append(rest, m)
		default:
			w.terminate(m, fmt.Errorf("unknown message kind %q", kind))
		}
	}
	if len(inputs) > 0 {
		res, err := w.st.StoreBatches(ctx, inputs)
		if err != nil {
			return err
		}
		for i, r := range res {
			if r == store.Stored {
				w.stored.Add(1)
				w.events.Add(uint64(len(inputs[i].Events)))
			} else {
				w.dup.Add(1)
			}
		}
	}
	w.trimToQuota(ctx)
	for _, m := range rest {
		agent := m.Headers().Get(HdrAgent)
		if strings.HasSuffix(m.Subject(), "."+KindRejected) {
			if err := w.st.RecordRejected(ctx, agent); err != nil {
				return err
			}
			w.rejected.Add(1)
			continue
		}
		hb := &watchpostv1.Heartbeat{}
		received, err := strconv.ParseInt(m.Headers().Get(HdrReceived), 10, 64)
		if err == nil {
			err = proto.Unmarshal(m.Data(), hb)
		}
		if err != nil || agent == "" {
			w.terminate(m, fmt.Errorf("heartbeat: %v (agent %q)", err, agent))
			continue
		}
		if err := w.st.RecordHeartbeat(ctx, agent, hb, time.Unix(0, received)); err != nil {
			return err
		}
		w.heartbeats.Add(1)
	}
	for _, m := range append(inputMsgs, rest...) {
		if err := m.Ack(); err != nil {
			// Redelivered after ack_wait and then answered as a duplicate.
			w.log.Debug().Err(err).Msg("ack failed")
		}
	}
	return nil
}

// trimToQuota applies the storage quota after commits, at most every
// trimEvery (concurrent loops: one of them does it).
func (w *Writer) trimToQuota(ctx context.Context) {
	q := w.opt.Retention.Quota
	if q.MaxBytes <= 0 && q.PerAgent <= 0 {
		return
	}
	now, last := time.Now().UnixNano(), w.lastTrim.Load()
	if now-last < int64(trimEvery) || !w.lastTrim.CompareAndSwap(last, now) {
		return
	}
	trimmed, err := w.st.TrimToQuota(ctx, q)
	if err != nil {
		w.log.Error().Err(err).Msg("applying the storage quota failed")
	}
	for _, t := range trimmed {
		w.log.Warn().Str("agent", t.AgentID).Uint64("events", t.Events).Int64("bytes", t.Bytes).Msg("storage quota: the agent's oldest events deleted")
	}
}

func (w *Writer) terminate(m jetstream.Msg, err error) {
	w.poison.Add(1)
	w.log.Error().Err(err).Str("subject", m.Subject()).Msg("undecodable message terminated (counted as poison)")
	_ = m.Term()
}

// decodeBatch rebuilds a store input from an events message.
func decodeBatch(m jetstream.Msg) (store.BatchInput, error) {
	h := m.Headers()
	seq, err := strconv.ParseUint(h.Get(HdrSeq), 10, 64)
	if err != nil {
		return store.BatchInput{}, fmt.Errorf("header %s: %w", HdrSeq, err)
	}
	in := store.BatchInput{Key: store.BatchKey{AgentID: h.Get(HdrAgent), BootID: h.Get(HdrBoot), RunID: h.Get(HdrRun), BatchSeq: seq}}
	if in.Key.AgentID == "" || in.Key.BootID == "" || in.Key.RunID == "" || seq == 0 {
		return in, errors.New("batch key headers missing")
	}
	raw, err := SplitEventList(m.Data())
	if err != nil {
		return in, err
	}
	if n, err := strconv.Atoi(h.Get(HdrCount)); err != nil || n != len(raw) || n == 0 {
		return in, fmt.Errorf("header %s says %q, the data holds %d events", HdrCount, h.Get(HdrCount), len(raw))
	}
	in.Raw = raw
	in.Events = make([]*watchpostv1.Event, len(raw))
	for i, r := range raw {
		ev := &watchpostv1.Event{}
		if err := proto.Unmarshal(r, ev); err != nil {
			return in, fmt.Errorf("event %d: %w", i, err)
		}
		if ev.Header == nil || ev.Process == nil {
			return in, fmt.Errorf("event %d: no header or process", i)
		}
		ev.Header.AgentId, ev.Header.BootId = in.Key.AgentID, in.Key.BootID
		in.Events[i] = ev
	}
	return in, nil
}
