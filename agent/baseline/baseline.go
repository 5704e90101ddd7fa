// Package baseline learns what a host normally does and reports what is
// new. Items of several families (programs and their parents, argument
// shapes, users, written directories, peers, listeners, devices, kernel
// modules) are learned from the event stream for a period of uptime (7
// days by default), then the baseline enforces: an item first seen after
// learning raises an alert event that names the item, the process and
// what the baseline knows of that program. An operator's allow adds the
// item and lets the program learn on its own for a short clock.
//
// The baseline lives on the host (it keeps working without the uplink)
// in one file under the agent's state directory, written atomically with
// a version and a checksum; a damaged file is set aside, reported as
// tampering and learning starts again. Memory is bounded per family; what
// does not fit is counted. Observe is called by the pipeline's goroutine
// and allocates nothing for an item already known.
package baseline

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/watchpost/watchpost/agent/event"
)

// Modes.
const (
	ModeLearning  = "learning"
	ModeEnforcing = "enforcing"
)

// Config tunes the baseline.
type Config struct {
	// Dir is the state directory holding the baseline file.
	Dir string
	// Host names the host in the file (a copied file is recognised).
	Host string
	// Learning is the uptime learned before the baseline enforces.
	Learning time.Duration
	// AllowLearning is how long a program whose item an operator allowed
	// learns its further items without alerting.
	AllowLearning time.Duration
	// MaxItems bounds the items kept per family.
	MaxItems int
	// WriteRoots are the directories under which written paths are
	// learned; WriteDepth the directories below a root an item keeps.
	WriteRoots []string
	WriteDepth int
	// LearnUnder are programs whose descendants' new items are learned,
	// never raised, while enforcing: the package manager's transactions
	// (maintainer scripts, new files and directories of an upgrade). The
	// program itself started from a new parent still alerts.
	LearnUnder []string
	// SaveInterval is how often a changed baseline is written.
	SaveInterval time.Duration
	// AlertsPerMinute bounds the anomalies raised (a burst of that many,
	// then that many a minute); the rest are counted as throttled and
	// alert when next seen.
	AlertsPerMinute int
	// Now is the clock (tests and the simulator replace it).
	Now func() time.Time
}

// DefaultWriteRoots are where a written file says something about a
// host: programs, libraries, configuration, services' state, logs,
// scheduled jobs, boot files and root's home.
var DefaultWriteRoots = []string{"/etc", "/usr", "/bin", "/sbin", "/lib", "/lib64", "/opt", "/boot",
	"/var/lib", "/var/log", "/var/spool", "/root"}

// DefaultLearnUnder is the package manager: what an upgrade installs is
// what the host is meant to run.
var DefaultLearnUnder = []string{"/usr/bin/dpkg"}

// DefaultConfig is the configuration without a file.
func DefaultConfig() Config {
	return Config{Learning: 7 * 24 * time.Hour, AllowLearning: time.Hour, MaxItems: 4096,
		WriteRoots: DefaultWriteRoots, WriteDepth: 2, LearnUnder: DefaultLearnUnder, SaveInterval: time.Minute, AlertsPerMinute: 30}
}

// Validate names the bad setting (keys of the agent's configuration).
func (c Config) Validate() error {
	switch {
	case c.Dir == "":
		return errors.New("baseline.dir: required")
	case c.Learning < time.Second:
		return fmt.Errorf("baseline.learning: %s is below 1s", c.Learning)
	case c.AllowLearning < 0:
		return fmt.Errorf("baseline.allow_learning: %s is negative", c.AllowLearning)
	case c.MaxItems < 16 || c.MaxItems > 1<<20:
		return fmt.Errorf("baseline.max_items: %d is not within 16..1048576", c.MaxItems)
	case c.WriteDepth < 0 || c.WriteDepth > 8:
		return fmt.Errorf("baseline.write_depth: %d is not within 0..8", c.WriteDepth)
	case c.SaveInterval < time.Second:
		return fmt.Errorf("baseline.save_interval: %s is below 1s", c.SaveInterval)
	case c.AlertsPerMinute < 1:
		return fmt.Errorf("baseline.alerts_per_minute: %d is below 1", c.AlertsPerMinute)
	}
	for i, r := range c.WriteRoots {
		if !strings.HasPrefix(r, "/") {
			return fmt.Errorf("baseline.write_roots[%d]: %q is not an absolute path", i, r)
		}
	}
	for i, r := range c.LearnUnder {
		if !strings.HasPrefix(r, "/") {
			return fmt.Errorf("baseline.learn_under[%d]: %q is not an absolute path", i, r)
		}
	}
	return nil
}

