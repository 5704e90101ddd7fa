package spool

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"
)

// damageRecord applies f to the bytes of record seq, wherever it lies.
func damageRecord(t *testing.T, dir string, seq uint64, f func(data []byte, r Record) []byte) {
	t.Helper()
	ids, err := segmentIDs(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		p := segmentPath(dir, id)
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range Scan(data).Records {
			if r.Seq == seq {
				if err := os.WriteFile(p, f(data, r), 0o600); err != nil {
					t.Fatal(err)
				}
				return
			}
		}
	}
	t.Fatalf("no intact record %d", seq)
}

// TestDamagedSpoolIsAccountedExactly: 40 batches of 1,000 events over
// several segments; record 5's payload is flipped, the headers of records
// 12 and 13 (next to each other, so that the count between the intact
// neighbours is all there is) and the first record of the third segment are
// damaged, and the last record is torn in half. Exactly those 5,000 events
// are counted lost (drop counter and TakeCorrupt, so the gap marker says
// 5,000), the 35 intact records are sent, and a second start counts nothing
// again. Damage to records the collector acknowledged costs nothing.
func TestDamagedSpoolIsAccountedExactly(t *testing.T) {
	cfg := Config{Dir: t.TempDir(), MaxBytes: 1 << 20, SegmentBytes: 8 << 10}
	s, err := New(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); seq <= 40; seq++ {
		if err := s.Push(batch(seq, 1000, 1000)); err != nil {
			t.Fatal(err)
		}
	}
	s.Ack(1)
	s.Ack(2)
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	ids, _ := segmentIDs(cfg.Dir)
	if len(ids) < 4 {
		t.Fatalf("%d segments, want at least 4", len(ids))
	}
	third, _ := os.ReadFile(segmentPath(cfg.Dir, ids[2]))
	thirdFirst := Scan(third).Records[0].Seq
	flip := func(off int) func([]byte, Record) []byte {
		return func(d []byte, r Record) []byte { d[int(r.Offset)+off] ^= 0x40; return d }
	}
	damageRecord(t, cfg.Dir, 2, flip(headerSize+7)) // acknowledged: delivered already
	damageRecord(t, cfg.Dir, 5, flip(headerSize+100))
	damageRecord(t, cfg.Dir, 12, flip(2))
	damageRecord(t, cfg.Dir, 13, flip(9))
	damageRecord(t, cfg.Dir, thirdFirst, flip(20))
	damageRecord(t, cfg.Dir, 40, func(d []byte, r Record) []byte { return d[:r.Offset+r.Size()/2] })

	s = open(t, cfg)
	r := s.Recovery()
	if r.LostEvents != 5000 || r.Records != 33 || r.TornBytes == 0 || len(r.Tampered) != 0 {
		t.Fatalf("recovery %+v, want 5000 events lost and 33 records to send", r)
	}
	var sent []uint64
	for b := s.Next(0); b != nil; b = s.Next(b.BatchSeq) {
		sent = append(sent, b.BatchSeq)
	}
	if len(sent) != 33 || sent[0] != 3 || sent[len(sent)-1] != 39 {
		t.Fatalf("sent %v", sent)
	}
	if n := s.TakeCorrupt(); n != 5000 {
		t.Fatalf("TakeCorrupt %d, want 5000", n)
	}
	c, _ := s.Counter("drop:" + DropCorrupt)
	if c.Load() != 5000 {
		t.Fatalf("drop counter %d, want 5000", c.Load())
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	s = open(t, cfg)
	if n, r := s.TakeCorrupt(), s.Recovery(); n != 0 || r.LostEvents != 0 {
		t.Fatalf("second start counted %d (recovery %+v) again", n, r)
	}
	c, _ = s.Counter("drop:" + DropCorrupt)
	if c.Load() != 5000 {
		t.Fatalf("drop counter %d after the second start, want 5000", c.Load())
	}
}

// TestDamagedStateFilesRebuilt: garbage in state.json and a counters file
// of the wrong size do not stop the spool (the host would go unmonitored):
// it opens under a new run id, resends every intact record, keeps the
// damaged counters aside, and reports both files as tampering.
func TestDamagedStateFilesRebuilt(t *testing.T) {
	cfg := Config{Dir: t.TempDir(), SegmentBytes: 1 << 20}
	s := open(t, cfg)
	oldRun := s.RunID()
	pushAll(t, s, 1, 5)
	s.Ack(1)
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfg.Dir, stateFile), []byte(`{"version":1,"run_id":`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfg.Dir, countersFile), bytes.Repeat([]byte{0xaa}, 100), 0o600); err != nil {
		t.Fatal(err)
	}
	s = open(t, cfg)
	r := s.Recovery()
	if len(r.Tampered) != 2 || r.Tampered[0].What != "spool_state" || r.Tampered[1].What != "spool_counters" ||
		r.Tampered[0].File != filepath.Join(cfg.Dir, stateFile) || r.Tampered[0].Error == "" {
		t.Fatalf("tampering reported: %+v", r.Tampered)
	}
	if tt := s.TakeTampers(); len(tt) != 2 {
		t.Fatalf("TakeTampers: %+v", tt)
	}
	if tt := s.TakeTampers(); len(tt) != 0 {
		t.Fatalf("second TakeTampers: %+v", tt)
	}
	if s.RunID() == oldRun || s.RunID() == "" {
		t.Fatalf("run id %q after the rebuild (was %q), want a new one", s.RunID(), oldRun)
	}
	if got := seqs(s); !equal(got, []uint64{1, 2, 3, 4, 5}) {
		t.Fatalf("queued %v, want every intact record", got)
	}
	if s.LastSeq() < 5 || s.SpooledEvents() != 50 {
		t.Fatalf("last seq %d, spooled %d", s.LastSeq(), s.SpooledEvents())
	}
	if err := s.Push(batch(s.LastSeq()+1, 10, 100)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(cfg.Dir, countersFile+".damaged")); err != nil {
		t.Fatal(err)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	s = open(t, cfg)
	if r := s.Recovery(); len(r.Tampered) != 0 || s.Len() != 6 {
		t.Fatalf("after the rebuild: %+v, %d queued", r, s.Len())
	}
}
