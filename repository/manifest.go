package repository

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/hotkernel/hotkernel/code"
)

// ManifestFile is the name of the manifest in every version directory.
const ManifestFile = "kernel.json"

// PolicyFile is the name of the optional version-policy file in a kernel
// directory.
const PolicyFile = "policy.json"

// MaxManifestBytes is the size limit of kernel.json and policy.json.
const MaxManifestBytes = 64 << 10

// WasmEntry is the entry point every wasm kernel's manifest must name
// (docs/kernel-abi.md).
const WasmEntry = "hk_process"

// Manifest is the content of a version's kernel.json. Decode it with
// ParseManifest, which rejects unknown fields; check it with Validate.
// The zero Manifest is not valid (format and sha256 are required).
type Manifest struct {
	// Format is a format name code.ParseFormat accepts ("wasm", ...).
	Format string `json:"format"`
	// Entry is the entry point; "hk_process" for wasm kernels.
	Entry string `json:"entry"`
	// Artifact is the artifact's file name inside the version directory.
	// Empty means the format's default (see DefaultArtifact).
	Artifact string `json:"artifact,omitempty"`
	// ABIVersion is the kernel ABI version: required and 1 for wasm;
	// 0 (absent) or 1 for other formats.
	ABIVersion int `json:"abi_version,omitempty"`
	// SHA256 is the artifact's SHA-256 as 64 hexadecimal digits (either
	// case). Required: it is what makes a version complete.
	SHA256 string `json:"sha256"`
	// QueueCapacity, when positive, is the kernel's queue capacity; 0
	// leaves the server's default.
	QueueCapacity int `json:"queue_capacity,omitempty"`
	// State holds optional limits on the kernel's state.
	State *StateLimits `json:"state,omitempty"`
	// Migration describes which state layouts the code migrates from. It
	// is informational: its shape is checked, its claims are not.
	Migration *Migration `json:"migration,omitempty"`
	// Signature is stored and returned as is. It is NOT verified by this
	// package.
	Signature string `json:"signature,omitempty"`
	// Metadata is free-form and copied into the Source that Load returns.
	// The keys "name" and "repository.*" are reserved for Load.
	Metadata map[string]string `json:"metadata,omitempty"`
}

// StateLimits are a manifest's limits on the kernel's state.
type StateLimits struct {
	// MaxStateBytes, when positive, is the largest state the kernel may
	// hold; 0 means no limit from the manifest.
	MaxStateBytes int64 `json:"max_state_bytes,omitempty"`
}

// Migration lists the state layouts the kernel's code can migrate from.
type Migration struct {
	// FromLayouts are positive, distinct layout numbers; at least one.
	FromLayouts []uint32 `json:"from_layouts"`
}

// Limits of fields that would otherwise be unbounded.
const (
	maxEntryLen     = 256
	maxArtifactName = 255
	maxSignatureLen = 16 << 10
	maxMetadataKeys = 256
	maxMetadataLen  = 4 << 10
	maxFromLayouts  = 1024
)

// defaultArtifacts maps formats to their default artifact file names.
var defaultArtifacts = map[code.Format]string{
	code.FormatPTX:      "kernel.ptx",
	code.FormatCUBIN:    "kernel.cubin",
	code.FormatSPIRV:    "kernel.spv",
	code.FormatWGSL:     "kernel.wgsl",
	code.FormatMSL:      "kernel.metal",
	code.FormatMetallib: "kernel.metallib",
	code.FormatWASM:     "kernel.wasm",
	code.FormatSource:   "kernel.src",
}

// DefaultArtifact returns the artifact file name used when a manifest of
// format f names none: "kernel.wasm" for wasm, "kernel.ptx" for PTX, and
// so on. It returns "" for FormatUnknown and values outside the set.
func DefaultArtifact(f code.Format) string { return defaultArtifacts[f] }

// CodeFormat returns the manifest's format parsed by code.ParseFormat.
func (m *Manifest) CodeFormat() (code.Format, error) { return code.ParseFormat(m.Format) }

