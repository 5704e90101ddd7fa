package ingest_test

import (
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"google.golang.org/protobuf/proto"

	"github.com/watchpost/watchpost/agent/event"
	"github.com/watchpost/watchpost/agent/shipper"
	"github.com/watchpost/watchpost/collector/ingest"
	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

func seedBatch(t testing.TB, n int) *watchpostv1.Batch {
	b, err := shipper.NewBatchBuilder(zstd.SpeedFastest)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var pev watchpostv1.Event
	for i := 0; i < n; i++ {
		ev := &event.Event{Kind: event.KindFileOpen, Time: time.Unix(1_800_000_000, int64(i)), Seq: uint64(i + 1), Host: "gw",
			Process: event.Process{PID: uint32(100 + i), Comm: "sh", Exe: "/bin/sh", Args: []string{"sh", "-c", "x"}},
			File:    &event.File{Path: "/etc/passwd", Result: 3}}
		shipper.ToProto(ev, &pev)
		if err := b.Add(&pev); err != nil {
			t.Fatal(err)
		}
	}
	return b.Seal("agent", "boot", "run", 1)
}

func newDecoder(t testing.TB) *ingest.Decoder {
	d, err := ingest.NewDecoder(ingest.Limits{MaxUncompressedBytes: 1 << 20, MaxEvents: 100})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return d
}

// checkRoundTrip: a batch that decodes re-encodes to one that decodes to
// the same events.
func checkRoundTrip(t *testing.T, d *ingest.Decoder, b *watchpostv1.Batch) {
	dec, err := d.Decode(b, time.Time{})
	if err != nil {
		var fe *ingest.FieldError
		if !asFieldError(err, &fe) || fe.Path == "" {
			t.Fatalf("error without a field path: %v", err)
		}
		return
	}
	// Every declared event is stored or counted as refused; the stored
	// bytes decode to the stored events.
	if len(dec.Events)+dec.Refused != int(b.EventCount) || len(dec.Raw) != len(dec.Events) {
		t.Fatalf("decoded %d events (%d raw) and refused %d, batch declared %d", len(dec.Events), len(dec.Raw), dec.Refused, b.EventCount)
	}
	if len(dec.Events) == 0 {
		return
	}
	for i, raw := range dec.Raw {
		var ev watchpostv1.Event
		if err := proto.Unmarshal(raw, &ev); err != nil || !proto.Equal(&ev, dec.Events[i]) {
			t.Fatalf("event %d: stored bytes do not decode to the stored event (%v)", i, err)
		}
	}
	var list watchpostv1.EventList
	list.Events = dec.Events
	payload, err := proto.Marshal(&list)
	if err != nil {
		t.Fatal(err)
	}
	again, err := d.Decode(&watchpostv1.Batch{AgentId: b.AgentId, BootId: b.BootId, RunId: b.RunId, BatchSeq: b.BatchSeq,
		Compression: watchpostv1.Compression_COMPRESSION_NONE, Payload: payload, EventCount: uint32(len(dec.Events)), UncompressedSize: uint32(len(payload))}, time.Time{})
	if err != nil || again.Refused != 0 || again.Truncated != 0 {
		t.Fatalf("re-encoded batch: %v, %d refused, %d truncated; want all accepted as they are", err, again.Refused, again.Truncated)
	}
	for i := range dec.Events {
		if !proto.Equal(dec.Events[i], again.Events[i]) {
			t.Fatalf("event %d changed across a round trip", i)
		}
	}
}

func asFieldError(err error, fe **ingest.FieldError) bool {
	e, ok := err.(*ingest.FieldError)
	*fe = e
	return ok
}

// FuzzDecodeBatch feeds arbitrary serialized Batch messages.
func FuzzDecodeBatch(f *testing.F) {
	for _, n := range []int{1, 3} {
		b, err := proto.Marshal(seedBatch(f, n))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	d := newDecoder(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		var b watchpostv1.Batch
		if proto.Unmarshal(data, &b) != nil {
			return
		}
		checkRoundTrip(t, d, &b)
	})
}

// FuzzDecodePayload feeds arbitrary uncompressed payloads (the event list
// framing and the events themselves).
func FuzzDecodePayload(f *testing.F) {
	var dz *zstd.Decoder
	dz, _ = zstd.NewReader(nil)
	defer dz.Close()
	seed := seedBatch(f, 2)
	raw, err := dz.DecodeAll(seed.Payload, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(raw, uint32(2))
	d := newDecoder(f)
	f.Fuzz(func(t *testing.T, payload []byte, count uint32) {
		checkRoundTrip(t, d, &watchpostv1.Batch{AgentId: "agent", BootId: "boot", RunId: "run", BatchSeq: 1,
			Compression: watchpostv1.Compression_COMPRESSION_NONE, Payload: payload, EventCount: count, UncompressedSize: uint32(len(payload))})
	})
}
