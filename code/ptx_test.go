package code

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

func TestInspectPTXValid(t *testing.T) {
	tests := []struct {
		file    string
		arch    string
		version string
		entries []Entry
		others  []Entry
	}{
		{"vector_add.ptx", "sm_80", "7.8", []Entry{{Name: "vector_add", Kind: "kernel", Line: 8}}, nil},
		{"persistent.ptx", "sm_75", "7.5", []Entry{
			{Name: "persistent_worker", Kind: "kernel", Line: 42},
			{Name: "persistent_reset", Kind: "kernel", Line: 97},
		}, nil},
		{"address_size_32.ptx", "sm_52", "7.0", []Entry{{Name: "fill32", Kind: "kernel", Line: 6}}, nil},
		{"comments_strings.ptx", "sm_80", "7.8",
			[]Entry{{Name: "scale", Kind: "kernel", Line: 14}},
			[]Entry{{Name: "remote_kernel", Kind: "extern", Line: 12}}},
	}
	files := readTestdata(t, "ptx/*.ptx")
	if len(files) != len(tests) {
		t.Errorf("%d valid PTX files, %d test cases", len(files), len(tests))
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			info, err := Inspect(FormatPTX, files[tt.file], Options{Name: tt.file})
			if err != nil {
				t.Fatal(err)
			}
			if info.Format != FormatPTX || info.Arch != tt.arch || info.Version != tt.version {
				t.Errorf("format %v arch %q version %q, want ptx %q %q", info.Format, info.Arch, info.Version, tt.arch, tt.version)
			}
			if !slices.Equal(info.Entries, tt.entries) {
				t.Errorf("entries %+v, want %+v", info.Entries, tt.entries)
			}
			if !slices.Equal(info.Others, tt.others) {
				t.Errorf("others %+v, want %+v", info.Others, tt.others)
			}
			if info.Assembled != nil {
				t.Error("Assembled set without Options.Arch")
			}
			// Each entry can be asked for by name.
			for _, e := range tt.entries {
				if _, err := Inspect(FormatPTX, files[tt.file], Options{Name: tt.file, Entry: e.Name}); err != nil {
					t.Errorf("entry %s: %v", e.Name, err)
				}
			}
		})
	}
}

func TestInspectPTXInvalid(t *testing.T) {
	runBadCases(t, FormatPTX, "testdata/ptx/invalid", []badCase{
		{file: "no_version.ptx", line: 2, kind: ErrMalformed, reason: `missing .version directive: PTX must begin with .version MAJOR.MINOR (found ".target")`},
		{file: "version_not_first.ptx", line: 3, kind: ErrMalformed, reason: `.version must be the first directive, before ".target" at line 2`},
		{file: "bad_version.ptx", line: 1, kind: ErrMalformed, reason: `malformed .version: want MAJOR.MINOR such as 7.8, found "7"`},
		{file: "no_target.ptx", line: 1, kind: ErrMalformed, reason: "missing .target directive"},
		{file: "target_late.ptx", line: 3, kind: ErrMalformed, reason: ".target must come right after .version (line 1)"},
		{file: "bad_target.ptx", line: 2, kind: ErrMalformed, reason: `unknown .target "gfx90a"`},
		{file: "bad_target_option.ptx", line: 2, kind: ErrMalformed, reason: `unknown .target "texmode_fancy"`},
		{file: "two_archs.ptx", line: 2, kind: ErrMalformed, reason: ".target names more than one architecture: sm_80 and sm_86"},
		{file: "texmode_conflict.ptx", line: 4, kind: ErrMalformed, reason: "conflicting .target options texmode_unified and texmode_independent"},
		{file: "bad_address_size.ptx", line: 3, kind: ErrMalformed, reason: `invalid .address_size "48": must be 32 or 64`},
		{file: "address_size_late.ptx", line: 9, kind: ErrMalformed, reason: ".address_size must come right after .target (line 2)"},
		{file: "unclosed_brace.ptx", line: 8, kind: ErrMalformed, reason: "unbalanced '{' opened here is never closed"},
		{file: "stray_brace.ptx", line: 9, kind: ErrMalformed, reason: "unbalanced '}' has no matching '{'"},
		{file: "unclosed_paren.ptx", line: 5, kind: ErrMalformed, reason: "unbalanced '(' opened here is never closed"},
		{file: "unclosed_bracket.ptx", line: 8, kind: ErrMalformed, reason: "unbalanced '[' opened here is never closed (found '}' at line 10)"},
		{file: "param_no_space.ptx", line: 7, kind: ErrMalformed, reason: `malformed parameter list of entry "k": parameter 2 must start with .param, found ".u32"`},
		{file: "param_no_type.ptx", line: 7, kind: ErrMalformed, reason: `malformed parameter list of entry "k": parameter 2 has no type`},
		{file: "param_trailing_comma.ptx", line: 8, kind: ErrMalformed, reason: `malformed parameter list of entry "k": parameter 3 is empty`},
		{file: "param_missing_comma.ptx", line: 7, kind: ErrMalformed, reason: `unexpected ".param" after parameter "k_p": want ',' or ')'`},
		{file: "entry_no_name.ptx", line: 5, kind: ErrMalformed, reason: `expected a kernel name after .entry, found "("`},
		{file: "entry_no_body.ptx", line: 5, kind: ErrMalformed, reason: `entry "declared_only" has no body`},
		{file: "extern_with_body.ptx", line: 6, kind: ErrMalformed, reason: `extern entry "k" has a body`},
		{file: "duplicate_entry.ptx", line: 10, kind: ErrMalformed, reason: `duplicate definition of entry "k" (the first is at line 5)`},
		{file: "entry_in_body.ptx", line: 7, kind: ErrMalformed, reason: ".entry must be at module scope"},
		{file: "unterminated_comment.ptx", line: 5, kind: ErrMalformed, reason: "unterminated /* comment opened here"},
		{file: "unterminated_string.ptx", line: 5, kind: ErrMalformed, reason: "unterminated string literal opened here"},
		{file: "only_funcs.ptx", line: 0, kind: ErrNoEntries, reason: "no compute entry point"},
	})
}

