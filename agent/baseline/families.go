package baseline

import (
	"net/netip"
	"strconv"
	"strings"

	"github.com/watchpost/watchpost/agent/event"
)

// Family is one kind of item the baseline learns. Every item's first field
// is its subject: the executable it is about (module loads: the module).
type Family uint8

// Families, in the order status reports them.
const (
	FamilyExec      Family = iota // executable, parent executable
	FamilyArgs                    // executable, argument shape
	FamilyUser                    // executable, effective uid
	FamilyFileWrite               // executable, written directory prefix
	FamilyConnect                 // executable, peer address:port/protocol
	FamilyAccept                  // executable, local port/protocol, peer address
	FamilyListen                  // executable, local address:port/protocol
	FamilyDevice                  // executable, fieldbus device class or device
	FamilyModule                  // kernel module name
	familyCount
)

var familyNames = [familyCount]string{"exec", "args", "user", "file_write", "connect", "accept", "listen", "device", "module"}

// familyFields names the fields of each family's items, for explanations
// and the CLI.
var familyFields = [familyCount][]string{
	{"exe", "parent"}, {"exe", "args"}, {"exe", "uid"}, {"exe", "dir"}, {"exe", "peer"},
	{"exe", "local", "peer"}, {"exe", "local"}, {"exe", "device"}, {"module"},
}

// familyLevel is the alert level of a new item of each family: a new
// program, listener, device user or kernel module is what an intruder
// brings; a new peer or user is often one too; new arguments and written
// directories are the noisiest and the weakest signals.
var familyLevel = [familyCount]string{"high", "low", "medium", "low", "medium", "medium", "high", "high", "high"}

func (f Family) String() string {
	if f < familyCount {
		return familyNames[f]
	}
	return "family(" + strconv.Itoa(int(f)) + ")"
}

// ParseFamily maps a name back to its Family.
func ParseFamily(name string) (Family, bool) {
	for i, n := range familyNames {
		if n == name {
			return Family(i), true
		}
	}
	return 0, false
}

// FamilyNames lists the families' names.
func FamilyNames() []string { return append([]string(nil), familyNames[:]...) }

// sep separates an item's fields in its key; it cannot occur in paths the
// kernel reports or in the normalised fields.
const sep = '\x00'

// keyer builds items' keys into one reused buffer, so that looking up a
// known item allocates nothing.
type keyer struct{ buf []byte }

func (k *keyer) start(fields ...string) []byte {
	k.buf = k.buf[:0]
	for i, f := range fields {
		if i > 0 {
			k.buf = append(k.buf, sep)
		}
		k.buf = append(k.buf, f...)
	}
	return k.buf
}

func (k *keyer) field(f string) []byte {
	k.buf = append(k.buf, sep)
	k.buf = append(k.buf, f...)
	return k.buf
}

// splitKey returns an item's fields.
func splitKey(key string) []string { return strings.Split(key, string(sep)) }

// exeOf is the executable an event is about: the kernel's path, or the
// command name in brackets when there is none (kernel threads).
func exeOf(p *event.Process) string {
	if p.Exe != "" {
		return p.Exe
	}
	return "[" + p.Comm + "]"
}

func parentOf(ev *event.Event) string {
	if len(ev.Ancestry) == 0 {
		return "?"
	}
	a := &ev.Ancestry[0]
	if a.Exe != "" {
		return a.Exe
	}
	return "[" + a.Comm + "]"
}

// maxArgs and maxArgBytes bound an argument shape.
const (
	maxArgs     = 8
	maxArgBytes = 64
)

// appendShape appends the shape of a command line's arguments (argv[1:]):
// runs of digits become #, hexadecimal or random-looking words of 8 and
// more characters become *, each argument is cut at maxArgBytes and only
// the first maxArgs count, so that dates, pids, sizes and temporary names
// do not make every run of a periodic job new.
func appendShape(b []byte, args []string) []byte {
	if len(args) > 0 {
		args = args[1:]
	}
	for i, a := range args {
		if i == maxArgs {
			b = append(b, " …"...)
			break
		}
		if i > 0 {
			b = append(b, ' ')
		}
		b = appendNormalised(b, a, maxArgBytes)
	}
	return b
}

