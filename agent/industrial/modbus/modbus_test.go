package modbus

import (
	"encoding/binary"
	"reflect"
	"testing"
)

// adu builds one Modbus/TCP ADU: MBAP header, unit, function and PDU data.
func adu(tid uint16, unit, fc uint8, data ...byte) []byte {
	b := make([]byte, 8, 8+len(data))
	binary.BigEndian.PutUint16(b[0:2], tid)
	binary.BigEndian.PutUint16(b[4:6], uint16(2+len(data)))
	b[6], b[7] = unit, fc
	return append(b, data...)
}

func TestParseFields(t *testing.T) {
	cases := []struct {
		name    string
		payload []byte
		request bool
		want    ADU
	}{
		{"read holding request", adu(7, 1, 3, 0x00, 0x64, 0x00, 0x0a), true,
			ADU{Transaction: 7, Length: 6, Unit: 1, Function: 3, Flags: HasAddress | HasCount, Address: 100, Count: 10}},
		{"read holding response", adu(7, 1, 3, 4, 0, 1, 0, 2), false,
			ADU{Transaction: 7, Length: 7, Unit: 1, Function: 3}},
		{"write single register", adu(9, 2, 6, 0x00, 0x05, 0x12, 0x34), true,
			ADU{Transaction: 9, Length: 6, Unit: 2, Function: 6, Flags: HasAddress | HasValue, Address: 5, NValues: 1, Values: [MaxValues]uint16{0x1234}}},
		{"write multiple coils", adu(10, 1, 15, 0x00, 0x13, 0x00, 0x0a, 2, 0xcd, 0x01), true,
			ADU{Transaction: 10, Length: 9, Unit: 1, Function: 15, Flags: HasAddress | HasCount | HasValue, Address: 19, Count: 10, NValues: 2, Values: [MaxValues]uint16{0xcd, 0x01}}},
		{"write multiple coils, one byte", adu(11, 1, 15, 0x00, 0x01, 0x00, 0x03, 1, 0x05), true,
			ADU{Transaction: 11, Length: 8, Unit: 1, Function: 15, Flags: HasAddress | HasCount | HasValue, Address: 1, Count: 3, NValues: 1, Values: [MaxValues]uint16{5}}},
		{"write multiple registers response", adu(12, 1, 16, 0x00, 0x01, 0x00, 0x02), false,
			ADU{Transaction: 12, Length: 6, Unit: 1, Function: 16, Flags: HasAddress | HasCount, Address: 1, Count: 2}},
		{"exception", adu(13, 1, 0x83, 2), false,
			ADU{Transaction: 13, Length: 3, Unit: 1, Function: 0x83, Exception: 2}},
		{"write multiple registers, values capped", adu(14, 1, 16, 0, 7, 0, 10, 20, 0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 8, 0, 9, 0, 10), true,
			ADU{Transaction: 14, Length: 27, Unit: 1, Function: 16, Flags: HasAddress | HasCount | HasValue, Address: 7, Count: 10, NValues: 8, Values: [MaxValues]uint16{1, 2, 3, 4, 5, 6, 7, 8}}},
		{"write multiple registers, byte count beyond the PDU", adu(15, 1, 16, 0, 7, 0, 2, 4, 0, 1, 0), true,
			ADU{Transaction: 15, Length: 10, Unit: 1, Function: 16, Flags: HasAddress | HasCount | HasValue, Address: 7, Count: 2, NValues: 1, Values: [MaxValues]uint16{1}}},
		{"mask write", adu(16, 1, 22, 0, 4, 0xff, 0x00, 0x00, 0x12), true,
			ADU{Transaction: 16, Length: 8, Unit: 1, Function: 22, Flags: HasAddress | HasValue, Address: 4, NValues: 2, Values: [MaxValues]uint16{0xff00, 0x12}}},
		{"read/write multiple: the write half", adu(17, 1, 23, 0, 1, 0, 2, 0, 9, 0, 1, 2, 0xab, 0xcd), true,
			ADU{Transaction: 17, Length: 13, Unit: 1, Function: 23, Flags: HasAddress | HasCount, Address: 9, Count: 1}},
		{"diagnostics restart", adu(18, 1, 8, 0, 1, 0, 0), true,
			ADU{Transaction: 18, Length: 6, Unit: 1, Function: 8, Flags: HasSub, Sub: 1}},
		{"read device identification", adu(19, 1, 43, 14, 1, 0), true,
			ADU{Transaction: 19, Length: 5, Unit: 1, Function: 43, Flags: HasSub, Sub: 14}},
	}
	for _, c := range cases {
		got, bad := Parse(c.payload, c.request, nil)
		if bad != WellFormed || len(got) != 1 || !reflect.DeepEqual(got[0], c.want) {
			t.Errorf("%s: got %+v malformed=%v, want %+v", c.name, got, bad, c.want)
		}
	}
}

