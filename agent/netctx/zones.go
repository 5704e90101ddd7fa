package netctx

import (
	"fmt"
	"net/netip"
	"path"
	"strings"
)

// Zone labels part of the plant network: the interfaces whose names match
// one of Interfaces (shell globs: eth1, br-cell*, wwan?) and the addresses
// inside one of Networks (CIDRs). Names are short identifiers such as
// cell-1, dmz or it.
type Zone struct {
	Name       string   `yaml:"name"`
	Interfaces []string `yaml:"interfaces"`
	Networks   []string `yaml:"networks"`
}

// Zones is the compiled zone table.
//
// An interface is in the first zone (in configuration order) that names it
// by glob; failing that, in the zone of the most specific network holding
// one of its addresses. An address is in the zone of the most specific
// network holding it; failing that, in the zone of its interface.
type Zones struct {
	globs []zoneGlob
	nets  []zoneNet // longest prefix first
}

type zoneGlob struct {
	pattern, zone string
}

type zoneNet struct {
	prefix netip.Prefix
	zone   string
}

// CompileZones checks the table; errors name the key under prefix (e.g.
// "network.zones").
func CompileZones(key string, in []Zone) (*Zones, error) {
	z := &Zones{}
	seen := make(map[string]int, len(in))
	for i, zone := range in {
		k := fmt.Sprintf("%s[%d]", key, i)
		if err := validZoneName(zone.Name); err != nil {
			return nil, fmt.Errorf("%s.name: %w", k, err)
		}
		if j, dup := seen[zone.Name]; dup {
			return nil, fmt.Errorf("%s.name: %q is already %s[%d]; list its interfaces and networks there", k, zone.Name, key, j)
		}
		seen[zone.Name] = i
		if len(zone.Interfaces) == 0 && len(zone.Networks) == 0 {
			return nil, fmt.Errorf("%s: zone %q has neither interfaces nor networks", k, zone.Name)
		}
		for j, g := range zone.Interfaces {
			if g == "" || strings.ContainsRune(g, '/') {
				return nil, fmt.Errorf("%s.interfaces[%d]: %q is not an interface name or glob", k, j, g)
			}
			if _, err := path.Match(g, ""); err != nil {
				return nil, fmt.Errorf("%s.interfaces[%d]: %q: %w", k, j, g, err)
			}
			z.globs = append(z.globs, zoneGlob{g, zone.Name})
		}
		for j, n := range zone.Networks {
			p, err := netip.ParsePrefix(n)
			if err != nil {
				a, aerr := netip.ParseAddr(n)
				if aerr != nil {
					return nil, fmt.Errorf("%s.networks[%d]: %q is not a CIDR (10.10.1.0/24, fd00::/64) or address", k, j, n)
				}
				p = netip.PrefixFrom(a, a.BitLen())
			}
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-unmapBits(p)).Masked()
			for _, o := range z.nets {
				if o.prefix == p {
					return nil, fmt.Errorf("%s.networks[%d]: %s is already in zone %q", k, j, p, o.zone)
				}
			}
			z.nets = append(z.nets, zoneNet{p, zone.Name})
		}
	}
	// Most specific first; a stable sort keeps configuration order among equals.
	for i := 1; i < len(z.nets); i++ {
		for j := i; j > 0 && z.nets[j].prefix.Bits() > z.nets[j-1].prefix.Bits(); j-- {
			z.nets[j], z.nets[j-1] = z.nets[j-1], z.nets[j]
		}
	}
	return z, nil
}

// unmapBits is what a v4-mapped IPv6 prefix loses when it becomes IPv4.
func unmapBits(p netip.Prefix) int {
	if p.Addr().Is4In6() {
		return 96
	}
	return 0
}

func validZoneName(s string) error {
	if s == "" {
		return fmt.Errorf("empty")
	}
	if len(s) > 64 {
		return fmt.Errorf("%q is longer than 64 bytes", s)
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("%q: only letters, digits, '-', '_' and '.' are allowed", s)
		}
	}
	return nil
}

// Empty reports whether no zone is configured.
func (z *Zones) Empty() bool { return z == nil || len(z.globs) == 0 && len(z.nets) == 0 }

// ByName is the zone an interface name matches by glob, or "".
func (z *Zones) ByName(name string) string {
	if z == nil {
		return ""
	}
	for _, g := range z.globs {
		if ok, _ := path.Match(g.pattern, name); ok {
			return g.zone
		}
	}
	return ""
}

// ByAddr is the zone of the most specific network holding a, or "".
func (z *Zones) ByAddr(a netip.Addr) string {
	if z == nil || !a.IsValid() {
		return ""
	}
	a = a.Unmap()
	for _, n := range z.nets {
		if n.prefix.Contains(a) {
			return n.zone
		}
	}
	return ""
}

// Interface is the zone of an interface with these addresses.
func (z *Zones) Interface(name string, addrs []netip.Prefix) string {
	if zone := z.ByName(name); zone != "" {
		return zone
	}
	best, bits := "", -1
	if z == nil {
		return ""
	}
	for _, a := range addrs {
		for _, n := range z.nets {
			if n.prefix.Contains(a.Addr().Unmap()) {
				if n.prefix.Bits() > bits {
					best, bits = n.zone, n.prefix.Bits()
				}
				break // z.nets is most specific first
			}
		}
	}
	return best
}