// appendNormalised appends s with digit runs as # and random-looking
// words as *, cut at limit bytes of s.
func appendNormalised(b []byte, s string, limit int) []byte {
	if len(s) > limit {
		s = s[:limit]
	}
	for i := 0; i < len(s); {
		c := s[i]
		if isWordByte(c) {
			j := i
			for j < len(s) && isWordByte(s[j]) {
				j++
			}
			b = appendWord(b, s[i:j])
			i = j
			continue
		}
		b = append(b, c)
		i++
	}
	return b
}

func isWordByte(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// appendWord appends one alphanumeric word: digits collapse to #; a word
// of 8 or more characters that mixes digits with letters (hashes, mktemp
// suffixes, uuids' parts) becomes *.
func appendWord(b []byte, w string) []byte {
	digits, letters := 0, 0
	for i := 0; i < len(w); i++ {
		if w[i] >= '0' && w[i] <= '9' {
			digits++
		} else {
			letters++
		}
	}
	switch {
	case letters == 0:
		return append(b, '#')
	case digits > 0 && len(w) >= 8:
		return append(b, '*')
	}
	for i := 0; i < len(w); {
		if w[i] >= '0' && w[i] <= '9' {
			for i < len(w) && w[i] >= '0' && w[i] <= '9' {
				i++
			}
			b = append(b, '#')
			continue
		}
		b = append(b, w[i])
		i++
	}
	return b
}

// appendDirPrefix appends the directory prefix of a written path under
// one of the watched roots: the root and at most depth more directories,
// each normalised as words are. It returns false when the path is under no
// root.
func appendDirPrefix(b []byte, path string, roots []string, depth int) ([]byte, bool) {
	root := ""
	for _, r := range roots {
		if strings.HasPrefix(path, r) && (len(path) == len(r) || path[len(r)] == '/' || r == "/") {
			if len(r) > len(root) {
				root = r
			}
		}
	}
	if root == "" {
		return b, false
	}
	b = append(b, root...)
	rest := strings.TrimPrefix(path[len(root):], "/")
	// The last component is the file itself.
	if i := strings.LastIndexByte(rest, '/'); i >= 0 {
		rest = rest[:i]
	} else {
		return b, true
	}
	for n := 0; n < depth && rest != ""; n++ {
		comp := rest
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			comp, rest = rest[:i], rest[i+1:]
		} else {
			rest = ""
		}
		if root != "/" || n > 0 {
			b = append(b, '/')
		}
		b = appendNormalised(b, comp, maxArgBytes)
	}
	return b, true
}

func appendUint(b []byte, v uint64) []byte { return strconv.AppendUint(b, v, 10) }

// appendAddrPort appends addr:port/protocol (IPv6 in brackets).
func appendAddrPort(b []byte, addr string, port uint16, proto string) []byte {
	if strings.IndexByte(addr, ':') >= 0 {
		b = append(b, '[')
		b = append(b, addr...)
		b = append(b, ']')
	} else {
		b = append(b, addr...)
	}
	b = append(b, ':')
	b = appendUint(b, uint64(port))
	b = append(b, '/')
	return append(b, proto...)
}

// appendPeer appends an outgoing peer as addr:port/protocol. A public
// (globally routed) address counts by its network, /16 for IPv4 and /32
// for IPv6: mirrors, NTP pools and cloud endpoints rotate addresses within
// their provider's networks, while plant networks are private and keep
// every address.
func appendPeer(b []byte, addr string, port uint16, proto string) []byte {
	if a, err := netip.ParseAddr(addr); err == nil && a.IsGlobalUnicast() && !a.IsPrivate() {
		bits := 16
		if a.Is6() {
			bits = 32
		}
		if p, err := a.Prefix(bits); err == nil {
			b = p.AppendTo(b)
			b = append(b, ':')
			b = appendUint(b, uint64(port))
			b = append(b, '/')
			return append(b, proto...)
		}
	}
	return appendAddrPort(b, addr, port, proto)
}
