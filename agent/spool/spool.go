// Package spool is the agent's store-and-forward queue: batches the
// collector has not yet acknowledged are appended to segment files on disk
// (length-prefixed records with CRC32C, see record.go), so that they survive
// a collector outage, a restart and a crash of the agent. It implements the
// shipper's Queue and DurableQueue interfaces.
//
// Durability: records are written with pwrite (they survive a crash of the
// agent process at once) and fsynced every FsyncInterval (they survive a
// power loss after that). The state file (run id, sequence reservation,
// acknowledged position) is replaced atomically. A segment file is deleted
// only when every record in it has been acknowledged.
package spool

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"github.com/watchpost/watchpost/agent/event"
	"github.com/watchpost/watchpost/agent/shipper"
	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

// Counter names kept by the spool in its counters file.
const (
	// CounterSpooled is the number of events written to the spool, ever.
	CounterSpooled = "spool:spooled_events"
	// DropCorrupt counts the events of records that failed their checksum
	// (reason "spool_corrupt" in heartbeats).
	DropCorrupt = shipper.DropCorrupt
)

// Config holds the spool's settings. Zero values take the defaults.
type Config struct {
	// Dir holds the segments, the state file and the counters (created
	// 0700; files are 0600).
	Dir string
	// MaxBytes bounds the segment files on disk (256 MiB).
	MaxBytes int64
	// SegmentBytes is the size at which a segment is closed and a new one
	// started (MaxBytes/16, at most 16 MiB, at least 64 KiB).
	SegmentBytes int64
	// FsyncInterval between fsyncs of the segment being written, the
	// counters and the state (1s). After a power loss, batches written in
	// the last interval may be lost.
	FsyncInterval time.Duration
}

// Defaults fills zero fields.
func (c *Config) Defaults() {
	if c.MaxBytes == 0 {
		c.MaxBytes = 256 << 20
	}
	if c.SegmentBytes == 0 {
		c.SegmentBytes = min(max(c.MaxBytes/16, 64<<10), 16<<20)
	}
	if c.FsyncInterval == 0 {
		c.FsyncInterval = time.Second
	}
}

// Validate names the first bad setting.
func (c *Config) Validate() error {
	switch {
	case c.Dir == "":
		return errors.New("spool.dir: required")
	case c.MaxBytes < 64<<10:
		return fmt.Errorf("spool.max_bytes: %d is below 64 KiB", c.MaxBytes)
	case c.SegmentBytes < 4<<10 || c.SegmentBytes > c.MaxBytes:
		return fmt.Errorf("spool.segment_bytes: %d is not between 4 KiB and max_bytes", c.SegmentBytes)
	case c.FsyncInterval < 0:
		return fmt.Errorf("spool.fsync_interval: %s is negative", c.FsyncInterval)
	}
	return nil
}

// Recovery is what opening the spool found.
type Recovery struct {
	Segments       int
	Records        int    // unacknowledged records to send
	Events         uint64 // in those records
	CorruptRecords int    // skipped: payload checksum mismatch
	CorruptEvents  uint64
	SkippedBytes   int64 // skipped after a damaged header
	TornBytes      int64 // incomplete tail of the last segment, truncated
	// LostEvents were in records that are damaged, unreadable or torn off
	// and not acknowledged: counted exactly from the running event counts
	// of the intact records around them (and the counters file for a torn
	// tail), under DropCorrupt, and reported in a gap marker.
	LostEvents uint64
	// Tampered lists the spool's own files found damaged and rebuilt.
	Tampered []event.Tamper
}

// Stats are the spool's counters.
type Stats struct {
	Records        int
	Bytes          int64
	Segments       int
	WriteErrors    uint64
	SyncErrors     uint64
	CorruptRecords uint64 // found on open or when reading back
	CorruptEvents  uint64
	SkippedBytes   uint64
}

type segment struct {
	id   uint64
	path string
	f    *os.File
	size int64
	live int // records not yet acknowledged
}

type rec struct {
	seq    uint64
	seg    *segment
	off    int64
	length uint32
	events uint32
	crc    uint32
}

