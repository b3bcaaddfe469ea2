package code

import "testing"

func TestInspectWGSLValid(t *testing.T) {
	runGoodCases(t, FormatWGSL, "wgsl/*.wgsl", []goodCase{
		{"vector_add.wgsl", []Entry{{Name: "vector_add", Kind: "compute", Line: 13}}, nil},
		{"reduce.wgsl", []Entry{
			{Name: "reduce_partial", Kind: "compute", Line: 21},
			{Name: "reduce_final", Kind: "compute", Line: 45},
		}, nil},
		{"render_and_compute.wgsl",
			[]Entry{{Name: "step", Kind: "compute", Line: 32}},
			[]Entry{{Name: "vs_main", Kind: "vertex", Line: 18}, {Name: "fs_main", Kind: "fragment", Line: 27}}},
		{"matmul.wgsl", []Entry{{Name: "matmul", Kind: "compute", Line: 21}}, nil},
	})
}

func TestInspectWGSLInvalid(t *testing.T) {
	runBadCases(t, FormatWGSL, "testdata/wgsl/invalid", []badCase{
		{file: "compute_no_workgroup_size.wgsl", line: 4, kind: ErrMalformed, reason: `compute entry point "main" has no @workgroup_size`},
		{file: "workgroup_size_zero.wgsl", line: 3, kind: ErrMalformed, reason: `workgroup size 0 of "main" must be at least 1`},
		{file: "workgroup_size_four.wgsl", line: 3, kind: ErrMalformed, reason: `@workgroup_size of "main" takes 1 to 3 dimensions, found 4`},
		{file: "workgroup_size_empty.wgsl", line: 3, kind: ErrMalformed, reason: `@workgroup_size of "main" needs its dimensions`},
		{file: "workgroup_size_float.wgsl", line: 3, kind: ErrMalformed, reason: `workgroup size 64.0 of "main" is not an integer`},
		{file: "workgroup_size_on_fragment.wgsl", line: 1, kind: ErrMalformed, reason: `@workgroup_size on fragment function "main"`},
		{file: "two_stages.wgsl", line: 3, kind: ErrMalformed, reason: `function "main" has two shader stages, @compute and @vertex`},
		{file: "stage_on_var.wgsl", line: 1, kind: ErrMalformed, reason: "@compute must be followed by a function declaration"},
		{file: "unclosed_brace.wgsl", line: 4, kind: ErrMalformed, reason: "unbalanced '{' opened here is never closed"},
		{file: "stray_paren.wgsl", line: 5, kind: ErrMalformed, reason: "unbalanced ')' has no matching '(' (the innermost open bracket is '{' at line 4)"},
		{file: "mismatched_bracket.wgsl", line: 5, kind: ErrMalformed, reason: "unbalanced ')' has no matching '(' (the innermost open bracket is '[' at line 5)"},
		{file: "unterminated_nested_comment.wgsl", line: 3, kind: ErrMalformed, reason: "unterminated /* comment opened here"},
		{file: "fn_no_name.wgsl", line: 4, kind: ErrMalformed, reason: `expected a function name after 'fn', found "("`},
		{file: "duplicate_fn.wgsl", line: 9, kind: ErrMalformed, reason: `function "main" is declared twice (the first is at line 4)`},
		{file: "render_only.wgsl", line: 2, kind: ErrNoEntries, reason: "no compute entry point (only fragment fs_main, vertex vs_main)"},
		{file: "attribute_no_name.wgsl", line: 3, kind: ErrMalformed, reason: `expected an attribute name after '@', found "@"`},
		{file: "../render_and_compute.wgsl", opts: Options{Entry: "vs_main"}, line: 18, kind: ErrEntryNotFound,
			reason: `entry "vs_main" is a vertex entry point, not a compute entry point`},
	})
}

func TestInspectWGSLCases(t *testing.T) {
	runInlineGood(t, FormatWGSL, "k.wgsl", []inlineCase{
		{"trailing comma", "@compute @workgroup_size(8, 8,) fn f() {}", []string{"f"}, nil},
		{"override expressions", "override N = 4u;\n@compute @workgroup_size(N * 2u, max(N, 1u)) fn f() {}", []string{"f"}, nil},
		{"hex and suffixed sizes", "@compute @workgroup_size(0x40u, 2i) fn f() {}", []string{"f"}, nil},
		{"attributes on separate lines", "@compute\n// size\n@workgroup_size(1)\nfn\nf\n()\n{}", []string{"f"}, nil},
		{"space after @", "@ compute @ workgroup_size(1) fn f() {}", []string{"f"}, nil},
		{"diagnostic and must_use", "diagnostic(off, derivative_uniformity);\n@must_use fn g() -> i32 { return 1; }\n@compute @workgroup_size(1) fn f() { _ = g(); }", []string{"f"}, nil},
		{"return attributes", "@vertex fn v() -> @builtin(position) vec4f { return vec4f(); }\n@compute @workgroup_size(1) fn c() {}", []string{"c"}, []string{"v"}},
		{"struct member attributes", "struct S { @location(0) a: f32, @builtin(position) p: vec4f }\n@compute @workgroup_size(1) fn c() {}", []string{"c"}, nil},
	})

	bad := []struct {
		name, src string
		line      int
		kind      error
		reason    string
	}{
		{"no functions", "const x = 1;", 0, ErrNoEntries, "no compute entry point"},
		{"size without parens", "@compute @workgroup_size fn f() {}", 1, ErrMalformed, "needs its dimensions"},
		{"size without stage", "@workgroup_size(1)\nfn f() {}\n@compute @workgroup_size(1) fn g() {}", 1, ErrMalformed, `@workgroup_size on function "f", which is not a @compute entry point`},
		{"stage with arguments", "@compute(1) @workgroup_size(1) fn f() {}", 1, ErrMalformed, "@compute takes no arguments"},
		{"empty dimension", "@compute @workgroup_size(1,,2) fn f() {}", 1, ErrMalformed, "has an empty dimension"},
		{"fn without parens", "@compute @workgroup_size(1)\nfn f {}", 2, ErrMalformed, `expected '(' after the name of function "f"`},
		{"stage at end", "@compute @workgroup_size(1) fn f() {}\n@vertex", 2, ErrMalformed, "@vertex must be followed by a function declaration"},
		{"stage repeated", "@compute\n@compute @workgroup_size(1) fn c() {}", 2, ErrMalformed, `function "c" repeats the attribute @compute`},
		{"size repeated", "@compute @workgroup_size(1)\n@workgroup_size(2) fn c() {}", 2, ErrMalformed, `function "c" repeats the attribute @workgroup_size`},
		{"huge size", "@compute @workgroup_size(99999999999999999999999) fn f() {}", 0, nil, ""},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Inspect(FormatWGSL, []byte(tt.src), Options{Name: "k.wgsl"})
			if tt.kind == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			checkError(t, err, "k.wgsl", tt.line, tt.kind, tt.reason)
		})
	}
}

func FuzzWGSL(f *testing.F) {
	addSeeds(f, "wgsl/*.wgsl", "wgsl/invalid/*.wgsl")
	f.Fuzz(func(t *testing.T, b []byte) {
		fuzzInspect(t, FormatWGSL, b)
	})
}
