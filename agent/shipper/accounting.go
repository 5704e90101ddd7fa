package shipper

import (
	"fmt"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/watchpost/watchpost/agent/event"
)

// Drop reasons counted by the shipper. Each event the shipper receives is
// counted once: stored at the collector, still queued, or under exactly one
// of these reasons.
const (
	DropQueueFull      = "shipper_queue_full" // the event channel to the batcher was full
	DropSpoolFull      = "spool_full"         // shed: the queue was nearly full and the event of low value
	DropBatchQueueFull = "batch_queue_full"   // the queue had no room for a sealed batch
	DropWriteError     = "spool_write_error"  // the spool could not write the batch (disk full, I/O error)
	DropRejected       = "rejected"           // the collector refused the batch for good
	DropShutdown       = "shutdown"           // unacknowledged when the shipper stopped (memory queue), or shipped after
	DropEncode         = "encode_error"       // the event could not be serialized
	DropCrash          = "crash_in_flight"    // held in memory by an agent process that died (counted at the next start)
)

// byKindReasons are counted per event kind as well.
var byKindReasons = []string{DropSpoolFull, DropBatchQueueFull, DropWriteError}

// totalReasons are counted as one number.
var totalReasons = []string{DropQueueFull, DropRejected, DropShutdown, DropEncode, DropCrash, DropCorrupt}

// preQueueReasons are outcomes reached before an event is in the queue:
// received = spooled + these + (events in memory), which is how the events
// lost with a crashed process are counted.
var preQueueReasons = map[string]bool{
	DropQueueFull: true, DropSpoolFull: true, DropBatchQueueFull: true, DropWriteError: true,
	DropShutdown: true, DropEncode: true, DropCrash: true,
}

// kindSlots maps an event kind to its index in per-kind counter arrays.
var kindSlots, kindList = func() ([256]int, []event.Kind) {
	var slots [256]int
	for i := range slots {
		slots[i] = -1
	}
	kinds := append([]event.Kind{event.KindUnknown}, event.Kinds()...)
	for i, k := range kinds {
		slots[k] = i
	}
	return slots, kinds
}()

// kindSlot is k's index; kinds this build does not know share slot 0.
func kindSlot(k event.Kind) int {
	if int(k) < len(kindSlots) && kindSlots[k] >= 0 {
		return kindSlots[k]
	}
	return 0
}

// counters are the shipper's event counters. With a durable queue they live
// in its counters file, so they are cumulative across restarts.
type counters struct {
	received, injected *atomic.Uint64
	total              map[string]*atomic.Uint64   // totalReasons
	byKind             map[string][]*atomic.Uint64 // byKindReasons, indexed by kindSlot
}

func newCounters(alloc func(name string) *atomic.Uint64) *counters {
	c := &counters{
		received: alloc("shipper:received"), injected: alloc("shipper:injected"),
		total: map[string]*atomic.Uint64{}, byKind: map[string][]*atomic.Uint64{},
	}
	for _, r := range totalReasons {
		c.total[r] = alloc("drop:" + r)
	}
	for _, r := range byKindReasons {
		arr := make([]*atomic.Uint64, len(kindList))
		for i, k := range kindList {
			arr[i] = alloc("drop:" + r + ":" + k.String())
		}
		c.byKind[r] = arr
	}
	return c
}

func (c *counters) drop(reason string, k event.Kind, n uint64) {
	if arr, ok := c.byKind[reason]; ok {
		arr[kindSlot(k)].Add(n)
		return
	}
	c.total[reason].Add(n)
}

// dropped returns the total per reason.
func (c *counters) dropped() map[string]uint64 {
	out := make(map[string]uint64, len(c.total)+len(c.byKind))
	for r, v := range c.total {
		out[r] = v.Load()
	}
	for r, arr := range c.byKind {
		var sum uint64
		for _, v := range arr {
			sum += v.Load()
		}
		out[r] = sum
	}
	return out
}

// droppedByKind returns the non-zero per-kind counts, keyed "reason/kind".
func (c *counters) droppedByKind() map[string]uint64 {
	out := map[string]uint64{}
	for r, arr := range c.byKind {
		for i, v := range arr {
			if n := v.Load(); n > 0 {
				out[r+"/"+kindList[i].String()] = n
			}
		}
	}
	return out
}

// preQueue is the sum of the reasons reached before the queue.
func (c *counters) preQueue() uint64 {
	var sum uint64
	for r, n := range c.dropped() {
		if preQueueReasons[r] {
			sum += n
		}
	}
	return sum
}

// tier orders events by value for shedding.
type tier int

const (
	tierBulk     tier = iota // shed first: reads, socket bookkeeping, process churn
	tierNormal               // shed next: file changes, connections
	tierCritical             // never shed (lost only when nothing fits)
)

// tierOf classifies an event. Security-critical kinds, and file or network
// events carrying an industrial tag, are critical.
func tierOf(ev *event.Event) tier {
	if ev.Kind.SecurityCritical() {
		return tierCritical
	}
	if in := ev.Industrial; in != nil && (in.Protocol != "" || in.Fieldbus != "" || in.Device != "" || in.Sniffing) {
		return tierCritical
	}
	switch ev.Kind {
	case event.KindFileOpen:
		if ev.File == nil || !ev.File.Write {
			return tierBulk
		}
	case event.KindNetSocket, event.KindNetClose, event.KindNetUDPFlow, event.KindClone, event.KindExit:
		return tierBulk
	}
	return tierNormal
}

// gapKey is one line of a gap marker.
type gapKey struct{ kind, reason string }

// gapLedger accumulates what was lost until a gap marker carrying it is
// queued. It belongs to the batcher goroutine.
type gapLedger map[gapKey]uint64

func (g gapLedger) add(kind, reason string, n uint64) {
	if n > 0 {
		g[gapKey{kind, reason}] += n
	}
}

func (g gapLedger) merge(o gapLedger) {
	for k, v := range o {
		g[k] += v
	}
}

// marker builds the gap event describing the ledger.
func (g gapLedger) marker(host string, now time.Time) *event.Event {
	reasons := map[string]bool{}
	cs := make([]event.Counter, 0, len(g))
	for k, v := range g {
		cs = append(cs, event.Counter{Kind: k.kind, Reason: k.reason, Count: v})
		reasons[k.reason] = true
	}
	sort.Slice(cs, func(i, j int) bool {
		if cs[i].Reason != cs[j].Reason {
			return cs[i].Reason < cs[j].Reason
		}
		return cs[i].Kind < cs[j].Kind
	})
	rs := make([]string, 0, len(reasons))
	for r := range reasons {
		rs = append(rs, r)
	}
	sort.Strings(rs)
	return &event.Event{
		Kind: event.KindGap, Time: now, Host: host,
		Process: event.Process{Comm: "watchpost-agent", LoginUID: event.AUIDUnset},
		Gap:     &event.Gap{Reason: strings.Join(rs, ","), Counters: cs},
	}
}

// String lists the ledger for logs.
func (g gapLedger) String() string {
	var b strings.Builder
	for k, v := range g {
		fmt.Fprintf(&b, "%s/%s=%d ", k.reason, k.kind, v)
	}
	return strings.TrimSpace(b.String())
}
