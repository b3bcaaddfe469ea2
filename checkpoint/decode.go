package checkpoint

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"time"
	"unicode/utf8"
)

// Decode decodes a checkpoint that fills b exactly.
//
// Decode checks, in order: the magic number (ErrBadMagic), the format
// version (ErrVersion), that the header is complete (ErrTruncated), the
// header checksum (ErrChecksum), that b holds exactly the length the
// header declares (ErrTruncated when shorter, ErrCorrupt when longer), the
// checksum over everything before it (ErrChecksum), and then the structure
// of every section (ErrCorrupt). Any failure is a *FormatError. A change
// to any single bit of a valid checkpoint, and any proper prefix of one,
// is rejected. Decode never panics, and every length field is checked
// against the bytes that remain before anything is allocated for it, so
// memory use is bounded by a small multiple of len(b).
//
// The result shares no memory with b. Sections this build does not know
// are kept in Extra, so that MarshalBinary reproduces b exactly.
func Decode(b []byte) (*Checkpoint, error) {
	return decode(b, false)
}

// UnmarshalBinary decodes b as Decode does and, on success, replaces *c
// with the result. It implements encoding.BinaryUnmarshaler. On failure *c
// is left unchanged.
func (c *Checkpoint) UnmarshalBinary(b []byte) error {
	d, err := decode(b, false)
	if err != nil {
		return err
	}
	*c = *d
	return nil
}

// Read reads one checkpoint from r and decodes it as Decode does. It reads
// exactly the length the checkpoint's header declares and nothing beyond,
// so checkpoints written back to back can be read one after another.
//
// Read returns io.EOF itself only when r ends before the first byte. If r
// ends later, inside the checkpoint, the error wraps ErrTruncated
// (ErrBadMagic or ErrVersion when what arrived is already wrong). Any other
// error from r is returned as it is. Memory grows with the bytes actually
// read, never with a declared length alone.
func Read(r io.Reader) (*Checkpoint, error) {
	buf := make([]byte, offID, maxHeader)
	if n, err := io.ReadFull(r, buf); err != nil {
		if n == 0 && err == io.EOF {
			return nil, io.EOF
		}
		return nil, readErr(buf[:n], err)
	}
	size, err := headerSize(buf)
	if err != nil {
		return nil, err
	}
	buf = buf[:size]
	if n, err := io.ReadFull(r, buf[offID:]); err != nil {
		return nil, readErr(buf[:offID+n], err)
	}
	h, err := parseHeader(buf)
	if err != nil {
		return nil, err
	}
	if h.total < uint64(size) {
		return nil, checkLength(h, int64(size)) // reports the short declared length
	}
	// Read at most what memory can hold; a stream that ends first is
	// truncated, as Decode would say of the same bytes.
	want := min(h.total, math.MaxInt)
	all := bytes.NewBuffer(make([]byte, 0, min(int(want), 1<<20)))
	all.Write(buf)
	n, err := io.CopyN(all, r, int64(want)-int64(size))
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, truncatedf(size+int(n), "checkpoint declares %d bytes", h.total)
		}
		return nil, err
	}
	if want < h.total {
		return nil, corruptf(offTotal, "declared length %d does not fit in memory", h.total)
	}
	return decode(all.Bytes(), true)
}

// readErr turns a short read of the first bytes into the decoding error
// those bytes give.
func readErr(got []byte, err error) error {
	if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return err
	}
	if _, herr := parseHeader(got); herr != nil {
		return herr
	}
	return truncatedf(len(got), "inside the header")
}

// header is the decoded fixed part of a checkpoint.
type header struct {
	size        int    // header length, header checksum included
	total       uint64 // declared length of the whole checkpoint
	kernelID    string
	codeVersion uint64
	codeSHA256  [32]byte
	created     int64 // Unix nanoseconds
}

// headerSize checks the magic number, the version and the kernel ID length
// in b, which must hold at least offID bytes unless it is shorter than the
// whole input, and returns the header length.
func headerSize(b []byte) (int, error) {
	n := min(len(b), len(magic))
	if string(b[:n]) != magic[:n] {
		return 0, &FormatError{
			Offset: 0,
			Reason: fmt.Sprintf("not a checkpoint (magic %q, want %q)", b[:n], magic),
			Kind:   ErrBadMagic,
		}
	}
	if len(b) < len(magic) {
		return 0, truncatedf(len(b), "inside the magic number")
	}
	if len(b) < offVersion+2 {
		return 0, truncatedf(len(b), "inside the format version")
	}
	if v := binary.LittleEndian.Uint16(b[offVersion:]); v != FormatVersion {
		return 0, &FormatError{
			Offset: offVersion,
			Reason: fmt.Sprintf("unsupported checkpoint format version %d (this build reads %d)", v, FormatVersion),
			Kind:   ErrVersion,
		}
	}
	if len(b) < offID {
		return 0, truncatedf(len(b), "inside the header")
	}
	k := int(binary.LittleEndian.Uint16(b[offIDLen:]))
	if k == 0 || k > MaxKernelIDLen {
		return 0, corruptf(offIDLen, "kernel ID length %d is outside 1 to %d", k, MaxKernelIDLen)
	}
	return headerFixed + k, nil
}

