package spool

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"

	"github.com/watchpost/watchpost/agent/shipper"
	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

func open(t *testing.T, cfg Config) *Spool {
	t.Helper()
	s, err := New(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	return s
}

func batch(seq uint64, events uint32, payload int) *watchpostv1.Batch {
	return &watchpostv1.Batch{AgentId: "a", BootId: "b", RunId: "r", BatchSeq: seq, EventCount: events,
		Compression: watchpostv1.Compression_COMPRESSION_NONE, Payload: bytes.Repeat([]byte{byte(seq)}, payload)}
}

func pushAll(t *testing.T, s *Spool, from, to uint64) {
	t.Helper()
	for seq := from; seq <= to; seq++ {
		if err := s.Push(batch(seq, 10, 1000)); err != nil {
			t.Fatalf("push %d: %v", seq, err)
		}
	}
}

// seqs lists the queued batches in the order Next returns them.
func seqs(s *Spool) []uint64 {
	var out []uint64
	for b := s.Next(0); b != nil; b = s.Next(b.BatchSeq) {
		out = append(out, b.BatchSeq)
	}
	return out
}

func equal(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestReopenKeepsUnacknowledgedRunAndSequence(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	cfg := Config{Dir: dir, MaxBytes: 1 << 20, SegmentBytes: 8 << 10}
	s, err := New(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	run := s.RunID()
	pushAll(t, s, 1, 20)
	for _, seq := range []uint64{1, 2, 3, 5} {
		if !s.Ack(seq) {
			t.Fatalf("ack %d: not queued", seq)
		}
	}
	if s.Ack(5) {
		t.Fatal("second ack of 5 reported queued")
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	s2 := open(t, cfg)
	if s2.RunID() != run {
		t.Fatalf("run id %q after reopen, want %q", s2.RunID(), run)
	}
	// 5 was acknowledged out of order: it is sent again (the collector
	// answers duplicate); 1-3 are not.
	want := []uint64{4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20}
	if got := seqs(s2); !equal(got, want) {
		t.Fatalf("queued after reopen %v, want %v", got, want)
	}
	if got := s2.LastSeq(); got != seqBlock {
		t.Fatalf("last seq %d after reopen, want the reservation %d", got, seqBlock)
	}
	if err := s2.Push(batch(5, 1, 10)); !errors.Is(err, ErrNotIncreasing) {
		t.Fatalf("push of a used sequence: %v, want ErrNotIncreasing", err)
	}
	for _, seq := range want {
		s2.Ack(seq)
	}
	// Every record is acknowledged: only the segment being written may stay.
	ids, err := segmentIDs(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 0 || s2.Bytes() != 0 || s2.Len() != 0 {
		t.Fatalf("after acknowledging everything: segments %v, %d bytes, %d records; want none", ids, s2.Bytes(), s2.Len())
	}
}

func TestPermissions(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s := open(t, Config{Dir: dir})
	pushAll(t, s, 1, 1)
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Fatalf("dir mode %v, want 0700", fi.Mode().Perm())
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 4 { // lock, counters, state.json, one segment
		t.Fatalf("files %v, want lock, counters, state.json and one segment", ents)
	}
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s mode %v, want 0600", e.Name(), fi.Mode().Perm())
		}
	}
	if _, err := New(Config{Dir: dir}, zerolog.Nop()); err == nil {
		t.Fatal("a second open of the same spool succeeded")
	}
}

func TestBoundedBytes(t *testing.T) {
	s := open(t, Config{Dir: t.TempDir(), MaxBytes: 64 << 10, SegmentBytes: 16 << 10})
	// Each record is 1000 payload bytes plus the proto framing and header.
	var seq uint64
	for {
		seq++
		err := s.Push(batch(seq, 1, 1000))
		if errors.Is(err, shipper.ErrQueueFull) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if s.Bytes() > 64<<10 || s.Bytes() < 60<<10 {
		t.Fatalf("full at %d bytes, want just under %d", s.Bytes(), 64<<10)
	}
	if f := s.Fill(); f < 0.9 || f > 1 {
		t.Fatalf("fill %.3f, want between 0.9 and 1", f)
	}
	n := uint64(s.Len())
	if n != seq-1 {
		t.Fatalf("%d records, want %d", n, seq-1)
	}
	// Acknowledging the first segment's records frees its file.
	before := s.Bytes()
	for i := uint64(1); i <= n/2; i++ {
		s.Ack(i)
	}
	if s.Bytes() >= before {
		t.Fatalf("bytes %d after acknowledging half, want below %d", s.Bytes(), before)
	}
	if err := s.Push(batch(seq, 1, 1000)); err != nil {
		t.Fatalf("push after space was freed: %v", err)
	}
}

// writeRecords creates a spool with batches 1..n and returns its segment files.
func writeRecords(t *testing.T, cfg Config, n uint64) []string {
	t.Helper()
	s, err := New(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	pushAll(t, s, 1, n)
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	ids, err := segmentIDs(cfg.Dir)
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, id := range ids {
		paths = append(paths, segmentPath(cfg.Dir, id))
	}
	return paths
}

func TestTornTailIsTruncated(t *testing.T) {
	cfg := Config{Dir: t.TempDir(), SegmentBytes: 1 << 20}
	paths := writeRecords(t, cfg, 5)
	if len(paths) != 1 {
		t.Fatalf("segments %v, want 1", paths)
	}
	fi, err := os.Stat(paths[0])
	if err != nil {
		t.Fatal(err)
	}
	// Half of a sixth record, as a write cut short by a power loss.
	rec := appendRecord(nil, 6, 10, 60, bytes.Repeat([]byte{6}, 1000))
	f, err := os.OpenFile(paths[0], os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(rec[:500]); err != nil {
		t.Fatal(err)
	}
	f.Close()
	s := open(t, cfg)
	r := s.Recovery()
	if r.TornBytes != 500 || r.Records != 5 || r.Events != 50 || r.CorruptRecords != 0 || r.SkippedBytes != 0 {
		t.Fatalf("recovery %+v, want 500 torn bytes and 5 intact records of 50 events", r)
	}
	after, err := os.Stat(paths[0])
	if err != nil {
		t.Fatal(err)
	}
	if after.Size() != fi.Size() {
		t.Fatalf("segment is %d bytes after recovery, want %d", after.Size(), fi.Size())
	}
	if got := seqs(s); !equal(got, []uint64{1, 2, 3, 4, 5}) {
		t.Fatalf("queued %v, want 1-5", got)
	}
}

func TestCorruptRecordIsSkippedAndCounted(t *testing.T) {
	cfg := Config{Dir: t.TempDir(), SegmentBytes: 1 << 20}
	paths := writeRecords(t, cfg, 5)
	data, err := os.ReadFile(paths[0])
	if err != nil {
		t.Fatal(err)
	}
	res := Scan(data)
	if len(res.Records) != 5 {
		t.Fatalf("scan found %d records, want 5", len(res.Records))
	}
	// Damage the payload of record 3 and the header of record 4.
	data[res.Records[2].Offset+headerSize+10] ^= 0xff
	data[res.Records[3].Offset+4] ^= 0x01
	if err := os.WriteFile(paths[0], data, 0o600); err != nil {
		t.Fatal(err)
	}
	s := open(t, cfg)
	r := s.Recovery()
	if r.CorruptRecords != 1 || r.CorruptEvents != 10 || r.SkippedBytes != res.Records[3].Size() || r.Records != 3 || r.TornBytes != 0 {
		t.Fatalf("recovery %+v, want 1 corrupt record of 10 events, %d skipped bytes, 3 intact records", r, res.Records[3].Size())
	}
	if got := seqs(s); !equal(got, []uint64{1, 2, 5}) {
		t.Fatalf("queued %v, want 1, 2, 5", got)
	}
	if n := s.TakeCorrupt(); n != 20 {
		t.Fatalf("TakeCorrupt %d, want 20 (the damaged payload's 10 and the damaged header's 10)", n)
	}
	if n := s.TakeCorrupt(); n != 0 {
		t.Fatalf("second TakeCorrupt %d, want 0", n)
	}
	c, err := s.Counter("drop:" + DropCorrupt)
	if err != nil {
		t.Fatal(err)
	}
	if c.Load() != 20 {
		t.Fatalf("drop counter %d, want 20", c.Load())
	}
}

func TestDamageAfterWriteIsCaughtOnRead(t *testing.T) {
	cfg := Config{Dir: t.TempDir(), SegmentBytes: 1 << 20}
	s := open(t, cfg)
	pushAll(t, s, 1, 3)
	f, err := os.OpenFile(s.active.path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Damage record 2's payload in place.
	if _, err := f.WriteAt([]byte{0xee}, s.recs[1].off+headerSize+20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if got := seqs(s); !equal(got, []uint64{1, 3}) {
		t.Fatalf("queued %v, want 1, 3", got)
	}
	if st := s.Stats(); st.CorruptRecords != 1 || st.CorruptEvents != 10 {
		t.Fatalf("stats %+v, want 1 corrupt record of 10 events", st)
	}
}

func TestCountersSurviveReopen(t *testing.T) {
	cfg := Config{Dir: t.TempDir()}
	s := open(t, cfg)
	c, err := s.Counter("drop:test")
	if err != nil {
		t.Fatal(err)
	}
	c.Add(41)
	pushAll(t, s, 1, 2)
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	s2 := open(t, cfg)
	c2, err := s2.Counter("drop:test")
	if err != nil {
		t.Fatal(err)
	}
	if c2.Load() != 41 || s2.SpooledEvents() != 20 {
		t.Fatalf("counter %d, spooled %d after reopen; want 41, 20", c2.Load(), s2.SpooledEvents())
	}
}

func TestSpooledRecoveredFromRecords(t *testing.T) {
	cfg := Config{Dir: t.TempDir()}
	writeRecords(t, cfg, 4)
	// The process died between writing a record and counting it: the
	// record header carries the count.
	cnt, err := openCounters(filepath.Join(cfg.Dir, countersFile))
	if err != nil {
		t.Fatal(err)
	}
	c, err := cnt.get(CounterSpooled)
	if err != nil {
		t.Fatal(err)
	}
	c.Store(25)
	s := open(t, cfg)
	if s.SpooledEvents() != 40 {
		t.Fatalf("spooled %d, want 40 from the last record header", s.SpooledEvents())
	}
}