// ArtifactName returns the artifact's file name: Artifact, or the
// format's default when Artifact is empty. It returns "" when neither is
// known (an unknown format without an artifact name).
func (m *Manifest) ArtifactName() string {
	if m.Artifact != "" {
		return m.Artifact
	}
	f, err := m.CodeFormat()
	if err != nil {
		return ""
	}
	return DefaultArtifact(f)
}

// SHA256Bytes returns the decoded SHA256 field, or false when it is not
// 64 hexadecimal digits.
func (m *Manifest) SHA256Bytes() ([32]byte, bool) {
	var sum [32]byte
	if len(m.SHA256) != 64 {
		return sum, false
	}
	if _, err := hex.Decode(sum[:], []byte(m.SHA256)); err != nil {
		return sum, false
	}
	return sum, true
}

// Validate checks every field of m and returns the first problem as a
// *ManifestError naming the field (File and the place are left empty; the
// scanner fills in File). It does not look at the artifact.
func (m *Manifest) Validate() error {
	bad := func(field, format string, args ...any) error {
		return &ManifestError{Field: field, Reason: fmt.Sprintf(format, args...)}
	}
	if m.Format == "" {
		return bad("format", "required")
	}
	f, err := code.ParseFormat(m.Format)
	if err != nil {
		return bad("format", "%v", err)
	}
	switch {
	case m.Entry == "":
		return bad("entry", "required")
	case len(m.Entry) > maxEntryLen:
		return bad("entry", "longer than %d bytes", maxEntryLen)
	case f == code.FormatWASM && m.Entry != WasmEntry:
		return bad("entry", "wasm kernels must name %q, not %q", WasmEntry, m.Entry)
	}
	if m.Artifact != "" {
		if err := checkArtifactName(m.Artifact); err != nil {
			return bad("artifact", "%v", err)
		}
	}
	switch {
	case f == code.FormatWASM && m.ABIVersion != 1:
		return bad("abi_version", "wasm kernels need abi_version 1, got %d", m.ABIVersion)
	case m.ABIVersion != 0 && m.ABIVersion != 1:
		return bad("abi_version", "unsupported ABI version %d (known: 1)", m.ABIVersion)
	}
	if m.SHA256 == "" {
		return bad("sha256", "required")
	}
	if _, ok := m.SHA256Bytes(); !ok {
		return bad("sha256", "want 64 hexadecimal digits, got %q", truncate(m.SHA256, 80))
	}
	if m.QueueCapacity < 0 {
		return bad("queue_capacity", "negative (%d)", m.QueueCapacity)
	}
	if m.State != nil && m.State.MaxStateBytes < 0 {
		return bad("state.max_state_bytes", "negative (%d)", m.State.MaxStateBytes)
	}
	if m.Migration != nil {
		l := m.Migration.FromLayouts
		if len(l) == 0 {
			return bad("migration.from_layouts", "required and non-empty when migration is present")
		}
		if len(l) > maxFromLayouts {
			return bad("migration.from_layouts", "more than %d layouts", maxFromLayouts)
		}
		seen := make(map[uint32]bool, len(l))
		for i, v := range l {
			if v == 0 {
				return bad(fmt.Sprintf("migration.from_layouts[%d]", i), "layout 0 is not a layout")
			}
			if seen[v] {
				return bad(fmt.Sprintf("migration.from_layouts[%d]", i), "duplicate layout %d", v)
			}
			seen[v] = true
		}
	}
	if len(m.Signature) > maxSignatureLen {
		return bad("signature", "longer than %d bytes", maxSignatureLen)
	}
	if len(m.Metadata) > maxMetadataKeys {
		return bad("metadata", "more than %d keys", maxMetadataKeys)
	}
	for k, v := range m.Metadata {
		switch {
		case k == "":
			return bad("metadata", "empty key")
		case k == "name" || strings.HasPrefix(k, "repository."):
			return bad("metadata."+k, "reserved key")
		case len(k)+len(v) > maxMetadataLen:
			return bad("metadata."+k, "entry longer than %d bytes", maxMetadataLen)
		}
	}
	return nil
}

