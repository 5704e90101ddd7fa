// Package proctable keeps the agent's view of the live processes, so that
// every event carries its process's executable, arguments and ancestry even
// for processes that started before the agent.
//
// The table is seeded from /proc at start and then follows the kernel's
// exec, clone and exit events. Exited processes linger for a short grace
// period (their children's in-flight events still need them) in a bounded
// list; the live map is bounded too, and a periodic sweep removes entries
// whose exit event was lost.
package proctable

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/watchpost/watchpost/agent/event"
	"github.com/watchpost/watchpost/proto/limits"
)

// Entry is what the table knows of one process.
type Entry struct {
	PID         uint32
	PPID        uint32
	UID         uint32
	EUID        uint32
	GID         uint32
	EGID        uint32
	LoginUID    event.AUID
	SessionID   uint32
	Comm        string
	Exe         string
	Args        []string
	Cwd         string
	StartBootNS uint64
	exitedAt    time.Time // zero while alive
	// argsCut is the size of the command line read from /proc when it was
	// longer than the limits (Args holds its head and tail); nil otherwise.
	argsCut *event.Truncation
}

// Config bounds the table.
type Config struct {
	// MaxEntries bounds live entries; beyond it the oldest are evicted (counted).
	MaxEntries int
	// Grace keeps exited entries this long for late events of their children.
	Grace time.Duration
	// MaxExited bounds the exited entries kept for the grace period.
	MaxExited int
	// Depth is how many ancestors each event carries (parent first).
	Depth int
	// ProcRoot is the proc file system to seed from (tests may point elsewhere).
	ProcRoot string
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{MaxEntries: 131072, Grace: 5 * time.Second, MaxExited: 8192, Depth: 3, ProcRoot: "/proc"}
}

// Validate names the bad setting.
func (c Config) Validate() error {
	switch {
	case c.MaxEntries < 1024:
		return fmt.Errorf("process_table.max_entries: %d is below 1024", c.MaxEntries)
	case c.MaxExited < 1:
		return fmt.Errorf("process_table.max_exited: %d must be positive", c.MaxExited)
	case c.Grace < 0:
		return fmt.Errorf("process_table.grace: %s must not be negative", c.Grace)
	case c.Depth < 2 || c.Depth > 16:
		return fmt.Errorf("process_table.depth: %d must be between 2 and 16", c.Depth)
	}
	return nil
}

// Stats counts the table's work.
type Stats struct {
	Live      int
	Exited    int
	Seeded    uint64
	ProcReads uint64 // entries filled lazily from /proc for unknown pids
	Evicted   uint64 // live entries evicted at MaxEntries
	Swept     uint64 // entries removed because their process was gone
}

// Table is the process table. Apply and Enrich are called from the
// pipeline's single goroutine; Stats and Lookup may be called concurrently.
type Table struct {
	cfg Config

	mu     sync.Mutex
	live   map[uint32]*Entry
	exited []*Entry // FIFO of recently exited entries, at most MaxExited
	stats  Stats
	now    func() time.Time
}

// New creates an empty table.
func New(cfg Config) (*Table, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Table{cfg: cfg, live: make(map[uint32]*Entry, 1024), now: time.Now}, nil
}

