package code

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestLex(t *testing.T) {
	type tk struct {
		kind tokKind
		text string
		line int
	}
	tests := []struct {
		name string
		cfg  *lexConfig
		src  string
		want []tk
	}{
		{"ptx directives and registers", &ptxLex, ".version 7.8\nld.param.u64 %rd1, [p+8];",
			[]tk{{tokIdent, ".version", 1}, {tokNumber, "7.8", 1}, {tokIdent, "ld.param.u64", 2}, {tokIdent, "%rd1", 2},
				{tokPunct, ",", 2}, {tokPunct, "[", 2}, {tokIdent, "p", 2}, {tokPunct, "+", 2}, {tokNumber, "8", 2}, {tokPunct, "]", 2}, {tokPunct, ";", 2}}},
		{"ptx labels and floats", &ptxLex, "$L__BB0_2: mov.f32 %f1, 0f3F800000;",
			[]tk{{tokIdent, "$L__BB0_2", 1}, {tokPunct, ":", 1}, {tokIdent, "mov.f32", 1}, {tokIdent, "%f1", 1}, {tokPunct, ",", 1}, {tokNumber, "0f3F800000", 1}, {tokPunct, ";", 1}}},
		{"comments keep lines", &ptxLex, "a // x {\n/* {\n( */ b",
			[]tk{{tokIdent, "a", 1}, {tokIdent, "b", 3}}},
		{"strings", &ptxLex, `.file 1 "a{\"b\"}.cu"`,
			[]tk{{tokIdent, ".file", 1}, {tokNumber, "1", 1}, {tokString, `"a{\"b\"}.cu"`, 1}}},
		{"wgsl nested comments", &wgslLex, "a /* x /* y */ z */ b",
			[]tk{{tokIdent, "a", 1}, {tokIdent, "b", 1}}},
		{"c comments do not nest", &mslLex, "a /* x /* y */ b",
			[]tk{{tokIdent, "a", 1}, {tokIdent, "b", 1}}},
		{"wgsl numbers", &wgslLex, "1e-3f 0x1p+4 64u .5",
			[]tk{{tokNumber, "1e-3f", 1}, {tokNumber, "0x1p+4", 1}, {tokNumber, "64u", 1}, {tokNumber, ".5", 1}}},
		{"msl char literals and digit separators", &mslLex, `'{' '\'' 1'000`,
			[]tk{{tokChar, "'{'", 1}, {tokChar, `'\''`, 1}, {tokNumber, "1'000", 1}}},
		{"msl preprocessor line", &mslLex, "#define X(a) \\\n  ((a) /* ( */\nint",
			[]tk{{tokPreproc, "#define X(a) \\\n  ((a) /* ( */", 1}, {tokIdent, "int", 3}}},
		{"msl # inside a line is punctuation", &mslLex, "a #b",
			[]tk{{tokIdent, "a", 1}, {tokPunct, "#", 1}, {tokIdent, "b", 1}}},
		{"unicode identifiers", &wgslLex, "fn größe()",
			[]tk{{tokIdent, "fn", 1}, {tokIdent, "größe", 1}, {tokPunct, "(", 1}, {tokPunct, ")", 1}}},
		{"string with line continuation", &mslLex, "\"a\\\nb\" c",
			[]tk{{tokString, "\"a\\\nb\"", 1}, {tokIdent, "c", 2}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			toks, err := lex(tt.src, tt.cfg)
			if err != nil {
				t.Fatalf("lex: line %d: %s", err.line, err.reason)
			}
			var got []tk
			for _, x := range toks {
				got = append(got, tk{x.kind, x.text, x.line})
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("tokens\n got %v\nwant %v", got, tt.want)
			}
		})
	}
}

func TestLexErrors(t *testing.T) {
	tests := []struct {
		name   string
		cfg    *lexConfig
		src    string
		line   int
		reason string
	}{
		{"unterminated comment", &ptxLex, "a\n/* b\n\n", 2, "unterminated /* comment opened here"},
		{"unterminated nested comment", &wgslLex, "a\n/* b /* c */\n", 2, "unterminated /* comment"},
		{"unterminated string", &ptxLex, "a\n\"b\nc\"", 2, "unterminated string literal"},
		{"string at end", &mslLex, "\"b\\", 1, "unterminated string literal"},
		{"unterminated char", &mslLex, "\n'{;\n", 2, "unterminated character literal"},
		{"comment in preprocessor line", &mslLex, "#if 1 /* x\n", 1, "unterminated /* comment"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := lex(tt.src, tt.cfg)
			if err == nil {
				t.Fatal("lex succeeded")
			}
			if err.line != tt.line || !strings.Contains(err.reason, tt.reason) {
				t.Errorf("got line %d %q, want line %d containing %q", err.line, err.reason, tt.line, tt.reason)
			}
		})
	}
}

