// Package respond carries out the agent's response policies: it reads and
// validates the policy file, compiles the policies into the kernel's rules
// (agent/kernel Responder), kills on detection from user space, reloads on
// SIGHUP, on a change of the file and on the collector's push, and holds
// the kill switch. Every policy starts in monitor mode: it reports what it
// would have done. docs/response.md states each action's hook and guarantee.
package respond

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Actions.
const (
	ActionKillExec        = "kill_exec"
	ActionKillOnDetection = "kill_on_detection"
	ActionDenyConnect     = "deny_connect"
	ActionDenySocket      = "deny_socket"
	ActionDenyDevice      = "deny_device"
)

var actions = []string{ActionKillExec, ActionKillOnDetection, ActionDenyConnect, ActionDenySocket, ActionDenyDevice}

// Modes.
const (
	ModeMonitor = "monitor"
	ModeEnforce = "enforce"
)

// Policy is one response policy.
type Policy struct {
	ID          string
	Description string
	Action      string
	Mode        string // monitor (the default) or enforce
	// Selector: the processes the policy applies to; every attribute given
	// must match, any value of an attribute may. Empty: every process.
	Selector Selector
	// Allow: processes exempt from it (any attribute matching exempts).
	Allow   Selector
	Connect *Connect
	Sockets []Socket
	Devices []Device
	// Group: kill on detection kills the process's whole process group.
	Group bool
	// Line is where the policy starts in its file.
	Line int
}

// Selector names processes.
type Selector struct {
	Exe      []string // executable paths (kernel actions: exact, by inode; kill on detection: globs)
	Ancestor []string // an ancestor's executable
	User     []string // user names or uids
	Cgroup   []string // cgroup v2 paths, relative to the cgroup root
	Unit     []string // systemd units (a unit's cgroup)
	Rule     []string // detection rule ids (kill_on_detection), globs
}

func (s Selector) empty() bool {
	return len(s.Exe)+len(s.Ancestor)+len(s.User)+len(s.Cgroup)+len(s.Unit)+len(s.Rule) == 0
}

// Connect names denied destinations (connect and unconnected UDP sends).
type Connect struct {
	Destinations []netip.Prefix // none: any
	Ports        [][2]uint16    // none: any
	Protocol     string         // tcp, udp or any
}

// Socket names a denied kind of socket.
type Socket struct {
	Family   string // inet, inet6, packet, netlink, any
	Type     string // stream, dgram, raw, seqpacket, any
	Protocol int    // -1 any
}

// Device names denied device accesses.
type Device struct {
	Type    string // char, block, any
	Major   int64  // -1 any
	MinorLo uint32
	MinorHi uint32
	Access  []string // read, write, mknod (none: all)
	Name    string   // the well-known name it was given by (ttyUSB ...)
}

// ErrorList is every error of a policy file, each "file:line: key: message".
type ErrorList []string

func (e ErrorList) Error() string { return strings.Join(e, "\n") }

// parser collects errors with their place.
type parser struct {
	file string
	errs ErrorList
}

func (p *parser) errf(n *yaml.Node, key, format string, args ...any) {
	line := 0
	if n != nil {
		line = n.Line
	}
	p.errs = append(p.errs, fmt.Sprintf("%s:%d: %s: %s", p.file, line, key, fmt.Sprintf(format, args...)))
}

// ParseFile reads and validates a policy file.
func ParseFile(name string) ([]Policy, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("policy file: %w", err)
	}
	return Parse(name, b)
}

// Parse validates a policy document; file names it in errors. Every error
// is reported (ErrorList), not only the first.
func Parse(file string, data []byte) ([]Policy, error) {
	p := &parser{file: file}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		// yaml.v3 says "yaml: line N: message": give it as file:N: message.
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		if rest, ok := strings.CutPrefix(msg, "line "); ok {
			if n, m, ok := strings.Cut(rest, ": "); ok {
				return nil, ErrorList{fmt.Sprintf("%s:%s: %s", file, n, m)}
			}
		}
		return nil, ErrorList{fmt.Sprintf("%s: %s", file, msg)}
	}
	if len(doc.Content) == 0 {
		return nil, nil // an empty file: no policies
	}
	root := doc.Content[0]
	var list *yaml.Node
	p.mapping(root, "", func(key string, k, v *yaml.Node) {
		switch key {
		case "policies":
			list = v
		default:
			p.errf(k, key, "unknown key (the file holds \"policies\")")
		}
	})
	var out []Policy
	if list != nil {
		if list.Kind != yaml.SequenceNode {
			p.errf(list, "policies", "must be a list of policies")
		} else {
			ids := map[string]int{}
			for i, n := range list.Content {
				pol := p.policy(n, fmt.Sprintf("policies[%d]", i))
				if pol.ID != "" {
					if first, dup := ids[pol.ID]; dup {
						p.errf(n, fmt.Sprintf("policies[%d].id", i), "%q is also the id of the policy at line %d", pol.ID, first)
					}
					ids[pol.ID] = n.Line
				}
				out = append(out, pol)
			}
		}
	}
	if len(p.errs) > 0 {
		return nil, p.errs
	}
	return out, nil
}