// Spool is a durable, bounded queue of batches. It is safe for concurrent use.
type Spool struct {
	cfg  Config
	log  zerolog.Logger
	lock *os.File // flock held while open

	mu       sync.Mutex
	st       state  // as last written
	acked    uint64 // acknowledged position, possibly newer than st
	lastSeq  uint64
	segs     []*segment // oldest first; the last one may be active
	active   *segment
	recs     []rec // unacknowledged, by seq
	bytes    int64
	dirty    bool
	buf      []byte
	writeErr bool // the last write failed (logged once per episode)

	ready    chan struct{}
	cnt      *counters
	spooled  *atomic.Uint64
	corrupt  *atomic.Uint64 // drop counter: events of corrupt records
	newlyBad atomic.Uint64  // corrupt events not yet taken by TakeCorrupt
	recovery Recovery
	tamperMu sync.Mutex
	tampers  []event.Tamper // not yet taken by TakeTampers

	writeErrors, syncErrors, corruptRecords, corruptEvents, skippedBytes atomic.Uint64

	started  atomic.Bool
	stop     chan struct{}
	done     chan struct{}
	shutOnce sync.Once
	shutErr  error
}

var (
	_ shipper.Queue        = (*Spool)(nil)
	_ shipper.DurableQueue = (*Spool)(nil)
)

// New opens (or creates) the spool in cfg.Dir and recovers it: a torn tail
// is truncated, damaged records are skipped and counted, and records
// already acknowledged are skipped.
func New(cfg Config, log zerolog.Logger) (*Spool, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating spool dir %s: %w", cfg.Dir, err)
	}
	if err := os.Chmod(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("chmod spool dir %s: %w", cfg.Dir, err)
	}
	lockPath := filepath.Join(cfg.Dir, "lock")
	lock, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", lockPath, err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		_ = lock.Close()
		return nil, fmt.Errorf("spool %s is in use by another process: %w", cfg.Dir, err)
	}
	s := &Spool{
		cfg: cfg, log: log.With().Str("component", "spool").Logger(), lock: lock,
		ready: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
	}
	if err := s.recover(); err != nil {
		s.closeFiles()
		return nil, err
	}
	r := s.recovery
	s.log.Info().Str("dir", cfg.Dir).Str("run_id", s.st.RunID).Uint64("next_seq", s.lastSeq+1).
		Int("segments", r.Segments).Int("records", r.Records).Uint64("events", r.Events).
		Int("corrupt_records", r.CorruptRecords).Uint64("corrupt_events", r.CorruptEvents).
		Int64("skipped_bytes", r.SkippedBytes).Int64("torn_bytes", r.TornBytes).Msg("spool opened")
	return s, nil
}

