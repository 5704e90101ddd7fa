package kernel

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestIdlePollBacksOffToTenTimesTheInterval(t *testing.T) {
	base := 100 * time.Millisecond
	var got []time.Duration
	for cur, i := base, 0; i < 6; i++ {
		cur = idlePoll(cur, base)
		got = append(got, cur)
	}
	want := []time.Duration{200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, time.Second, time.Second, time.Second}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("backed-off intervals (-want +got):\n%s", diff)
	}
}
