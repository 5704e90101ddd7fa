package collector

import (
	"context"
	"crypto/x509"
	"errors"
	"io"
	"sort"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/watchpost/watchpost/collector/ingest"
	"github.com/watchpost/watchpost/collector/store"
	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

// agentIdentity is the verified client certificate's common name, or its
// first URI SAN when the common name is empty, and the certificate.
func agentIdentity(ctx context.Context) (string, *x509.Certificate, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "", nil, status.Error(codes.Unauthenticated, "no peer")
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return "", nil, status.Error(codes.Unauthenticated, "no verified client certificate")
	}
	leaf := info.State.VerifiedChains[0][0]
	if leaf.Subject.CommonName != "" {
		return leaf.Subject.CommonName, leaf, nil
	}
	if len(leaf.URIs) > 0 {
		return leaf.URIs[0].String(), leaf, nil
	}
	return "", nil, status.Error(codes.Unauthenticated, "client certificate names no agent (empty CN and no URI SAN)")
}

// job is one received message waiting for the store, in stream order.
type job struct {
	batch     *watchpostv1.Batch
	decoded   *ingest.Decoded
	reject    error // refused: ack REJECTED with this status
	heartbeat *watchpostv1.Heartbeat
	cmdAck    *watchpostv1.CommandAck
	received  time.Time
	held      int64 // bytes of memory in flight, released after the commit
}

// stream is one ingest stream's context.
type stream struct {
	agent string
	state *agentState
	st    grpc.BidiStreamingServer[watchpostv1.IngestRequest, watchpostv1.IngestResponse]
	// instance is the agent process id its heartbeats name (duplicate detection).
	instance string
}

// Ingest implements IngestService: it reads batches and heartbeats,
// validates them, and hands them to a second goroutine that commits the
// waiting batches together and acknowledges each after the commit.
func (c *Collector) Ingest(st grpc.BidiStreamingServer[watchpostv1.IngestRequest, watchpostv1.IngestResponse]) error {
	ctx := st.Context()
	agent, cert, err := agentIdentity(ctx)
	if err != nil {
		return err
	}
	if why := c.revocations.revoked(agent, cert); why != "" {
		c.noticeExample(agent, refusalStream, "revoked", 1, why)
		return status.Errorf(codes.PermissionDenied, "certificate of %q is revoked (%s)", agent, why)
	}
	select {
	case c.streams <- struct{}{}:
	default:
		c.streamsRefused.Add(1)
		return status.Errorf(codes.ResourceExhausted, "too many ingest streams (max %d)", c.cfg.Ingest.MaxStreams)
	}
	defer func() { <-c.streams }()
	a := c.agentState(agent)
	serial := certSerial(cert)
	if err := c.openStream(agent, a, serial); err != nil {
		return err
	}
	defer c.closeStream(a, serial)
	c.streamsActive.Add(1)
	defer c.streamsActive.Add(-1)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c.watchRevocation(ctx, cancel, agent, cert)
	s := &stream{agent: agent, state: a, st: st}
	c.streamOpened.Store(agent, struct{}{})
	pending := make(chan job, c.cfg.Ingest.MaxPendingBatches)
	quit := make(chan struct{})
	commitDone := make(chan error, 1)
	cs := c.cmds.add(agent)
	defer c.cmds.remove(agent, cs)
	go func() { commitDone <- c.commitLoop(ctx, s, pending, quit, cs) }()
	recvDone := make(chan error, 1)
	go func() {
		err := c.receive(ctx, s, pending)
		close(pending)
		recvDone <- err
	}()
	defer c.forgetInstance(s)
	select {
	case err = <-recvDone:
		if cerr := <-commitDone; err == nil {
			err = cerr
		}
		if ctx.Err() != nil && st.Context().Err() == nil {
			return status.Errorf(codes.PermissionDenied, "certificate of %q was revoked", agent)
		}
		return err
	case <-c.stopping:
		// Commit and acknowledge what was received, then end the stream;
		// the receiver ends with the stream's context.
		close(quit)
		<-commitDone
		return status.Error(codes.Unavailable, "collector shutting down")
	case <-ctx.Done():
		if st.Context().Err() != nil {
			// The agent went away: the receiver ends with it.
			err = <-recvDone
			if cerr := <-commitDone; err == nil {
				err = cerr
			}
			return err
		}
		// Revoked: end the stream now, even when the agent sends nothing
		// (the receiver ends with the stream).
		close(quit)
		<-commitDone
		return status.Errorf(codes.PermissionDenied, "certificate of %q was revoked", agent)
	}
}

