package shipper

import (
	"bytes"
	"context"
	"crypto/tls"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/grpc"

	"github.com/watchpost/watchpost/agent/event"
	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

// fakeStream records what the shipper sends and acknowledges each batch.
type fakeStream struct {
	grpc.ClientStream // unused methods
	ctx               context.Context
	sent              chan uint64 // batch sequences in send order
	acks              chan *watchpostv1.IngestResponse
}

func (f *fakeStream) Send(r *watchpostv1.IngestRequest) error {
	if b := r.GetBatch(); b != nil {
		f.sent <- b.BatchSeq
		f.acks <- &watchpostv1.IngestResponse{Msg: &watchpostv1.IngestResponse_Ack{Ack: &watchpostv1.Ack{BatchSeq: b.BatchSeq, Status: watchpostv1.AckStatus_ACK_STATUS_STORED}}}
	}
	return nil
}

func (f *fakeStream) Recv() (*watchpostv1.IngestResponse, error) {
	select {
	case a := <-f.acks:
		return a, nil
	case <-f.ctx.Done():
		return nil, f.ctx.Err()
	}
}

func (f *fakeStream) CloseSend() error { return nil }

type fakeClient struct{ st *fakeStream }

func (c fakeClient) Ingest(ctx context.Context, _ ...grpc.CallOption) (grpc.BidiStreamingClient[watchpostv1.IngestRequest, watchpostv1.IngestResponse], error) {
	c.st.ctx = ctx
	return c.st, nil
}

func queued(seq uint64) *watchpostv1.Batch {
	return &watchpostv1.Batch{AgentId: "a", BatchSeq: seq, EventCount: 1, Payload: bytes.Repeat([]byte{1}, 600)}
}

// TestLiveBatchesGoBeforeTheBacklog: batches queued before the stream
// opened drain at the drain rate, behind batches sealed afterwards.
func TestLiveBatchesGoBeforeTheBacklog(t *testing.T) {
	q := NewMemoryQueue(100, 1<<20)
	s, err := New(Config{Address: "127.0.0.1:1", AgentID: "a", BootID: "b", RunID: "r",
		DrainBytesPerSecond: 1000, MaxMessageBytes: 1000, HeartbeatInterval: time.Hour},
		Deps{Logger: zerolog.Nop(), TLS: &tls.Config{}, Queue: q})
	if err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); seq <= 3; seq++ {
		if err := q.Push(queued(seq)); err != nil {
			t.Fatal(err)
		}
	}
	s.lastPushed.Store(3)
	st := &fakeStream{sent: make(chan uint64, 16), acks: make(chan *watchpostv1.IngestResponse, 16)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = s.stream(ctx, fakeClient{st})
	}()
	defer func() {
		cancel()
		<-done
	}()
	next := func() uint64 {
		select {
		case seq := <-st.sent:
			return seq
		case <-time.After(10 * time.Second):
			t.Fatal("no batch sent within 10s")
			return 0
		}
	}
	// The bucket holds 1000 bytes: the first backlog batch (600) goes at
	// once, the second waits about 0.2s for tokens.
	if got := next(); got != 1 {
		t.Fatalf("first batch sent %d, want backlog batch 1", got)
	}
	for seq := uint64(4); seq <= 5; seq++ {
		if err := q.Push(queued(seq)); err != nil {
			t.Fatal(err)
		}
	}
	var order []uint64
	for range 4 {
		order = append(order, next())
	}
	want := []uint64{4, 5, 2, 3}
	for i := range want {
		if order[i] != want[i] {
			t.Fatalf("send order after the first batch %v, want %v", order, want)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for q.Len() != 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if q.Len() != 0 {
		t.Fatalf("%d batches unacknowledged", q.Len())
	}
}

func TestTiers(t *testing.T) {
	cases := []struct {
		ev   event.Event
		want tier
	}{
		{event.Event{Kind: event.KindExec}, tierCritical},
		{event.Event{Kind: event.KindCredChange}, tierCritical},
		{event.Event{Kind: event.KindModuleLoad}, tierCritical},
		{event.Event{Kind: event.KindAlert, Alert: &event.Alert{}}, tierCritical},
		{event.Event{Kind: event.KindFileOpen, File: &event.File{}}, tierBulk},
		{event.Event{Kind: event.KindFileOpen, File: &event.File{Write: true}}, tierNormal},
		{event.Event{Kind: event.KindFileOpen, File: &event.File{}, Industrial: &event.Industrial{Fieldbus: "ttyS"}}, tierCritical},
		{event.Event{Kind: event.KindNetConnect, Net: &event.Net{}}, tierNormal},
		{event.Event{Kind: event.KindNetConnect, Net: &event.Net{}, Industrial: &event.Industrial{Protocol: "modbus"}}, tierCritical},
		{event.Event{Kind: event.KindNetClose, Net: &event.Net{}}, tierBulk},
		{event.Event{Kind: event.KindExit}, tierBulk},
		{event.Event{Kind: event.KindFileUnlink, File: &event.File{}}, tierNormal},
	}
	for _, c := range cases {
		if got := tierOf(&c.ev); got != c.want {
			t.Errorf("%s (industrial %v): tier %d, want %d", c.ev.Kind, c.ev.Industrial, got, c.want)
		}
	}
}

func TestGapMarker(t *testing.T) {
	g := gapLedger{}
	g.add("file_open", DropSpoolFull, 7)
	g.add("exec", DropBatchQueueFull, 2)
	g.add("file_open", DropSpoolFull, 3)
	g.add("exit", DropSpoolFull, 0)
	ev := g.marker("gw1", time.Unix(100, 0))
	want := event.Gap{Reason: "batch_queue_full,spool_full", Counters: []event.Counter{
		{Kind: "exec", Reason: DropBatchQueueFull, Count: 2}, {Kind: "file_open", Reason: DropSpoolFull, Count: 10}}}
	if ev.Kind != event.KindGap || ev.Host != "gw1" || ev.Gap.Reason != want.Reason || len(ev.Gap.Counters) != 2 ||
		ev.Gap.Counters[0] != want.Counters[0] || ev.Gap.Counters[1] != want.Counters[1] {
		t.Fatalf("marker %+v %+v, want %+v", ev, ev.Gap, want)
	}
}
