package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/watchpost/watchpost/collector/collectortest"
	"github.com/watchpost/watchpost/collector/store"
	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

// TestICSOpEventsCLI stores an agent's ics_op event and finds it with
// `watchpost events --type ics_op`, summarised on one line.
func TestICSOpEventsCLI(t *testing.T) {
	c, _ := collectortest.Loopback(t, nil, nil)
	now := time.Now()
	ev := watchpostv1.Event{
		Header:  &watchpostv1.Header{Type: watchpostv1.EventType_EVENT_TYPE_ICS_OP, TimeUnixNano: now.UnixNano(), Seq: 1, Host: "gw1"},
		Process: &watchpostv1.Process{Pid: 42, Comm: "hmi", Exe: "/usr/bin/hmi"},
		Detail: &watchpostv1.Event_Ics{Ics: &watchpostv1.Ics{Protocol: "modbus", Role: "client", Class: "write",
			Function: "write_single_register", Code: 6, Unit: 1, Count: 1, Ranges: []*watchpostv1.IcsRange{{Address: 7, Count: 1}},
			Values: []uint32{4660}, Urgent: true, Owner: "kernel", Family: "inet", SrcAddr: "10.0.0.2", SrcPort: 40000,
			DstAddr: "10.0.0.9", DstPort: 502, Direction: "outbound"}},
	}
	other := &watchpostv1.Event{Header: &watchpostv1.Header{Type: watchpostv1.EventType_EVENT_TYPE_EXEC, TimeUnixNano: now.UnixNano(), Seq: 2, Host: "gw1"},
		Process: &watchpostv1.Process{Pid: 7, Comm: "sh"}, Detail: &watchpostv1.Event_Exec{Exec: &watchpostv1.Exec{}}}
	var raws [][]byte
	for _, e := range []*watchpostv1.Event{&ev, other} {
		raw, err := proto.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		raws = append(raws, raw)
	}
	if _, err := c.Store().StoreBatches(context.Background(), []store.BatchInput{{
		Key: store.BatchKey{AgentID: "gw1", BootID: "b", RunID: "r", BatchSeq: 1}, Events: []*watchpostv1.Event{&ev, other}, Raw: raws,
	}}); err != nil {
		t.Fatal(err)
	}
	out, err := cli(t, "events", "--server="+c.QueryAddr(), "--type", "ics_op")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 2 || !strings.Contains(lines[1], "ics_op") ||
		!strings.Contains(lines[1], "modbus client write write_single_register x1 unit 1 10.0.0.2:40000 -> 10.0.0.9:502 @7+1 values [4660] urgent") {
		t.Fatalf("events --type ics_op:\n%s", out)
	}
}
