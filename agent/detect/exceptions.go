package detect

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"go.yaml.in/yaml/v3"
	"golang.org/x/sys/unix"
)

// Exception suppresses the matches of one rule, some rules or every rule
// (Rules empty) that also match all of its attributes; within one
// attribute any value may match. Values of exe, ancestor, path, host and
// cgroup are exact or have * (any run of characters, / included) and ?
// wildcards. A suppressed match is counted per rule, never dropped
// silently.
type Exception struct {
	ID    string   `json:"id"`
	Rules []string `json:"rules,omitempty"` // rule ids or names; empty: every rule
	// Exe is the process's executable.
	Exe []string `json:"exe,omitempty"`
	// Ancestor is any ancestor's executable.
	Ancestor []string `json:"ancestor,omitempty"`
	// User is a user name or a uid (the real or the effective one).
	User []string `json:"user,omitempty"`
	// Path is a file path of the event (either name of a rename or link),
	// a module file, mount point or device.
	Path []string `json:"path,omitempty"`
	// Peer is the remote side of a network event: an address or CIDR,
	// with :port, or :port alone ([v6]:port for IPv6).
	Peer []string `json:"peer,omitempty"`
	// Host is the agent's host name.
	Host []string `json:"host,omitempty"`
	// Cgroup is the process's cgroup v2 path (/system.slice/nginx.service).
	Cgroup []string `json:"cgroup,omitempty"`
	// Unit is a systemd unit the process runs in (nginx.service).
	Unit    []string `json:"unit,omitempty"`
	Comment string   `json:"comment,omitempty"`
	// Origin says where it comes from: file:line, or the command that added it.
	Origin string `json:"origin,omitempty"`

	line int
}

var exceptionKeys = []string{"id", "rules", "exe", "ancestor", "user", "path", "peer", "host", "cgroup", "unit", "comment"}

func parseExceptionsDoc(file string, m *yaml.Node) ([]Exception, error) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if k := m.Content[i].Value; k != "exceptions" && k != "title" && k != "description" {
			return nil, errAt(file, m.Content[i], "%s: unknown key in an exceptions document (exceptions)", k)
		}
	}
	return parseExceptionList(file, mapGet(m, "exceptions"))
}

func parseExceptionList(file string, n *yaml.Node) ([]Exception, error) {
	if n.Kind != yaml.SequenceNode {
		return nil, errAt(file, n, "exceptions: want a list")
	}
	var out []Exception
	for i, item := range n.Content {
		if item.Kind != yaml.MappingNode {
			return nil, errAt(file, item, "exceptions[%d]: want a mapping", i)
		}
		e := Exception{line: item.Line, Origin: fmt.Sprintf("%s:%d", file, item.Line)}
		for j := 0; j+1 < len(item.Content); j += 2 {
			k, v := item.Content[j], item.Content[j+1]
			where := fmt.Sprintf("exceptions[%d].%s", i, k.Value)
			var dst *[]string
			switch k.Value {
			case "id":
				e.ID = v.Value
				continue
			case "comment":
				e.Comment = v.Value
				continue
			case "rules":
				dst = &e.Rules
			case "exe":
				dst = &e.Exe
			case "ancestor":
				dst = &e.Ancestor
			case "user":
				dst = &e.User
			case "path":
				dst = &e.Path
			case "peer":
				dst = &e.Peer
			case "host":
				dst = &e.Host
			case "cgroup":
				dst = &e.Cgroup
			case "unit":
				dst = &e.Unit
			default:
				return nil, errAt(file, k, "%s: unknown key (%s)", where, strings.Join(exceptionKeys, ", "))
			}
			vals, err := stringList(file, v, where)
			if err != nil {
				return nil, err
			}
			*dst = vals
		}
		if _, err := compileException(&e); err != nil {
			return nil, errAt(file, item, "exceptions[%d]: %v", i, err)
		}
		out = append(out, e)
	}
	return out, nil
}

