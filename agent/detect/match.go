package detect

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/watchpost/watchpost/agent/event"
	"github.com/watchpost/watchpost/agent/proctable"
)

// Processes looks up processes the event names (ptrace and signal targets).
type Processes interface {
	Lookup(pid uint32) (proctable.Entry, bool)
}

// targetInfo is what the process table knows of a ptrace or signal target.
type targetInfo struct {
	Known bool
	Exe   string
	Args  []string
	UID   uint32
	PPID  uint32
}

// evalCtx is the per-event state of matching. One exists per engine and is
// used by the detecting goroutine only; nothing in it is allocated per
// event once its buffers have grown.
type evalCtx struct {
	set     *ruleSet
	ev      *event.Event
	gen     uint32
	host    string
	users   *userTable
	cgroups *cgroupPaths
	procs   Processes

	predGen []uint32 // eager predicate hit in this event
	lazyGen []uint32 // lazy predicate evaluated in this event
	lazyVal []bool
	ruleGen []uint32 // rule already a candidate
	cands   []int32
	km      *kindMatcher

	bufGen  []uint32 // per field: buffer built for this event
	bufs    [][]byte
	ancGen  []uint32 // per ancestor: argv joined
	ancBufs [][]byte
	tgtGen  uint32
	tgt     targetInfo
	envGen  uint32   // Environment built for this event
	envBuf  []byte   // NAME=value, back to back
	envEnds []int    // end of each in envBuf
	envKeys []string // reused for sorting
}

func newEvalCtx(host string, users *userTable, cg *cgroupPaths, procs Processes) *evalCtx {
	return &evalCtx{host: host, users: users, cgroups: cg, procs: procs,
		bufGen: make([]uint32, len(fieldDefs)), bufs: make([][]byte, len(fieldDefs))}
}

// use switches to a rule set, sizing the per-predicate and per-rule arrays.
func (c *evalCtx) use(set *ruleSet) {
	c.set = set
	c.predGen = make([]uint32, len(set.preds))
	c.lazyGen = make([]uint32, len(set.preds))
	c.lazyVal = make([]bool, len(set.preds))
	c.ruleGen = make([]uint32, len(set.rules))
	c.gen = 0
	clear(c.bufGen)
	clear(c.ancGen)
	c.tgtGen, c.envGen = 0, 0
}

func (c *evalCtx) reset(ev *event.Event) {
	c.ev = ev
	c.gen++
	if c.gen == 0 { // wrapped: every stamp is stale
		clear(c.predGen)
		clear(c.lazyGen)
		clear(c.ruleGen)
		clear(c.bufGen)
		clear(c.ancGen)
		c.tgtGen, c.envGen = 0, 0
		c.gen = 1
	}
	c.cands = c.cands[:0]
}

func (c *evalCtx) built(id fieldID, build func(c *evalCtx, b []byte) []byte) string {
	if c.bufGen[id] != c.gen {
		c.bufs[id] = build(c, c.bufs[id][:0])
		c.bufGen[id] = c.gen
	}
	return bstr(c.bufs[id])
}

func (c *evalCtx) ancestorArgs(i int) string {
	for len(c.ancGen) <= i {
		c.ancGen = append(c.ancGen, 0)
		c.ancBufs = append(c.ancBufs, nil)
	}
	if c.ancGen[i] != c.gen {
		c.ancBufs[i] = joinArgs(c.ancBufs[i][:0], c.ev.Ancestry[i].Args)
		c.ancGen[i] = c.gen
	}
	return bstr(c.ancBufs[i])
}

