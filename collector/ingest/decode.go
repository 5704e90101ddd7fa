// Package ingest decodes and validates agent batches. Decoding is bounded
// before any work: the declared uncompressed size and event count are
// checked against the limits first, the zstd decoder's memory is capped,
// and the result must match what the batch declared. A batch is accepted
// or refused whole; errors name the offending field.
package ingest

import (
	"errors"
	"fmt"

	"github.com/klauspost/compress/zstd"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

// Limits bound what one batch may contain.
type Limits struct {
	// MaxUncompressedBytes caps a batch's serialized events (32 MiB).
	MaxUncompressedBytes int
	// MaxEvents caps the events in one batch (10000).
	MaxEvents int
	// MaxStringBytes caps every string field (16 KiB).
	MaxStringBytes int
	// MaxListLen caps repeated fields: args, ancestry, counters, programs (1024).
	MaxListLen int
}

// DefaultLimits are the limits used when none are configured.
func DefaultLimits() Limits {
	return Limits{MaxUncompressedBytes: 32 << 20, MaxEvents: 10000, MaxStringBytes: 16 << 10, MaxListLen: 1024}
}

// ErrTooLarge marks refusals because a size limit was exceeded (as opposed
// to malformed content).
var ErrTooLarge = errors.New("over limit")

// FieldError names the field that made a batch invalid.
type FieldError struct {
	Path string // e.g. batch.events[3].process.pid
	Msg  string
	Err  error // ErrTooLarge for size limits, else nil
}

func (e *FieldError) Error() string { return e.Path + ": " + e.Msg }
func (e *FieldError) Unwrap() error { return e.Err }

func fieldErr(path, format string, args ...any) *FieldError {
	return &FieldError{Path: path, Msg: fmt.Sprintf(format, args...)}
}

func tooLarge(path, format string, args ...any) *FieldError {
	return &FieldError{Path: path, Msg: fmt.Sprintf(format, args...), Err: ErrTooLarge}
}

// Decoded is a valid batch: the events and, for each, its serialized bytes
// as sent (stored as is, no re-encoding).
type Decoded struct {
	Events []*watchpostv1.Event
	Raw    [][]byte
}

// Decoder decodes batches. It is safe for concurrent use.
type Decoder struct {
	limits Limits
	zstd   *zstd.Decoder
}

// NewDecoder returns a decoder enforcing the limits.
func NewDecoder(l Limits) (*Decoder, error) {
	d := DefaultLimits()
	if l.MaxUncompressedBytes > 0 {
		d.MaxUncompressedBytes = l.MaxUncompressedBytes
	}
	if l.MaxEvents > 0 {
		d.MaxEvents = l.MaxEvents
	}
	if l.MaxStringBytes > 0 {
		d.MaxStringBytes = l.MaxStringBytes
	}
	if l.MaxListLen > 0 {
		d.MaxListLen = l.MaxListLen
	}
	zd, err := zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(0),
		zstd.WithDecoderMaxMemory(uint64(d.MaxUncompressedBytes)),
		zstd.WithDecoderMaxWindow(uint64(min(d.MaxUncompressedBytes, 1<<30))),
	)
	if err != nil {
		return nil, fmt.Errorf("creating zstd decoder: %w", err)
	}
	return &Decoder{limits: d, zstd: zd}, nil
}

// Limits returns the limits in force.
func (d *Decoder) Limits() Limits { return d.limits }

// Close releases the zstd decoder.
func (d *Decoder) Close() { d.zstd.Close() }

// Decode checks the batch's envelope, decompresses its payload within the
// limits, splits it into events and validates each one. agentID and
// bootID are filled into the events' headers.
func (d *Decoder) Decode(b *watchpostv1.Batch) (*Decoded, error) {
	if err := d.checkEnvelope(b); err != nil {
		return nil, err
	}
	var payload []byte
	switch b.Compression {
	case watchpostv1.Compression_COMPRESSION_ZSTD:
		out, err := d.zstd.DecodeAll(b.Payload, make([]byte, 0, b.UncompressedSize))
		if err != nil {
			if errors.Is(err, zstd.ErrDecoderSizeExceeded) || errors.Is(err, zstd.ErrWindowSizeExceeded) || len(out) > int(b.UncompressedSize) {
				return nil, tooLarge("batch.payload", "decompresses beyond %d bytes", d.limits.MaxUncompressedBytes)
			}
			return nil, fieldErr("batch.payload", "zstd: %v", err)
		}
		payload = out
	case watchpostv1.Compression_COMPRESSION_NONE:
		payload = b.Payload
	}
	if len(payload) != int(b.UncompressedSize) {
		return nil, fieldErr("batch.uncompressed_size", "declared %d bytes, payload has %d", b.UncompressedSize, len(payload))
	}
	dec := &Decoded{Events: make([]*watchpostv1.Event, 0, b.EventCount), Raw: make([][]byte, 0, b.EventCount)}
	v := validator{limits: &d.limits, agentID: b.AgentId, bootID: b.BootId}
	for i := 0; len(payload) > 0; i++ {
		if i >= int(b.EventCount) {
			return nil, fieldErr("batch.event_count", "declared %d events, payload has more", b.EventCount)
		}
		num, typ, n := protowire.ConsumeTag(payload)
		if n < 0 || num != 1 || typ != protowire.BytesType {
			return nil, fieldErr(fmt.Sprintf("batch.events[%d]", i), "malformed event list record")
		}
		payload = payload[n:]
		raw, m := protowire.ConsumeBytes(payload)
		if m < 0 {
			return nil, fieldErr(fmt.Sprintf("batch.events[%d]", i), "truncated event")
		}
		payload = payload[m:]
		ev := &watchpostv1.Event{}
		if err := proto.Unmarshal(raw, ev); err != nil {
			return nil, fieldErr(fmt.Sprintf("batch.events[%d]", i), "decoding: %v", err)
		}
		if err := v.event(i, ev); err != nil {
			return nil, err
		}
		dec.Events = append(dec.Events, ev)
		dec.Raw = append(dec.Raw, raw)
	}
	if len(dec.Events) != int(b.EventCount) {
		return nil, fieldErr("batch.event_count", "declared %d events, payload has %d", b.EventCount, len(dec.Events))
	}
	return dec, nil
}

func (d *Decoder) checkEnvelope(b *watchpostv1.Batch) error {
	switch {
	case b.AgentId == "" || len(b.AgentId) > 128:
		return fieldErr("batch.agent_id", "must be 1 to 128 bytes")
	case b.BootId == "" || len(b.BootId) > 64:
		return fieldErr("batch.boot_id", "must be 1 to 64 bytes")
	case b.RunId == "" || len(b.RunId) > 64:
		return fieldErr("batch.run_id", "must be 1 to 64 bytes")
	case b.BatchSeq == 0:
		return fieldErr("batch.batch_seq", "must be at least 1")
	case b.Compression != watchpostv1.Compression_COMPRESSION_ZSTD && b.Compression != watchpostv1.Compression_COMPRESSION_NONE:
		return fieldErr("batch.compression", "unsupported value %d", int32(b.Compression))
	case b.EventCount == 0:
		return fieldErr("batch.event_count", "must be at least 1")
	case int(b.EventCount) > d.limits.MaxEvents:
		return tooLarge("batch.event_count", "%d exceeds the limit of %d events", b.EventCount, d.limits.MaxEvents)
	case int64(b.UncompressedSize) > int64(d.limits.MaxUncompressedBytes):
		return tooLarge("batch.uncompressed_size", "%d exceeds the limit of %d bytes", b.UncompressedSize, d.limits.MaxUncompressedBytes)
	}
	return nil
}
