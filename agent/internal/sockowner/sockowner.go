// Package sockowner finds the processes that hold sockets: from the
// /proc/<pid>/fd links, and for one TCP connection through sock_diag.
package sockowner

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Walk calls fn for every socket fd of every process, in /proc
// order, until fn returns false.
func Walk(procRoot string, fn func(pid, ino uint32) bool) {
	dirs, err := os.ReadDir(procRoot)
	if err != nil {
		return
	}
	for _, d := range dirs {
		pid, err := strconv.ParseUint(d.Name(), 10, 32)
		if err != nil {
			continue
		}
		fdDir := filepath.Join(procRoot, d.Name(), "fd")
		fds, err := os.ReadDir(fdDir)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			target, err := os.Readlink(filepath.Join(fdDir, fd.Name()))
			if err != nil || !strings.HasPrefix(target, "socket:[") {
				continue
			}
			ino, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(target, "socket:["), "]"), 10, 32)
			if err != nil {
				continue
			}
			if !fn(uint32(pid), uint32(ino)) {
				return
			}
		}
	}
}

// ErrNoOwner: no process holds the connection (it closed, or it belongs
// to another network namespace).
var ErrNoOwner = errors.New("no process holds the connection")

// TCPOwner finds the process holding the TCP connection from local to
// remote: the socket's inode from sock_diag (both families: an IPv4
// connection of an IPv6 socket is v4-mapped there), or from procRoot's
// net/tcp and net/tcp6 where sock_diag is missing (inet_diag is a module
// many kernels do not load), then the lowest pid with an fd on it under
// procRoot. It reads every TCP socket and, at worst, every process's fds:
// callers cache the answer.
func TCPOwner(procRoot string, local, remote netip.AddrPort) (uint32, error) {
	ino, err := diagInode(local, remote)
	if err != nil || ino == 0 {
		ino = procInode(procRoot, local, remote)
	}
	if ino == 0 {
		return 0, ErrNoOwner
	}
	var owner uint32
	Walk(procRoot, func(pid, i uint32) bool {
		if i == ino && (owner == 0 || pid < owner) {
			owner = pid
		}
		return true
	})
	if owner == 0 {
		return 0, ErrNoOwner
	}
	return owner, nil
}

// diagInode is the connection's socket inode from sock_diag, 0 if none.
func diagInode(local, remote netip.AddrPort) (uint32, error) {
	for _, fam := range []uint8{unix.AF_INET, unix.AF_INET6} {
		list, err := netlink.SocketDiagTCP(fam)
		if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
			return 0, fmt.Errorf("sock_diag tcp family %d: %w", fam, err)
		}
		for _, s := range list {
			if s.INode != 0 && s.ID.SourcePort == local.Port() && s.ID.DestinationPort == remote.Port() &&
				addrOf(s.ID.Source) == local.Addr().Unmap() && addrOf(s.ID.Destination) == remote.Addr().Unmap() {
				return s.INode, nil
			}
		}
	}
	return 0, nil
}

// procInode is the connection's socket inode from procRoot/net/tcp and
// tcp6, 0 if none.
func procInode(procRoot string, local, remote netip.AddrPort) uint32 {
	for _, f := range []string{"tcp", "tcp6"} {
		b, err := os.ReadFile(filepath.Join(procRoot, "net", f))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			fl := strings.Fields(line)
			if len(fl) < 10 {
				continue
			}
			l, okl := procAddr(fl[1])
			r, okr := procAddr(fl[2])
			if !okl || !okr || l != netip.AddrPortFrom(local.Addr().Unmap(), local.Port()) ||
				r != netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port()) {
				continue
			}
			if ino, err := strconv.ParseUint(fl[9], 10, 32); err == nil && ino != 0 {
				return uint32(ino)
			}
		}
	}
	return 0
}

// procAddr reads an address of /proc/net/tcp{,6}: hex 32-bit words in
// host (little-endian) order, a colon, the port in hex.
func procAddr(s string) (netip.AddrPort, bool) {
	a, p, ok := strings.Cut(s, ":")
	port, err := strconv.ParseUint(p, 16, 16)
	if !ok || err != nil || (len(a) != 8 && len(a) != 32) {
		return netip.AddrPort{}, false
	}
	var b [16]byte
	for w := 0; w < len(a)/8; w++ {
		v, err := strconv.ParseUint(a[8*w:8*w+8], 16, 32)
		if err != nil {
			return netip.AddrPort{}, false
		}
		binary.LittleEndian.PutUint32(b[4*w:], uint32(v))
	}
	if len(a) == 8 {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[:4])), uint16(port)), true
	}
	return netip.AddrPortFrom(netip.AddrFrom16(b).Unmap(), uint16(port)), true
}

// addrOf is ip as a netip.Addr, IPv4-mapped IPv6 as IPv4.
func addrOf(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap()
}