// envVar is the i-th captured environment variable, in name order, built
// once per event into a reused buffer.
func (c *evalCtx) envVar(i int) (string, bool) {
	if c.envGen != c.gen {
		c.envGen = c.gen
		c.envBuf, c.envEnds, c.envKeys = c.envBuf[:0], c.envEnds[:0], c.envKeys[:0]
		if x := c.ev.Exec; x != nil {
			for k := range x.Env {
				c.envKeys = append(c.envKeys, k)
			}
			slices.Sort(c.envKeys)
			for _, k := range c.envKeys {
				c.envBuf = append(append(append(c.envBuf, k...), '='), x.Env[k]...)
				c.envEnds = append(c.envEnds, len(c.envBuf))
			}
			for _, d := range x.EnvDuplicates {
				c.envBuf = append(c.envBuf, d...)
				c.envEnds = append(c.envEnds, len(c.envBuf))
			}
		}
	}
	if i >= len(c.envEnds) {
		return "", false
	}
	start := 0
	if i > 0 {
		start = c.envEnds[i-1]
	}
	return bstr(c.envBuf[start:c.envEnds[i]]), true
}

func (c *evalCtx) result() int32 {
	switch {
	case c.ev.File != nil:
		return c.ev.File.Result
	case c.ev.Net != nil:
		return c.ev.Net.Result
	case c.ev.Security != nil:
		return c.ev.Security.Result
	case c.ev.Namespace != nil:
		return c.ev.Namespace.Result
	}
	return 0
}

func (c *evalCtx) inbound() bool {
	return c.ev.Kind == event.KindNetAccept || (c.ev.Net != nil && c.ev.Net.Direction == "inbound")
}

func (c *evalCtx) target() *targetInfo {
	if c.tgtGen == c.gen {
		return &c.tgt
	}
	c.tgtGen = c.gen
	c.tgt = targetInfo{}
	if s := c.ev.Security; s != nil && s.TargetPID != 0 && c.procs != nil {
		if e, ok := c.procs.Lookup(s.TargetPID); ok {
			c.tgt = targetInfo{Known: true, Exe: e.Exe, Args: e.Args, UID: e.UID, PPID: e.PPID}
		}
	}
	return &c.tgt
}

// markLocal records a hit of a kind-local predicate and makes its rules
// candidates.
func (c *evalCtx) markLocal(li int32) {
	lp := &c.km.locals[li]
	if c.predGen[lp.pred] == c.gen {
		return
	}
	c.predGen[lp.pred] = c.gen
	for _, r := range lp.rules {
		if c.ruleGen[r] != c.gen {
			c.ruleGen[r] = c.gen
			c.cands = append(c.cands, r)
		}
	}
}

// scanEvent runs the kind's automata over the event's fields and collects
// the candidate rules.
func (c *evalCtx) scanEvent(km *kindMatcher) {
	c.km = km
	for si := range km.scans {
		s := &km.scans[si]
		get := fieldDefs[s.field].get
		for i := 0; ; i++ {
			v, ok := get(c, i)
			if !ok {
				break
			}
			if v == "" {
				for _, li := range s.empty {
					c.markLocal(li)
				}
				continue
			}
			if s.fold != nil {
				lv := v
				if hasHighByte(v) {
					lv = strings.ToLower(v)
				}
				s.fold.scan(lv, c)
			}
			if s.cased != nil {
				s.cased.scan(v, c)
			}
		}
	}
	for _, r := range km.always {
		if c.ruleGen[r] != c.gen {
			c.ruleGen[r] = c.gen
			c.cands = append(c.cands, r)
		}
	}
}

// predTrue evaluates a predicate for the current event.
func (c *evalCtx) predTrue(pid int32) bool {
	p := &c.set.preds[pid]
	if p.eager {
		return c.predGen[pid] == c.gen
	}
	if c.lazyGen[pid] == c.gen {
		return c.lazyVal[pid]
	}
	v := false
	get := fieldDefs[p.field].get
	for i := 0; !v; i++ {
		s, ok := get(c, i)
		if !ok {
			break
		}
		v = p.test(s)
	}
	c.lazyGen[pid], c.lazyVal[pid] = c.gen, v
	return v
}

