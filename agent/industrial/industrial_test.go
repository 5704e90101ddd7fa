package industrial

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/watchpost/watchpost/agent/event"
)

func classifier(t *testing.T) *Classifier {
	t.Helper()
	c, err := New(DefaultProtocols(), DefaultSerial())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestPortsByTransport(t *testing.T) {
	c := classifier(t)
	cases := []struct {
		transport string
		port      uint16
		want      string
	}{
		{"tcp", 502, "modbus"}, {"udp", 502, ""}, {"tcp", 102, "s7comm"}, {"udp", 20000, "dnp3"}, {"tcp", 20000, "dnp3"},
		{"tcp", 2404, "iec104"}, {"tcp", 4840, "opcua"}, {"udp", 47815, "bacnet"}, {"tcp", 34963, "profinet"},
		{"udp", 1502, "tristation"}, {"tcp", 1502, ""}, {"tcp", 443, ""},
	}
	for _, c2 := range cases {
		if got := c.Protocol(c2.transport, c2.port); got != c2.want {
			t.Errorf("%s/%d: %q, want %q", c2.transport, c2.port, got, c2.want)
		}
	}
}

func TestServerSideIsTaggedByLocalPort(t *testing.T) {
	ev := &event.Event{Kind: event.KindNetAccept, Net: &event.Net{Protocol: "tcp", SrcPort: 4840, DstPort: 51234}}
	classifier(t).Apply(ev)
	if diff := cmp.Diff(&event.Industrial{Protocol: "opcua"}, ev.Industrial); diff != "" {
		t.Error(diff)
	}
}

func TestSerialClassesByMajorAndMinor(t *testing.T) {
	c := classifier(t)
	for rdev, want := range map[string]string{"4:64": "ttyS", "4:1": "", "188:3": "ttyUSB", "166:0": "ttyACM", "207:16": "ttymxc", "204:64": "ttyAMA", "1:3": ""} {
		ev := &event.Event{Kind: event.KindFileOpen, File: &event.File{Path: "/dev/x", RDev: rdev, DevKind: "char"}}
		c.Apply(ev)
		got := ""
		if ev.Industrial != nil {
			got = ev.Industrial.Fieldbus
		}
		if got != want {
			t.Errorf("%s: %q, want %q", rdev, got, want)
		}
	}
}

func TestBadTablesNameTheEntry(t *testing.T) {
	if _, err := New([]Protocol{{Name: "x", Transport: "sctp", Ports: "1"}}, nil); err == nil || err.Error() != `industrial.protocols[0].transport: "sctp" is not tcp, udp or both` {
		t.Errorf("got %v", err)
	}
	if _, err := New(nil, []Serial{{Name: "ttyX"}}); err == nil {
		t.Error("a serial class without a major was accepted")
	}
	if _, err := New([]Protocol{{Name: "x", Ports: "100-1"}}, nil); err == nil {
		t.Error("a reversed range was accepted")
	}
}

// TestTagsFollowTheServerSide: a flow is tagged by its server's port,
// never by a client's ephemeral port that falls in a protocol's range.
func TestTagsFollowTheServerSide(t *testing.T) {
	c := classifier(t)
	c.ephemeral = [2]uint16{32768, 60999}
	cases := []struct {
		name string
		kind event.Kind
		net  event.Net
		want string
	}{
		{"connect to a PLC", event.KindNetConnect, event.Net{Protocol: "tcp", SrcPort: 40000, DstPort: 502, Direction: "outbound"}, "modbus"},
		{"connect from a port in a protocol's range", event.KindNetConnect, event.Net{Protocol: "tcp", SrcPort: 34964, DstPort: 443, Direction: "outbound"}, ""},
		{"accept by a Modbus server", event.KindNetAccept, event.Net{Protocol: "tcp", SrcPort: 502, DstPort: 40000, Direction: "inbound"}, "modbus"},
		{"accept of a client whose port is in a range", event.KindNetAccept, event.Net{Protocol: "tcp", SrcPort: 8443, DstPort: 34964, Direction: "inbound"}, ""},
		{"close of an inbound OPC UA session", event.KindNetClose, event.Net{Protocol: "tcp", SrcPort: 4840, DstPort: 51000, Direction: "inbound"}, "opcua"},
		{"listen", event.KindNetListen, event.Net{Protocol: "tcp", SrcPort: 102}, "s7comm"},
		{"DNS from an ephemeral port in PROFINET's range", event.KindNetUDPFlow, event.Net{Protocol: "udp", SrcPort: 34964, DstPort: 53, Direction: "outbound"}, ""},
		{"its answer", event.KindNetUDPFlow, event.Net{Protocol: "udp", SrcPort: 34964, DstPort: 53, Direction: "inbound"}, ""},
		{"DNP3 over UDP to an outstation", event.KindNetUDPFlow, event.Net{Protocol: "udp", SrcPort: 45000, DstPort: 20000, Direction: "outbound"}, "dnp3"},
		{"the outstation's answer", event.KindNetUDPFlow, event.Net{Protocol: "udp", SrcPort: 45000, DstPort: 20000, Direction: "inbound"}, "dnp3"},
		{"a PROFINET device between ephemeral ports", event.KindNetUDPFlow, event.Net{Protocol: "udp", SrcPort: 34964, DstPort: 49152, Direction: "inbound"}, "profinet"},
		{"a BACnet device answering", event.KindNetUDPFlow, event.Net{Protocol: "udp", SrcPort: 47808, DstPort: 47808, Direction: "outbound"}, "bacnet"},
	}
	for _, tc := range cases {
		n := tc.net
		ev := &event.Event{Kind: tc.kind, Net: &n}
		c.Apply(ev)
		got := ""
		if ev.Industrial != nil {
			got = ev.Industrial.Protocol
		}
		if got != tc.want {
			t.Errorf("%s: tagged %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestOnlyPacketAndRawIPSocketsCanSniff: a netlink socket is raw too but
// sees no traffic.
func TestOnlyPacketAndRawIPSocketsCanSniff(t *testing.T) {
	c := classifier(t)
	for _, tc := range []struct {
		net  event.Net
		want bool
	}{
		{event.Net{Family: "packet", SockType: "raw"}, true},
		{event.Net{Family: "packet", SockType: "dgram"}, true},
		{event.Net{Family: "inet", SockType: "raw", Protocol: "icmp"}, true},
		{event.Net{Family: "inet6", SockType: "raw", Protocol: "tcp"}, true},
		{event.Net{Family: "netlink", SockType: "raw", Protocol: "netfilter"}, false},
		{event.Net{Family: "netlink", SockType: "dgram", Protocol: "generic"}, false},
	} {
		n := tc.net
		ev := &event.Event{Kind: event.KindNetSocket, Net: &n}
		c.Apply(ev)
		if got := ev.Industrial != nil && ev.Industrial.Sniffing; got != tc.want {
			t.Errorf("%+v: sniffing %v, want %v", tc.net, got, tc.want)
		}
	}
}