func (s *Spool) recover() error {
	dir := s.cfg.Dir
	st, found, err := readState(dir)
	if err != nil {
		// A damaged state file must not leave the host unmonitored: start
		// again from the segments under a new run id (so no sequence can
		// collide with one the collector has), resend every intact record
		// (the collector drops those it already stored) and report it.
		s.tamper("spool_state", filepath.Join(dir, stateFile), "rebuilt from the segments: new run id, every intact record resent", err)
		st, found = state{}, false
	}
	if !found || st.RunID == "" {
		var b [16]byte
		if _, err := rand.Read(b[:]); err != nil {
			return fmt.Errorf("creating run id: %w", err)
		}
		st.RunID = hex.EncodeToString(b[:])
	}
	cpath := filepath.Join(dir, countersFile)
	if s.cnt, err = openCounters(cpath); errors.Is(err, errDamagedCounters) {
		// The drop counters are gone; the spooled count is rebuilt from
		// the records below. Keep the damaged file for inspection.
		s.tamper("spool_counters", cpath, "replaced by zeroed counters (kept as counters.damaged); the spooled count rebuilt from the records", err)
		if rerr := os.Rename(cpath, cpath+".damaged"); rerr != nil {
			return fmt.Errorf("moving the damaged %s aside: %w", cpath, rerr)
		}
		s.cnt, err = openCounters(cpath)
	}
	if err != nil {
		return err
	}
	if s.spooled, err = s.cnt.get(CounterSpooled); err != nil {
		return err
	}
	if s.corrupt, err = s.cnt.get("drop:" + DropCorrupt); err != nil {
		return err
	}
	ids, err := segmentIDs(dir)
	if err != nil {
		return err
	}
	var maxSeq, maxSpooled uint64
	loss := lossChain{floor: st.LossCountedTo}
	for i, id := range ids {
		last := i == len(ids)-1
		seg := &segment{id: id, path: segmentPath(dir, id)}
		data, err := os.ReadFile(seg.path)
		if err != nil {
			return fmt.Errorf("reading segment %s: %w", seg.path, err)
		}
		if start, ok := st.Starts[id]; ok {
			loss.reach(start)
		}
		res := Scan(data)
		seg.size = int64(len(data))
		if res.TailBytes > 0 {
			if last {
				// A torn tail: the write that was in progress when the
				// agent or the host stopped.
				if err := os.Truncate(seg.path, res.End); err != nil {
					return fmt.Errorf("truncating torn tail of %s at offset %d: %w", seg.path, res.End, err)
				}
				seg.size = res.End
				s.recovery.TornBytes += res.TailBytes
			} else {
				res.SkippedBytes += res.TailBytes
			}
		}
		s.recovery.CorruptRecords += res.CorruptRecords
		s.recovery.CorruptEvents += res.CorruptEvents
		s.recovery.SkippedBytes += res.SkippedBytes
		for _, r := range res.Records {
			maxSeq = max(maxSeq, r.Seq)
			maxSpooled = max(maxSpooled, r.SpooledAfter)
			loss.reach(r.SpooledAfter - min(uint64(r.Events), r.SpooledAfter))
			loss.settle(r.Seq > st.AckedThrough+1) // lost only if not all acknowledged before r
			loss.pass(r.SpooledAfter)
			if r.Seq <= st.AckedThrough {
				continue
			}
			s.recs = append(s.recs, rec{seq: r.Seq, seg: seg, off: r.Offset, length: uint32(len(r.Payload)), events: r.Events, crc: r.PayloadCRC})
			seg.live++
			s.recovery.Events += uint64(r.Events)
		}
		if seg.live == 0 {
			if err := os.Remove(seg.path); err != nil {
				return fmt.Errorf("removing acknowledged segment %s: %w", seg.path, err)
			}
			continue
		}
		if seg.f, err = os.Open(seg.path); err != nil {
			return fmt.Errorf("opening segment %s: %w", seg.path, err)
		}
		s.segs = append(s.segs, seg)
		s.bytes += seg.size
		st.NextSegment = max(st.NextSegment, id+1)
	}
	if len(ids) > 0 {
		st.NextSegment = max(st.NextSegment, ids[len(ids)-1]+1)
	}
	sort.Slice(s.recs, func(i, j int) bool { return s.recs[i].seq < s.recs[j].seq })
	s.recovery.Segments = len(s.segs)
	s.recovery.Records = len(s.recs)
	s.lastSeq = max(st.ReservedSeq, maxSeq, st.AckedThrough)
	s.acked = st.AckedThrough
	if len(s.recs) == 0 {
		s.acked = max(s.acked, maxSeq)
	}
	if v := s.spooled.Load(); maxSpooled > v {
		s.spooled.Store(maxSpooled) // the process died between a write and its count
	}
	// Events counted as spooled after the last intact record were torn off.
	loss.reach(s.spooled.Load())
	loss.settle(true)
	s.recovery.LostEvents = loss.lost
	if n := loss.lost; n > 0 {
		s.corrupt.Add(n)
		s.newlyBad.Add(n)
	}
	s.corruptRecords.Add(uint64(s.recovery.CorruptRecords))
	s.corruptEvents.Add(s.recovery.CorruptEvents)
	s.skippedBytes.Add(uint64(s.recovery.SkippedBytes))
	st.AckedThrough = s.acked
	st.Starts = s.liveStarts(st.Starts)
	st.LossCountedTo = max(st.LossCountedTo, loss.at)
	if err := writeState(dir, st); err != nil {
		return err
	}
	s.st = st
	return nil
}

// lossChain follows the running event count through the intact records
// (each says how many events were spooled up to and including it): what is
// missing between two of them was in damaged records.
type lossChain struct {
	floor   uint64 // losses up to here were counted before
	at      uint64 // events spooled up to the last point seen
	known   bool
	pending uint64 // missing since the last settle
	lost    uint64
}

// reach moves the chain to a point where n events had been spooled.
func (l *lossChain) reach(n uint64) {
	if from := max(l.at, l.floor); l.known && n > from {
		l.pending += n - from
	}
	if !l.known || n > l.at {
		l.at, l.known = n, true
	}
}

// pass moves the chain past an intact record (its events are not missing).
func (l *lossChain) pass(n uint64) {
	l.at, l.known = max(l.at, n), true
}

// settle counts the missing events as lost, or forgets them when they were
// acknowledged (delivered) before they were damaged.
func (l *lossChain) settle(count bool) {
	if count {
		l.lost += l.pending
	}
	l.pending = 0
}

// liveStarts keeps the segment starts of the segments still on disk.
func (s *Spool) liveStarts(starts map[uint64]uint64) map[uint64]uint64 {
	out := make(map[uint64]uint64, len(s.segs))
	for _, seg := range s.segs {
		if v, ok := starts[seg.id]; ok {
			out[seg.id] = v
		}
	}
	return out
}

