package spool

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"
)

func seeds(f *testing.F) {
	good := appendRecord(nil, 1, 3, 3, []byte{0x22, 0x01, 0x62, 0x38, 0x03})
	good = appendRecord(good, 2, 1, 4, bytes.Repeat([]byte{0x30}, 40))
	f.Add(good)
	f.Add(good[:len(good)-7])
	bad := bytes.Clone(good)
	bad[headerSize+2] ^= 0x40
	f.Add(bad)
	f.Add(append([]byte("garbage before"), good...))
	f.Add([]byte{})
}

// checkScan fails when Scan returned a record whose checksums do not match
// or accounted for the bytes wrongly.
func checkScan(t *testing.T, data []byte) ScanResult {
	res := Scan(data)
	var total int64
	for _, r := range res.Records {
		if checksum(r.Payload) != r.PayloadCRC {
			t.Fatalf("record at %d: payload checksum mismatch", r.Offset)
		}
		h, ok := decodeHeader(data[r.Offset:])
		if !ok || h.payloadCRC != r.PayloadCRC || int(h.length) != len(r.Payload) {
			t.Fatalf("record at %d: header does not match", r.Offset)
		}
		total += r.Size()
	}
	if res.End+res.TailBytes != int64(len(data)) || total > res.End {
		t.Fatalf("end %d + tail %d != %d, or records %d beyond end", res.End, res.TailBytes, len(data), total)
	}
	return res
}

// FuzzScan feeds arbitrary bytes to the segment scanner (fast: no files).
func FuzzScan(f *testing.F) {
	seeds(f)
	f.Fuzz(func(t *testing.T, data []byte) { checkScan(t, data) })
}

// FuzzRecover feeds arbitrary bytes to recovery as a segment file: it must
// never panic, never return a record whose checksums do not match, and the
// spool must open and hand out only intact batches.
func FuzzRecover(f *testing.F) {
	seeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		res := checkScan(t, data)
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "0000000000000001.seg"), data, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := New(Config{Dir: dir}, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		defer s.Shutdown(context.Background())
		n := 0
		for b := s.Next(0); b != nil; b = s.Next(b.BatchSeq) {
			n++
		}
		if n > len(res.Records) {
			t.Fatalf("spool handed out %d batches from %d intact records", n, len(res.Records))
		}
	})
}
