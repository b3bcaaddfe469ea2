package code

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel causes carried by *Error; test for them with errors.Is.
var (
	// ErrEmptyCode: the artifact has no bytes.
	ErrEmptyCode = errors.New("empty code")
	// ErrEmptyEntry: the Source names no entry point.
	ErrEmptyEntry = errors.New("empty entry point")
	// ErrNoEntries: the artifact defines no entry point at all.
	ErrNoEntries = errors.New("no entry points")
	// ErrEntryNotFound: the requested entry point is not defined, or is not
	// a compute entry point.
	ErrEntryNotFound = errors.New("entry not found")
	// ErrMalformed: the artifact breaks the structure of its format.
	ErrMalformed = errors.New("malformed artifact")
	// ErrUnknownFormat: the format is FormatUnknown or not one hotkernel knows.
	ErrUnknownFormat = errors.New("unknown format")
	// ErrArch: the artifact does not fit the requested architecture, or the
	// architecture name is not valid.
	ErrArch = errors.New("architecture mismatch")
	// ErrToolNotFound: an external tool the check needs (ptxas) is not
	// installed or not at the configured path.
	ErrToolNotFound = errors.New("tool not found")
	// ErrAssemble: the external assembler rejected the code.
	ErrAssemble = errors.New("assembly failed")
)

// Error is a validation failure with its place: the file, the format, and
// a 1-based line (text formats) or a byte offset (binary formats).
//
// Its message reads "FILE:LINE: REASON", "FILE: byte N: REASON" or
// "FILE: REASON" when there is no place. When File is empty the format's
// name stands in for it. Kind is the sentinel cause (ErrMalformed,
// ErrEntryNotFound, ...), so errors.Is(err, code.ErrEntryNotFound) works
// on any error that wraps an *Error.
type Error struct {
	File   string // file name used in the message; may be empty
	Format Format // format being validated
	Line   int    // 1-based line; 0 when the place is not a line
	Offset int64  // byte offset; meaningful only when HasOffset is true
	// HasOffset reports whether Offset holds a place. It lets offset 0, the
	// first byte, be told apart from "no offset".
	HasOffset bool
	Reason    string // what is wrong, without the place
	Kind      error  // sentinel cause for errors.Is; may be nil
}

// Error implements the error interface.
func (e *Error) Error() string {
	name := e.File
	if name == "" {
		name = e.Format.String()
	}
	switch {
	case e.Line > 0:
		return fmt.Sprintf("%s:%d: %s", name, e.Line, e.Reason)
	case e.HasOffset:
		return fmt.Sprintf("%s: byte %d: %s", name, e.Offset, e.Reason)
	}
	return name + ": " + e.Reason
}

// Unwrap returns the sentinel cause.
func (e *Error) Unwrap() error { return e.Kind }

// ErrorList is several validation failures of one artifact, in the order
// they were found (ptxas, for example, reports every error in a file).
// errors.As finds the first *Error in it; errors.Is tests each.
type ErrorList []*Error

// Error joins the messages of the list, one per line.
func (l ErrorList) Error() string {
	s := make([]string, len(l))
	for i, e := range l {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// Unwrap returns the errors of the list for errors.Is and errors.As.
func (l ErrorList) Unwrap() []error {
	errs := make([]error, len(l))
	for i, e := range l {
		errs[i] = e
	}
	return errs
}

// lineErr returns an *Error at a line of a text artifact.
func lineErr(name string, f Format, line int, kind error, format string, args ...any) *Error {
	return &Error{File: name, Format: f, Line: line, Reason: fmt.Sprintf(format, args...), Kind: kind}
}

// offsetErr returns an *Error at a byte offset of a binary artifact.
func offsetErr(name string, f Format, off int64, kind error, format string, args ...any) *Error {
	return &Error{File: name, Format: f, Offset: off, HasOffset: true, Reason: fmt.Sprintf(format, args...), Kind: kind}
}

// fileErr returns an *Error without a place inside the artifact.
func fileErr(name string, f Format, kind error, format string, args ...any) *Error {
	return &Error{File: name, Format: f, Reason: fmt.Sprintf(format, args...), Kind: kind}
}
