// Package industrial tags events with the plant protocols and fieldbus
// devices they touch: a socket on a known industrial port carries the
// protocol's name, an opened serial device carries its fieldbus class, and
// raw or packet sockets are marked as able to sniff layer-2 traffic
// (GOOSE, PROFINET RT, EtherCAT).
//
// Ports are conventions, not proof: the tag is a hint that keeps the
// process, binary and parent beside it. Serial devices are classified by
// the opened inode's device number, never by the path a process used.
package industrial

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/watchpost/watchpost/agent/event"
)

// Protocol is one industrial protocol and where it listens by default.
type Protocol struct {
	Name      string `yaml:"name"`
	Transport string `yaml:"transport"` // tcp, udp or both
	Ports     string `yaml:"ports"`     // "502", "34962-34964", "502,802"
}

// Serial is a class of serial/fieldbus character devices by major number.
type Serial struct {
	Name     string `yaml:"name"`
	Major    uint32 `yaml:"major"`
	MinorMin uint32 `yaml:"minor_min"` // majors shared with other drivers (4: tty/ttyS) start here
}

// DefaultProtocols is the table of ../docs/industrial.md.
func DefaultProtocols() []Protocol {
	return []Protocol{
		{"modbus", "tcp", "502"}, {"modbus-tls", "tcp", "802"},
		{"s7comm", "tcp", "102"}, // also IEC 61850 MMS and ICCP/TASE.2
		{"dnp3", "both", "20000"}, {"dnp3-tls", "tcp", "19999"},
		{"iec104", "tcp", "2404"}, {"iec104-tls", "tcp", "19998"},
		{"opcua", "tcp", "4840"}, {"opcua-tls", "tcp", "4843"},
		{"enip", "both", "44818"}, {"enip-io", "udp", "2222"},
		{"bacnet", "udp", "47808-47823"},
		{"profinet", "both", "34962-34964"},
		{"ethercat", "udp", "34980"},
		{"mqtt", "tcp", "1883"}, {"mqtt-tls", "tcp", "8883"},
		{"hart-ip", "both", "5094"},
		{"fox", "tcp", "1911"}, {"fox-tls", "tcp", "4911"},
		{"ff-hse", "both", "1089-1091"},
		{"codesys", "tcp", "2455"}, {"codesys-gw", "udp", "1740"},
		{"fins", "both", "9600"},
		{"tristation", "udp", "1502"},
		{"srtp", "tcp", "18245-18246"},
		{"slmp", "tcp", "5006"}, {"slmp", "udp", "5007"},
		{"rocplus", "both", "4000"},
		{"pi", "tcp", "5450"},
	}
}

// DefaultSerial lists the serial device classes common on gateways.
func DefaultSerial() []Serial {
	return []Serial{
		{"ttyS", 4, 64}, {"ttyUSB", 188, 0}, {"ttyACM", 166, 0}, {"ttymxc", 207, 16}, {"ttyAMA", 204, 64},
	}
}

type portKey struct {
	proto string // tcp or udp
	port  uint16
}

// Classifier applies the tables to events.
type Classifier struct {
	ports  map[portKey]string
	serial []Serial
	// statFailed reads the device number of a failed open from the file
	// system (a device whose driver is absent fails with ENXIO before the
	// kernel ever has a struct file to report).
	statFailed bool
	// ephemeral is the kernel's local port range for outgoing
	// connections (net.ipv4.ip_local_port_range): a port in it is more
	// likely a client's than a server's.
	ephemeral [2]uint16
}

// New compiles the tables; errors name the bad entry.
func New(protocols []Protocol, serial []Serial) (*Classifier, error) {
	c := &Classifier{ports: make(map[portKey]string), serial: serial, statFailed: true, ephemeral: localPortRange("/proc/sys/net/ipv4/ip_local_port_range")}
	for i, p := range protocols {
		if p.Name == "" {
			return nil, fmt.Errorf("industrial.protocols[%d].name: empty", i)
		}
		var transports []string
		switch p.Transport {
		case "tcp", "udp":
			transports = []string{p.Transport}
		case "both", "":
			transports = []string{"tcp", "udp"}
		default:
			return nil, fmt.Errorf("industrial.protocols[%d].transport: %q is not tcp, udp or both", i, p.Transport)
		}
		ports, err := ParsePorts(p.Ports)
		if err != nil {
			return nil, fmt.Errorf("industrial.protocols[%d].ports: %w", i, err)
		}
		for _, t := range transports {
			for _, port := range ports {
				if _, dup := c.ports[portKey{t, port}]; !dup {
					c.ports[portKey{t, port}] = p.Name
				}
			}
		}
	}
	for i, s := range serial {
		if s.Name == "" || s.Major == 0 {
			return nil, fmt.Errorf("industrial.serial[%d]: needs a name and a major number", i)
		}
	}
	return c, nil
}

