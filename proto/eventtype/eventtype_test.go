package eventtype

import (
	"testing"

	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

func TestNamesRoundTrip(t *testing.T) {
	for _, c := range []struct {
		t    watchpostv1.EventType
		name string
	}{
		{watchpostv1.EventType_EVENT_TYPE_EXEC, "exec"},
		{watchpostv1.EventType_EVENT_TYPE_NET_UDP_FLOW, "net_udp_flow"},
		{watchpostv1.EventType_EVENT_TYPE_AGENT_STOP, "agent_stop"},
	} {
		if got := Name(c.t); got != c.name {
			t.Errorf("Name(%v) = %q, want %q", c.t, got, c.name)
		}
		if got, err := Parse(c.name); err != nil || got != c.t {
			t.Errorf("Parse(%q) = %v, %v; want %v", c.name, got, err, c.t)
		}
	}
	if _, err := Parse("nope"); err == nil || err.Error() != `unknown event type "nope"` {
		t.Errorf("Parse(nope) error = %v", err)
	}
	if got := Name(9999); got != "kind(9999)" {
		t.Errorf("Name(9999) = %q", got)
	}
	all := All()
	for i := 1; i < len(all); i++ {
		if all[i-1] >= all[i] {
			t.Fatalf("All not in numeric order at %d: %v", i, all)
		}
	}
	if all[0] != watchpostv1.EventType_EVENT_TYPE_EXEC {
		t.Errorf("All()[0] = %v, want exec (unspecified excluded)", all[0])
	}
}