// ptxModule wraps a body in a valid header.
func ptxModule(rest string) string {
	return ".version 7.8\n.target sm_80\n.address_size 64\n" + rest
}

func TestInspectPTXCases(t *testing.T) {
	good := []struct {
		name, src string
		arch      string
		entries   []string
	}{
		{"arch-specific target", ".version 8.0\n.target sm_90a\n.entry k() { ret; }", "sm_90a", []string{"k"}},
		{"virtual target", ".version 7.8\n.target compute_80, debug\n.entry k() { ret; }", "compute_80", []string{"k"}},
		{"options before arch", ".version 7.8\n.target texmode_independent, sm_80\n.entry k() { ret; }", "sm_80", []string{"k"}},
		{"no address size", ".version 7.8\n.target sm_80\n.entry k { ret; }", "sm_80", []string{"k"}},
		{"header on one line", ".version 7.8 .target sm_80 .address_size 64 .entry k() { ret; }", "sm_80", []string{"k"}},
		{"weak and tuning directives", ptxModule(".weak .entry k(.param .u32 n) .maxntid 128, 1, 1 .reqntid 128 { ret; }"), "sm_80", []string{"k"}},
		{"pointer and array params", ptxModule(".entry k(.param .u64 .ptr .global .align 16 p, .param .align 8 .b8 s[24]) { ret; }"), "sm_80", []string{"k"}},
		{"funcs are not entries", ptxModule(".func (.param .b32 r) f(.param .b32 a) { ret; }\n.entry k() { ret; }"), "sm_80", []string{"k"}},
		{"extern func declaration", ptxModule(".extern .func (.param .b32 r) f(.param .b32 a);\n.entry k() { ret; }"), "sm_80", []string{"k"}},
		{"global initializers", ptxModule(".global .u32 t[2] = {1, 2};\n.entry k() { ret; }\n.entry j() { ret; }"), "sm_80", []string{"k", "j"}},
	}
	for _, tt := range good {
		t.Run(tt.name, func(t *testing.T) {
			info, err := Inspect(FormatPTX, []byte(tt.src), Options{Name: "k.ptx"})
			if err != nil {
				t.Fatal(err)
			}
			if info.Arch != tt.arch || !slices.Equal(info.EntryNames(), tt.entries) {
				t.Errorf("arch %q entries %v, want %q %v", info.Arch, info.EntryNames(), tt.arch, tt.entries)
			}
		})
	}

	bad := []struct {
		name, src string
		opts      Options
		line      int
		kind      error
		reason    string
	}{
		{"only comments", "// nothing\n/* here */\n", Options{}, 0, ErrMalformed, "missing .version directive"},
		{"duplicate version", ".version 7.8\n.target sm_80\n.version 7.8\n.entry k() { ret; }", Options{}, 3, ErrMalformed, "duplicate .version directive (the first is at line 1)"},
		{"duplicate target", ".version 7.8\n.target sm_80\n.target sm_80\n.entry k() { ret; }", Options{}, 3, ErrMalformed, "duplicate .target"},
		{"duplicate address size", ptxModule(".address_size 64\n.entry k() { ret; }"), Options{}, 4, ErrMalformed, "duplicate .address_size"},
		{"empty target", ".version 7.8\n.target\n.entry k() { ret; }", Options{}, 2, ErrMalformed, "missing target after .target"},
		{"trailing comma in target", ".version 7.8\n.target sm_80,\n.entry k() { ret; }", Options{}, 3, ErrMalformed, `missing target after ',' in .target, found ".entry"`},
		{"options without arch", ".version 7.8\n.target debug\n.entry k() { ret; }", Options{}, 2, ErrMalformed, ".target names no architecture"},
		{"one-digit sm", ".version 7.8\n.target sm_8\n.entry k() { ret; }", Options{}, 2, ErrMalformed, `unknown .target "sm_8"`},
		{"address size not a number", ".version 7.8\n.target sm_80\n.address_size\n.entry k() { ret; }", Options{}, 3, ErrMalformed, `invalid .address_size ".entry": must be 32 or 64`},
		{"align without count", ptxModule(".entry k(.param .align .b8 s[8]) { ret; }"), Options{}, 4, ErrMalformed, ".align in parameter 1 needs a byte count"},
		{"two types", ptxModule(".entry k(.param .u32 .u64 a) { ret; }"), Options{}, 4, ErrMalformed, "parameter 1 has two types, .u32 and .u64"},
		{"no param name", ptxModule(".entry k(.param .u32) { ret; }"), Options{}, 4, ErrMalformed, `parameter 1 has no name (found ")")`},
		{"bad array size", ptxModule(".entry k(.param .b8 a[n]) { ret; }"), Options{}, 4, ErrMalformed, `the array size of parameter "a" must be a number`},
		{"empty array size", ptxModule(".entry k(.param .b8 a[]) { ret; }"), Options{}, 4, ErrMalformed, `the array size of parameter "a" must be a number`},
		{"duplicate param", ptxModule(".entry k(.param .u32 a,\n.param .u32 a) { ret; }"), Options{}, 5, ErrMalformed, `duplicate parameter "a"`},
		{"entry at end of file", ptxModule(".entry k(.param .u32 a)"), Options{}, 4, ErrMalformed, `entry "k" has no body: the file ends first`},
		{"junk before body", ptxModule(".entry k() foo { ret; }"), Options{}, 4, ErrMalformed, `unexpected "foo" after the parameter list of entry "k"`},
		{"version in body", ptxModule(".entry k() {\n.version 7.8\n}"), Options{}, 5, ErrMalformed, ".version must be at module scope"},
		{"entry not found", ptxModule(".entry k() { ret; }"), Options{Entry: "j"}, 4, ErrEntryNotFound, `entry "j" not found; entries: k`},
		{"extern entry named", ptxModule(".extern .entry j();\n.entry k() { ret; }"), Options{Entry: "j"}, 4, ErrEntryNotFound, `extern entry point, not a compute entry point`},
		{"only extern entries", ptxModule(".extern .entry j();"), Options{}, 4, ErrNoEntries, "no compute entry point (only extern j)"},
		{"invalid arch option", ptxModule(".entry k() { ret; }"), Options{Arch: "sm80"}, 0, ErrArch, `invalid architecture "sm80"`},
		{"target newer than arch", ptxModule(".entry k() { ret; }"), Options{Arch: "sm_75"}, 2, ErrArch, ".target sm_80 is newer than the requested architecture sm_75"},
		{"ptxas missing", ptxModule(".entry k() { ret; }"), Options{Arch: "sm_80", PTXAS: "/nonexistent/ptxas"}, 0, ErrToolNotFound, "HOTKERNEL_PTXAS"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Name = "k.ptx"
			_, err := Inspect(FormatPTX, []byte(tt.src), tt.opts)
			checkError(t, err, "k.ptx", tt.line, tt.kind, tt.reason)
		})
	}
}

