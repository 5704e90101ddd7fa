package spool

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The counters file is a memory-mapped table of named uint64 counters. The
// agent increments them in place, so their values survive a crash of the
// agent process (the kernel keeps the dirty page) and are written to disk
// with the segments on every sync: drop counters are cumulative across
// restarts, and the events a crashed agent held in memory can be counted
// on the next start.
//
//	off size
//	  0    8 magic "WPCNT\x00\x00\x01"
//	  8   56 reserved
//	 64   64 slot 0: name (48 bytes, NUL padded), 8 reserved, value (uint64, native endian)
//	 ...
const (
	countersFile  = "counters"
	countersSize  = 16 << 10
	slotSize      = 64
	slotNameBytes = 48
	slotValueOff  = 56
	maxSlots      = countersSize/slotSize - 1
)

var countersMagic = []byte("WPCNT\x00\x00\x01")

// errDamagedCounters: the counters file is not one (wrong size or magic).
var errDamagedCounters = errors.New("damaged counters file")

// ErrTooManyCounters is returned when every counter slot is taken.
var ErrTooManyCounters = errors.New("spool counters: no free slot")

type counters struct {
	mu    sync.Mutex
	mem   []byte
	names map[string]int // name -> slot
}

func openCounters(path string) (*counters, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat %s: %w", path, err)
	}
	fresh := fi.Size() == 0
	if !fresh && fi.Size() != countersSize {
		return nil, fmt.Errorf("%s: size %d, want %d: %w", path, fi.Size(), countersSize, errDamagedCounters)
	}
	if fresh {
		// Allocate the blocks now so that incrementing a counter can never
		// hit a full disk through the mapping (which would be SIGBUS).
		if err := unix.Fallocate(int(f.Fd()), 0, 0, countersSize); err != nil {
			if err := f.Truncate(countersSize); err != nil {
				return nil, fmt.Errorf("sizing %s: %w", path, err)
			}
		}
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, countersSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mapping %s: %w", path, err)
	}
	c := &counters{mem: mem, names: map[string]int{}}
	if fresh || !bytes.Equal(mem[:8], countersMagic) {
		if !fresh && !bytes.Equal(mem[:8], make([]byte, 8)) {
			_ = unix.Munmap(mem)
			return nil, fmt.Errorf("%s: bad magic %q: %w", path, mem[:8], errDamagedCounters)
		}
		clear(mem)
		copy(mem, countersMagic)
	}
	for i := 0; i < maxSlots; i++ {
		name := c.slotName(i)
		if name == "" {
			break
		}
		c.names[name] = i
	}
	return c, nil
}

func (c *counters) slot(i int) []byte { return c.mem[slotSize*(i+1) : slotSize*(i+2)] }

func (c *counters) slotName(i int) string {
	b := c.slot(i)[:slotNameBytes]
	if n := bytes.IndexByte(b, 0); n >= 0 {
		b = b[:n]
	}
	return string(b)
}

// get returns the counter named name, creating it at zero.
func (c *counters) get(name string) (*atomic.Uint64, error) {
	if len(name) == 0 || len(name) > slotNameBytes {
		return nil, fmt.Errorf("spool counter %q: name must be 1 to %d bytes", name, slotNameBytes)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	i, ok := c.names[name]
	if !ok {
		i = len(c.names)
		if i >= maxSlots {
			return nil, fmt.Errorf("spool counter %q: %w", name, ErrTooManyCounters)
		}
		copy(c.slot(i), name)
		c.names[name] = i
	}
	// The value is 8-byte aligned: the mapping is page aligned and
	// slotValueOff is a multiple of 8.
	return (*atomic.Uint64)(unsafe.Pointer(&c.slot(i)[slotValueOff])), nil
}

// snapshot returns every counter's value.
func (c *counters) snapshot() map[string]uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]uint64, len(c.names))
	for n, i := range c.names {
		out[n] = (*atomic.Uint64)(unsafe.Pointer(&c.slot(i)[slotValueOff])).Load()
	}
	return out
}

func (c *counters) sync() error {
	if err := unix.Msync(c.mem, unix.MS_SYNC); err != nil {
		return fmt.Errorf("syncing counters: %w", err)
	}
	return nil
}

// The mapping is never unmapped: counters handed out stay valid for the
// life of the process, so a late increment after Shutdown cannot fault. It
// still reaches the file (the mapping is shared) and a later Open of the
// same directory sees it.

// ReadCounters returns the counters kept in a spool directory, read without
// opening the spool (it may be in use): for tools, tests and the soak script.
func ReadCounters(dir string) (map[string]uint64, error) {
	p := filepath.Join(dir, countersFile)
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", p, err)
	}
	if len(b) != countersSize || !bytes.Equal(b[:8], countersMagic) {
		return nil, fmt.Errorf("%s: not a counters file", p)
	}
	c := &counters{mem: b, names: map[string]int{}}
	for i := 0; i < maxSlots; i++ {
		name := c.slotName(i)
		if name == "" {
			break
		}
		c.names[name] = i
	}
	return c.snapshot(), nil
}
