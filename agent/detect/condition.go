package detect

import (
	"fmt"
	"path"
	"strings"
	"unicode"
)

// condNode is a parsed Sigma condition: and, or, not, a search
// identifier, `1 of` / `all of` a pattern or `them`.
type condNode struct {
	kind    condKind
	name    string // cRef, cOneOf, cAllOf (pattern; "" is them)
	kids    []*condNode
	targets []int // cRef, cOneOf, cAllOf: resolved search indexes
}

type condKind uint8

const (
	cAnd condKind = iota
	cOr
	cNot
	cRef
	cOneOf
	cAllOf
)

type condToken struct {
	text string
	pos  int
}

func tokenizeCondition(s string) ([]condToken, error) {
	var out []condToken
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '(' || c == ')':
			out = append(out, condToken{string(c), i})
			i++
		case c == '|':
			return nil, fmt.Errorf("column %d: `|` aggregations (Sigma 1) are not supported: write a correlation rule", i+1)
		case c == '*' || c == '_' || c == '-' || c == '.' || unicode.IsLetter(rune(c)) || unicode.IsDigit(rune(c)):
			j := i
			for j < len(s) && (s[j] == '*' || s[j] == '_' || s[j] == '-' || s[j] == '.' || unicode.IsLetter(rune(s[j])) || unicode.IsDigit(rune(s[j]))) {
				j++
			}
			out = append(out, condToken{s[i:j], i})
			i = j
		default:
			return nil, fmt.Errorf("column %d: unexpected %q", i+1, c)
		}
	}
	return out, nil
}

type condParser struct {
	toks []condToken
	i    int
	src  string
}

// parseCondition parses with Sigma's precedence: not, then and, then or.
func parseCondition(s string) (*condNode, error) {
	toks, err := tokenizeCondition(s)
	if err != nil {
		return nil, err
	}
	if len(toks) == 0 {
		return nil, fmt.Errorf("empty")
	}
	p := &condParser{toks: toks, src: s}
	n, err := p.or()
	if err != nil {
		return nil, err
	}
	if p.i < len(p.toks) {
		return nil, fmt.Errorf("column %d: unexpected %q", p.toks[p.i].pos+1, p.toks[p.i].text)
	}
	return n, nil
}

func (p *condParser) peek() string {
	if p.i < len(p.toks) {
		return strings.ToLower(p.toks[p.i].text)
	}
	return ""
}

func (p *condParser) errf(format string, args ...any) error {
	col := len(p.src) + 1
	if p.i < len(p.toks) {
		col = p.toks[p.i].pos + 1
	}
	return fmt.Errorf("column %d: %s", col, fmt.Sprintf(format, args...))
}

func (p *condParser) or() (*condNode, error) {
	left, err := p.and()
	if err != nil {
		return nil, err
	}
	kids := []*condNode{left}
	for p.peek() == "or" {
		p.i++
		right, err := p.and()
		if err != nil {
			return nil, err
		}
		kids = append(kids, right)
	}
	if len(kids) == 1 {
		return left, nil
	}
	return &condNode{kind: cOr, kids: kids}, nil
}

func (p *condParser) and() (*condNode, error) {
	left, err := p.not()
	if err != nil {
		return nil, err
	}
	kids := []*condNode{left}
	for p.peek() == "and" {
		p.i++
		right, err := p.not()
		if err != nil {
			return nil, err
		}
		kids = append(kids, right)
	}
	if len(kids) == 1 {
		return left, nil
	}
	return &condNode{kind: cAnd, kids: kids}, nil
}

func (p *condParser) not() (*condNode, error) {
	if p.peek() == "not" {
		p.i++
		n, err := p.not()
		if err != nil {
			return nil, err
		}
		return &condNode{kind: cNot, kids: []*condNode{n}}, nil
	}
	return p.atom()
}

