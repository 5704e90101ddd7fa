package ingest_test

import (
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/watchpost/watchpost/collector/ingest"
	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

// TestBombIsDecompressedOnlyToItsDeclaredSize: a zstd payload that
// expands to 32 MiB but declares 1 KiB is refused after about 1 KiB of
// work (the decoder stops at the declared size, not at the 32 MiB cap),
// and one declaring more than 100 times its compressed size is refused
// before any decompression.
func TestBombIsDecompressedOnlyToItsDeclaredSize(t *testing.T) {
	d, err := ingest.NewDecoder(ingest.Limits{MaxUncompressedBytes: 32 << 20, MaxEvents: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	enc, err := zstd.NewWriter(nil, zstd.WithWindowSize(1<<20))
	if err != nil {
		t.Fatal(err)
	}
	payload := enc.EncodeAll(make([]byte, 32<<20), nil)
	_ = enc.Close()
	b := &watchpostv1.Batch{AgentId: "a", BootId: "b", RunId: "r", BatchSeq: 1, Compression: watchpostv1.Compression_COMPRESSION_ZSTD,
		Payload: payload, EventCount: 1, UncompressedSize: 1024}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err = d.Decode(b, time.Now())
	runtime.ReadMemStats(&after)
	if err == nil || !strings.Contains(err.Error(), "decompresses beyond the declared 1024 bytes") {
		t.Fatalf("bomb: %v, want refused beyond the declared size", err)
	}
	// DecodeAll into the 32 MiB cap would allocate 32 MiB; stopping at the
	// declared size allocates the decoder's buffers (a block, 128 KiB) and 1 KiB.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 4<<20 {
		t.Errorf("decoding the bomb allocated %d bytes, want under 4 MiB", alloc)
	}

	b.UncompressedSize = uint32(101 * len(payload))
	if _, err := d.Decode(b, time.Now()); !errors.Is(err, ingest.ErrTooLarge) || !strings.Contains(err.Error(), "compression ratio limit of 100") {
		t.Fatalf("ratio: %v, want refused by the ratio limit", err)
	}
}

// TestHeartbeatResponseBounds: a heartbeat's policy report is refused whole
// when it lists more policies than the list limit or a policy id longer
// than a name, naming the field; a normal report passes.
func TestHeartbeatResponseBounds(t *testing.T) {
	d, err := ingest.NewDecoder(ingest.Limits{MaxListLen: 4})
	if err != nil {
		t.Fatal(err)
	}
	hb := func(ids ...string) *watchpostv1.Heartbeat {
		p := &watchpostv1.Policies{Enforcing: true}
		for _, id := range ids {
			p.Policies = append(p.Policies, &watchpostv1.PolicyStatus{Id: id, Action: "kill_exec", Mode: "monitor"})
		}
		return &watchpostv1.Heartbeat{Host: "gw1", Response: p}
	}
	if err := d.ValidateHeartbeat(hb("a", "b")); err != nil {
		t.Fatalf("two policies: %v", err)
	}
	for _, tc := range []struct {
		hb   *watchpostv1.Heartbeat
		want string
	}{
		{hb("a", "b", "c", "d", "e"), "heartbeat.response: more than 4 errors or policies"},
		{hb("a", strings.Repeat("x", 300)), "heartbeat.response.policies[1].id: 300 bytes exceeds the limit of 256"},
	} {
		err := d.ValidateHeartbeat(tc.hb)
		if !errors.Is(err, ingest.ErrTooLarge) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v, want %q", err, tc.want)
		}
	}
}
