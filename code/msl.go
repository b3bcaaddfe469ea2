package code

import "strings"

// inspectMSL checks the structure of Metal Shading Language text:
//
//   - comments, string and character literals are closed, and (), [] and
//     {} are balanced (preprocessor lines are skipped whole);
//   - every kernel function — "kernel void NAME(" or "[[kernel]] void
//     NAME(", with [[...]] attributes allowed around the return type and
//     name — returns void, has a name and a parameter list, and is
//     defined once.
//
// Kernel definitions are the Entries (Kind "kernel"). An explicit template
// instantiation "template [[host_name("NAME")]] kernel void f<T>(...);"
// is an entry named by its host_name; a template definition and a
// declaration without body are not entries. vertex and fragment functions
// are the Others (Kind "vertex" and "fragment").
func inspectMSL(name string, b []byte, opts Options) (*Info, error) {
	toks, match, err := tokenize(name, FormatMSL, b, &mslLex)
	if err != nil {
		return nil, err
	}
	p := &mslParser{
		toks:    toks,
		match:   match,
		errs:    errorSet{name: name, f: FormatMSL},
		info:    &Info{},
		kernels: map[string]int{},
		others:  map[string]bool{},
	}
	p.parse()
	if err := p.errs.err(); err != nil {
		return nil, err
	}
	return p.info, nil
}

type mslParser struct {
	toks    []token
	match   []int
	errs    errorSet
	info    *Info
	kernels map[string]int // kernel name → line
	others  map[string]bool
}

func (p *mslParser) at(i int) token {
	if i >= 0 && i < len(p.toks) {
		return p.toks[i]
	}
	return token{}
}

// attrGroup reports whether a [[ ... ]] attribute group starts at index i
// and returns the index of its last ']'.
func (p *mslParser) attrGroup(i int) (int, bool) {
	if !p.at(i).is("[") || !p.at(i+1).is("[") {
		return 0, false
	}
	outer, inner := p.match[i], p.match[i+1]
	if outer != inner+1 {
		return 0, false
	}
	return outer, true
}

// attrs reads the attributes of the group starting at index i: each is
// "name", "ns::name" or either with "(args)". It returns the stage the
// group names ("kernel", "vertex", "fragment" or ""), and the host_name
// string when there is one.
func (p *mslParser) attrs(i int) (stage, hostName string) {
	end := p.match[i+1] // the inner ']'
	first := true       // at the start of an attribute
	for k := i + 2; k < end; k++ {
		t := p.toks[k]
		switch {
		case t.is(","):
			first = true
			continue
		case first && t.kind == tokIdent:
			name := t.text
			// Skip a namespace: metal::kernel is still kernel.
			for p.at(k+1).is(":") && p.at(k+2).is(":") && p.at(k+3).kind == tokIdent && k+3 < end {
				k += 3
				name = p.toks[k].text
			}
			switch name {
			case "kernel", "vertex", "fragment":
				stage = name
			case "host_name":
				if p.at(k+1).is("(") && p.match[k+1] == k+3 && p.at(k+2).kind == tokString {
					s := p.toks[k+2].text
					hostName = s[1 : len(s)-1]
				}
			}
		}
		first = false
		if m := p.match[k]; m > k {
			k = m
		}
	}
	return stage, hostName
}

func isMSLStage(s string) bool { return s == "kernel" || s == "vertex" || s == "fragment" }

func (p *mslParser) parse() {
	// Per statement: whether it began with "template", whether that was
	// followed by '<' (a definition) or not (an explicit instantiation),
	// and the host_name of its attributes.
	var (
		stmtStart = true
		template  = false
		instance  = false
		hostName  = ""
	)
	reset := func() { stmtStart, template, instance, hostName = true, false, false, "" }
	for i := 0; i < len(p.toks); {
		t := p.toks[i]
		if t.kind == tokPreproc {
			i++
			continue
		}
		if stmtStart && t.kind == tokIdent && t.text == "template" {
			template = true
			instance = !p.at(i + 1).is("<")
		}
		stmtStart = false
		if end, ok := p.attrGroup(i); ok {
			stage, hn := p.attrs(i)
			if hn != "" {
				hostName = hn
			}
			i = end + 1
			if stage != "" {
				i = p.function(i, stage, template, instance, &hostName)
				reset()
			}
			continue
		}
		switch {
		case t.kind == tokIdent && isMSLStage(t.text):
			i = p.function(i+1, t.text, template, instance, &hostName)
			reset()
		case t.is(";") || t.is("{") || t.is("}"):
			reset()
			i++
		default:
			i++
		}
	}
}

