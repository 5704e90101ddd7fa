package event

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
)

// tricky are strings that exercise every escaping rule of encoding/json.
var tricky = []string{
	"", "a", "/usr/bin/python3.11", `quote " and \ backslash`, "\x00\x01\x1f\x7f", "\b\f\n\r\t",
	"<html> & 'x'", "\xff\xfe invalid \xc3", "\u2028 \u2029 separators", "é 漢字 🙂", "trailing \xe2\x82",
	string(bytes.Repeat([]byte("long/path/"), 50)),
}

// fill sets v (addressable) to random values; depth bounds recursion.
func fill(r *rand.Rand, v reflect.Value, depth int) {
	if v.Type() == reflect.TypeFor[time.Time]() {
		times := []time.Time{{}, time.Unix(0, 0).UTC(), time.Date(2026, 11, 22, 7, 57, 34, 761200000, time.UTC),
			time.Unix(1800000000, 123456789).UTC(), time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 3600))}
		v.Set(reflect.ValueOf(times[r.IntN(len(times))]))
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(tricky[r.IntN(len(tricky))])
	case reflect.Bool:
		v.SetBool(r.IntN(2) == 0)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		vals := []int64{0, 1, -1, 42, math.MaxInt32, math.MinInt32}
		if v.Type().Bits() == 64 {
			vals = append(vals, math.MaxInt64, math.MinInt64)
		}
		x := vals[r.IntN(len(vals))]
		if v.OverflowInt(x) {
			x = 7
		}
		v.SetInt(x)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if v.Type() == reflect.TypeFor[Kind]() {
			kinds := append(Kinds(), 0, 250)
			v.SetUint(uint64(kinds[r.IntN(len(kinds))]))
			return
		}
		x := []uint64{0, 1, 502, math.MaxUint16, math.MaxUint32, math.MaxUint64}[r.IntN(6)]
		if v.OverflowUint(x) {
			x = 9
		}
		v.SetUint(x)
	case reflect.Float32, reflect.Float64:
		v.SetFloat([]float64{0, 1, -1.5, 0.1, 1e-7, 1e-6, 1e20, 1e21, 123456789.125, math.SmallestNonzeroFloat64, -0.0}[r.IntN(11)])
	case reflect.Pointer:
		if depth <= 0 || r.IntN(3) == 0 {
			v.SetZero()
			return
		}
		p := reflect.New(v.Type().Elem())
		fill(r, p.Elem(), depth-1)
		v.Set(p)
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(r, v.Field(i), depth)
			}
		}
	case reflect.Slice:
		switch n := r.IntN(5); {
		case n == 0 || depth <= 0:
			v.SetZero()
		default:
			s := reflect.MakeSlice(v.Type(), n-1, n-1)
			for i := range n - 1 {
				fill(r, s.Index(i), depth-1)
			}
			v.Set(s)
		}
	case reflect.Map:
		switch n := r.IntN(5); {
		case n == 0 || depth <= 0:
			v.SetZero()
		default:
			m := reflect.MakeMap(v.Type())
			for range n - 1 {
				k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
				fill(r, k, depth-1)
				fill(r, e, depth-1)
				m.SetMapIndex(k, e)
			}
			v.Set(m)
		}
	}
}

func stdJSON(t *testing.T, ev *Event) ([]byte, error) {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(ev); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// TestAppendJSONMatchesEncodingJSON holds the generated encoder to
// encoding/json over a corpus that sets every field of every type: zero
// events, each detail alone, and random fills with every escaping case. A
// field added to a type without `go generate ./agent/event` fails here.
func TestAppendJSONMatchesEncodingJSON(t *testing.T) {
	var corpus []*Event
	corpus = append(corpus, &Event{})
	et := reflect.TypeFor[Event]()
	for i := range et.NumField() {
		f := et.Field(i)
		if f.Type.Kind() != reflect.Pointer || !f.IsExported() {
			continue
		}
		// Each detail alone, fully set.
		for seed := range uint64(20) {
			r := rand.New(rand.NewPCG(seed, uint64(i)))
			ev := &Event{Kind: KindFileOpen}
			p := reflect.New(f.Type.Elem())
			fill(r, p.Elem(), 4)
			reflect.ValueOf(ev).Elem().Field(i).Set(p)
			corpus = append(corpus, ev)
		}
	}
	for seed := range uint64(3000) {
		r := rand.New(rand.NewPCG(seed, 1))
		ev := &Event{}
		fill(r, reflect.ValueOf(ev).Elem(), 4)
		corpus = append(corpus, ev)
	}
	var buf []byte
	for n, ev := range corpus {
		want, werr := stdJSON(t, ev)
		var err error
		buf, err = ev.AppendJSON(buf[:0])
		if (err != nil) != (werr != nil) {
			t.Fatalf("event %d: AppendJSON error %v, encoding/json error %v", n, err, werr)
		}
		if werr == nil && !bytes.Equal(buf, want) {
			t.Fatalf("event %d: AppendJSON differs from encoding/json (after changing a type in agent/event, run `go generate ./agent/event`)\n got: %s\nwant: %s", n, buf, want)
		}
	}
}

// TestAppendJSONRefusesWhatEncodingJSONRefuses: NaN and years past 9999
// fail the event in both.
func TestAppendJSONRefusesWhatEncodingJSONRefuses(t *testing.T) {
	for _, ev := range []*Event{
		{Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)},
		{Alert: &Alert{Events: []EventRef{{Time: time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)}}}},
	} {
		if _, err := stdJSON(t, ev); err == nil {
			t.Fatal("encoding/json accepted the event")
		}
		if _, err := ev.AppendJSON(nil); err == nil {
			t.Error("AppendJSON accepted an event encoding/json refuses")
		}
	}
}

func TestAppendJSONAllocatesNothing(t *testing.T) {
	ev := benchEvent()
	buf := make([]byte, 0, 4096)
	allocs := testing.AllocsPerRun(100, func() {
		buf, _ = ev.AppendJSON(buf[:0])
	})
	if allocs != 0 {
		t.Errorf("AppendJSON allocates %v times per event", allocs)
	}
}

// benchEvent is a file_open event as the agent writes it at full capture.
func benchEvent() *Event {
	return &Event{Kind: KindFileOpen, Time: time.Unix(1800000000, 123456789).UTC(), BootNS: 123456789012, Seq: 42, Host: "gw-01", CPU: 1,
		Process: Process{PID: 1234, TID: 1234, PPID: 1, LoginUID: 4294967295, SessionID: 4294967295, CgroupID: 1234, Comm: "wpload",
			Exe: "/tmp/wpbench-123/wpload", Args: []string{"wpload", "gen", "100000", "3", "1", "/tmp/x"}, Cwd: "/root", StartBootNS: 12345678},
		Ancestry: []Ancestor{{PID: 1, Comm: "systemd", Exe: "/usr/lib/systemd/systemd", Args: []string{"/sbin/init"}}, {PID: 0}},
		File:     &File{Syscall: "openat", Path: "/tmp/wpbench-123/gen/gen.dat", Flags: 0x80000, Result: 3, Inode: 123456, Dev: "0:33"},
	}
}

// go test -run '^$' -bench JSON -benchmem ./agent/event/
func BenchmarkJSON(b *testing.B) {
	ev := benchEvent()
	b.Run("encoding-json", func(b *testing.B) {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		for b.Loop() {
			buf.Reset()
			_ = enc.Encode(ev)
		}
	})
	b.Run("AppendJSON", func(b *testing.B) {
		buf := make([]byte, 0, 4096)
		for b.Loop() {
			buf, _ = ev.AppendJSON(buf[:0])
		}
	})
}