// Item states.
const (
	stateLearned uint8 = iota
	stateAllowed       // added by an operator
	statePending       // raised an alert, not allowed
)

type item struct {
	first, last int64 // unix seconds
	count       uint64
	state       uint8
}

type family struct {
	items   map[string]*item
	pending int
	dropped uint64
}

// Baseline is one host's learned baseline.
type Baseline struct {
	cfg Config
	log zerolog.Logger
	now func() time.Time

	saveMu   sync.Mutex // one Save at a time
	mu       sync.Mutex
	fams     [familyCount]family
	mode     string
	learned  time.Duration
	since    time.Time
	enforced time.Time // when it started enforcing
	clocks   map[string]time.Time
	lastTick time.Time
	dirty    bool
	savedAt  time.Time
	saveErr  error
	loadErr  string
	startup  []*event.Event

	alerts       uint64
	throttled    uint64
	learnedUnder uint64
	tokens       float64
	tokensAt     time.Time

	k   keyer
	out []*event.Event

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// New loads the host's baseline from cfg.Dir, or starts learning a new
// one. A file that cannot be read as a baseline is set aside (renamed),
// reported in Status and by a tamper event (Startup), and learning starts
// again: a damaged baseline never keeps the agent from running.
func New(cfg Config, log zerolog.Logger) (*Baseline, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	b := &Baseline{cfg: cfg, log: log.With().Str("component", "baseline").Logger(), now: cfg.Now,
		clocks: map[string]time.Time{}, tokens: float64(cfg.AlertsPerMinute)}
	b.reset(b.now())
	if err := b.load(); err != nil {
		return nil, err
	}
	b.lastTick = b.now()
	b.tick(b.lastTick) // a shorter learning period than the file's may end learning at once
	return b, nil
}

// reset empties the baseline and starts learning at now.
func (b *Baseline) reset(now time.Time) {
	for i := range b.fams {
		b.fams[i] = family{items: map[string]*item{}}
	}
	b.mode, b.learned, b.since, b.enforced = ModeLearning, 0, now.UTC(), time.Time{}
	clear(b.clocks)
	b.dirty = true
}

// Startup returns the events the baseline has to report once it runs
// (a damaged file set aside); later calls return none.
func (b *Baseline) Startup() []*event.Event {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := b.startup
	b.startup = nil
	return out
}

// Start runs the learning clock and saves the baseline while it changes.
func (b *Baseline) Start(ctx context.Context) error {
	b.stop, b.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(b.done)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-b.stop:
				return
			case <-t.C:
				b.Tick(b.now())
			}
		}
	}()
	return nil
}

// Shutdown stops the clock and writes the baseline. Safe without Start
// and more than once.
func (b *Baseline) Shutdown(context.Context) error {
	var err error
	b.once.Do(func() {
		if b.stop != nil {
			close(b.stop)
			<-b.done
		}
		b.mu.Lock()
		b.accrue(b.now())
		b.mu.Unlock()
		err = b.Save()
	})
	return err
}

// maxTickGap bounds the uptime one tick adds: a suspended host or a
// stopped clock does not learn while it sleeps.
const maxTickGap = 5 * time.Minute

