package metrics

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/rs/zerolog"

	"github.com/watchpost/watchpost/agent/container"
	"github.com/watchpost/watchpost/agent/event"
	"github.com/watchpost/watchpost/agent/kernel"
	"github.com/watchpost/watchpost/agent/proctable"
)

func errOf(p *error) error {
	if p == nil {
		return nil
	}
	return *p
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestMetricsAndHealthz(t *testing.T) {
	var programs atomic.Pointer[[]string]
	var kerr atomic.Pointer[error]
	attached := []string{"tp_btf/sched_process_exec"}
	programs.Store(&attached)
	src := Sources{
		Kernel: func() (kernel.Stats, error) {
			return kernel.Stats{Kinds: map[event.Kind]kernel.KindStats{
				event.KindFileOpen: {Produced: 100, Emitted: 60, Filtered: 30, RateLimited: 10},
			}, ProgramMisses: map[string]uint64{"wp_sys_exit_file": 2}}, errOf(kerr.Load())
		},
		Programs:  func() []string { return *programs.Load() },
		Delivered: func() uint64 { return 61 },
		Table:     func() proctable.Stats { return proctable.Stats{Live: 7, Exited: 2} },
		Containers: func() container.Stats {
			return container.Stats{Containers: 3, CgroupReads: 5, Lookups: 4, LookupErrors: 1, QueueFull: 2}
		},
		Inspection: func() *event.Inspection {
			return &event.Inspection{Attached: true, Segments: 9, Messages: 12, Urgent: 1, Malformed: map[string]uint64{"truncated": 3}}
		},
	}
	s, err := New("127.0.0.1:0", src, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	defer s.Shutdown(context.Background())
	base := "http://" + s.Addr()

	code, body := get(t, base+"/metrics")
	for _, want := range []string{
		`watchpost_events_total{reason="produced",type="file_open"} 100`,
		`watchpost_events_total{reason="rate_limited",type="file_open"} 10`,
		`watchpost_events_total{reason="filtered",type="file_open"} 30`,
		`watchpost_program_missed_runs_total{program="wp_sys_exit_file"} 2`,
		`watchpost_delivered_total 61`,
		`watchpost_process_table_entries{state="live"} 7`,
		`watchpost_kernel_counters_up 1`,
		`watchpost_containers 3`,
		`watchpost_container_lookups_total{result="cgroup_read"} 5`,
		`watchpost_container_lookups_total{result="lookup_error"} 1`,
		`watchpost_container_lookups_total{result="queue_full"} 2`,
		`watchpost_inspection_attached 1`,
		`watchpost_inspection_total{what="messages"} 12`,
		`watchpost_inspection_total{what="urgent"} 1`,
		`watchpost_inspection_malformed_total{reason="truncated"} 3`,
	} {
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("/metrics (%d) lacks %q", code, want)
		}
	}
	if code, body := get(t, base+"/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	programs.Store(&[]string{})
	if code, _ := get(t, base+"/healthz"); code != http.StatusServiceUnavailable {
		t.Errorf("/healthz with nothing attached: %d", code)
	}
	programs.Store(&attached)
	e := errors.New("map closed")
	kerr.Store(&e)
	if code, body := get(t, base+"/healthz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "map closed") {
		t.Errorf("/healthz with unreadable counters: %d %q", code, body)
	}
}
