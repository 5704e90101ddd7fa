package detect

// automaton finds every occurrence of a set of literal patterns in one pass
// over a value (Aho-Corasick, compiled to a dense DFA over byte classes).
// Case-insensitive automata fold ASCII letters in the class map, so a
// value is never lower-cased to be scanned; values with bytes above 0x7f
// are lower-cased first by the caller (Unicode), as the patterns were.
type automaton struct {
	class    [256]uint16 // byte -> class; 0 is "no pattern has this byte"
	nclass   int
	delta    []int32 // state*nclass + class -> next state
	outStart []int32 // state -> first index in outs, -1 when none
	outs     []output
}

// output is one pattern that ends at a state.
type output struct {
	pred   int32 // predicate index
	length int32 // pattern length in bytes
	anchor anchor
	next   int32 // next output of the same state, -1 at the end
}

type anchor uint8

const (
	anchorNone  anchor = iota // contains
	anchorStart               // startswith
	anchorEnd                 // endswith
	anchorExact               // equals
)

type acPattern struct {
	text   string // already lower-cased for a case-insensitive automaton
	pred   int32
	anchor anchor
}

func foldASCII(b byte) byte {
	if b >= 'A' && b <= 'Z' {
		return b + 'a' - 'A'
	}
	return b
}

// buildAutomaton compiles the patterns. Empty patterns are not allowed
// (callers handle them as predicates on their own).
func buildAutomaton(pats []acPattern, fold bool) *automaton {
	a := &automaton{}
	// Byte classes: one per distinct (folded) byte used by a pattern.
	var classOf [256]uint16
	next := uint16(1)
	for _, p := range pats {
		for i := 0; i < len(p.text); i++ {
			b := p.text[i]
			if fold {
				b = foldASCII(b)
			}
			if classOf[b] == 0 {
				classOf[b] = next
				next++
			}
		}
	}
	for b := 0; b < 256; b++ {
		c := byte(b)
		if fold {
			c = foldASCII(c)
		}
		a.class[b] = classOf[c]
	}
	a.nclass = int(next)

	// Trie.
	type node struct {
		child map[uint16]int32
		fail  int32
		outs  []int32 // indices into pats
	}
	nodes := []node{{child: map[uint16]int32{}}}
	for i, p := range pats {
		s := int32(0)
		for j := 0; j < len(p.text); j++ {
			c := a.class[p.text[j]]
			n, ok := nodes[s].child[c]
			if !ok {
				n = int32(len(nodes))
				nodes = append(nodes, node{child: map[uint16]int32{}})
				nodes[s].child[c] = n
			}
			s = n
		}
		nodes[s].outs = append(nodes[s].outs, int32(i))
	}
	// Breadth-first failure links; the DFA table fills in missing edges.
	a.delta = make([]int32, len(nodes)*a.nclass)
	queue := make([]int32, 0, len(nodes))
	for c := 0; c < a.nclass; c++ {
		if n, ok := nodes[0].child[uint16(c)]; ok {
			nodes[n].fail = 0
			a.delta[c] = n
			queue = append(queue, n)
		}
	}
	allOuts := make([][]int32, len(nodes))
	allOuts[0] = nodes[0].outs
	for len(queue) > 0 {
		s := queue[0]
		queue = queue[1:]
		allOuts[s] = append(append([]int32(nil), nodes[s].outs...), allOuts[nodes[s].fail]...)
		for c := 0; c < a.nclass; c++ {
			if n, ok := nodes[s].child[uint16(c)]; ok {
				nodes[n].fail = a.delta[int(nodes[s].fail)*a.nclass+c]
				a.delta[int(s)*a.nclass+c] = n
				queue = append(queue, n)
			} else {
				a.delta[int(s)*a.nclass+c] = a.delta[int(nodes[s].fail)*a.nclass+c]
			}
		}
	}
	a.outStart = make([]int32, len(nodes))
	for s := range nodes {
		a.outStart[s] = -1
		for i := len(allOuts[s]) - 1; i >= 0; i-- {
			p := pats[allOuts[s][i]]
			a.outs = append(a.outs, output{pred: p.pred, length: int32(len(p.text)), anchor: p.anchor, next: a.outStart[s]})
			a.outStart[s] = int32(len(a.outs) - 1)
		}
	}
	return a
}

// scan marks each (kind-local) predicate whose pattern occurs in v with its
// anchor satisfied.
func (a *automaton) scan(v string, c *evalCtx) {
	s := int32(0)
	n := int32(len(v))
	for i := int32(0); i < n; i++ {
		s = a.delta[int(s)*a.nclass+int(a.class[v[i]])]
		for o := a.outStart[s]; o >= 0; o = a.outs[o].next {
			out := &a.outs[o]
			end := i + 1
			start := end - out.length
			switch out.anchor {
			case anchorStart:
				if start != 0 {
					continue
				}
			case anchorEnd:
				if end != n {
					continue
				}
			case anchorExact:
				if start != 0 || end != n {
					continue
				}
			}
			c.markLocal(out.pred)
		}
	}
}
