package event

import (
	"errors"
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// The stdout JSON of an event is written by AppendJSON (json_gen.go),
// generated from the types' json tags by internal/jsongen: the output is
// byte for byte what encoding/json writes with SetEscapeHTML(false), without
// reflection or allocation per event. TestAppendJSONMatchesEncodingJSON
// holds it to that over every type. After changing a type, run
// `go generate ./agent/event` (make generate).
//go:generate go run -tags jsongen ./internal/jsongen -out json_gen.go

// errUnsupportedFloat is what encoding/json refuses too: NaN and ±Inf.
var errUnsupportedFloat = errors.New("json: unsupported value: NaN or Inf")

// errTimeRange mirrors time.Time.MarshalJSON's refusal of years outside [0,9999].
var errTimeRange = errors.New("json: time year outside of range [0,9999]")

const hexDigits = "0123456789abcdef"

// jsonSafe marks the ASCII bytes that encoding/json writes unescaped
// when HTML escaping is off.
var jsonSafe = func() (s [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		s[c] = c != '"' && c != '\\'
	}
	return s
}()

// appendString appends s as a JSON string exactly as encoding/json does
// with SetEscapeHTML(false): invalid UTF-8 becomes \ufffd, U+2028 and
// U+2029 are escaped.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if jsonSafe[c] {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// appendFloat formats like encoding/json: ES6 number conversion.
func appendFloat(b []byte, f float64, bits int) ([]byte, error) {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return b, errUnsupportedFloat
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 {
		if bits == 64 && (abs < 1e-6 || abs >= 1e21) || bits == 32 && (float32(abs) < 1e-6 || float32(abs) >= 1e21) {
			format = 'e'
		}
	}
	b = strconv.AppendFloat(b, f, format, -1, bits)
	if format == 'e' {
		// e-09 becomes e-9, as encoding/json writes it
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b, nil
}

// appendTime writes what time.Time.MarshalJSON writes.
func appendTime(b []byte, t time.Time) ([]byte, error) {
	if y := t.Year(); y < 0 || y > 9999 {
		return b, errTimeRange
	}
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"'), nil
}

// textAppender is a value whose JSON is its text (encoding.TextAppender).
type textAppender interface {
	AppendText(b []byte) ([]byte, error)
}

// appendText writes a text-marshalled value as a JSON string: appended in
// place, escaped afterwards only when it needs it.
func appendText[T textAppender](b []byte, v T) ([]byte, error) {
	b = append(b, '"')
	start := len(b)
	b, err := v.AppendText(b)
	if err != nil {
		return b, err
	}
	for _, c := range b[start:] {
		if c >= utf8.RuneSelf || !jsonSafe[c] {
			s := string(b[start:])
			b = appendString(b[:start-1], s)
			return b, nil
		}
	}
	return append(b, '"'), nil
}

// appendUint and appendInt write a single digit directly: most counters,
// ids and flags of an event are 0 or small.
func appendUint(b []byte, v uint64) []byte {
	if v < 10 {
		return append(b, byte('0'+v))
	}
	return strconv.AppendUint(b, v, 10)
}

func appendInt(b []byte, v int64) []byte {
	if v >= 0 && v < 10 {
		return append(b, byte('0'+v))
	}
	return strconv.AppendInt(b, v, 10)
}
