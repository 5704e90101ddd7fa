package main

import (
	"testing"

	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

// TestDetailNamesErrorsAndBytes: the table's detail column names errnos
// (not -2), a close's byte counts, a watched read, a connect's outcome and
// a netlink socket's protocol.
func TestDetailNamesErrorsAndBytes(t *testing.T) {
	file := func(f *watchpostv1.File) *watchpostv1.Event {
		return &watchpostv1.Event{Detail: &watchpostv1.Event_File{File: f}}
	}
	netEv := func(n *watchpostv1.Net) *watchpostv1.Event {
		return &watchpostv1.Event{Detail: &watchpostv1.Event_Net{Net: n}}
	}
	for _, c := range []struct {
		ev   *watchpostv1.Event
		want string
	}{
		{file(&watchpostv1.File{Path: "/etc/plc.conf", Result: -13, Errno: "EACCES"}), "/etc/plc.conf failed: EACCES"},
		{file(&watchpostv1.File{Path: "/etc/plc.conf", Result: -13}), "/etc/plc.conf failed: -13"},
		{file(&watchpostv1.File{Path: "/etc/shadow", Result: 3, Watched: true}), "/etc/shadow (watched read)"},
		{netEv(&watchpostv1.Net{Protocol: "tcp", SrcAddr: "10.0.0.2", SrcPort: 40000, DstAddr: "10.0.0.5", DstPort: 502, BytesSent: 120, BytesRecv: 96}),
			"tcp 10.0.0.2:40000 -> 10.0.0.5:502 sent 120 recv 96"},
		{netEv(&watchpostv1.Net{Protocol: "tcp", SrcAddr: "10.0.0.2", SrcPort: 40000, DstAddr: "10.0.0.5", DstPort: 502, Result: -115, Errno: "EINPROGRESS"}),
			"tcp 10.0.0.2:40000 -> 10.0.0.5:502 (in progress)"},
		{netEv(&watchpostv1.Net{Protocol: "tcp", SrcAddr: "10.0.0.2", SrcPort: 40000, DstAddr: "10.0.0.5", DstPort: 502, Result: -111, Errno: "ECONNREFUSED", State: "refused"}),
			"tcp 10.0.0.2:40000 -> 10.0.0.5:502 refused"},
		{netEv(&watchpostv1.Net{Family: "netlink", SockType: "raw", Protocol: "audit", Result: 5}), "netlink audit socket"},
	} {
		if got := detail(c.ev); got != c.want {
			t.Errorf("detail %q, want %q", got, c.want)
		}
	}
}
