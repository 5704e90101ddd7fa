package netctx

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"go.uber.org/goleak"

	"github.com/watchpost/watchpost/agent/event"
	"github.com/watchpost/watchpost/agent/industrial"
	"github.com/watchpost/watchpost/agent/internal/privtest"
	"github.com/watchpost/watchpost/agent/proctable"
)

func TestMain(m *testing.M) {
	privtest.HelperMain()
	goleak.VerifyTestMain(m)
}

// next returns the first event from m that ok accepts, within d.
func next(t *testing.T, m *Monitor, d time.Duration, what string, ok func(*event.Event) bool) *event.Event {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case ev := <-m.Events():
			m.Enrich(ev) // as the pipeline does
			if ok(ev) {
				return ev
			}
		case <-deadline:
			t.Fatalf("no %s within %s", what, d)
			return nil
		}
	}
}

// TestInventoryFindsServerStartedBefore starts a TCP server and connects
// to it, then starts the monitor: the listening socket, and both ends of
// the connection, are in the start-up inventory with their processes.
func TestInventoryFindsServerStartedBefore(t *testing.T) {
	privtest.Require(t)
	self := privtest.Self(t)
	srv, port := privtest.Listener(t)
	conn, err := net.Dial("tcp4", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	clientPort := uint16(conn.LocalAddr().(*net.TCPAddr).Port)

	table, err := proctable.New(proctable.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	if err := table.Seed(); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.WatchInterfaces = false
	cfg.Zones = []Zone{{Name: "host-local", Interfaces: []string{"lo"}}}
	m, err := New(cfg, Deps{Logger: zerolog.Nop(), Processes: table})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer m.Shutdown(context.Background())

	tags, err := industrial.New([]industrial.Protocol{{Name: "modbus", Transport: "tcp", Ports: strconv.Itoa(port)}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var listen, accepted, client *event.Event
	for listen == nil || accepted == nil || client == nil {
		ev := next(t, m, 5*time.Second, "inventory of the server's sockets", func(ev *event.Event) bool {
			return ev.Kind == event.KindNetInventory && ev.Net.Protocol == "tcp" &&
				(ev.Net.SrcPort == uint16(port) || ev.Net.SrcPort == clientPort && ev.Net.DstPort == uint16(port))
		})
		switch {
		case ev.Net.State == "listen":
			listen = ev
		case ev.Net.SrcPort == uint16(port):
			accepted = ev
		default:
			client = ev
		}
	}
	want := func(ev *event.Event, role string, pid int, exe string, n event.Net) {
		t.Helper()
		if ev.Process.PID != uint32(pid) || ev.Process.Exe != exe || ev.Process.PPID == 0 {
			t.Errorf("%s: process %d %q (ppid %d), want %d %q", role, ev.Process.PID, ev.Process.Exe, ev.Process.PPID, pid, exe)
		}
		if *ev.Net != n {
			t.Errorf("%s: net\n got %+v\nwant %+v", role, *ev.Net, n)
		}
	}
	lo := func(n event.Net) event.Net {
		n.Family, n.Protocol, n.SockType, n.SrcAddr, n.Interface, n.Zone = "inet", "tcp", "stream", "127.0.0.1", "lo", "host-local"
		return n
	}
	want(listen, "listening socket", srv.Process.Pid, self, lo(event.Net{SrcPort: uint16(port), State: "listen"}))
	want(accepted, "accepted socket", srv.Process.Pid, self, lo(event.Net{
		SrcPort: uint16(port), DstAddr: "127.0.0.1", DstPort: clientPort, State: "established", Direction: "inbound", PeerZone: "host-local",
	}))
	want(client, "client socket", os.Getpid(), self, lo(event.Net{
		SrcPort: clientPort, DstAddr: "127.0.0.1", DstPort: uint16(port), State: "established", Direction: "outbound", PeerZone: "host-local",
	}))
	tags.Apply(listen)
	if listen.Industrial == nil || listen.Industrial.Protocol != "modbus" {
		t.Errorf("listening socket tagged %+v, want modbus", listen.Industrial)
	}
	if c := m.Counters(); len(c) == 0 || c[0].Reason != ReasonInventoried || c[0].Count < 3 {
		t.Errorf("counters %+v", c)
	}
}

// testNetns makes a network namespace that lives as long as the test (its
// interfaces go with it), and returns its handle and a path to it.
func testNetns(t *testing.T) (netns.NsHandle, string) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	ns, err := netns.New()
	if err != nil {
		t.Fatalf("creating a network namespace: %v", err)
	}
	if err := netns.Set(orig); err != nil {
		t.Fatalf("returning to the original network namespace: %v", err)
	}
	t.Cleanup(func() { _ = ns.Close() })
	return ns, fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), int(ns))
}

// TestInterfaceAndAddressEvents watches a network namespace the test
// makes: an interface added there appears with its zone, an address
// on it appears and goes with the zone of its network, and the interface's
// removal is reported.
func TestInterfaceAndAddressEvents(t *testing.T) {
	privtest.Require(t)
	ns, path := testNetns(t)
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()

	cfg := DefaultConfig()
	cfg.Inventory = false
	cfg.NetNS = path
	cfg.Zones = []Zone{
		{Name: "cell-test", Interfaces: []string{"wpmodem*"}},
		{Name: "lab-net", Networks: []string{"10.251.7.0/24"}},
	}
	m, err := New(cfg, Deps{Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer m.Shutdown(context.Background())
	// A new namespace holds only lo.
	present := next(t, m, 2*time.Second, "present lo", func(ev *event.Event) bool { return ev.Kind == event.KindNetInterface })
	if n := present.Interface; n.Action != "present" || n.Name != "lo" || n.Zone != "" {
		t.Errorf("present: %+v", n)
	}

	// A veth pair (dummy links are a module, absent on some kernels);
	// only the end named like the zone's glob is in the zone.
	dummy := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "wpmodem0", MTU: 1400}, PeerName: "wppeer0"}
	if err := h.LinkAdd(dummy); err != nil {
		t.Fatalf("adding a veth pair: %v", err)
	}
	t.Cleanup(func() { _ = h.LinkDel(dummy) })
	added := next(t, m, 2*time.Second, "wpmodem0 added", func(ev *event.Event) bool {
		return ev.Kind == event.KindNetInterface && ev.Interface.Name == "wpmodem0"
	})
	n := added.Interface
	if n.Action != "added" || n.Type != "veth" || n.Zone != "cell-test" || n.MTU != 1400 || n.Up || n.Index == 0 || n.MAC == "" {
		t.Errorf("added: %+v", n)
	}
	if added.Process.Comm != "watchpost-agent" {
		t.Errorf("added: process %+v", added.Process)
	}

	addr, _ := netlink.ParseAddr("10.251.7.1/24")
	if err := h.AddrAdd(dummy, addr); err != nil {
		t.Fatalf("adding an address: %v", err)
	}
	up := next(t, m, 2*time.Second, "10.251.7.1 added", func(ev *event.Event) bool { return ev.Kind == event.KindNetAddress })
	if n := up.Interface; n.Action != "added" || n.Address != "10.251.7.1/24" || n.AddressZone != "lab-net" ||
		n.Zone != "cell-test" || n.Name != "wpmodem0" || len(n.Addresses) != 1 || n.Addresses[0] != "10.251.7.1/24" {
		t.Errorf("address added: %+v", n)
	}
	if i, ok := m.Lookup(netip.MustParseAddr("10.251.7.1")); !ok || i.Name != "wpmodem0" || i.Zone != "lab-net" || i.Index != int(n.Index) {
		t.Errorf("Lookup(10.251.7.1) = %+v, %v", i, ok)
	}
	if i, ok := m.LookupIndex(int(n.Index)); !ok || i.Name != "wpmodem0" || i.Zone != "cell-test" {
		t.Errorf("LookupIndex(%d) = %+v, %v", n.Index, i, ok)
	}
	if err := h.AddrDel(dummy, addr); err != nil {
		t.Fatal(err)
	}
	gone := next(t, m, 2*time.Second, "10.251.7.1 removed", func(ev *event.Event) bool { return ev.Kind == event.KindNetAddress })
	if n := gone.Interface; n.Action != "removed" || n.Address != "10.251.7.1/24" || n.AddressZone != "lab-net" || len(n.Addresses) != 0 {
		t.Errorf("address removed: %+v", n)
	}
	if i, _ := m.Lookup(netip.MustParseAddr("10.251.7.1")); i.Index != 0 || i.Name != "" || i.Zone != "lab-net" {
		t.Errorf("a removed address resolves to %+v, want no interface and the zone of its network", i)
	}

	if err := h.LinkSetUp(dummy); err != nil {
		t.Fatal(err)
	}
	changed := next(t, m, 2*time.Second, "wpmodem0 up", func(ev *event.Event) bool {
		return ev.Kind == event.KindNetInterface && ev.Interface.Action == "changed" && ev.Interface.Up && ev.Interface.Name == "wpmodem0"
	})
	if n := changed.Interface; n.Name != "wpmodem0" || n.Zone != "cell-test" || n.Changed[0] != "up" {
		t.Errorf("changed: %+v", n)
	}
	if err := h.LinkDel(dummy); err != nil {
		t.Fatal(err)
	}
	removed := next(t, m, 2*time.Second, "wpmodem0 removed", func(ev *event.Event) bool {
		return ev.Kind == event.KindNetInterface && ev.Interface.Action == "removed" && ev.Interface.Name == "wpmodem0"
	})
	if n := removed.Interface; n.Name != "wpmodem0" || n.Zone != "cell-test" {
		t.Errorf("removed: %+v", n)
	}
	if _, ok := m.LookupIndex(int(n.Index)); ok {
		t.Error("a removed interface still resolves")
	}
}
