package code

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hotkernel/hotkernel/internal/ptxas"
)

// ptxasTimeout bounds one ptxas run during Inspect, which has no context
// of its own: ptxas on a very large module is slow, but never this slow.
const ptxasTimeout = 5 * time.Minute

// inspectPTX checks the module structure of PTX text:
//
//   - the file begins with ".version MAJOR.MINOR", directly followed by
//     ".target" with one architecture (sm_XX, sm_XXa, sm_XXf, compute_XX)
//     and any of the options texmode_unified or texmode_independent,
//     debug and map_f64_to_f32, then optionally ".address_size 32|64";
//     none of them appears twice or inside a body;
//   - every .entry has a name, a well-formed parameter list
//     "( .param [.align N] [.ptr .SPACE] .TYPE name[[N]], ... )" and a body,
//     except an .extern entry, which is a declaration only and goes to
//     Info.Others with Kind "extern";
//   - (), [] and {} are balanced, outside comments and strings.
//
// When opts.Arch is set and the structure is sound, it assembles the PTX
// with ptxas for that architecture (only parsing and checking it for a
// virtual compute_XX one) and reports ptxas's errors at their lines.
func inspectPTX(name string, b []byte, opts Options) (*Info, error) {
	toks, match, err := tokenize(name, FormatPTX, b, &ptxLex)
	if err != nil {
		return nil, err
	}
	p := &ptxParser{
		toks:   toks,
		match:  match,
		errs:   errorSet{name: name, f: FormatPTX},
		info:   &Info{},
		byName: map[string]int{},
	}
	p.parse()
	if err := p.errs.err(); err != nil {
		return nil, err
	}
	if opts.Arch != "" {
		if err := p.assemble(name, b, opts); err != nil {
			return nil, err
		}
	}
	return p.info, nil
}

type ptxParser struct {
	toks   []token
	match  []int
	errs   errorSet
	info   *Info
	byName map[string]int // defined entry name → line
	// target is the parsed architecture of .target and its line.
	target     ptxas.Arch
	targetLine int
	hasTarget  bool
}

// at returns token i, or the zero token past the end.
func (p *ptxParser) at(i int) token {
	if i >= 0 && i < len(p.toks) {
		return p.toks[i]
	}
	return token{}
}

// ptxLinkage are the directives that may precede .entry.
var ptxLinkage = map[string]bool{".visible": true, ".weak": true, ".extern": true}

// Module-scope directives that may not appear inside a body.
var ptxModuleDirectives = map[string]bool{
	".version": true, ".target": true, ".address_size": true, ".entry": true,
}

func (p *ptxParser) parse() {
	if len(p.toks) == 0 {
		p.errs.list = append(p.errs.list, fileErr(p.errs.name, FormatPTX, ErrMalformed,
			"missing .version directive: the file holds only comments and blanks"))
		return
	}
	p.checkScopes()

	// Walk the statements at module scope. Bracketed groups are skipped
	// whole: parameter lists of .func, initializers, bodies.
	var versions, targets, sizes []int
	for i := 0; i < len(p.toks); {
		t := p.toks[i]
		if t.kind == tokIdent {
			switch t.text {
			case ".version":
				versions = append(versions, i)
			case ".target":
				targets = append(targets, i)
			case ".address_size":
				sizes = append(sizes, i)
			case ".entry":
				i = p.entry(i)
				continue
			}
		}
		switch {
		case t.is("(") || t.is("[") || t.is("{"):
			i = p.match[i] + 1
		default:
			i++
		}
	}
	p.header(versions, targets, sizes)
}

// checkScopes reports module directives that appear inside brackets.
func (p *ptxParser) checkScopes() {
	depth := 0
	for _, t := range p.toks {
		switch {
		case t.kind == tokPunct && (t.text == "(" || t.text == "[" || t.text == "{"):
			depth++
		case t.kind == tokPunct && (t.text == ")" || t.text == "]" || t.text == "}"):
			depth--
		case depth > 0 && t.kind == tokIdent && ptxModuleDirectives[t.text]:
			p.errs.add(t.line, "%s must be at module scope, not inside brackets", t.text)
		}
	}
}

