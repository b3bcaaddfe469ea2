package repository

import (
	"errors"
	"fmt"
)

// Sentinel causes; test for them with errors.Is. Every error this package
// returns or reports wraps at most one of them (a *ManifestError wraps
// ErrInvalidManifest, a *SHA256MismatchError wraps ErrSHA256Mismatch).
var (
	// ErrInvalidID: a kernel ID breaks the ID rule (see CheckID).
	ErrInvalidID = errors.New("invalid kernel ID")
	// ErrInvalidVersion: a version is 0, or a version directory's name is
	// not a positive decimal integer without leading zeros.
	ErrInvalidVersion = errors.New("invalid version")
	// ErrUnsafePath: an entry is a symbolic link or not the kind of file
	// expected (a directory where a regular file belongs, a device, ...).
	ErrUnsafePath = errors.New("unsafe path")
	// ErrManifestMissing: a version directory has no kernel.json (yet).
	ErrManifestMissing = errors.New("manifest missing")
	// ErrArtifactMissing: the artifact named by a manifest does not exist
	// (yet).
	ErrArtifactMissing = errors.New("artifact missing")
	// ErrSHA256Mismatch: the artifact's SHA-256 differs from the
	// manifest's, as when it is still being copied.
	ErrSHA256Mismatch = errors.New("sha256 mismatch")
	// ErrInvalidManifest: kernel.json (or policy.json) is malformed or
	// fails validation.
	ErrInvalidManifest = errors.New("invalid manifest")
	// ErrInvalidArtifact: the artifact's bytes fail code.Validate.
	ErrInvalidArtifact = errors.New("invalid artifact")
	// ErrTooLarge: a file exceeds its size limit.
	ErrTooLarge = errors.New("file too large")
	// ErrNotFound: Load found no such kernel or version.
	ErrNotFound = errors.New("not found")
	// ErrExists: Put found the version already present.
	ErrExists = errors.New("version already exists")
)

// ManifestError is a problem with a manifest or policy file: the file (a
// path relative to the repository), the place when known (1-based line
// and column, 0 when unknown), the JSON field when known (dotted, like
// "state.max_state_bytes") and the reason.
//
// Its message reads "FILE:LINE:COL: field F: REASON", leaving out the
// parts that are unknown. errors.Is(err, ErrInvalidManifest) holds for
// every ManifestError.
type ManifestError struct {
	File   string
	Line   int
	Column int
	Field  string
	Reason string
}

// Error implements the error interface.
func (e *ManifestError) Error() string {
	s := e.File
	if s == "" {
		s = "manifest"
	}
	if e.Line > 0 {
		s += fmt.Sprintf(":%d:%d", e.Line, e.Column)
	}
	s += ": "
	if e.Field != "" {
		s += "field " + e.Field + ": "
	}
	return s + e.Reason
}

// Unwrap returns ErrInvalidManifest.
func (e *ManifestError) Unwrap() error { return ErrInvalidManifest }

// SHA256MismatchError reports an artifact whose SHA-256 is not the one
// its manifest records: the artifact's path relative to the repository,
// the expected and actual digests (lower-case hex) and the artifact's
// size in bytes. errors.Is(err, ErrSHA256Mismatch) holds for it.
type SHA256MismatchError struct {
	File     string
	Expected string
	Actual   string
	Size     int64
}

// Error implements the error interface.
func (e *SHA256MismatchError) Error() string {
	return fmt.Sprintf("%s: sha256 mismatch: manifest expects %s, artifact (%d bytes) has %s",
		e.File, e.Expected, e.Size, e.Actual)
}

// Unwrap returns ErrSHA256Mismatch.
func (e *SHA256MismatchError) Unwrap() error { return ErrSHA256Mismatch }
