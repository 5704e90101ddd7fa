// Package netctx gives events their network context from netlink
// (github.com/vishvananda/netlink): the host's interfaces and addresses,
// each labelled with the zone the configuration gives it, a start-up
// inventory of every listening and established TCP and UDP socket with its
// owning process (sock_diag), and events when an interface or an address
// appears, changes or goes away (rtnetlink multicast groups).
//
// The kernel sensor sees sockets from the moment it attaches; the
// inventory covers what was there before (a Modbus server started at
// boot), and the interface events cover what the socket events cannot: a
// USB modem or a second NIC that bridges a cell network to the outside.
package netctx

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/watchpost/watchpost/agent/event"
	"github.com/watchpost/watchpost/agent/kernel"
	"github.com/watchpost/watchpost/agent/proctable"
)

// Config tunes the network context.
type Config struct {
	// Inventory lists the sockets present at start as net_inventory events.
	Inventory bool
	// WatchInterfaces reports interfaces and addresses at start and as they
	// change (net_interface, net_address).
	WatchInterfaces bool
	// Zones label interfaces and addresses.
	Zones []Zone
	// QueueLen bounds the events waiting for the pipeline; interface
	// events beyond it are dropped and counted.
	QueueLen int
	// ProcRoot is the host's proc file system (socket owners).
	ProcRoot string
	// NetNS is the network namespace watched (a path such as
	// /proc/1/ns/net); empty: the agent's own.
	NetNS string
	// SelfPID is the agent's pid, given to the events the agent makes.
	SelfPID uint32
	// Resubscribe is the pause before a failed netlink subscription is
	// made again (default 1s).
	Resubscribe time.Duration
}

// DefaultConfig is the documented default.
func DefaultConfig() Config {
	return Config{Inventory: true, WatchInterfaces: true, QueueLen: 4096, ProcRoot: "/proc", Resubscribe: time.Second}
}

// Validate names the bad key (under network.).
func (c Config) Validate() error {
	if _, err := CompileZones("network.zones", c.Zones); err != nil {
		return err
	}
	if c.QueueLen < 16 {
		return fmt.Errorf("network.queue_len: %d is below 16", c.QueueLen)
	}
	if c.Resubscribe < 0 {
		return fmt.Errorf("network.resubscribe: %s is negative", c.Resubscribe)
	}
	return nil
}

// Processes resolves a pid to its process (the process table).
type Processes interface {
	Lookup(pid uint32) (proctable.Entry, bool)
}

// Deps are the monitor's collaborators.
type Deps struct {
	Logger    zerolog.Logger
	Processes Processes // nil: only the pid is set on inventory events
}

// Interface is what the monitor knows of one interface.
type Interface struct {
	Index int
	Name  string
	Zone  string
}

// Counter reasons reported in health (kind "netctx").
const (
	ReasonNetlinkError = "netlink_error" // a subscription failed or reported an error
	ReasonResubscribed = "resubscribed"  // a subscription was made again
	ReasonQueueFull    = "queue_full"    // an interface event found the queue full
	ReasonInterrupted  = "dump_interrupted"
	ReasonUnowned      = "socket_unowned" // an inventoried socket no process holds (or a hidden one)
	ReasonInventoried  = "socket_inventoried"
)

