// Package ptxas finds NVIDIA's PTX assembler, ptxas, and runs it on PTX
// text, turning its messages into diagnostics with PTX line numbers.
//
// It is the PTX check of code.Inspect and the PTX-to-CUBIN step of the CUDA
// backend. It never leaves files behind: each run works in a fresh
// temporary directory that is removed before Assemble returns, whether
// ptxas succeeds, fails, or is stopped by its context.
package ptxas

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// EnvVar is the environment variable that Find reads for the path of
// ptxas when no path is configured.
const EnvVar = "HOTKERNEL_PTXAS"

// Sentinel errors. Every error this package returns wraps at most one of
// them, so callers can map them with errors.Is.
var (
	// ErrNotFound: ptxas is not at the configured path, not at the path in
	// EnvVar, not on PATH, or cannot be executed.
	ErrNotFound = errors.New("ptxas not found")
	// ErrInvalidArch: the architecture name is not of the form sm_XX,
	// sm_XXa, sm_XXf, compute_XX, compute_XXa or compute_XXf.
	ErrInvalidArch = errors.New("invalid CUDA architecture")
	// ErrUnsupportedArch: the name is well formed but this ptxas does not
	// know the architecture (it is too new for the installed CUDA).
	ErrUnsupportedArch = errors.New("architecture not supported by ptxas")
	// ErrFailed: ptxas ran and rejected the PTX, or produced no output.
	ErrFailed = errors.New("ptxas failed")
)

// Find returns the path of the ptxas binary to run. It tries, in order,
// configured (when not empty), the environment variable HOTKERNEL_PTXAS
// (when set and not empty), and "ptxas" on PATH. The first of these that
// is given decides: a configured path that does not name an executable
// file is an error even when ptxas is on PATH, so that a mistyped setting
// is reported rather than silently replaced. A value without a path
// separator is looked up on PATH. Every failure wraps ErrNotFound and says
// which source was used.
func Find(configured string) (string, error) {
	if configured != "" {
		p, err := exec.LookPath(configured)
		if err != nil {
			return "", fmt.Errorf("%w: configured path %q: %v", ErrNotFound, configured, cause(err))
		}
		return absolute(p), nil
	}
	if env := os.Getenv(EnvVar); env != "" {
		p, err := exec.LookPath(env)
		if err != nil {
			return "", fmt.Errorf("%w: %s=%q: %v", ErrNotFound, EnvVar, env, cause(err))
		}
		return absolute(p), nil
	}
	p, err := exec.LookPath("ptxas")
	if err != nil {
		return "", fmt.Errorf("%w on PATH (set %s to its path)", ErrNotFound, EnvVar)
	}
	return absolute(p), nil
}

// absolute makes a relative path absolute, so that it still names the
// same file when ptxas runs in another directory. It returns p unchanged
// when the working directory is unknown.
func absolute(p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// cause strips the "exec: NAME:" wrapping of a LookPath error.
func cause(err error) error {
	var e *exec.Error
	if errors.As(err, &e) {
		return e.Err
	}
	return err
}

// Arch is a parsed CUDA architecture name.
type Arch struct {
	// Virtual is true for compute_XX (a PTX virtual architecture), false
	// for sm_XX (a real GPU).
	Virtual bool
	// Number is the compute capability times ten: 80 for sm_80, 100 for
	// sm_100.
	Number int
	// Suffix is "", "a" (architecture-specific features, sm_90a) or "f"
	// (family-specific features, sm_100f).
	Suffix string
}

// String returns the name Arch was parsed from.
func (a Arch) String() string {
	p := "sm_"
	if a.Virtual {
		p = "compute_"
	}
	return p + strconv.Itoa(a.Number) + a.Suffix
}

// ParseArch parses an architecture name: "sm_" or "compute_", a compute
// capability of two or three digits without a leading zero (80, 90, 100),
// and an optional "a" or "f" suffix. It checks the form only; whether a
// given ptxas knows the architecture is found out by running it. Any other
// string, including one with spaces or a different case, is an error that
// wraps ErrInvalidArch.
func ParseArch(s string) (Arch, error) {
	var a Arch
	rest, ok := strings.CutPrefix(s, "sm_")
	if !ok {
		rest, ok = strings.CutPrefix(s, "compute_")
		a.Virtual = true
	}
	if ok {
		if n := len(rest); n > 0 && (rest[n-1] == 'a' || rest[n-1] == 'f') {
			a.Suffix, rest = rest[n-1:], rest[:n-1]
		}
		ok = (len(rest) == 2 || len(rest) == 3) && rest[0] != '0'
		for i := 0; ok && i < len(rest); i++ {
			ok = rest[i] >= '0' && rest[i] <= '9'
		}
	}
	if !ok {
		return Arch{}, fmt.Errorf("%w %q: want sm_XX, sm_XXa or compute_XX, such as sm_80", ErrInvalidArch, s)
	}
	a.Number, _ = strconv.Atoi(rest)
	return a, nil
}

// Diagnostic is one message of ptxas.
type Diagnostic struct {
	// Line is the 1-based line of the PTX input the message is about, or 0
	// when ptxas gave none.
	Line int
	// Severity is "error", "fatal", "warning" or "info" as ptxas wrote it,
	// in lower case; "" for an output line that is not in ptxas's format.
	Severity string
	// Message is the text after the severity, with the temporary input
	// path replaced by the file name given to Assemble.
	Message string
}

// String formats d as "line 12: error: Unknown symbol 'foo'".
func (d Diagnostic) String() string {
	var b strings.Builder
	if d.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", d.Line)
	}
	if d.Severity != "" {
		b.WriteString(d.Severity + ": ")
	}
	b.WriteString(d.Message)
	return b.String()
}

