package code

import (
	"strconv"
)

// inspectWGSL checks the module structure of WGSL text:
//
//   - comments, nested block comments included, are closed, and (), []
//     and {} are balanced;
//   - every function at module scope, "fn NAME(", has a name and is not
//     declared twice;
//   - a function marked @compute has @workgroup_size with one to three
//     dimensions, none of them a literal zero; @workgroup_size appears on
//     @compute functions only, and a function has at most one stage;
//   - a stage attribute is followed by a function.
//
// @compute functions are the Entries (Kind "compute"); @vertex and
// @fragment functions are the Others (Kind "vertex" and "fragment").
func inspectWGSL(name string, b []byte, opts Options) (*Info, error) {
	toks, match, err := tokenize(name, FormatWGSL, b, &wgslLex)
	if err != nil {
		return nil, err
	}
	p := &wgslParser{
		toks:  toks,
		match: match,
		errs:  errorSet{name: name, f: FormatWGSL},
		info:  &Info{},
		fns:   map[string]int{},
	}
	p.parse()
	if err := p.errs.err(); err != nil {
		return nil, err
	}
	return p.info, nil
}

type wgslParser struct {
	toks  []token
	match []int
	errs  errorSet
	info  *Info
	fns   map[string]int // function name → line
}

// wgslAttr is one attribute, "@name" or "@name(args)".
type wgslAttr struct {
	name string
	line int
	// open is the index of the '(' of the arguments, or -1 when there are
	// none.
	open int
}

func (p *wgslParser) at(i int) token {
	if i >= 0 && i < len(p.toks) {
		return p.toks[i]
	}
	return token{}
}

func isWGSLStage(name string) bool {
	return name == "compute" || name == "vertex" || name == "fragment"
}

func (p *wgslParser) parse() {
	var pending []wgslAttr // attributes waiting for their declaration
	// done ends a declaration that was not a function: its stage
	// attributes had nothing to apply to.
	done := func() {
		for _, a := range pending {
			if isWGSLStage(a.name) {
				p.errs.add(a.line, "@%s must be followed by a function declaration", a.name)
			}
		}
		pending = pending[:0]
	}
	for i := 0; i < len(p.toks); {
		t := p.toks[i]
		switch {
		case t.is("@"):
			n := p.at(i + 1)
			if n.kind != tokIdent {
				p.errs.add(t.line, "expected an attribute name after '@', found %s", describeToken(n))
				i++
				continue
			}
			a := wgslAttr{name: n.text, line: t.line, open: -1}
			i += 2
			if p.at(i).is("(") {
				a.open = i
				i = p.match[i] + 1
			}
			pending = append(pending, a)
		case t.kind == tokIdent && t.text == "fn":
			i = p.function(i, pending)
			pending = pending[:0]
		case t.is(";"):
			done()
			i++
		case t.is("{"):
			i = p.match[i] + 1
			done()
		case t.is("(") || t.is("["):
			i = p.match[i] + 1
		default:
			i++
		}
	}
	done()
}

