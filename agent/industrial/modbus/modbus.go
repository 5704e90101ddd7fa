// Package modbus parses the fields Watchpost reports of Modbus/TCP ADUs
// (MBAP header, function code, address, count, first value, exception
// code) within fixed bounds, and holds the function code table that names
// and classes them. It never allocates per ADU and never returns a part of
// a malformed payload.
package modbus

import (
	"encoding/binary"
	"strconv"
)

// Port is the registered Modbus/TCP port.
const Port = 502

// Parse limits. The kernel's parser (bpf/ics.h) has the same ones.
const (
	// MaxADUs bounds the ADUs parsed from one packet.
	MaxADUs = 8
	// MaxValues bounds the values kept of one write: registers, or coil
	// bytes (eight coils each).
	MaxValues = 8
	// MaxLength is the largest MBAP length field: unit id plus a 253-byte PDU.
	MaxLength = 254
	// headerLen is the MBAP header and the function code.
	headerLen = 8
)

// Field flags: which of Address, Count, Values and Sub the ADU carried.
const (
	HasAddress uint8 = 1 << iota
	HasCount
	HasValue
	HasSub
)

// ADU is the inspected part of one Modbus/TCP application data unit.
type ADU struct {
	Transaction uint16
	Length      uint16 // MBAP length: unit id and PDU
	Unit        uint8
	Function    uint8 // as sent, exception bit included
	Exception   uint8 // exception code of an exception response
	Flags       uint8
	Address     uint16
	Count       uint16
	// Sub is the diagnostics sub-function (FC 8) or the MEI type (FC 43).
	Sub uint16
	// Values are the first values written: the value of a single write, the
	// first registers of a multiple write, the first coil bytes of a
	// multiple coil write (eight coils each, the lowest address in bit 0),
	// the AND and OR masks of a mask write. NValues of them are set.
	NValues uint8
	Values  [MaxValues]uint16
}

// Code is the function code without the exception bit.
func (a ADU) Code() uint8 { return a.Function &^ 0x80 }

// IsException says the ADU is an exception response.
func (a ADU) IsException() bool { return a.Function&0x80 != 0 }

// Malformed says why a payload did not frame as ADUs to its end.
type Malformed uint8

// Reasons, in the order Parse checks them. The kernel counts the same.
const (
	WellFormed Malformed = iota
	// Truncated: fewer than the 8 bytes of a header and function code are
	// left (a header cut across segments, or a stray byte).
	Truncated
	// ProtocolID: the MBAP protocol id is not 0 (not Modbus, or garbage).
	ProtocolID
	// Length: the MBAP length is below 2 or above MaxLength.
	Length
	// Overrun: the length runs past the payload (an ADU split across
	// segments, or a lying length field).
	Overrun
)

var malformedNames = [...]string{"", "truncated", "protocol_id", "length", "overrun"}

func (m Malformed) String() string {
	if int(m) < len(malformedNames) {
		return malformedNames[m]
	}
	return "malformed_" + strconv.Itoa(int(m))
}

// MalformedReasons lists the reasons in counter order (Truncated first).
func MalformedReasons() []Malformed { return []Malformed{Truncated, ProtocolID, Length, Overrun} }

// Parse reads the ADUs of one TCP payload in order, at most MaxADUs, into
// out (which it reuses). bad says why the payload does not end on an ADU
// boundary (WellFormed when it does, or when MaxADUs were read first).
// Parsing stops there: what follows cannot be framed, and nothing of the
// malformed part is returned.
func Parse(payload []byte, request bool, out []ADU) (adus []ADU, bad Malformed) {
	adus = out[:0]
	for i := 0; i < MaxADUs && len(payload) > 0; i++ {
		if len(payload) < headerLen {
			return adus, Truncated
		}
		length := binary.BigEndian.Uint16(payload[4:6])
		switch {
		case binary.BigEndian.Uint16(payload[2:4]) != 0:
			return adus, ProtocolID
		case length < 2 || length > MaxLength:
			return adus, Length
		case int(length)+6 > len(payload):
			return adus, Overrun
		}
		a := ADU{
			Transaction: binary.BigEndian.Uint16(payload[0:2]),
			Length:      length,
			Unit:        payload[6],
			Function:    payload[7],
		}
		pdu := payload[8 : 6+int(length)] // after the function code
		fields(&a, pdu, request)
		adus = append(adus, a)
		payload = payload[6+int(length):]
	}
	return adus, WellFormed
}

func be16(b []byte) uint16 { return binary.BigEndian.Uint16(b) }

