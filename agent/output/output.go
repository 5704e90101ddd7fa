// Package output holds the agent's event sinks.
package output

import (
	"bufio"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/watchpost/watchpost/agent/event"
)

// Sink receives every enriched event from the pipeline's goroutine. Write
// must not block for long; a sink that can stall (a network) buffers and
// counts its own drops.
type Sink interface {
	Write(ev *event.Event)
	// Flush pushes buffered events out; the pipeline calls it when idle.
	Flush() error
	Close() error
}

// JSONLines writes one JSON object per event and line. It buffers and is
// flushed by the pipeline when the queue is idle, and at least every
// maxDelay. Events are encoded by event.AppendJSON (generated: the bytes of
// encoding/json, without reflection or allocation per event) straight into
// the buffer.
type JSONLines struct {
	mu       sync.Mutex
	w        *bufio.Writer
	line     []byte // an event's line when it did not fit the buffer's free space
	closer   io.Closer
	errs     uint64
	lastErr  error
	last     time.Time
	maxDelay time.Duration
}

// NewJSONLines writes to w; c, when not nil, is closed by Close.
func NewJSONLines(w io.Writer, c io.Closer) *JSONLines {
	bw := bufio.NewWriterSize(w, 64<<10)
	return &JSONLines{w: bw, closer: c, last: time.Now(), maxDelay: 200 * time.Millisecond}
}

// Write encodes ev. Encoding errors are counted, not logged per event.
func (j *JSONLines) Write(ev *event.Event) {
	j.mu.Lock()
	defer j.mu.Unlock()
	// Appending to the free part of the buffer writes in place; a longer
	// line grows into j.line, which is kept for the next one.
	b := j.w.AvailableBuffer()
	spare := cap(b) < 4<<10
	if spare {
		b = j.line[:0]
	}
	b, err := ev.AppendJSON(b)
	if err != nil {
		j.errs++
		j.lastErr = fmt.Errorf("encoding a %s event: %w", ev.Kind, err)
	} else if _, err := j.w.Write(append(b, '\n')); err != nil {
		j.errs++
		j.lastErr = err
	}
	if spare {
		j.line = b[:0]
	}
	if time.Since(j.last) > j.maxDelay {
		j.flushLocked()
	}
}

// Flush writes out what is buffered.
func (j *JSONLines) Flush() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.flushLocked()
}

func (j *JSONLines) flushLocked() error {
	j.last = time.Now()
	if err := j.w.Flush(); err != nil {
		j.errs++
		j.lastErr = err
		return fmt.Errorf("flushing JSON output: %w", err)
	}
	return nil
}

// Errors returns how many writes failed and the last error.
func (j *JSONLines) Errors() (uint64, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.errs, j.lastErr
}

// Close flushes and closes the underlying writer.
func (j *JSONLines) Close() error {
	err := j.Flush()
	if j.closer != nil {
		if cerr := j.closer.Close(); err == nil {
			err = cerr
		}
	}
	return err
}