// mapping calls f for every key of a mapping node.
func (p *parser) mapping(n *yaml.Node, where string, f func(key string, k, v *yaml.Node)) {
	if n.Kind != yaml.MappingNode {
		p.errf(n, strings.TrimPrefix(where, "."), "must be a mapping")
		return
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		key := k.Value
		full := key
		if where != "" {
			full = where + "." + key
		}
		if seen[key] {
			p.errf(k, full, "given twice")
			continue
		}
		seen[key] = true
		f(full, k, v)
	}
}

func (p *parser) str(v *yaml.Node, key string) string {
	if v.Kind != yaml.ScalarNode || v.Tag == "!!null" {
		p.errf(v, key, "must be a string")
		return ""
	}
	return v.Value
}

// strs takes a string or a list of strings.
func (p *parser) strs(v *yaml.Node, key string) []string {
	if v.Kind == yaml.ScalarNode {
		if s := p.str(v, key); s != "" {
			return []string{s}
		}
		return nil
	}
	if v.Kind != yaml.SequenceNode {
		p.errf(v, key, "must be a string or a list of strings")
		return nil
	}
	var out []string
	for i, e := range v.Content {
		s := p.str(e, fmt.Sprintf("%s[%d]", key, i))
		if s == "" {
			p.errf(e, fmt.Sprintf("%s[%d]", key, i), "empty")
			continue
		}
		out = append(out, s)
	}
	return out
}

func (p *parser) boolean(v *yaml.Node, key string) bool {
	var b bool
	if v.Kind != yaml.ScalarNode || v.Decode(&b) != nil {
		p.errf(v, key, "must be true or false")
	}
	return b
}

func (p *parser) policy(n *yaml.Node, where string) Policy {
	pol := Policy{Mode: ModeMonitor, Line: n.Line}
	var selNode, allowNode, connNode, sockNode, devNode, killNode *yaml.Node
	p.mapping(n, where, func(key string, k, v *yaml.Node) {
		switch strings.TrimPrefix(key, where+".") {
		case "id":
			pol.ID = p.str(v, key)
		case "description":
			pol.Description = p.str(v, key)
		case "action":
			pol.Action = p.str(v, key)
			if !contains(actions, pol.Action) {
				p.errf(v, key, "%q is not one of %s", pol.Action, strings.Join(actions, ", "))
			}
		case "mode":
			pol.Mode = p.str(v, key)
			if pol.Mode != ModeMonitor && pol.Mode != ModeEnforce {
				p.errf(v, key, "%q is not monitor or enforce", pol.Mode)
			}
		case "selector":
			selNode = v
			pol.Selector = p.selector(v, key, true)
		case "allow":
			allowNode = v
			pol.Allow = p.selector(v, key, false)
		case "connect":
			connNode = v
			pol.Connect = p.connect(v, key)
		case "sockets":
			sockNode = v
			pol.Sockets = p.sockets(v, key)
		case "devices":
			devNode = v
			pol.Devices = p.devices(v, key)
		case "kill":
			killNode = v
			p.mapping(v, key, func(key string, k, v *yaml.Node) {
				switch strings.TrimPrefix(key, where+".kill.") {
				case "group":
					pol.Group = p.boolean(v, key)
				default:
					p.errf(k, key, "unknown key (kill holds group)")
				}
			})
		default:
			p.errf(k, key, "unknown key")
		}
	})
	if n.Kind != yaml.MappingNode {
		return pol
	}
	switch {
	case pol.ID == "":
		p.errf(n, where+".id", "required")
	case !validID(pol.ID):
		p.errf(n, where+".id", "%q: use letters, digits, '.', '_' and '-' (at most 64)", pol.ID)
	}
	if pol.Action == "" {
		p.errf(n, where+".action", "required (one of %s)", strings.Join(actions, ", "))
	}
	// Each action's own section, and nothing of another's.
	only := func(node *yaml.Node, section, action string) {
		if node != nil && pol.Action != action {
			p.errf(node, where+"."+section, "only for action %s", action)
		}
	}
	only(connNode, "connect", ActionDenyConnect)
	only(sockNode, "sockets", ActionDenySocket)
	only(devNode, "devices", ActionDenyDevice)
	only(killNode, "kill", ActionKillOnDetection)
	switch pol.Action {
	case ActionDenyConnect:
		if pol.Connect == nil {
			p.errf(n, where+".connect", "required for deny_connect (destinations, ports, protocol)")
		}
	case ActionDenySocket:
		if len(pol.Sockets) == 0 {
			p.errf(n, where+".sockets", "required for deny_socket")
		}
	case ActionDenyDevice:
		if len(pol.Devices) == 0 {
			p.errf(n, where+".devices", "required for deny_device")
		}
	case ActionKillExec:
		if pol.Selector.empty() {
			p.errf(n, where+".selector", "required for kill_exec: without one every exec would be killed")
		}
	case ActionKillOnDetection:
		if len(pol.Selector.Rule) == 0 {
			p.errf(n, where+".selector.rule", "required for kill_on_detection: the rules whose alerts kill")
		}
	}
	if pol.Action != ActionKillOnDetection {
		if len(pol.Selector.Rule) > 0 {
			p.errf(selNode, where+".selector.rule", "only for kill_on_detection (the kernel hooks act before any rule)")
		}
		// The kernel knows executables by inode: no patterns.
		for _, s := range [][]string{pol.Selector.Exe, pol.Selector.Ancestor, pol.Allow.Exe} {
			for _, e := range s {
				if strings.ContainsAny(e, "*?[") {
					p.errf(selNode, where+".selector", "%q: kernel actions name executables by exact path (their inode), not patterns", e)
				}
			}
		}
	}
	_ = allowNode
	return pol
}

