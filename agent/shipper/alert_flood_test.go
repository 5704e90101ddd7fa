package shipper

import (
	"context"
	"crypto/tls"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/rs/zerolog"
	"google.golang.org/protobuf/proto"

	"github.com/watchpost/watchpost/agent/event"
	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

// TestAlertsSurviveAFlood: with the event channel full and the spool
// nearly full, a flood of file events is dropped and shed (and counted),
// while an alert shipped behind it takes its own lane, is kept by the
// tiers and leaves in a batch of its own at once.
func TestAlertsSurviveAFlood(t *testing.T) {
	q := NewMemoryQueue(10, 1<<20)
	for seq := uint64(1); seq <= 9; seq++ { // 90% full: normal and bulk events are shed
		if err := q.Push(queued(seq)); err != nil {
			t.Fatal(err)
		}
	}
	s, err := New(Config{Address: "127.0.0.1:1", AgentID: "a", BootID: "b", RunID: "r", QueueEvents: 8,
		BatchMaxAge: time.Hour, HeartbeatInterval: time.Hour},
		Deps{Logger: zerolog.Nop(), TLS: &tls.Config{}, Queue: q})
	if err != nil {
		t.Fatal(err)
	}
	s.nextSeq = 9
	// The batcher is not running yet: the channel fills after 8 events.
	for i := 0; i < 100; i++ {
		s.Ship(&event.Event{Kind: event.KindFileOpen, File: &event.File{Path: "/var/lib/plant/data", Write: true}})
	}
	alert := &event.Event{Kind: event.KindAlert, Seq: 4242, Alert: &event.Alert{RuleID: "wp-ot-fieldbus-shell", Title: "t", Level: "high"}}
	s.Ship(alert)
	if st := s.Stats(); st.Accepted != 9 || st.Dropped[DropQueueFull] != 92 {
		t.Fatalf("accepted %d, queue_full %d: want 9 (8 file events and the alert) and 92", st.Accepted, st.Dropped[DropQueueFull])
	}

	b, err := NewBatchBuilder(zstd.SpeedDefault)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.batch(ctx, b)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for q.Len() < 10 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
	if q.Len() != 10 {
		t.Fatalf("%d batches queued, want the 9 before and the alert's", q.Len())
	}
	got := q.Next(9)
	if got.EventCount != 1 {
		t.Fatalf("the alert's batch holds %d events, want 1 (the alert; the flood was shed)", got.EventCount)
	}
	payload := got.Payload
	if got.Compression == watchpostv1.Compression_COMPRESSION_ZSTD {
		dec, err := zstd.NewReader(nil)
		if err != nil {
			t.Fatal(err)
		}
		defer dec.Close()
		if payload, err = dec.DecodeAll(payload, nil); err != nil {
			t.Fatal(err)
		}
	}
	var list watchpostv1.EventList
	if err := proto.Unmarshal(payload, &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Events) != 1 || list.Events[0].GetAlert().GetRuleId() != "wp-ot-fieldbus-shell" {
		t.Fatalf("batch events %v, want the alert", list.Events)
	}
	st := s.Stats()
	if n := st.DroppedByKind[DropSpoolFull+"/file_open"]; n != 8 {
		t.Fatalf("spool_full/file_open %d, want the 8 file events the batcher shed (%v)", n, st.DroppedByKind)
	}
	if n := st.DroppedByKind[DropSpoolFull+"/alert"]; n != 0 {
		t.Fatalf("an alert was shed: %v", st.DroppedByKind)
	}
}
