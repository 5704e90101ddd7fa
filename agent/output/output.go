// Package output holds the agent's event sinks.
package output

import (
	"bufio"
	"encoding/json"
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
// maxDelay.
type JSONLines struct {
	mu       sync.Mutex
	w        *bufio.Writer
	enc      *json.Encoder
	closer   io.Closer
	errs     uint64
	lastErr  error
	last     time.Time
	maxDelay time.Duration
}

// NewJSONLines writes to w; c, when not nil, is closed by Close.
func NewJSONLines(w io.Writer, c io.Closer) *JSONLines {
	bw := bufio.NewWriterSize(w, 64<<10)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	return &JSONLines{w: bw, enc: enc, closer: c, last: time.Now(), maxDelay: 200 * time.Millisecond}
}

// Write encodes ev. Encoding errors are counted, not logged per event.
func (j *JSONLines) Write(ev *event.Event) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := j.enc.Encode(ev); err != nil {
		j.errs++
		j.lastErr = err
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
