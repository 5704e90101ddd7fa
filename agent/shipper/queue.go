package shipper

import (
	"errors"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/watchpost/watchpost/agent/event"
	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

// ErrQueueFull is returned by Queue.Push when the queue is at its bound.
var ErrQueueFull = errors.New("batch queue full")

// Queue holds encoded batches between the batcher and the sender until the
// collector acknowledges them. The in-memory Queue below is the default; a
// durable spool implements the same interface and sits in the same place.
// Batches are pushed in increasing BatchSeq order.
type Queue interface {
	// Push appends a batch, or returns ErrQueueFull without keeping it.
	Push(b *watchpostv1.Batch) error
	// Next returns the oldest batch whose sequence is greater than after,
	// or nil when there is none.
	Next(after uint64) *watchpostv1.Batch
	// Ack removes the batch with this sequence and reports whether it was
	// queued.
	Ack(seq uint64) bool
	// Len and Bytes report what is queued (payload bytes).
	Len() int
	Bytes() int64
	// Ready is signalled (capacity 1) after every Push.
	Ready() <-chan struct{}
	// Fill is how full the queue is, from 0 to 1; the shipper sheds
	// low-value events as it rises.
	Fill() float64
}

// DurableQueue is a Queue that keeps batches across restarts (the disk
// spool). The shipper then takes its run id and sequence from it, keeps
// its counters in it (so that they survive a crash) and leaves
// unacknowledged batches in it at shutdown instead of counting them lost.
type DurableQueue interface {
	Queue
	// RunID is the run id to put on batches; it stays the same across
	// restarts so that resent batches keep their identity.
	RunID() string
	// LastSeq is the highest batch sequence used (or reserved) so far.
	LastSeq() uint64
	// Counter returns a named counter that survives restarts and crashes.
	Counter(name string) (*atomic.Uint64, error)
	// SpooledEvents is the number of events ever written to the queue.
	SpooledEvents() uint64
	// TakeCorrupt returns the events lost in damaged records found since
	// the last call; they are already counted under DropCorrupt.
	TakeCorrupt() uint64
	// TakeTampers returns the queue's own files found damaged and rebuilt
	// since the last call: each is shipped as an agent_tamper event.
	TakeTampers() []event.Tamper
}

// DropCorrupt is the drop reason of events in damaged spool records.
const DropCorrupt = "spool_corrupt"

// MemoryQueue is a bounded in-memory Queue. It is safe for concurrent use.
type MemoryQueue struct {
	mu       sync.Mutex
	batches  []*watchpostv1.Batch // ordered by BatchSeq
	bytes    int64
	maxCount int
	maxBytes int64
	ready    chan struct{}
}

// NewMemoryQueue returns a queue bounded by batch count and payload bytes.
func NewMemoryQueue(maxBatches int, maxBytes int64) *MemoryQueue {
	return &MemoryQueue{maxCount: maxBatches, maxBytes: maxBytes, ready: make(chan struct{}, 1)}
}

func (q *MemoryQueue) Push(b *watchpostv1.Batch) error {
	q.mu.Lock()
	if len(q.batches) >= q.maxCount || q.bytes+int64(len(b.Payload)) > q.maxBytes {
		q.mu.Unlock()
		return ErrQueueFull
	}
	q.batches = append(q.batches, b)
	q.bytes += int64(len(b.Payload))
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
	return nil
}

func (q *MemoryQueue) Next(after uint64) *watchpostv1.Batch {
	q.mu.Lock()
	defer q.mu.Unlock()
	i := sort.Search(len(q.batches), func(i int) bool { return q.batches[i].BatchSeq > after })
	if i == len(q.batches) {
		return nil
	}
	return q.batches[i]
}

func (q *MemoryQueue) Ack(seq uint64) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	i := sort.Search(len(q.batches), func(i int) bool { return q.batches[i].BatchSeq >= seq })
	if i == len(q.batches) || q.batches[i].BatchSeq != seq {
		return false
	}
	q.bytes -= int64(len(q.batches[i].Payload))
	copy(q.batches[i:], q.batches[i+1:])
	q.batches[len(q.batches)-1] = nil
	q.batches = q.batches[:len(q.batches)-1]
	return true
}

func (q *MemoryQueue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.batches)
}

func (q *MemoryQueue) Bytes() int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.bytes
}

func (q *MemoryQueue) Ready() <-chan struct{} { return q.ready }

// Fill is the larger of the count and byte fractions in use.
func (q *MemoryQueue) Fill() float64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return max(float64(len(q.batches))/float64(q.maxCount), float64(q.bytes)/float64(q.maxBytes))
}
