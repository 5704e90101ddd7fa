package detect

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// LoadError is a problem in a rules file, located by file and line.
type LoadError struct {
	File string
	Line int
	Msg  string
}

func (e *LoadError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

// parsedFile is everything one rules file defines.
type parsedFile struct {
	name       string
	rules      []*parsedRule
	exceptions []Exception
}

// parsedRule is a detection or correlation rule as written.
type parsedRule struct {
	file        string
	line        int
	source      string // pack:host, pack:ot, or the file
	id          string
	name        string
	title       string
	description string
	level       string
	tags        []string
	techniques  []string

	// Detection rules.
	category    string
	catLine     int
	searches    map[string]*search
	searchOrder []string
	conds       []*condNode // any of them
	condLine    int

	// Correlation rules.
	corr *parsedCorr

	exceptions []Exception
}

type search struct {
	name string
	line int
	// alts are OR-ed; the field expressions of one alternative are AND-ed.
	alts [][]*fieldExpr
}

type matchOp uint8

const (
	opEq matchOp = iota
	opContains
	opStartsWith
	opEndsWith
	opRe
	opCIDR
	opGt
	opGte
	opLt
	opLte
)

var opNames = map[string]matchOp{
	"contains": opContains, "startswith": opStartsWith, "endswith": opEndsWith, "re": opRe, "cidr": opCIDR,
	"gt": opGt, "gte": opGte, "lt": opLt, "lte": opLte,
}

// fieldExpr is one `Field|modifiers: values` item.
type fieldExpr struct {
	line  int
	field string
	fid   fieldID
	op    matchOp
	all   bool
	cased bool
	// values: each is a group of alternatives (windash and base64offset
	// expand one value into several); groups are OR-ed, or AND-ed with all.
	values  [][]string
	null    []bool // the value was YAML null (matches an empty field)
	reFlags string
}

type parsedCorr struct {
	line      int
	typ       string
	rules     []string
	groupBy   []string
	timespan  time.Duration
	cond      corrCond
	field     string // value_count
	aliases   map[string]map[string]string
	generate  bool
	genLine   int
	aliasLine int
}

type corrCond struct {
	op        string // gt or gte
	threshold uint64
}

// Known Sigma logsource categories and what they cover; Watchpost event
// types are categories too.
var sigmaCategories = map[string]bool{
	"process_creation": true, "file_event": true, "file_delete": true, "file_access": true, "network_connection": true,
}

var keyword = regexp.MustCompile(`^[A-Za-z0-9_.\-]+$`)

func errAt(file string, n *yaml.Node, format string, args ...any) *LoadError {
	line := 0
	if n != nil {
		line = n.Line
	}
	return &LoadError{File: file, Line: line, Msg: fmt.Sprintf(format, args...)}
}

// parseFile reads every YAML document of a rules file. It stops at the
// first error: a broken file contributes nothing.
func parseFile(name, source string, data []byte) (*parsedFile, error) {
	pf := &parsedFile{name: name}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, &LoadError{File: name, Msg: "yaml: " + strings.TrimPrefix(err.Error(), "yaml: ")}
		}
		if len(doc.Content) == 0 {
			continue
		}
		root := doc.Content[0]
		if root.Kind != yaml.MappingNode {
			return nil, errAt(name, root, "a document must be a mapping (a rule, a correlation or exceptions)")
		}
		switch {
		case mapGet(root, "detection") != nil && mapGet(root, "correlation") != nil:
			return nil, errAt(name, root, "a document has both detection and correlation")
		case mapGet(root, "detection") != nil || mapGet(root, "correlation") != nil:
			r, err := parseRule(name, source, root)
			if err != nil {
				return nil, err
			}
			pf.rules = append(pf.rules, r)
		case mapGet(root, "exceptions") != nil:
			ex, err := parseExceptionsDoc(name, root)
			if err != nil {
				return nil, err
			}
			pf.exceptions = append(pf.exceptions, ex...)
		case mapGet(root, "action") != nil:
			// Sigma's action: global / reset / repeat documents (rule collections).
			return nil, errAt(name, root, "action documents (Sigma rule collections) are not supported: write each rule in full")
		default:
			return nil, errAt(name, root, "a document needs detection (a rule), correlation, or exceptions")
		}
	}
	return pf, nil
}