// tamper records a damaged state file of the spool: logged, and reported
// as an agent_tamper event (TakeTampers).
func (s *Spool) tamper(what, file, action string, err error) {
	s.log.Error().Err(err).Str("file", file).Str("action", action).Msg("spool state damaged; rebuilt")
	t := event.Tamper{What: what, File: file, Action: action, Error: err.Error()}
	s.recovery.Tampered = append(s.recovery.Tampered, t)
	s.tamperMu.Lock()
	s.tampers = append(s.tampers, t)
	s.tamperMu.Unlock()
}

// TakeTampers returns the damaged files found since the last call.
func (s *Spool) TakeTampers() []event.Tamper {
	s.tamperMu.Lock()
	defer s.tamperMu.Unlock()
	t := s.tampers
	s.tampers = nil
	return t
}

func segmentPath(dir string, id uint64) string {
	return filepath.Join(dir, fmt.Sprintf("%016d.seg", id))
}

// segmentIDs lists the segment files in dir, oldest first.
func segmentIDs(dir string) ([]uint64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("listing spool dir %s: %w", dir, err)
	}
	var ids []uint64
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".seg")
		if !ok || e.IsDir() {
			continue
		}
		id, err := strconv.ParseUint(name, 10, 64)
		if err != nil {
			continue
		}
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids, nil
}

// Start runs the periodic fsync.
func (s *Spool) Start(context.Context) error {
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("spool already started")
	}
	go s.syncLoop()
	return nil
}

func (s *Spool) syncLoop() {
	defer close(s.done)
	t := time.NewTicker(s.cfg.FsyncInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			_ = s.Sync()
		}
	}
}

// Sync makes everything written so far durable: the segment being written,
// the counters and the acknowledged position.
func (s *Spool) Sync() error {
	s.mu.Lock()
	var f *os.File
	if s.dirty && s.active != nil {
		f = s.active.f
	}
	s.dirty = false
	st := s.st
	st.AckedThrough = s.acked
	writeSt := st.AckedThrough != s.st.AckedThrough
	s.mu.Unlock()
	var errs []error
	if f != nil {
		if err := f.Sync(); err != nil && !errors.Is(err, os.ErrClosed) {
			errs = append(errs, fmt.Errorf("syncing segment %s: %w", f.Name(), err))
		}
	}
	if err := s.cnt.sync(); err != nil {
		errs = append(errs, err)
	}
	if writeSt {
		s.mu.Lock()
		// Only move forward: a concurrent reservation may have written a
		// newer state meanwhile.
		st.ReservedSeq, st.NextSegment = s.st.ReservedSeq, s.st.NextSegment
		st.AckedThrough = max(st.AckedThrough, s.st.AckedThrough)
		err := writeState(s.cfg.Dir, st)
		if err == nil {
			s.st = st
		}
		s.mu.Unlock()
		if err != nil {
			errs = append(errs, err)
		}
	}
	err := errors.Join(errs...)
	if err != nil {
		if s.syncErrors.Add(1) == 1 {
			s.log.Error().Err(err).Msg("spool sync failed (counted; retried every interval)")
		}
	}
	return err
}

// Shutdown stops the sync loop, syncs and closes the files. It is
// idempotent and safe without Start. Counters handed out stay usable.
func (s *Spool) Shutdown(context.Context) error {
	s.shutOnce.Do(func() {
		if s.started.Load() {
			close(s.stop)
			<-s.done
		}
		s.shutErr = s.Sync()
		s.mu.Lock()
		s.closeFiles()
		s.mu.Unlock()
		s.log.Info().Int("records", len(s.recs)).Int64("bytes", s.bytes).Msg("spool closed")
	})
	return s.shutErr
}

func (s *Spool) closeFiles() {
	for _, seg := range s.segs {
		if seg.f != nil {
			_ = seg.f.Close()
		}
	}
	if s.cnt != nil {
		_ = s.cnt.sync()
	}
	if s.lock != nil {
		_ = s.lock.Close() // releases the flock
		s.lock = nil
	}
}

// ErrNotIncreasing is returned by Push for a sequence not above the last one.
var ErrNotIncreasing = errors.New("batch sequence not increasing")

