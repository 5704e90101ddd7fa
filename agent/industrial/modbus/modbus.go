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

// Parse limits.
const (
	// MaxADUs bounds the ADUs parsed from one packet.
	MaxADUs = 8
	// MaxLength is the largest MBAP length field: unit id plus a 253-byte PDU.
	MaxLength = 254
	// headerLen is the MBAP header and the function code.
	headerLen = 8
)

// Field flags: which of Address, Count and Value the ADU carried.
const (
	HasAddress uint8 = 1 << iota
	HasCount
	HasValue
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
	Value       uint16 // single writes; the first register or coil byte(s) of a multiple write
}

// Code is the function code without the exception bit.
func (a ADU) Code() uint8 { return a.Function &^ 0x80 }

// IsException says the ADU is an exception response.
func (a ADU) IsException() bool { return a.Function&0x80 != 0 }

// Parse reads the ADUs of one TCP payload in order, at most MaxADUs, into
// out (which it reuses). malformed is set when the payload does not end on
// an ADU boundary: a header shorter than 8 bytes, a protocol id other than
// 0, a length out of range or larger than the rest of the payload (a
// message split across segments). Parsing stops there: what follows cannot
// be framed, and nothing of the malformed part is returned.
func Parse(payload []byte, request bool, out []ADU) (adus []ADU, malformed bool) {
	adus = out[:0]
	for i := 0; i < MaxADUs && len(payload) > 0; i++ {
		if len(payload) < headerLen {
			return adus, true
		}
		length := binary.BigEndian.Uint16(payload[4:6])
		if binary.BigEndian.Uint16(payload[2:4]) != 0 || length < 2 || length > MaxLength || int(length)+6 > len(payload) {
			return adus, true
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
	return adus, false
}

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
			a.Address = binary.BigEndian.Uint16(pdu[0:2])
			a.Count = binary.BigEndian.Uint16(pdu[2:4])
			a.Flags = HasAddress | HasCount
		}
	case 5, 6:
		if len(pdu) >= 4 {
			a.Address = binary.BigEndian.Uint16(pdu[0:2])
			a.Value = binary.BigEndian.Uint16(pdu[2:4])
			a.Flags = HasAddress | HasValue
		}
	case 15, 16:
		if len(pdu) >= 4 {
			a.Address = binary.BigEndian.Uint16(pdu[0:2])
			a.Count = binary.BigEndian.Uint16(pdu[2:4])
			a.Flags = HasAddress | HasCount
		}
		// A request's byte count, then the values: the first two bytes
		// (one register, or sixteen coils), or the one byte there is.
		if request && len(pdu) >= 7 && pdu[4] >= 2 {
			a.Value = binary.BigEndian.Uint16(pdu[5:7])
			a.Flags |= HasValue
		} else if request && len(pdu) >= 6 && pdu[4] == 1 {
			a.Value = uint16(pdu[5])
			a.Flags |= HasValue
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
	ClassDiagnostic
	ClassException
)

var classNames = [...]string{"other", "read", "write", "diagnostic", "exception"}

func (c Class) String() string {
	if int(c) < len(classNames) {
		return classNames[c]
	}
	return "other"
}

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
	17:  {"report_server_id", ClassDiagnostic},
	20:  {"read_file_record", ClassRead},
	21:  {"write_file_record", ClassWrite},
	22:  {"mask_write_register", ClassWrite},
	23:  {"read_write_multiple_registers", ClassWrite},
	24:  {"read_fifo_queue", ClassRead},
	43:  {"encapsulated_interface_transport", ClassDiagnostic},
	90:  {"umas", ClassWrite},     // Schneider engineering: programming
	125: {"firmware", ClassWrite}, // firmware replacement
}

// FunctionName names a function code (exception bit ignored); unknown
// codes are "fc_<n>".
func FunctionName(fc uint8) string {
	if f, ok := functions[fc&^0x80]; ok {
		return f.name
	}
	return "fc_" + strconv.Itoa(int(fc&^0x80))
}

// ClassOf classes an ADU: exception responses are ClassException whatever
// the function.
func ClassOf(a ADU) Class {
	if a.IsException() {
		return ClassException
	}
	return functions[a.Function].class
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