// parseHeader decodes and verifies the header at the start of b. b may be
// only a prefix of the checkpoint; the declared total length is returned,
// not checked.
func parseHeader(b []byte) (header, error) {
	size, err := headerSize(b)
	if err != nil {
		return header{}, err
	}
	if len(b) < size {
		return header{}, truncatedf(len(b), "inside the header of %d bytes", size)
	}
	le := binary.LittleEndian
	crcAt := size - 4
	if stored, got := le.Uint32(b[crcAt:]), crc32.Checksum(b[:crcAt], castagnoli); stored != got {
		return header{}, checksumErr(crcAt, "header ", stored, got)
	}
	h := header{size: size, total: le.Uint64(b[offTotal:])}
	end := offID + (size - headerFixed)
	id := b[offID:end]
	h.kernelID = string(id)
	if p := kernelIDProblem(h.kernelID); p != "" {
		return header{}, corruptf(offID, "kernel ID %q %s", clip(h.kernelID), p)
	}
	h.codeVersion = le.Uint64(b[end:])
	copy(h.codeSHA256[:], b[end+8:end+40])
	h.created = int64(le.Uint64(b[end+40:]))
	return h, nil
}

// checkLength compares the declared length with the length of the input.
func checkLength(h header, have int64) error {
	least := uint64(h.size) + 4 + 4 // section count and checksum
	switch {
	case h.total < least:
		return corruptf(offTotal, "declared length %d is less than the %d bytes of header, section count and checksum", h.total, least)
	case h.total > uint64(have):
		return truncatedf(int(have), "checkpoint declares %d bytes", h.total)
	case h.total < uint64(have):
		return corruptf(int(h.total), "%d bytes follow the end of the checkpoint", uint64(have)-h.total)
	}
	return nil
}

// parser reads fields from b[pos:end]. Offsets in its errors are offsets
// in b, which is the whole checkpoint.
type parser struct {
	b     []byte
	pos   int
	end   int
	scope string // what the parser is reading, for messages
}

func (p *parser) take(n uint64, what string) ([]byte, error) {
	if rem := uint64(p.end - p.pos); n > rem {
		return nil, corruptf(p.pos, "%s needs %d bytes, only %d remain in %s", what, n, rem, p.scope)
	}
	s := p.b[p.pos : p.pos+int(n)]
	p.pos += int(n)
	return s, nil
}

func (p *parser) u8(what string) (uint8, error) {
	s, err := p.take(1, what)
	if err != nil {
		return 0, err
	}
	return s[0], nil
}

func (p *parser) u16(what string) (uint16, error) {
	s, err := p.take(2, what)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint16(s), nil
}

func (p *parser) u32(what string) (uint32, error) {
	s, err := p.take(4, what)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(s), nil
}

func (p *parser) u64(what string) (uint64, error) {
	s, err := p.take(8, what)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(s), nil
}

// count reads a u32 entry count and checks that that many entries of at
// least min bytes each fit in what remains.
func (p *parser) count(what string, min int) (int, error) {
	at := p.pos
	n, err := p.u32(what)
	if err != nil {
		return 0, err
	}
	if rem := p.end - p.pos; uint64(n) > uint64(rem/min) {
		return 0, corruptf(at, "%s %d cannot fit in the %d bytes that remain in %s", what, n, rem, p.scope)
	}
	return int(n), nil
}

