package ptxas

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseArch(t *testing.T) {
	good := map[string]Arch{
		"sm_52":       {Number: 52},
		"sm_80":       {Number: 80},
		"sm_90a":      {Number: 90, Suffix: "a"},
		"sm_100":      {Number: 100},
		"sm_100f":     {Number: 100, Suffix: "f"},
		"compute_75":  {Virtual: true, Number: 75},
		"compute_90a": {Virtual: true, Number: 90, Suffix: "a"},
	}
	for s, want := range good {
		a, err := ParseArch(s)
		if err != nil || a != want {
			t.Errorf("ParseArch(%q) = %+v, %v; want %+v", s, a, err, want)
		}
		if a.String() != s {
			t.Errorf("ParseArch(%q).String() = %q", s, a.String())
		}
	}
	for _, s := range []string{"", "sm_", "sm_8", "sm_08", "sm_1000", "sm80", "SM_80", "sm_80b", "sm_80aa", "compute_", "lto_80", " sm_80", "sm_8a", "sm_x0", "sm_a"} {
		if a, err := ParseArch(s); !errors.Is(err, ErrInvalidArch) {
			t.Errorf("ParseArch(%q) = %+v, %v; want ErrInvalidArch", s, a, err)
		}
	}
}

func TestParseDiagnostics(t *testing.T) {
	const in = "/tmp/hotkernel-ptxas-1, line 2/k.ptx"
	out := "ptxas " + in + ", line 12; error   : Unknown symbol 'foo'\n" +
		"ptxas " + in + ", line 3; warning : Unused variable\r\n" +
		"\n" +
		"ptxas fatal   : Input file '" + in + "' could not be opened\n" +
		"ptxas warning :  64 Bit host architecture\n" +
		"ptxas info    : 0 bytes gmem\n" +
		"ptxas /other.ptx, line 7; error   : In another file\n" +
		"something else entirely\n" +
		"ptxas oddity without colon\n"
	got := parseDiagnostics(out, in, "k.ptx")
	want := []Diagnostic{
		{Line: 12, Severity: "error", Message: "Unknown symbol 'foo'"},
		{Line: 3, Severity: "warning", Message: "Unused variable"},
		{Severity: "fatal", Message: "Input file 'k.ptx' could not be opened"},
		{Severity: "warning", Message: "64 Bit host architecture"},
		{Severity: "info", Message: "0 bytes gmem"},
		{Line: 7, Severity: "error", Message: "In another file"},
		{Message: "something else entirely"},
		{Message: "ptxas oddity without colon"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("got\n%+v\nwant\n%+v", got, want)
	}
	if s := want[0].String(); s != "line 12: error: Unknown symbol 'foo'" {
		t.Errorf("String() = %q", s)
	}
	if !want[2].IsError() || want[1].IsError() {
		t.Error("IsError is wrong")
	}
}

func TestInputName(t *testing.T) {
	for in, want := range map[string]string{
		"":                "in.ptx",
		"kernel.ptx":      "kernel.ptx",
		"/a/b/kernel.ptx": "kernel.ptx",
		"my kernel.ptx":   "my_kernel.ptx",
		"-arch.ptx":       "in.ptx",
		".hidden":         "in.ptx",
		"out.cubin":       "in.ptx",
		"größe.ptx":       "gr____e.ptx",
	} {
		if got := inputName(in); got != want {
			t.Errorf("inputName(%q) = %q, want %q", in, got, want)
		}
	}
}

// script writes an executable shell script into dir and returns its path.
func script(t *testing.T, dir, name, body string) string {
	t.Helper()
	if runtime.GOOS == "windows" {
		t.Skip("shell scripts stand in for ptxas")
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestFind(t *testing.T) {
	dir := t.TempDir()
	fake := script(t, dir, "ptxas", "exit 0")
	other := script(t, t.TempDir(), "ptxas-other", "exit 0")
	plain := filepath.Join(dir, "not-executable")
	if err := os.WriteFile(plain, nil, 0o644); err != nil {
		t.Fatal(err)
	}

	t.Setenv("PATH", dir)
	t.Setenv(EnvVar, "")
	if p, err := Find(""); err != nil || p != fake {
		t.Errorf("from PATH: %q, %v", p, err)
	}

	t.Setenv(EnvVar, other)
	if p, err := Find(""); err != nil || p != other {
		t.Errorf("from %s: %q, %v", EnvVar, p, err)
	}
	if p, err := Find(fake); err != nil || p != fake {
		t.Errorf("configured: %q, %v", p, err)
	}

	// A configured path that is wrong is an error, not a reason to fall
	// back to the environment or PATH.
	for _, bad := range []string{filepath.Join(dir, "missing"), plain, dir} {
		_, err := Find(bad)
		if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), bad) {
			t.Errorf("Find(%q) = %v; want ErrNotFound naming the path", bad, err)
		}
	}
	t.Setenv(EnvVar, filepath.Join(dir, "missing"))
	if _, err := Find(""); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), EnvVar) {
		t.Errorf("bad %s: %v", EnvVar, err)
	}

	t.Setenv(EnvVar, "")
	t.Setenv("PATH", t.TempDir())
	if _, err := Find(""); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), EnvVar) {
		t.Errorf("nothing on PATH: %v", err)
	}
}

