package detect

import (
	"container/list"
	"fmt"
	"slices"
	"strings"

	"github.com/watchpost/watchpost/agent/event"
)

// treeField is the Watchpost group-by key for "in one process tree": a
// later event belongs to the tree of the first when its process, or one of
// its ancestors, is the first event's process or that process's parent.
const treeField = "ProcessTree"

// maxRefs bounds the events an alert names (the count says how many there were).
const maxRefs = 16

// ccorr is a compiled correlation rule.
type ccorr struct {
	p          *parsedRule
	sig        string
	typ        string
	window     uint64 // ns
	threshold  uint64
	steps      []stepRef
	keys       [][]fieldID // per step: the group-by fields
	keyNames   []string
	values     []fieldID // value_count: per step, the counted field
	valueName  string
	tree       bool
	generate   bool
	feeds      []feed
	level      string
	exceptions []*cexception

	// State, owned by the detecting goroutine.
	groups  map[string]*list.Element
	lru     *list.List // front: most recently used
	dropped uint64
}

type stepRef struct {
	rule *crule
	corr *ccorr
}

func (s stepRef) id() string {
	if s.rule != nil {
		return s.rule.p.id
	}
	return s.corr.p.id
}

type corrGroup struct {
	key      string
	lastSeen uint64
	// event_count: the newest threshold match times (a ring)
	times []uint64
	refs  []event.EventRef
	head  int
	// value_count
	vals map[string]valSeen
	// temporal: per step, the latest match
	stepAt  []uint64
	stepRef []event.EventRef
	treePID [2]uint32
}

type valSeen struct {
	at  uint64
	ref event.EventRef
}

func (c *compiler) correlations(rs []*parsedRule) {
	// Several passes, so that correlations may refer to correlations
	// defined later; a reference cycle leaves its rules unresolved.
	pending := rs
	for pass := 0; pass <= len(rs) && len(pending) > 0; pass++ {
		var next []*parsedRule
		for _, r := range pending {
			cc, missing, err := c.correlation(r)
			switch {
			case err != nil:
				c.errs = append(c.errs, err)
			case missing != "":
				next = append(next, r)
			default:
				c.set.corrs = append(c.set.corrs, cc)
				c.set.byCorr(cc)
			}
		}
		if len(next) == len(pending) {
			for _, r := range next {
				_, missing, _ := c.correlation(r)
				c.errs = append(c.errs, &LoadError{File: r.file, Line: r.corr.line, Msg: fmt.Sprintf("correlation.rules: %s is not a loaded rule (or the rules refer to each other in a cycle)", missing)})
			}
			break
		}
		pending = next
	}
	// Rules that feed a correlation raise no alert of their own unless a
	// correlation asks for it (Sigma's generate).
	for _, cc := range c.set.corrs {
		for i, s := range cc.steps {
			f := feed{corr: cc, step: i}
			if s.rule != nil {
				s.rule.feeds = append(s.rule.feeds, f)
				s.rule.generate = false
			} else {
				s.corr.feeds = append(s.corr.feeds, f)
				s.corr.generate = false
			}
		}
	}
	for _, cc := range c.set.corrs {
		if !cc.p.corr.generate {
			continue
		}
		for _, s := range cc.steps {
			if s.rule != nil {
				s.rule.generate = true
			} else {
				s.corr.generate = true
			}
		}
	}
}

func (s *ruleSet) byCorr(cc *ccorr) {
	s.corrByID[cc.p.id] = cc
	if cc.p.name != "" {
		s.corrByID[cc.p.name] = cc
	}
}