// header checks .version, .target and .address_size and their order.
func (p *ptxParser) header(versions, targets, sizes []int) {
	first := p.toks[0]
	next := -1 // index of the token after the .version statement
	switch {
	case len(versions) == 0:
		p.errs.add(first.line, "missing .version directive: PTX must begin with .version MAJOR.MINOR (found %s)", describeToken(first))
	default:
		v := versions[0]
		if v != 0 {
			p.errs.add(p.toks[v].line, ".version must be the first directive, before %s at line %d", describeToken(first), first.line)
		}
		if ver, ok := ptxVersion(p.at(v + 1)); ok {
			p.info.Version = ver
			if v == 0 {
				next = v + 2
			}
		} else {
			p.errs.add(p.toks[v].line, "malformed .version: want MAJOR.MINOR such as 7.8, found %s", describeToken(p.at(v+1)))
		}
		for _, d := range versions[1:] {
			p.errs.add(p.toks[d].line, "duplicate .version directive (the first is at line %d)", p.toks[v].line)
		}
	}

	switch {
	case len(targets) == 0:
		next = -1
		line := first.line
		if len(versions) > 0 {
			line = p.toks[versions[0]].line
		}
		p.errs.add(line, "missing .target directive: .version must be followed by .target, such as .target sm_80")
	default:
		t := targets[0]
		misplaced := next >= 0 && t != next
		if misplaced {
			p.errs.add(p.toks[t].line, ".target must come right after .version (line %d), before any other statement", p.toks[versions[0]].line)
		}
		next = p.targetList(t)
		if misplaced {
			next = -1 // the place of .address_size would be a follow-on error
		}
		for _, d := range targets[1:] {
			p.errs.add(p.toks[d].line, "duplicate .target directive (the first is at line %d)", p.toks[t].line)
		}
	}

	if len(sizes) > 0 {
		s := sizes[0]
		if next >= 0 && s != next {
			p.errs.add(p.toks[s].line, ".address_size must come right after .target (line %d), before any other statement", p.toks[targets[0]].line)
		}
		if v := p.at(s + 1); v.kind != tokNumber || (v.text != "32" && v.text != "64") {
			p.errs.add(p.toks[s].line, "invalid .address_size %s: must be 32 or 64", describeToken(v))
		}
		for _, d := range sizes[1:] {
			p.errs.add(p.toks[d].line, "duplicate .address_size directive (the first is at line %d)", p.toks[s].line)
		}
	}
}

// ptxVersion returns the text of a MAJOR.MINOR version token.
func ptxVersion(t token) (string, bool) {
	if t.kind != tokNumber {
		return "", false
	}
	major, minor, ok := strings.Cut(t.text, ".")
	if !ok || !allDigits(major) || !allDigits(minor) {
		return "", false
	}
	return t.text, true
}

func allDigits(s string) bool {
	if s == "" || len(s) > 4 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}

// ptxTargetOptions are the .target options that are not architectures.
var ptxTargetOptions = map[string]bool{
	"texmode_unified": true, "texmode_independent": true, "debug": true, "map_f64_to_f32": true,
}

// targetList checks the comma-separated list after the .target at index t
// and returns the index of the token after it.
func (p *ptxParser) targetList(t int) int {
	line := p.toks[t].line
	var arch, texmode string
	unknown := false
	i := t + 1
	for {
		tok := p.at(i)
		if tok.kind != tokIdent || strings.HasPrefix(tok.text, ".") {
			if i == t+1 {
				p.errs.add(line, "missing target after .target: want sm_XX such as sm_80")
			} else {
				p.errs.add(tok.line, "missing target after ',' in .target, found %s", describeToken(tok))
			}
			return -1
		}
		switch {
		case strings.HasPrefix(tok.text, "sm_") || strings.HasPrefix(tok.text, "compute_"):
			a, err := ptxas.ParseArch(tok.text)
			switch {
			case err != nil:
				p.errs.add(tok.line, "unknown .target %q: want sm_XX, sm_XXa or compute_XX, such as sm_80", tok.text)
				unknown = true
			case arch != "":
				p.errs.add(tok.line, ".target names more than one architecture: %s and %s", arch, tok.text)
			default:
				arch = tok.text
				p.info.Arch = arch
				p.target, p.targetLine, p.hasTarget = a, tok.line, true
			}
		case ptxTargetOptions[tok.text]:
			if strings.HasPrefix(tok.text, "texmode_") {
				if texmode != "" && texmode != tok.text {
					p.errs.add(tok.line, "conflicting .target options %s and %s", texmode, tok.text)
				}
				texmode = tok.text
			}
		default:
			p.errs.add(tok.line, "unknown .target %q: want sm_XX, sm_XXa, compute_XX, or one of texmode_unified, texmode_independent, debug, map_f64_to_f32", tok.text)
			unknown = true
		}
		if !p.at(i + 1).is(",") {
			break
		}
		i += 2
	}
	if arch == "" && !unknown {
		p.errs.add(line, ".target names no architecture: want sm_XX such as sm_80")
	}
	return i + 1
}

