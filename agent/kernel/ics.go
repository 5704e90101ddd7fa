package kernel

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/watchpost/watchpost/agent/event"
	"github.com/watchpost/watchpost/agent/industrial/inspect"
	"github.com/watchpost/watchpost/agent/industrial/modbus"
)

// The inspection programs (bpf/ics.h) and their cgroup attach types.
var inspectPrograms = []struct {
	name   string
	attach ebpf.AttachType
}{
	{"wp_ics_ingress", ebpf.AttachCGroupInetIngress},
	{"wp_ics_egress", ebpf.AttachCGroupInetEgress},
}

func isInspectProgram(name string) bool { return strings.HasPrefix(name, "wp_ics_") }

// Protocols the kernel parses, by name (enum wp_ics_proto).
var inspectProtocols = map[string]uint8{"modbus": uint8(wpWpIcsProtoWP_ICS_MODBUS)}

var inspectProtocolNames = map[uint8]string{uint8(wpWpIcsProtoWP_ICS_MODBUS): "modbus"}

// InspectProtocols lists the protocols the kernel can inspect.
func InspectProtocols() []string { return []string{"modbus"} }

// MaxInspectPorts bounds the inspected ports (enum wp_ics_limit).
const MaxInspectPorts = int(wpWpIcsLimitWP_ICS_PORTS)

// Inspector attaches the industrial inspection programs at a cgroup v2
// directory (the root covers every process of the host) and hands their
// segments to a bounded queue. Its programs share the sensor's maps and
// ring buffer.
type Inspector struct {
	s      *Sensor
	cgroup string

	mu    sync.Mutex
	progs []*ebpf.Program
	links []link.Link
}

// NewInspector loads and attaches the inspection programs at cgroup and
// inspects ports (port: protocol name). It fails, attaching nothing, when
// this kernel refuses the programs or the cgroup hooks.
func (s *Sensor) NewInspector(cgroup string, ports map[uint16]string) (*Inspector, error) {
	if s.spec == nil {
		return nil, errors.New("the sensor was not loaded from its object")
	}
	in := &Inspector{s: s, cgroup: cgroup}
	if err := in.SetPorts(ports); err != nil {
		return nil, err
	}
	for _, p := range inspectPrograms {
		prog, err := s.loadProgram(p.name)
		if err != nil {
			in.Close()
			return nil, fmt.Errorf("inspection: %w", err)
		}
		in.progs = append(in.progs, prog)
		// A bpf_link beside the cgroup's other programs; the program
		// returns 1 always, so every packet passes as before.
		l, err := link.AttachCgroup(link.CgroupOptions{Path: cgroup, Attach: p.attach, Program: prog})
		if err != nil {
			in.Close()
			return nil, fmt.Errorf("inspection: attaching %s at %s: %w", p.name, cgroup, err)
		}
		in.links = append(in.links, l)
	}
	s.inspecting.Store(true)
	return in, nil
}

// SetPorts replaces the inspected ports.
func (in *Inspector) SetPorts(ports map[uint16]string) error {
	if len(ports) > MaxInspectPorts {
		return fmt.Errorf("inspection: %d ports, at most %d", len(ports), MaxInspectPorts)
	}
	m := in.s.coll.Maps["wp_ics_ports"]
	for port, name := range ports {
		proto, ok := inspectProtocols[name]
		if !ok {
			return fmt.Errorf("inspection: port %d: the kernel has no parser for %q", port, name)
		}
		if err := m.Put(port, proto); err != nil {
			return fmt.Errorf("inspection: writing port %d: %w", port, err)
		}
	}
	var key uint16
	var stale []uint16
	it := m.Iterate()
	var v uint8
	for it.Next(&key, &v) {
		if _, ok := ports[key]; !ok {
			stale = append(stale, key)
		}
	}
	for _, k := range stale {
		if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("inspection: removing port %d: %w", k, err)
		}
	}
	return it.Err()
}

// Segments is the queue of inspected segments (Sensor.Run fills it).
func (in *Inspector) Segments() <-chan *inspect.Segment { return in.s.segments }

// Attached reports whether both programs are attached.
func (in *Inspector) Attached() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return len(in.links) == len(inspectPrograms)
}