func mapGet(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

func scalarString(file string, n *yaml.Node, what string) (string, error) {
	if n.Kind != yaml.ScalarNode {
		return "", errAt(file, n, "%s: want a string", what)
	}
	return n.Value, nil
}

func stringList(file string, n *yaml.Node, what string) ([]string, error) {
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return nil, nil
		}
		return []string{n.Value}, nil
	case yaml.SequenceNode:
		out := make([]string, 0, len(n.Content))
		for _, c := range n.Content {
			if c.Kind != yaml.ScalarNode {
				return nil, errAt(file, c, "%s: want a list of strings", what)
			}
			out = append(out, c.Value)
		}
		return out, nil
	}
	return nil, errAt(file, n, "%s: want a string or a list of strings", what)
}

var levels = map[string]bool{"informational": true, "low": true, "medium": true, "high": true, "critical": true}

var techniqueTag = regexp.MustCompile(`^attack\.(t\d{4}(?:\.\d{3})?)$`)

func parseRule(file, source string, m *yaml.Node) (*parsedRule, error) {
	r := &parsedRule{file: file, line: m.Line, source: source, level: "medium"}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		var err error
		switch k.Value {
		case "title":
			r.title, err = scalarString(file, v, "title")
		case "id":
			r.id, err = scalarString(file, v, "id")
		case "name":
			r.name, err = scalarString(file, v, "name")
		case "description":
			r.description, err = scalarString(file, v, "description")
		case "level":
			r.level, err = scalarString(file, v, "level")
			if err == nil && !levels[r.level] {
				err = errAt(file, v, "level: %q is not informational, low, medium, high or critical", r.level)
			}
		case "tags":
			r.tags, err = stringList(file, v, "tags")
		case "logsource":
			err = r.parseLogsource(file, v)
		case "detection":
			err = r.parseDetection(file, v)
		case "correlation":
			r.corr, err = parseCorrelation(file, v)
		case "generate":
			if r.corr == nil {
				r.corr = &parsedCorr{}
			}
			r.corr.genLine = v.Line
			r.corr.generate = v.Value == "true"
		case "watchpost":
			err = r.parseExtension(file, v)
		default:
			// status, author, references, date, falsepositives, fields,
			// related, license ...: information, not matching.
		}
		if err != nil {
			return nil, err
		}
	}
	if r.title == "" {
		return nil, errAt(file, m, "title: required")
	}
	if r.id == "" && r.name == "" {
		return nil, errAt(file, m, "id: required (or name)")
	}
	if r.id == "" {
		r.id = r.name
	}
	if mapGet(m, "detection") != nil && r.category == "" {
		return nil, errAt(file, m, "logsource.category: required (process_creation, file_event, file_delete, file_access, network_connection or a Watchpost event type)")
	}
	if r.corr != nil && r.corr.typ == "" {
		return nil, errAt(file, m, "generate: only a correlation rule has it")
	}
	for _, t := range r.tags {
		if mt := techniqueTag.FindStringSubmatch(strings.ToLower(t)); mt != nil {
			r.techniques = append(r.techniques, strings.ToUpper(mt[1]))
		}
	}
	return r, nil
}

func (r *parsedRule) parseLogsource(file string, n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return errAt(file, n, "logsource: want a mapping")
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch k.Value {
		case "product":
			if v.Value != "linux" {
				return errAt(file, v, "logsource.product: %q is not supported (Watchpost sees Linux hosts: product linux)", v.Value)
			}
		case "category":
			r.category, r.catLine = v.Value, v.Line
			if !sigmaCategories[v.Value] && !watchpostCategory(v.Value) {
				return errAt(file, v, "logsource.category: %q is not supported (process_creation, file_event, file_delete, file_access, network_connection, or a Watchpost event type such as ptrace)", v.Value)
			}
		case "service":
			return errAt(file, v, "logsource.service: %q is not supported (Watchpost has its own kernel events, not %s logs: use a category)", v.Value, v.Value)
		case "definition":
		default:
			return errAt(file, k, "logsource.%s: unknown key", k.Value)
		}
	}
	return nil
}