func (p *parser) selector(n *yaml.Node, where string, withRule bool) Selector {
	var s Selector
	p.mapping(n, where, func(key string, k, v *yaml.Node) {
		field := strings.TrimPrefix(key, where+".")
		switch field {
		case "exe":
			s.Exe = p.paths(v, key)
		case "ancestor":
			s.Ancestor = p.paths(v, key)
		case "user":
			s.User = p.strs(v, key)
		case "cgroup":
			s.Cgroup = p.strs(v, key)
		case "unit":
			s.Unit = p.strs(v, key)
		case "rule":
			if !withRule {
				p.errf(k, key, "allow names processes, not rules")
				return
			}
			s.Rule = p.strs(v, key)
		default:
			p.errf(k, key, "unknown key (exe, ancestor, user, cgroup, unit%s)", map[bool]string{true: ", rule"}[withRule])
		}
	})
	return s
}

func (p *parser) paths(v *yaml.Node, key string) []string {
	out := p.strs(v, key)
	for _, e := range out {
		if !strings.HasPrefix(e, "/") {
			p.errf(v, key, "%q is not an absolute path", e)
		}
	}
	return out
}

func (p *parser) connect(n *yaml.Node, where string) *Connect {
	c := &Connect{Protocol: "any"}
	p.mapping(n, where, func(key string, k, v *yaml.Node) {
		switch strings.TrimPrefix(key, where+".") {
		case "destinations":
			for i, s := range p.strs(v, key) {
				pre, err := parsePrefix(s)
				if err != nil {
					p.errf(v, fmt.Sprintf("%s[%d]", key, i), "%q is not an address or CIDR", s)
					continue
				}
				c.Destinations = append(c.Destinations, pre)
			}
		case "ports":
			if v.Kind != yaml.SequenceNode {
				p.errf(v, key, "must be a list of ports or ranges (502, \"20000-20100\")")
				return
			}
			for i, e := range v.Content {
				r, err := parseRange(e.Value, 1, 65535)
				if err != nil || e.Kind != yaml.ScalarNode {
					p.errf(e, fmt.Sprintf("%s[%d]", key, i), "%q is not a port (1-65535) or a range lo-hi", e.Value)
					continue
				}
				c.Ports = append(c.Ports, [2]uint16{uint16(r[0]), uint16(r[1])})
			}
		case "protocol":
			c.Protocol = p.str(v, key)
			if c.Protocol != "tcp" && c.Protocol != "udp" && c.Protocol != "any" {
				p.errf(v, key, "%q is not tcp, udp or any", c.Protocol)
			}
		default:
			p.errf(k, key, "unknown key (destinations, ports, protocol)")
		}
	})
	return c
}

var families = map[string]uint16{"any": 0, "inet": 2, "inet6": 10, "packet": 17, "netlink": 16, "unix": 1}
var sockTypes = map[string]uint16{"any": 0, "stream": 1, "dgram": 2, "raw": 3, "seqpacket": 5}