// Monitor keeps the interface table and emits the network-context events.
type Monitor struct {
	cfg   Config
	zones *Zones
	log   zerolog.Logger
	procs Processes

	events chan *event.Event

	mu     sync.RWMutex
	links  map[int]*link
	byAddr map[netip.Addr]int

	netlinkErrors, resubscribed, queueFull, interrupted, unowned, inventoried atomic.Uint64

	handle *netlink.Handle
	ns     *netns.NsHandle
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

type link struct {
	index     int
	name      string
	typ       string
	mac       string
	mtu       int
	up        bool
	operState string
	zone      string
	addrs     []netip.Prefix
}

// New checks cfg; nothing runs until Start.
func New(cfg Config, deps Deps) (*Monitor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	zones, _ := CompileZones("network.zones", cfg.Zones)
	if cfg.ProcRoot == "" {
		cfg.ProcRoot = "/proc"
	}
	if cfg.Resubscribe == 0 {
		cfg.Resubscribe = time.Second
	}
	return &Monitor{
		cfg: cfg, zones: zones, log: deps.Logger.With().Str("component", "netctx").Logger(), procs: deps.Processes,
		events: make(chan *event.Event, cfg.QueueLen), links: map[int]*link{}, byAddr: map[netip.Addr]int{},
	}, nil
}

// Events are the monitor's events for the pipeline.
func (m *Monitor) Events() <-chan *event.Event { return m.events }

// Start reads the interfaces and addresses, subscribes to their changes
// and lists the sockets. The events are queued for the pipeline; the
// inventory waits for room rather than dropping.
func (m *Monitor) Start(ctx context.Context) error {
	if m.cfg.NetNS != "" {
		ns, err := netns.GetFromPath(m.cfg.NetNS)
		if err != nil {
			return fmt.Errorf("network.netns: %w", err)
		}
		m.ns = &ns
		if m.handle, err = netlink.NewHandleAt(ns, unix.NETLINK_ROUTE); err != nil {
			return fmt.Errorf("netlink in %s: %w", m.cfg.NetNS, err)
		}
	} else {
		// Only the routing family is opened up front: a kernel without
		// XFRM or socket diagnostics still gives interfaces and addresses.
		h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			return fmt.Errorf("netlink: %w", err)
		}
		m.handle = h
	}
	ctx, m.cancel = context.WithCancel(ctx)
	var initial []*event.Event
	if m.cfg.WatchInterfaces {
		// Subscribed before the snapshot so that no change falls between;
		// updates already in the snapshot make no event.
		sub, err := m.subscribe()
		if err != nil {
			m.cancel()
			return err
		}
		if initial, err = m.resync("present"); err != nil {
			sub.close()
			m.cancel()
			return err
		}
		m.wg.Add(1)
		go m.watch(ctx, sub)
	} else if _, err := m.resync(""); err != nil {
		// Zones and lookups still need the table, read once.
		m.cancel()
		return err
	}
	var inv []*event.Event
	if m.cfg.Inventory {
		var err error
		if inv, err = m.inventory(); err != nil {
			// Socket diagnostics can be absent (inet_diag not built or
			// not loaded): the rest of the network context still runs.
			m.log.Warn().Err(err).Msg("socket inventory unavailable; listening and established sockets at start are not reported")
			inv = nil
		}
		m.log.Info().Int("sockets", len(inv)).Uint64("unowned", m.unowned.Load()).Msg("socket inventory taken")
	}
	m.log.Info().Int("interfaces", len(initial)).Bool("zones", !m.zones.Empty()).Msg("network context running")
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		for _, ev := range append(initial, inv...) {
			select {
			case m.events <- ev:
			case <-ctx.Done():
				return
			}
		}
	}()
	return nil
}

// Shutdown stops the subscriptions; safe without Start and more than once.
func (m *Monitor) Shutdown(context.Context) error {
	m.once.Do(func() {
		if m.cancel != nil {
			m.cancel()
		}
		m.wg.Wait()
		if m.handle != nil {
			m.handle.Close()
		}
		if m.ns != nil {
			_ = m.ns.Close()
		}
	})
	return nil
}

// Counters are the monitor's counters for health events (kind "netctx").
func (m *Monitor) Counters() []event.Counter {
	var out []event.Counter
	for _, c := range []struct {
		reason string
		n      uint64
	}{
		{ReasonInventoried, m.inventoried.Load()}, {ReasonUnowned, m.unowned.Load()},
		{ReasonNetlinkError, m.netlinkErrors.Load()}, {ReasonResubscribed, m.resubscribed.Load()},
		{ReasonQueueFull, m.queueFull.Load()}, {ReasonInterrupted, m.interrupted.Load()},
	} {
		if c.n > 0 {
			out = append(out, event.Counter{Kind: "netctx", Reason: c.reason, Count: c.n})
		}
	}
	return out
}

// Dropped is the number of events lost (queue full).
func (m *Monitor) Dropped() uint64 { return m.queueFull.Load() }

// LookupIndex returns the interface with this index.
func (m *Monitor) LookupIndex(index int) (Interface, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	l, ok := m.links[index]
	if !ok {
		return Interface{}, false
	}
	return Interface{Index: l.index, Name: l.name, Zone: l.zone}, true
}

