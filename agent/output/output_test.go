package output

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/watchpost/watchpost/agent/event"
)

// TestJSONLinesWritesWhatEncodingJSONWrites: one line per event, the bytes
// of encoding/json, for events short and far longer than the buffer.
func TestJSONLinesWritesWhatEncodingJSONWrites(t *testing.T) {
	long := strings.Repeat("/very/long/argument", 10000) // ~190 KB, over the 64 KiB buffer
	var evs []*event.Event
	for i := range 300 {
		ev := &event.Event{Kind: event.KindFileOpen, Time: time.Unix(1800000000, int64(i)).UTC(), Seq: uint64(i),
			Process: event.Process{PID: uint32(i), Comm: "wpload", Args: []string{"a", "b\n\"c\""}},
			File:    &event.File{Syscall: "openat", Path: "/etc/passwd", Result: 3}}
		if i%50 == 7 {
			ev.Process.Args = []string{long}
		}
		evs = append(evs, ev)
	}
	var got, want bytes.Buffer
	j := NewJSONLines(&got, nil)
	enc := json.NewEncoder(&want)
	enc.SetEscapeHTML(false)
	for _, ev := range evs {
		j.Write(ev)
		if err := enc.Encode(ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if n, err := j.Errors(); n != 0 {
		t.Fatalf("%d write errors, last %v", n, err)
	}
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Fatalf("output differs from encoding/json: got %d bytes, want %d", got.Len(), want.Len())
	}
}

// TestJSONLinesCountsRefusedEvents: an event encoding/json refuses is
// counted and the next one is written whole.
func TestJSONLinesCountsRefusedEvents(t *testing.T) {
	var got bytes.Buffer
	j := NewJSONLines(&got, nil)
	j.Write(&event.Event{Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)})
	j.Write(&event.Event{Kind: event.KindExit, Seq: 2})
	_ = j.Flush()
	if n, err := j.Errors(); n != 1 || err == nil {
		t.Fatalf("errors %d (%v), want 1", n, err)
	}
	var m map[string]any
	if err := json.Unmarshal(got.Bytes(), &m); err != nil || m["seq"] != float64(2) {
		t.Fatalf("output %q: %v", got.String(), err)
	}
}

// go test -run '^$' -bench JSONLines -benchmem ./agent/output/
func BenchmarkJSONLines(b *testing.B) {
	ev := &event.Event{Kind: event.KindFileOpen, Time: time.Unix(1800000000, 5).UTC(), Host: "gw-01",
		Process:  event.Process{PID: 1234, TID: 1234, PPID: 1, Comm: "wpload", Exe: "/tmp/wpload", Args: []string{"wpload", "gen"}},
		Ancestry: []event.Ancestor{{PID: 1, Comm: "systemd", Exe: "/usr/lib/systemd/systemd"}},
		File:     &event.File{Syscall: "openat", Path: "/tmp/gen/gen.dat", Flags: 0x80000, Result: 3, Inode: 123456, Dev: "0:33"}}
	j := NewJSONLines(discard{}, nil)
	for b.Loop() {
		j.Write(ev)
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
