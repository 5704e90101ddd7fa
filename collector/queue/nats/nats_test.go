package nats

import (
	"bytes"
	"testing"
)

func TestEventListRoundTrip(t *testing.T) {
	raw := [][]byte{[]byte("a"), {}, bytes.Repeat([]byte{0xff}, 300)}
	got, err := SplitEventList(AppendEventList(nil, raw))
	if err != nil || len(got) != 3 || string(got[0]) != "a" || len(got[1]) != 0 || !bytes.Equal(got[2], raw[2]) {
		t.Fatalf("round trip: %q %v", got, err)
	}
	for _, bad := range [][]byte{{0x0a, 0x05, 'x'}, {0x08, 0x01}, {0xff}} {
		if _, err := SplitEventList(bad); err == nil {
			t.Errorf("%x accepted", bad)
		}
	}
}

func TestSubjectTokens(t *testing.T) {
	for _, c := range []struct{ site, agent, want string }{
		{"plant-1", "gw-17", "watchpost.plant-1.gw-17.events"},
		{"a.b", "spiffe://plant/gw 1>*", "watchpost.a_b.spiffe://plant/gw_1__.events"},
		{"", "gw", "watchpost._.gw.events"},
	} {
		if got := SubjectFor("watchpost", c.site, c.agent, KindEvents); got != c.want {
			t.Errorf("SubjectFor(%q, %q) = %q, want %q", c.site, c.agent, got, c.want)
		}
	}
}

// FuzzSplitEventList: any message data either splits into records, which
// serialized again split into the same records, or is refused; never a panic.
func FuzzSplitEventList(f *testing.F) {
	f.Add(AppendEventList(nil, [][]byte{[]byte("event"), {}, bytes.Repeat([]byte{1}, 200)}))
	f.Add([]byte{0x0a, 0x05, 'x'})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		raw, err := SplitEventList(data)
		if err != nil {
			return
		}
		again, err := SplitEventList(AppendEventList(nil, raw))
		if err != nil || len(again) != len(raw) {
			t.Fatalf("records %q joined and split again: %q %v", raw, again, err)
		}
		for i := range raw {
			if !bytes.Equal(again[i], raw[i]) {
				t.Fatalf("record %d: %x, was %x", i, again[i], raw[i])
			}
		}
	})
}