// Lookup returns the interface holding the local address a; for an
// address of no interface, Index is 0 and Zone is the address's zone by
// network (if any).
func (m *Monitor) Lookup(a netip.Addr) (Interface, bool) {
	a = a.Unmap()
	m.mu.RLock()
	defer m.mu.RUnlock()
	if i, ok := m.byAddr[a]; ok {
		if l := m.links[i]; l != nil {
			return Interface{Index: l.index, Name: l.name, Zone: m.addrZoneLocked(a, l)}, true
		}
	}
	if z := m.zones.ByAddr(a); z != "" {
		return Interface{Zone: z}, true
	}
	return Interface{}, false
}

// Zone is the zone of address a: of the most specific configured network
// holding it, else of the interface that holds it.
func (m *Monitor) Zone(a netip.Addr) string {
	i, _ := m.Lookup(a)
	return i.Zone
}

func (m *Monitor) addrZoneLocked(a netip.Addr, l *link) string {
	if z := m.zones.ByAddr(a); z != "" {
		return z
	}
	if l != nil {
		return l.zone
	}
	return ""
}

// Enrich sets the interface and zones of a network event in place.
func (m *Monitor) Enrich(ev *event.Event) {
	n := ev.Net
	if n == nil || n.Family != "inet" && n.Family != "inet6" {
		return
	}
	if a, err := netip.ParseAddr(n.SrcAddr); err == nil && !a.IsUnspecified() {
		if i, ok := m.Lookup(a); ok {
			n.Interface, n.Zone = i.Name, i.Zone
		}
	}
	if a, err := netip.ParseAddr(n.DstAddr); err == nil && !a.IsUnspecified() {
		n.PeerZone = m.Zone(a)
	}
}

// subscription is one pair of rtnetlink subscriptions; closing done ends
// both, and the library closes each channel when its reader stops.
type subscription struct {
	links chan netlink.LinkUpdate
	addrs chan netlink.AddrUpdate
	done  chan struct{}
}

// close ends the subscription and drains what is left, so the library's
// readers never block on a full channel.
func (s *subscription) close() {
	close(s.done)
	for range s.links {
	}
	for range s.addrs {
	}
}

func (m *Monitor) subscribe() (*subscription, error) {
	s := &subscription{
		links: make(chan netlink.LinkUpdate, 256), addrs: make(chan netlink.AddrUpdate, 256), done: make(chan struct{}),
	}
	onErr := func(error) { m.netlinkErrors.Add(1) }
	if err := netlink.LinkSubscribeWithOptions(s.links, s.done, netlink.LinkSubscribeOptions{ErrorCallback: onErr, Namespace: m.ns}); err != nil {
		close(s.done)
		return nil, fmt.Errorf("subscribing to link changes: %w", err)
	}
	if err := netlink.AddrSubscribeWithOptions(s.addrs, s.done, netlink.AddrSubscribeOptions{ErrorCallback: onErr, Namespace: m.ns}); err != nil {
		close(s.done)
		for range s.links {
		}
		return nil, fmt.Errorf("subscribing to address changes: %w", err)
	}
	return s, nil
}

// watch applies updates until ctx ends. When a subscription fails (the
// socket's buffer overran, the kernel reported an error) it is made again
// and the table re-read, so a missed change still makes its event.
func (m *Monitor) watch(ctx context.Context, s *subscription) {
	defer m.wg.Done()
	for {
		if !m.follow(ctx, s) {
			s.close()
			return
		}
		s.close()
		m.netlinkErrors.Add(1)
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(m.cfg.Resubscribe):
			}
			var err error
			if s, err = m.subscribe(); err != nil {
				m.netlinkErrors.Add(1)
				continue
			}
			m.resubscribed.Add(1)
			evs, err := m.resync("")
			if err != nil {
				m.netlinkErrors.Add(1)
			}
			for _, ev := range evs {
				m.queue(ev)
			}
			break
		}
	}
}

