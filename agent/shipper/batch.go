package shipper

import (
	"fmt"

	"github.com/klauspost/compress/zstd"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/watchpost/watchpost/proto/limits"
	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

// eventListField is the field number of EventList.events: a serialized
// EventList is the concatenation of (tag, length, event) records, so
// events can be appended one by one without building the whole message.
const eventListField = 1

// BatchBuilder accumulates serialized events and seals them into a
// zstd-compressed Batch. It is not safe for concurrent use.
type BatchBuilder struct {
	buf    []byte
	count  int
	enc    *zstd.Encoder
	sizeOp proto.MarshalOptions
	appOp  proto.MarshalOptions
}

// NewBatchBuilder returns a builder compressing at the given zstd level.
func NewBatchBuilder(level zstd.EncoderLevel) (*BatchBuilder, error) {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(level), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return nil, fmt.Errorf("creating zstd encoder: %w", err)
	}
	return &BatchBuilder{enc: enc, appOp: proto.MarshalOptions{UseCachedSize: true}}, nil
}

// Add appends one event.
func (b *BatchBuilder) Add(ev *watchpostv1.Event) error {
	n := b.sizeOp.Size(ev)
	b.buf = protowire.AppendTag(b.buf, eventListField, protowire.BytesType)
	b.buf = protowire.AppendVarint(b.buf, uint64(n))
	var err error
	if b.buf, err = b.appOp.MarshalAppend(b.buf, ev); err != nil {
		return fmt.Errorf("marshalling event: %w", err)
	}
	b.count++
	return nil
}

// Count and Size report the events and uncompressed bytes added so far.
func (b *BatchBuilder) Count() int { return b.count }
func (b *BatchBuilder) Size() int  { return len(b.buf) }

// Seal compresses what was added into a new Batch and resets the builder.
func (b *BatchBuilder) Seal(agentID, bootID, runID string, seq uint64) *watchpostv1.Batch {
	out := &watchpostv1.Batch{
		AgentId:          agentID,
		BootId:           bootID,
		RunId:            runID,
		BatchSeq:         seq,
		Compression:      watchpostv1.Compression_COMPRESSION_ZSTD,
		Payload:          b.enc.EncodeAll(b.buf, make([]byte, 0, len(b.buf)/3+64)),
		EventCount:       uint32(b.count),
		UncompressedSize: uint32(len(b.buf)),
	}
	// The collector refuses a ratio beyond limits.CompressionRatio as a
	// decompression bomb. Highly repetitive events (a flood of the same
	// command line) can compress that well: such a batch goes uncompressed.
	if len(b.buf) > limits.CompressionRatio*len(out.Payload) {
		out.Compression, out.Payload = watchpostv1.Compression_COMPRESSION_NONE, append([]byte(nil), b.buf...)
	}
	b.buf = b.buf[:0]
	b.count = 0
	return out
}

// Close releases the encoder.
func (b *BatchBuilder) Close() { _ = b.enc.Close() }