// Tick advances the learning clock to now, ends learning when its period
// is up, expires allowed programs' clocks and saves a changed baseline
// every SaveInterval. The agent ticks every second; the simulator with its
// own time.
func (b *Baseline) Tick(now time.Time) {
	b.mu.Lock()
	b.tick(now)
	save := b.dirty && now.Sub(b.savedAt) >= b.cfg.SaveInterval
	b.mu.Unlock()
	if save {
		_ = b.Save() // the error is kept for Status
	}
}

func (b *Baseline) tick(now time.Time) {
	b.accrue(now)
	if b.mode == ModeLearning && b.learned >= b.cfg.Learning {
		b.mode, b.enforced, b.dirty = ModeEnforcing, now.UTC(), true
		b.log.Info().Dur("learned", b.learned).Int("items", b.itemsLocked()).Msg("baseline learned: new items alert from now on")
	}
	for subject, until := range b.clocks {
		if !now.Before(until) {
			delete(b.clocks, subject)
			b.dirty = true
		}
	}
}

func (b *Baseline) accrue(now time.Time) {
	d := now.Sub(b.lastTick)
	b.lastTick = now
	if d <= 0 || b.mode != ModeLearning {
		return
	}
	b.dirty = true
	b.learned += min(d, maxTickGap)
}

func (b *Baseline) itemsLocked() int {
	n := 0
	for i := range b.fams {
		n += len(b.fams[i].items) - b.fams[i].pending
	}
	return n
}

// errInProgress is EINPROGRESS as a connect's result: a non-blocking
// connect that is under way counts as the attempt it is.
const errInProgress = -115