// follow applies the updates of s; false when ctx ended, true when the
// subscription broke.
func (m *Monitor) follow(ctx context.Context, s *subscription) bool {
	for {
		select {
		case <-ctx.Done():
			return false
		case u, ok := <-s.links:
			if !ok {
				return true
			}
			if ev := m.onLink(u); ev != nil {
				m.queue(ev)
			}
		case u, ok := <-s.addrs:
			if !ok {
				return true
			}
			if ev := m.onAddr(u); ev != nil {
				m.queue(ev)
			}
		}
	}
}

// queue hands an interface event to the pipeline without blocking.
func (m *Monitor) queue(ev *event.Event) {
	select {
	case m.events <- ev:
	default:
		m.queueFull.Add(1)
	}
}

func linkOf(l netlink.Link) *link {
	a := l.Attrs()
	out := &link{
		index: a.Index, name: a.Name, typ: l.Type(), mtu: a.MTU, up: a.Flags&net.FlagUp != 0,
		operState: a.OperState.String(),
	}
	if len(a.HardwareAddr) > 0 {
		out.mac = a.HardwareAddr.String()
	}
	return out
}

// onLink applies a link update; it returns the event to emit, if any.
func (m *Monitor) onLink(u netlink.LinkUpdate) *event.Event {
	if u.Link == nil || u.Link.Attrs() == nil {
		return nil
	}
	nl := linkOf(u.Link)
	m.mu.Lock()
	defer m.mu.Unlock()
	old := m.links[nl.index]
	if u.Header.Type == unix.RTM_DELLINK {
		if old == nil {
			return nil
		}
		m.removeLinkLocked(old)
		return m.linkEvent(event.KindNetInterface, "removed", old, nil, "")
	}
	if old == nil {
		nl.zone = m.zones.Interface(nl.name, nil)
		m.links[nl.index] = nl
		return m.linkEvent(event.KindNetInterface, "added", nl, nil, "")
	}
	changed := diffLink(old, nl)
	if len(changed) == 0 {
		return nil
	}
	prev := old.name
	old.name, old.typ, old.mac, old.mtu, old.up, old.operState = nl.name, nl.typ, nl.mac, nl.mtu, nl.up, nl.operState
	old.zone = m.zones.Interface(old.name, old.addrs)
	if prev == old.name {
		prev = ""
	}
	return m.linkEvent(event.KindNetInterface, "changed", old, changed, prev)
}

func diffLink(a, b *link) []string {
	var out []string
	if a.name != b.name {
		out = append(out, "name")
	}
	if a.up != b.up {
		out = append(out, "up")
	}
	if a.operState != b.operState {
		out = append(out, "oper_state")
	}
	if a.mac != b.mac {
		out = append(out, "mac")
	}
	if a.mtu != b.mtu {
		out = append(out, "mtu")
	}
	return out
}

func (m *Monitor) removeLinkLocked(l *link) {
	for _, p := range l.addrs {
		if m.byAddr[p.Addr()] == l.index {
			delete(m.byAddr, p.Addr())
		}
	}
	delete(m.links, l.index)
}

func prefixOf(n net.IPNet) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones), true
}