// isolateTemp points the temporary directory at a fresh one and returns a
// function that fails the test if anything was left in it.
func isolateTemp(t *testing.T) func() {
	t.Helper()
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	return func() {
		t.Helper()
		left, _ := os.ReadDir(tmp)
		if len(left) > 0 {
			t.Errorf("Assemble left %d entries in the temporary directory, such as %s", len(left), left[0].Name())
		}
	}
}

func TestAssembleFake(t *testing.T) {
	ctx := context.Background()
	ptx := []byte(".version 7.8\n.target sm_80\n")

	t.Run("success", func(t *testing.T) {
		check := isolateTemp(t)
		defer check()
		record := filepath.Join(t.TempDir(), "args")
		p := script(t, t.TempDir(), "ptxas", `echo "$@" > `+record+`
cmp -s "$4" /dev/null && exit 9
printf 'CUBIN' > "$3"
echo "ptxas $4, line 1; warning : just so" >&2`)
		cubin, diags, err := Assemble(ctx, p, ptx, "sm_86", "dir/kernel.ptx")
		if err != nil {
			t.Fatal(err)
		}
		if string(cubin) != "CUBIN" {
			t.Errorf("cubin %q", cubin)
		}
		if len(diags) != 1 || diags[0] != (Diagnostic{Line: 1, Severity: "warning", Message: "just so"}) {
			t.Errorf("diags %+v", diags)
		}
		args, _ := os.ReadFile(record)
		f := strings.Fields(string(args))
		if len(f) != 4 || f[0] != "-arch=sm_86" || f[1] != "-o" || filepath.Base(f[2]) != "out.cubin" || filepath.Base(f[3]) != "kernel.ptx" {
			t.Errorf("ptxas ran with %q", args)
		}
	})

	t.Run("rejected", func(t *testing.T) {
		check := isolateTemp(t)
		defer check()
		p := script(t, t.TempDir(), "ptxas", `echo "ptxas $4, line 3; error   : Unknown symbol '%r9'" >&2
echo "ptxas fatal   : Ptx assembly aborted due to errors" >&2
exit 255`)
		cubin, diags, err := Assemble(ctx, p, ptx, "sm_80", "k.ptx")
		if !errors.Is(err, ErrFailed) || cubin != nil {
			t.Fatalf("cubin %q, err %v; want ErrFailed", cubin, err)
		}
		if !strings.Contains(err.Error(), "line 3: error: Unknown symbol '%r9'") {
			t.Errorf("error does not name the first diagnostic: %v", err)
		}
		if len(diags) != 2 || diags[0].Line != 3 || diags[1].Message != AbortedMessage {
			t.Errorf("diags %+v", diags)
		}
	})

	t.Run("unsupported arch", func(t *testing.T) {
		defer isolateTemp(t)()
		p := script(t, t.TempDir(), "ptxas", `echo "ptxas fatal   : Value 'sm_120' is not defined for option 'gpu-name'" >&2; exit 255`)
		_, _, err := Assemble(ctx, p, ptx, "sm_120", "k.ptx")
		if !errors.Is(err, ErrUnsupportedArch) || errors.Is(err, ErrFailed) {
			t.Fatalf("err %v; want ErrUnsupportedArch", err)
		}
	})

	t.Run("virtual arch", func(t *testing.T) {
		defer isolateTemp(t)()
		p := script(t, t.TempDir(), "ptxas", `exit 0`)
		cubin, _, err := Assemble(ctx, p, ptx, "compute_80", "k.ptx")
		if err != nil || cubin != nil {
			t.Fatalf("cubin %q, err %v; want nil, nil", cubin, err)
		}
	})

	t.Run("no output", func(t *testing.T) {
		defer isolateTemp(t)()
		p := script(t, t.TempDir(), "ptxas", `exit 0`)
		_, _, err := Assemble(ctx, p, ptx, "sm_80", "k.ptx")
		if !errors.Is(err, ErrFailed) || !strings.Contains(err.Error(), "wrote no CUBIN") {
			t.Fatalf("err %v", err)
		}
	})

	t.Run("invalid arch runs nothing", func(t *testing.T) {
		marker := filepath.Join(t.TempDir(), "ran")
		p := script(t, t.TempDir(), "ptxas", "touch "+marker)
		for _, arch := range []string{"", "sm80", "sm_80; rm -rf /", "-o"} {
			_, _, err := Assemble(ctx, p, ptx, arch, "k.ptx")
			if !errors.Is(err, ErrInvalidArch) {
				t.Errorf("arch %q: %v; want ErrInvalidArch", arch, err)
			}
		}
		if _, err := os.Stat(marker); err == nil {
			t.Error("ptxas ran for an invalid architecture")
		}
	})

	t.Run("relative path", func(t *testing.T) {
		defer isolateTemp(t)()
		dir := t.TempDir()
		script(t, dir, "ptxas", `printf 'CUBIN' > "$3"`)
		t.Chdir(dir)
		p, err := Find("./ptxas")
		if err != nil || !filepath.IsAbs(p) {
			t.Fatalf("Find = %q, %v; want an absolute path", p, err)
		}
		for _, p := range []string{p, "./ptxas"} {
			if cubin, _, err := Assemble(ctx, p, ptx, "sm_80", "k.ptx"); err != nil || string(cubin) != "CUBIN" {
				t.Errorf("path %q: cubin %q, err %v", p, cubin, err)
			}
		}
	})

	t.Run("not found", func(t *testing.T) {
		defer isolateTemp(t)()
		for _, p := range []string{"", filepath.Join(t.TempDir(), "missing")} {
			if _, _, err := Assemble(ctx, p, ptx, "sm_80", "k.ptx"); !errors.Is(err, ErrNotFound) {
				t.Errorf("path %q: %v; want ErrNotFound", p, err)
			}
		}
	})

	t.Run("canceled", func(t *testing.T) {
		defer isolateTemp(t)()
		// The child sleep keeps the output pipe open after the shell is
		// killed; Assemble must still return promptly.
		p := script(t, t.TempDir(), "ptxas", "sleep 5; printf x > \"$3\"")
		c, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, _, err := Assemble(c, p, ptx, "sm_80", "k.ptx")
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err %v; want context.DeadlineExceeded", err)
		}
		if d := time.Since(start); d > 4*time.Second {
			t.Errorf("Assemble took %v after its context ended", d)
		}
		done, cancel2 := context.WithCancel(ctx)
		cancel2()
		if _, _, err := Assemble(done, p, ptx, "sm_80", "k.ptx"); !errors.Is(err, context.Canceled) {
			t.Errorf("canceled before start: %v", err)
		}
	})

	t.Run("output is bounded", func(t *testing.T) {
		defer isolateTemp(t)()
		p := script(t, t.TempDir(), "ptxas", `i=0; while [ $i -lt 40000 ]; do echo "ptxas $4, line $i; error   : a long message to fill the output buffer quickly"; i=$((i+1)); done; exit 255`)
		_, diags, err := Assemble(ctx, p, ptx, "sm_80", "k.ptx")
		if !errors.Is(err, ErrFailed) {
			t.Fatal(err)
		}
		total := 0
		for _, d := range diags {
			total += len(d.Message)
		}
		if total > maxOutput {
			t.Errorf("kept %d bytes of messages", total)
		}
	})
}