// entry parses the .entry at index e and returns the index of the token
// after its statement.
func (p *ptxParser) entry(e int) int {
	line := p.toks[e].line
	// The linkage directives right before .entry: .visible, .weak, .extern.
	extern := false
	for k := e - 1; k >= 0 && ptxLinkage[p.toks[k].text] && p.toks[k].kind == tokIdent; k-- {
		if p.toks[k].text == ".extern" {
			extern = true
		}
	}
	nameTok := p.at(e + 1)
	if nameTok.kind != tokIdent || strings.HasPrefix(nameTok.text, ".") {
		p.errs.add(line, "expected a kernel name after .entry, found %s", describeToken(nameTok))
		return e + 1
	}
	name := nameTok.text
	i := e + 2
	if p.at(i).is("(") {
		p.params(name, i)
		i = p.match[i] + 1
	}
	// Performance-tuning directives may follow: .maxntid 256, 1, 1 and the
	// like. Anything else before the body is out of place.
	for {
		t := p.at(i)
		if t.kind == tokNumber || t.is(",") || t.kind == tokIdent && strings.HasPrefix(t.text, ".") && !ptxModuleDirectives[t.text] && t.text != ".func" {
			i++
			continue
		}
		break
	}
	t := p.at(i)
	switch {
	case t.is("{"):
		end := p.match[i] + 1
		if extern {
			p.errs.add(t.line, "extern entry %q has a body: an .extern entry only declares a kernel defined elsewhere", name)
			return end
		}
		if first, dup := p.byName[name]; dup {
			p.errs.add(line, "duplicate definition of entry %q (the first is at line %d)", name, first)
			return end
		}
		p.byName[name] = line
		p.info.Entries = append(p.info.Entries, Entry{Name: name, Kind: "kernel", Line: line})
		return end
	case t.is(";") && extern:
		p.info.Others = append(p.info.Others, Entry{Name: name, Kind: "extern", Line: line})
		return i + 1
	case t.is(";"):
		p.errs.add(line, "entry %q has no body: only an .extern entry may be declared without one", name)
		return i + 1
	case t.kind == 0:
		p.errs.add(line, "entry %q has no body: the file ends first", name)
		return i
	}
	p.errs.add(t.line, "unexpected %s after the parameter list of entry %q: want its body '{'", describeToken(t), name)
	return i
}

// ptxParamTypes are the types a kernel parameter may have.
var ptxParamTypes = map[string]bool{
	".s8": true, ".s16": true, ".s32": true, ".s64": true,
	".u8": true, ".u16": true, ".u32": true, ".u64": true,
	".f16": true, ".f16x2": true, ".bf16": true, ".bf16x2": true, ".f32": true, ".f64": true,
	".b8": true, ".b16": true, ".b32": true, ".b64": true, ".b128": true, ".pred": true,
	".texref": true, ".samplerref": true, ".surfref": true,
}

// params checks the parameter list of entry name, whose '(' is at open.
func (p *ptxParser) params(name string, open int) {
	closeIdx := p.match[open]
	if closeIdx == open+1 {
		return // ()
	}
	seen := map[string]bool{}
	n := 0
	for i := open + 1; i <= closeIdx; {
		n++
		// One parameter runs to the next ',' or the ')'.
		end := i
		for end < closeIdx && !p.toks[end].is(",") {
			if m := p.match[end]; m > end {
				end = m
			}
			end++
		}
		if end == i {
			p.errs.add(p.toks[i].line, "malformed parameter list of entry %q: parameter %d is empty", name, n)
		} else if pname, ok := p.param(name, n, i, end); ok {
			if seen[pname] {
				p.errs.add(p.toks[i].line, "malformed parameter list of entry %q: duplicate parameter %q", name, pname)
			}
			seen[pname] = true
		}
		i = end + 1
	}
}