// Seed fills the table from /proc. Processes that vanish while it reads are skipped.
func (t *Table) Seed() error {
	dirs, err := os.ReadDir(t.cfg.ProcRoot)
	if err != nil {
		return fmt.Errorf("seeding the process table from %s: %w", t.cfg.ProcRoot, err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, d := range dirs {
		pid, err := strconv.ParseUint(d.Name(), 10, 32)
		if err != nil {
			continue
		}
		e, err := readProc(t.cfg.ProcRoot, uint32(pid))
		if err != nil {
			continue
		}
		t.insertLocked(e)
		t.stats.Seeded++
	}
	return nil
}

// Apply updates the table from a process event and fills the event's
// process context and ancestry. Non-process events are only enriched.
func (t *Table) Apply(ev *event.Event) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := &ev.Process
	switch ev.Kind {
	case event.KindExec:
		t.insertLocked(&Entry{
			PID: p.PID, PPID: p.PPID, UID: p.UID, EUID: p.EUID, GID: p.GID, EGID: p.EGID,
			LoginUID: p.LoginUID, SessionID: p.SessionID, Comm: p.Comm, Exe: p.Exe,
			Args: p.Args, Cwd: p.Cwd, StartBootNS: p.StartBootNS,
		})
	case event.KindClone:
		if ev.Clone != nil && !ev.Clone.Thread {
			parent := t.lookupLocked(p.PID)
			child := &Entry{PID: ev.Clone.ChildPID, PPID: p.PID, UID: p.UID, EUID: p.UID, GID: p.GID, EGID: p.GID,
				LoginUID: event.AUIDUnset, Comm: p.Comm, StartBootNS: ev.BootNS}
			if parent != nil {
				child.Exe, child.Args, child.Cwd, child.argsCut = parent.Exe, parent.Args, parent.Cwd, parent.argsCut
				child.EUID, child.EGID = parent.EUID, parent.EGID
				child.LoginUID, child.SessionID = parent.LoginUID, parent.SessionID
			}
			t.insertLocked(child)
		}
	case event.KindCredChange:
		// The record carries the credentials after the call; the table
		// still has the ones before.
		if self := t.lookupLocked(p.PID); self != nil && ev.Security != nil && ev.Security.Result == 0 {
			if ev.Security.OldID == nil {
				ev.Security.OldID = event.ID(self.EUID)
				if isGroupOp(ev.Security.Operation) {
					ev.Security.OldID = event.ID(self.EGID)
				}
			}
			self.UID, self.EUID, self.GID, self.EGID = p.UID, p.EUID, p.GID, p.EGID
		}
	}
	t.enrichLocked(ev)
	if ev.Kind == event.KindExit {
		t.exitLocked(p.PID)
	}
}

func isGroupOp(op string) bool {
	return strings.Contains(op, "gid") || op == "setgroups"
}

// enrichLocked fills exe, args, cwd and the identity the kernel record did
// not carry from the table, and the ancestry from the parent chain.
func (t *Table) enrichLocked(ev *event.Event) {
	p := &ev.Process
	if self := t.lookupLocked(p.PID); self != nil {
		if ev.Kind != event.KindExec {
			p.EUID, p.EGID = self.EUID, self.EGID
			p.LoginUID, p.SessionID = self.LoginUID, self.SessionID
		}
		if p.Exe == "" {
			p.Exe = self.Exe
		}
		if p.Args == nil {
			p.Args = self.Args
			self.noteCut(ev, "process.args")
		}
		if p.Cwd == "" {
			p.Cwd = self.Cwd
		}
		if p.StartBootNS == 0 {
			p.StartBootNS = self.StartBootNS
		}
	}
	ppid := p.PPID
	anc := make([]event.Ancestor, 0, t.cfg.Depth)
	for i := 0; i < t.cfg.Depth && ppid != 0; i++ {
		a := t.lookupLocked(ppid)
		if a == nil {
			anc = append(anc, event.Ancestor{PID: ppid})
			break
		}
		anc = append(anc, event.Ancestor{PID: a.PID, Comm: a.Comm, Exe: a.Exe, Args: a.Args, UID: a.UID})
		a.noteCut(ev, "ancestry["+strconv.Itoa(i)+"].args")
		if a.PPID == a.PID {
			break
		}
		ppid = a.PPID
	}
	ev.Ancestry = anc
	if s := ev.Security; s != nil && s.TargetPID != 0 && (ev.Kind == event.KindSignal || ev.Kind == event.KindPtrace) {
		if tg := t.lookupLocked(s.TargetPID); tg != nil {
			s.TargetExe, s.TargetArgs, s.TargetUID = tg.Exe, tg.Args, event.ID(tg.UID)
			if s.TargetComm == "" {
				s.TargetComm = tg.Comm
			}
			tg.noteCut(ev, "security.target_args")
		}
	}
}

// noteCut records on ev that the arguments it took from e were cut.
func (e *Entry) noteCut(ev *event.Event, field string) {
	if e.argsCut != nil {
		t := *e.argsCut
		t.Field = field
		ev.Truncated = append(ev.Truncated, t)
	}
}

// Lookup returns a copy of the entry for pid.
func (t *Table) Lookup(pid uint32) (Entry, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e := t.lookupLocked(pid); e != nil {
		return *e, true
	}
	return Entry{}, false
}

// lookupLocked finds a live entry, then a recently exited one, then reads
// /proc for a process the table has not seen (its clone event was lost).
func (t *Table) lookupLocked(pid uint32) *Entry {
	if e, ok := t.live[pid]; ok {
		return e
	}
	for i := len(t.exited) - 1; i >= 0; i-- {
		if t.exited[i].PID == pid {
			return t.exited[i]
		}
	}
	if pid == 0 {
		return nil
	}
	e, err := readProc(t.cfg.ProcRoot, pid)
	if err != nil {
		return nil
	}
	t.stats.ProcReads++
	t.insertLocked(e)
	return e
}

func (t *Table) insertLocked(e *Entry) {
	if _, ok := t.live[e.PID]; !ok && len(t.live) >= t.cfg.MaxEntries {
		t.evictOldestLocked()
	}
	t.live[e.PID] = e
}

// evictOldestLocked drops the live entry that started first. It runs only
// when exits were lost on a massive scale; the sweep normally prevents it.
func (t *Table) evictOldestLocked() {
	var oldest *Entry
	for _, e := range t.live {
		if oldest == nil || e.StartBootNS < oldest.StartBootNS {
			oldest = e
		}
	}
	if oldest != nil {
		delete(t.live, oldest.PID)
		t.stats.Evicted++
	}
}

func (t *Table) exitLocked(pid uint32) {
	e, ok := t.live[pid]
	if !ok {
		return
	}
	delete(t.live, pid)
	e.exitedAt = t.now()
	t.exited = append(t.exited, e)
	t.trimExitedLocked()
}

// trimExitedLocked drops exited entries past their grace period or beyond
// MaxExited.
func (t *Table) trimExitedLocked() {
	now := t.now()
	drop := 0
	for drop < len(t.exited) && (len(t.exited)-drop > t.cfg.MaxExited || now.Sub(t.exited[drop].exitedAt) > t.cfg.Grace) {
		drop++
	}
	if drop > 0 {
		n := copy(t.exited, t.exited[drop:])
		clear(t.exited[n:])
		t.exited = t.exited[:n]
	}
}

// Sweep removes live entries whose process no longer exists (their exit
// event was dropped) and expires exited entries. Call it periodically.
func (t *Table) Sweep() {
	t.mu.Lock()
	pids := make([]uint32, 0, len(t.live))
	for pid := range t.live {
		pids = append(pids, pid)
	}
	t.trimExitedLocked()
	t.mu.Unlock()
	for _, pid := range pids {
		if _, err := os.Stat(filepath.Join(t.cfg.ProcRoot, strconv.FormatUint(uint64(pid), 10))); errors.Is(err, os.ErrNotExist) {
			t.mu.Lock()
			if _, ok := t.live[pid]; ok {
				delete(t.live, pid)
				t.stats.Swept++
			}
			t.mu.Unlock()
		}
	}
}

// Stats returns the counters and sizes.
func (t *Table) Stats() Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.stats
	s.Live = len(t.live)
	s.Exited = len(t.exited)
	return s
}

