package code

import "testing"

func TestInspectMSLValid(t *testing.T) {
	runGoodCases(t, FormatMSL, "msl/*.metal", []goodCase{
		{"vector_add.metal", []Entry{{Name: "vector_add", Kind: "kernel", Line: 5}}, nil},
		{"reduce.metal", []Entry{
			{Name: "reduce_sum", Kind: "kernel", Line: 21},
			{Name: "square", Kind: "kernel", Line: 44},
		}, nil},
		{"render_and_compute.metal",
			[]Entry{{Name: "step", Kind: "kernel", Line: 30}},
			[]Entry{{Name: "vs_main", Kind: "vertex", Line: 15}, {Name: "fs_main", Kind: "fragment", Line: 25}}},
		{"templates.metal", []Entry{
			{Name: "axpy_float", Kind: "kernel", Line: 17},
			{Name: "axpy_half", Kind: "kernel", Line: 19},
			{Name: "fill", Kind: "kernel", Line: 27},
		}, nil},
	})
}

func TestInspectMSLInvalid(t *testing.T) {
	runBadCases(t, FormatMSL, "testdata/msl/invalid", []badCase{
		{file: "kernel_returns_float.metal", line: 4, kind: ErrMalformed, reason: `kernel function "scale" must return void, not "float"`},
		{file: "kernel_no_name.metal", line: 4, kind: ErrMalformed, reason: `expected a function after kernel: want kernel void NAME(...), found "("`},
		{file: "kernel_not_function.metal", line: 4, kind: ErrMalformed, reason: `expected a function after kernel: want kernel void NAME(...), found ";"`},
		{file: "kernel_no_body.metal", line: 4, kind: ErrMalformed, reason: `expected the body of kernel function "fill" after its parameter list, found "const"`},
		{file: "unclosed_brace.metal", line: 6, kind: ErrMalformed, reason: "unbalanced '{' opened here is never closed"},
		{file: "stray_brace.metal", line: 8, kind: ErrMalformed, reason: "unbalanced '}' has no matching '{'"},
		{file: "unclosed_paren.metal", line: 4, kind: ErrMalformed, reason: "unbalanced '(' opened here is never closed"},
		{file: "unclosed_attribute.metal", line: 4, kind: ErrMalformed, reason: "unbalanced '[' opened here is never closed (found ')' at line 5)"},
		{file: "unterminated_string.metal", line: 4, kind: ErrMalformed, reason: "unterminated string literal opened here"},
		{file: "unterminated_char.metal", line: 6, kind: ErrMalformed, reason: "unterminated character literal opened here"},
		{file: "unterminated_comment.metal", line: 4, kind: ErrMalformed, reason: "unterminated /* comment opened here"},
		{file: "duplicate_kernel.metal", line: 9, kind: ErrMalformed, reason: `kernel "fill" is defined twice (the first is at line 4)`},
		{file: "render_only.metal", line: 4, kind: ErrNoEntries, reason: "no compute entry point (only fragment fs_main, vertex vs_main)"},
		{file: "../render_and_compute.metal", opts: Options{Entry: "fs_main"}, line: 25, kind: ErrEntryNotFound,
			reason: `entry "fs_main" is a fragment entry point, not a compute entry point`},
	})
}

func TestInspectMSLCases(t *testing.T) {
	runInlineGood(t, FormatMSL, "k.metal", []inlineCase{
		{"attribute after kernel", "kernel [[max_total_threads_per_threadgroup(64)]] void k() {}", []string{"k"}, nil},
		{"attribute before kernel", "[[max_total_threads_per_threadgroup(64)]] kernel void k() {}", []string{"k"}, nil},
		{"attribute after name", "[[kernel]] void k [[max_total_threads_per_threadgroup(64)]] (device float* a [[buffer(0)]]) {}", []string{"k"}, nil},
		{"attribute after void", "[[kernel]] void [[deprecated]] k() {}", []string{"k"}, nil},
		{"host_name on a definition", "[[host_name(\"run\")]] kernel void k() {}", []string{"run"}, nil},
		{"qualified stage", "[[metal::kernel]] void k() {}", []string{"k"}, nil},
		{"kernel in namespace and struct around", "namespace a { struct S { float x [[id(0)]]; }; kernel void k(device S* s) {} }", []string{"k"}, nil},
		{"qualified vertex return type", "vertex metal::float4 v() { return 0; }\nkernel void k() {}", []string{"k"}, []string{"v"}},
		{"templated vertex return type", "vertex vec<float, 4> v() { return 0; }\nkernel void k() {}", []string{"k"}, []string{"v"}},
		{"instantiation without host_name", "template <typename T> kernel void k(device T* a) {}\ntemplate kernel void k<float>(device float*);\nkernel void j() {}", []string{"j"}, nil},
		{"macro using kernel", "#define K kernel void\n#include \"x.h\"\nkernel void j() {}", []string{"j"}, nil},
		{"vertex as a variable", "kernel void j() { float vertex = 1; }", []string{"j"}, nil},
		{"raw quote in preprocessor", "#error don't\nkernel void j() {}", []string{"j"}, nil},
	})

	bad := []struct {
		name, src string
		line      int
		kind      error
		reason    string
	}{
		{"no kernels", "float f() { return 1; }", 0, ErrNoEntries, "no compute entry point"},
		{"kernel without return type", "kernel k() {}", 1, ErrMalformed, `kernel function "k" has no return type`},
		{"kernel at end", "kernel void k() {}\nkernel void", 2, ErrMalformed, "expected a function after kernel"},
		{"kernel then vertex", "kernel vertex void k() {}", 1, ErrMalformed, `found "vertex"`},
		{"two stages in attributes", "[[kernel]] [[vertex]] void k() {}", 1, ErrMalformed, "expected a function after kernel"},
		{"entry not found", "kernel void k() {}", 1, ErrEntryNotFound, `entry "j" not found; entries: k`},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			opts := Options{Name: "k.metal"}
			if tt.kind == ErrEntryNotFound {
				opts.Entry = "j"
			}
			_, err := Inspect(FormatMSL, []byte(tt.src), opts)
			checkError(t, err, "k.metal", tt.line, tt.kind, tt.reason)
		})
	}
}

func FuzzMSL(f *testing.F) {
	addSeeds(f, "msl/*.metal", "msl/invalid/*.metal")
	f.Fuzz(func(t *testing.T, b []byte) {
		fuzzInspect(t, FormatMSL, b)
	})
}
