package web

import (
	"fmt"
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

func TestRatesBucketsByType(t *testing.T) {
	const exec, open = watchpostv1.EventType_EVENT_TYPE_EXEC, watchpostv1.EventType_EVENT_TYPE_FILE_OPEN
	r := newRates(10*time.Second, 3)
	t0 := time.Unix(1_800_000_000, 0) // a bucket boundary
	r.add(t0, evs(exec, open, open), 0)
	r.add(t0.Add(9*time.Second), evs(open), 2)
	r.add(t0.Add(20*time.Second), evs(exec, exec, exec, exec, exec), 0)
	got := fmt.Sprintf("%+v", r.series(t0.Add(25*time.Second)))
	want := "{StepSeconds:10 Times:[1800000000 1800000010 1800000020] Series:map[exec:[0.1 0 0.5] file_open:[0.3 0 0]] Dropped:2}"
	if got != want {
		t.Fatalf("series\n got %s\nwant %s", got, want)
	}
	// 30 s later the first bucket is reused; the old counts are gone.
	r.add(t0.Add(31*time.Second), evs(open), 0)
	got = fmt.Sprintf("%+v", r.series(t0.Add(31*time.Second)))
	want = "{StepSeconds:10 Times:[1800000010 1800000020 1800000030] Series:map[exec:[0 0.5 0] file_open:[0 0 0.1]] Dropped:0}"
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
