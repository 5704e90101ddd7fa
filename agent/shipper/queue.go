package shipper

import (
	"errors"
	"sort"
	"sync"

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
}

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
