package detect

import (
	"fmt"
	"net/netip"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/watchpost/watchpost/agent/event"
)

// category is a log source: the event kinds it covers and, for some, which
// of those events.
type category struct {
	kinds  []event.Kind
	filter func(ev *event.Event) bool
}

var sigmaCategoryDefs = map[string]category{
	"process_creation": {kinds: []event.Kind{event.KindExec}},
	// A file created or overwritten: opened to modify, renamed or linked
	// into place, truncated.
	"file_event": {
		kinds: []event.Kind{event.KindFileOpen, event.KindFileRename, event.KindFileLink, event.KindFileSymlink, event.KindFileTruncate},
		filter: func(ev *event.Event) bool {
			return ev.Kind != event.KindFileOpen || (ev.File != nil && ev.File.Write)
		},
	},
	"file_delete":        {kinds: []event.Kind{event.KindFileUnlink, event.KindFileRmdir}},
	"file_access":        {kinds: []event.Kind{event.KindFileOpen}},
	"network_connection": {kinds: []event.Kind{event.KindNetConnect, event.KindNetAccept, event.KindNetUDPFlow}},
}

// watchpostCategory: every event type the kernel or the network context
// produces is a category of its own.
func watchpostCategory(name string) bool {
	k, err := event.ParseKind(name)
	return err == nil && ruleKind(k)
}

func ruleKind(k event.Kind) bool {
	return k != event.KindUnknown && k != event.KindHealth && k != event.KindGap && k != event.KindAgentStart &&
		k != event.KindAgentStop && k != event.KindAlert
}

func categoryOf(name string) category {
	if c, ok := sigmaCategoryDefs[name]; ok {
		return c
	}
	k, _ := event.ParseKind(name)
	return category{kinds: []event.Kind{k}}
}

// pred is one comparison of a field with a value, shared by every rule
// that makes it.
type pred struct {
	field fieldID
	op    matchOp
	cased bool
	value string // lower-cased unless cased
	eager bool   // found by the automata; otherwise evaluated on demand
	// lazy forms
	always bool // an empty contains/startswith/endswith: true for every value
	glob   *glob
	re     *regexp.Regexp
	prefix netip.Prefix
	num    float64
}

type predKey struct {
	field fieldID
	op    matchOp
	cased bool
	value string
	flags string
}

// cfield is a compiled field expression: value groups of predicates.
type cfield struct {
	fid    fieldID
	groups [][]int32
	all    bool
}

type csearch struct {
	alts [][]cfield
}

// crule is a compiled detection rule.
type crule struct {
	idx        int32
	p          *parsedRule
	kinds      kindMask
	filter     func(ev *event.Event) bool
	searches   []csearch
	always     bool // may match with no eager predicate true
	generate   bool // raises alerts of its own
	feeds      []feed
	exceptions []*cexception
	level      string
}

// feed: a rule's match is step step of correlation corr.
type feed struct {
	corr *ccorr
	step int
}

type kindMask [4]uint64

func (m *kindMask) set(k event.Kind)     { m[k/64%4] |= 1 << (k % 64) }
func (m kindMask) has(k event.Kind) bool { return m[k/64%4]&(1<<(k%64)) != 0 }

// kindMatcher is what one event kind is matched with.
type kindMatcher struct {
	scans  []fieldScan
	locals []localPred
	always []int32 // rules evaluated for every event of the kind
}

type localPred struct {
	pred  int32
	rules []int32
}

type fieldScan struct {
	field fieldID
	fold  *automaton // case-insensitive patterns, by local predicate
	cased *automaton
	empty []int32 // local predicates true for an empty value
}

// ruleSet is one compiled generation of rules. It is immutable once built,
// except for the correlation state, which the detecting goroutine owns.
type ruleSet struct {
	generation uint64
	loadedAt   time.Time
	rules      []*crule
	byID       map[string]*crule
	preds      []pred
	kinds      [256]*kindMatcher
	corrs      []*ccorr
	corrByID   map[string]*ccorr
	exceptions []*cexception // from rules files, not inside a rule
	errors     []*LoadError
	files      map[string]*parsedFile
}

type compiler struct {
	set     *ruleSet
	predIdx map[predKey]int32
	errs    []*LoadError
}

