package inspect

import (
	"cmp"
	"context"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/watchpost/watchpost/agent/event"
	"github.com/watchpost/watchpost/agent/industrial"
	"github.com/watchpost/watchpost/agent/industrial/modbus"
	"github.com/watchpost/watchpost/agent/internal/sockowner"
)

// Parsers are the protocols with a parser in the kernel and here.
var Parsers = []string{"modbus"}

// Protocol is one inspected protocol and its ports.
type Protocol struct {
	Name  string `yaml:"name"`
	Ports string `yaml:"ports"` // "502", "502,1502", "5020-5030"
}

// Config is the industrial.inspect section.
type Config struct {
	Enabled bool `yaml:"enabled"`
	// Protocols are inspected on their ports; the default is the port
	// table's entry of every protocol with a parser (modbus: 502).
	Protocols []Protocol `yaml:"protocols"`
	// Interval is how long operations are summarised before their ics_op
	// events go out.
	Interval time.Duration `yaml:"interval"`
}

// maxPorts matches the kernel's port map (enum wp_ics_limit).
const maxPorts = 64

// DefaultConfig takes the ports of the parsed protocols from the port table.
func DefaultConfig() Config {
	c := Config{Enabled: true, Interval: 10 * time.Second}
	for _, p := range industrial.DefaultProtocols() {
		if slices.Contains(Parsers, p.Name) && p.Transport != "udp" {
			c.Protocols = append(c.Protocols, Protocol{Name: p.Name, Ports: p.Ports})
		}
	}
	return c
}

// Validate names the bad setting.
func (c Config) Validate() error {
	if c.Interval < time.Second || c.Interval > time.Hour {
		return fmt.Errorf("industrial.inspect.interval: %s must be between 1s and 1h", c.Interval)
	}
	_, err := c.Ports()
	return err
}

// Ports maps every inspected port to its protocol.
func (c Config) Ports() (map[uint16]string, error) {
	ports := map[uint16]string{}
	for i, p := range c.Protocols {
		if !slices.Contains(Parsers, p.Name) {
			return nil, fmt.Errorf("industrial.inspect.protocols[%d].name: %q has no parser (parsers: %s)", i, p.Name, strings.Join(Parsers, ", "))
		}
		list, err := industrial.ParsePorts(p.Ports)
		if err != nil {
			return nil, fmt.Errorf("industrial.inspect.protocols[%d].ports: %w", i, err)
		}
		for _, port := range list {
			if other, dup := ports[port]; dup {
				return nil, fmt.Errorf("industrial.inspect.protocols[%d].ports: port %d is already %s's", i, port, other)
			}
			ports[port] = p.Name
		}
	}
	if len(ports) > maxPorts {
		return nil, fmt.Errorf("industrial.inspect.protocols: %d ports, at most %d", len(ports), maxPorts)
	}
	return ports, nil
}

// Owners finds the process holding a TCP connection the kernel had no
// record of.
type Owners interface {
	Owner(local, remote netip.AddrPort) (event.Process, error)
}

// ProcOwners looks connections up with sock_diag and reads the process
// from /proc.
type ProcOwners struct{ ProcRoot string }

// Owner implements Owners.
func (o ProcOwners) Owner(local, remote netip.AddrPort) (event.Process, error) {
	pid, err := sockowner.TCPOwner(o.ProcRoot, local, remote)
	if err != nil {
		return event.Process{}, err
	}
	p := event.Process{PID: pid, LoginUID: event.AUIDUnset}
	fillFromProc(o.ProcRoot, &p)
	return p, nil
}

// fillFromProc sets what /proc/<pid> tells of p that is missing: exe,
// comm, parent, ids.
func fillFromProc(procRoot string, p *event.Process) {
	dir := procRoot + "/" + strconv.FormatUint(uint64(p.PID), 10)
	if p.Exe == "" {
		if exe, err := os.Readlink(dir + "/exe"); err == nil {
			p.Exe = strings.TrimSuffix(exe, " (deleted)")
		}
	}
	if p.Comm != "" && p.PPID != 0 {
		return
	}
	b, err := os.ReadFile(dir + "/status")
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, ":")
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, _ := strconv.ParseUint(f[0], 10, 32)
		switch k {
		case "Name":
			if p.Comm == "" {
				p.Comm = f[0]
			}
		case "PPid":
			p.PPID = uint32(n)
		case "Uid":
			p.UID = uint32(n)
			if len(f) > 1 {
				e, _ := strconv.ParseUint(f[1], 10, 32)
				p.EUID = uint32(e)
			}
		case "Gid":
			p.GID = uint32(n)
			if len(f) > 1 {
				e, _ := strconv.ParseUint(f[1], 10, 32)
				p.EGID = uint32(e)
			}
		}
	}
}

