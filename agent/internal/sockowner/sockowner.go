// Package sockowner finds the processes that hold sockets: from the
// /proc/<pid>/fd links, and for one TCP connection through sock_diag.
package sockowner

import (
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
// connection of an IPv6 socket is v4-mapped there), then the lowest pid
// with an fd on it under procRoot. It reads every TCP socket and, at
// worst, every process's fds: callers cache the answer.
func TCPOwner(procRoot string, local, remote netip.AddrPort) (uint32, error) {
	var ino uint32
	for _, fam := range []uint8{unix.AF_INET, unix.AF_INET6} {
		list, err := netlink.SocketDiagTCP(fam)
		if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
			return 0, fmt.Errorf("sock_diag tcp family %d: %w", fam, err)
		}
		for _, s := range list {
			if s.INode != 0 && s.ID.SourcePort == local.Port() && s.ID.DestinationPort == remote.Port() &&
				addrOf(s.ID.Source) == local.Addr().Unmap() && addrOf(s.ID.Destination) == remote.Addr().Unmap() {
				ino = s.INode
				break
			}
		}
		if ino != 0 {
			break
		}
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

// addrOf is ip as a netip.Addr, IPv4-mapped IPv6 as IPv4.
func addrOf(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap()
}