// param checks one parameter, tokens [i, end), and returns its name.
func (p *ptxParser) param(entry string, n, i, end int) (string, bool) {
	first := p.toks[i]
	bad := func(line int, format string, args ...any) (string, bool) {
		p.errs.add(line, "malformed parameter list of entry %q: %s", entry, fmt.Sprintf(format, args...))
		return "", false
	}
	if !first.is(".param") {
		return bad(first.line, "parameter %d must start with .param, found %s", n, describeToken(first))
	}
	typ := ""
	i++
	for ; i < end && p.toks[i].kind == tokIdent && strings.HasPrefix(p.toks[i].text, "."); i++ {
		t := p.toks[i]
		switch {
		case t.text == ".align":
			if i+1 >= end || p.toks[i+1].kind != tokNumber {
				return bad(t.line, ".align in parameter %d needs a byte count", n)
			}
			i++
		case ptxParamTypes[t.text]:
			if typ != "" {
				return bad(t.line, "parameter %d has two types, %s and %s", n, typ, t.text)
			}
			typ = t.text
		}
	}
	if typ == "" {
		return bad(first.line, "parameter %d has no type such as .u64 or .b32", n)
	}
	if i >= end || p.toks[i].kind != tokIdent {
		t := p.at(i)
		if i >= end {
			t = p.toks[end]
		}
		return bad(t.line, "parameter %d has no name (found %s)", n, describeToken(t))
	}
	pname := p.toks[i].text
	i++
	// An array: name[N].
	if i < end && p.toks[i].is("[") {
		m := p.match[i]
		if m != i+2 || p.toks[i+1].kind != tokNumber {
			return bad(p.toks[i].line, "the array size of parameter %q must be a number", pname)
		}
		i = m + 1
	}
	if i < end {
		return bad(p.toks[i].line, "unexpected %s after parameter %q: want ',' or ')'", describeToken(p.toks[i]), pname)
	}
	return pname, true
}

// assemble runs ptxas for opts.Arch and sets Info.Assembled.
func (p *ptxParser) assemble(name string, b []byte, opts Options) error {
	fe := func(kind error, format string, args ...any) error {
		return fileErr(name, FormatPTX, kind, format, args...)
	}
	arch, err := ptxas.ParseArch(opts.Arch)
	if err != nil {
		return fe(ErrArch, "invalid architecture %q: want sm_XX, sm_XXa or compute_XX, such as sm_80", opts.Arch)
	}
	if p.hasTarget && p.target.Number > arch.Number {
		return lineErr(name, FormatPTX, p.targetLine, ErrArch,
			".target %s is newer than the requested architecture %s", p.target, opts.Arch)
	}
	path, err := ptxas.Find(opts.PTXAS)
	if err != nil {
		return fe(ErrToolNotFound, "cannot assemble for %s: %v; set Options.PTXAS or %s to the path of ptxas, or put it on PATH",
			opts.Arch, err, ptxas.EnvVar)
	}
	ctx, cancel := context.WithTimeout(context.Background(), ptxasTimeout)
	defer cancel()
	cubin, diags, err := ptxas.Assemble(ctx, path, b, opts.Arch, name)
	switch {
	case err == nil:
		p.info.Assembled = cubin
		return nil
	case errors.Is(err, ptxas.ErrUnsupportedArch):
		return fe(ErrArch, "ptxas at %s does not support %s", path, opts.Arch)
	case errors.Is(err, ptxas.ErrNotFound):
		return fe(ErrToolNotFound, "%v; set Options.PTXAS or %s to the path of ptxas", err, ptxas.EnvVar)
	}
	// ptxas's errors in its own order: its first is the one to fix first.
	var list ErrorList
	more := 0
	for _, d := range diags {
		switch {
		case !d.IsError() || d.Message == ptxas.AbortedMessage:
		case len(list) < maxErrors:
			list = append(list, lineErr(name, FormatPTX, d.Line, ErrAssemble, "ptxas: %s", d.Message))
		default:
			more++
		}
	}
	if more > 0 {
		list = append(list, fileErr(name, FormatPTX, ErrAssemble, "ptxas: %d more errors not shown", more))
	}
	switch len(list) {
	case 0:
		return fe(ErrAssemble, "%v", err)
	case 1:
		return list[0]
	}
	return list
}
