package kernel

import (
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/watchpost/watchpost/agent/event"
)

// Drop and delivery reasons, the label values of the agent's counters.
const (
	ReasonRingFull    = "ring_full"
	ReasonFiltered    = "filtered"
	ReasonRateLimited = "rate_limited"
	ReasonQueueFull   = "queue_full"
	ReasonMissed      = "recursion_miss"
)

// KindStats are the counters of one event kind. Produced counts what the
// hooks saw; every produced event is emitted or counted under a reason, and
// every emitted one is queued or counted as queue_full.
type KindStats struct {
	// Missed counts runs of the kind's program that the kernel skipped
	// (recursion protection on preemptible kernels): events never produced.
	Missed      uint64
	Produced    uint64
	Emitted     uint64
	RingFull    uint64
	Filtered    uint64
	RateLimited uint64
	QueueFull   uint64
}

// Stats is a snapshot of every counter.
type Stats struct {
	Kinds map[event.Kind]KindStats
	// ProgramMisses are the skipped runs of programs that serve several
	// kinds (the syscall programs), by program name.
	ProgramMisses map[string]uint64
	Read          uint64 // records read from the ring
	DecodeErrors  uint64 // records that could not be decoded (counted, skipped)
	// WatchedPaths is how many paths of filters.watch_reads exist and are
	// watched; WatchErrors counts refreshes of the list that failed.
	WatchedPaths int64
	WatchErrors  uint64
}

// Total sums the counters over all kinds.
func (s Stats) Total() KindStats {
	var t KindStats
	for _, k := range s.Kinds {
		t.Produced += k.Produced
		t.Emitted += k.Emitted
		t.RingFull += k.RingFull
		t.Filtered += k.Filtered
		t.RateLimited += k.RateLimited
		t.QueueFull += k.QueueFull
		t.Missed += k.Missed
	}
	return t
}

// programKind attributes a program's skipped runs to the one kind it
// produces (wp_sock_state: closes; a skipped state change can also lose
// a connect's outcome); programs serving several kinds are reported by
// name.
var programKind = map[string]event.Kind{
	"wp_sched_exec": event.KindExec,
	"wp_sched_fork": event.KindClone,
	"wp_sched_exit": event.KindExit,
	"wp_sock_state": event.KindNetClose,
}

// Stats sums the per-CPU kernel counters and adds the reader's own.
func (s *Sensor) Stats() (Stats, error) {
	st := Stats{Kinds: make(map[event.Kind]KindStats), ProgramMisses: make(map[string]uint64), Read: s.read.Load(), DecodeErrors: s.decodeErr.Load(),
		WatchedPaths: s.watched.Load(), WatchErrors: s.watchErrors.Load()}
	missed := make(map[event.Kind]uint64)
	for name, prog := range s.coll.Programs {
		ps, err := prog.Stats()
		if err != nil || ps.RecursionMisses == 0 {
			continue // kernels before 5.12 do not count misses
		}
		if k, ok := programKind[name]; ok {
			missed[k] += ps.RecursionMisses
		} else {
			st.ProgramMisses[name] = ps.RecursionMisses
		}
	}
	m := s.coll.Maps["wp_stats"]
	var perCPU []uint64
	statMax := int(wpWpStatWP_STAT_MAX)
	for k := 1; k < event.KernelKinds; k++ {
		var ks KindStats
		for stat := 0; stat < statMax; stat++ {
			key := uint32(k*statMax + stat)
			sum, err := perCPUSum(m, key, &perCPU)
			if err != nil {
				return st, fmt.Errorf("reading counter %d of kind %s: %w", stat, event.Kind(k), err)
			}
			switch wpWpStat(stat) {
			case wpWpStatWP_STAT_PRODUCED:
				ks.Produced = sum
			case wpWpStatWP_STAT_EMITTED:
				ks.Emitted = sum
			case wpWpStatWP_STAT_RING_FULL:
				ks.RingFull = sum
			case wpWpStatWP_STAT_FILTERED:
				ks.Filtered = sum
			case wpWpStatWP_STAT_RATE_LIMITED:
				ks.RateLimited = sum
			}
		}
		ks.QueueFull = s.queueFull[k].Load()
		ks.Missed = missed[event.Kind(k)]
		if ks != (KindStats{}) {
			st.Kinds[event.Kind(k)] = ks
		}
	}
	return st, nil
}

// perCPUSum reads one counter of a per-CPU array map (buf is reused
// between calls) and sums it over the CPUs.
func perCPUSum(m *ebpf.Map, key uint32, buf *[]uint64) (uint64, error) {
	if err := m.Lookup(key, buf); err != nil {
		return 0, err
	}
	var sum uint64
	for _, v := range *buf {
		sum += v
	}
	return sum, nil
}