// decode decodes b. With own set, the caller hands b over and the result
// may alias it; otherwise every byte slice in the result is a copy.
func decode(b []byte, own bool) (*Checkpoint, error) {
	h, err := parseHeader(b)
	if err != nil {
		return nil, err
	}
	if err := checkLength(h, int64(len(b))); err != nil {
		return nil, err
	}
	end := len(b) - 4
	if stored, got := binary.LittleEndian.Uint32(b[end:]), crc32.Checksum(b[:end], castagnoli); stored != got {
		return nil, checksumErr(end, "", stored, got)
	}

	c := &Checkpoint{
		KernelID:    h.kernelID,
		CodeVersion: h.codeVersion,
		CodeSHA256:  h.codeSHA256,
		Created:     time.Unix(0, h.created).UTC(),
	}
	p := &parser{b: b, pos: h.size, end: end, scope: "the checkpoint"}
	n, err := p.count("section count", minSection)
	if err != nil {
		return nil, err
	}
	var prev string
	var have struct{ metadata, queues, state bool }
	for i := range n {
		at := p.pos
		nameLen, err := p.u8("section name length")
		if err != nil {
			return nil, err
		}
		nb, err := p.take(uint64(nameLen), "section name")
		if err != nil {
			return nil, err
		}
		name := string(nb)
		if !validSectionName(name) {
			return nil, corruptf(at, "section name %q is not 1 to 255 bytes of [a-z0-9._-]", clip(name))
		}
		if i > 0 && name <= prev {
			if name == prev {
				return nil, corruptf(at, "duplicate section %q", name)
			}
			return nil, corruptf(at, "section %q follows %q; sections must be in increasing name order", name, prev)
		}
		prev = name
		plen, err := p.u64("section length")
		if err != nil {
			return nil, err
		}
		start := p.pos
		payload, err := p.take(plen, fmt.Sprintf("section %q", name))
		if err != nil {
			return nil, err
		}
		sub := &parser{b: b, pos: start, end: p.pos, scope: fmt.Sprintf("section %q", name)}
		switch name {
		case sectionMetadata:
			have.metadata = true
			if c.Metadata, err = parseMetadata(sub); err != nil {
				return nil, err
			}
		case sectionQueues:
			have.queues = true
			if c.Queues, err = parseQueues(sub); err != nil {
				return nil, err
			}
		case sectionState:
			have.state = true
			if plen > MaxStateSize {
				return nil, corruptf(start, "state of %d bytes is larger than %d", plen, uint64(MaxStateSize))
			}
			c.State = keep(payload, own)
		default:
			if c.Extra == nil {
				c.Extra = make(map[string][]byte)
			}
			c.Extra[name] = keep(payload, own)
		}
	}
	if p.pos != end {
		return nil, corruptf(p.pos, "%d bytes between the last section and the checksum", end-p.pos)
	}
	for _, s := range []struct {
		name string
		ok   bool
	}{{sectionMetadata, have.metadata}, {sectionQueues, have.queues}, {sectionState, have.state}} {
		if !s.ok {
			return nil, corruptf(h.size, "missing section %q", s.name)
		}
	}
	return c, nil
}

// keep returns b, or a copy of it when the input is not owned.
func keep(b []byte, own bool) []byte {
	if own {
		return b[:len(b):len(b)]
	}
	return bytes.Clone(b)
}

func parseQueues(p *parser) (map[string]uint64, error) {
	n, err := p.count("queue count", minQueue)
	if err != nil {
		return nil, err
	}
	m := make(map[string]uint64, n)
	var prev string
	for i := range n {
		at := p.pos
		name, err := p.name("queue name")
		if err != nil {
			return nil, err
		}
		if i > 0 && name <= prev {
			return nil, orderErr(at, "queue name", name, prev)
		}
		prev = name
		if m[name], err = p.u64("queue position"); err != nil {
			return nil, err
		}
	}
	if p.pos != p.end {
		return nil, corruptf(p.pos, "%d unused bytes at the end of %s", p.end-p.pos, p.scope)
	}
	return m, nil
}

func parseMetadata(p *parser) (map[string]string, error) {
	n, err := p.count("metadata count", minMeta)
	if err != nil {
		return nil, err
	}
	m := make(map[string]string, n)
	var prev string
	for i := range n {
		at := p.pos
		k, err := p.name("metadata key")
		if err != nil {
			return nil, err
		}
		if i > 0 && k <= prev {
			return nil, orderErr(at, "metadata key", k, prev)
		}
		prev = k
		vat := p.pos
		vlen, err := p.u32("metadata value length")
		if err != nil {
			return nil, err
		}
		v, err := p.take(uint64(vlen), "metadata value")
		if err != nil {
			return nil, err
		}
		if !utf8.Valid(v) {
			return nil, corruptf(vat, "metadata value of %q is not valid UTF-8", clip(k))
		}
		m[k] = string(v)
	}
	if p.pos != p.end {
		return nil, corruptf(p.pos, "%d unused bytes at the end of %s", p.end-p.pos, p.scope)
	}
	return m, nil
}

// name reads a u16-length-prefixed queue name or metadata key.
func (p *parser) name(what string) (string, error) {
	at := p.pos
	n, err := p.u16(what + " length")
	if err != nil {
		return "", err
	}
	b, err := p.take(uint64(n), what)
	if err != nil {
		return "", err
	}
	s := string(b)
	if pr := nameProblem(s); pr != "" {
		return "", corruptf(at, "%s %q %s", what, clip(s), pr)
	}
	return s, nil
}

func orderErr(at int, what, name, prev string) error {
	if name == prev {
		return corruptf(at, "duplicate %s %q", what, clip(name))
	}
	return corruptf(at, "%s %q follows %q; names must be in increasing order", what, clip(name), clip(prev))
}
