package store

import (
	"path"
	"strconv"
	"strings"

	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

// bloom is a per-batch Bloom filter over the values queries look up (pid,
// exe, comm, path directories, ports, protocol). A query skips a batch whose
// filter says the value is absent, instead of keeping per-event indexes.
type bloom []byte

const (
	bloomHashes     = 4
	bloomBitsPerKey = 10 // ~1% false positives with 4 hashes
	bloomMaxDepth   = 6  // directory prefixes kept per path
)

// Token prefixes: one letter per kind of value.
const (
	tokPID   = "p:"
	tokExe   = "e:"
	tokDir   = "d:"
	tokPort  = "o:"
	tokProto = "i:"
	tokAgent = "a:"
)

func fnv64a(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

func newBloom(keys map[string]struct{}) bloom {
	nbits := max(len(keys)*bloomBitsPerKey, 64)
	b := make(bloom, (nbits+7)/8)
	for k := range keys {
		b.add(k)
	}
	return b
}

func (b bloom) positions(key string, f func(bit uint64) bool) bool {
	h := fnv64a(key)
	h1, h2 := h&0xffffffff, h>>32|1
	n := uint64(len(b)) * 8
	for i := uint64(0); i < bloomHashes; i++ {
		if !f((h1 + i*h2) % n) {
			return false
		}
	}
	return true
}

func (b bloom) add(key string) {
	b.positions(key, func(bit uint64) bool { b[bit/8] |= 1 << (bit % 8); return true })
}

// mayContain reports false only when key was never added.
func (b bloom) mayContain(key string) bool {
	if len(b) == 0 {
		return true
	}
	return b.positions(key, func(bit uint64) bool { return b[bit/8]&(1<<(bit%8)) != 0 })
}

// dirPrefixes calls f with every directory prefix of p ("/", "/etc/",
// "/etc/ssh/"), up to bloomMaxDepth levels.
func dirPrefixes(p string, f func(string)) {
	if !strings.HasPrefix(p, "/") {
		return
	}
	depth := 0
	for i := 0; i < len(p) && depth < bloomMaxDepth; i++ {
		if p[i] == '/' {
			f(p[:i+1])
			depth++
		}
	}
}

// queryDir is the longest directory prefix contained in a query prefix,
// capped at the depth kept in the filter: "/etc/ss" -> "/etc/".
func queryDir(prefix string) string {
	var last string
	dirPrefixes(prefix, func(d string) { last = d })
	return last
}

// eventTokens adds the lookup values of one event of agent to keys.
func eventTokens(keys map[string]struct{}, ev *watchpostv1.Event, agent string) {
	add := func(k string) { keys[k] = struct{}{} }
	add(tokAgent + agent)
	p := ev.GetProcess()
	add(tokPID + strconv.FormatUint(uint64(p.GetPid()), 10))
	if p.GetComm() != "" {
		add(tokExe + p.GetComm())
	}
	if exe := p.GetExe(); exe != "" {
		add(tokExe + exe)
		add(tokExe + path.Base(exe))
	}
	addDirs := func(s string) { dirPrefixes(s, func(d string) { add(tokDir + d) }) }
	switch d := ev.Detail.(type) {
	case *watchpostv1.Event_File:
		addDirs(d.File.Path)
		addDirs(d.File.NewPath)
	case *watchpostv1.Event_Security:
		addDirs(d.Security.Path)
	case *watchpostv1.Event_Net:
		if d.Net.SrcPort != 0 {
			add(tokPort + strconv.FormatUint(uint64(d.Net.SrcPort), 10))
		}
		if d.Net.DstPort != 0 {
			add(tokPort + strconv.FormatUint(uint64(d.Net.DstPort), 10))
		}
	}
	if in := ev.GetIndustrial(); in != nil && in.Protocol != "" {
		add(tokProto + in.Protocol)
	}
}

// typeBit maps an event type to its bit in a block's type mask: kernel
// types 1..59 to bits 1..59, agent types 100..103 to bits 60..63, and
// every other type to bit 0 (shared: the rows are filtered by type).
func typeBit(t watchpostv1.EventType) uint64 {
	switch {
	case t >= 100 && t < 104:
		return 1 << (60 + uint(t-100))
	case t > 0 && t < 60:
		return 1 << uint(t)
	case t >= 104:
		return 1 // agent kinds from 104 on (alerts ...) share bit 0
	}
	return 1
}
