package kernel

import (
	"net/netip"
	"testing"
	"unsafe"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/watchpost/watchpost/agent/industrial/inspect"
	"github.com/watchpost/watchpost/agent/industrial/modbus"
)

// icsRecord is a WP_EV_ICS_OP record as the kernel sends it: only the
// used ADU entries.
func icsRecord(e *wpWpIcsEvent) []byte {
	e.Hdr.Type = uint16(wpWpEventTypeWP_EV_ICS_OP)
	n := icsFixedSize + int(e.Nadus)*icsADUSize
	return append([]byte(nil), unsafe.Slice((*byte)(unsafe.Pointer(e)), unsafe.Sizeof(*e))[:n]...)
}

func TestDecodeSegment(t *testing.T) {
	var e wpWpIcsEvent
	e.Hdr.Pid, e.Hdr.TsBootNs = 42, 1000
	e.Hdr.Comm[0], e.Hdr.Comm[1], e.Hdr.Comm[2] = 'h', 'm', 'i'
	e.Cookie, e.SegLen, e.Family, e.Lport, e.Rport = 7, 24, 2, 40000, 502
	e.Proto = uint8(wpWpIcsProtoWP_ICS_MODBUS)
	e.Flags = uint8(wpWpIcsFlagsWP_ICS_F_REQUEST | wpWpIcsFlagsWP_ICS_F_OWNER)
	e.Malformed = uint8(modbus.Truncated)
	e.Laddr = netip.MustParseAddr("::ffff:10.0.0.2").As16()
	e.Raddr = netip.MustParseAddr("::ffff:10.0.0.9").As16()
	e.Nadus = 2
	e.Adus[0] = wpWpIcsAdu{Transaction: 1, Length: 6, Unit: 1, Function: 3, Flags: modbus.HasAddress | modbus.HasCount, Address: 10, Count: 5}
	e.Adus[1] = wpWpIcsAdu{Transaction: 2, Length: 6, Unit: 1, Function: 6, Flags: modbus.HasAddress | modbus.HasValue, Address: 7, Nvalues: 1, Values: [8]uint16{0x1234}}
	d := newDecoder(newBootClock(), 8)
	seg, err := d.decodeSegment(icsRecord(&e))
	if err != nil {
		t.Fatal(err)
	}
	want := &inspect.Segment{BootNS: 1000, Owned: true, Cookie: 7, Protocol: "modbus", Request: true,
		Local: netip.MustParseAddrPort("10.0.0.2:40000"), Remote: netip.MustParseAddrPort("10.0.0.9:502"), Bytes: 24,
		Malformed: modbus.Truncated,
		ADUs: []modbus.ADU{
			{Transaction: 1, Length: 6, Unit: 1, Function: 3, Flags: modbus.HasAddress | modbus.HasCount, Address: 10, Count: 5},
			{Transaction: 2, Length: 6, Unit: 1, Function: 6, Flags: modbus.HasAddress | modbus.HasValue, Address: 7, NValues: 1, Values: [8]uint16{0x1234}},
		}}
	if diff := cmp.Diff(want, seg, cmpopts.IgnoreFields(inspect.Segment{}, "Time", "Process"), cmpopts.EquateComparable(netip.AddrPort{})); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if seg.Process.PID != 42 || seg.Process.Comm != "hmi" || seg.Role() != "client" {
		t.Errorf("process %+v role %s", seg.Process, seg.Role())
	}
	// A record cut inside its ADUs, or claiming more than it holds, is refused.
	raw := icsRecord(&e)
	if _, err := d.decodeSegment(raw[:len(raw)-1]); err == nil {
		t.Error("a short record decoded")
	}
	raw[unsafe.Offsetof(e.Nadus)] = 9
	if _, err := d.decodeSegment(raw); err == nil {
		t.Error("9 ADUs decoded")
	}
}

// FuzzDecodeSegment: no record crashes the segment decoder, and it never
// returns more messages than the record held.
func FuzzDecodeSegment(f *testing.F) {
	var e wpWpIcsEvent
	e.Nadus = 1
	f.Add(icsRecord(&e))
	f.Add([]byte{})
	d := newDecoder(newBootClock(), 8)
	f.Fuzz(func(t *testing.T, raw []byte) {
		seg, err := d.decodeSegment(raw)
		if err != nil {
			return
		}
		if icsFixedSize+len(seg.ADUs)*icsADUSize > len(raw) || len(seg.ADUs) > modbus.MaxADUs {
			t.Fatalf("%d ADUs from %d bytes", len(seg.ADUs), len(raw))
		}
	})
}