func (p *condParser) atom() (*condNode, error) {
	switch t := p.peek(); {
	case t == "":
		return nil, p.errf("expression expected")
	case t == "(":
		p.i++
		n, err := p.or()
		if err != nil {
			return nil, err
		}
		if p.peek() != ")" {
			return nil, p.errf("`)` expected")
		}
		p.i++
		return n, nil
	case t == "1" || t == "all" || t == "any":
		p.i++
		if p.peek() != "of" {
			if t == "all" || t == "any" {
				return nil, p.errf("`of` expected after %q", t)
			}
			return nil, p.errf("`of` expected after 1")
		}
		if t == "any" {
			return nil, p.errf("`any of` is not Sigma: write `1 of`")
		}
		p.i++
		target := p.peek()
		if target == "" || target == "(" || target == ")" || isOperator(target) {
			return nil, p.errf("a search identifier pattern or `them` expected")
		}
		name := p.toks[p.i].text
		p.i++
		if target == "them" {
			name = ""
		}
		if t == "1" {
			return &condNode{kind: cOneOf, name: name}, nil
		}
		return &condNode{kind: cAllOf, name: name}, nil
	case isOperator(t) || t == ")":
		return nil, p.errf("unexpected %q", p.toks[p.i].text)
	default:
		if len(t) > 0 && t[0] >= '0' && t[0] <= '9' {
			if p.i+1 < len(p.toks) && strings.ToLower(p.toks[p.i+1].text) == "of" {
				return nil, p.errf("`%s of` is not supported: Sigma has `1 of` and `all of`", t)
			}
		}
		name := p.toks[p.i].text
		p.i++
		if strings.Contains(name, "*") {
			return nil, p.errf("the pattern %q needs `1 of` or `all of`", name)
		}
		return &condNode{kind: cRef, name: name}, nil
	}
}

func isOperator(t string) bool { return t == "and" || t == "or" || t == "not" || t == "of" }

// resolve binds identifiers and patterns to search indexes (in the order
// of names). A reference to an undefined search is an error; a pattern
// matching none is empty (1 of: false, all of: true).
func (n *condNode) resolve(names []string) error {
	switch n.kind {
	case cRef:
		for i, s := range names {
			if s == n.name {
				n.targets = []int{i}
				return nil
			}
		}
		return fmt.Errorf("search %q is not defined", n.name)
	case cOneOf, cAllOf:
		n.targets = nil
		for i, s := range names {
			if n.name == "" {
				n.targets = append(n.targets, i)
				continue
			}
			if ok, _ := path.Match(n.name, s); ok {
				n.targets = append(n.targets, i)
			}
		}
		return nil
	}
	for _, k := range n.kids {
		if err := k.resolve(names); err != nil {
			return err
		}
	}
	return nil
}

// tri is a three-valued truth: a condition's value when some inputs are
// unknown at compile time.
type tri uint8

const (
	triFalse tri = iota
	triTrue
	triUnknown
)

// eval3 evaluates with each search's value given by f.
func (n *condNode) eval3(f func(i int) tri) tri {
	switch n.kind {
	case cRef:
		return f(n.targets[0])
	case cNot:
		switch n.kids[0].eval3(f) {
		case triTrue:
			return triFalse
		case triFalse:
			return triTrue
		}
		return triUnknown
	case cAnd, cAllOf:
		out := triTrue
		visit := func(v tri) bool {
			if v == triFalse {
				out = triFalse
				return false
			}
			if v == triUnknown {
				out = triUnknown
			}
			return true
		}
		if n.kind == cAnd {
			for _, k := range n.kids {
				if !visit(k.eval3(f)) {
					break
				}
			}
		} else {
			for _, t := range n.targets {
				if !visit(f(t)) {
					break
				}
			}
		}
		return out
	default: // cOr, cOneOf
		out := triFalse
		visit := func(v tri) bool {
			if v == triTrue {
				out = triTrue
				return false
			}
			if v == triUnknown {
				out = triUnknown
			}
			return true
		}
		if n.kind == cOr {
			for _, k := range n.kids {
				if !visit(k.eval3(f)) {
					break
				}
			}
		} else {
			for _, t := range n.targets {
				if !visit(f(t)) {
					break
				}
			}
		}
		return out
	}
}

// positives lists the searches whose truth made n true (those not under
// an odd number of nots), for the alert's explanation.
func (n *condNode) positives(val func(i int) bool, negated bool, out []int) []int {
	switch n.kind {
	case cRef:
		if !negated && val(n.targets[0]) {
			out = append(out, n.targets[0])
		}
	case cOneOf, cAllOf:
		if !negated {
			for _, t := range n.targets {
				if val(t) {
					out = append(out, t)
				}
			}
		}
	case cNot:
		out = n.kids[0].positives(val, !negated, out)
	default:
		for _, k := range n.kids {
			out = k.positives(val, negated, out)
		}
	}
	return out
}
