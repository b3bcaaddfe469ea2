package code

import (
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// Entry is one function an artifact defines, with its place in the file.
type Entry struct {
	Name string
	// Kind says what sort of entry it is in the format's own words:
	// "kernel" for PTX, CUBIN, MSL; "compute", "vertex", "fragment" for
	// WGSL; the execution model ("GLCompute", "Kernel", "Vertex", ...) for
	// SPIR-V; "function" for WebAssembly exports.
	Kind      string
	Line      int   // 1-based line in a text artifact, else 0
	Offset    int64 // byte offset in a binary artifact, when HasOffset
	HasOffset bool
}

// Info is what validation learned about an artifact.
type Info struct {
	Format Format
	// Entries are the entry points a compute kernel can start at, in the
	// order the artifact declares them.
	Entries []Entry
	// Others are functions that are entry points of another kind and cannot
	// run as a compute kernel (a WGSL @vertex function, a SPIR-V Fragment
	// entry point). Naming one as the entry is an error that says so.
	Others []Entry
	// Arch is the target architecture the artifact names, when the format
	// has one: "sm_80" for PTX's .target or a CUBIN's ELF flags.
	Arch string
	// Version is the format version, when the format has one: PTX ".version
	// 7.8", SPIR-V "1.5", WebAssembly "1", metallib "1.2".
	Version string
	// Assembled is the CUBIN that ptxas produced, when Options.Arch asked a
	// PTX artifact to be assembled; nil otherwise.
	Assembled []byte
}

// EntryNames returns the names of Entries, in order.
func (in *Info) EntryNames() []string {
	names := make([]string, len(in.Entries))
	for i, e := range in.Entries {
		names[i] = e.Name
	}
	return names
}

// Options tune validation. The zero value checks structure only.
type Options struct {
	// Name is the file name used in error messages. When empty, the format's
	// name stands in for it.
	Name string
	// Entry, when not empty, must be one of the artifact's compute entry
	// points.
	Entry string
	// Arch is a CUDA architecture ("sm_80", "sm_90a", "compute_75"). For
	// PTX it asks for assembly with ptxas for that architecture, and the
	// ptxas errors become the validation errors; for CUBIN the binary's SM
	// architecture must be able to run on it. Other formats ignore it.
	Arch string
	// PTXAS is the path of the ptxas binary. When empty, the environment
	// variable HOTKERNEL_PTXAS is used, then ptxas on PATH.
	PTXAS string
}

// inspector parses one format and reports its entries. It returns an
// *Error or ErrorList on any structural fault. b is never empty.
type inspector func(name string, b []byte, opts Options) (*Info, error)

// inspectorFor returns the parser for f.
func inspectorFor(f Format) inspector {
	switch f {
	case FormatPTX:
		return inspectPTX
	case FormatCUBIN:
		return inspectCUBIN
	case FormatSPIRV:
		return inspectSPIRV
	case FormatWGSL:
		return inspectWGSL
	case FormatMSL:
		return inspectMSL
	case FormatMetallib:
		return inspectMetallib
	case FormatWASM:
		return inspectWASM
	case FormatSource:
		return inspectSource
	}
	return nil
}

// Inspect checks that b is a well-formed artifact of format f, defines at
// least one compute entry point, and — when opts.Entry is set — defines
// that one. It returns what it found. Every failure is an *Error (or an
// ErrorList of them) carrying the file, the place and the reason; Inspect
// never panics, whatever b holds.
func Inspect(f Format, b []byte, opts Options) (*Info, error) {
	parse := inspectorFor(f)
	if parse == nil {
		return nil, fileErr(opts.Name, f, ErrUnknownFormat, "unknown format %s", f)
	}
	if len(b) == 0 {
		return nil, fileErr(opts.Name, f, ErrEmptyCode, "empty code")
	}
	if !f.Binary() && !utf8.Valid(b) {
		off := invalidUTF8Offset(b)
		return nil, offsetErr(opts.Name, f, int64(off), ErrMalformed, "text is not valid UTF-8")
	}
	info, err := parse(opts.Name, b, opts)
	if err != nil {
		return nil, err
	}
	info.Format = f
	if err := checkEntry(opts, info); err != nil {
		return nil, err
	}
	return info, nil
}

// Validate checks s as Inspect does, with s's entry point as the required
// entry. An empty entry point is an error.
func Validate(s *Source, opts Options) (*Info, error) {
	if s.Entry() == "" {
		return nil, fileErr(opts.Name, s.Format(), ErrEmptyEntry, "empty entry point")
	}
	opts.Entry = s.Entry()
	return Inspect(s.Format(), s.Bytes(), opts)
}

// checkEntry applies the entry-point rules common to every format.
func checkEntry(opts Options, info *Info) error {
	where := func(e *Error, at []Entry) *Error {
		if len(at) > 0 {
			e.Line, e.Offset, e.HasOffset = at[0].Line, at[0].Offset, at[0].HasOffset
		}
		return e
	}
	if opts.Entry == "" {
		if len(info.Entries) == 0 {
			e := fileErr(opts.Name, info.Format, ErrNoEntries, "no compute entry point")
			if len(info.Others) > 0 {
				e.Reason += fmt.Sprintf(" (only %s)", describe(info.Others))
			}
			return where(e, info.Others)
		}
		return nil
	}
	for _, e := range info.Entries {
		if e.Name == opts.Entry {
			return nil
		}
	}
	for _, o := range info.Others {
		if o.Name == opts.Entry {
			return where(fileErr(opts.Name, info.Format, ErrEntryNotFound,
				"entry %q is %s %s entry point, not a compute entry point", o.Name, article(o.Kind), o.Kind), []Entry{o})
		}
	}
	list := "none"
	if len(info.Entries) > 0 {
		list = strings.Join(info.EntryNames(), ", ")
	}
	return where(fileErr(opts.Name, info.Format, ErrEntryNotFound,
		"entry %q not found; entries: %s", opts.Entry, list), info.Entries)
}

// article returns "an" before a word that starts with a vowel, else "a".
func article(word string) string {
	if word != "" && strings.ContainsRune("aeiouAEIOU", rune(word[0])) {
		return "an"
	}
	return "a"
}

// describe lists entries as "vertex main, fragment fs".
func describe(es []Entry) string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Kind + " " + e.Name
	}
	slices.Sort(s)
	return strings.Join(s, ", ")
}

// invalidUTF8Offset returns the offset of the first byte that is not part
// of valid UTF-8 in b.
func invalidUTF8Offset(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return len(b)
}