// correlation compiles one rule; missing names a referenced rule not (yet)
// compiled.
func (c *compiler) correlation(r *parsedRule) (*ccorr, string, *LoadError) {
	pc := r.corr
	cc := &ccorr{p: r, typ: pc.typ, window: uint64(pc.timespan), threshold: pc.cond.threshold, level: r.level,
		groups: map[string]*list.Element{}, lru: list.New()}
	// A referenced rule generates only if the correlation says so; the
	// correlation itself always alerts unless another correlation uses it.
	cc.generate = true
	errf := func(line int, format string, args ...any) *LoadError {
		return &LoadError{File: r.file, Line: line, Msg: fmt.Sprintf(format, args...)}
	}
	seen := map[string]bool{}
	for _, ref := range pc.rules {
		if seen[ref] {
			return nil, "", errf(pc.line, "correlation.rules: %s is listed twice", ref)
		}
		seen[ref] = true
		if cr, ok := c.set.byID[ref]; ok {
			cc.steps = append(cc.steps, stepRef{rule: cr})
			continue
		}
		if co, ok := c.set.corrByID[ref]; ok {
			cc.steps = append(cc.steps, stepRef{corr: co})
			continue
		}
		return nil, ref, nil
	}
	stepName := func(s stepRef) (string, string) {
		if s.rule != nil {
			return s.rule.p.id, s.rule.p.name
		}
		return s.corr.p.id, s.corr.p.name
	}
	// resolve finds the field an alias or a plain field name means for a step.
	resolve := func(name string, s stepRef) (fieldID, *LoadError) {
		field := name
		if al, ok := pc.aliases[name]; ok {
			id, nm := stepName(s)
			f, ok := al[nm]
			if !ok {
				f, ok = al[id]
			}
			if !ok {
				return 0, errf(pc.aliasLine, "correlation.aliases.%s: no field for rule %s", name, id)
			}
			field = f
		}
		fid, ok := lookupField(field)
		if !ok {
			return 0, errf(pc.line, "correlation: field %s is not supported", field)
		}
		return fid, nil
	}
	for _, g := range pc.groupBy {
		if g == treeField {
			if cc.typ != "temporal" && cc.typ != "temporal_ordered" {
				return nil, "", errf(pc.line, "correlation.group-by: %s applies to temporal and temporal_ordered (group counts by ProcessId or ParentProcessId)", treeField)
			}
			cc.tree = true
			continue
		}
		cc.keyNames = append(cc.keyNames, g)
	}
	for _, s := range cc.steps {
		var ks []fieldID
		for _, g := range cc.keyNames {
			fid, err := resolve(g, s)
			if err != nil {
				return nil, "", err
			}
			ks = append(ks, fid)
		}
		cc.keys = append(cc.keys, ks)
		if cc.typ == "value_count" {
			fid, err := resolve(pc.field, s)
			if err != nil {
				return nil, "", err
			}
			cc.values = append(cc.values, fid)
			cc.valueName = pc.field
		}
	}
	cc.sig = fmt.Sprintf("%s|%d|%d|%v|%v|%v|%v|%s", cc.typ, cc.window, cc.threshold, pc.rules, pc.groupBy, pc.aliases, cc.tree, pc.field)
	for i := range r.exceptions {
		ex, err := compileException(&r.exceptions[i])
		if err != nil {
			return nil, "", errf(r.exceptions[i].line, "watchpost.exceptions: %v", err)
		}
		cc.exceptions = append(cc.exceptions, ex)
	}
	return cc, "", nil
}

// groupKey builds the group's key from the event's values.
func (e *Engine) groupKey(cc *ccorr, step int) string {
	c := e.ctx
	b := e.keyBuf[:0]
	for _, fid := range cc.keys[step] {
		v, _ := fieldDefs[fid].get(c, 0)
		b = append(b, v...)
		b = append(b, 0)
	}
	e.keyBuf = b
	return bstr(b)
}

// lookupGroup finds or makes the group; it evicts the least recently used
// group beyond the bound and groups idle for longer than the window.
func (e *Engine) lookupGroup(cc *ccorr, key string, now uint64) *corrGroup {
	if el, ok := cc.groups[key]; ok {
		cc.lru.MoveToFront(el)
		g := el.Value.(*corrGroup)
		g.lastSeen = now
		return g
	}
	for back := cc.lru.Back(); back != nil; back = cc.lru.Back() {
		g := back.Value.(*corrGroup)
		if cc.lru.Len() < e.cfg.MaxGroups && now-g.lastSeen <= cc.window {
			break
		}
		if now-g.lastSeen <= cc.window {
			cc.dropped++ // evicted while still inside its window
			e.dropped.Add(1)
		}
		delete(cc.groups, g.key)
		cc.lru.Remove(back)
	}
	g := &corrGroup{key: strings.Clone(key), lastSeen: now}
	cc.groups[g.key] = cc.lru.PushFront(g)
	return g
}

func (e *Engine) dropGroup(cc *ccorr, g *corrGroup) {
	if el, ok := cc.groups[g.key]; ok {
		cc.lru.Remove(el)
		delete(cc.groups, g.key)
	}
}

func (e *Engine) ref() event.EventRef {
	ev := e.ctx.ev
	return event.EventRef{Seq: ev.Seq, Kind: ev.Kind, Time: ev.Time, BootNS: ev.BootNS, PID: ev.Process.PID}
}