func (r *parsedRule) parseExtension(file string, n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return errAt(file, n, "watchpost: want a mapping")
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch k.Value {
		case "exceptions":
			ex, err := parseExceptionList(file, v)
			if err != nil {
				return err
			}
			for j := range ex {
				if len(ex[j].Rules) > 0 {
					return errAt(file, v, "watchpost.exceptions[%d].rules: an exception inside a rule applies to that rule only", j)
				}
			}
			r.exceptions = ex
		default:
			return errAt(file, k, "watchpost.%s: unknown key (exceptions)", k.Value)
		}
	}
	return nil
}

func (r *parsedRule) parseDetection(file string, n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return errAt(file, n, "detection: want a mapping")
	}
	r.searches = map[string]*search{}
	var condNode *yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch k.Value {
		case "condition":
			condNode = v
		case "timeframe":
			return errAt(file, k, "detection.timeframe: Sigma 1 aggregations are not supported: write a correlation rule (event_count, value_count, temporal, temporal_ordered)")
		default:
			if !keyword.MatchString(k.Value) {
				return errAt(file, k, "detection: %q is not a valid search identifier", k.Value)
			}
			s, err := parseSearch(file, k.Value, v)
			if err != nil {
				return err
			}
			if _, dup := r.searches[k.Value]; dup {
				return errAt(file, k, "detection.%s: defined twice", k.Value)
			}
			r.searches[k.Value] = s
			r.searchOrder = append(r.searchOrder, k.Value)
		}
	}
	if condNode == nil {
		return errAt(file, n, "detection.condition: required")
	}
	r.condLine = condNode.Line
	conds, err := stringList(file, condNode, "detection.condition")
	if err != nil {
		return err
	}
	if len(conds) == 0 {
		return errAt(file, condNode, "detection.condition: empty")
	}
	for _, c := range conds {
		expr, err := parseCondition(c)
		if err != nil {
			return errAt(file, condNode, "detection.condition: %v", err)
		}
		r.conds = append(r.conds, expr)
	}
	return nil
}

func parseSearch(file, name string, n *yaml.Node) (*search, error) {
	s := &search{name: name, line: n.Line}
	switch n.Kind {
	case yaml.MappingNode:
		alt, err := parseFieldMap(file, name, n)
		if err != nil {
			return nil, err
		}
		s.alts = append(s.alts, alt)
	case yaml.SequenceNode:
		if len(n.Content) == 0 {
			return nil, errAt(file, n, "detection.%s: empty list", name)
		}
		// A list of maps (OR) or a list of keywords.
		if n.Content[0].Kind == yaml.MappingNode {
			for _, c := range n.Content {
				if c.Kind != yaml.MappingNode {
					return nil, errAt(file, c, "detection.%s: a list mixes field maps and keywords", name)
				}
				alt, err := parseFieldMap(file, name, c)
				if err != nil {
					return nil, err
				}
				s.alts = append(s.alts, alt)
			}
		} else {
			for _, c := range n.Content {
				if c.Kind != yaml.ScalarNode {
					return nil, errAt(file, c, "detection.%s: a list mixes keywords and field maps", name)
				}
				s.alts = append(s.alts, []*fieldExpr{keywordExpr(c)})
			}
		}
	case yaml.ScalarNode:
		s.alts = append(s.alts, []*fieldExpr{keywordExpr(n)})
	default:
		return nil, errAt(file, n, "detection.%s: want a map of fields, a list of maps or a list of keywords", name)
	}
	return s, nil
}

// keywordExpr: a keyword matches anywhere in the command line (its
// wildcards kept).
func keywordExpr(n *yaml.Node) *fieldExpr {
	return &fieldExpr{line: n.Line, field: "CommandLine", fid: fCommandLine, op: opContains,
		values: [][]string{{n.Value}}, null: []bool{false}}
}

