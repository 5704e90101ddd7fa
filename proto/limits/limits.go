// Package limits holds the sizes one event may have, shared by the agent
// (which clamps every event to them before it leaves the host) and the
// collector (which enforces them on what it receives). It imports neither:
// both import it, so the two ends cannot drift apart.
//
// Clamping keeps the head and the tail of what is too long and cuts the
// middle: the first and the last arguments of an over-long command line,
// the first and the last components of an over-long path (the file name and
// its directory matter most). Every cut is recorded (Truncation), so a
// shortened event says so.
package limits

import (
	"strings"
	"unicode/utf8"
)

// Bounds enforced by the collector (its defaults: ingest.max_string_bytes,
// ingest.max_list_len, ingest.max_event_bytes). An event within them is
// stored as sent; a field beyond them is stored shortened and flagged.
const (
	// StringBytes bounds any string field.
	StringBytes = 16 << 10
	// ListLen bounds any list (argv, environment, ancestry, counters, programs).
	ListLen = 1024
	// EventBytes bounds one serialized event.
	EventBytes = 512 << 10
	// CompressionRatio bounds a batch's uncompressed size over its
	// compressed size: beyond it the collector sees a decompression bomb.
	// The agent sends a batch that compresses better uncompressed.
	CompressionRatio = 100
	// HeartbeatBytes bounds one serialized heartbeat (the agent's are a
	// few KiB: counters and program names).
	HeartbeatBytes = 64 << 10
)

// Sizes the agent clamps to: well inside the collector's bounds (the sum
// of them all stays under EventBytes), so that whatever the agent sends is
// accepted as it is.
const (
	// PathBytes bounds a path (exe, cwd, file and security paths): PATH_MAX.
	PathBytes = 4096
	// TextBytes bounds free text: security names and parameters, the
	// syscall name, gap reasons.
	TextBytes = 4096
	// NameBytes bounds short names: comm, tty, container, host, network
	// and industrial names, counter kinds and reasons, versions, program
	// names.
	NameBytes = 256
	// Args bounds argv entries, ArgBytes one entry and ArgsBytes all of them.
	Args      = 256
	ArgBytes  = 4096
	ArgsBytes = 32 << 10
	// Env, EnvVarBytes and EnvBytes bound a captured environment the same way.
	Env         = 256
	EnvVarBytes = 4096
	EnvBytes    = 32 << 10
	// Ancestry bounds the ancestors an event carries (the nearest are
	// kept); each ancestor's argv is bounded by AncestorArgs entries and
	// AncestorArgsBytes bytes.
	Ancestry          = 16
	AncestorArgs      = 32
	AncestorArgsBytes = 2048
	// Counters bounds counter lists (health, gap markers); Programs and
	// ProgramsBytes the attached program names.
	Counters      = 256
	Programs      = 512
	ProgramsBytes = 32 << 10
	// AlertMatches bounds a detection alert's matched fields (each value
	// AlertMatchBytes) and AlertEvents the events it names.
	AlertMatches    = 32
	AlertMatchBytes = 1024
	AlertEvents     = 64
)

// Ellipsis marks where a string was cut.
const Ellipsis = "…"

// Truncation describes one shortened field: its original size.
type Truncation struct {
	Field   string `json:"field"`             // "process.args", "file.path", "ancestry[0].args"
	Entries uint32 `json:"entries,omitempty"` // original entries of a list (0 for a string)
	Bytes   uint64 `json:"bytes"`             // original bytes of the string, or of all entries of the list
}

// String shortens s to at most max bytes, keeping its head and tail around
// an Ellipsis (cut on UTF-8 boundaries). It reports whether it cut.
func String(s string, max int) (string, bool) {
	if len(s) <= max {
		return s, false
	}
	if max < len(Ellipsis)+2 {
		return validPrefix(s, max), true
	}
	room := max - len(Ellipsis)
	head := validPrefix(s, room/2)
	tail := validSuffix(s, room-len(head))
	return head + Ellipsis + tail, true
}

// Path shortens a path to at most max bytes, keeping whole components
// where it can: the first one and as many of the last ones as fit, with
// "/…/" between them ("/var/…/c/d/file"). A path whose last component alone
// is too long is cut like any string.
func Path(p string, max int) (string, bool) {
	if len(p) <= max {
		return p, false
	}
	sep := "/" + Ellipsis + "/"
	// The head: the first component ("/var" of "/var/lib/...").
	head := ""
	if i := strings.IndexByte(p[1:], '/'); i >= 0 && p[0] == '/' {
		head = p[:i+1]
	}
	// The tail: as many whole trailing components as fit.
	budget := max - len(head) - len(sep)
	tail := ""
	for i := len(p) - 1; i > len(head) && budget > 0; i-- {
		if p[i] == '/' {
			if len(p)-i-1 > budget {
				break
			}
			tail = p[i+1:]
		}
	}
	if tail == "" {
		return String(p, max)
	}
	return head + sep + tail, true
}

// List shortens a list of strings to at most maxEntries entries of at most
// maxEntry bytes, maxBytes in total: the first and the last entries are kept
// (up to half of the room each), the middle ones dropped, and over-long
// entries are shortened with String. It reports whether it changed anything.
func List(in []string, maxEntries, maxEntry, maxBytes int) ([]string, bool) {
	total, long := 0, false
	for _, s := range in {
		total += len(s)
		long = long || len(s) > maxEntry
	}
	if len(in) <= maxEntries && total <= maxBytes && !long {
		return in, false
	}
	// Take entries alternately from the front and the back while they fit.
	front, back := make([]string, 0, min(len(in), maxEntries)), []string(nil)
	used := 0
	i, j := 0, len(in)-1
	for i <= j && len(front)+len(back) < maxEntries {
		var s string
		fromFront := len(front) <= len(back)
		if fromFront {
			s = in[i]
		} else {
			s = in[j]
		}
		s, _ = String(s, maxEntry)
		if used+len(s) > maxBytes {
			// The last entry that fits partly, shortened to the room left.
			if room := maxBytes - used; room > len(Ellipsis)+2 {
				s, _ = String(s, room)
			} else {
				break
			}
		}
		used += len(s)
		if fromFront {
			front = append(front, s)
			i++
		} else {
			back = append(back, s)
			j--
		}
	}
	out := front
	for k := len(back) - 1; k >= 0; k-- {
		out = append(out, back[k])
	}
	return out, true
}

// Bytes is the sum of the lengths of ss.
func Bytes(ss []string) uint64 {
	var n uint64
	for _, s := range ss {
		n += uint64(len(s))
	}
	return n
}

// validPrefix is the longest prefix of s of at most n bytes that does not
// split a UTF-8 sequence.
func validPrefix(s string, n int) string {
	if n >= len(s) {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// validSuffix is the longest suffix of s of at most n bytes that starts on
// a UTF-8 sequence boundary.
func validSuffix(s string, n int) string {
	if n >= len(s) {
		return s
	}
	i := len(s) - n
	for i < len(s) && !utf8.RuneStart(s[i]) {
		i++
	}
	return s[i:]
}