// cexception is a compiled exception.
type cexception struct {
	src                          *Exception
	rules                        map[string]bool
	exe, ancestor, path, hosts   []*strMatch
	cgroups                      []*strMatch
	users, units                 []string
	peers                        []peerMatch
	needsCgroup, hasNonRuleMatch bool
}

type strMatch struct {
	exact string
	g     *glob
}

func newStrMatch(v string) *strMatch {
	lit, g := parseWildcards(v, false)
	if g != nil {
		return &strMatch{g: g}
	}
	return &strMatch{exact: lit}
}

func (m *strMatch) match(v string) bool {
	if m.g != nil {
		return m.g.match(v)
	}
	return v == m.exact
}

type peerMatch struct {
	prefix netip.Prefix // zero: any address
	port   uint16       // 0: any port
}

func parsePeer(s string) (peerMatch, error) {
	var pm peerMatch
	host, port := s, ""
	switch {
	case strings.HasPrefix(s, "["):
		end := strings.Index(s, "]")
		if end < 0 {
			return pm, fmt.Errorf("peer %q: missing ]", s)
		}
		host, port = s[1:end], strings.TrimPrefix(s[end+1:], ":")
	case strings.Count(s, ":") == 1:
		host, port, _ = strings.Cut(s, ":")
	}
	if port != "" {
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil || n == 0 {
			return pm, fmt.Errorf("peer %q: %q is not a port", s, port)
		}
		pm.port = uint16(n)
	}
	if host != "" {
		p, err := parsePrefix(host)
		if err != nil {
			return pm, fmt.Errorf("peer %q: %v", s, err)
		}
		pm.prefix = p
	}
	if host == "" && port == "" {
		return pm, fmt.Errorf("peer %q: empty", s)
	}
	return pm, nil
}

func compileException(e *Exception) (*cexception, error) {
	c := &cexception{src: e, rules: map[string]bool{}}
	for _, r := range e.Rules {
		c.rules[r] = true
	}
	for _, l := range []struct {
		in  []string
		out *[]*strMatch
	}{{e.Exe, &c.exe}, {e.Ancestor, &c.ancestor}, {e.Path, &c.path}, {e.Host, &c.hosts}, {e.Cgroup, &c.cgroups}} {
		for _, v := range l.in {
			if v == "" {
				return nil, errors.New("an empty value matches nothing")
			}
			*l.out = append(*l.out, newStrMatch(v))
		}
	}
	for _, p := range e.Peer {
		pm, err := parsePeer(p)
		if err != nil {
			return nil, err
		}
		c.peers = append(c.peers, pm)
	}
	c.users, c.units = e.User, e.Unit
	c.needsCgroup = len(c.cgroups) > 0 || len(c.units) > 0
	c.hasNonRuleMatch = len(c.exe)+len(c.ancestor)+len(c.path)+len(c.hosts)+len(c.cgroups)+len(c.users)+len(c.units)+len(c.peers) > 0
	if !c.hasNonRuleMatch && len(c.rules) == 0 {
		return nil, errors.New("an exception needs rules or at least one of exe, ancestor, user, path, peer, host, cgroup, unit")
	}
	return c, nil
}

// appliesTo reports whether the exception covers the rule.
func (c *cexception) appliesTo(r *parsedRule) bool {
	return len(c.rules) == 0 || c.rules[r.id] || (r.name != "" && c.rules[r.name])
}