var unsupportedModifiers = map[string]string{
	"exists":   "field existence is not decidable here: every field of the category exists (empty when unset); compare with ''",
	"expand":   "placeholders need a processing pipeline, which Watchpost does not have",
	"fieldref": "comparing two fields of one event is not supported",
	"neq":      "use `not` with a second selection",
	"utf16le":  "Linux command lines are not UTF-16", "utf16be": "Linux command lines are not UTF-16",
	"utf16": "Linux command lines are not UTF-16", "wide": "Linux command lines are not UTF-16",
	"minute": "time modifiers are not supported", "hour": "time modifiers are not supported",
	"day": "time modifiers are not supported", "week": "time modifiers are not supported",
	"month": "time modifiers are not supported", "year": "time modifiers are not supported",
}

func parseFieldMap(file, name string, m *yaml.Node) ([]*fieldExpr, error) {
	var out []*fieldExpr
	if len(m.Content) == 0 {
		return nil, errAt(file, m, "detection.%s: empty map", name)
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		fe, err := parseFieldExpr(file, name, k, v)
		if err != nil {
			return nil, err
		}
		out = append(out, fe)
	}
	return out, nil
}

func parseFieldExpr(file, name string, k, v *yaml.Node) (*fieldExpr, error) {
	parts := strings.Split(k.Value, "|")
	fe := &fieldExpr{line: k.Line, field: parts[0]}
	where := "detection." + name + "." + k.Value
	if fe.field == "" {
		return nil, errAt(file, k, "%s: keyword lists with modifiers are not supported (write CommandLine|contains|all)", where)
	}
	id, ok := lookupField(fe.field)
	if !ok {
		return nil, errAt(file, k, "%s: field %s is not supported (docs/detection.md lists the fields)", where, fe.field)
	}
	fe.fid = id
	var b64, b64off, windash, haveOp bool
	for _, mod := range parts[1:] {
		switch mod {
		case "all":
			fe.all = true
		case "cased":
			fe.cased = true
		case "windash":
			windash = true
		case "base64":
			b64 = true
		case "base64offset":
			b64off = true
		case "i", "m", "s":
			if fe.op != opRe {
				return nil, errAt(file, k, "%s: modifier |%s applies to |re only", where, mod)
			}
			fe.reFlags += mod
		default:
			op, known := opNames[mod]
			if !known {
				if why, refused := unsupportedModifiers[mod]; refused {
					return nil, errAt(file, k, "%s: modifier |%s is not supported: %s", where, mod, why)
				}
				return nil, errAt(file, k, "%s: unknown modifier |%s", where, mod)
			}
			if haveOp {
				return nil, errAt(file, k, "%s: two comparison modifiers", where)
			}
			fe.op, haveOp = op, true
		}
	}
	if fe.op >= opRe && (b64 || b64off || windash) {
		return nil, errAt(file, k, "%s: |base64, |base64offset and |windash transform strings for contains, startswith, endswith or equality", where)
	}
	if fe.cased && fe.op >= opRe {
		return nil, errAt(file, k, "%s: |cased applies to string comparisons", where)
	}
	var vals []*yaml.Node
	switch v.Kind {
	case yaml.ScalarNode:
		vals = []*yaml.Node{v}
	case yaml.SequenceNode:
		vals = v.Content
		if len(vals) == 0 {
			return nil, errAt(file, v, "%s: empty list of values", where)
		}
	default:
		return nil, errAt(file, v, "%s: want a value or a list of values", where)
	}
	for _, vn := range vals {
		if vn.Kind != yaml.ScalarNode {
			return nil, errAt(file, vn, "%s: values must be scalars", where)
		}
		if vn.Tag == "!!null" {
			if fe.op != opEq {
				return nil, errAt(file, vn, "%s: null only with plain equality (it matches an empty field)", where)
			}
			fe.values = append(fe.values, []string{""})
			fe.null = append(fe.null, true)
			continue
		}
		s, err := scalarValue(vn)
		if err != nil {
			return nil, errAt(file, vn, "%s: %v", where, err)
		}
		group := []string{s}
		if windash {
			group = windashVariants(s)
		}
		switch {
		case b64:
			for i := range group {
				group[i] = base64.StdEncoding.EncodeToString([]byte(group[i]))
			}
		case b64off:
			var out []string
			for _, g := range group {
				out = append(out, base64Offsets(g)...)
			}
			group = out
		}
		if err := checkValue(fe, s); err != nil {
			return nil, errAt(file, vn, "%s: %v", where, err)
		}
		fe.values = append(fe.values, group)
		fe.null = append(fe.null, false)
	}
	return fe, nil
}

