package inspect

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/watchpost/watchpost/agent/event"
	"github.com/watchpost/watchpost/agent/industrial/modbus"
)

type fakeOwners map[netip.AddrPort]event.Process

func (f fakeOwners) Owner(local, _ netip.AddrPort) (event.Process, error) {
	if p, ok := f[local]; ok {
		return p, nil
	}
	return event.Process{}, errors.New("none")
}

var (
	client = netip.MustParseAddrPort("10.0.0.2:40000")
	plc    = netip.MustParseAddrPort("10.0.0.9:502")
)

func seg(ns uint64, request bool, adus ...modbus.ADU) *Segment {
	return &Segment{BootNS: ns, Time: time.Unix(0, int64(ns)), Owned: true, Cookie: 7, Protocol: "modbus",
		Process: event.Process{PID: 42, Comm: "hmi", Exe: "/usr/bin/hmi"},
		Inbound: !request, Request: request, Local: client, Remote: plc, ADUs: adus}
}

func newTest(owners Owners) (*Aggregator, *uint64) {
	now := new(uint64)
	return New(Config{Enabled: true, Interval: time.Minute}, Deps{Owners: owners, ProcRoot: "/nonexistent",
		Clock: func() (time.Time, uint64) { return time.Unix(0, int64(*now)), *now }}), now
}

func drain(a *Aggregator) []*event.Event {
	var out []*event.Event
	for {
		select {
		case ev := <-a.out:
			out = append(out, ev)
		default:
			return out
		}
	}
}

func read(tid, addr, n uint16) modbus.ADU {
	return modbus.ADU{Transaction: tid, Unit: 1, Function: 3, Flags: modbus.HasAddress | modbus.HasCount, Address: addr, Count: n}
}

func TestAggregateSummarisesReadsAndReportsWritesAtOnce(t *testing.T) {
	a, now := newTest(nil)
	a.Add(seg(100, true, read(1, 0, 10), read(2, 10, 5), read(3, 100, 2)))
	a.Add(seg(150, false, modbus.ADU{Unit: 1, Function: 3}, modbus.ADU{Unit: 1, Function: 0x83, Exception: 2}))
	*now = 210
	w := modbus.ADU{Unit: 1, Function: 6, Flags: modbus.HasAddress | modbus.HasValue, Address: 7, NValues: 1, Values: [8]uint16{9}}
	a.Add(seg(200, true, w))
	a.Add(seg(300, true, w))
	urgent := drain(a)
	if len(urgent) != 1 {
		t.Fatalf("%d events before the flush, want the first write", len(urgent))
	}
	u := urgent[0]
	want := &event.ICS{Protocol: "modbus", Role: "client", Class: "write", Function: "write_single_register", Code: 6, Unit: 1,
		Count: 1, FirstNS: 200, LastNS: 200, First: time.Unix(0, 200), Last: time.Unix(0, 200),
		Ranges: []event.ICSRange{{Address: 7, Count: 1}}, Values: []uint16{9}, Urgent: true, Connection: 7, Owner: OwnerKernel}
	if diff := cmp.Diff(want, u.ICS); diff != "" {
		t.Errorf("urgent (-want +got):\n%s", diff)
	}
	if u.BootNS != 210 || u.Process.PID != 42 || u.Net.DstPort != 502 || u.Net.Direction != "outbound" {
		t.Errorf("urgent event %+v %+v", u, u.Net)
	}
	a.Flush()
	evs := drain(a)
	if len(evs) != 2 {
		t.Fatalf("%d summaries, want reads and the later write", len(evs))
	}
	r := evs[0].ICS
	if r.Function != "read_holding_registers" || r.Count != 3 || r.Responses != 1 ||
		!cmp.Equal(r.Ranges, []event.ICSRange{{Address: 0, Count: 15}, {Address: 100, Count: 2}}) ||
		!cmp.Equal(r.Exceptions, []event.ICSException{{Code: 2, Name: "illegal_data_address", Count: 1}}) {
		t.Errorf("reads: %+v", r)
	}
	if w := evs[1].ICS; w.Function != "write_single_register" || w.Count != 1 || w.Urgent || w.Values != nil {
		t.Errorf("later write: %+v", w)
	}
	// A new interval reports its first write at once again.
	a.Add(seg(400, true, w))
	if evs := drain(a); len(evs) != 1 || !evs[0].ICS.Urgent {
		t.Errorf("next interval: %v", evs)
	}
}