func TestDelimiters(t *testing.T) {
	tests := []struct {
		src    string
		line   int // 0: balanced
		reason string
	}{
		{"a ( b [ c ] { } )", 0, ""},
		{"a (\n b", 1, "unbalanced '(' opened here is never closed"},
		{"{\n(\n}", 2, "unbalanced '(' opened here is never closed (found '}' at line 3)"},
		{"{ }\n}", 2, "unbalanced '}' has no matching '{'"},
		{"( [ ) ]", 1, "unbalanced '[' opened here is never closed (found ')' at line 1)"},
		{"{\n[\n) ]", 3, "unbalanced ')' has no matching '(' (the innermost open bracket is '[' at line 2)"},
		{"{ {\n}", 1, "unbalanced '{' opened here is never closed"},
	}
	for _, tt := range tests {
		toks, lerr := lex(tt.src, &ptxLex)
		if lerr != nil {
			t.Fatal(lerr.reason)
		}
		match, err := delimiters(toks)
		switch {
		case tt.line == 0 && err != nil:
			t.Errorf("%q: %s", tt.src, err.reason)
		case tt.line == 0:
			for i, m := range match {
				if m >= 0 && match[m] != i {
					t.Errorf("%q: match is not symmetric at %d", tt.src, i)
				}
			}
		case err == nil:
			t.Errorf("%q: balanced, want line %d: %s", tt.src, tt.line, tt.reason)
		case err.line != tt.line || err.reason != tt.reason:
			t.Errorf("%q: got line %d %q, want line %d %q", tt.src, err.line, err.reason, tt.line, tt.reason)
		}
	}
}

// TestTextInspectorsLinear feeds the text inspectors inputs built to make
// a careless parser quadratic, at two sizes, and requires the time to grow
// about as the size does: eight times the input may take at most 32 times
// as long (a quadratic parser takes 64; the slack absorbs cache effects
// and the noise of a busy machine).
// BenchmarkTextInspectorsPathological runs the text inspectors on inputs
// built to expose super-linear behaviour, at two sizes 8x apart. The
// ns/byte metric of the two sizes of one input should stay close; a
// quadratic path shows as ns/byte growing about 8x.
func BenchmarkTextInspectorsPathological(b *testing.B) {
	all := []Format{FormatPTX, FormatWGSL, FormatMSL}
	inputs := []struct {
		name    string
		formats []Format
		gen     func(n int) string
	}{
		{"open parens", all, func(n int) string { return strings.Repeat("(", n) }},
		{"nested groups", all, func(n int) string { return strings.Repeat("{[(", n) + strings.Repeat(")]}", n) }},
		{"comment openers", all, func(n int) string { return strings.Repeat("/*", n) }},
		{"lines", all, func(n int) string { return strings.Repeat("\n", n) }},
		{"entries", []Format{FormatPTX}, func(n int) string { return ".version 7.8\n.target sm_80\n" + strings.Repeat(".entry ", n) }},
		{"params", []Format{FormatPTX}, func(n int) string {
			return ".version 7.8\n.target sm_80\n.entry k(" + strings.Repeat(".param .u32 a,", n) + ") {}"
		}},
		{"directives", []Format{FormatPTX}, func(n int) string { return strings.Repeat(".version 7.8 .target sm_80 .address_size 64 ", n) }},
		{"attributes", []Format{FormatWGSL}, func(n int) string { return strings.Repeat("@compute ", n) }},
		{"sizes", []Format{FormatWGSL}, func(n int) string { return "@compute @workgroup_size(" + strings.Repeat("1,", n) + ") fn f() {}" }},
		{"functions", []Format{FormatWGSL}, func(n int) string { return strings.Repeat("@compute @workgroup_size(1) fn f() {}\n", n) }},
		{"kernel keywords", []Format{FormatMSL}, func(n int) string { return strings.Repeat("kernel void ", n) }},
		{"kernel attributes", []Format{FormatMSL}, func(n int) string { return strings.Repeat("[[kernel]] ", n) }},
		{"templates", []Format{FormatMSL}, func(n int) string { return strings.Repeat("template kernel void f<", n) }},
		{"preprocessor", []Format{FormatMSL}, func(n int) string { return strings.Repeat("#define a \\\n", n) }},
	}
	for _, in := range inputs {
		for _, f := range in.formats {
			for _, n := range []int{16_000, 128_000} {
				input := []byte(in.gen(n))
				b.Run(fmt.Sprintf("%s/%s/%d", f, in.name, n), func(b *testing.B) {
					b.SetBytes(int64(len(input)))
					for b.Loop() {
						_, _ = Inspect(f, input, Options{})
					}
					b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(input)), "ns/byte")
				})
			}
		}
	}
}

// goodCase is a valid artifact and the entries it must report.
type goodCase struct {
	file    string // under testdata, matched by the glob given to runGoodCases
	entries []Entry
	others  []Entry
}