// matches reports whether the event of c matches every attribute.
func (c *cexception) matches(x *evalCtx) bool {
	ev := x.ev
	if len(c.exe) > 0 && !anyMatch(c.exe, ev.Process.Exe) {
		return false
	}
	if len(c.ancestor) > 0 {
		found := false
		for i := range ev.Ancestry {
			if anyMatch(c.ancestor, ev.Ancestry[i].Exe) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	if len(c.hosts) > 0 && !anyMatch(c.hosts, x.host) {
		return false
	}
	if len(c.users) > 0 && !c.userMatches(x) {
		return false
	}
	if len(c.path) > 0 && !c.pathMatches(x) {
		return false
	}
	if len(c.peers) > 0 && !c.peerMatches(x) {
		return false
	}
	if c.needsCgroup {
		cg := x.cgroups.path(ev.Process.CgroupID)
		if len(c.cgroups) > 0 && !anyMatch(c.cgroups, cg) {
			return false
		}
		if len(c.units) > 0 && !unitMatches(c.units, cg) {
			return false
		}
	}
	return true
}

func anyMatch(ms []*strMatch, v string) bool {
	if v == "" {
		return false
	}
	for _, m := range ms {
		if m.match(v) {
			return true
		}
	}
	return false
}

func (c *cexception) userMatches(x *evalCtx) bool {
	p := &x.ev.Process
	for _, u := range c.users {
		for _, id := range []uint32{p.UID, p.EUID} {
			if u == strconv.FormatUint(uint64(id), 10) || u == x.users.name(id) {
				return true
			}
		}
	}
	return false
}

func (c *cexception) pathMatches(x *evalCtx) bool {
	ev := x.ev
	var cands []string
	if f := ev.File; f != nil {
		cands = append(cands, f.Path, f.NewPath)
	}
	if s := ev.Security; s != nil {
		cands = append(cands, s.Path)
	}
	if in := ev.Industrial; in != nil {
		cands = append(cands, in.Device)
	}
	for _, v := range cands {
		if anyMatch(c.path, v) {
			return true
		}
	}
	return false
}

func (c *cexception) peerMatches(x *evalCtx) bool {
	n := x.ev.Net
	if n == nil {
		return false
	}
	addr, _ := netip.ParseAddr(n.DstAddr)
	for _, p := range c.peers {
		if p.port != 0 && p.port != n.DstPort {
			continue
		}
		if p.prefix.IsValid() && (!addr.IsValid() || !p.prefix.Contains(addr.Unmap())) {
			continue
		}
		return true
	}
	return false
}

// unitMatches: a unit matches a component of the cgroup path
// (/system.slice/nginx.service runs in nginx.service and system.slice).
func unitMatches(units []string, cg string) bool {
	if cg == "" {
		return false
	}
	for _, part := range strings.Split(cg, "/") {
		for _, u := range units {
			if part == u {
				return true
			}
		}
	}
	return false
}

// cgroupPaths resolves cgroup v2 ids (the inode of the cgroup directory)
// to paths below the cgroup2 mount, caching what it found. It is used only
// when an exception names a cgroup or unit and a rule matched.
type cgroupPaths struct {
	mu    sync.Mutex
	root  string
	found bool
	cache map[uint64]string
}

func newCgroupPaths(root string) *cgroupPaths {
	return &cgroupPaths{root: root, cache: map[uint64]string{}}
}

func (c *cgroupPaths) path(id uint64) string {
	if id == 0 {
		return ""
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if p, ok := c.cache[id]; ok {
		return p
	}
	if !c.found {
		// The configured root may be a cgroup v1 hierarchy on a hybrid
		// host: use the cgroup2 mount then.
		var st unix.Statfs_t
		if c.root == "" || unix.Statfs(c.root, &st) != nil || st.Type != unix.CGROUP2_SUPER_MAGIC {
			c.root = cgroup2Root()
		}
		c.found = true
	}
	if c.root == "" {
		return ""
	}
	if len(c.cache) > 4096 {
		clear(c.cache)
	}
	var out string
	_ = filepath.WalkDir(c.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok {
			return nil
		}
		rel := "/" + strings.TrimPrefix(strings.TrimPrefix(p, c.root), "/")
		c.cache[st.Ino] = rel
		if st.Ino == id {
			out = rel
			return fs.SkipAll
		}
		return nil
	})
	if out == "" {
		c.cache[id] = ""
	}
	return out
}

// cgroup2Root finds the cgroup v2 mount (/sys/fs/cgroup, or
// /sys/fs/cgroup/unified on hybrid hosts).
func cgroup2Root() string {
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 3 && fields[2] == "cgroup2" {
			return fields[1]
		}
	}
	return ""
}
