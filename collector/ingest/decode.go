// Package ingest decodes and validates agent batches. Decoding is bounded
// before any work: the declared uncompressed size, event count and
// compression ratio are checked against the limits first, and the payload
// is decompressed only up to the declared size. One bad event never costs
// the events beside it: a malformed event is refused alone, an over-long
// field is shortened (head and tail kept, the cut recorded in the event's
// header), a time in the future is clamped, and each is counted by reason.
// Only a batch whose envelope or framing is broken is refused whole;
// errors name the offending field.
package ingest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/watchpost/watchpost/proto/limits"
	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

// Limits bound what one batch may contain.
type Limits struct {
	// MaxUncompressedBytes caps a batch's serialized events (32 MiB).
	MaxUncompressedBytes int
	// MaxEvents caps the events in one batch (10000).
	MaxEvents int
	// MaxStringBytes caps every string field (16 KiB); longer ones are shortened.
	MaxStringBytes int
	// MaxListLen caps repeated fields: args, ancestry, counters, programs
	// (1024); longer ones are shortened.
	MaxListLen int
	// MaxEventBytes caps one serialized event after shortening (512 KiB);
	// a larger one is refused.
	MaxEventBytes int
	// MaxCompressionRatio caps uncompressed size / compressed size (100):
	// a decompression bomb is refused before it is decompressed.
	MaxCompressionRatio int
	// MaxClockSkew is how far past its receipt an event's time may be
	// (5m); later times are clamped to the receipt time and flagged.
	MaxClockSkew time.Duration
}

// DefaultLimits are the limits used when none are configured.
func DefaultLimits() Limits {
	return Limits{MaxUncompressedBytes: 32 << 20, MaxEvents: 10000, MaxStringBytes: limits.StringBytes, MaxListLen: limits.ListLen,
		MaxEventBytes: limits.EventBytes, MaxCompressionRatio: limits.CompressionRatio, MaxClockSkew: 5 * time.Minute}
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

// Decoded is a batch as it will be stored: the accepted events and, for
// each, its serialized bytes (as sent, or serialized again when it was
// shortened or clamped), and what was refused or altered.
type Decoded struct {
	Events []*watchpostv1.Event
	Raw    [][]byte
	// Refused and Truncated count events refused and events stored
	// shortened; Reasons counts events by reason (refused_*, truncated,
	// time_clamped, host_mismatch); First describes the first problem.
	Refused, Truncated int
	Reasons            map[string]uint64
	First              string
}

func (d *Decoded) count(reason string) {
	if d.Reasons == nil {
		d.Reasons = map[string]uint64{}
	}
	d.Reasons[reason]++
}

func (d *Decoded) problem(what string) {
	if d.First == "" {
		d.First = what
	}
}

// Decoder decodes batches. It is safe for concurrent use.
type Decoder struct {
	limits Limits
	zstd   sync.Pool // *zstd.Decoder, one stream each
}

// NewDecoder returns a decoder enforcing the limits; zero fields take the
// defaults.
func NewDecoder(l Limits) (*Decoder, error) {
	d := DefaultLimits()
	for _, f := range []struct{ v, into *int }{{&l.MaxUncompressedBytes, &d.MaxUncompressedBytes}, {&l.MaxEvents, &d.MaxEvents},
		{&l.MaxStringBytes, &d.MaxStringBytes}, {&l.MaxListLen, &d.MaxListLen}, {&l.MaxEventBytes, &d.MaxEventBytes},
		{&l.MaxCompressionRatio, &d.MaxCompressionRatio}} {
		if *f.v > 0 {
			*f.into = *f.v
		}
	}
	if l.MaxClockSkew > 0 {
		d.MaxClockSkew = l.MaxClockSkew
	}
	dec := &Decoder{limits: d}
	// Probe the options once so that a bad limit is an error here, not in the pool.
	zd, err := dec.newZstd()
	if err != nil {
		return nil, fmt.Errorf("creating zstd decoder: %w", err)
	}
	dec.zstd.Put(zd)
	return dec, nil
}

func (d *Decoder) newZstd() (*zstd.Decoder, error) {
	return zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxMemory(uint64(d.limits.MaxUncompressedBytes)),
		zstd.WithDecoderMaxWindow(uint64(min(d.limits.MaxUncompressedBytes, 1<<30))),
	)
}

// Limits returns the limits in force.
func (d *Decoder) Limits() Limits { return d.limits }

// Close releases the pooled zstd decoders.
func (d *Decoder) Close() {
	for {
		zd, ok := d.zstd.Get().(*zstd.Decoder)
		if !ok {
			return
		}
		zd.Close()
	}
}