// TestInspectPTXErrorList checks that independent faults are all reported,
// in line order.
func TestInspectPTXErrorList(t *testing.T) {
	src := ".version 7.8\n.target sm_80\n.address_size 16\n.entry k(.param a) { ret; }\n.entry k() { ret; }\n"
	_, err := Inspect(FormatPTX, []byte(src), Options{Name: "k.ptx"})
	var list ErrorList
	if !errors.As(err, &list) {
		t.Fatalf("got %v (%T), want an ErrorList", err, err)
	}
	var lines []int
	for _, e := range list {
		lines = append(lines, e.Line)
	}
	if !slices.Equal(lines, []int{3, 4, 5}) {
		t.Errorf("lines %v, want [3 4 5]:\n%v", lines, err)
	}
}

// fakePTXAS writes a shell script standing in for ptxas and returns its
// path. The script receives "-arch=ARCH -o OUT IN".
func fakePTXAS(t *testing.T, script string) string {
	t.Helper()
	if runtime.GOOS == "windows" {
		t.Skip("fake ptxas is a shell script")
	}
	p := filepath.Join(t.TempDir(), "ptxas")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+script+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestInspectPTXFakeAssembler checks how ptxas's results become the
// result of Inspect, with a stand-in that needs no CUDA installation.
func TestInspectPTXFakeAssembler(t *testing.T) {
	src := []byte(ptxModule(".entry k() {\n\tret;\n}\n"))
	t.Run("success", func(t *testing.T) {
		ptxas := fakePTXAS(t, `printf '\177ELFfake' > "$3"`)
		info, err := Inspect(FormatPTX, src, Options{Name: "k.ptx", Arch: "sm_86", PTXAS: ptxas})
		if err != nil {
			t.Fatal(err)
		}
		if string(info.Assembled) != "\x7fELFfake" {
			t.Errorf("Assembled = %q", info.Assembled)
		}
	})
	t.Run("errors at lines", func(t *testing.T) {
		ptxas := fakePTXAS(t, `echo "ptxas $4, line 5; error   : Unknown symbol 'x'" >&2
echo "ptxas $4, line 4; warning : something minor" >&2
echo "ptxas $4, line 6; error   : Not a name of any known instruction: 'y'" >&2
echo "ptxas fatal   : Ptx assembly aborted due to errors" >&2
exit 255`)
		_, err := Inspect(FormatPTX, src, Options{Name: "k.ptx", Arch: "sm_80", PTXAS: ptxas})
		checkError(t, err, "k.ptx", 5, ErrAssemble, "ptxas: Unknown symbol 'x'")
		var list ErrorList
		if !errors.As(err, &list) || len(list) != 2 || list[1].Line != 6 || !strings.Contains(list[1].Reason, "'y'") {
			t.Errorf("got %v, want the two errors at lines 5 and 6", err)
		}
	})
	t.Run("fatal without line", func(t *testing.T) {
		ptxas := fakePTXAS(t, `echo "ptxas fatal   : Out of memory" >&2; exit 255`)
		_, err := Inspect(FormatPTX, src, Options{Name: "k.ptx", Arch: "sm_80", PTXAS: ptxas})
		checkError(t, err, "k.ptx", 0, ErrAssemble, "ptxas: Out of memory")
	})
	t.Run("silent failure", func(t *testing.T) {
		ptxas := fakePTXAS(t, `exit 3`)
		_, err := Inspect(FormatPTX, src, Options{Name: "k.ptx", Arch: "sm_80", PTXAS: ptxas})
		checkError(t, err, "k.ptx", 0, ErrAssemble, "exit status 3")
	})
	t.Run("many errors", func(t *testing.T) {
		ptxas := fakePTXAS(t, `i=1; while [ $i -le 30 ]; do echo "ptxas $4, line $i; error   : bad $i" >&2; i=$((i+1)); done; exit 255`)
		_, err := Inspect(FormatPTX, src, Options{Name: "k.ptx", Arch: "sm_80", PTXAS: ptxas})
		list := errorsOf(err)
		if len(list) != maxErrors+1 || list[0].Line != 1 || !strings.Contains(list[maxErrors].Reason, "10 more errors not shown") {
			t.Errorf("got %d errors:\n%v", len(list), err)
		}
	})
	t.Run("unsupported arch", func(t *testing.T) {
		ptxas := fakePTXAS(t, `echo "ptxas fatal   : Value 'sm_120' is not defined for option 'gpu-name'" >&2; exit 255`)
		_, err := Inspect(FormatPTX, src, Options{Name: "k.ptx", Arch: "sm_120", PTXAS: ptxas})
		checkError(t, err, "k.ptx", 0, ErrArch, "does not support sm_120")
	})
	t.Run("environment variable", func(t *testing.T) {
		ptxas := fakePTXAS(t, `printf 'cubin' > "$3"`)
		t.Setenv("HOTKERNEL_PTXAS", ptxas)
		info, err := Inspect(FormatPTX, src, Options{Name: "k.ptx", Arch: "sm_80"})
		if err != nil || string(info.Assembled) != "cubin" {
			t.Fatalf("info %+v, err %v", info, err)
		}
	})
	t.Run("environment variable wrong", func(t *testing.T) {
		t.Setenv("HOTKERNEL_PTXAS", "/nonexistent/ptxas")
		_, err := Inspect(FormatPTX, src, Options{Name: "k.ptx", Arch: "sm_80"})
		checkError(t, err, "k.ptx", 0, ErrToolNotFound, `HOTKERNEL_PTXAS="/nonexistent/ptxas"`)
	})
	t.Run("structure first", func(t *testing.T) {
		ptxas := fakePTXAS(t, `echo ran > "$3"`)
		_, err := Inspect(FormatPTX, []byte(".target sm_80\n.entry k() { ret; }"), Options{Name: "k.ptx", Arch: "sm_80", PTXAS: ptxas})
		checkError(t, err, "k.ptx", 1, ErrMalformed, "missing .version")
	})
}

// TestInspectPTXAssemble runs the real ptxas.
func TestInspectPTXAssemble(t *testing.T) {
	ptxas := requirePTXAS(t)
	for name, b := range readTestdata(t, "ptx/*.ptx") {
		t.Run(name, func(t *testing.T) {
			info, err := Inspect(FormatPTX, b, Options{Name: name, Arch: "sm_80", PTXAS: ptxas})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(info.Assembled, []byte("\x7fELF")) {
				t.Errorf("Assembled is not an ELF file: % x", info.Assembled[:min(len(info.Assembled), 16)])
			}
		})
	}
	t.Run("virtual arch checks only", func(t *testing.T) {
		b := readTestdata(t, "ptx/vector_add.ptx")["vector_add.ptx"]
		info, err := Inspect(FormatPTX, b, Options{Name: "vector_add.ptx", Arch: "compute_80", PTXAS: ptxas})
		if err != nil {
			t.Fatal(err)
		}
		if info.Assembled != nil {
			t.Error("Assembled set for a virtual architecture")
		}
	})
	t.Run("undeclared register", func(t *testing.T) {
		const name = "undeclared_register.ptx"
		b := readTestdata(t, "ptx/assemble_errors/"+name)[name]
		if _, err := Inspect(FormatPTX, b, Options{Name: name}); err != nil {
			t.Fatalf("the structure is sound, yet: %v", err)
		}
		_, err := Inspect(FormatPTX, b, Options{Name: name, Arch: "sm_80", PTXAS: ptxas})
		checkError(t, err, name, 13, ErrAssemble, "ptxas: ")
		if !strings.Contains(err.Error(), "Unknown symbol '%rd9'") {
			t.Errorf("error does not name the register:\n%v", err)
		}
		for _, e := range errorsOf(err) {
			if e.Line != 13 {
				t.Errorf("error at line %d, want 13: %v", e.Line, e)
			}
		}
	})
}

// errorsOf returns the *Errors in err.
func errorsOf(err error) []*Error {
	var list ErrorList
	if errors.As(err, &list) {
		return list
	}
	var e *Error
	if errors.As(err, &e) {
		return []*Error{e}
	}
	return nil
}

func FuzzPTX(f *testing.F) {
	addSeeds(f, "ptx/*.ptx", "ptx/invalid/*.ptx", "ptx/assemble_errors/*.ptx")
	f.Fuzz(func(t *testing.T, b []byte) {
		fuzzInspect(t, FormatPTX, b)
	})
}