// Deps are the aggregator's collaborators.
type Deps struct {
	Owners   Owners
	ProcRoot string // for executables of the kernel's owners; "/proc" when empty
	// Clock returns the wall and boot-relative time (tests); nil: the system's.
	Clock func() (time.Time, uint64)
	// Mono is the clock held segments wait by (tests); nil: time.Now.
	Mono func() time.Time
	// QueueLen bounds the outgoing events; 0: 4096.
	QueueLen int
}

// Bounds of the aggregation state.
const (
	maxGroups    = 8192 // operation groups per interval
	maxConns     = 8192 // connections whose process is cached
	maxRanges    = 8    // address ranges per event
	defaultQueue = 4096
	maxHeld      = 256 // segments held per connection while its owner is looked for
	// ownerWait is how long a connection's segments wait for its owner;
	// urgent operations still go out within a second of their packet.
	ownerWait  = 300 * time.Millisecond
	retryEvery = 50 * time.Millisecond
)

// held are a connection's segments waiting for its owner.
type held struct {
	segs  []*Segment
	until time.Time
}

// Owner sources (event.ICS.Owner).
const (
	OwnerKernel  = "kernel"
	OwnerLookup  = "lookup"
	OwnerUnknown = "unknown"
)

type groupKey struct {
	cookie   uint64
	protocol string
	class    modbus.Class
	code     uint8
}

type conn struct {
	proc  event.Process
	owner string
}

type group struct {
	conn       *conn
	seg        endpoints
	unit       uint8
	unitSet    bool
	count      uint64
	responses  uint64
	first      uint64
	last       uint64
	firstT     time.Time
	lastT      time.Time
	ranges     []event.ICSRange
	truncated  bool
	exceptions []event.ICSException
	urgentSent bool
}

type endpoints struct {
	role          string
	local, remote netip.AddrPort
}

// Counters of the aggregator.
type Counters struct {
	Events       uint64 // ics_op events sent
	Urgent       uint64 // of which urgent
	QueueFull    uint64 // events dropped: the queue was full
	GroupsFull   uint64 // operations not counted: too many groups in the interval
	OwnerLookups uint64 // connections looked up (the kernel had no owner)
	OwnerUnknown uint64 // lookups that found no process
}

// Aggregator folds segments into ics_op events.
type Aggregator struct {
	cfg      Config
	deps     Deps
	out      chan *event.Event
	mu       sync.Mutex
	groups   map[groupKey]*group
	conns    map[uint64]*conn
	pending  map[uint64]*held
	events   atomic.Uint64
	urgent   atomic.Uint64
	full     atomic.Uint64
	gfull    atomic.Uint64
	lookups  atomic.Uint64
	unknown  atomic.Uint64
	stopOnce sync.Once
}

// New builds an aggregator; cfg must be valid.
func New(cfg Config, deps Deps) *Aggregator {
	if deps.ProcRoot == "" {
		deps.ProcRoot = "/proc"
	}
	if deps.Owners == nil {
		deps.Owners = ProcOwners{ProcRoot: deps.ProcRoot}
	}
	if deps.Clock == nil {
		deps.Clock = systemClock
	}
	if deps.QueueLen <= 0 {
		deps.QueueLen = defaultQueue
	}
	return &Aggregator{cfg: cfg, deps: deps, out: make(chan *event.Event, deps.QueueLen),
		groups: map[groupKey]*group{}, conns: map[uint64]*conn{}, pending: map[uint64]*held{}}
}

// clockMono is the time the held segments wait by.
func (a *Aggregator) clockMono() time.Time {
	if a.deps.Mono != nil {
		return a.deps.Mono()
	}
	return time.Now()
}

func systemClock() (time.Time, uint64) {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts)
	return time.Now(), uint64(ts.Nano())
}

// Events is the queue of ics_op events; closed when Run returns.
func (a *Aggregator) Events() <-chan *event.Event { return a.out }

// Counters returns the aggregator's counters.
func (a *Aggregator) Counters() Counters {
	return Counters{Events: a.events.Load(), Urgent: a.urgent.Load(), QueueFull: a.full.Load(),
		GroupsFull: a.gfull.Load(), OwnerLookups: a.lookups.Load(), OwnerUnknown: a.unknown.Load()}
}

