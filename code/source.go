package code

import (
	"crypto/sha256"
	"encoding/hex"
	"maps"
	"time"
)

// Source is one kernel code artifact: its format, its bytes, the entry
// point to run, free-form metadata, its creation time, the version the
// manager assigned to it and the SHA-256 of its bytes.
//
// A Source is immutable once built: the bytes are copied in by the
// constructors, the SHA-256 is computed once from them, and the With*
// methods return modified copies. It is therefore safe to share between
// goroutines. The zero Source has FormatUnknown and fails validation.
type Source struct {
	format   Format
	code     []byte
	entry    string
	language string
	metadata map[string]string
	created  time.Time
	version  uint64
	sum      [sha256.Size]byte
}

// New returns a Source of format f holding a copy of b, with the given
// entry point and the current time as creation time. New does not
// validate: call Validate before running the code.
func New(f Format, b []byte, entry string) *Source {
	c := make([]byte, len(b))
	copy(c, b)
	return &Source{
		format:  f,
		code:    c,
		entry:   entry,
		created: time.Now(),
		sum:     sha256.Sum256(c),
	}
}

// FromPTX returns a Source of NVIDIA PTX assembly text.
func FromPTX(text, entry string) *Source { return New(FormatPTX, []byte(text), entry) }

// FromCUBIN returns a Source of a compiled CUDA binary (an ELF file).
func FromCUBIN(b []byte, entry string) *Source { return New(FormatCUBIN, b, entry) }

// FromSPIRV returns a Source of a SPIR-V binary module.
func FromSPIRV(b []byte, entry string) *Source { return New(FormatSPIRV, b, entry) }

// FromWGSL returns a Source of WebGPU Shading Language text.
func FromWGSL(text, entry string) *Source { return New(FormatWGSL, []byte(text), entry) }

// FromMSL returns a Source of Metal Shading Language text.
func FromMSL(text, entry string) *Source { return New(FormatMSL, []byte(text), entry) }

// FromMetallib returns a Source of a compiled Metal library.
func FromMetallib(b []byte, entry string) *Source { return New(FormatMetallib, b, entry) }

// FromWASM returns a Source of a WebAssembly binary module.
func FromWASM(b []byte, entry string) *Source { return New(FormatWASM, b, entry) }

// FromSource returns a Source of generic source text in the given language
// (for example "cuda", "opencl", "glsl"). Such code cannot be validated
// structurally beyond being non-empty text; a backend that accepts it
// compiles it itself.
func FromSource(language, text, entry string) *Source {
	s := New(FormatSource, []byte(text), entry)
	s.language = language
	return s
}

// Format returns the artifact's format.
func (s *Source) Format() Format { return s.format }

// Bytes returns the artifact's bytes. The slice is shared with the Source
// and must not be modified; the SHA-256 would no longer describe it.
func (s *Source) Bytes() []byte { return s.code }

// Len returns the size of the artifact in bytes.
func (s *Source) Len() int { return len(s.code) }

// Entry returns the name of the entry point.
func (s *Source) Entry() string { return s.entry }

// Language returns the language tag of a FormatSource artifact, and the
// empty string for every other format.
func (s *Source) Language() string { return s.language }

// Metadata returns a copy of the artifact's metadata.
func (s *Source) Metadata() map[string]string { return maps.Clone(s.metadata) }

// MetadataValue returns the metadata value for key and whether it is set.
func (s *Source) MetadataValue(key string) (string, bool) {
	v, ok := s.metadata[key]
	return v, ok
}

// Created returns the time the Source was constructed.
func (s *Source) Created() time.Time { return s.created }

// Version returns the version the manager assigned, or 0 if none was.
func (s *Source) Version() uint64 { return s.version }

// SHA256 returns the SHA-256 digest of the artifact's bytes.
func (s *Source) SHA256() [sha256.Size]byte { return s.sum }

// SHA256Hex returns the SHA-256 digest of the artifact's bytes as 64
// lower-case hexadecimal digits.
func (s *Source) SHA256Hex() string { return hex.EncodeToString(s.sum[:]) }

// clone returns a shallow copy of s whose metadata map may be modified.
func (s *Source) clone() *Source {
	c := *s
	c.metadata = maps.Clone(s.metadata)
	return &c
}

// WithVersion returns a copy of s with version v. The bytes are shared,
// which is safe because neither copy modifies them.
func (s *Source) WithVersion(v uint64) *Source {
	c := s.clone()
	c.version = v
	return c
}

// WithEntry returns a copy of s with a different entry point.
func (s *Source) WithEntry(entry string) *Source {
	c := s.clone()
	c.entry = entry
	return c
}

// WithMetadata returns a copy of s with metadata key set to value.
func (s *Source) WithMetadata(key, value string) *Source {
	c := s.clone()
	if c.metadata == nil {
		c.metadata = make(map[string]string, 1)
	}
	c.metadata[key] = value
	return c
}

// WithCreated returns a copy of s with creation time t, for artifacts
// whose creation time is known from elsewhere (a file's modification time,
// a manifest).
func (s *Source) WithCreated(t time.Time) *Source {
	c := s.clone()
	c.created = t
	return c
}