func TestAggregateOwnerLookup(t *testing.T) {
	a, _ := newTest(fakeOwners{client: {PID: 9, Exe: "/opt/scada"}})
	s := seg(1, true, read(1, 0, 1))
	s.Owned, s.Process = false, event.Process{}
	a.Add(s)
	a.Add(s)
	other := seg(2, true, read(1, 0, 1))
	other.Owned, other.Process, other.Cookie, other.Local = false, event.Process{}, 8, netip.MustParseAddrPort("10.0.0.2:40001")
	a.Add(other)
	a.Flush()
	evs := drain(a)
	if len(evs) != 2 || evs[0].Process.PID != 9 || evs[0].ICS.Owner != OwnerLookup || evs[1].ICS.Owner != OwnerUnknown {
		t.Fatalf("events %+v", evs)
	}
	// One lookup for the found connection; the other was held, looked up
	// again when released, and is unknown.
	if c := a.Counters(); c.OwnerLookups != 3 || c.OwnerUnknown != 1 {
		t.Errorf("counters %+v", c)
	}
}

// TestAggregateHoldsUntilTheOwnerIsKnown: a server's first request
// arrives before accept() installs the socket: its segments wait, and the
// owner of a later segment (or a later lookup) names them.
func TestAggregateHoldsUntilTheOwnerIsKnown(t *testing.T) {
	owners := fakeOwners{}
	a, _ := newTest(owners)
	mono := time.Unix(1000, 0)
	a.deps.Mono = func() time.Time { return mono }
	w := modbus.ADU{Unit: 1, Function: 6, Flags: modbus.HasAddress | modbus.HasValue, Address: 7, NValues: 1, Values: [8]uint16{9}}
	first := seg(1, true, w)
	first.Owned, first.Process = false, event.Process{}
	a.Add(first)
	if evs := drain(a); len(evs) != 0 {
		t.Fatalf("held write sent: %v", evs)
	}
	a.Retry()                          // still nobody
	a.Add(seg(2, true, read(1, 0, 1))) // the kernel now knows the owner
	evs := drain(a)
	if len(evs) != 1 || !evs[0].ICS.Urgent || evs[0].Process.PID != 42 || evs[0].ICS.Owner != OwnerKernel {
		t.Fatalf("released: %+v", evs)
	}

	// Another connection: the lookup succeeds on a retry.
	second := seg(3, true, w)
	second.Owned, second.Process, second.Cookie = false, event.Process{}, 99
	a.Add(second)
	owners[client] = event.Process{PID: 77}
	a.Retry()
	if evs := drain(a); len(evs) != 1 || evs[0].Process.PID != 77 || evs[0].ICS.Owner != OwnerLookup {
		t.Fatalf("after the retry: %+v", evs)
	}
	// A third waits no longer than ownerWait.
	delete(owners, client)
	third := seg(4, true, w)
	third.Owned, third.Process, third.Cookie = false, event.Process{}, 100
	a.Add(third)
	mono = mono.Add(ownerWait + time.Millisecond)
	a.Retry()
	if evs := drain(a); len(evs) != 1 || evs[0].ICS.Owner != OwnerUnknown {
		t.Fatalf("past the wait: %+v", evs)
	}
}

func TestAggregateRangesBounded(t *testing.T) {
	a, _ := newTest(nil)
	for i := range maxRanges + 3 {
		a.Add(seg(uint64(i+1), true, read(uint16(i), uint16(i*100), 1)))
	}
	a.Flush()
	evs := drain(a)
	if len(evs) != 1 || len(evs[0].ICS.Ranges) != maxRanges || !evs[0].ICS.RangesTruncated || evs[0].ICS.Count != maxRanges+3 {
		t.Fatalf("%+v", evs[0].ICS)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	if p, _ := DefaultConfig().Ports(); !cmp.Equal(p, map[uint16]string{502: "modbus"}) {
		t.Errorf("default ports %v", p)
	}
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{Interval: time.Millisecond}, "industrial.inspect.interval: 1ms must be between 1s and 1h"},
		{Config{Interval: time.Second, Protocols: []Protocol{{Name: "s7comm", Ports: "102"}}}, `industrial.inspect.protocols[0].name: "s7comm" has no parser (parsers: modbus)`},
		{Config{Interval: time.Second, Protocols: []Protocol{{Name: "modbus", Ports: "x"}}}, `industrial.inspect.protocols[0].ports: "x" is not a port or range`},
		{Config{Interval: time.Second, Protocols: []Protocol{{Name: "modbus", Ports: "502"}, {Name: "modbus", Ports: "502"}}}, "industrial.inspect.protocols[1].ports: port 502 is already modbus's"},
		{Config{Interval: time.Second, Protocols: []Protocol{{Name: "modbus", Ports: "1000-1100"}}}, "industrial.inspect.protocols: 101 ports, at most 64"},
	} {
		if err := c.cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.cfg, err, c.want)
		}
	}
}