// Run folds the segments of in until ctx ends or in is closed, sending
// the summaries every interval; at the end it sends what it holds and
// closes Events.
func (a *Aggregator) Run(ctx context.Context, in <-chan *Segment) error {
	defer a.stopOnce.Do(func() { close(a.out) })
	t := time.NewTicker(a.cfg.Interval)
	defer t.Stop()
	// The retry ticker runs only while connections wait for their owner:
	// an idle agent does not wake 20 times a second.
	var retry *time.Ticker
	var retryC <-chan time.Time
	defer func() {
		if retry != nil {
			retry.Stop()
		}
	}()
	for {
		switch held := a.holding(); {
		case held && retry == nil:
			retry = time.NewTicker(retryEvery)
			retryC = retry.C
		case !held && retry != nil:
			retry.Stop()
			retry, retryC = nil, nil
		}
		select {
		case <-ctx.Done():
			a.Flush()
			return nil
		case seg, ok := <-in:
			if !ok {
				a.Flush()
				return nil
			}
			a.Add(seg)
		case <-retryC:
			a.Retry()
		case <-t.C:
			a.Flush()
		}
	}
}

// Add counts the operations of one segment; the first urgent operation of
// its group in this interval goes out at once.
func (a *Aggregator) Add(seg *Segment) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.addLocked(seg, a.clockMono())
}

func (a *Aggregator) addLocked(seg *Segment, now time.Time) {
	if p := a.pending[seg.Cookie]; p != nil {
		// Behind the connection's held segments, in order; an owned one
		// names the process for all of them.
		p.segs = append(p.segs, seg)
		if seg.Owned || len(p.segs) >= maxHeld {
			a.release(seg.Cookie, seg.Owned)
		}
		return
	}
	c, ok := a.conn(seg)
	if !ok {
		// No owner yet: a server's first request usually arrives before
		// accept() has installed the socket's fd. Hold the connection's
		// segments a moment and look again.
		a.pending[seg.Cookie] = &held{segs: []*Segment{seg}, until: now.Add(ownerWait)}
		return
	}
	a.count(seg, c)
}

// release counts a connection's held segments: with the owner of the last
// one when owned, else with what a lookup finds now (unknown if nothing).
func (a *Aggregator) release(cookie uint64, owned bool) {
	p := a.pending[cookie]
	delete(a.pending, cookie)
	var c *conn
	if owned {
		last := p.segs[len(p.segs)-1]
		c, _ = a.conn(last)
	} else {
		c = a.lookup(p.segs[0], true)
	}
	for _, seg := range p.segs {
		a.count(seg, c)
	}
}

// holding reports whether segments wait for their connection's owner.
func (a *Aggregator) holding() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.pending) > 0
}

// Retry looks again for the owners of held connections: found ones, and
// those held past ownerWait, are counted.
func (a *Aggregator) Retry() {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.clockMono()
	for cookie, p := range a.pending {
		if c := a.lookup(p.segs[0], false); c != nil || now.After(p.until) {
			a.release(cookie, false)
		}
	}
}

func (a *Aggregator) count(seg *Segment, c *conn) {
	ep := endpoints{role: seg.Role(), local: seg.Local, remote: seg.Remote}
	for i := range seg.ADUs {
		adu := &seg.ADUs[i]
		k := groupKey{cookie: seg.Cookie, protocol: seg.Protocol, class: modbus.ClassOf(*adu), code: adu.Code()}
		g := a.groups[k]
		if g == nil {
			if len(a.groups) >= maxGroups {
				a.gfull.Add(1)
				continue
			}
			g = &group{conn: c, seg: ep}
			a.groups[k] = g
		}
		if seg.Request && k.class.Urgent() && !g.urgentSent {
			g.urgentSent = true
			u := &group{conn: c, seg: ep}
			u.note(seg, adu)
			ev := a.build(k, u)
			ev.ICS.Urgent = true
			if adu.NValues > 0 {
				ev.ICS.Values = append([]uint16(nil), adu.Values[:adu.NValues]...)
			}
			a.send(ev)
			a.urgent.Add(1)
			continue
		}
		g.note(seg, adu)
	}
}

// note counts one message in g.
func (g *group) note(seg *Segment, adu *modbus.ADU) {
	if g.first == 0 {
		g.first, g.firstT = seg.BootNS, seg.Time
	}
	g.last, g.lastT = seg.BootNS, seg.Time
	if !g.unitSet {
		g.unit, g.unitSet = adu.Unit, true
	}
	if !seg.Request {
		if adu.IsException() {
			g.exception(adu.Exception)
		} else {
			g.responses++
		}
		return
	}
	g.count++
	if adu.Flags&modbus.HasAddress != 0 {
		n := uint32(1)
		if adu.Flags&modbus.HasCount != 0 {
			n = uint32(adu.Count)
		}
		g.addRange(adu.Address, n)
	}
}

func (g *group) exception(code uint8) {
	for i := range g.exceptions {
		if g.exceptions[i].Code == code {
			g.exceptions[i].Count++
			return
		}
	}
	g.exceptions = append(g.exceptions, event.ICSException{Code: code, Name: modbus.ExceptionName(code), Count: 1})
}

