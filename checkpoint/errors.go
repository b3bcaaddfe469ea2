package checkpoint

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel causes. Decoding failures are *FormatError values that wrap one
// of the first five; store methods wrap ErrNotFound and ErrInvalid. Test
// for them with errors.Is.
var (
	// ErrBadMagic: the bytes do not start with the checkpoint magic number,
	// so they are not a checkpoint at all.
	ErrBadMagic = errors.New("not a checkpoint")
	// ErrVersion: the bytes are a checkpoint in a format version this build
	// does not read.
	ErrVersion = errors.New("unsupported checkpoint format version")
	// ErrTruncated: the bytes end before the checkpoint does.
	ErrTruncated = errors.New("truncated checkpoint")
	// ErrChecksum: a stored CRC32C does not match the bytes it covers; the
	// checkpoint was damaged after it was written.
	ErrChecksum = errors.New("checkpoint checksum mismatch")
	// ErrCorrupt: the bytes break the format although the checksums match
	// (a length that overruns its section, keys out of order, a missing
	// section, invalid UTF-8, bytes after the end), or a stored checkpoint
	// names another kernel or code version than the place where the store
	// found it. Random damage causes it only in the kernel ID length
	// field, which is read before a checksum can be verified; otherwise it
	// means a faulty or hostile writer, or a file moved by hand.
	ErrCorrupt = errors.New("corrupt checkpoint")

	// ErrInvalid: a Checkpoint cannot be encoded because a field breaks
	// the rules Validate checks, or a store method got an invalid argument
	// (an invalid kernel ID, a negative keep).
	ErrInvalid = errors.New("invalid checkpoint")
	// ErrNotFound: the store holds no such checkpoint, or no checkpoint
	// at all for the kernel.
	ErrNotFound = errors.New("checkpoint not found")
)

// FormatError is a decoding failure with its place in the encoded bytes.
//
// Kind is the sentinel cause (ErrBadMagic, ErrVersion, ErrTruncated,
// ErrChecksum or ErrCorrupt), so errors.Is(err, ErrChecksum) works on any
// error that wraps a *FormatError. The message reads:
//
//	not a checkpoint (magic "...")
//	unsupported checkpoint format version N (this build reads 1)
//	checkpoint truncated at byte N: REASON
//	checkpoint checksum mismatch: stored 0x..., computed 0x...
//	corrupt checkpoint at byte N: REASON
type FormatError struct {
	// Offset is the byte offset where the problem was found: 0 for the
	// magic, 8 for the version, the input length for a truncation, the
	// offset of the stored checksum for a checksum mismatch, and the start
	// of the offending field for corruption.
	Offset int64
	// Reason is what is wrong. For ErrBadMagic, ErrVersion and ErrChecksum
	// it is the whole message; for ErrTruncated and ErrCorrupt the message
	// adds the offset in front of it.
	Reason string
	// Kind is the sentinel cause.
	Kind error
}

// Error implements the error interface.
func (e *FormatError) Error() string {
	switch e.Kind {
	case ErrTruncated:
		return fmt.Sprintf("checkpoint truncated at byte %d: %s", e.Offset, e.Reason)
	case ErrCorrupt:
		return fmt.Sprintf("corrupt checkpoint at byte %d: %s", e.Offset, e.Reason)
	}
	return e.Reason
}

// Unwrap returns the sentinel cause.
func (e *FormatError) Unwrap() error { return e.Kind }

func truncatedf(off int, format string, args ...any) *FormatError {
	return &FormatError{Offset: int64(off), Reason: fmt.Sprintf(format, args...), Kind: ErrTruncated}
}

func corruptf(off int, format string, args ...any) *FormatError {
	return &FormatError{Offset: int64(off), Reason: fmt.Sprintf(format, args...), Kind: ErrCorrupt}
}

func checksumErr(off int, what string, stored, computed uint32) *FormatError {
	return &FormatError{
		Offset: int64(off),
		Reason: fmt.Sprintf("checkpoint %schecksum mismatch: stored %#08x, computed %#08x", what, stored, computed),
		Kind:   ErrChecksum,
	}
}

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// RefError is a failure to read one stored checkpoint. Err is the cause:
// a *FormatError when the stored bytes do not decode, ErrNotFound (wrapped)
// when there is no such checkpoint, or an I/O error.
type RefError struct {
	// Ref is what the store knows of the checkpoint without decoding it:
	// KernelID and Seq always, CodeVersion and Size when the store could
	// tell them; Created is zero.
	Ref Ref
	// Path is the file that holds the checkpoint in a FileStore; empty for
	// a MemStore.
	Path string
	// Err is the cause.
	Err error
}

// Error implements the error interface. The message starts with Path when
// there is one, else with the kernel ID and sequence number.
func (e *RefError) Error() string {
	if e.Path != "" {
		return e.Path + ": " + e.Err.Error()
	}
	return fmt.Sprintf("kernel %q checkpoint %d: %v", e.Ref.KernelID, e.Ref.Seq, e.Err)
}

// Unwrap returns the cause.
func (e *RefError) Unwrap() error { return e.Err }

// DamagedError lists stored checkpoints that exist but could not be read,
// in the order they were examined. Store.List and Store.Latest return it
// next to the results they could still produce; see those methods. It
// wraps every entry, so errors.Is(err, ErrChecksum) reports whether any
// entry had that cause, and errors.As finds the first *RefError.
type DamagedError []*RefError

// Error joins the messages of the entries, one per line.
func (d DamagedError) Error() string {
	s := make([]string, len(d))
	for i, e := range d {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// Unwrap returns the entries for errors.Is and errors.As.
func (d DamagedError) Unwrap() []error {
	errs := make([]error, len(d))
	for i, e := range d {
		errs[i] = e
	}
	return errs
}

// orNil returns d as an error, or nil when d is empty, so that a nil
// DamagedError never becomes a non-nil error interface.
func (d DamagedError) orNil() error {
	if len(d) == 0 {
		return nil
	}
	return d
}