// IsError reports whether d is an error or a fatal error.
func (d Diagnostic) IsError() bool { return d.Severity == "error" || d.Severity == "fatal" }

// AbortedMessage is the closing line ptxas adds after it has reported
// errors ("ptxas fatal : Ptx assembly aborted due to errors"). It says
// nothing of its own; callers listing errors may leave it out.
const AbortedMessage = "Ptx assembly aborted due to errors"

// maxOutput bounds how much of ptxas's output is kept. A PTX file with
// very many errors cannot make Assemble hold more than this.
const maxOutput = 1 << 20

// waitDelay is how long Assemble waits for ptxas's output to close once
// its context has killed it.
const waitDelay = 2 * time.Second

// Assemble runs the ptxas at ptxasPath on ptx for the architecture arch
// and returns the CUBIN it produces, with every diagnostic it printed
// (warnings too, on success).
//
// arch must be a name ParseArch accepts; otherwise Assemble returns an
// error wrapping ErrInvalidArch without running anything. For a real
// architecture (sm_80) the result is the CUBIN. For a virtual one
// (compute_80) ptxas only parses and checks the PTX, and on success the
// CUBIN is nil.
//
// fileName is the name of the PTX as the caller knows it. Its base name,
// reduced to safe characters, names the temporary input file, and it
// replaces the temporary path inside messages. It may be empty.
//
// ptxasPath is normally what Find returned; a bare name is looked up on
// PATH, and a relative path is taken from the current directory.
//
// Assemble writes the PTX into a new temporary directory, runs
// "ptxas -arch=ARCH -o DIR/out.cubin DIR/NAME.ptx" there, and removes the
// directory before returning, in every case. The run stops when ctx is
// done; the error then wraps ctx.Err().
//
// The error wraps ErrNotFound when ptxasPath is empty or cannot be run,
// ErrUnsupportedArch when ptxas does not know arch, and ErrFailed when
// ptxas rejects the PTX; the diagnostics then hold ptxas's reasons with
// their PTX line numbers. ctx must not be nil. Assemble may be called from
// several goroutines at once: each call has its own directory.
func Assemble(ctx context.Context, ptxasPath string, ptx []byte, arch string, fileName string) (cubin []byte, diags []Diagnostic, err error) {
	a, err := ParseArch(arch)
	if err != nil {
		return nil, nil, err
	}
	if ptxasPath == "" {
		return nil, nil, fmt.Errorf("%w: no ptxas path given", ErrNotFound)
	}
	if strings.ContainsRune(ptxasPath, filepath.Separator) || strings.ContainsRune(ptxasPath, '/') {
		// ptxas runs in the temporary directory; a relative path must
		// keep pointing where the caller meant.
		ptxasPath = absolute(ptxasPath)
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, fmt.Errorf("ptxas: %w", err)
	}
	dir, err := os.MkdirTemp("", "hotkernel-ptxas-")
	if err != nil {
		return nil, nil, fmt.Errorf("ptxas: temporary directory: %w", err)
	}
	defer os.RemoveAll(dir)

	in := filepath.Join(dir, inputName(fileName))
	out := filepath.Join(dir, "out.cubin")
	if err := os.WriteFile(in, ptx, 0o600); err != nil {
		return nil, nil, fmt.Errorf("ptxas: writing input: %w", err)
	}

	output := &limitedBuffer{max: maxOutput}
	cmd := exec.CommandContext(ctx, ptxasPath, "-arch="+arch, "-o", out, in)
	cmd.Dir = dir
	cmd.Stdout = output
	cmd.Stderr = output
	cmd.WaitDelay = waitDelay
	runErr := cmd.Run()

	shown := fileName
	if shown == "" {
		shown = filepath.Base(in)
	}
	diags = parseDiagnostics(output.String(), in, shown)

	if runErr != nil {
		if err := ctx.Err(); err != nil {
			return nil, diags, fmt.Errorf("ptxas: %w", err)
		}
		var exitErr *exec.ExitError
		if !errors.As(runErr, &exitErr) {
			if errors.Is(runErr, fs.ErrNotExist) || errors.Is(runErr, fs.ErrPermission) || errors.Is(runErr, exec.ErrNotFound) {
				return nil, diags, fmt.Errorf("%w: %v", ErrNotFound, runErr)
			}
			return nil, diags, fmt.Errorf("ptxas: %w", runErr)
		}
		for _, d := range diags {
			if d.IsError() && strings.Contains(d.Message, "is not defined for option 'gpu-name'") {
				return nil, diags, fmt.Errorf("%w: %s (ptxas at %s)", ErrUnsupportedArch, arch, ptxasPath)
			}
		}
		return nil, diags, fmt.Errorf("%w for %s: %s", ErrFailed, arch, summary(diags, runErr))
	}
	if a.Virtual {
		return nil, diags, nil
	}
	cubin, err = os.ReadFile(out)
	if err != nil || len(cubin) == 0 {
		return nil, diags, fmt.Errorf("%w for %s: ptxas exited successfully but wrote no CUBIN", ErrFailed, arch)
	}
	return cubin, diags, nil
}