func (p *parser) sockets(n *yaml.Node, where string) []Socket {
	if n.Kind != yaml.SequenceNode {
		p.errf(n, where, "must be a list of {family, type, protocol}")
		return nil
	}
	var out []Socket
	for i, e := range n.Content {
		at := fmt.Sprintf("%s[%d]", where, i)
		s := Socket{Family: "any", Type: "any", Protocol: -1}
		p.mapping(e, at, func(key string, k, v *yaml.Node) {
			switch strings.TrimPrefix(key, at+".") {
			case "family":
				s.Family = p.str(v, key)
				if _, ok := families[s.Family]; !ok {
					p.errf(v, key, "%q is not one of inet, inet6, packet, netlink, unix, any", s.Family)
				}
			case "type":
				s.Type = p.str(v, key)
				if _, ok := sockTypes[s.Type]; !ok {
					p.errf(v, key, "%q is not one of stream, dgram, raw, seqpacket, any", s.Type)
				}
			case "protocol":
				n, err := strconv.Atoi(v.Value)
				if err != nil || n < 0 || n > 65534 {
					p.errf(v, key, "%q is not a protocol number", v.Value)
				}
				s.Protocol = n
			default:
				p.errf(k, key, "unknown key (family, type, protocol)")
			}
		})
		if s.Family == "any" && s.Type == "any" {
			p.errf(e, at, "names every socket: give a family or a type")
		}
		out = append(out, s)
	}
	return out
}

// Well-known serial and fieldbus device majors.
var deviceNames = map[string][3]int64{
	"ttyS":        {4, 64, 255},        // 16550 serial ports
	"ttyUSB":      {188, 0, 1<<20 - 1}, // USB serial adapters
	"ttyACM":      {166, 0, 1<<20 - 1}, // USB modems, CDC ACM
	"usb-storage": {8, 0, 1<<20 - 1},   // SCSI disks (USB mass storage appears as sd)
}

func (p *parser) devices(n *yaml.Node, where string) []Device {
	if n.Kind != yaml.SequenceNode {
		p.errf(n, where, "must be a list of {type, major, minor, access} or {name}")
		return nil
	}
	var out []Device
	for i, e := range n.Content {
		at := fmt.Sprintf("%s[%d]", where, i)
		d := Device{Type: "char", Major: -1, MinorHi: 1<<20 - 1}
		majorGiven := false
		p.mapping(e, at, func(key string, k, v *yaml.Node) {
			switch strings.TrimPrefix(key, at+".") {
			case "name":
				name := p.str(v, key)
				m, ok := deviceNames[name]
				if !ok {
					p.errf(v, key, "%q is not one of ttyS, ttyUSB, ttyACM, usb-storage", name)
					return
				}
				d.Major, d.MinorLo, d.MinorHi, majorGiven = m[0], uint32(m[1]), uint32(m[2]), true
				if name == "usb-storage" {
					d.Type = "block"
				}
				d.Name = name
			case "type":
				d.Type = p.str(v, key)
				if d.Type != "char" && d.Type != "block" && d.Type != "any" {
					p.errf(v, key, "%q is not char, block or any", d.Type)
				}
			case "major":
				m, err := strconv.ParseInt(v.Value, 10, 32)
				if err != nil || m < 0 || m > 4095 {
					p.errf(v, key, "%q is not a device major (0-4095)", v.Value)
				}
				d.Major, majorGiven = m, true
			case "minor":
				if v.Value == "*" {
					d.MinorLo, d.MinorHi = 0, 1<<20-1
					return
				}
				r, err := parseRange(v.Value, 0, 1<<20-1)
				if err != nil {
					p.errf(v, key, "%q is not a minor, a range lo-hi or *", v.Value)
				}
				d.MinorLo, d.MinorHi = uint32(r[0]), uint32(r[1])
			case "access":
				d.Access = p.strs(v, key)
				for _, a := range d.Access {
					if a != "read" && a != "write" && a != "mknod" {
						p.errf(v, key, "%q is not read, write or mknod", a)
					}
				}
			default:
				p.errf(k, key, "unknown key (name, type, major, minor, access)")
			}
		})
		if !majorGiven && e.Kind == yaml.MappingNode {
			p.errf(e, at+".major", "required (or name: ttyS, ttyUSB, ttyACM, usb-storage)")
		}
		out = append(out, d)
	}
	return out
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		pre, err := netip.ParsePrefix(s)
		return pre.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func parseRange(s string, lo, hi int64) ([2]int64, error) {
	a, b, isRange := strings.Cut(s, "-")
	x, err := strconv.ParseInt(strings.TrimSpace(a), 10, 64)
	if err != nil {
		return [2]int64{}, err
	}
	y := x
	if isRange {
		if y, err = strconv.ParseInt(strings.TrimSpace(b), 10, 64); err != nil {
			return [2]int64{}, err
		}
	}
	if x < lo || y > hi || x > y {
		return [2]int64{}, errors.New("out of range")
	}
	return [2]int64{x, y}, nil
}

func validID(s string) bool {
	if len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

// globMatch matches a path pattern (* and ? and [...], path.Match); an
// exact string matches itself.
func globMatch(pattern, s string) bool {
	if pattern == s {
		return true
	}
	ok, _ := path.Match(pattern, s)
	return ok
}