// scalarValue formats a YAML scalar as Sigma evaluators compare it: the
// decoded value printed back (0x10 is 16, 1.50 is 1.5, yes stays yes).
func scalarValue(n *yaml.Node) (string, error) {
	switch n.Tag {
	case "!!int", "!!float", "!!bool":
		var v any
		if err := n.Decode(&v); err != nil {
			return "", err
		}
		return fmt.Sprintf("%v", v), nil
	}
	return n.Value, nil
}

func checkValue(fe *fieldExpr, s string) error {
	switch fe.op {
	case opRe:
		if _, err := regexp.Compile(reSource(s, fe.reFlags)); err != nil {
			return fmt.Errorf("regular expression: %v", err)
		}
	case opCIDR:
		if _, err := parsePrefix(s); err != nil {
			return err
		}
	case opGt, opGte, opLt, opLte:
		if _, err := strconv.ParseFloat(s, 64); err != nil {
			return fmt.Errorf("%q is not a number", s)
		}
	}
	return nil
}

func reSource(s, flags string) string {
	if flags == "" {
		return s
	}
	return "(?" + flags + ")" + s
}

// windashVariants replaces each dash-like character at the start of a
// word (Sigma: every -, /, en dash, em dash, horizontal bar) with each of
// the others.
func windashVariants(s string) []string {
	dashes := []string{"-", "/", "\u2013", "\u2014", "\u2015"}
	out := []string{""}
	for _, r := range s {
		c := string(r)
		isDash := false
		for _, d := range dashes {
			if c == d {
				isDash = true
			}
		}
		var next []string
		for _, prefix := range out {
			if isDash {
				for _, d := range dashes {
					next = append(next, prefix+d)
				}
			} else {
				next = append(next, prefix+c)
			}
		}
		out = next
		if len(out) > 625 {
			break // four dashes at most are expanded
		}
	}
	return out
}

// base64Offsets returns the three encodings of s at byte offsets 0, 1
// and 2 of a longer base64 text, cut to the characters that do not depend
// on the neighbouring bytes (as Sigma's base64offset).
func base64Offsets(s string) []string {
	start := [3]int{0, 2, 3}
	out := make([]string, 0, 3)
	for i := 0; i < 3; i++ {
		enc := base64.StdEncoding.EncodeToString(append(bytes.Repeat([]byte(" "), i), s...))
		e := len(enc)
		switch (len(s) + i) % 3 {
		case 1:
			e -= 3
		case 2:
			e -= 2
		}
		out = append(out, enc[min(start[i], e):e])
	}
	return out
}

func parseCorrelation(file string, n *yaml.Node) (*parsedCorr, error) {
	if n.Kind != yaml.MappingNode {
		return nil, errAt(file, n, "correlation: want a mapping")
	}
	c := &parsedCorr{line: n.Line}
	var condNode *yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		var err error
		switch k.Value {
		case "type":
			c.typ = v.Value
			switch c.typ {
			case "event_count", "value_count", "temporal", "temporal_ordered":
			case "value_sum", "value_avg", "value_percentile":
				return nil, errAt(file, v, "correlation.type: %s is not supported (event_count, value_count, temporal, temporal_ordered)", c.typ)
			default:
				return nil, errAt(file, v, "correlation.type: unknown type %q", c.typ)
			}
		case "rules":
			c.rules, err = stringList(file, v, "correlation.rules")
		case "group-by":
			c.groupBy, err = stringList(file, v, "correlation.group-by")
		case "timespan":
			c.timespan, err = parseTimespan(v.Value)
			if err != nil {
				err = errAt(file, v, "correlation.timespan: %v", err)
			}
		case "condition":
			condNode = v
		case "aliases":
			c.aliasLine = v.Line
			c.aliases, err = parseAliases(file, v)
		case "generate":
			c.genLine, c.generate = v.Line, v.Value == "true"
		default:
			return nil, errAt(file, k, "correlation.%s: unknown key", k.Value)
		}
		if err != nil {
			return nil, err
		}
	}
	switch {
	case c.typ == "":
		return nil, errAt(file, n, "correlation.type: required")
	case len(c.rules) == 0:
		return nil, errAt(file, n, "correlation.rules: required")
	case c.timespan <= 0:
		return nil, errAt(file, n, "correlation.timespan: required")
	}
	needCond := c.typ == "event_count" || c.typ == "value_count"
	if condNode == nil && needCond {
		return nil, errAt(file, n, "correlation.condition: required for %s", c.typ)
	}
	if condNode != nil {
		if err := c.parseCond(file, condNode); err != nil {
			return nil, err
		}
	}
	if c.typ == "value_count" && c.field == "" {
		return nil, errAt(file, condNode, "correlation.condition.field: required for value_count")
	}
	if (c.typ == "temporal" || c.typ == "temporal_ordered") && len(c.rules) < 2 {
		return nil, errAt(file, n, "correlation.rules: %s needs at least two rules", c.typ)
	}
	return c, nil
}