// compile builds a rule set from parsed files (in a fixed order); rules
// with errors are left out and reported, the others load.
func compile(files []*parsedFile, disabled map[string]bool, errs []*LoadError) *ruleSet {
	c := &compiler{
		set:     &ruleSet{byID: map[string]*crule{}, corrByID: map[string]*ccorr{}, files: map[string]*parsedFile{}},
		predIdx: map[predKey]int32{},
		errs:    errs,
	}
	names := map[string]*parsedRule{}
	var detections, correlations []*parsedRule
	for _, f := range files {
		c.set.files[f.name] = f
		for _, r := range f.rules {
			if prev, dup := c.set.byID[r.id]; dup {
				c.errs = append(c.errs, &LoadError{File: r.file, Line: r.line, Msg: fmt.Sprintf("id %s: already defined at %s:%d", r.id, prev.p.file, prev.p.line)})
				continue
			}
			if disabled[r.id] || (r.name != "" && disabled[r.name]) {
				continue
			}
			if r.name != "" {
				if prev, dup := names[r.name]; dup {
					c.errs = append(c.errs, &LoadError{File: r.file, Line: r.line, Msg: fmt.Sprintf("name %s: already used at %s:%d", r.name, prev.file, prev.line)})
					continue
				}
				names[r.name] = r
			}
			cr := &crule{p: r, level: r.level}
			c.set.byID[r.id] = cr // placeholder for duplicate detection
			if r.corr != nil {
				correlations = append(correlations, r)
			} else {
				detections = append(detections, r)
			}
		}
		for i := range f.exceptions {
			ex, err := compileException(&f.exceptions[i])
			if err != nil {
				c.errs = append(c.errs, &LoadError{File: f.name, Line: f.exceptions[i].line, Msg: err.Error()})
				continue
			}
			c.set.exceptions = append(c.set.exceptions, ex)
		}
	}
	c.set.byID = map[string]*crule{}
	for _, r := range detections {
		cr, err := c.rule(r)
		if err != nil {
			c.errs = append(c.errs, err)
			continue
		}
		cr.idx = int32(len(c.set.rules))
		cr.generate = true
		c.set.rules = append(c.set.rules, cr)
		c.set.byID[r.id] = cr
		if r.name != "" {
			c.set.byID[r.name] = cr
		}
	}
	c.correlations(correlations)
	c.index()
	c.set.errors = c.errs
	return c.set
}

func (c *compiler) rule(r *parsedRule) (*crule, *LoadError) {
	cat := categoryOf(r.category)
	cr := &crule{p: r, filter: cat.filter, level: r.level}
	for _, k := range cat.kinds {
		cr.kinds.set(k)
	}
	for _, name := range r.searchOrder {
		s := r.searches[name]
		var cs csearch
		for _, alt := range s.alts {
			var cfs []cfield
			for _, fe := range alt {
				def := fieldDefs[fe.fid]
				for _, k := range cat.kinds {
					if !def.exists(k) {
						return nil, &LoadError{File: r.file, Line: fe.line, Msg: fmt.Sprintf("detection.%s: field %s does not exist for %s events", name, fe.field, r.category)}
					}
				}
				cf := cfield{fid: fe.fid, all: fe.all}
				for gi, group := range fe.values {
					var ids []int32
					for _, v := range group {
						id, err := c.pred(fe, v, fe.null[gi])
						if err != nil {
							return nil, &LoadError{File: r.file, Line: fe.line, Msg: fmt.Sprintf("detection.%s.%s: %v", name, fe.field, err)}
						}
						ids = append(ids, id)
					}
					cf.groups = append(cf.groups, ids)
				}
				cfs = append(cfs, cf)
			}
			cs.alts = append(cs.alts, cfs)
		}
		cr.searches = append(cr.searches, cs)
	}
	for _, cond := range r.conds {
		if err := cond.resolve(r.searchOrder); err != nil {
			return nil, &LoadError{File: r.file, Line: r.condLine, Msg: "detection.condition: " + err.Error()}
		}
	}
	// Candidate analysis: with every eager predicate false and the lazy
	// ones unknown, can the rule still match?
	val := func(si int) tri { return c.searchTri(&cr.searches[si]) }
	for _, cond := range r.conds {
		if cond.eval3(val) != triFalse {
			cr.always = true
		}
	}
	for _, e := range r.exceptions {
		ex, err := compileException(&e)
		if err != nil {
			return nil, &LoadError{File: r.file, Line: e.line, Msg: "watchpost.exceptions: " + err.Error()}
		}
		cr.exceptions = append(cr.exceptions, ex)
	}
	return cr, nil
}

func (c *compiler) searchTri(s *csearch) tri {
	out := triFalse
	for _, alt := range s.alts {
		v := triTrue
		for _, cf := range alt {
			fv := c.fieldTri(&cf)
			if fv == triFalse {
				v = triFalse
				break
			}
			if fv == triUnknown {
				v = triUnknown
			}
		}
		if v == triTrue {
			return triTrue
		}
		if v == triUnknown {
			out = triUnknown
		}
	}
	return out
}