// ParsePorts reads a port list: "502", "502,802", "34962-34964" (ranges of
// at most 1024 ports).
func ParsePorts(s string) ([]uint16, error) {
	var out []uint16
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.ParseUint(lo, 10, 16)
		if err != nil || a == 0 {
			return nil, fmt.Errorf("%q is not a port or range", part)
		}
		b := a
		if isRange {
			if b, err = strconv.ParseUint(hi, 10, 16); err != nil || b < a || b-a > 1024 {
				return nil, fmt.Errorf("%q is not a port range (low-high, at most 1024 ports)", part)
			}
		}
		for p := a; p <= b; p++ {
			out = append(out, uint16(p))
		}
	}
	return out, nil
}

// Protocol returns the protocol on a transport and port, or "".
func (c *Classifier) Protocol(transport string, port uint16) string {
	return c.ports[portKey{transport, port}]
}

// Apply tags ev in place.
func (c *Classifier) Apply(ev *event.Event) {
	switch {
	case ev.Net != nil:
		c.applyNet(ev)
	case ev.File != nil && ev.Kind == event.KindFileOpen:
		c.applyOpen(ev)
	}
}

func (c *Classifier) applyNet(ev *event.Event) {
	n := ev.Net
	if ev.Kind == event.KindNetSocket {
		// Packet sockets and raw IP sockets can read others' traffic;
		// netlink sockets (raw too) talk to the kernel and cannot.
		if n.Family == "packet" || (n.SockType == "raw" && (n.Family == "inet" || n.Family == "inet6")) {
			ev.Industrial = &event.Industrial{Sniffing: true}
		}
		return
	}
	if n.Protocol != "tcp" && n.Protocol != "udp" {
		return
	}
	if name := c.serverProtocol(ev.Kind, n); name != "" {
		ev.Industrial = &event.Industrial{Protocol: name}
	}
}

// serverProtocol is the protocol of the server side of a flow: the peer's
// port when this host made the connection, the local port when it
// listens or accepted. UDP has no such roles: a port counts unless it is
// in the ephemeral range while the other one is not (a client's port that
// happens to fall in a protocol's range: DNS from port 34964 is not
// PROFINET).
func (c *Classifier) serverProtocol(k event.Kind, n *event.Net) string {
	peer, local := c.Protocol(n.Protocol, n.DstPort), c.Protocol(n.Protocol, n.SrcPort)
	listening := k == event.KindNetListen || k == event.KindNetBind || (k == event.KindNetInventory && n.State == "listen")
	inbound := listening || k == event.KindNetAccept || n.Direction == "inbound"
	if n.Protocol == "tcp" {
		if inbound {
			return local
		}
		return peer
	}
	if listening {
		return local
	}
	peerEph, localEph := c.isEphemeral(n.DstPort), c.isEphemeral(n.SrcPort)
	first, second := peer, local
	firstOK, secondOK := !peerEph || localEph, !localEph || peerEph
	if inbound {
		first, second, firstOK, secondOK = local, peer, secondOK, firstOK
	}
	switch {
	case first != "" && firstOK:
		return first
	case second != "" && secondOK:
		return second
	}
	return ""
}

func (c *Classifier) isEphemeral(port uint16) bool {
	return port >= c.ephemeral[0] && port <= c.ephemeral[1]
}

// localPortRange reads the ephemeral port range, or Linux's default.
func localPortRange(path string) [2]uint16 {
	r := [2]uint16{32768, 60999}
	b, err := os.ReadFile(path)
	if err != nil {
		return r
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return r
	}
	lo, err1 := strconv.ParseUint(f[0], 10, 16)
	hi, err2 := strconv.ParseUint(f[1], 10, 16)
	if err1 != nil || err2 != nil || lo == 0 || lo > hi {
		return r
	}
	return [2]uint16{uint16(lo), uint16(hi)}
}

func (c *Classifier) applyOpen(ev *event.Event) {
	f := ev.File
	rdev := f.RDev
	if rdev == "" && f.Result < 0 && c.statFailed && deviceFailure(f.Result, f.Path) {
		rdev = statCharDev(f.Path)
	}
	if rdev == "" {
		return
	}
	var major, minor uint32
	if _, err := fmt.Sscanf(rdev, "%d:%d", &major, &minor); err != nil {
		return
	}
	for _, s := range c.serial {
		if s.Major == major && minor >= s.MinorMin {
			ev.Industrial = &event.Industrial{Fieldbus: s.Name, Device: f.Path}
			if f.RDev == "" {
				f.RDev, f.DevKind = rdev, "char"
			}
			return
		}
	}
}

// deviceFailure: errors that an open of a device node without a driver
// (or with a busy one) returns, or any failure under /dev.
func deviceFailure(result int32, path string) bool {
	switch syscall.Errno(-result) {
	case unix.ENXIO, unix.ENODEV, unix.EBUSY:
		return true
	}
	return strings.HasPrefix(path, "/dev/")
}

func statCharDev(path string) string {
	fi, err := os.Stat(path)
	if err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return ""
	}
	rdev := fi.Sys().(*syscall.Stat_t).Rdev
	return fmt.Sprintf("%d:%d", unix.Major(rdev), unix.Minor(rdev))
}