// openStream counts a stream of the agent, refusing it beyond
// max_streams_per_agent: one certificate cannot lock the others out.
func (c *Collector) openStream(agent string, a *agentState, serial string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.streams >= c.cfg.Ingest.MaxStreamsPerAgent {
		c.streamsRefused.Add(1)
		c.notice(agent, refusalStream, "streams_per_agent", 1)
		return status.Errorf(codes.ResourceExhausted, "agent %q has %d ingest streams open (max_streams_per_agent %d)", agent, a.streams, c.cfg.Ingest.MaxStreamsPerAgent)
	}
	a.streams++
	a.certs[serial]++
	if len(a.certs) > 1 {
		c.noticeExample(agent, refusalStream, "duplicate_identity", 1, "certificates "+strings.Join(sortedKeys(a.certs), ", ")+" connected at once")
	}
	c.lastSerial.Store(agent, serial)
	return nil
}

func (c *Collector) closeStream(a *agentState, serial string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.streams--
	release(a.certs, serial)
}

// release takes one use of key off a count map.
func release(m map[string]int, key string) {
	if m[key]--; m[key] <= 0 {
		delete(m, key)
	}
}

// sortedKeys lists a count map's keys in order.
func sortedKeys(m map[string]int) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// noteInstance records the agent process a stream's heartbeats name; two
// live streams naming different processes are one identity used twice.
func (c *Collector) noteInstance(s *stream, instance string) {
	if instance == "" || instance == s.instance {
		return
	}
	a := s.state
	a.mu.Lock()
	defer a.mu.Unlock()
	if s.instance != "" {
		release(a.insts, s.instance)
	}
	s.instance = instance
	a.insts[instance]++
	if len(a.insts) > 1 {
		c.noticeExample(s.agent, refusalStream, "duplicate_identity", 1, "agent processes "+strings.Join(sortedKeys(a.insts), ", ")+" stream at once")
	}
}

func (c *Collector) forgetInstance(s *stream) {
	if s.instance == "" {
		return
	}
	s.state.mu.Lock()
	defer s.state.mu.Unlock()
	release(s.state.insts, s.instance)
}

func (c *Collector) receive(ctx context.Context, s *stream, pending chan<- job) error {
	for {
		req, err := s.st.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		var j job
		j.received = time.Now()
		switch m := req.Msg.(type) {
		case *watchpostv1.IngestRequest_Heartbeat:
			hb := m.Heartbeat
			if err := c.dec.ValidateHeartbeat(hb); err != nil {
				c.noticeExample(s.agent, refusalHeartbeat, "invalid", 1, err.Error())
				continue
			}
			if !s.state.heartbeats.Allow() && !hb.Final {
				c.notice(s.agent, refusalHeartbeat, "rate", 1)
				continue
			}
			c.noteInstance(s, hb.InstanceId)
			j.heartbeat = hb
		case *watchpostv1.IngestRequest_CommandAck:
			if len(m.CommandAck.Message) > maxInstanceID*8 {
				m.CommandAck.Message = m.CommandAck.Message[:maxInstanceID*8]
			}
			j.cmdAck = m.CommandAck
		case *watchpostv1.IngestRequest_Batch:
			b := m.Batch
			if b.AgentId != s.agent {
				return status.Errorf(codes.PermissionDenied, "batch.agent_id: %q is not the authenticated agent %q", b.AgentId, s.agent)
			}
			if err := c.admit(ctx, s, &j, b); err != nil {
				return err
			}
		default:
			return status.Error(codes.InvalidArgument, "request.msg: empty")
		}
		select {
		case pending <- j:
		case <-ctx.Done():
			c.release(s.state, j.held)
			return status.FromContextError(ctx.Err()).Err()
		}
	}
}

// admit checks a batch against the limits, waits for the agent's budgets
// (memory in flight, events and bytes per second) and decodes it.
func (c *Collector) admit(ctx context.Context, s *stream, j *job, b *watchpostv1.Batch) error {
	j.batch = b
	if err := c.dec.Check(b); err != nil {
		j.reject = rejection(err)
		return nil
	}
	held := int64(b.UncompressedSize) + int64(len(b.Payload))
	if err := c.hold(ctx, s.agent, s.state, held); err != nil {
		return status.FromContextError(err).Err()
	}
	j.held = held
	if err := c.wait(ctx, s.agent, "events_per_second", s.state.events, int(max(b.EventCount, 1))); err != nil {
		return status.FromContextError(err).Err()
	}
	if err := c.wait(ctx, s.agent, "bytes_per_second", s.state.bytes, int(b.UncompressedSize)); err != nil {
		return status.FromContextError(err).Err()
	}
	dec, err := c.dec.Decode(b, j.received)
	if err != nil {
		j.reject = rejection(err)
		return nil
	}
	j.decoded = dec
	return nil
}

func rejection(err error) error {
	if errors.Is(err, ingest.ErrTooLarge) {
		return status.Error(codes.ResourceExhausted, err.Error())
	}
	return status.Error(codes.InvalidArgument, err.Error())
}

