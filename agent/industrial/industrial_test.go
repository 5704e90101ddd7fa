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