func TestParseSeveralADUs(t *testing.T) {
	var p []byte
	for i := range MaxADUs + 2 {
		p = append(p, adu(uint16(i), 1, 3, 0, byte(i), 0, 1)...)
	}
	got, bad := Parse(p, true, make([]ADU, 0, MaxADUs))
	if bad != WellFormed || len(got) != MaxADUs {
		t.Fatalf("got %d ADUs malformed=%v, want %d", len(got), bad, MaxADUs)
	}
	for i, a := range got {
		if a.Transaction != uint16(i) || a.Address != uint16(i) {
			t.Errorf("ADU %d: %+v", i, a)
		}
	}
}

func TestParseMalformed(t *testing.T) {
	long := adu(1, 1, 16, 0, 1, 0, 1, 2, 0, 1)
	binary.BigEndian.PutUint16(long[4:6], 200) // length beyond the packet
	badProto := adu(1, 1, 3, 0, 0, 0, 1)
	badProto[2] = 1
	tooLong := adu(1, 1, 3, 0, 0, 0, 1)
	binary.BigEndian.PutUint16(tooLong[4:6], MaxLength+1)
	good := adu(1, 1, 3, 0, 0, 0, 1)
	cases := map[string]struct {
		p    []byte
		good int
		why  Malformed
	}{
		"garbage":              {[]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), 0, ProtocolID},
		"length beyond packet": {long, 0, Overrun},
		"header split":         {good[:5], 0, Truncated},
		"body split":           {good[:10], 0, Overrun},
		"protocol id":          {badProto, 0, ProtocolID},
		"length over max":      {tooLong, 0, Length},
		"good then split":      {append(append([]byte{}, good...), good[:4]...), 1, Truncated},
		"length below unit+fc": {func() []byte { b := adu(1, 1, 3); binary.BigEndian.PutUint16(b[4:6], 1); return b }(), 0, Length},
	}
	for name, c := range cases {
		got, bad := Parse(c.p, true, nil)
		if bad != c.why || len(got) != c.good {
			t.Errorf("%s: got %d ADUs malformed=%v, want %d and %v", name, len(got), bad, c.good, c.why)
		}
	}
	if got, bad := Parse(nil, true, nil); bad != WellFormed || len(got) != 0 {
		t.Errorf("empty payload: %v %v", got, bad)
	}
}

func TestTable(t *testing.T) {
	for _, c := range []struct {
		a     ADU
		name  string
		class Class
	}{
		{ADU{Function: 3}, "read_holding_registers", ClassRead},
		{ADU{Function: 6}, "write_single_register", ClassWrite},
		{ADU{Function: 15}, "write_multiple_coils", ClassWrite},
		{ADU{Function: 8}, "diagnostics", ClassDiagnostic},
		{ADU{Function: 8, Flags: HasSub, Sub: 4}, "diagnostics", ClassControl},
		{ADU{Function: 43, Flags: HasSub, Sub: 14}, "encapsulated_interface_transport", ClassRecon},
		{ADU{Function: 17}, "report_server_id", ClassRecon},
		{ADU{Function: 90}, "umas", ClassProgram},
		{ADU{Function: 0x83, Exception: 2}, "read_holding_registers", ClassRead},
		{ADU{Function: 99}, "fc_99", ClassOther},
	} {
		if n, cl := FunctionName(c.a.Function), ClassOf(c.a); n != c.name || cl != c.class {
			t.Errorf("fc %d: %s %s, want %s %s", c.a.Function, n, cl, c.name, c.class)
		}
	}
	if ExceptionName(2) != "illegal_data_address" || ExceptionName(77) != "exception_77" {
		t.Errorf("exception names: %s %s", ExceptionName(2), ExceptionName(77))
	}
}

// FuzzParse holds Parse to its contract on any payload: it never panics,
// returns at most MaxADUs, and the ADUs it returns re-frame the payload's
// prefix exactly (each starts where the previous one's length ends).
func FuzzParse(f *testing.F) {
	f.Add(adu(1, 1, 3, 0, 0, 0, 10), true)
	f.Add(adu(1, 1, 0x83, 2), false)
	f.Add(append(adu(1, 1, 15, 0, 1, 0, 3, 1, 5), adu(2, 1, 6, 0, 1, 0, 2)...), true)
	f.Add([]byte{0, 1, 0, 0, 0, 200, 1, 3}, true)
	f.Fuzz(func(t *testing.T, p []byte, request bool) {
		got, bad := Parse(p, request, nil)
		if len(got) > MaxADUs {
			t.Fatalf("%d ADUs", len(got))
		}
		off := 0
		for _, a := range got {
			if a.Length < 2 || a.Length > MaxLength || off+6+int(a.Length) > len(p) {
				t.Fatalf("ADU %+v at %d outside the payload of %d", a, off, len(p))
			}
			if binary.BigEndian.Uint16(p[off:]) != a.Transaction || p[off+6] != a.Unit || p[off+7] != a.Function {
				t.Fatalf("ADU %+v does not match the bytes at %d", a, off)
			}
			off += 6 + int(a.Length)
		}
		if a := len(got); a > 0 && got[a-1].NValues > MaxValues {
			t.Fatalf("%d values", got[a-1].NValues)
		}
		if bad == WellFormed && len(got) < MaxADUs && off != len(p) {
			t.Fatalf("not malformed, but %d of %d bytes framed", off, len(p))
		}
	})
}