func (c *compiler) fieldTri(cf *cfield) tri {
	group := func(g []int32) tri {
		out := triFalse
		for _, p := range g {
			if !c.set.preds[p].eager {
				out = triUnknown
			}
		}
		return out
	}
	if cf.all {
		out := triTrue
		for _, g := range cf.groups {
			switch group(g) {
			case triFalse:
				return triFalse
			case triUnknown:
				out = triUnknown
			}
		}
		return out
	}
	out := triFalse
	for _, g := range cf.groups {
		if group(g) == triUnknown {
			out = triUnknown
		}
	}
	return out
}

// pred finds or adds the predicate for one value.
func (c *compiler) pred(fe *fieldExpr, v string, null bool) (int32, error) {
	p := pred{field: fe.fid, op: fe.op, cased: fe.cased}
	key := predKey{field: fe.fid, op: fe.op, cased: fe.cased, flags: fe.reFlags}
	switch fe.op {
	case opRe:
		re, err := regexp.Compile(reSource(v, fe.reFlags))
		if err != nil {
			return 0, fmt.Errorf("regular expression: %v", err)
		}
		p.re, key.value = re, v
	case opCIDR:
		pfx, err := parsePrefix(v)
		if err != nil {
			return 0, err
		}
		p.prefix, key.value = pfx, pfx.String()
	case opGt, opGte, opLt, opLte:
		n, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return 0, fmt.Errorf("%q is not a number", v)
		}
		p.num, key.value = n, v
	default:
		lit, g := parseWildcards(v, !fe.cased)
		if g != nil && !null {
			// Wildcards: the comparison becomes a glob over the whole value.
			g.anchorFor(fe.op)
			p.glob, key.value = g, "glob:"+v
			break
		}
		if !fe.cased {
			lit = strings.ToLower(lit)
		}
		p.value, key.value = lit, lit
		if lit == "" && fe.op != opEq {
			p.always = true
			break
		}
		p.eager = true
	}
	if id, ok := c.predIdx[key]; ok {
		return id, nil
	}
	id := int32(len(c.set.preds))
	c.set.preds = append(c.set.preds, p)
	c.predIdx[key] = id
	return id, nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		a, aerr := netip.ParseAddr(s)
		if aerr != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR", s)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	return p.Masked(), nil
}

// index builds the automata of every event kind.
func (c *compiler) index() {
	type scanBuild struct {
		fold, cased []acPattern
		empty       []int32
	}
	for _, cr := range c.set.rules {
		for k := event.Kind(0); k < 256; k++ {
			if !cr.kinds.has(k) || !ruleKind(k) {
				continue
			}
			km := c.set.kinds[k]
			if km == nil {
				km = &kindMatcher{}
				c.set.kinds[k] = km
			}
			if cr.always {
				km.always = append(km.always, cr.idx)
			}
		}
	}
	for ki, km := range c.set.kinds {
		if km == nil {
			continue
		}
		k := event.Kind(ki)
		builds := map[fieldID]*scanBuild{}
		localOf := map[int32]int32{}
		for _, cr := range c.set.rules {
			if !cr.kinds.has(k) {
				continue
			}
			seen := map[int32]bool{}
			for _, s := range cr.searches {
				for _, alt := range s.alts {
					for _, cf := range alt {
						for _, g := range cf.groups {
							for _, pid := range g {
								p := &c.set.preds[pid]
								if !p.eager || seen[pid] {
									continue
								}
								seen[pid] = true
								li, ok := localOf[pid]
								if !ok {
									li = int32(len(km.locals))
									km.locals = append(km.locals, localPred{pred: pid})
									localOf[pid] = li
									b := builds[p.field]
									if b == nil {
										b = &scanBuild{}
										builds[p.field] = b
									}
									if p.value == "" {
										b.empty = append(b.empty, li)
									} else {
										ap := acPattern{text: p.value, pred: li, anchor: anchorOf(p.op)}
										if p.cased {
											b.cased = append(b.cased, ap)
										} else {
											b.fold = append(b.fold, ap)
										}
									}
								}
								km.locals[li].rules = append(km.locals[li].rules, cr.idx)
							}
						}
					}
				}
			}
		}
		fields := make([]fieldID, 0, len(builds))
		for f := range builds {
			fields = append(fields, f)
		}
		sort.Slice(fields, func(i, j int) bool { return fields[i] < fields[j] })
		for _, f := range fields {
			b := builds[f]
			fs := fieldScan{field: f, empty: b.empty}
			if len(b.fold) > 0 {
				fs.fold = buildAutomaton(b.fold, true)
			}
			if len(b.cased) > 0 {
				fs.cased = buildAutomaton(b.cased, false)
			}
			km.scans = append(km.scans, fs)
		}
	}
}

func anchorOf(op matchOp) anchor {
	switch op {
	case opStartsWith:
		return anchorStart
	case opEndsWith:
		return anchorEnd
	case opEq:
		return anchorExact
	}
	return anchorNone
}
