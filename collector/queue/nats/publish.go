package nats

import (
	"context"
	"fmt"
	"strconv"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/watchpost/watchpost/collector/store"
	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

// Publisher is the collector's side: it takes the place of the store in the
// ingest path (the same three writes), publishing instead of storing.
type Publisher struct {
	c       *Conn
	timeout time.Duration
}

// NewPublisher publishes on c, waiting at most timeout for acknowledgements.
func NewPublisher(c *Conn, timeout time.Duration) *Publisher {
	return &Publisher{c: c, timeout: timeout}
}

func (p *Publisher) msg(agent, kind string, received time.Time) *natsgo.Msg {
	m := natsgo.NewMsg(SubjectFor(p.c.opt.Subject, p.c.opt.Site, agent, kind))
	m.Header.Set(HdrAgent, agent)
	m.Header.Set(HdrReceived, strconv.FormatInt(received.UnixNano(), 10))
	return m
}

// StoreBatches publishes every batch asynchronously and waits for all the
// acknowledgements. It reports every batch as stored (durably queued) or
// fails as a whole: the agent then resends, and a batch already queued is
// absorbed by the stream's duplicate window or by the store's deduplication.
func (p *Publisher) StoreBatches(ctx context.Context, batches []store.BatchInput) ([]store.Result, error) {
	now := time.Now()
	futures := make([]jetstream.PubAckFuture, 0, len(batches))
	for _, b := range batches {
		m := p.msg(b.Key.AgentID, KindEvents, now)
		m.Header.Set(HdrBoot, b.Key.BootID)
		m.Header.Set(HdrRun, b.Key.RunID)
		m.Header.Set(HdrSeq, strconv.FormatUint(b.Key.BatchSeq, 10))
		m.Header.Set(HdrCount, strconv.Itoa(len(b.Raw)))
		size := 0
		for _, r := range b.Raw {
			size += len(r) + 8
		}
		m.Data = AppendEventList(make([]byte, 0, size), b.Raw)
		f, err := p.c.js.PublishMsgAsync(m, jetstream.WithMsgID(msgID(b.Key.AgentID, b.Key.BootID, b.Key.RunID, b.Key.BatchSeq)),
			jetstream.WithExpectStream(p.c.opt.Stream))
		if err != nil {
			return nil, fmt.Errorf("publishing batch %d of %s: %w", b.Key.BatchSeq, b.Key.AgentID, err)
		}
		futures = append(futures, f)
	}
	if err := p.wait(ctx, futures); err != nil {
		return nil, err
	}
	results := make([]store.Result, len(batches))
	for i := range results {
		results[i] = store.Stored
	}
	return results, nil
}

func (p *Publisher) wait(ctx context.Context, futures []jetstream.PubAckFuture) error {
	t := time.NewTimer(p.timeout)
	defer t.Stop()
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("jetstream: %w", err)
		case <-t.C:
			return fmt.Errorf("%w within %s", ErrNotAcked, p.timeout)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (p *Publisher) publish(ctx context.Context, m *natsgo.Msg) error {
	f, err := p.c.js.PublishMsgAsync(m, jetstream.WithExpectStream(p.c.opt.Stream))
	if err != nil {
		return fmt.Errorf("publishing %s: %w", m.Subject, err)
	}
	return p.wait(ctx, []jetstream.PubAckFuture{f})
}

// RecordHeartbeat publishes a heartbeat.
func (p *Publisher) RecordHeartbeat(ctx context.Context, agentID string, hb *watchpostv1.Heartbeat, received time.Time) error {
	m := p.msg(agentID, KindHeartbeat, received)
	var err error
	if m.Data, err = proto.Marshal(hb); err != nil {
		return fmt.Errorf("encoding heartbeat: %w", err)
	}
	return p.publish(ctx, m)
}

// RecordRejected publishes that a batch of agentID was refused.
func (p *Publisher) RecordRejected(ctx context.Context, agentID string) error {
	return p.publish(ctx, p.msg(agentID, KindRejected, time.Now()))
}
