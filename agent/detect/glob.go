package detect

import (
	"strings"
	"unicode/utf8"
)

// glob is a Sigma value with wildcards: * is any run of characters, ? one
// character, and a backslash escapes *, ? and itself (any other backslash
// is a plain one). Matching covers the whole value.
type glob struct {
	segs []globSeg
	fold bool
}

type globSeg struct {
	star bool   // a * before the literal
	lit  string // literal, with ? as single-character holes
	q    []bool // q[i]: lit[i] is a ? wildcard
}

// parseWildcards unescapes v. It returns the literal and nil when v has no
// wildcard, otherwise a glob.
func parseWildcards(v string, fold bool) (string, *glob) {
	var b strings.Builder
	var segs []globSeg
	cur := globSeg{}
	wild := false
	flush := func(star bool) {
		cur.lit = b.String()
		segs = append(segs, cur)
		b.Reset()
		cur = globSeg{star: star}
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '\\' && i+1 < len(v) && (v[i+1] == '*' || v[i+1] == '?' || v[i+1] == '\\'):
			b.WriteByte(v[i+1])
			cur.q = append(cur.q, false)
			i++
		case c == '*':
			wild = true
			flush(true)
		case c == '?':
			wild = true
			b.WriteByte('?')
			cur.q = append(cur.q, true)
		default:
			b.WriteByte(c)
			cur.q = append(cur.q, false)
		}
	}
	if !wild {
		return b.String(), nil
	}
	cur.lit = b.String()
	segs = append(segs, cur)
	g := &glob{segs: segs, fold: fold}
	if fold {
		for i := range g.segs {
			if low := strings.ToLower(g.segs[i].lit); len(low) == len(g.segs[i].lit) {
				g.segs[i].lit = low
			}
		}
	}
	return "", g
}

// anchorFor widens the glob for a comparison modifier.
func (g *glob) anchorFor(op matchOp) {
	switch op {
	case opContains:
		g.segs[0].star = true
		g.segs = append(g.segs, globSeg{star: true})
	case opStartsWith:
		g.segs = append(g.segs, globSeg{star: true})
	case opEndsWith:
		g.segs[0].star = true
	}
}

// match reports whether the whole of v matches.
func (g *glob) match(v string) bool {
	if g.fold && hasHighByte(v) {
		v = strings.ToLower(v)
	}
	return g.matchFrom(0, v)
}

func (g *glob) matchFrom(si int, v string) bool {
	if si == len(g.segs) {
		return v == ""
	}
	s := &g.segs[si]
	if !s.star {
		n, ok := g.segAt(s, v)
		return ok && g.matchFrom(si+1, v[n:])
	}
	for start := 0; start <= len(v); {
		if n, ok := g.segAt(s, v[start:]); ok && g.matchFrom(si+1, v[start+n:]) {
			return true
		}
		if start == len(v) {
			break
		}
		_, w := utf8.DecodeRuneInString(v[start:])
		start += w
	}
	return false
}

// segAt matches s's literal at the start of v and returns the bytes used.
func (g *glob) segAt(s *globSeg, v string) (int, bool) {
	n := 0
	for i := 0; i < len(s.lit); i++ {
		if n >= len(v) {
			return 0, false
		}
		if s.q[i] {
			_, w := utf8.DecodeRuneInString(v[n:])
			n += w
			continue
		}
		c := v[n]
		if g.fold {
			c = foldASCII(c)
		}
		if c != s.lit[i] {
			return 0, false
		}
		n++
	}
	return n, true
}