// commitLoop stores waiting jobs in groups and acknowledges them in order.
func (c *Collector) commitLoop(ctx context.Context, s *stream, pending <-chan job, quit <-chan struct{}, cs *cmdStream) error {
	agent, st := s.agent, s.st
	var failed error
	for {
		var j job
		var ok bool
		select {
		case j, ok = <-pending:
		case <-cs.notify:
			// New commands: this goroutine is the stream's only sender.
			if failed == nil {
				if err := c.sendCommands(ctx, agent, st, cs); err != nil {
					failed = err
				}
			}
			continue
		case <-quit:
			select {
			case j, ok = <-pending:
			default:
				return failed
			}
		}
		if !ok {
			return failed
		}
		group := []job{j}
		events := len(j.decodedEvents())
	more:
		for events < c.cfg.Ingest.MaxEventsPerBatch {
			select {
			case next, ok := <-pending:
				if !ok {
					break more
				}
				group = append(group, next)
				events += len(next.decodedEvents())
			default:
				break more
			}
		}
		if failed == nil {
			if err := c.commit(ctx, s, group, cs); err != nil {
				failed = err
			}
		}
		// The stream is ending when failed is set: drain.
		for _, j := range group {
			c.release(s.state, j.held)
		}
	}
}

func (j *job) decodedEvents() []*watchpostv1.Event {
	if j.decoded == nil {
		return nil
	}
	return j.decoded.Events
}

func (c *Collector) commit(ctx context.Context, s *stream, group []job, cs *cmdStream) error {
	agent, st := s.agent, s.st
	var inputs []store.BatchInput
	for _, j := range group {
		if j.decoded != nil {
			b := j.batch
			inputs = append(inputs, store.BatchInput{
				Key:    store.BatchKey{AgentID: agent, BootID: b.BootId, RunID: b.RunId, BatchSeq: b.BatchSeq},
				Events: j.decoded.Events, Raw: j.decoded.Raw, Alerts: detectionAlerts(agent, b.BootId, j.decoded.Events),
			})
		}
	}
	var results []store.Result
	var storeErr error
	if len(inputs) > 0 {
		results, storeErr = c.sink.StoreBatches(ctx, inputs)
		if storeErr != nil {
			c.log.Error().Err(storeErr).Str("agent", agent).Int("batches", len(inputs)).Msg("storing batches failed, asking the agent to retry")
		} else if c.queue == nil {
			c.trimToQuota(ctx) // behind the queue the writers apply the quota
		}
	}
	ri := 0
	for _, j := range group {
		if j.cmdAck != nil {
			c.commandAck(ctx, agent, j.cmdAck, j.received)
			continue
		}
		if j.heartbeat != nil {
			if err := c.sink.RecordHeartbeat(ctx, agent, j.heartbeat, j.received); err != nil {
				c.log.Error().Err(err).Str("agent", agent).Msg("storing heartbeat failed")
			} else {
				c.heartbeats.Add(1)
				c.heartbeatAlerts(ctx, agent, j.heartbeat, j.received)
			}
			first := !cs.known
			cs.heartbeat(j.heartbeat)
			if first {
				if err := c.sendCommands(ctx, agent, st, cs); err != nil {
					return err
				}
			}
			continue
		}
		ack := &watchpostv1.Ack{BatchSeq: j.batch.BatchSeq}
		switch {
		case j.reject != nil:
			st := status.Convert(j.reject)
			ack.Status, ack.Code, ack.Message = watchpostv1.AckStatus_ACK_STATUS_REJECTED, int32(st.Code()), st.Message()
			c.countRejected(st.Code())
			c.noticeExample(agent, refusalBatch, strings.ToLower(st.Code().String()), 1, st.Message())
			if err := c.sink.RecordRejected(ctx, agent); err != nil {
				c.log.Error().Err(err).Str("agent", agent).Msg("counting rejected batch failed")
			}
		case storeErr != nil:
			ack.Status, ack.Code, ack.Message = watchpostv1.AckStatus_ACK_STATUS_RETRY, int32(codes.Unavailable), "storage unavailable"
			c.batchesRetry.Add(1)
		default:
			switch results[ri] {
			case store.Stored:
				d := j.decoded
				ack.Status = watchpostv1.AckStatus_ACK_STATUS_STORED
				ack.EventsRefused, ack.EventsTruncated, ack.Message = uint32(d.Refused), uint32(d.Truncated), d.First
				c.batchesStored.Add(1)
				c.eventsStored.Add(uint64(len(d.Events)))
				c.eventsRefused.Add(uint64(d.Refused))
				for reason, n := range d.Reasons {
					c.noticeExample(agent, refusalEvent, reason, n, d.First)
				}
				c.hub.publish(agent, j.batch.BootId, d)
				c.noteAgentEvents(ctx, agent, d.Events)
				c.countDetections(inputs[ri].Alerts)
			case store.Duplicate:
				ack.Status = watchpostv1.AckStatus_ACK_STATUS_DUPLICATE
				c.batchesDup.Add(1)
			}
			ri++
		}
		if err := st.Send(&watchpostv1.IngestResponse{Msg: &watchpostv1.IngestResponse_Ack{Ack: ack}}); err != nil {
			return err
		}
	}
	return nil
}

func (c *Collector) countRejected(code codes.Code) {
	c.countMu.Lock()
	c.rejected[code.String()]++
	c.countMu.Unlock()
}