// Observe learns from one event or judges it, and returns the alert events
// it raises (nil for nearly all); the slice is valid until the next call.
func (b *Baseline) Observe(ev *event.Event) []*event.Event {
	if ev.Kind >= event.Kind(event.KernelKinds) {
		return nil // the agent's own events
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.out = b.out[:0]
	k := &b.k
	p := &ev.Process
	switch ev.Kind {
	case event.KindExec:
		exe := exeOf(p)
		b.check(FamilyExec, ev, k.start(exe, parentOf(ev)))
		key := append(k.start(exe), sep)
		k.buf = appendShape(key, p.Args)
		b.check(FamilyArgs, ev, k.buf)
		key = append(k.start(exe), sep)
		k.buf = appendUint(key, uint64(p.EUID))
		b.check(FamilyUser, ev, k.buf)
	case event.KindFileOpen, event.KindFileUnlink, event.KindFileRename, event.KindFileChmod, event.KindFileChown,
		event.KindFileTruncate, event.KindFileMkdir, event.KindFileRmdir, event.KindFileLink, event.KindFileSymlink:
		f := ev.File
		if f == nil || f.Result < 0 {
			break
		}
		if ev.Industrial != nil && ev.Industrial.Device != "" {
			key := append(k.start(exeOf(p)), sep)
			k.buf = appendNormalised(key, ev.Industrial.Device, 256)
			b.check(FamilyDevice, ev, k.buf)
			break
		}
		if !f.Write {
			break
		}
		path := f.Path
		if f.NewPath != "" && (ev.Kind == event.KindFileRename || ev.Kind == event.KindFileLink) {
			path = f.NewPath
		}
		key := append(k.start(exeOf(p)), sep)
		if buf, ok := appendDirPrefix(key, path, b.cfg.WriteRoots, b.cfg.WriteDepth); ok {
			k.buf = buf
			b.check(FamilyFileWrite, ev, buf)
		}
	case event.KindNetConnect:
		n := ev.Net
		if n == nil || (n.Result != 0 && n.Result != errInProgress) || !inet(n.Family) || n.DstAddr == "" {
			break
		}
		key := append(k.start(exeOf(p)), sep)
		k.buf = appendPeer(key, n.DstAddr, n.DstPort, n.Protocol)
		b.check(FamilyConnect, ev, k.buf)
	case event.KindNetAccept:
		n := ev.Net
		if n == nil || n.Result < 0 || !inet(n.Family) {
			break
		}
		b.inbound(ev, n)
	case event.KindNetUDPFlow:
		n := ev.Net
		if n == nil || !inet(n.Family) || n.DstAddr == "" {
			break
		}
		if n.Direction == "inbound" {
			b.inbound(ev, n)
			break
		}
		key := append(k.start(exeOf(p)), sep)
		k.buf = appendPeer(key, n.DstAddr, n.DstPort, n.Protocol)
		b.check(FamilyConnect, ev, k.buf)
	case event.KindNetListen, event.KindNetBind:
		n := ev.Net
		if n == nil || n.Result != 0 || !inet(n.Family) || n.SrcPort == 0 {
			break
		}
		// A TCP socket serves from listen; a UDP socket from bind.
		if ev.Kind == event.KindNetBind && n.Protocol != "udp" {
			break
		}
		key := append(k.start(exeOf(p)), sep)
		k.buf = appendAddrPort(key, n.SrcAddr, n.SrcPort, n.Protocol)
		b.check(FamilyListen, ev, k.buf)
	case event.KindModuleLoad:
		s := ev.Security
		if s == nil || s.Result < 0 || s.Name == "" {
			break
		}
		b.check(FamilyModule, ev, k.start(s.Name))
	}
	switch len(b.out) {
	case 0:
		return nil
	case 1:
		return b.out
	}
	// One event, one alert: the first new item (the families are checked
	// most telling first) names the others.
	first := b.out[0].Alert
	for _, o := range b.out[1:] {
		an := o.Alert.Baseline
		first.Baseline.Also = append(first.Baseline.Also, an.Family+" "+strings.Join(an.Item[1:], " "))
		first.Matches = append(first.Matches, o.Alert.Matches[1:]...)
	}
	first.Title += "; also new: " + strings.Join(first.Baseline.Also, ", ")
	b.alerts -= uint64(len(b.out) - 1)
	return b.out[:1]
}

func inet(f string) bool { return f == "inet" || f == "inet6" }

// inbound checks a talker that reached a local port (the peer's address,
// not its ephemeral port).
func (b *Baseline) inbound(ev *event.Event, n *event.Net) {
	k := &b.k
	key := append(k.start(exeOf(&ev.Process)), sep, ':')
	key = appendUint(key, uint64(n.SrcPort))
	key = append(key, '/')
	key = append(key, n.Protocol...)
	key = append(key, sep)
	k.buf = append(key, n.DstAddr...)
	b.check(FamilyAccept, ev, k.buf)
}

// check looks one item up; a known one is counted, a new one learned or,
// when enforcing, raised.
func (b *Baseline) check(f Family, ev *event.Event, key []byte) {
	fam := &b.fams[f]
	now := ev.Time.Unix()
	if it, ok := fam.items[string(key)]; ok {
		it.last = now
		it.count++
		return
	}
	learning := b.mode == ModeLearning
	if !learning && len(b.clocks) > 0 {
		subject := key
		if i := bytes.IndexByte(key, sep); i >= 0 {
			subject = key[:i]
		}
		if until, ok := b.clocks[string(subject)]; ok && ev.Time.Before(until) {
			learning = true
		}
	}
	if !learning && b.underLearner(ev) {
		learning = true
		b.learnedUnder++
	}
	full := len(fam.items) >= b.cfg.MaxItems
	if full {
		fam.dropped++
	}
	if learning {
		if !full {
			fam.items[string(key)] = &item{first: now, last: now, count: 1}
			b.dirty = true
		}
		return
	}
	if !b.allowAlert(ev.Time) {
		b.throttled++
		return
	}
	s := string(key)
	if !full {
		fam.items[s] = &item{first: now, last: now, count: 1, state: statePending}
		fam.pending++
		b.dirty = true
	}
	b.alerts++
	b.out = append(b.out, b.anomaly(f, s, ev))
}

// underLearner reports whether the event's process or one of its
// ancestors is a LearnUnder program.
func (b *Baseline) underLearner(ev *event.Event) bool {
	if len(b.cfg.LearnUnder) == 0 {
		return false
	}
	if slices.Contains(b.cfg.LearnUnder, ev.Process.Exe) {
		return true
	}
	for i := range ev.Ancestry {
		if slices.Contains(b.cfg.LearnUnder, ev.Ancestry[i].Exe) {
			return true
		}
	}
	return false
}

// allowAlert takes a token of the alert rate.
func (b *Baseline) allowAlert(now time.Time) bool {
	rate := float64(b.cfg.AlertsPerMinute)
	if d := now.Sub(b.tokensAt); d > 0 {
		b.tokens = min(rate, b.tokens+d.Minutes()*rate)
	}
	b.tokensAt = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// maxKnown bounds the known items an anomaly quotes.
const maxKnown = 3

// anomaly builds the alert event for a new item.
func (b *Baseline) anomaly(f Family, key string, ev *event.Event) *event.Event {
	fields := splitKey(key)
	var known []string
	count := 0
	if f != FamilyModule {
		prefix := fields[0] + string(sep)
		for k, it := range b.fams[f].items {
			if it.state != statePending && strings.HasPrefix(k, prefix) {
				count++
				known = append(known, strings.Join(splitKey(k)[1:], " "))
			}
		}
		slices.Sort(known)
		if len(known) > maxKnown {
			known = known[:maxKnown]
		}
	}
	an := &event.Anomaly{Family: f.String(), Item: fields, Known: known, KnownCount: count, LearnedNS: uint64(b.learned)}
	matches := make([]event.Match, 0, len(fields))
	for i, v := range fields {
		matches = append(matches, event.Match{Field: familyFields[f][i], Value: v})
	}
	out := &event.Event{Kind: event.KindAlert, Time: ev.Time, BootNS: ev.BootNS, Process: ev.Process,
		Ancestry: ev.Ancestry, Industrial: ev.Industrial}
	out.Alert = &event.Alert{RuleID: "baseline." + f.String(), Title: Explain(an, ev), Level: familyLevel[f],
		Source: "baseline", Matches: matches, Baseline: an,
		Events: []event.EventRef{{Seq: ev.Seq, Kind: ev.Kind, Time: ev.Time, BootNS: ev.BootNS, PID: ev.Process.PID}}}
	return out
}

// Explain says in plain words what is new and what the baseline knows.
func Explain(an *event.Anomaly, ev *event.Event) string {
	it := an.Item
	get := func(i int) string {
		if i < len(it) {
			return it[i]
		}
		return ""
	}
	exe := get(0)
	who := fmt.Sprintf("%s (pid %d, uid %d, child of %s)", exe, ev.Process.PID, ev.Process.EUID, parentOf(ev))
	var what, has string
	switch an.Family {
	case "exec":
		what = fmt.Sprintf("%s (pid %d, uid %d) was started by %s", exe, ev.Process.PID, ev.Process.EUID, get(1))
		has = "started it by"
	case "args":
		what = fmt.Sprintf("%s ran with arguments of a new shape (%q)", who, get(1))
		has = "ran it with"
	case "user":
		what = fmt.Sprintf("%s ran as uid %s", who, get(1))
		has = "ran it as uid"
	case "file_write":
		what = fmt.Sprintf("%s wrote %s", who, writtenPath(ev, get(1)))
		has = "saw it write under"
	case "connect":
		what = fmt.Sprintf("%s connected to %s", who, get(1))
		has = "saw it connect to"
	case "accept":
		what = fmt.Sprintf("%s took a connection on %s from %s", who, get(1), get(2))
		has = "saw it take"
	case "listen":
		what = fmt.Sprintf("%s listens on %s", who, get(1))
		has = "saw it listen on"
	case "device":
		what = fmt.Sprintf("%s opened %s", who, get(1))
		has = "saw it open"
	case "module":
		return fmt.Sprintf("kernel module %s was loaded by %s (pid %d, uid %d); this host's baseline never saw it loaded, learned over %s",
			exe, exeOf(&ev.Process), ev.Process.PID, ev.Process.EUID, learnedFor(an.LearnedNS))
	default:
		what = fmt.Sprintf("%s: new %s item %s", who, an.Family, strings.Join(it, " "))
		has = "has"
	}
	var known string
	switch {
	case an.KnownCount == 0 && an.Family == "exec":
		known = "this host's baseline never ran it"
	case an.KnownCount == 0:
		known = fmt.Sprintf("this host's baseline has nothing of this kind for %s", exe)
	default:
		known = fmt.Sprintf("this host's baseline %s %s", has, strings.Join(an.Known, ", "))
		if more := an.KnownCount - len(an.Known); more > 0 {
			known += fmt.Sprintf(" and %d more", more)
		}
		if an.Family == "exec" {
			known = fmt.Sprintf("this host's baseline %s %s", has, strings.Join(an.Known, ", "))
			if more := an.KnownCount - len(an.Known); more > 0 {
				known += fmt.Sprintf(" and %d more parents", more)
			}
			known += " only"
		}
	}
	return fmt.Sprintf("%s; %s, learned over %s", what, known, learnedFor(an.LearnedNS))
}

func writtenPath(ev *event.Event, dir string) string {
	if ev.File != nil {
		p := ev.File.Path
		if ev.File.NewPath != "" && (ev.Kind == event.KindFileRename || ev.Kind == event.KindFileLink) {
			p = ev.File.NewPath
		}
		return fmt.Sprintf("%s (under %s)", p, dir)
	}
	return "under " + dir
}

// learnedFor formats a learning time in days and hours (or less).
func learnedFor(ns uint64) string {
	d := time.Duration(ns)
	switch {
	case d >= 24*time.Hour:
		days := d / (24 * time.Hour)
		h := (d - days*24*time.Hour) / time.Hour
		if h == 0 {
			return fmt.Sprintf("%dd", days)
		}
		return fmt.Sprintf("%dd%dh", days, h)
	case d >= time.Hour:
		return d.Truncate(time.Minute).String()
	default:
		return d.Truncate(time.Second).String()
	}
}

// Status is the baseline's state for health events.
func (b *Baseline) Status() *event.Baseline {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := &event.Baseline{Mode: b.mode, LearnedNS: uint64(b.learned), PeriodNS: uint64(b.cfg.Learning), Since: b.since,
		Alerts: b.alerts, Throttled: b.throttled, LearnedUnder: b.learnedUnder, Clocks: len(b.clocks), SavedAt: b.savedAt, LoadError: b.loadErr}
	if b.saveErr != nil {
		st.SaveError = b.saveErr.Error()
	}
	for i := range b.fams {
		f := &b.fams[i]
		st.Families = append(st.Families, event.BaselineFamily{Family: Family(i).String(),
			Items: len(f.items) - f.pending, Pending: f.pending, Dropped: f.dropped})
	}
	return st
}

// Mode is learning or enforcing.
func (b *Baseline) Mode() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.mode
}

// Item is one item of the baseline, as the CLI and tests list them.
type Item struct {
	Family string
	Fields []string
	First  time.Time
	Last   time.Time
	Count  uint64
	State  string // learned, allowed, pending
}

var stateNames = [...]string{"learned", "allowed", "pending"}

// Items lists a family's items (every family's when f is empty), sorted.
func (b *Baseline) Items(f string) []Item {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []Item
	for i := range b.fams {
		if f != "" && Family(i).String() != f {
			continue
		}
		for k, it := range b.fams[i].items {
			out = append(out, Item{Family: Family(i).String(), Fields: splitKey(k), First: time.Unix(it.first, 0).UTC(),
				Last: time.Unix(it.last, 0).UTC(), Count: it.count, State: stateNames[it.state]})
		}
	}
	slices.SortFunc(out, func(a, b Item) int {
		if c := strings.Compare(a.Family, b.Family); c != 0 {
			return c
		}
		return slices.Compare(a.Fields, b.Fields)
	})
	return out
}

// Allow adds an item to the baseline (an operator's decision) and, unless
// replaying, lets its program learn on its own for AllowLearning.
func (b *Baseline) Allow(family string, fields []string, replay bool) error {
	f, ok := ParseFamily(family)
	if !ok {
		return fmt.Errorf("family %q is not one of %s", family, strings.Join(familyNames[:], ", "))
	}
	if len(fields) != len(familyFields[f]) {
		return fmt.Errorf("a %s item has %d fields (%s), not %d", family, len(familyFields[f]), strings.Join(familyFields[f], ", "), len(fields))
	}
	for i, v := range fields {
		if v == "" || strings.IndexByte(v, sep) >= 0 {
			return fmt.Errorf("%s item field %s: empty or holding a NUL byte", family, familyFields[f][i])
		}
	}
	key := strings.Join(fields, string(sep))
	now := b.now()
	b.mu.Lock()
	fam := &b.fams[f]
	it, ok := fam.items[key]
	switch {
	case ok && it.state == statePending:
		it.state = stateAllowed
		fam.pending--
		b.allowWithLocked(fields[0], it.first)
	case ok:
	case len(fam.items) >= b.cfg.MaxItems:
		fam.dropped++
		b.mu.Unlock()
		return fmt.Errorf("the baseline's %s family is full (%d items)", family, b.cfg.MaxItems)
	default:
		fam.items[key] = &item{first: now.Unix(), last: now.Unix(), state: stateAllowed}
	}
	if !replay && b.cfg.AllowLearning > 0 && f != FamilyModule {
		b.clocks[fields[0]] = now.Add(b.cfg.AllowLearning)
	}
	b.dirty = true
	b.mu.Unlock()
	if replay {
		return nil
	}
	b.log.Info().Str("family", family).Strs("item", fields).Msg("baseline item allowed")
	return b.Save()
}

// allowWithLocked allows the pending items of a subject first seen in the
// same second as an allowed one: the items its alert named as also new.
func (b *Baseline) allowWithLocked(subject string, first int64) {
	prefix := subject + string(sep)
	for i := range b.fams {
		f := &b.fams[i]
		for k, it := range f.items {
			if it.state == statePending && it.first == first && strings.HasPrefix(k, prefix) {
				it.state = stateAllowed
				f.pending--
			}
		}
	}
}

// Relearn forgets everything and learns again for the learning period.
func (b *Baseline) Relearn() error {
	b.mu.Lock()
	b.reset(b.now())
	b.mu.Unlock()
	b.log.Info().Msg("baseline cleared: learning again")
	return b.Save()
}

// SetMode switches the mode: learning learns (again) for a whole
// learning period, keeping what is known; enforcing ends learning now.
func (b *Baseline) SetMode(mode string) error {
	b.mu.Lock()
	switch mode {
	case ModeLearning:
		b.mode, b.learned, b.enforced = ModeLearning, 0, time.Time{}
	case ModeEnforcing:
		if b.mode != ModeEnforcing {
			b.mode, b.enforced = ModeEnforcing, b.now().UTC()
		}
	default:
		b.mu.Unlock()
		return fmt.Errorf("mode %q is not learning or enforcing", mode)
	}
	b.dirty = true
	b.mu.Unlock()
	b.log.Info().Str("mode", mode).Msg("baseline mode set")
	return b.Save()
}