// checkArtifactName accepts a plain file name: no path separator, no
// leading dot (which also excludes "." and ".."), no NUL, not the
// manifest's name, at most 255 bytes.
func checkArtifactName(name string) error {
	switch {
	case len(name) > maxArtifactName:
		return fmt.Errorf("longer than %d bytes", maxArtifactName)
	case strings.ContainsAny(name, "/\\\x00"):
		return fmt.Errorf("%q is not a plain file name", name)
	case strings.HasPrefix(name, "."):
		return fmt.Errorf("%q starts with a dot", name)
	case name == ManifestFile || name == PolicyFile:
		return fmt.Errorf("%q is reserved", name)
	}
	return nil
}

// ParseManifest decodes a kernel.json strictly: one JSON object, no
// unknown fields, no trailing data, at most MaxManifestBytes; then it
// validates the result. file names the manifest in errors. Every error is
// a *ManifestError; syntax and type errors carry the line and column.
func ParseManifest(file string, data []byte) (*Manifest, error) {
	var m Manifest
	if err := decodeStrict(file, data, &m); err != nil {
		return nil, err
	}
	if err := m.Validate(); err != nil {
		var me *ManifestError
		if errors.As(err, &me) {
			me.File = file
		}
		return nil, err
	}
	return &m, nil
}

// decodeStrict decodes data into v, rejecting unknown fields and trailing
// data, and maps errors to *ManifestError with positions.
func decodeStrict(file string, data []byte, v any) error {
	if len(data) > MaxManifestBytes {
		return &ManifestError{File: file, Reason: fmt.Sprintf("%d bytes, over the limit of %d", len(data), MaxManifestBytes)}
	}
	at := func(off int64, field, reason string) error {
		line, col := position(data, off)
		return &ManifestError{File: file, Line: line, Column: col, Field: field, Reason: reason}
	}
	if !json.Valid(data) {
		var x any
		err := json.Unmarshal(data, &x)
		var se *json.SyntaxError
		if errors.As(err, &se) {
			// The offset is just past the offending byte.
			return at(max(se.Offset-1, 0), "", se.Error())
		}
		if err == nil {
			err = errors.New("invalid JSON")
		}
		return at(int64(len(data)), "", err.Error())
	}
	if t := bytes.TrimSpace(data); len(t) == 0 || t[0] != '{' {
		return at(int64(len(data)-len(bytes.TrimLeft(data, " \t\r\n"))), "", "want a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		return nil
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return at(max(te.Offset-1, 0), te.Field, fmt.Sprintf("cannot use a JSON %s as %s", te.Value, te.Type))
	}
	const unknown = `json: unknown field "`
	if msg := err.Error(); strings.HasPrefix(msg, unknown) {
		name := strings.TrimSuffix(strings.TrimPrefix(msg, unknown), `"`)
		off := int64(-1)
		if i := bytes.Index(data, []byte(`"`+name+`"`)); i >= 0 {
			off = int64(i)
		}
		if off < 0 {
			return &ManifestError{File: file, Field: name, Reason: "unknown field"}
		}
		return at(off, name, "unknown field")
	}
	return &ManifestError{File: file, Reason: err.Error()}
}

// position returns the 1-based line and column (in bytes) of offset off.
func position(data []byte, off int64) (line, col int) {
	off = min(max(off, 0), int64(len(data)))
	before := data[:off]
	line = bytes.Count(before, []byte{'\n'}) + 1
	col = int(off) - (bytes.LastIndexByte(before, '\n') + 1) + 1
	return line, col
}

// truncate shortens s to at most n bytes for error messages.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// Marshal returns m as indented JSON, the form Put writes.
func (m *Manifest) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}