// fields reads the function's fields from the rest of its PDU: only what the
// PDU holds in full.
func fields(a *ADU, pdu []byte, request bool) {
	if a.IsException() {
		if len(pdu) >= 1 {
			a.Exception = pdu[0]
		}
		return
	}
	switch a.Function {
	case 1, 2, 3, 4:
		if request && len(pdu) >= 4 {
			a.Address, a.Count = be16(pdu[0:2]), be16(pdu[2:4])
			a.Flags = HasAddress | HasCount
		}
	case 5, 6:
		if len(pdu) >= 4 {
			a.Address = be16(pdu[0:2])
			a.Values[0], a.NValues = be16(pdu[2:4]), 1
			a.Flags = HasAddress | HasValue
		}
	case 8:
		if len(pdu) >= 2 {
			a.Sub = be16(pdu[0:2])
			a.Flags = HasSub
		}
	case 43:
		if len(pdu) >= 1 {
			a.Sub = uint16(pdu[0])
			a.Flags = HasSub
		}
	case 15, 16:
		if len(pdu) < 4 {
			return
		}
		a.Address, a.Count = be16(pdu[0:2]), be16(pdu[2:4])
		a.Flags = HasAddress | HasCount
		if !request || len(pdu) < 6 {
			return
		}
		// A request's byte count, then the values: registers (two bytes
		// each) or coil bytes, as many as the byte count and the PDU hold.
		avail := min(int(pdu[4]), len(pdu)-5)
		n := avail
		if a.Function == 16 {
			n = avail / 2
		}
		n = min(n, MaxValues)
		for i := range n {
			if a.Function == 16 {
				a.Values[i] = be16(pdu[5+2*i:])
			} else {
				a.Values[i] = uint16(pdu[5+i])
			}
		}
		if n > 0 {
			a.NValues = uint8(n)
			a.Flags |= HasValue
		}
	case 22:
		if len(pdu) >= 6 {
			a.Address = be16(pdu[0:2])
			a.Values[0], a.Values[1], a.NValues = be16(pdu[2:4]), be16(pdu[4:6]), 2
			a.Flags = HasAddress | HasValue
		}
	case 23:
		// The write half of read/write multiple registers.
		if request && len(pdu) >= 8 {
			a.Address, a.Count = be16(pdu[4:6]), be16(pdu[6:8])
			a.Flags = HasAddress | HasCount
		}
	}
}

// Class is what a function does to the device.
type Class uint8

// Classes of function codes.
const (
	ClassOther Class = iota
	ClassRead
	ClassWrite
	// ClassProgram changes the device's logic or firmware (UMAS, firmware replacement).
	ClassProgram
	// ClassControl changes how the device runs (restart communications,
	// force listen-only mode, clear counters).
	ClassControl
	ClassDiagnostic
	// ClassRecon identifies the device (report server id, read device id).
	ClassRecon
)

var classNames = [...]string{"other", "read", "write", "program", "control", "diagnostic", "recon"}

func (c Class) String() string {
	if int(c) < len(classNames) {
		return classNames[c]
	}
	return "other"
}

// Urgent says operations of the class change the device: each first one
// is reported at once.
func (c Class) Urgent() bool { return c == ClassWrite || c == ClassProgram || c == ClassControl }

type function struct {
	name  string
	class Class
}

// functions is the public function code table (Modbus Application Protocol
// v1.1b3, with the vendor codes of docs/industrial.md).
var functions = map[uint8]function{
	1:   {"read_coils", ClassRead},
	2:   {"read_discrete_inputs", ClassRead},
	3:   {"read_holding_registers", ClassRead},
	4:   {"read_input_registers", ClassRead},
	5:   {"write_single_coil", ClassWrite},
	6:   {"write_single_register", ClassWrite},
	7:   {"read_exception_status", ClassDiagnostic},
	8:   {"diagnostics", ClassDiagnostic},
	11:  {"get_comm_event_counter", ClassDiagnostic},
	12:  {"get_comm_event_log", ClassDiagnostic},
	15:  {"write_multiple_coils", ClassWrite},
	16:  {"write_multiple_registers", ClassWrite},
	17:  {"report_server_id", ClassRecon},
	20:  {"read_file_record", ClassRead},
	21:  {"write_file_record", ClassWrite},
	22:  {"mask_write_register", ClassWrite},
	23:  {"read_write_multiple_registers", ClassWrite},
	24:  {"read_fifo_queue", ClassRead},
	43:  {"encapsulated_interface_transport", ClassDiagnostic},
	90:  {"umas", ClassProgram},     // Schneider engineering: programming
	125: {"firmware", ClassProgram}, // firmware replacement
}

// FunctionName names a function code (exception bit ignored); unknown
// codes are "fc_<n>".
func FunctionName(fc uint8) string {
	if f, ok := functions[fc&^0x80]; ok {
		return f.name
	}
	return "fc_" + strconv.Itoa(int(fc&^0x80))
}

// Diagnostics sub-functions that change how the device runs, and the MEI
// type that reads its identity.
const (
	diagRestartComms   = 0x0001
	diagForceListen    = 0x0004
	diagClearCounters  = 0x000A
	meiReadDeviceIdent = 0x0E
)

// ClassOf classes an ADU by its function (an exception response by the
// function it answers) and, for diagnostics and encapsulated transport,
// by its sub-function.
func ClassOf(a ADU) Class {
	switch fc := a.Code(); {
	case fc == 8 && a.Flags&HasSub != 0 && (a.Sub == diagRestartComms || a.Sub == diagForceListen || a.Sub == diagClearCounters):
		return ClassControl
	case fc == 43 && a.Flags&HasSub != 0 && a.Sub == meiReadDeviceIdent:
		return ClassRecon
	default:
		return functions[fc].class
	}
}

var exceptions = map[uint8]string{
	1: "illegal_function", 2: "illegal_data_address", 3: "illegal_data_value",
	4: "server_device_failure", 5: "acknowledge", 6: "server_device_busy",
	8: "memory_parity_error", 10: "gateway_path_unavailable", 11: "gateway_target_failed_to_respond",
}

// ExceptionName names an exception code; unknown codes are "exception_<n>".
func ExceptionName(code uint8) string {
	if n, ok := exceptions[code]; ok {
		return n
	}
	return "exception_" + strconv.Itoa(int(code))
}