// Push appends a batch. It returns shipper.ErrQueueFull when the spool is
// at MaxBytes, or an I/O error (ENOSPC included) after which the spool is
// unchanged and usable.
func (s *Spool) Push(b *watchpostv1.Batch) error {
	payload, err := proto.Marshal(b)
	if err != nil {
		return fmt.Errorf("encoding batch %d: %w", b.BatchSeq, err)
	}
	if len(payload) > MaxPayload {
		return fmt.Errorf("batch %d: %d bytes: %w", b.BatchSeq, len(payload), shipper.ErrQueueFull)
	}
	s.mu.Lock()
	err = s.push(b, payload)
	s.mu.Unlock()
	if err != nil {
		return err
	}
	select {
	case s.ready <- struct{}{}:
	default:
	}
	return nil
}

func (s *Spool) push(b *watchpostv1.Batch, payload []byte) error {
	size := int64(headerSize + len(payload))
	if s.bytes+size > s.cfg.MaxBytes {
		return shipper.ErrQueueFull
	}
	if b.BatchSeq <= s.lastSeq {
		return fmt.Errorf("batch %d after %d: %w", b.BatchSeq, s.lastSeq, ErrNotIncreasing)
	}
	if b.BatchSeq > s.st.ReservedSeq {
		st := s.st
		st.ReservedSeq = b.BatchSeq + seqBlock - 1
		st.AckedThrough = s.acked
		if err := writeState(s.cfg.Dir, st); err != nil {
			return s.writeFailed(fmt.Errorf("reserving sequences: %w", err))
		}
		s.st = st
	}
	if s.active == nil || s.active.size >= s.cfg.SegmentBytes {
		if err := s.rotate(); err != nil {
			return s.writeFailed(err)
		}
	}
	seg := s.active
	s.buf = appendRecord(s.buf[:0], b.BatchSeq, b.EventCount, s.spooled.Load()+uint64(b.EventCount), payload)
	if _, err := seg.f.WriteAt(s.buf, seg.size); err != nil {
		// Cut a partial write off so that the segment stays a clean
		// sequence of records (shrinking works on a full disk).
		_ = seg.f.Truncate(seg.size)
		return s.writeFailed(fmt.Errorf("writing batch %d to %s at offset %d: %w", b.BatchSeq, seg.path, seg.size, err))
	}
	s.spooled.Add(uint64(b.EventCount))
	s.recs = append(s.recs, rec{seq: b.BatchSeq, seg: seg, off: seg.size, length: uint32(len(payload)), events: b.EventCount, crc: checksum(payload)})
	seg.size += size
	seg.live++
	s.bytes += size
	s.lastSeq = b.BatchSeq
	s.dirty = true
	if s.writeErr {
		s.writeErr = false
		s.log.Info().Uint64("write_errors", s.writeErrors.Load()).Msg("spool writable again")
	}
	return nil
}

func (s *Spool) writeFailed(err error) error {
	s.writeErrors.Add(1)
	if !s.writeErr {
		s.writeErr = true
		s.log.Error().Err(err).Msg("spool write failed; batches are dropped and counted until writes succeed")
	}
	return err
}

// rotate closes the active segment (fsynced) and starts a new one.
func (s *Spool) rotate() error {
	if old := s.active; old != nil {
		if err := old.f.Sync(); err != nil {
			return fmt.Errorf("syncing segment %s: %w", old.path, err)
		}
		s.active = nil
		if old.live == 0 {
			s.removeSegment(old)
		}
	}
	id := s.st.NextSegment
	st := s.st
	st.NextSegment = id + 1
	st.AckedThrough = s.acked
	st.Starts = s.liveStarts(st.Starts)
	st.Starts[id] = s.spooled.Load()
	if err := writeState(s.cfg.Dir, st); err != nil {
		return err
	}
	s.st = st
	p := segmentPath(s.cfg.Dir, id)
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("creating segment %s: %w", p, err)
	}
	seg := &segment{id: id, path: p, f: f}
	s.segs = append(s.segs, seg)
	s.active = seg
	return nil
}

func (s *Spool) removeSegment(seg *segment) {
	_ = seg.f.Close()
	if err := os.Remove(seg.path); err != nil {
		s.log.Warn().Err(err).Str("segment", seg.path).Msg("removing acknowledged segment")
	}
	s.bytes -= seg.size
	for i, x := range s.segs {
		if x == seg {
			s.segs = append(s.segs[:i], s.segs[i+1:]...)
			break
		}
	}
}

