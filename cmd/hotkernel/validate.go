package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/hotkernel/hotkernel/code"
)

const validateSynopsis = "validate [--format F] [--entry NAME] [--arch sm_XX] [--ptxas PATH] FILE..."

// runValidate implements "hotkernel validate". It prints one line per file,
// "FILE: ok FORMAT entries=a,b [arch=sm_XX] sha256=HEX" or
// "FILE: invalid: REASON", and exits 0 when every file is valid, 1 when any
// is invalid and 2 when a file cannot be checked at all (unreadable, format
// unknown, ptxas missing for --arch) or the flags are wrong.
func runValidate(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("validate", validateSynopsis, stderr)
	formatName := fs.String("format", "", "artifact format (ptx, cubin, spirv, wgsl, msl, metallib, wasm); default: from the extension, else the content")
	entry := fs.String("entry", "", "entry point that must exist; without it a file must define at least one")
	arch := fs.String("arch", "", "CUDA architecture: assemble PTX with ptxas for it, check that a CUBIN runs on it")
	ptxas := fs.String("ptxas", "", "path of ptxas (default: $HOTKERNEL_PTXAS, then PATH)")
	files, err := parseInterspersed(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if len(files) == 0 {
		fmt.Fprintln(stderr, "hotkernel validate: no files given")
		fs.Usage()
		return exitUsage
	}
	forced := code.FormatUnknown
	if *formatName != "" {
		if forced, err = code.ParseFormat(*formatName); err != nil {
			fmt.Fprintf(stderr, "hotkernel validate: --format: %v\n", err)
			return exitUsage
		}
	}
	exit := exitOK
	worse := func(c int) {
		if c > exit {
			exit = c
		}
	}
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			fmt.Fprintf(stderr, "%s: error: %v\n", file, unwrapPath(err))
			worse(exitUsage)
			continue
		}
		f := forced
		if f == code.FormatUnknown {
			if f = code.DetectFormat(file, b); f == code.FormatUnknown {
				fmt.Fprintf(stderr, "%s: error: cannot tell the format from the extension or the content; use --format\n", file)
				worse(exitUsage)
				continue
			}
		}
		opts := code.Options{Name: file, Entry: *entry, Arch: *arch, PTXAS: *ptxas}
		info, err := code.Inspect(f, b, opts)
		switch {
		case errors.Is(err, code.ErrToolNotFound):
			fmt.Fprintf(stderr, "%s: error: %s\n", file, oneLine(err))
			worse(exitUsage)
		case err != nil:
			fmt.Fprintf(stdout, "%s: invalid: %s\n", file, oneLine(err))
			worse(exitFailure)
		default:
			src := code.New(f, b, *entry)
			line := fmt.Sprintf("%s: ok %s entries=%s", file, f, strings.Join(info.EntryNames(), ","))
			if info.Arch != "" {
				line += " arch=" + info.Arch
			}
			fmt.Fprintf(stdout, "%s sha256=%s\n", line, src.SHA256Hex())
		}
	}
	return exit
}

// oneLine renders err on a single line: the diagnostics of an ErrorList are
// joined with "; ".
func oneLine(err error) string {
	return strings.ReplaceAll(err.Error(), "\n", "; ")
}

// unwrapPath drops the operation and path of an *os.PathError, which the
// caller already prints, keeping the reason.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