// function parses the function whose "fn" is at index f, with the
// attributes before it, and returns the index after its parameter list.
func (p *wgslParser) function(f int, attrs []wgslAttr) int {
	fnTok := p.toks[f]
	nameTok := p.at(f + 1)
	if nameTok.kind != tokIdent {
		p.errs.add(fnTok.line, "expected a function name after 'fn', found %s", describeToken(nameTok))
		return f + 1
	}
	name, line := nameTok.text, nameTok.line
	if open := p.at(f + 2); !open.is("(") {
		p.errs.add(line, "expected '(' after the name of function %q, found %s", name, describeToken(open))
		return f + 2
	}
	end := p.match[f+2] + 1
	if first, dup := p.fns[name]; dup {
		p.errs.add(line, "function %q is declared twice (the first is at line %d)", name, first)
		return end
	}
	p.fns[name] = line

	var stage *wgslAttr
	var size *wgslAttr
	for k := range attrs {
		a := &attrs[k]
		switch {
		case isWGSLStage(a.name):
			if a.open >= 0 {
				p.errs.add(a.line, "@%s takes no arguments", a.name)
			}
			switch {
			case stage != nil && stage.name == a.name:
				p.errs.add(a.line, "function %q repeats the attribute @%s", name, a.name)
			case stage != nil:
				p.errs.add(a.line, "function %q has two shader stages, @%s and @%s", name, stage.name, a.name)
			default:
				stage = a
			}
		case a.name == "workgroup_size":
			if size != nil {
				p.errs.add(a.line, "function %q repeats the attribute @workgroup_size", name)
			}
			size = a
		}
	}
	switch {
	case stage == nil:
		if size != nil {
			p.errs.add(size.line, "@workgroup_size on function %q, which is not a @compute entry point", name)
		}
		return end
	case stage.name == "compute":
		if size == nil {
			p.errs.add(line, "compute entry point %q has no @workgroup_size", name)
			return end
		}
		if !p.workgroupSize(name, size) {
			return end
		}
		p.info.Entries = append(p.info.Entries, Entry{Name: name, Kind: "compute", Line: line})
	default:
		if size != nil {
			p.errs.add(size.line, "@workgroup_size on %s function %q; only @compute functions have one", stage.name, name)
		}
		p.info.Others = append(p.info.Others, Entry{Name: name, Kind: stage.name, Line: line})
	}
	return end
}

// workgroupSize checks the arguments of @workgroup_size: one to three
// expressions separated by commas, with an optional trailing comma. A
// dimension that is a plain integer literal must be at least 1; other
// expressions (constants, overrides) are left to the WebGPU compiler.
func (p *wgslParser) workgroupSize(fn string, a *wgslAttr) bool {
	if a.open < 0 {
		p.errs.add(a.line, "@workgroup_size of %q needs its dimensions, such as @workgroup_size(64)", fn)
		return false
	}
	closeIdx := p.match[a.open]
	var dims [][]token
	for i := a.open + 1; i < closeIdx; {
		end := i
		for end < closeIdx && !p.toks[end].is(",") {
			if m := p.match[end]; m > end {
				end = m
			}
			end++
		}
		if end == i {
			p.errs.add(p.toks[i].line, "@workgroup_size of %q has an empty dimension", fn)
			return false
		}
		dims = append(dims, p.toks[i:end])
		i = end + 1
	}
	if len(dims) == 0 {
		p.errs.add(a.line, "@workgroup_size of %q needs its dimensions, such as @workgroup_size(64)", fn)
		return false
	}
	if len(dims) > 3 {
		p.errs.add(a.line, "@workgroup_size of %q takes 1 to 3 dimensions, found %d", fn, len(dims))
		return false
	}
	ok := true
	for _, d := range dims {
		if len(d) != 1 || d[0].kind != tokNumber {
			continue
		}
		v, isInt := wgslIntLiteral(d[0].text)
		switch {
		case !isInt:
			p.errs.add(d[0].line, "workgroup size %s of %q is not an integer", d[0].text, fn)
			ok = false
		case v < 1:
			p.errs.add(d[0].line, "workgroup size %s of %q must be at least 1", d[0].text, fn)
			ok = false
		}
	}
	return ok
}

// wgslIntLiteral parses a WGSL integer literal: decimal or 0x hexadecimal
// digits with an optional i or u suffix. Values too large for uint64 are
// reported as an integer of the largest value.
func wgslIntLiteral(s string) (uint64, bool) {
	if n := len(s); n > 1 && (s[n-1] == 'i' || s[n-1] == 'u') {
		s = s[:n-1]
	}
	base := 10
	if len(s) > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') {
		s, base = s[2:], 16
	}
	if s == "" {
		return 0, false
	}
	v, err := strconv.ParseUint(s, base, 64)
	if err != nil {
		if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
			return ^uint64(0), true
		}
		return 0, false
	}
	return v, true
}
