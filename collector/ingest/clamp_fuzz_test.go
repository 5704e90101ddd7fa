package ingest_test

import (
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"google.golang.org/protobuf/proto"

	"github.com/watchpost/watchpost/agent/event"
	"github.com/watchpost/watchpost/agent/shipper"
	"github.com/watchpost/watchpost/collector/ingest"
	"github.com/watchpost/watchpost/proto/limits"
	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

// fuzzEvent builds an event of any kind with every string and list taken
// from the fuzz input, blown up by the repeat counts to far beyond every
// limit when the fuzzer wants.
func fuzzEvent(kind uint8, s string, rep uint16, n uint16) *event.Event {
	kinds := event.Kinds()
	k := kinds[int(kind)%len(kinds)]
	big := strings.Repeat(s, int(rep)%2048)
	list := func() []string {
		out := make([]string, int(n)%3000)
		for i := range out {
			if i%7 == 0 {
				out[i] = big
			} else {
				out[i] = s
			}
		}
		return out
	}
	ev := &event.Event{Kind: k, Time: time.Now(), Host: big, Seq: uint64(rep),
		Process: event.Process{PID: 1, Comm: big, Exe: "/" + big, Args: list(), Cwd: big, TTY: big, Container: big,
			ContainerRuntime: big, ContainerImage: big, ContainerName: big, PodName: big, PodNamespace: big}}
	for i := 0; i < int(n)%40; i++ {
		ev.Ancestry = append(ev.Ancestry, event.Ancestor{PID: uint32(i), Comm: big, Exe: big, Args: list()})
	}
	if n%3 == 0 {
		ev.Industrial = &event.Industrial{Protocol: big, Fieldbus: big, Device: big}
	}
	counters := func() []event.Counter {
		out := make([]event.Counter, int(n)%600)
		for i := range out {
			out[i] = event.Counter{Kind: big, Reason: s, Count: uint64(i)}
		}
		return out
	}
	switch {
	case k == event.KindExec:
		ev.Exec = &event.Exec{ExeDev: big}
	case k == event.KindClone:
		ev.Clone = &event.Clone{ChildPID: 2}
	case k == event.KindExit:
		ev.Exit = &event.Exit{}
	case k >= event.KindFileOpen && k <= event.KindFileSymlink:
		ev.File = &event.File{Path: big + "/" + s, NewPath: "/a/" + big, Dev: big, RDev: s, DevKind: big, Syscall: big}
	case k >= event.KindNetConnect && k <= event.KindNetSocket:
		ev.Net = &event.Net{Family: big, Protocol: big, SockType: s, SrcAddr: big, DstAddr: big, Direction: big, Syscall: big}
	case k == event.KindNamespace:
		inodes := map[string]uint32{}
		for i, v := range list() {
			inodes[v[:min(len(v), 300)]+strings.Repeat("n", i%5)] = uint32(i)
		}
		ev.Namespace = &event.Namespace{Operation: big, Namespaces: list(), Inodes: inodes}
	case k == event.KindNetConnectResult:
		ev.Net = &event.Net{Family: big, Protocol: big, SrcAddr: big, DstAddr: big}
	case k >= event.KindModuleLoad && k <= event.KindMemfdCreate:
		ev.Security = &event.Security{Operation: big, TargetComm: big, Name: big, Path: big, FSType: big, Params: big}
	case k == event.KindHealth || k == event.KindAgentStart || k == event.KindAgentStop:
		ev.Health = &event.Health{Version: big, Kernel: big, CapturePath: big, Programs: list(), Counters: counters(),
			Detection: &event.Detection{Errors: list(), Suppressed: map[string]uint64{big: 1, s: 2, big + "x": 3}}}
	case k == event.KindGap:
		ev.Gap = &event.Gap{Reason: big, Counters: counters()}
	case k == event.KindAlert:
		ev.Alert = &event.Alert{RuleID: "r" + big, Title: big, Level: big, Source: big, Correlation: big, Cgroup: big,
			Techniques: list(), Tags: list()}
		for i := 0; i < int(n)%100; i++ {
			ev.Alert.Matches = append(ev.Alert.Matches, event.Match{Field: big, Value: big})
			ev.Alert.Events = append(ev.Alert.Events, event.EventRef{Seq: uint64(i), PID: uint32(i)})
		}
	case k == event.KindAgentTamper:
		ev.Tamper = &event.Tamper{What: big, File: big, Action: big, Error: big}
	}
	return ev
}

// FuzzAgentClampAccepted: whatever event the agent produces, once clamped
// by the agent (event.Clamp) the collector accepts it as it is: nothing
// refused, nothing shortened again, the stored event equal to the one
// sent, and within the collector's event size bound.
func FuzzAgentClampAccepted(f *testing.F) {
	f.Add(uint8(0), "a", uint16(1), uint16(3))
	f.Add(uint8(3), "/very/long/path/component", uint16(400), uint16(1500))
	f.Add(uint8(30), "\xff\xfe invalid utf-8 \x00", uint16(2000), uint16(2999))
	f.Add(uint8(29), "ü€😀", uint16(1999), uint16(599))
	d, err := ingest.NewDecoder(ingest.Limits{MaxUncompressedBytes: 64 << 20, MaxEvents: 10})
	if err != nil {
		f.Fatal(err)
	}
	defer d.Close()
	b, err := shipper.NewBatchBuilder(zstd.SpeedFastest)
	if err != nil {
		f.Fatal(err)
	}
	defer b.Close()
	f.Fuzz(func(t *testing.T, kind uint8, s string, rep, n uint16) {
		ev := fuzzEvent(kind, s, rep, n)
		ev.Clamp()
		var sent watchpostv1.Event
		shipper.ToProto(ev, &sent)
		sent.Header.Host = "gw" // the pipeline sets the configured host; its length is the config's
		if size := proto.Size(&sent); size > limits.EventBytes {
			t.Fatalf("clamped %s event is %d bytes, over the collector's %d", ev.Kind, size, limits.EventBytes)
		}
		if err := b.Add(&sent); err != nil {
			t.Fatalf("clamped %s event does not serialize: %v", ev.Kind, err)
		}
		dec, err := d.Decode(b.Seal("gw", "boot", "run", 1), time.Now())
		if err != nil {
			t.Fatalf("batch of a clamped %s event refused: %v", ev.Kind, err)
		}
		if dec.Refused != 0 || dec.Truncated != 0 || len(dec.Reasons) != 0 || len(dec.Events) != 1 {
			t.Fatalf("clamped %s event: %d refused, %d truncated, reasons %v (%s)", ev.Kind, dec.Refused, dec.Truncated, dec.Reasons, dec.First)
		}
		if !proto.Equal(dec.Events[0], &sent) {
			t.Fatalf("clamped %s event stored changed", ev.Kind)
		}
	})
}
