package spool

import (
	"encoding/binary"
	"hash/crc32"
)

// A segment file is a sequence of records, each a fixed header followed by
// its payload (a serialized watchpostv1.Batch). All integers are little
// endian.
//
//	off size field
//	  0    4 payload length in bytes
//	  4    4 events in the batch
//	  8    8 batch sequence
//	 16    8 events spooled so far, including this record (crash accounting)
//	 24    4 CRC32C (Castagnoli) of the payload
//	 28    4 CRC32C of bytes 0..27 of this header
//
// The header has its own checksum so that a record whose payload is damaged
// can be skipped exactly (its length and event count are still trusted), and
// so that a damaged header is never mistaken for a record.
const (
	headerSize = 32
	// MaxPayload bounds one record; a header announcing more is damaged.
	MaxPayload = 64 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func checksum(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// header is a decoded record header.
type header struct {
	length       uint32
	events       uint32
	seq          uint64
	spooledAfter uint64
	payloadCRC   uint32
}

func (h header) encode(dst []byte) {
	binary.LittleEndian.PutUint32(dst[0:], h.length)
	binary.LittleEndian.PutUint32(dst[4:], h.events)
	binary.LittleEndian.PutUint64(dst[8:], h.seq)
	binary.LittleEndian.PutUint64(dst[16:], h.spooledAfter)
	binary.LittleEndian.PutUint32(dst[24:], h.payloadCRC)
	binary.LittleEndian.PutUint32(dst[28:], checksum(dst[:28]))
}

// decodeHeader returns the header at b and whether its checksum and length
// are valid. b must hold at least headerSize bytes.
func decodeHeader(b []byte) (header, bool) {
	h := header{
		length:       binary.LittleEndian.Uint32(b[0:]),
		events:       binary.LittleEndian.Uint32(b[4:]),
		seq:          binary.LittleEndian.Uint64(b[8:]),
		spooledAfter: binary.LittleEndian.Uint64(b[16:]),
		payloadCRC:   binary.LittleEndian.Uint32(b[24:]),
	}
	ok := binary.LittleEndian.Uint32(b[28:]) == checksum(b[:28]) && h.length <= MaxPayload
	return h, ok
}

// appendRecord appends the framed record of payload to dst.
func appendRecord(dst []byte, seq uint64, events uint32, spooledAfter uint64, payload []byte) []byte {
	var hdr [headerSize]byte
	header{length: uint32(len(payload)), events: events, seq: seq, spooledAfter: spooledAfter, payloadCRC: checksum(payload)}.encode(hdr[:])
	dst = append(dst, hdr[:]...)
	return append(dst, payload...)
}

// Record is one intact record found by Scan.
type Record struct {
	Offset       int64 // of the header in the segment
	Seq          uint64
	Events       uint32
	SpooledAfter uint64
	Payload      []byte // aliases the scanned bytes
	PayloadCRC   uint32
}

// Size is the record's size on disk.
func (r Record) Size() int64 { return headerSize + int64(len(r.Payload)) }

// ScanResult is what Scan found in one segment.
type ScanResult struct {
	Records []Record
	// CorruptRecords had an intact header but a payload that failed its
	// checksum; they were skipped, and CorruptEvents is the sum of their
	// event counts.
	CorruptRecords int
	CorruptEvents  uint64
	// SkippedBytes were skipped to find the next intact record after a
	// damaged header (their event count is unknown).
	SkippedBytes int64
	// End is where the intact data ends. Bytes from End on (TailBytes of
	// them) are an incomplete last record or garbage: a torn tail when the
	// segment was the one being written.
	End       int64
	TailBytes int64
}

// Scan reads the records of a segment. It never returns a record whose
// header or payload checksum does not match; damaged records are skipped
// and counted, and a damaged header is skipped by searching for the next
// intact record.
func Scan(data []byte) ScanResult {
	var res ScanResult
	off := 0
	for off < len(data) {
		if len(data)-off < headerSize {
			break
		}
		h, ok := decodeHeader(data[off:])
		end := off + headerSize + int(h.length)
		if !ok || end > len(data) {
			// A damaged header, or an incomplete record: a torn write,
			// unless an intact record follows (then the damage is in the
			// middle and the bytes up to it are skipped).
			next := resync(data, off+1)
			if next < 0 {
				break
			}
			res.SkippedBytes += int64(next - off)
			off = next
			continue
		}
		payload := data[off+headerSize : end]
		if checksum(payload) != h.payloadCRC {
			res.CorruptRecords++
			res.CorruptEvents += uint64(h.events)
			off = end
			continue
		}
		res.Records = append(res.Records, Record{
			Offset: int64(off), Seq: h.seq, Events: h.events, SpooledAfter: h.spooledAfter,
			Payload: payload, PayloadCRC: h.payloadCRC,
		})
		off = end
	}
	res.End = int64(off)
	res.TailBytes = int64(len(data) - off)
	return res
}

// resync returns the offset of the next intact record (header and payload
// checksums match) at or after from, or -1.
func resync(data []byte, from int) int {
	for i := from; i+headerSize <= len(data); i++ {
		h, ok := decodeHeader(data[i:])
		if !ok {
			continue
		}
		end := i + headerSize + int(h.length)
		if end > len(data) {
			continue
		}
		if checksum(data[i+headerSize:end]) == h.payloadCRC {
			return i
		}
	}
	return -1
}
