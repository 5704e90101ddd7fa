package netctx

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/watchpost/watchpost/agent/event"
	"github.com/watchpost/watchpost/agent/internal/sockowner"
)

// TCP states as sock_diag reports them (include/net/tcp_states.h).
const (
	tcpEstablished = 1
	tcpClose       = 7 // an unconnected UDP socket
	tcpListen      = 10
)

// socket is one inventoried socket before it becomes an event.
type socket struct {
	proto string // tcp, udp
	s     *netlink.Socket
}

// inventory lists the listening and established TCP and UDP sockets of
// both families and their owners. The sockets are read first, the owners
// after: a socket closed in between has no owner and is counted.
func (m *Monitor) inventory() ([]*event.Event, error) {
	var socks []socket
	for _, fam := range []uint8{unix.AF_INET, unix.AF_INET6} {
		for _, proto := range []string{"tcp", "udp"} {
			var list []*netlink.Socket
			var err error
			if proto == "tcp" {
				list, err = m.handle.SocketDiagTCP(fam)
			} else {
				list, err = m.handle.SocketDiagUDP(fam)
			}
			if errors.Is(err, netlink.ErrDumpInterrupted) {
				m.interrupted.Add(1)
			} else if err != nil {
				return nil, fmt.Errorf("sock_diag %s family %d: %w", proto, fam, err)
			}
			for _, s := range list {
				if s.INode == 0 {
					continue // time-wait and orphaned sockets belong to no process
				}
				switch {
				case proto == "tcp" && (s.State == tcpListen || s.State == tcpEstablished):
				case proto == "udp" && (s.State == tcpClose || s.State == tcpEstablished):
				default:
					continue
				}
				socks = append(socks, socket{proto, s})
			}
		}
	}
	owners := socketOwners(m.cfg.ProcRoot)
	// A local port something listens on makes an established socket on it inbound.
	listening := map[string]bool{}
	for _, s := range socks {
		if s.s.State != tcpEstablished {
			listening[s.proto+"/"+strconv.Itoa(int(s.s.ID.SourcePort))] = true
		}
	}
	out := make([]*event.Event, 0, len(socks))
	for _, s := range socks {
		out = append(out, m.socketEvent(s, owners, listening))
	}
	m.inventoried.Add(uint64(len(out)))
	return out, nil
}

func (m *Monitor) socketEvent(s socket, owners map[uint32]uint32, listening map[string]bool) *event.Event {
	id := s.s.ID
	n := &event.Net{Protocol: s.proto, SockType: "stream", SrcPort: id.SourcePort, DstPort: id.DestinationPort}
	if s.proto == "udp" {
		n.SockType = "dgram"
	}
	src, dst := ipAddr(id.Source), ipAddr(id.Destination)
	n.Family = "inet"
	if s.s.Family == unix.AF_INET6 && !(src.Is4In6() || dst.Is4In6()) {
		n.Family = "inet6"
	}
	n.SrcAddr = src.Unmap().String()
	if s.s.State == tcpEstablished {
		n.State = "established"
		n.DstAddr = dst.Unmap().String()
		n.Direction = "outbound"
		if listening[s.proto+"/"+strconv.Itoa(int(id.SourcePort))] {
			n.Direction = "inbound"
		}
	} else {
		n.State = "listen"
		n.DstPort = 0
	}
	ev := m.agentEvent(event.KindNetInventory)
	ev.Net = n
	ev.Process = event.Process{UID: s.s.UID, EUID: s.s.UID, LoginUID: event.AUIDUnset}
	if pid, ok := owners[s.s.INode]; ok {
		m.fillProcess(&ev.Process, pid)
	} else {
		m.unowned.Add(1)
	}
	if id.Interface != 0 {
		// Bound to a device (SO_BINDTODEVICE, or a link-local scope).
		if i, ok := m.LookupIndex(int(id.Interface)); ok {
			n.Interface, n.Zone = i.Name, i.Zone
		}
	}
	return ev
}

func ipAddr(ip net.IP) netip.Addr {
	if ip4 := ip.To4(); ip4 != nil && len(ip) == net.IPv4len {
		return netip.AddrFrom4([4]byte(ip4))
	}
	a, _ := netip.AddrFromSlice(ip)
	return a
}

// fillProcess sets the process of pid from the process table, or its pid alone.
func (m *Monitor) fillProcess(p *event.Process, pid uint32) {
	p.PID = pid
	if m.procs == nil {
		return
	}
	e, ok := m.procs.Lookup(pid)
	if !ok {
		return
	}
	*p = event.Process{
		PID: e.PID, PPID: e.PPID, UID: e.UID, GID: e.GID, EUID: e.EUID, EGID: e.EGID,
		LoginUID: e.LoginUID, SessionID: e.SessionID, Comm: e.Comm, Exe: e.Exe, Args: e.Args, Cwd: e.Cwd,
		StartBootNS: e.StartBootNS,
	}
}

// socketOwners maps socket inodes to the lowest pid holding them (the
// parent of forked servers sharing a listening socket), from the
// /proc/<pid>/fd links. Processes that exit while it reads are skipped.
func socketOwners(procRoot string) map[uint32]uint32 {
	owners := map[uint32]uint32{}
	sockowner.Walk(procRoot, func(pid, ino uint32) bool {
		if old, ok := owners[ino]; !ok || pid < old {
			owners[ino] = pid
		}
		return true
	})
	return owners
}