// Next returns the oldest batch with a sequence above after. A record that
// no longer matches its checksum is dropped and counted.
func (s *Spool) Next(after uint64) *watchpostv1.Batch {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		i := sort.Search(len(s.recs), func(i int) bool { return s.recs[i].seq > after })
		if i == len(s.recs) {
			return nil
		}
		r := s.recs[i]
		b, err := s.read(r)
		if err == nil {
			return b
		}
		s.log.Error().Err(err).Uint64("batch_seq", r.seq).Msg("dropping a damaged spool record (counted)")
		s.corruptRecords.Add(1)
		s.corruptEvents.Add(uint64(r.events))
		s.corrupt.Add(uint64(r.events))
		s.newlyBad.Add(uint64(r.events))
		s.remove(i)
	}
}

func (s *Spool) read(r rec) (*watchpostv1.Batch, error) {
	buf := make([]byte, headerSize+int(r.length))
	if _, err := r.seg.f.ReadAt(buf, r.off); err != nil {
		return nil, fmt.Errorf("reading %s at offset %d: %w", r.seg.path, r.off, err)
	}
	h, ok := decodeHeader(buf)
	if !ok || h.seq != r.seq || h.length != r.length || checksum(buf[headerSize:]) != r.crc {
		return nil, fmt.Errorf("record at %s offset %d: checksum mismatch", r.seg.path, r.off)
	}
	b := &watchpostv1.Batch{}
	if err := proto.Unmarshal(buf[headerSize:], b); err != nil {
		return nil, fmt.Errorf("decoding record at %s offset %d: %w", r.seg.path, r.off, err)
	}
	if b.BatchSeq != r.seq || b.EventCount != r.events {
		return nil, fmt.Errorf("record at %s offset %d: batch %d of %d events, header says %d of %d",
			r.seg.path, r.off, b.BatchSeq, b.EventCount, r.seq, r.events)
	}
	return b, nil
}

// Ack removes the batch with this sequence; its segment file is deleted
// once every record in it is acknowledged.
func (s *Spool) Ack(seq uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := sort.Search(len(s.recs), func(i int) bool { return s.recs[i].seq >= seq })
	if i == len(s.recs) || s.recs[i].seq != seq {
		return false
	}
	s.remove(i)
	return true
}

// remove drops record i from the index and advances the acknowledged position.
func (s *Spool) remove(i int) {
	seg := s.recs[i].seg
	s.recs = append(s.recs[:i], s.recs[i+1:]...)
	seg.live--
	if seg.live == 0 && seg != s.active {
		s.removeSegment(seg)
	}
	if len(s.recs) > 0 {
		s.acked = max(s.acked, s.recs[0].seq-1)
	} else {
		s.acked = max(s.acked, s.lastSeq)
	}
}

// Len is the number of unacknowledged batches.
func (s *Spool) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.recs)
}

// Bytes is the size of the segment files on disk.
func (s *Spool) Bytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bytes
}

// Cap is MaxBytes.
func (s *Spool) Cap() int64 { return s.cfg.MaxBytes }

// Fill is the fraction of MaxBytes the segment files take.
func (s *Spool) Fill() float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return float64(s.bytes) / float64(s.cfg.MaxBytes)
}

// Ready is signalled after every Push.
func (s *Spool) Ready() <-chan struct{} { return s.ready }

// RunID is the sender incarnation id kept across restarts.
func (s *Spool) RunID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st.RunID
}

// LastSeq is the highest batch sequence used or reserved; the next batch
// must use a higher one.
func (s *Spool) LastSeq() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastSeq
}

// Counter returns a named counter kept in the counters file.
func (s *Spool) Counter(name string) (*atomic.Uint64, error) { return s.cnt.get(name) }

// SpooledEvents is the number of events ever written to the spool.
func (s *Spool) SpooledEvents() uint64 { return s.spooled.Load() }

// TakeCorrupt returns the events of damaged records found since the last
// call (on open or when reading back) and resets it.
func (s *Spool) TakeCorrupt() uint64 { return s.newlyBad.Swap(0) }

// Recovery reports what New found.
func (s *Spool) Recovery() Recovery { return s.recovery }

// Stats returns a snapshot of the counters.
func (s *Spool) Stats() Stats {
	s.mu.Lock()
	st := Stats{Records: len(s.recs), Bytes: s.bytes, Segments: len(s.segs)}
	s.mu.Unlock()
	st.WriteErrors, st.SyncErrors = s.writeErrors.Load(), s.syncErrors.Load()
	st.CorruptRecords, st.CorruptEvents, st.SkippedBytes = s.corruptRecords.Load(), s.corruptEvents.Load(), s.skippedBytes.Load()
	return st
}