// onAddr applies an address update; it returns the event to emit, if any.
func (m *Monitor) onAddr(u netlink.AddrUpdate) *event.Event {
	p, ok := prefixOf(u.LinkAddress)
	if !ok {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	l := m.links[u.LinkIndex]
	if l == nil && !u.NewAddr {
		return nil
	}
	if l == nil {
		// An address of a link not seen yet (the link's own update is on
		// the other socket): keep a placeholder the link update completes.
		l = &link{index: u.LinkIndex}
		if ll, err := m.handle.LinkByIndex(u.LinkIndex); err == nil {
			l = linkOf(ll)
		}
		l.zone = m.zones.Interface(l.name, nil)
		m.links[l.index] = l
	}
	i := slices.Index(l.addrs, p)
	switch {
	case u.NewAddr && i < 0:
		l.addrs = append(l.addrs, p)
		m.byAddr[p.Addr()] = l.index
	case !u.NewAddr && i >= 0:
		l.addrs = slices.Delete(l.addrs, i, i+1)
		if m.byAddr[p.Addr()] == l.index {
			delete(m.byAddr, p.Addr())
		}
	default:
		return nil // already known (from the snapshot), or never known
	}
	l.zone = m.zones.Interface(l.name, l.addrs)
	action := "added"
	if !u.NewAddr {
		action = "removed"
	}
	return m.linkEvent(event.KindNetAddress, action, l, nil, "", p)
}

// resync reads every link and address and makes the table match. With
// action "present" every interface makes an event (the start); with ""
// only differences do (after a broken subscription).
func (m *Monitor) resync(action string) ([]*event.Event, error) {
	ls, err := m.handle.LinkList()
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return nil, fmt.Errorf("listing interfaces: %w", err)
	} else if err != nil {
		m.interrupted.Add(1)
	}
	as, err := m.handle.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return nil, fmt.Errorf("listing addresses: %w", err)
	} else if err != nil {
		m.interrupted.Add(1)
	}
	fresh := make(map[int]*link, len(ls))
	for _, l := range ls {
		if l.Attrs() == nil {
			continue
		}
		nl := linkOf(l)
		fresh[nl.index] = nl
	}
	for _, a := range as {
		p, ok := prefixOf(*a.IPNet)
		if l := fresh[a.LinkIndex]; ok && l != nil && !slices.Contains(l.addrs, p) {
			l.addrs = append(l.addrs, p)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*event.Event
	idx := make([]int, 0, len(fresh))
	for i := range fresh {
		idx = append(idx, i)
	}
	sort.Ints(idx)
	for _, i := range idx {
		nl := fresh[i]
		nl.zone = m.zones.Interface(nl.name, nl.addrs)
		old := m.links[i]
		switch {
		case action != "":
			out = append(out, m.linkEvent(event.KindNetInterface, action, nl, nil, ""))
		case old == nil:
			out = append(out, m.linkEvent(event.KindNetInterface, "added", nl, nil, ""))
		default:
			if ch := diffLink(old, nl); len(ch) > 0 {
				prev := ""
				if old.name != nl.name {
					prev = old.name
				}
				out = append(out, m.linkEvent(event.KindNetInterface, "changed", nl, ch, prev))
			}
			for _, p := range nl.addrs {
				if !slices.Contains(old.addrs, p) {
					out = append(out, m.linkEvent(event.KindNetAddress, "added", nl, nil, "", p))
				}
			}
			for _, p := range old.addrs {
				if !slices.Contains(nl.addrs, p) {
					out = append(out, m.linkEvent(event.KindNetAddress, "removed", nl, nil, "", p))
				}
			}
		}
	}
	if action == "" {
		for i, old := range m.links {
			if fresh[i] == nil {
				out = append(out, m.linkEvent(event.KindNetInterface, "removed", old, nil, ""))
			}
		}
	}
	m.links = fresh
	m.byAddr = make(map[netip.Addr]int, len(as))
	for _, l := range fresh {
		for _, p := range l.addrs {
			m.byAddr[p.Addr()] = l.index
		}
	}
	return out, nil
}

// linkEvent makes an interface event from l (called with mu held); addr,
// when given, is the address a net_address event is about.
func (m *Monitor) linkEvent(k event.Kind, action string, l *link, changed []string, prev string, addr ...netip.Prefix) *event.Event {
	ni := &event.NetInterface{
		Action: action, Index: uint32(l.index), Name: l.name, Type: l.typ, MAC: l.mac, MTU: uint32(l.mtu),
		Up: l.up, OperState: l.operState, Zone: l.zone, Changed: changed, PreviousName: prev,
	}
	for _, p := range l.addrs {
		ni.Addresses = append(ni.Addresses, p.String())
	}
	if len(addr) > 0 {
		ni.Address = addr[0].String()
		ni.AddressZone = m.addrZoneLocked(addr[0].Addr(), l)
	}
	ev := m.agentEvent(k)
	ev.Interface = ni
	return ev
}

// agentEvent is an event the agent makes about the host (interfaces):
// the process is the agent.
func (m *Monitor) agentEvent(k event.Kind) *event.Event {
	ev := &event.Event{Kind: k, Time: time.Now().UTC(), BootNS: kernel.BootNow()}
	ev.Process = event.Process{PID: m.cfg.SelfPID, Comm: "watchpost-agent", LoginUID: event.AUIDUnset}
	return ev
}
