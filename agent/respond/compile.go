package respond

import (
	"fmt"
	"net/netip"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/watchpost/watchpost/agent/kernel"
)

// hookOf is the kernel hook of each kernel action.
var hookOf = map[string]kernel.Hook{
	ActionKillExec:    kernel.HookExec,
	ActionDenyConnect: kernel.HookConnect,
	ActionDenySocket:  kernel.HookSocket,
	ActionDenyDevice:  kernel.HookDevice,
}

// compiled is a policy set ready to apply.
type compiled struct {
	policies []Policy
	set      kernel.RuleSet
	// notes are why a selector matches nothing right now (a unit that is
	// not running), by policy id.
	notes map[string][]string
}

// compileEnv is what compiling needs of the host.
type compileEnv struct {
	cgroupRoot string
	protected  []string // executables never acted on
	lookupUser func(string) (uint32, error)
}

func lookupUser(name string) (uint32, error) {
	if n, err := strconv.ParseUint(name, 10, 32); err == nil {
		return uint32(n), nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(u.Uid, 10, 32)
	return uint32(n), err
}

// compile turns policies into the kernel's rules; modes overrides a
// policy's mode by id (the collector's switch).
func compile(file string, pols []Policy, modes map[string]string, env compileEnv) (*compiled, error) {
	if env.lookupUser == nil {
		env.lookupUser = lookupUser
	}
	c := &compiled{notes: map[string][]string{}}
	c.set.Exes = map[string]kernel.Masks{}
	c.set.Cgroups = map[string]kernel.Masks{}
	if len(pols) > kernel.MaxPolicies {
		return nil, ErrorList{fmt.Sprintf("%s: policies: %d policies, at most %d", file, len(pols), kernel.MaxPolicies)}
	}
	var errs ErrorList
	addExe := func(path string, f func(*kernel.Masks)) {
		m := c.set.Exes[path]
		f(&m)
		c.set.Exes[path] = m
	}
	addCgroup := func(path string, f func(*kernel.Masks)) {
		m := c.set.Cgroups[path]
		f(&m)
		c.set.Cgroups[path] = m
	}
	for i, p := range pols {
		if m, ok := modes[p.ID]; ok {
			p.Mode = m
		}
		c.policies = append(c.policies, p)
		c.set.Policies = append(c.set.Policies, kernel.PolicyRef{ID: p.ID, Action: p.Action})
		hook, inKernel := hookOf[p.Action]
		if !inKernel {
			continue
		}
		bit, anc := kernel.Bit(i), kernel.AncestorBit(i)
		where := fmt.Sprintf("%s:%d: policies[%d]", file, p.Line, i)
		for _, e := range p.Selector.Exe {
			addExe(e, func(m *kernel.Masks) { m.Sel |= bit })
		}
		for _, e := range p.Selector.Ancestor {
			addExe(e, func(m *kernel.Masks) { m.Sel |= anc })
		}
		for _, e := range p.Allow.Exe {
			addExe(e, func(m *kernel.Masks) { m.Allow |= bit })
		}
		if len(p.Allow.User)+len(p.Allow.Ancestor) > 0 {
			errs = append(errs, where+".allow: user and ancestor allowlists are for kill_on_detection; kernel actions allow by exe, cgroup or unit")
		}
		selCg, err := c.cgroups(p.ID, p.Selector, env.cgroupRoot)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s.selector: %v", where, err))
		}
		for _, cg := range selCg {
			addCgroup(cg, func(m *kernel.Masks) { m.Sel |= bit })
		}
		allowCg, err := c.cgroups(p.ID, p.Allow, env.cgroupRoot)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s.allow: %v", where, err))
		}
		for _, cg := range allowCg {
			addCgroup(cg, func(m *kernel.Masks) { m.Allow |= bit })
		}
		base := kernel.Rule{Policy: i, Enforce: p.Mode == ModeEnforce, Exe: len(p.Selector.Exe) > 0,
			Ancestor: len(p.Selector.Ancestor) > 0, Cgroup: len(p.Selector.Cgroup)+len(p.Selector.Unit) > 0}
		// One rule per user (the kernel compares one uid).
		bases := []kernel.Rule{base}
		if len(p.Selector.User) > 0 {
			bases = nil
			for _, u := range p.Selector.User {
				uid, err := env.lookupUser(u)
				if err != nil {
					errs = append(errs, fmt.Sprintf("%s.selector.user: %q: %v", where, u, err))
					continue
				}
				r := base
				r.UID = &uid
				bases = append(bases, r)
			}
		}
		for _, r := range bases {
			for _, kr := range targets(p, r) {
				c.set.Rules[hook] = append(c.set.Rules[hook], kr)
			}
		}
	}
	for _, e := range env.protected {
		addExe(e, func(m *kernel.Masks) { m.Protected = true })
	}
	for h, rules := range c.set.Rules {
		if len(rules) > kernel.MaxRules {
			errs = append(errs, fmt.Sprintf("%s: the policies make %d %s rules (destinations x ports x users, sockets, devices); the kernel holds %d",
				file, len(rules), kernel.Hook(h), kernel.MaxRules))
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return c, nil
}

// cgroups resolves a selector's cgroups and units to cgroup directories.
func (c *compiled) cgroups(id string, s Selector, root string) ([]string, error) {
	var out []string
	for _, cg := range s.Cgroup {
		p := cg
		if !strings.HasPrefix(cg, root+"/") && cg != root {
			p = filepath.Join(root, cg)
		}
		out = append(out, p)
	}
	for _, u := range s.Unit {
		found := kernel.UnitCgroups(root, u)
		if len(found) == 0 {
			c.notes[id] = append(c.notes[id], fmt.Sprintf("unit %s has no cgroup (not running): matched after the next reload once it runs", u))
		}
		out = append(out, found...)
	}
	return out, nil
}

// netipZero is "any destination".
var netipZero netip.Prefix

// targets expands a policy's targets into kernel rules.
func targets(p Policy, base kernel.Rule) []kernel.Rule {
	var out []kernel.Rule
	switch p.Action {
	case ActionKillExec:
		out = append(out, base)
	case ActionDenyConnect:
		proto := map[string]uint16{"tcp": unix.IPPROTO_TCP, "udp": unix.IPPROTO_UDP}[p.Connect.Protocol]
		dests := p.Connect.Destinations
		if len(dests) == 0 {
			dests = append(dests, netipZero)
		}
		ports := p.Connect.Ports
		if len(ports) == 0 {
			ports = [][2]uint16{{0, 65535}}
		}
		for _, d := range dests {
			for _, pr := range ports {
				r := base
				r.Dest, r.PortLo, r.PortHi, r.Protocol = d, pr[0], pr[1], proto
				out = append(out, r)
			}
		}
	case ActionDenySocket:
		for _, s := range p.Sockets {
			r := base
			r.Family, r.SockType, r.SockProtocol = families[s.Family], sockTypes[s.Type], s.Protocol
			out = append(out, r)
		}
	case ActionDenyDevice:
		for _, d := range p.Devices {
			r := base
			r.DevType = map[string]uint16{"block": 1, "char": 2}[d.Type]
			r.DevMajor, r.DevMinorLo, r.DevMinorHi = d.Major, d.MinorLo, d.MinorHi
			r.DevAccess = kernel.DevMknod | kernel.DevRead | kernel.DevWrite
			if len(d.Access) > 0 {
				r.DevAccess = 0
				for _, a := range d.Access {
					r.DevAccess |= map[string]uint16{"mknod": kernel.DevMknod, "read": kernel.DevRead, "write": kernel.DevWrite}[a]
				}
			}
			out = append(out, r)
		}
	}
	return out
}
