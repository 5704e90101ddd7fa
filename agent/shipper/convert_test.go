package shipper

import (
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/watchpost/watchpost/agent/event"
	"github.com/watchpost/watchpost/proto/eventtype"
	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

func TestToProtoMapsEveryField(t *testing.T) {
	ts := time.Unix(1_800_000_000, 123)
	base := event.Event{
		Kind: event.KindFileRename, Time: ts, BootNS: 77, Seq: 9, Host: "gw1", CPU: 1,
		Process: event.Process{PID: 10, TID: 11, PPID: 1, UID: 2, GID: 3, EUID: 4, EGID: 5, LoginUID: 1000, SessionID: 6,
			CgroupID: 7, Comm: "mv", Exe: "/usr/bin/mv", Args: []string{"mv", "a\xffb", "c"}, Cwd: "/tmp", TTY: "pts/0",
			StartBootNS: 8, Container: "abc"},
		Ancestry:   []event.Ancestor{{PID: 1, Comm: "systemd", Exe: "/sbin/init", Args: []string{"init"}, UID: 0}},
		File:       &event.File{Path: "/etc/a", NewPath: "/etc/b", PathTruncated: true, Flags: 1, Mode: 0o644, Write: true, Result: -2, Inode: 12, Dev: "8:1", RDev: "4:64", DevKind: "char", UID: 13, GID: 14},
		Industrial: &event.Industrial{Protocol: "modbus", Fieldbus: "ttyS", Device: "/dev/ttyS0", Sniffing: true},
	}
	want := &watchpostv1.Event{
		Header: &watchpostv1.Header{Type: watchpostv1.EventType_EVENT_TYPE_FILE_RENAME, TimeUnixNano: ts.UnixNano(), BootNs: 77, Seq: 9, Host: "gw1", Cpu: 1},
		Process: &watchpostv1.Process{Pid: 10, Tid: 11, Ppid: 1, Uid: 2, Gid: 3, Euid: 4, Egid: 5, Auid: proto.Uint32(1000), SessionId: 6,
			CgroupId: 7, Comm: "mv", Exe: "/usr/bin/mv", Args: []string{"mv", "a\uFFFDb", "c"}, Cwd: "/tmp", Tty: "pts/0",
			StartBootNs: 8, Container: "abc"},
		Ancestry:   []*watchpostv1.Ancestor{{Pid: 1, Comm: "systemd", Exe: "/sbin/init", Args: []string{"init"}}},
		Industrial: &watchpostv1.Industrial{Protocol: "modbus", Fieldbus: "ttyS", Device: "/dev/ttyS0", Sniffing: true},
		Detail: &watchpostv1.Event_File{File: &watchpostv1.File{Path: "/etc/a", NewPath: "/etc/b", PathTruncated: true, Flags: 1, Mode: 0o644,
			Write: true, Result: -2, Inode: 12, Dev: "8:1", Rdev: "4:64", DevKind: "char", OwnerUid: 13, OwnerGid: 14}},
	}
	var got watchpostv1.Event
	ToProto(&base, &got)
	if !proto.Equal(&got, want) {
		t.Fatalf("got %v\nwant %v", &got, want)
	}
	// The message is reused: a second, smaller event leaves nothing behind.
	ToProto(&event.Event{Kind: event.KindExit, Time: ts, Host: "gw1", Exit: &event.Exit{Code: 1, Signal: 9, CoreDumped: true, LifetimeNS: 5}}, &got)
	want = &watchpostv1.Event{
		Header:  &watchpostv1.Header{Type: watchpostv1.EventType_EVENT_TYPE_EXIT, TimeUnixNano: ts.UnixNano(), Host: "gw1"},
		Process: &watchpostv1.Process{Auid: proto.Uint32(0)}, // login uid 0 is root's, not unset
		Detail:  &watchpostv1.Event_Exit{Exit: &watchpostv1.Exit{Code: 1, Signal: 9, CoreDumped: true, LifetimeNs: 5}},
	}
	if !proto.Equal(&got, want) {
		t.Fatalf("reused: got %v\nwant %v", &got, want)
	}
}

// TestCredChangeIDsSurviveProto: uid 0 before and after, the requested
// ids and the errno name reach the collector; an unset login uid is
// absent, not 4294967295.
func TestCredChangeIDsSurviveProto(t *testing.T) {
	ev := &event.Event{Kind: event.KindCredChange, Process: event.Process{PID: 5, LoginUID: event.AUIDUnset},
		Security: &event.Security{Operation: "setresuid", OldID: event.ID(0), NewID: event.ID(0), Requested: []int64{0, -1, 0},
			Result: -1, Errno: "EPERM"}}
	var msg watchpostv1.Event
	ToProto(ev, &msg)
	wire, err := proto.Marshal(&msg)
	if err != nil {
		t.Fatal(err)
	}
	var got watchpostv1.Event
	if err := proto.Unmarshal(wire, &got); err != nil {
		t.Fatal(err)
	}
	s := got.GetSecurity()
	if s.OldId == nil || *s.OldId != 0 || s.NewId == nil || *s.NewId != 0 {
		t.Errorf("ids after the wire: old %v new %v, want both present and 0", s.OldId, s.NewId)
	}
	if !slices.Equal(s.GetRequested(), []int64{0, -1, 0}) || s.GetErrno() != "EPERM" || s.GetResult() != -1 {
		t.Errorf("requested %v errno %q result %d", s.GetRequested(), s.GetErrno(), s.GetResult())
	}
	if got.GetProcess().Auid != nil {
		t.Errorf("unset auid sent as %d", got.GetProcess().GetAuid())
	}
	js, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(&got)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"old_id":"0"`, `"new_id":"0"`, `"errno":"EPERM"`} {
		if !strings.Contains(strings.ReplaceAll(string(js), " ", ""), want) {
			t.Errorf("collector JSON %s lacks %s", js, want)
		}
	}
	if strings.Contains(string(js), "auid") {
		t.Errorf("collector JSON %s carries an unset auid", js)
	}
	// The agent's own JSON: the same fields, numbers as numbers.
	b, err := ev.AppendJSON(nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := `"old_id":0,"new_id":0,"requested":[0,-1,0],"result":-1,"errno":"EPERM"`; !strings.Contains(string(b), want) {
		t.Errorf("agent JSON %s lacks %s", b, want)
	}
}

func TestEventTypeValuesMatchKinds(t *testing.T) {
	// The collector knows event types only from the schema (proto/eventtype):
	// every agent kind must be there under the same name, and nothing else.
	kinds := map[watchpostv1.EventType]bool{}
	for _, k := range event.Kinds() {
		kinds[watchpostv1.EventType(k)] = true
		if got := eventtype.Name(watchpostv1.EventType(k)); got != k.String() {
			t.Errorf("kind %d is %q in the agent and %q in the schema", k, k, got)
		}
	}
	for _, et := range eventtype.All() {
		if !kinds[et] {
			t.Errorf("schema type %d (%s) is no agent kind", et, eventtype.Name(et))
		}
	}
}

func TestMemoryQueueBoundsAndAck(t *testing.T) {
	q := NewMemoryQueue(3, 10)
	for seq := uint64(1); seq <= 3; seq++ {
		if err := q.Push(&watchpostv1.Batch{BatchSeq: seq, Payload: make([]byte, 3)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.Push(&watchpostv1.Batch{BatchSeq: 4}); err != ErrQueueFull {
		t.Fatalf("push over count: %v, want ErrQueueFull", err)
	}
	if !q.Ack(2) || q.Ack(2) || q.Len() != 2 || q.Bytes() != 6 {
		t.Fatalf("after ack: len %d bytes %d", q.Len(), q.Bytes())
	}
	if err := q.Push(&watchpostv1.Batch{BatchSeq: 4, Payload: make([]byte, 5)}); err != ErrQueueFull {
		t.Fatalf("push over bytes: %v, want ErrQueueFull", err)
	}
	if b := q.Next(0); b.BatchSeq != 1 {
		t.Fatalf("next(0) = %d, want 1", b.BatchSeq)
	}
	if b := q.Next(1); b.BatchSeq != 3 {
		t.Fatalf("next(1) = %d, want 3", b.BatchSeq)
	}
	if b := q.Next(3); b != nil {
		t.Fatalf("next(3) = %v, want nil", b)
	}
}

// TestICSOpToProto: an ics_op carries its operations and both endpoints
// in its own detail (not as a net detail), and the collector's schema
// names its type.
func TestICSOpToProto(t *testing.T) {
	ts := time.Unix(1_800_000_000, 0)
	ev := &event.Event{Kind: event.KindICSOp, Time: ts, BootNS: 9,
		Process:    event.Process{PID: 42, Exe: "/usr/bin/hmi", LoginUID: event.AUIDUnset},
		Net:        &event.Net{Family: "inet", Protocol: "tcp", SrcAddr: "10.0.0.2", SrcPort: 40000, DstAddr: "10.0.0.9", DstPort: 502, Direction: "outbound"},
		Industrial: &event.Industrial{Protocol: "modbus"},
		ICS: &event.ICS{Protocol: "modbus", Role: "client", Class: "write", Function: "write_single_register", Code: 6, Unit: 1,
			Count: 1, FirstNS: 5, LastNS: 5, First: ts, Last: ts, Ranges: []event.ICSRange{{Address: 7, Count: 1}},
			Values: []uint16{0x1234}, Exceptions: []event.ICSException{{Code: 2, Name: "illegal_data_address", Count: 1}},
			Urgent: true, Connection: 77, Owner: "kernel"}}
	var got watchpostv1.Event
	ToProto(ev, &got)
	want := &watchpostv1.Ics{Protocol: "modbus", Role: "client", Class: "write", Function: "write_single_register", Code: 6, Unit: 1,
		Count: 1, FirstBootNs: 5, LastBootNs: 5, FirstUnixNano: ts.UnixNano(), LastUnixNano: ts.UnixNano(),
		Ranges: []*watchpostv1.IcsRange{{Address: 7, Count: 1}}, Values: []uint32{0x1234},
		Exceptions: []*watchpostv1.IcsException{{Code: 2, Name: "illegal_data_address", Count: 1}},
		Urgent:     true, Connection: 77, Owner: "kernel", Family: "inet", SrcAddr: "10.0.0.2", SrcPort: 40000,
		DstAddr: "10.0.0.9", DstPort: 502, Direction: "outbound"}
	if !proto.Equal(got.GetIcs(), want) {
		t.Fatalf("got %v\nwant %v", got.GetIcs(), want)
	}
	if n := eventtype.Name(got.Header.Type); n != "ics_op" {
		t.Errorf("type %s, want ics_op", n)
	}
}