// summary names the first error among diags, or the exit status.
func summary(diags []Diagnostic, runErr error) string {
	var first *Diagnostic
	for i := range diags {
		d := &diags[i]
		if d.IsError() && d.Message != AbortedMessage {
			first = d
			break
		}
	}
	if first == nil {
		return runErr.Error()
	}
	return first.String()
}

// inputName returns the name of the temporary PTX file for fileName: its
// base name with characters outside [A-Za-z0-9._-] replaced by '_', or
// "in.ptx" when nothing usable is left.
func inputName(fileName string) string {
	base := filepath.Base(fileName)
	b := []byte(base)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			b[i] = '_'
		}
	}
	name := string(b)
	if len(name) > 100 {
		name = name[len(name)-100:]
	}
	if name == "" || name[0] == '.' || name[0] == '-' || name == "out.cubin" {
		return "in.ptx"
	}
	return name
}

// ParseDiagnostics splits text in ptxas's diagnostic format into
// diagnostics: ptxas's own output, or the error and info logs of the CUDA
// driver's PTX JIT compiler, which writes "ptxas application ptx input,
// line 12; error   : ...". Lines in no known format are kept whole with an
// empty Severity; blank lines are dropped.
func ParseDiagnostics(output string) []Diagnostic { return parseDiagnostics(output, "", "") }

// parseDiagnostics splits ptxas output into diagnostics. It understands
//
//	ptxas PATH, line N; SEVERITY : MESSAGE
//	ptxas SEVERITY : MESSAGE
//
// and keeps any other non-blank line whole, with an empty severity. inPath
// is replaced by shown in messages.
func parseDiagnostics(output, inPath, shown string) []Diagnostic {
	var diags []Diagnostic
	for line := range strings.Lines(output) {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		d := parseDiagnostic(line, inPath)
		if inPath != "" {
			d.Message = strings.ReplaceAll(d.Message, inPath, shown)
		}
		diags = append(diags, d)
	}
	return diags
}

func parseDiagnostic(line, inPath string) Diagnostic {
	rest, ok := strings.CutPrefix(line, "ptxas ")
	if !ok {
		return Diagnostic{Message: line}
	}
	var d Diagnostic
	// "PATH, line N; " comes first when there is a line. The input path is
	// known, so a ", line " inside it cannot mislead; other paths (an
	// included file) are split at their first ", line ".
	i := -1
	if inPath != "" && strings.HasPrefix(rest, inPath+", line ") {
		i = len(inPath)
	} else {
		i = strings.Index(rest, ", line ")
	}
	if i >= 0 {
		after := rest[i+len(", line "):]
		if j := strings.Index(after, "; "); j > 0 {
			if n, err := strconv.Atoi(after[:j]); err == nil && n > 0 {
				d.Line = n
				rest = after[j+2:]
			}
		}
	}
	sev, msg, ok := strings.Cut(rest, ":")
	sev = strings.ToLower(strings.TrimSpace(sev))
	switch sev {
	case "error", "fatal", "warning", "info":
	default:
		ok = false
	}
	if !ok {
		return Diagnostic{Line: d.Line, Message: line}
	}
	d.Severity = sev
	d.Message = strings.TrimSpace(msg)
	return d
}

// limitedBuffer keeps the first max bytes written to it and drops the
// rest, still reporting every write as complete so that the writer is
// never stopped by a full pipe.
type limitedBuffer struct {
	buf bytes.Buffer
	max int
}

func (w *limitedBuffer) Write(p []byte) (int, error) {
	if room := w.max - w.buf.Len(); room > 0 {
		w.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (w *limitedBuffer) String() string { return w.buf.String() }
