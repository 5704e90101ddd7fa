package spool

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

const (
	stateFile = "state.json"
	// seqBlock is how many batch sequence numbers are reserved at a time.
	// The reservation is durable before a sequence in it is used, so a
	// restart (even after a power loss that took the newest records) never
	// reuses a sequence the collector may already have stored.
	seqBlock = 1024
)

// state is the spool's small durable state, replaced atomically.
type state struct {
	Version int    `json:"version"`
	RunID   string `json:"run_id"`
	// ReservedSeq is the highest batch sequence that may have been used.
	ReservedSeq uint64 `json:"reserved_seq"`
	// AckedThrough: every batch with a sequence up to it is acknowledged.
	AckedThrough uint64 `json:"acked_through"`
	// NextSegment numbers the next segment file.
	NextSegment uint64 `json:"next_segment"`
	// Starts holds, per segment id, the events spooled before the
	// segment's first record: with the records' own running counts it
	// tells exactly how many events damaged records held, even when a
	// whole segment's head is unreadable.
	Starts map[uint64]uint64 `json:"starts,omitempty"`
	// LossCountedTo: losses among the first this many spooled events were
	// counted already (a restart before the damaged segment is gone does
	// not count them twice).
	LossCountedTo uint64 `json:"loss_counted_to,omitempty"`
}

func readState(dir string) (state, bool, error) {
	p := filepath.Join(dir, stateFile)
	b, err := os.ReadFile(p)
	if os.IsNotExist(err) {
		return state{}, false, nil
	}
	if err != nil {
		return state{}, false, fmt.Errorf("reading %s: %w", p, err)
	}
	var s state
	if err := json.Unmarshal(b, &s); err != nil {
		return state{}, false, fmt.Errorf("decoding %s: %w", p, err)
	}
	if s.Version != 1 {
		return state{}, false, fmt.Errorf("%s: version %d, want 1", p, s.Version)
	}
	return s, true, nil
}

// writeState replaces the state file durably: temporary file, fsync,
// rename, fsync of the directory.
func writeState(dir string, s state) error {
	s.Version = 1
	b, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("encoding state: %w", err)
	}
	p := filepath.Join(dir, stateFile)
	tmp := p + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("creating %s: %w", tmp, err)
	}
	_, werr := f.Write(b)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", tmp, werr)
	}
	if err := os.Rename(tmp, p); err != nil {
		return fmt.Errorf("renaming %s: %w", tmp, err)
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("opening %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	return nil
}