func (c *parsedCorr) parseCond(file string, n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return errAt(file, n, "correlation.condition: want a mapping such as {gte: 10}")
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch k.Value {
		case "field":
			c.field = v.Value
		case "gt", "gte", "eq":
			if c.cond.op != "" {
				return errAt(file, k, "correlation.condition: one of gt, gte, eq (a range cannot be decided while events arrive)")
			}
			t, err := strconv.ParseUint(v.Value, 10, 32)
			if err != nil {
				return errAt(file, v, "correlation.condition.%s: %q is not a count", k.Value, v.Value)
			}
			c.cond = corrCond{op: k.Value, threshold: t}
			if k.Value == "gt" {
				c.cond = corrCond{op: "gte", threshold: t + 1}
			}
			if k.Value == "eq" {
				c.cond.op = "gte" // reached once, then the group starts again
			}
			if c.cond.threshold < 1 || c.cond.threshold > maxThreshold {
				return errAt(file, v, "correlation.condition.%s: %s is outside 1..%d", k.Value, v.Value, maxThreshold)
			}
		case "lt", "lte", "neq":
			return errAt(file, k, "correlation.condition.%s: not supported: an alert is raised when a count is reached, which %s cannot say", k.Value, k.Value)
		default:
			return errAt(file, k, "correlation.condition.%s: unknown key", k.Value)
		}
	}
	if c.cond.op == "" {
		if c.typ == "temporal" || c.typ == "temporal_ordered" {
			return nil
		}
		return errAt(file, n, "correlation.condition: needs gt, gte or eq")
	}
	return nil
}

// maxThreshold bounds the state one correlation group keeps.
const maxThreshold = 10000

func parseAliases(file string, n *yaml.Node) (map[string]map[string]string, error) {
	if n.Kind != yaml.MappingNode {
		return nil, errAt(file, n, "correlation.aliases: want a mapping")
	}
	out := map[string]map[string]string{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if v.Kind != yaml.MappingNode {
			return nil, errAt(file, v, "correlation.aliases.%s: want rule name: field", k.Value)
		}
		m := map[string]string{}
		for j := 0; j+1 < len(v.Content); j += 2 {
			m[v.Content[j].Value] = v.Content[j+1].Value
		}
		out[k.Value] = m
	}
	return out, nil
}

// parseTimespan reads Sigma's timespans: 30s, 5m, 1h, 1d.
func parseTimespan(s string) (time.Duration, error) {
	if len(s) < 2 {
		return 0, fmt.Errorf("%q is not a number followed by s, m, h or d", s)
	}
	n, err := strconv.ParseUint(s[:len(s)-1], 10, 32)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%q is not a number followed by s, m, h or d", s)
	}
	unit := map[byte]time.Duration{'s': time.Second, 'm': time.Minute, 'h': time.Hour, 'd': 24 * time.Hour}[s[len(s)-1]]
	if unit == 0 {
		return 0, fmt.Errorf("%q is not a number followed by s, m, h or d", s)
	}
	d := time.Duration(n) * unit
	if d > 7*24*time.Hour {
		return 0, fmt.Errorf("%s is longer than 7d", s)
	}
	return d, nil
}