// decompress inflates a zstd payload into exactly size bytes. It stops
// decompressing once size+1 bytes would be produced, so a bomb costs no
// more than what it declared.
func (d *Decoder) decompress(payload []byte, size int) ([]byte, error) {
	zd, _ := d.zstd.Get().(*zstd.Decoder)
	if zd == nil {
		var err error
		if zd, err = d.newZstd(); err != nil {
			return nil, fieldErr("batch.payload", "zstd: %v", err)
		}
	}
	defer d.zstd.Put(zd)
	if err := zd.Reset(bytes.NewReader(payload)); err != nil {
		return nil, fieldErr("batch.payload", "zstd: %v", err)
	}
	defer func() { _ = zd.Reset(nil) }()
	out := make([]byte, size)
	n, err := io.ReadFull(zd, out)
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return nil, fieldErr("batch.uncompressed_size", "declared %d bytes, payload has %d", size, n)
	case errors.Is(err, zstd.ErrDecoderSizeExceeded) || errors.Is(err, zstd.ErrWindowSizeExceeded):
		return nil, tooLarge("batch.payload", "decompresses beyond %d bytes", d.limits.MaxUncompressedBytes)
	case err != nil:
		return nil, fieldErr("batch.payload", "zstd: %v", err)
	}
	var one [1]byte
	if m, err := zd.Read(one[:]); m > 0 || (err != nil && !errors.Is(err, io.EOF)) {
		if m > 0 {
			return nil, tooLarge("batch.payload", "decompresses beyond the declared %d bytes", size)
		}
		return nil, fieldErr("batch.payload", "zstd: %v", err)
	}
	return out, nil
}

// Decode checks the batch's envelope, decompresses its payload within the
// limits, splits it into events and validates each one. received is the
// receipt time (times more than MaxClockSkew after it are clamped; zero
// disables the clamp). A malformed event is refused alone and counted; an
// error is returned only for a batch that cannot be split into events.
func (d *Decoder) Decode(b *watchpostv1.Batch, received time.Time) (*Decoded, error) {
	if err := d.Check(b); err != nil {
		return nil, err
	}
	var payload []byte
	switch b.Compression {
	case watchpostv1.Compression_COMPRESSION_ZSTD:
		out, err := d.decompress(b.Payload, int(b.UncompressedSize))
		if err != nil {
			return nil, err
		}
		payload = out
	case watchpostv1.Compression_COMPRESSION_NONE:
		payload = b.Payload
	}
	if len(payload) != int(b.UncompressedSize) {
		return nil, fieldErr("batch.uncompressed_size", "declared %d bytes, payload has %d", b.UncompressedSize, len(payload))
	}
	dec := &Decoded{Events: make([]*watchpostv1.Event, 0, b.EventCount), Raw: make([][]byte, 0, b.EventCount)}
	v := validator{limits: &d.limits, agentID: b.AgentId, bootID: b.BootId, received: received}
	i := 0
	for ; len(payload) > 0; i++ {
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
		d.event(dec, &v, i, raw)
	}
	if i != int(b.EventCount) {
		return nil, fieldErr("batch.event_count", "declared %d events, payload has %d", b.EventCount, i)
	}
	return dec, nil
}

// event decodes, checks and adds one event, or counts its refusal.
func (d *Decoder) event(dec *Decoded, v *validator, i int, raw []byte) {
	refuse := func(reason string, err *FieldError) {
		dec.Refused++
		dec.count("refused_" + reason)
		dec.problem(err.Error() + ": event refused")
	}
	ev := &watchpostv1.Event{}
	if err := proto.Unmarshal(raw, ev); err != nil {
		refuse(RefusedDecode, fieldErr(fmt.Sprintf("batch.events[%d]", i), "decoding: %v", err))
		return
	}
	if p := v.event(i, ev); p != nil {
		refuse(p.reason, p.err)
		return
	}
	h := ev.Header
	if h.Host != "" && h.Host != v.agentID {
		dec.count(AlteredHost) // shown as claimed_host; host is the identity
	}
	if v.altered {
		if h.TimeClamped && (v.received.UnixNano() == h.TimeUnixNano) {
			dec.count(AlteredTimeClamped)
		}
		if len(v.truncated) > 0 {
			dec.Truncated++
			dec.count(AlteredTruncated)
			t := v.truncated[0]
			dec.problem(fmt.Sprintf("%s%s: %s, stored shortened", v.prefix, t.Field, sizeText(t)))
		}
		var err error
		if raw, err = proto.Marshal(ev); err != nil {
			refuse(RefusedDecode, fieldErr(fmt.Sprintf("batch.events[%d]", i), "encoding: %v", err))
			return
		}
	}
	if len(raw) > d.limits.MaxEventBytes {
		refuse(RefusedTooLarge, tooLarge(fmt.Sprintf("batch.events[%d]", i), "%d bytes exceeds the limit of %d", len(raw), d.limits.MaxEventBytes))
		return
	}
	dec.Events = append(dec.Events, ev)
	dec.Raw = append(dec.Raw, raw)
}

func sizeText(t *watchpostv1.Truncation) string {
	if t.Entries > 0 {
		return fmt.Sprintf("%d entries (%d bytes) exceed the limits", t.Entries, t.Bytes)
	}
	return fmt.Sprintf("%d bytes exceed the limit", t.Bytes)
}

// Check checks a batch's envelope against the limits, before any work:
// identity fields, declared event count, declared size and compression ratio.
func (d *Decoder) Check(b *watchpostv1.Batch) error {
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
	case b.Compression == watchpostv1.Compression_COMPRESSION_ZSTD &&
		int64(b.UncompressedSize) > int64(d.limits.MaxCompressionRatio)*int64(max(len(b.Payload), 1)):
		return tooLarge("batch.uncompressed_size", "%d bytes from %d compressed exceeds the compression ratio limit of %d",
			b.UncompressedSize, len(b.Payload), d.limits.MaxCompressionRatio)
	}
	return nil
}