// function parses a function header that starts at index i, right after
// its stage (kernel, vertex, fragment, given as a keyword or in an
// attribute), and returns the index to go on from: past its body or
// declaration when it has one, else where parsing stopped.
func (p *mslParser) function(i int, stage string, template, instance bool, hostName *string) int {
	stageLine := p.at(i - 1).line
	var ret []string // the return type's tokens
	nameIdx := -1
	for nameIdx < 0 {
		t := p.at(i)
		if end, ok := p.attrGroup(i); ok {
			if s, hn := p.attrs(i); hn != "" {
				*hostName = hn
			} else if isMSLStage(s) && s != stage {
				return p.notFunction(stage, stageLine, t, i)
			}
			i = end + 1
			continue
		}
		switch {
		case t.kind == tokIdent && isMSLStage(t.text):
			return p.notFunction(stage, stageLine, t, i)
		case t.kind == tokIdent && t.text == "void":
			ret = append(ret, t.text) // a type, never a name
			i++
		case t.kind == tokIdent:
			// The name is the identifier right before '(', template
			// arguments '<...>' or [[attributes]] that precede the '('.
			k := i + 1
			for {
				if end, ok := p.attrGroup(k); ok {
					if _, hn := p.attrs(k); hn != "" {
						*hostName = hn
					}
					k = end + 1
					continue
				}
				break
			}
			if p.at(k).is("(") || p.at(k).is("<") && len(ret) > 0 {
				nameIdx = i
				i = k
				break
			}
			ret = append(ret, t.text)
			i++
		case t.is(":") || t.is("<") || t.is(">") || t.is(",") || t.is("*") || t.is("&") || t.kind == tokNumber:
			// Qualified or templated return types: metal::float4,
			// vec<float, 4>.
			ret = append(ret, t.text)
			i++
		default:
			return p.notFunction(stage, stageLine, t, i)
		}
	}
	nameTok := p.toks[nameIdx]
	name := nameTok.text
	// Skip explicit template arguments f<float> up to the '('. They hold
	// no brackets that matter here; stop at anything that ends a header.
	for p.at(i).kind != 0 && !p.at(i).is("(") {
		if t := p.at(i); t.is(";") || t.is("{") || t.is("}") || t.is(")") {
			return p.notFunction(stage, stageLine, t, i)
		}
		if m := p.match[i]; m > i {
			i = m
		}
		i++
	}
	if p.at(i).kind == 0 {
		return p.notFunction(stage, stageLine, token{}, i)
	}
	end := p.match[i] + 1
	// After the parameters: attributes, then the body or ';'.
	for {
		if e, ok := p.attrGroup(end); ok {
			end = e + 1
			continue
		}
		break
	}
	after := p.at(end)
	body := after.is("{")
	if !body && !after.is(";") {
		p.errs.add(after.line, "expected the body of %s function %q after its parameter list, found %s", stage, name, describeToken(after))
		return end
	}
	next := end + 1
	if body {
		next = p.match[end] + 1
	}

	if stage == "kernel" {
		if rt := strings.Join(ret, " "); rt != "void" {
			if rt == "" {
				p.errs.add(nameTok.line, "kernel function %q has no return type: kernel functions return void", name)
			} else {
				p.errs.add(nameTok.line, "kernel function %q must return void, not %q", name, rt)
			}
			return next
		}
	}
	switch {
	case template && !instance:
		return next // a template is not a function until instantiated
	case template && instance:
		if *hostName == "" {
			return next // no name a host could ask for
		}
		name = *hostName
	case !body:
		return next // a declaration
	case *hostName != "":
		name = *hostName
	}
	line := nameTok.line
	if stage != "kernel" {
		if !p.others[name] {
			p.others[name] = true
			p.info.Others = append(p.info.Others, Entry{Name: name, Kind: stage, Line: line})
		}
		return next
	}
	if first, dup := p.kernels[name]; dup {
		p.errs.add(line, "kernel %q is defined twice (the first is at line %d)", name, first)
		return next
	}
	p.kernels[name] = line
	p.info.Entries = append(p.info.Entries, Entry{Name: name, Kind: "kernel", Line: line})
	return next
}

// notFunction handles a stage that is not followed by a function header.
// For kernel it is an error; vertex and fragment, which only fill Others,
// are let go. It returns where parsing goes on: i, or past it when i is
// the end of input or a bracket group.
func (p *mslParser) notFunction(stage string, line int, t token, i int) int {
	if stage == "kernel" {
		p.errs.add(line, "expected a function after %s: want %s void NAME(...), found %s", stage, stage, describeToken(t))
	}
	if i >= len(p.toks) {
		return i
	}
	if m := p.match[i]; m > i {
		return m + 1
	}
	if i == 0 {
		return 1
	}
	return i
}