// addRange merges [addr, addr+n) into the ranges: an identical, adjacent
// or overlapping range grows, else a new one is kept while there is room.
func (g *group) addRange(addr uint16, n uint32) {
	lo, hi := uint32(addr), uint32(addr)+n
	for i := range g.ranges {
		r := &g.ranges[i]
		rlo, rhi := uint32(r.Address), uint32(r.Address)+r.Count
		if lo <= rhi && rlo <= hi {
			nlo, nhi := min(lo, rlo), max(hi, rhi)
			r.Address, r.Count = uint16(nlo), nhi-nlo
			return
		}
	}
	if len(g.ranges) >= maxRanges {
		g.truncated = true
		return
	}
	g.ranges = append(g.ranges, event.ICSRange{Address: addr, Count: n})
}

// conn returns the connection's process: the kernel's record, else a
// cached lookup; false when a lookup found nothing yet.
func (a *Aggregator) conn(seg *Segment) (*conn, bool) {
	c := a.conns[seg.Cookie]
	if c != nil && (c.owner == OwnerKernel || !seg.Owned) {
		return c, true
	}
	if seg.Owned {
		if c == nil {
			c = a.newConn(seg.Cookie)
		}
		// In place: groups of the connection counted before hold it too.
		c.proc, c.owner = seg.Process, OwnerKernel
		fillFromProc(a.deps.ProcRoot, &c.proc)
		return c, true
	}
	if c = a.lookup(seg, false); c == nil {
		return nil, false
	}
	return c, true
}

// lookup asks Owners for the process holding seg's connection; when it
// finds none it returns nil, or with final a connection marked unknown.
func (a *Aggregator) lookup(seg *Segment, final bool) *conn {
	a.lookups.Add(1)
	p, err := a.deps.Owners.Owner(seg.Local, seg.Remote)
	if err != nil && !final {
		return nil
	}
	c := a.newConn(seg.Cookie)
	if err != nil {
		c.owner = OwnerUnknown
		a.unknown.Add(1)
		return c
	}
	c.proc, c.owner = p, OwnerLookup
	return c
}

func (a *Aggregator) newConn(cookie uint64) *conn {
	if len(a.conns) >= maxConns {
		clear(a.conns)
	}
	c := &conn{}
	a.conns[cookie] = c
	return c
}

// Flush sends the interval's summaries and starts a new interval.
func (a *Aggregator) Flush() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for cookie := range a.pending {
		a.release(cookie, false)
	}
	keys := make([]groupKey, 0, len(a.groups))
	for k, g := range a.groups {
		if g.count > 0 || g.responses > 0 || len(g.exceptions) > 0 { // answers to an urgent operation too
			keys = append(keys, k)
		}
	}
	// A stable order: by first message.
	slices.SortFunc(keys, func(x, y groupKey) int { return cmp.Compare(a.groups[x].first, a.groups[y].first) })
	for _, k := range keys {
		a.send(a.build(k, a.groups[k]))
	}
	clear(a.groups)
}

func (a *Aggregator) build(k groupKey, g *group) *event.Event {
	now, boot := a.deps.Clock()
	dir := "outbound"
	if g.seg.role == "server" {
		dir = "inbound"
	}
	family := "inet"
	if g.seg.local.Addr().Is6() {
		family = "inet6"
	}
	ev := &event.Event{
		Kind:    event.KindICSOp,
		Time:    now,
		BootNS:  boot,
		Process: g.conn.proc,
		Net: &event.Net{Family: family, Protocol: "tcp",
			SrcAddr: g.seg.local.Addr().String(), SrcPort: g.seg.local.Port(),
			DstAddr: g.seg.remote.Addr().String(), DstPort: g.seg.remote.Port(), Direction: dir},
		Industrial: &event.Industrial{Protocol: k.protocol},
		ICS: &event.ICS{
			Protocol: k.protocol, Role: g.seg.role, Class: k.class.String(),
			Function: modbus.FunctionName(k.code), Code: k.code, Unit: g.unit,
			Count: g.count, Responses: g.responses,
			FirstNS: g.first, LastNS: g.last, First: g.firstT, Last: g.lastT,
			Ranges: g.ranges, RangesTruncated: g.truncated, Exceptions: g.exceptions,
			Connection: k.cookie, Owner: g.conn.owner,
		},
	}
	return ev
}

// send never blocks: a full queue counts the event as lost.
func (a *Aggregator) send(ev *event.Event) {
	select {
	case a.out <- ev:
		a.events.Add(1)
	default:
		a.full.Add(1)
	}
}
