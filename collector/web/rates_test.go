package web

import (
	"fmt"
	"strings"
	"testing"
	"time"

	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

func evs(types ...watchpostv1.EventType) []*watchpostv1.Event {
	out := make([]*watchpostv1.Event, len(types))
	for i, t := range types {
		out[i] = &watchpostv1.Event{Header: &watchpostv1.Header{Type: t}}
	}
	return out
}

func TestRatesBucketsByClass(t *testing.T) {
	const exec, clone, open, conn = watchpostv1.EventType_EVENT_TYPE_EXEC, watchpostv1.EventType_EVENT_TYPE_CLONE,
		watchpostv1.EventType_EVENT_TYPE_FILE_OPEN, watchpostv1.EventType_EVENT_TYPE_NET_CONNECT
	r := newRates(10*time.Second, 30)
	t0 := time.Unix(1_800_000_000, 0) // a bucket boundary
	r.add(t0, evs(exec, open, open, clone), 0)
	r.add(t0.Add(9*time.Second), evs(open), 2)
	r.add(t0.Add(20*time.Second), evs(exec, exec, exec, exec, conn), 0)
	// The window starts minRateBuckets before now while the data is younger.
	got := fmt.Sprintf("%+v", r.series(t0.Add(25*time.Second), ""))
	want := "{StepSeconds:10 Times:[1799999970 1799999980 1799999990 1800000000 1800000010 1800000020] " +
		"Series:map[file:[0 0 0 0.3 0 0] network:[0 0 0 0 0 0.1] process:[0 0 0 0.2 0 0.4]] Order:[process file network] Class: Classes:[process file network] Dropped:2}"
	if got != want {
		t.Fatalf("series\n got %s\nwant %s", got, want)
	}
	// One class broken down into its types.
	got = fmt.Sprintf("%+v", r.series(t0.Add(25*time.Second), "process"))
	want = "{StepSeconds:10 Times:[1799999970 1799999980 1799999990 1800000000 1800000010 1800000020] " +
		"Series:map[clone:[0 0 0 0.1 0 0] exec:[0 0 0 0.1 0 0.4]] Order:[exec clone] Class:process Classes:[process file network] Dropped:2}"
	if got != want {
		t.Fatalf("process types\n got %s\nwant %s", got, want)
	}
	// Later, the window starts at the oldest bucket with events.
	got = fmt.Sprintf("%+v", r.series(t0.Add(95*time.Second), ""))
	if want := "Times:[1800000000 1800000010 1800000020 1800000030 1800000040 1800000050 1800000060 1800000070 1800000080 1800000090]"; !strings.Contains(got, want) {
		t.Fatalf("window\n got %s\nwant %s", got, want)
	}
	// Past the ring's 300 s the old counts are gone.
	r.add(t0.Add(601*time.Second), evs(open), 0)
	got = fmt.Sprintf("%+v", r.series(t0.Add(601*time.Second), ""))
	want = "{StepSeconds:10 Times:[1800000550 1800000560 1800000570 1800000580 1800000590 1800000600] " +
		"Series:map[file:[0 0 0 0 0 0.1]] Order:[file] Class: Classes:[file] Dropped:0}"
	if got != want {
		t.Fatalf("after wrapping\n got %s\nwant %s", got, want)
	}
}

func TestSessionsBoundedAndExpiring(t *testing.T) {
	s := newSessions(time.Minute, 2)
	now := time.Unix(1_800_000_000, 0)
	a := s.create(Identity{Name: "a", Role: RoleRead}, now)
	b := s.create(Identity{Name: "b", Role: RoleRead}, now.Add(time.Second))
	c := s.create(Identity{Name: "c", Role: RoleAdmin}, now.Add(2*time.Second))
	select {
	case <-a.done: // the least recently used session was dropped
	default:
		t.Fatal("session a still open beyond max_sessions")
	}
	if s.get(a.id, now.Add(3*time.Second)) != nil || s.get(b.id, now.Add(3*time.Second)) != b || s.len() != 2 {
		t.Fatalf("sessions after eviction: %d", s.len())
	}
	// Use extends a session; an idle one expires.
	if s.get(c.id, now.Add(61*time.Second)) != c {
		t.Fatal("session c expired early")
	}
	if s.get(b.id, now.Add(64*time.Second)) != nil {
		t.Fatal("idle session b did not expire")
	}
	if s.len() != 1 || s.get(c.id, now.Add(120*time.Second)) != c {
		t.Fatalf("after expiry: %d sessions", s.len())
	}
}