// readProc reads one process's entry from /proc.
func readProc(root string, pid uint32) (*Entry, error) {
	dir := filepath.Join(root, strconv.FormatUint(uint64(pid), 10))
	stat, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		return nil, err
	}
	e := &Entry{PID: pid}
	if err := parseStat(stat, e); err != nil {
		return nil, fmt.Errorf("%s/stat: %w", dir, err)
	}
	// Kernel threads have no exe; that is not an error.
	e.Exe, _ = os.Readlink(filepath.Join(dir, "exe"))
	e.Cwd, _ = os.Readlink(filepath.Join(dir, "cwd"))
	if cmdline, err := os.ReadFile(filepath.Join(dir, "cmdline")); err == nil && len(cmdline) > 0 {
		args := strings.Split(strings.TrimSuffix(string(cmdline), "\x00"), "\x00")
		// A command line can be megabytes long: only its head and tail
		// are kept, as the agent would send them.
		var cut bool
		if e.Args, cut = limits.List(args, limits.Args, limits.ArgBytes, limits.ArgsBytes); cut {
			e.argsCut = &event.Truncation{Entries: uint32(len(args)), Bytes: limits.Bytes(args)}
		}
	}
	if status, err := os.ReadFile(filepath.Join(dir, "status")); err == nil {
		e.UID, e.EUID = parseStatusIDs(status, "Uid:")
		e.GID, e.EGID = parseStatusIDs(status, "Gid:")
	}
	e.LoginUID = event.AUID(readUint32(filepath.Join(dir, "loginuid"), uint32(event.AUIDUnset)))
	e.SessionID = readUint32(filepath.Join(dir, "sessionid"), ^uint32(0))
	return e, nil
}

// clockTicks is USER_HZ, which Linux fixes at 100 for /proc on every
// architecture the agent supports.
const clockTicks = 100

// parseStat reads comm, ppid and the start time from /proc/PID/stat. comm
// may hold spaces and parentheses, so fields are counted from the last ')'.
func parseStat(b []byte, e *Entry) error {
	open := bytes.IndexByte(b, '(')
	closeIdx := bytes.LastIndexByte(b, ')')
	if open < 0 || closeIdx < open {
		return errors.New("no comm field")
	}
	e.Comm = string(b[open+1 : closeIdx])
	fields := strings.Fields(string(b[closeIdx+1:]))
	// fields[0] is state (field 3); ppid is field 4, starttime field 22.
	if len(fields) < 20 {
		return fmt.Errorf("%d fields after comm, want at least 20", len(fields))
	}
	ppid, err := strconv.ParseUint(fields[1], 10, 32)
	if err != nil {
		return fmt.Errorf("ppid: %w", err)
	}
	start, err := strconv.ParseUint(fields[19], 10, 64)
	if err != nil {
		return fmt.Errorf("starttime: %w", err)
	}
	e.PPID = uint32(ppid)
	e.StartBootNS = start * (1e9 / clockTicks)
	return nil
}

// parseStatusIDs returns the real and effective ids of a "Uid:" or "Gid:"
// line of /proc/PID/status.
func parseStatusIDs(b []byte, key string) (real, effective uint32) {
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, key); ok {
			f := strings.Fields(rest)
			if len(f) >= 2 {
				r, _ := strconv.ParseUint(f[0], 10, 32)
				e, _ := strconv.ParseUint(f[1], 10, 32)
				return uint32(r), uint32(e)
			}
		}
	}
	return 0, 0
}

func readUint32(path string, def uint32) uint32 {
	b, err := os.ReadFile(path)
	if err != nil {
		return def
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 32)
	if err != nil {
		return def
	}
	return uint32(v)
}