// feedCorr records a match of a correlation's step and raises the
// correlation when its condition is reached.
func (e *Engine) feedCorr(f feed, matches []event.Match) {
	cc := f.corr
	ev := e.ctx.ev
	now := ev.BootNS
	key := e.groupKey(cc, f.step)
	switch cc.typ {
	case "event_count":
		g := e.lookupGroup(cc, key, now)
		if g.times == nil {
			g.times = make([]uint64, cc.threshold)
			g.refs = make([]event.EventRef, min(cc.threshold, maxRefs))
		}
		n := uint64(len(g.times))
		g.times[g.head%int(n)] = now
		if len(g.refs) > 0 {
			g.refs[g.head%len(g.refs)] = e.ref()
		}
		g.head++
		if uint64(g.head) < n {
			return
		}
		oldest := g.times[g.head%int(n)] // the threshold-th newest
		if now-oldest > cc.window {
			return
		}
		refs := ringOrder(g.refs, g.head)
		e.dropGroup(cc, g)
		e.fireCorr(cc, cc.threshold, refs, e.keyMatches(cc, f.step, nil))
	case "value_count":
		g := e.lookupGroup(cc, key, now)
		if g.vals == nil {
			g.vals = map[string]valSeen{}
		}
		v, _ := fieldDefs[cc.values[f.step]].get(e.ctx, 0)
		for k, s := range g.vals {
			if now-s.at > cc.window {
				delete(g.vals, k)
			}
		}
		if s, ok := g.vals[v]; ok {
			s.at, s.ref = now, e.ref()
			g.vals[v] = s
		} else {
			g.vals[strings.Clone(v)] = valSeen{at: now, ref: e.ref()}
		}
		if uint64(len(g.vals)) < cc.threshold {
			return
		}
		type kv struct {
			v string
			s valSeen
		}
		all := make([]kv, 0, len(g.vals))
		for k, s := range g.vals {
			all = append(all, kv{k, s})
		}
		slices.SortFunc(all, func(a, b kv) int { return int64cmp(a.s.at, b.s.at) })
		var refs []event.EventRef
		var extra []event.Match
		for _, x := range all[max(0, len(all)-maxRefs):] {
			refs = append(refs, x.s.ref)
			extra = append(extra, event.Match{Field: cc.valueName, Value: x.v})
		}
		e.dropGroup(cc, g)
		e.fireCorr(cc, uint64(len(all)), refs, e.keyMatches(cc, f.step, extra))
	default: // temporal, temporal_ordered
		g := e.lookupGroup(cc, key, now)
		if g.stepAt == nil {
			g.stepAt = make([]uint64, len(cc.steps))
			g.stepRef = make([]event.EventRef, len(cc.steps))
		}
		// Forget steps older than the window.
		for i, t := range g.stepAt {
			if t != 0 && now-t > cc.window {
				g.stepAt[i] = 0
			}
		}
		if cc.typ == "temporal_ordered" && f.step > 0 && g.stepAt[f.step-1] == 0 {
			return // out of order
		}
		if cc.tree {
			if f.step == 0 || (cc.typ == "temporal" && g.firstStep() < 0) {
				g.treePID = [2]uint32{ev.Process.PID, ev.Process.PPID}
			} else if !e.inTree(g.treePID) {
				return
			}
		}
		if cc.typ == "temporal_ordered" && f.step == 0 {
			clear(g.stepAt) // a new first step starts the sequence again
		}
		g.stepAt[f.step], g.stepRef[f.step] = max(now, 1), e.ref()
		for _, t := range g.stepAt {
			if t == 0 {
				return
			}
		}
		refs := slices.Clone(g.stepRef)
		slices.SortFunc(refs, func(a, b event.EventRef) int { return int64cmp(a.BootNS, b.BootNS) })
		e.dropGroup(cc, g)
		e.fireCorr(cc, uint64(len(refs)), refs, e.keyMatches(cc, f.step, matches))
	}
}

func (g *corrGroup) firstStep() int {
	for i, t := range g.stepAt {
		if t != 0 {
			return i
		}
	}
	return -1
}

// inTree: the event's process or an ancestor is one of the tree's pids.
func (e *Engine) inTree(tree [2]uint32) bool {
	ev := e.ctx.ev
	in := func(pid uint32) bool { return pid != 0 && (pid == tree[0] || pid == tree[1]) }
	if in(ev.Process.PID) || in(ev.Process.PPID) {
		return true
	}
	for _, a := range ev.Ancestry {
		if in(a.PID) {
			return true
		}
	}
	return false
}

func int64cmp(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// ringOrder returns a ring's entries oldest first.
func ringOrder(r []event.EventRef, head int) []event.EventRef {
	n := len(r)
	out := make([]event.EventRef, 0, n)
	for i := 0; i < n; i++ {
		out = append(out, r[(head+i)%n])
	}
	return out
}

// keyMatches names the group's values (and what else explains it).
func (e *Engine) keyMatches(cc *ccorr, step int, extra []event.Match) []event.Match {
	var out []event.Match
	for i, fid := range cc.keys[step] {
		v, _ := fieldDefs[fid].get(e.ctx, 0)
		out = append(out, event.Match{Field: cc.keyNames[i], Value: strings.Clone(v)})
	}
	return append(out, extra...)
}

// fireCorr raises a correlation (after its exceptions), or feeds the
// correlations that use it.
func (e *Engine) fireCorr(cc *ccorr, count uint64, refs []event.EventRef, matches []event.Match) {
	if e.suppressed(cc.p, cc.exceptions) {
		return
	}
	for _, f := range cc.feeds {
		e.feedCorr(f, matches)
	}
	if cc.generate {
		e.raise(cc.p, cc.typ, count, matches, refs)
	}
}

// moveState carries correlation state into a new rule set for
// correlations whose definition did not change.
func moveState(from, to *ruleSet) {
	if from == nil {
		return
	}
	old := map[string]*ccorr{}
	for _, cc := range from.corrs {
		old[cc.p.id] = cc
	}
	for _, cc := range to.corrs {
		if prev, ok := old[cc.p.id]; ok && prev.sig == cc.sig {
			cc.groups, cc.lru, cc.dropped = prev.groups, prev.lru, prev.dropped
		}
	}
}
