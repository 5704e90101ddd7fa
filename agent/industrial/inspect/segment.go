// Package inspect folds the industrial application messages the kernel
// reads on the host's own sockets (bpf/ics.h) into ics_op events: one per
// connection, protocol, operation class and function per interval, with
// the first write, program or control operation of an interval reported
// at once. It names the process behind each connection from the kernel's
// record, or, when the kernel had none, from sock_diag and /proc.
package inspect

import (
	"net/netip"
	"time"

	"github.com/watchpost/watchpost/agent/event"
	"github.com/watchpost/watchpost/agent/industrial/modbus"
)

// Segment is the messages of one TCP segment as the kernel sent them
// (agent/kernel decodes them; nothing else sees the kernel's record).
type Segment struct {
	BootNS uint64    // when the packet passed the hook
	Time   time.Time // the same on the wall clock
	// Process is the socket's owner when Owned (the process that connected
	// or accepted it); else only unknown.
	Process event.Process
	Owned   bool
	Cookie  uint64 // the socket cookie: the connection's identity
	// Protocol is the inspected protocol ("modbus").
	Protocol string
	// Inbound: the socket received the segment. Request: it went to the
	// inspected port (client to server).
	Inbound, Request bool
	// Local is the socket's own address and port, Remote the peer's.
	Local, Remote netip.AddrPort
	Bytes         uint32 // TCP payload
	// More: the segment held more messages than the kernel parses.
	More bool
	// Malformed is why the bytes after the last message did not frame.
	Malformed modbus.Malformed
	ADUs      []modbus.ADU
}

// Role is the socket's side of the connection: a socket sends requests as
// a client and receives them as a server.
func (s *Segment) Role() string {
	if s.Inbound == s.Request {
		return "server"
	}
	return "client"
}
