package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hotkernel/hotkernel/code"
)

// runCLI runs the command line in-process and returns exit code, stdout and
// stderr.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const validPTX = `.version 7.8
.target sm_80
.address_size 64

.visible .entry add_one(.param .u64 p)
{
	ret;
}

.visible .entry scale(.param .u64 p, .param .f32 k)
{
	ret;
}
`

func TestValidateVerdicts(t *testing.T) {
	dir := t.TempDir()
	good := writeFile(t, dir, "kernel.ptx", validPTX)
	bad := writeFile(t, dir, "broken.ptx", ".target sm_80\n.visible .entry k()\n{\n\tret;\n}\n")
	wgsl := writeFile(t, dir, "shader.wgsl", "@vertex fn main() -> @builtin(position) vec4<f32> { return vec4<f32>(); }\n")

	code, out, _ := runCLI(t, "validate", good)
	if code != exitOK {
		t.Fatalf("valid file: exit %d, output %q", code, out)
	}
	want := good + ": ok ptx entries=add_one,scale arch=sm_80 sha256="
	if !strings.HasPrefix(out, want) || len(strings.TrimSpace(strings.TrimPrefix(out, want))) != 64 {
		t.Errorf("valid file output = %q, want prefix %q and a 64-digit digest", out, want)
	}

	code, out, _ = runCLI(t, "validate", "--entry", "add", good)
	if code != exitFailure {
		t.Fatalf("missing entry: exit %d, want %d", code, exitFailure)
	}
	if want := `entry "add" not found; entries: add_one, scale`; !strings.Contains(out, want) || !strings.HasPrefix(out, good+": invalid: "+good+":5:") {
		t.Errorf("missing entry output = %q, want %q at line 5", out, want)
	}

	code, out, _ = runCLI(t, "validate", good, bad)
	if code != exitFailure || !strings.Contains(out, good+": ok") || !strings.Contains(out, bad+": invalid: "+bad+":1:") {
		t.Errorf("mixed files: exit %d output %q", code, out)
	}

	code, out, _ = runCLI(t, "validate", wgsl, "--entry", "main")
	if code != exitFailure || !strings.Contains(out, `entry "main" is a vertex entry point`) {
		t.Errorf("vertex entry: exit %d output %q", code, out)
	}

	code, out, _ = runCLI(t, "validate", wgsl)
	if code != exitFailure || !strings.Contains(out, "no compute entry point") {
		t.Errorf("no entry at all: exit %d output %q", code, out)
	}
}

func TestValidateUsageErrors(t *testing.T) {
	dir := t.TempDir()
	good := writeFile(t, dir, "kernel.ptx", validPTX)
	odd := writeFile(t, dir, "notes.txt", "just some words\n")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no files", []string{"validate"}, "no files given"},
		{"unknown format", []string{"validate", "--format", "glsl", good}, `unknown format "glsl"`},
		{"unreadable", []string{"validate", filepath.Join(dir, "missing.ptx")}, "missing.ptx: error: no such file or directory"},
		{"undetectable", []string{"validate", odd}, "notes.txt: error: cannot tell the format"},
		{"bad flag", []string{"validate", "--nope", good}, "flag provided but not defined"},
		{"unknown command", []string{"frobnicate"}, `unknown command "frobnicate"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runCLI(t, tc.args...)
			if code != exitUsage {
				t.Errorf("exit %d, want %d", code, exitUsage)
			}
			if !strings.Contains(stderr, tc.want) {
				t.Errorf("stderr %q does not contain %q", stderr, tc.want)
			}
		})
	}
}

func TestValidateForcedFormat(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, "kernel.txt", validPTX)
	code, out, _ := runCLI(t, "validate", "--format", "ptx", p)
	if code != exitOK || !strings.Contains(out, ": ok ptx") {
		t.Errorf("exit %d output %q", code, out)
	}
	// The content alone tells PTX too.
	code, out, _ = runCLI(t, "validate", p)
	if code != exitOK || !strings.Contains(out, ": ok ptx") {
		t.Errorf("detected by content: exit %d output %q", code, out)
	}
}

func TestValidateTestdata(t *testing.T) {
	// Every committed artifact under code/testdata gets the verdict its
	// place promises: files in an invalid/ directory, or named invalid*,
	// are invalid, and so are the graphics-only SPIR-V modules (no compute
	// entry point); every other artifact is valid.
	noCompute := map[string]bool{"tri.vert.spv": true, "tri.frag.spv": true}
	root := filepath.Join("..", "..", "code", "testdata")
	valid, _ := filepath.Glob(filepath.Join(root, "*", "*"))
	invalid, _ := filepath.Glob(filepath.Join(root, "*", "invalid", "*"))
	seen := map[int]int{}
	check := func(f string, want int) {
		if _, ok := code.FormatFromExtension(f); !ok {
			return // a source or a script
		}
		seen[want]++
		exit, out, stderr := runCLI(t, "validate", f)
		if exit != want {
			t.Errorf("%s: exit %d, want %d\n%s%s", f, exit, want, out, stderr)
		}
	}
	for _, f := range valid {
		base := filepath.Base(f)
		if strings.HasPrefix(base, "invalid") || noCompute[base] {
			check(f, exitFailure)
		} else {
			check(f, exitOK)
		}
	}
	for _, f := range invalid {
		check(f, exitFailure)
	}
	if seen[exitOK] < 10 || seen[exitFailure] < 10 {
		t.Fatalf("too few artifacts under %s: %d valid, %d invalid", root, seen[exitOK], seen[exitFailure])
	}
}
