package netctx

import (
	"net/netip"
	"strings"
	"testing"
)

func TestZoneMatching(t *testing.T) {
	z, err := CompileZones("network.zones", []Zone{
		{Name: "cell-1", Interfaces: []string{"eth1", "br-cell*"}, Networks: []string{"10.10.1.0/24"}},
		{Name: "dmz", Networks: []string{"10.10.0.0/16", "fd00:dead::/32"}},
		{Name: "it", Interfaces: []string{"eth0", "wwan?"}, Networks: []string{"::ffff:192.168.0.0/112"}},
		{Name: "plc-7", Networks: []string{"10.10.1.7"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, want string }{
		{"eth1", "cell-1"}, {"br-cell3", "cell-1"}, {"eth0", "it"}, {"wwan0", "it"}, {"wwan10", ""}, {"lo", ""},
	} {
		if got := z.ByName(c.name); got != c.want {
			t.Errorf("ByName(%q) = %q, want %q", c.name, got, c.want)
		}
	}
	for _, c := range []struct{ addr, want string }{
		{"10.10.1.7", "plc-7"},      // a host route beats its /24
		{"10.10.1.8", "cell-1"},     // the /24 beats the /16
		{"10.10.9.1", "dmz"},        // only the /16 holds it
		{"::ffff:10.10.9.1", "dmz"}, // v4-mapped is IPv4
		{"192.168.3.4", "it"},       // a v4-mapped prefix is IPv4 too
		{"fd00:dead:1::5", "dmz"},
		{"172.16.0.1", ""},
	} {
		if got := z.ByAddr(netip.MustParseAddr(c.addr)); got != c.want {
			t.Errorf("ByAddr(%s) = %q, want %q", c.addr, got, c.want)
		}
	}
	// An interface: its name first, then the most specific of its addresses.
	for _, c := range []struct {
		name  string
		addrs []string
		want  string
	}{
		{"eth0", []string{"10.10.1.7/24"}, "it"},
		{"enp3s0", []string{"10.10.9.1/16"}, "dmz"},
		{"enp3s0", []string{"10.10.9.1/16", "10.10.1.5/24"}, "cell-1"},
		{"enp3s0", []string{"172.16.0.1/12"}, ""},
		{"enp3s0", nil, ""},
	} {
		var ps []netip.Prefix
		for _, a := range c.addrs {
			ps = append(ps, netip.MustParsePrefix(a))
		}
		if got := z.Interface(c.name, ps); got != c.want {
			t.Errorf("Interface(%s, %v) = %q, want %q", c.name, c.addrs, got, c.want)
		}
	}
	var none *Zones
	if !none.Empty() || none.ByName("eth0") != "" || none.ByAddr(netip.MustParseAddr("10.0.0.1")) != "" {
		t.Error("a nil zone table must match nothing")
	}
}

func TestZoneConfigErrorsNameTheKey(t *testing.T) {
	for _, c := range []struct {
		zones []Zone
		want  string
	}{
		{[]Zone{{Interfaces: []string{"eth0"}}}, "network.zones[0].name: empty"},
		{[]Zone{{Name: "cell 1", Interfaces: []string{"eth0"}}}, `network.zones[0].name: "cell 1": only letters`},
		{[]Zone{{Name: "a", Interfaces: []string{"eth0"}}, {Name: "a", Networks: []string{"10.0.0.0/8"}}}, `network.zones[1].name: "a" is already network.zones[0]`},
		{[]Zone{{Name: "a"}}, `network.zones[0]: zone "a" has neither interfaces nor networks`},
		{[]Zone{{Name: "a", Interfaces: []string{"eth["}}}, `network.zones[0].interfaces[0]: "eth[": syntax error in pattern`},
		{[]Zone{{Name: "a", Interfaces: []string{""}}}, `network.zones[0].interfaces[0]: "" is not an interface name or glob`},
		{[]Zone{{Name: "a", Networks: []string{"10.0.0.0/33"}}}, `network.zones[0].networks[0]: "10.0.0.0/33" is not a CIDR`},
		{[]Zone{{Name: "a", Networks: []string{"10.1.0.0/16"}}, {Name: "b", Networks: []string{"10.1.2.3/16"}}},
			`network.zones[1].networks[0]: 10.1.0.0/16 is already in zone "a"`},
	} {
		_, err := CompileZones("network.zones", c.zones)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want %q", c.zones, err, c.want)
		}
	}
	cfg := DefaultConfig()
	cfg.QueueLen = 3
	if err := cfg.Validate(); err == nil || !strings.HasPrefix(err.Error(), "network.queue_len:") {
		t.Errorf("queue_len 3: %v", err)
	}
}