// realPTXAS returns the installed ptxas, or skips the test unless
// HOTKERNEL_REQUIRE_TOOLS=1.
func realPTXAS(t *testing.T) string {
	p, err := Find("")
	if err != nil {
		if os.Getenv("HOTKERNEL_REQUIRE_TOOLS") == "1" {
			t.Fatal(err)
		}
		t.Skipf("%v; set %s to run this test", err, EnvVar)
	}
	return p
}

func TestAssembleReal(t *testing.T) {
	p := realPTXAS(t)
	defer isolateTemp(t)()
	good := []byte(`.version 7.0
.target sm_70
.address_size 64
.visible .entry k(.param .u64 k_p)
{
	.reg .b64 %rd<2>;
	ld.param.u64 %rd1, [k_p];
	ret;
}
`)
	cubin, _, err := Assemble(context.Background(), p, good, "sm_80", "k.ptx")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(cubin, []byte("\x7fELF")) {
		t.Errorf("not an ELF file: % x", cubin[:min(16, len(cubin))])
	}

	bad := bytes.Replace(good, []byte("[k_p]"), []byte("[k_q]"), 1)
	_, diags, err := Assemble(context.Background(), p, bad, "sm_80", "k.ptx")
	if !errors.Is(err, ErrFailed) {
		t.Fatalf("err %v; want ErrFailed", err)
	}
	found := false
	for _, d := range diags {
		if d.Line == 7 && d.IsError() && strings.Contains(d.Message, "k_q") {
			found = true
		}
	}
	if !found {
		t.Errorf("no error at line 7 about k_q in %+v", diags)
	}

	if _, _, err := Assemble(context.Background(), p, good, "sm_99", "k.ptx"); !errors.Is(err, ErrUnsupportedArch) {
		t.Errorf("sm_99: %v; want ErrUnsupportedArch", err)
	}
}