// test compares one value; it is the reference semantics the automata
// implement for the eager predicates.
func (p *pred) test(s string) bool {
	switch {
	case p.always:
		return true
	case p.glob != nil:
		return p.glob.match(s)
	case p.re != nil:
		return p.re.MatchString(s)
	}
	switch p.op {
	case opCIDR:
		a, err := netip.ParseAddr(s)
		return err == nil && p.prefix.Contains(a.Unmap())
	case opGt, opGte, opLt, opLte:
		n, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return false
		}
		switch p.op {
		case opGt:
			return n > p.num
		case opGte:
			return n >= p.num
		case opLt:
			return n < p.num
		}
		return n <= p.num
	}
	if !p.cased {
		s = strings.ToLower(s)
	}
	switch p.op {
	case opContains:
		return strings.Contains(s, p.value)
	case opStartsWith:
		return strings.HasPrefix(s, p.value)
	case opEndsWith:
		return strings.HasSuffix(s, p.value)
	}
	return s == p.value
}

func (c *evalCtx) fieldTrue(cf *cfield) bool {
	if cf.all {
		for _, g := range cf.groups {
			if !c.groupTrue(g) {
				return false
			}
		}
		return true
	}
	for _, g := range cf.groups {
		if c.groupTrue(g) {
			return true
		}
	}
	return false
}

func (c *evalCtx) groupTrue(g []int32) bool {
	for _, p := range g {
		if c.predTrue(p) {
			return true
		}
	}
	return false
}

func (c *evalCtx) altTrue(alt []cfield) bool {
	for i := range alt {
		if !c.fieldTrue(&alt[i]) {
			return false
		}
	}
	return true
}

func (c *evalCtx) searchTrue(s *csearch) bool {
	for _, alt := range s.alts {
		if c.altTrue(alt) {
			return true
		}
	}
	return false
}

func (c *evalCtx) condTrue(r *crule, n *condNode) bool {
	switch n.kind {
	case cRef:
		return c.searchTrue(&r.searches[n.targets[0]])
	case cNot:
		return !c.condTrue(r, n.kids[0])
	case cAnd:
		for _, k := range n.kids {
			if !c.condTrue(r, k) {
				return false
			}
		}
		return true
	case cOr:
		for _, k := range n.kids {
			if c.condTrue(r, k) {
				return true
			}
		}
		return false
	case cAllOf:
		for _, t := range n.targets {
			if !c.searchTrue(&r.searches[t]) {
				return false
			}
		}
		return true
	default: // cOneOf
		for _, t := range n.targets {
			if c.searchTrue(&r.searches[t]) {
				return true
			}
		}
		return false
	}
}

func (c *evalCtx) ruleTrue(r *crule) bool {
	if !r.kinds.has(c.ev.Kind) || (r.filter != nil && !r.filter(c.ev)) {
		return false
	}
	for _, cond := range r.p.conds {
		if c.condTrue(r, cond) {
			return true
		}
	}
	return false
}

// explain lists the fields and values that made r match: for each search
// that counted towards the condition, the first alternative that matched
// and the value of each of its fields that satisfied it.
func (c *evalCtx) explain(r *crule) []event.Match {
	var out []event.Match
	seen := map[string]bool{}
	val := func(i int) bool { return c.searchTrue(&r.searches[i]) }
	for _, cond := range r.p.conds {
		if !c.condTrue(r, cond) {
			continue
		}
		for _, si := range cond.positives(val, false, nil) {
			for _, alt := range r.searches[si].alts {
				if !c.altTrue(alt) {
					continue
				}
				for i := range alt {
					m, ok := c.matchedValue(&alt[i])
					if ok && !seen[m.Field+"\x00"+m.Value] {
						seen[m.Field+"\x00"+m.Value] = true
						out = append(out, m)
					}
				}
				break
			}
		}
		break
	}
	return out
}

func (c *evalCtx) matchedValue(cf *cfield) (event.Match, bool) {
	def := &fieldDefs[cf.fid]
	for i := 0; ; i++ {
		v, ok := def.get(c, i)
		if !ok {
			break
		}
		for _, g := range cf.groups {
			for _, pid := range g {
				if c.set.preds[pid].test(v) {
					return event.Match{Field: def.name, Value: strings.Clone(v)}, true
				}
			}
		}
	}
	return event.Match{}, false
}
