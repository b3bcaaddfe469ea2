package checkpoint

import (
	"hash/crc32"
	"maps"
	"math"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

const (
	// FormatVersion is the version of the binary format this package
	// writes, and the only one it reads.
	FormatVersion = 1
	// MaxKernelIDLen is the longest kernel ID, in bytes.
	MaxKernelIDLen = 256
	// MaxStateSize is the largest State a checkpoint may hold, in bytes
	// (1 TiB).
	MaxStateSize = 1 << 40
	// MaxNameLen is the longest queue name or metadata key, in bytes.
	MaxNameLen = math.MaxUint16
	// MaxSectionNameLen is the longest section name, in bytes.
	MaxSectionNameLen = math.MaxUint8
)

// magic starts every checkpoint. The first byte has its high bit set so
// that the file is never taken for text, and the final line feed exposes a
// transfer that rewrote line endings.
const magic = "\x89HKCKPT\n"

// Names of the sections that format version 1 defines. Every version 1
// checkpoint holds all three.
const (
	sectionMetadata = "metadata"
	sectionQueues   = "queues"
	sectionState    = "state"
)

// Byte layout of the header; see docs/checkpoint-format.md.
const (
	offVersion = 8  // u16 format version
	offTotal   = 10 // u64 total length
	offIDLen   = 18 // u16 kernel ID length
	offID      = 20 // kernel ID bytes
	// headerFixed is the header length without the kernel ID: magic,
	// version, total length, ID length, code version, SHA-256, creation
	// time and header checksum.
	headerFixed = offID + 8 + 32 + 8 + 4
	maxHeader   = headerFixed + MaxKernelIDLen
	// minSection is the smallest encoded section: a one-byte name, its
	// length byte and the u64 payload length.
	minSection = 1 + 1 + 8
	// minQueue and minMeta are the smallest encoded queue and metadata
	// entries.
	minQueue = 2 + 1 + 8
	minMeta  = 2 + 1 + 4
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Checkpoint is the captured state of one kernel at one moment, with the
// identity of the code that produced it.
//
// A Checkpoint is plain data: encoding reads it and never modifies it,
// and decoding returns a new one that shares no memory with its input.
// Nil maps and a nil State encode as empty. The encoding is deterministic:
// equal checkpoints encode to identical bytes whatever the insertion order
// of their maps.
type Checkpoint struct {
	// KernelID names the kernel: 1 to MaxKernelIDLen bytes of valid UTF-8
	// without NUL bytes.
	KernelID string
	// CodeVersion is the version of the kernel code that produced the
	// state, as the manager numbered it.
	CodeVersion uint64
	// CodeSHA256 is the SHA-256 of that code's bytes.
	CodeSHA256 [32]byte
	// Created is when the state was captured. It is stored as int64 Unix
	// nanoseconds, so it must lie between the years 1678 and 2262 and must
	// not be the zero Time; decoding returns it in UTC without a monotonic
	// clock reading.
	Created time.Time
	// State is the kernel's state, opaque to this package, at most
	// MaxStateSize bytes.
	State []byte
	// Queues are named queue positions (sequence numbers), for example
	// "input.enqueued" and "input.processed". Names are 1 to MaxNameLen
	// bytes of valid UTF-8. Decode always returns a non-nil map.
	Queues map[string]uint64
	// Metadata is free-form text. Keys are 1 to MaxNameLen bytes of valid
	// UTF-8; values are valid UTF-8 shorter than 4 GiB. Decode always
	// returns a non-nil map.
	Metadata map[string]string
	// Extra holds sections this package does not interpret, by name.
	// Decode keeps the sections of a newer writer here, so that encoding
	// the result reproduces the input byte for byte, and a writer may add
	// its own. Names are 1 to MaxSectionNameLen bytes of lowercase ASCII
	// letters, digits, '.', '_' and '-', and must differ from the standard
	// section names "metadata", "queues" and "state". Decode returns nil
	// when there are none.
	Extra map[string][]byte
}

// Validate reports whether c can be encoded: it returns nil, or an error
// wrapping ErrInvalid that names the first offending field (maps are
// checked in key order, so the report is deterministic). Every checkpoint
// that Decode returns passes Validate. MarshalBinary, WriteTo and the
// stores call Validate themselves.
func (c *Checkpoint) Validate() error {
	_, err := c.plan()
	return err
}

// kernelIDProblem returns why id is not a valid kernel ID, or "".
func kernelIDProblem(id string) string {
	switch {
	case id == "":
		return "is empty"
	case len(id) > MaxKernelIDLen:
		return "is longer than 256 bytes"
	case !utf8.ValidString(id):
		return "is not valid UTF-8"
	case strings.IndexByte(id, 0) >= 0:
		return "contains a NUL byte"
	}
	return ""
}

// CheckKernelID reports whether id is a valid kernel ID: it returns nil,
// or an error wrapping ErrInvalid that says why not.
func CheckKernelID(id string) error {
	if p := kernelIDProblem(id); p != "" {
		return invalidf("kernel ID %q %s", clip(id), p)
	}
	return nil
}

// nameProblem returns why s is not a valid queue name or metadata key, or "".
func nameProblem(s string) string {
	switch {
	case s == "":
		return "is empty"
	case len(s) > MaxNameLen:
		return "is longer than 65535 bytes"
	case !utf8.ValidString(s):
		return "is not valid UTF-8"
	}
	return ""
}

// validSectionName reports whether s may name a section.
func validSectionName(s string) bool {
	if s == "" || len(s) > MaxSectionNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func standardSection(name string) bool {
	return name == sectionMetadata || name == sectionQueues || name == sectionState
}

// clip shortens s for an error message.
func clip(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// plan is a validated checkpoint with its encoded layout worked out.
type plan struct {
	c          *Checkpoint
	sections   []string // all section names, sorted
	queueNames []string // sorted
	metaKeys   []string // sorted
	queuesLen  uint64   // payload length of the queues section
	metaLen    uint64   // payload length of the metadata section
	total      uint64   // encoded length
}

// plan validates c and computes its layout.
func (c *Checkpoint) plan() (*plan, error) {
	if c == nil {
		return nil, invalidf("nil checkpoint")
	}
	if p := kernelIDProblem(c.KernelID); p != "" {
		return nil, invalidf("kernel ID %q %s", clip(c.KernelID), p)
	}
	if c.Created.IsZero() {
		return nil, invalidf("creation time is not set")
	}
	if ns := c.Created.UnixNano(); !time.Unix(0, ns).Equal(c.Created) {
		return nil, invalidf("creation time %s is outside the years 1678 to 2262", c.Created)
	}
	if uint64(len(c.State)) > MaxStateSize {
		return nil, invalidf("state of %d bytes is larger than %d", len(c.State), uint64(MaxStateSize))
	}
	p := &plan{c: c}

	p.queueNames = slices.Sorted(maps.Keys(c.Queues))
	if uint64(len(p.queueNames)) > math.MaxUint32 {
		return nil, invalidf("%d queues is more than %d", len(p.queueNames), uint32(math.MaxUint32))
	}
	p.queuesLen = 4
	for _, name := range p.queueNames {
		if pr := nameProblem(name); pr != "" {
			return nil, invalidf("queue name %q %s", clip(name), pr)
		}
		p.queuesLen += 2 + uint64(len(name)) + 8
	}

	p.metaKeys = slices.Sorted(maps.Keys(c.Metadata))
	if uint64(len(p.metaKeys)) > math.MaxUint32 {
		return nil, invalidf("%d metadata entries is more than %d", len(p.metaKeys), uint32(math.MaxUint32))
	}
	p.metaLen = 4
	for _, k := range p.metaKeys {
		if pr := nameProblem(k); pr != "" {
			return nil, invalidf("metadata key %q %s", clip(k), pr)
		}
		v := c.Metadata[k]
		if uint64(len(v)) > math.MaxUint32 {
			return nil, invalidf("metadata value of %q is 4 GiB or longer", clip(k))
		}
		if !utf8.ValidString(v) {
			return nil, invalidf("metadata value of %q is not valid UTF-8", clip(k))
		}
		p.metaLen += 2 + uint64(len(k)) + 4 + uint64(len(v))
	}

	p.sections = make([]string, 0, 3+len(c.Extra))
	p.sections = append(p.sections, sectionMetadata, sectionQueues, sectionState)
	for name := range c.Extra {
		if standardSection(name) {
			return nil, invalidf("extra section %q has the name of a standard section", name)
		}
		if !validSectionName(name) {
			return nil, invalidf("extra section name %q is not 1 to 255 bytes of [a-z0-9._-]", clip(name))
		}
		p.sections = append(p.sections, name)
	}
	if uint64(len(p.sections)) > math.MaxUint32 {
		return nil, invalidf("%d sections is more than %d", len(p.sections), uint32(math.MaxUint32))
	}
	slices.Sort(p.sections)

	total := uint64(headerFixed+len(c.KernelID)) + 4 + 4 // header, section count, checksum
	for _, name := range p.sections {
		total += 1 + uint64(len(name)) + 8 + p.payloadLen(name)
	}
	if total > math.MaxInt64 {
		return nil, invalidf("encoded size overflows int64")
	}
	p.total = total
	return p, nil
}

// payloadLen returns the encoded payload length of a section.
func (p *plan) payloadLen(name string) uint64 {
	switch name {
	case sectionMetadata:
		return p.metaLen
	case sectionQueues:
		return p.queuesLen
	case sectionState:
		return uint64(len(p.c.State))
	}
	return uint64(len(p.c.Extra[name]))
}