// runGoodCases inspects every file matching testdata/glob, which must be
// exactly the files of cases, checks the entries and others each reports,
// and that each entry can be asked for by name.
func runGoodCases(t *testing.T, f Format, glob string, cases []goodCase) {
	t.Helper()
	files := readTestdata(t, glob)
	if len(files) != len(cases) {
		t.Errorf("%d valid %s files, %d test cases", len(files), f, len(cases))
	}
	for _, tt := range cases {
		t.Run(tt.file, func(t *testing.T) {
			info, err := Inspect(f, files[tt.file], Options{Name: tt.file})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(info.Entries, tt.entries) {
				t.Errorf("entries %+v, want %+v", info.Entries, tt.entries)
			}
			if !slices.Equal(info.Others, tt.others) {
				t.Errorf("others %+v, want %+v", info.Others, tt.others)
			}
			for _, e := range tt.entries {
				if _, err := Inspect(f, files[tt.file], Options{Name: tt.file, Entry: e.Name}); err != nil {
					t.Errorf("entry %s: %v", e.Name, err)
				}
			}
		})
	}
}

// inlineCase is a valid source text and the names of the entries and
// others it must report.
type inlineCase struct {
	name, src string
	entries   []string
	others    []string
}

// runInlineGood inspects each case's source as format f, under the file
// name file, and checks the names of its entries and others.
func runInlineGood(t *testing.T, f Format, file string, cases []inlineCase) {
	t.Helper()
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			info, err := Inspect(f, []byte(tt.src), Options{Name: file})
			if err != nil {
				t.Fatal(err)
			}
			var others []string
			for _, o := range info.Others {
				others = append(others, o.Name)
			}
			if !slices.Equal(info.EntryNames(), tt.entries) || !slices.Equal(others, tt.others) {
				t.Errorf("entries %v others %v, want %v %v", info.EntryNames(), others, tt.entries, tt.others)
			}
		})
	}
}

// badCase is an invalid artifact and the first error it must give.
type badCase struct {
	file   string // under testdata/FORMAT/invalid
	opts   Options
	line   int // 0: the error has no line
	kind   error
	reason string // a substring of the reason
}

// checkError asserts that err is, or starts with, an *Error of file name
// at line with sentinel kind and a reason containing reason, and that its
// message reads "name:line: reason".
func checkError(t *testing.T, err error, name string, line int, kind error, reason string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error; want %s:%d: %s", name, line, reason)
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not an *Error", err, err)
	}
	if !errors.Is(err, kind) {
		t.Errorf("error %q does not wrap %v", err, kind)
	}
	if e.Line != line {
		t.Errorf("error %q is at line %d, want %d", err, e.Line, line)
	}
	if !strings.Contains(e.Reason, reason) {
		t.Errorf("error %q does not say %q", err, reason)
	}
	prefix := name + ": "
	if line > 0 {
		prefix = fmt.Sprintf("%s:%d: ", name, line)
	}
	if !strings.HasPrefix(err.Error(), prefix) {
		t.Errorf("error %q does not start with %q", err, prefix)
	}
}

// runBadCases inspects each case's file as format f and checks the error.
func runBadCases(t *testing.T, f Format, dir string, cases []badCase) {
	t.Helper()
	seen := map[string]bool{}
	for _, c := range cases {
		seen[c.file] = true
		t.Run(c.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join(dir, c.file))
			if err != nil {
				t.Fatal(err)
			}
			opts := c.opts
			opts.Name = c.file
			info, err := Inspect(f, b, opts)
			if err == nil {
				t.Fatalf("accepted, entries %v", info.EntryNames())
			}
			checkError(t, err, c.file, c.line, c.kind, c.reason)
		})
	}
	// Every invalid file must have a case.
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	for _, p := range files {
		if !seen[filepath.Base(p)] {
			t.Errorf("%s has no test case", p)
		}
	}
}

// readTestdata returns the files of a testdata directory matching pattern.
func readTestdata(t testing.TB, pattern string) map[string][]byte {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", pattern))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no testdata matches %s", pattern)
	}
	files := map[string][]byte{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		files[filepath.Base(p)] = b
	}
	return files
}

// addSeeds adds every file matching the patterns to the fuzz corpus.
func addSeeds(f *testing.F, patterns ...string) {
	for _, pat := range patterns {
		for _, b := range readTestdata(f, pat) {
			f.Add(b)
		}
	}
}

// fuzzInspect runs Inspect on b as format fm, with and without an entry,
// and checks what any result must satisfy.
func fuzzInspect(t *testing.T, fm Format, b []byte) {
	for _, opts := range []Options{{Name: "fuzz"}, {Name: "fuzz", Entry: "main"}} {
		info, err := Inspect(fm, b, opts)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v (%T) is not an *Error", err, err)
			}
			if e.Line < 0 || e.Reason == "" {
				t.Fatalf("bad error %#v", e)
			}
			continue
		}
		if info == nil || len(info.Entries) == 0 {
			t.Fatalf("success without entries: %+v", info)
		}
		lines := strings.Count(string(b), "\n") + 1
		for _, e := range append(slices.Clone(info.Entries), info.Others...) {
			if e.Name == "" || e.Line < 1 || e.Line > lines {
				t.Fatalf("bad entry %+v (file has %d lines)", e, lines)
			}
		}
	}
}
