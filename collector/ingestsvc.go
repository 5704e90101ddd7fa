package collector

import (
	"context"
	"errors"
	"io"
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
// first URI SAN when the common name is empty.
func agentIdentity(ctx context.Context) (string, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "", status.Error(codes.Unauthenticated, "no peer")
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return "", status.Error(codes.Unauthenticated, "no verified client certificate")
	}
	leaf := info.State.VerifiedChains[0][0]
	if leaf.Subject.CommonName != "" {
		return leaf.Subject.CommonName, nil
	}
	if len(leaf.URIs) > 0 {
		return leaf.URIs[0].String(), nil
	}
	return "", status.Error(codes.Unauthenticated, "client certificate names no agent (empty CN and no URI SAN)")
}

// job is one received message waiting for the store, in stream order.
type job struct {
	batch     *watchpostv1.Batch
	decoded   *ingest.Decoded
	reject    error // refused: ack REJECTED with this status
	heartbeat *watchpostv1.Heartbeat
	cmdAck    *watchpostv1.CommandAck
	received  time.Time
}

// Ingest implements IngestService: it reads batches and heartbeats,
// validates them, and hands them to a second goroutine that commits the
// waiting batches together and acknowledges each after the commit.
func (c *Collector) Ingest(st grpc.BidiStreamingServer[watchpostv1.IngestRequest, watchpostv1.IngestResponse]) error {
	ctx := st.Context()
	agent, err := agentIdentity(ctx)
	if err != nil {
		return err
	}
	select {
	case c.streams <- struct{}{}:
	default:
		c.streamsRefused.Add(1)
		return status.Errorf(codes.ResourceExhausted, "too many ingest streams (max %d)", c.cfg.Ingest.MaxStreams)
	}
	c.streamsActive.Add(1)
	defer func() {
		c.streamsActive.Add(-1)
		<-c.streams
	}()
	lim := c.limiter(agent)
	c.streamOpened.Store(agent, struct{}{})
	pending := make(chan job, c.cfg.Ingest.MaxPendingBatches)
	quit := make(chan struct{})
	commitDone := make(chan error, 1)
	cs := c.cmds.add(agent)
	defer c.cmds.remove(agent, cs)
	go func() { commitDone <- c.commitLoop(ctx, agent, st, pending, quit, cs) }()
	recvDone := make(chan error, 1)
	go func() {
		err := c.receive(ctx, agent, st, lim, pending)
		close(pending)
		recvDone <- err
	}()
	select {
	case err = <-recvDone:
		if cerr := <-commitDone; err == nil {
			err = cerr
		}
		return err
	case <-c.stopping:
		// Commit and acknowledge what was received, then end the stream;
		// the receiver ends with the stream's context.
		close(quit)
		<-commitDone
		return status.Error(codes.Unavailable, "collector shutting down")
	}
}

type limiter interface {
	WaitN(ctx context.Context, n int) error
	Burst() int
}

func (c *Collector) receive(ctx context.Context, agent string, st grpc.BidiStreamingServer[watchpostv1.IngestRequest, watchpostv1.IngestResponse], lim limiter, pending chan<- job) error {
	for {
		req, err := st.Recv()
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
			if err := c.dec.ValidateHeartbeat(m.Heartbeat); err != nil {
				return status.Error(codes.InvalidArgument, err.Error())
			}
			if len(m.Heartbeat.InstanceId) > maxInstanceID {
				return status.Errorf(codes.InvalidArgument, "heartbeat.instance_id: longer than %d bytes", maxInstanceID)
			}
			j.heartbeat = m.Heartbeat
		case *watchpostv1.IngestRequest_CommandAck:
			if len(m.CommandAck.Message) > maxInstanceID*8 {
				m.CommandAck.Message = m.CommandAck.Message[:maxInstanceID*8]
			}
			j.cmdAck = m.CommandAck
		case *watchpostv1.IngestRequest_Batch:
			b := m.Batch
			if b.AgentId != agent {
				return status.Errorf(codes.PermissionDenied, "batch.agent_id: %q is not the authenticated agent %q", b.AgentId, agent)
			}
			if err := lim.WaitN(ctx, int(min(max(b.EventCount, 1), uint32(lim.Burst())))); err != nil {
				return status.FromContextError(err).Err()
			}
			j.batch = b
			dec, err := c.dec.Decode(b)
			switch {
			case errors.Is(err, ingest.ErrTooLarge):
				j.reject = status.Error(codes.ResourceExhausted, err.Error())
			case err != nil:
				j.reject = status.Error(codes.InvalidArgument, err.Error())
			default:
				j.decoded = dec
			}
		default:
			return status.Error(codes.InvalidArgument, "request.msg: empty")
		}
		select {
		case pending <- j:
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
	}
}

// commitLoop stores waiting jobs in groups and acknowledges them in order.
func (c *Collector) commitLoop(ctx context.Context, agent string, st grpc.BidiStreamingServer[watchpostv1.IngestRequest, watchpostv1.IngestResponse], pending <-chan job, quit <-chan struct{}, cs *cmdStream) error {
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
		if failed != nil {
			continue // drain: the stream is ending
		}
		if err := c.commit(ctx, agent, st, group, cs); err != nil {
			failed = err
		}
	}
}

func (j *job) decodedEvents() []*watchpostv1.Event {
	if j.decoded == nil {
		return nil
	}
	return j.decoded.Events
}

func (c *Collector) commit(ctx context.Context, agent string, st grpc.BidiStreamingServer[watchpostv1.IngestRequest, watchpostv1.IngestResponse], group []job, cs *cmdStream) error {
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
			s := status.Convert(j.reject)
			ack.Status, ack.Code, ack.Message = watchpostv1.AckStatus_ACK_STATUS_REJECTED, int32(s.Code()), s.Message()
			c.countRejected(s.Code())
			if err := c.sink.RecordRejected(ctx, agent); err != nil {
				c.log.Error().Err(err).Str("agent", agent).Msg("counting rejected batch failed")
			}
		case storeErr != nil:
			ack.Status, ack.Code, ack.Message = watchpostv1.AckStatus_ACK_STATUS_RETRY, int32(codes.Unavailable), "storage unavailable"
			c.batchesRetry.Add(1)
		default:
			switch results[ri] {
			case store.Stored:
				ack.Status = watchpostv1.AckStatus_ACK_STATUS_STORED
				c.batchesStored.Add(1)
				c.eventsStored.Add(uint64(len(j.decoded.Events)))
				c.hub.publish(j.decoded)
				c.noteAgentStop(agent, j.decoded.Events)
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