// Stats sums the per-CPU counters.
func (in *Inspector) Stats() (inspect.KernelStats, error) {
	st := inspect.KernelStats{Malformed: map[string]uint64{}, QueueFull: in.s.segmentsFull.Load()}
	m := in.s.coll.Maps["wp_ics_stats"]
	var perCPU []uint64
	for i := range uint32(wpWpIcsStatWP_ICS_STAT_MAX) {
		sum, err := perCPUSum(m, i, &perCPU)
		if err != nil {
			return st, fmt.Errorf("reading inspection counter %d: %w", i, err)
		}
		switch s := wpWpIcsStat(i); s {
		case wpWpIcsStatWP_ICS_STAT_SEGMENTS:
			st.Segments = sum
		case wpWpIcsStatWP_ICS_STAT_MESSAGES:
			st.Messages = sum
		case wpWpIcsStatWP_ICS_STAT_UNPARSED:
			st.Unparsed = sum
		case wpWpIcsStatWP_ICS_STAT_NO_OWNER:
			st.NoOwner = sum
		case wpWpIcsStatWP_ICS_STAT_RETRANSMITTED:
			st.Retransmitted = sum
		default:
			// The malformed reasons, in modbus.Malformed's order.
			st.Malformed[modbus.Malformed(s-wpWpIcsStatWP_ICS_STAT_TRUNCATED+1).String()] = sum
		}
	}
	return st, nil
}

// Close detaches the programs (the cgroup is left as it was) and unloads
// them. It is idempotent.
func (in *Inspector) Close() error {
	in.mu.Lock()
	defer in.mu.Unlock()
	var err error
	for _, l := range in.links {
		err = errors.Join(err, l.Close())
	}
	for _, p := range in.progs {
		err = errors.Join(err, p.Close())
	}
	in.links, in.progs = nil, nil
	in.s.inspecting.Store(false)
	return err
}

var (
	icsFixedSize = int(unsafe.Offsetof(wpWpIcsEvent{}.Adus))
	icsADUSize   = int(unsafe.Sizeof(wpWpIcsAdu{}))
)

// decodeSegment turns a WP_EV_ICS_OP record into a Segment.
func (d *decoder) decodeSegment(raw []byte) (*inspect.Segment, error) {
	if len(raw) < icsFixedSize {
		return nil, fmt.Errorf("inspection record of %d bytes: %w", len(raw), errShort)
	}
	var e wpWpIcsEvent
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&e)), unsafe.Sizeof(e)), raw)
	n := int(e.Nadus)
	if n > len(e.Adus) || icsFixedSize+n*icsADUSize > len(raw) {
		return nil, fmt.Errorf("inspection record: %d messages in %d bytes: %w", n, len(raw), errShort)
	}
	seg := &inspect.Segment{
		BootNS:    e.Hdr.TsBootNs,
		Time:      d.clock.wall(e.Hdr.TsBootNs),
		Owned:     e.Flags&uint8(wpWpIcsFlagsWP_ICS_F_OWNER) != 0,
		Cookie:    e.Cookie,
		Protocol:  inspectProtocolNames[e.Proto],
		Inbound:   e.Flags&uint8(wpWpIcsFlagsWP_ICS_F_INGRESS) != 0,
		Request:   e.Flags&uint8(wpWpIcsFlagsWP_ICS_F_REQUEST) != 0,
		Local:     netip.AddrPortFrom(netip.AddrFrom16(e.Laddr).Unmap(), e.Lport),
		Remote:    netip.AddrPortFrom(netip.AddrFrom16(e.Raddr).Unmap(), e.Rport),
		Bytes:     e.SegLen,
		More:      e.Flags&uint8(wpWpIcsFlagsWP_ICS_F_MORE) != 0,
		Malformed: modbus.Malformed(e.Malformed),
		ADUs:      make([]modbus.ADU, n),
	}
	if seg.Owned {
		var ev event.Event
		d.header(&ev, &e.Hdr)
		seg.Process = ev.Process
	}
	for i := range n {
		a := &e.Adus[i]
		seg.ADUs[i] = modbus.ADU{
			Transaction: a.Transaction, Length: a.Length, Unit: a.Unit, Function: a.Function,
			Exception: a.Exception, Flags: a.Flags, Address: a.Address, Count: a.Count, Sub: a.Sub,
			NValues: a.Nvalues, Values: a.Values,
		}
	}
	return seg, nil
}
