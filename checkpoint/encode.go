package checkpoint

import (
	"encoding/binary"
	"hash/crc32"
	"io"
	"math"
)

// MarshalBinary encodes c in format version 1 and returns the bytes. It
// implements encoding.BinaryMarshaler.
//
// The result is deterministic: map entries and sections are written in
// sorted order, so equal checkpoints give identical bytes, and for every
// checkpoint that Decode returns, MarshalBinary reproduces Decode's input
// exactly. If c fails Validate, MarshalBinary returns that error and no
// bytes.
func (c *Checkpoint) MarshalBinary() ([]byte, error) {
	p, err := c.plan()
	if err != nil {
		return nil, err
	}
	if p.total > math.MaxInt {
		return nil, invalidf("encoded size of %d bytes does not fit in memory", p.total)
	}
	e := &emitter{buf: make([]byte, 0, int(p.total))}
	p.emit(e)
	return e.buf, nil
}

// WriteTo writes the encoding of c to w, the same bytes MarshalBinary
// returns, and reports how many bytes it wrote. It implements io.WriterTo.
//
// Large payloads such as State are handed to w directly rather than
// copied, so streaming a checkpoint costs little memory beyond c itself.
// If c fails Validate, WriteTo writes nothing and returns that error. If w
// fails, WriteTo stops and returns the bytes written so far and w's error;
// what reached w is then an incomplete checkpoint, which Decode rejects.
func (c *Checkpoint) WriteTo(w io.Writer) (int64, error) {
	p, err := c.plan()
	if err != nil {
		return 0, err
	}
	e := &emitter{w: w, buf: make([]byte, 0, int(min(p.total, flushAt+maxHeader)))}
	p.emit(e)
	return e.n, e.err
}

// flushAt is the buffered size at which an emitter writing to an
// io.Writer flushes, and the payload size it passes to the writer without
// copying.
const flushAt = 64 << 10

// emitter accumulates encoded bytes. With w nil it keeps everything in
// buf; with w set it flushes to w and keeps the running CRC of what it
// flushed.
type emitter struct {
	buf []byte
	w   io.Writer
	crc uint32 // CRC32C of the bytes already written to w
	n   int64  // bytes written to w
	err error  // first error from w
}

func (e *emitter) write(p []byte) {
	if e.err != nil || len(p) == 0 {
		return
	}
	e.crc = crc32.Update(e.crc, castagnoli, p)
	n, err := e.w.Write(p)
	e.n += int64(n)
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	e.err = err
}

func (e *emitter) flush() {
	if e.w == nil {
		return
	}
	e.write(e.buf)
	e.buf = e.buf[:0]
}

func (e *emitter) bytes(p []byte) {
	if e.w != nil && len(p) >= flushAt {
		e.flush()
		e.write(p)
		return
	}
	e.buf = append(e.buf, p...)
	if e.w != nil && len(e.buf) >= flushAt {
		e.flush()
	}
}

func (e *emitter) str(s string) {
	if e.w != nil && len(s) >= flushAt {
		// A string cannot be handed to a writer without a copy; write it
		// in buffer-sized pieces.
		for len(s) > 0 {
			n := min(len(s), flushAt)
			e.buf = append(e.buf, s[:n]...)
			e.flush()
			s = s[n:]
		}
		return
	}
	e.buf = append(e.buf, s...)
	if e.w != nil && len(e.buf) >= flushAt {
		e.flush()
	}
}

func (e *emitter) u8(v uint8)   { e.buf = append(e.buf, v) }
func (e *emitter) u16(v uint16) { e.buf = binary.LittleEndian.AppendUint16(e.buf, v) }
func (e *emitter) u32(v uint32) { e.buf = binary.LittleEndian.AppendUint32(e.buf, v) }
func (e *emitter) u64(v uint64) { e.buf = binary.LittleEndian.AppendUint64(e.buf, v) }

// emit writes the whole checkpoint. The header is at most maxHeader bytes,
// so it is still entirely in buf when its checksum is computed.
func (p *plan) emit(e *emitter) {
	c := p.c
	e.str(magic)
	e.u16(FormatVersion)
	e.u64(p.total)
	e.u16(uint16(len(c.KernelID)))
	e.str(c.KernelID)
	e.u64(c.CodeVersion)
	e.bytes(c.CodeSHA256[:])
	e.u64(uint64(c.Created.UnixNano()))
	e.u32(crc32.Checksum(e.buf, castagnoli))

	e.u32(uint32(len(p.sections)))
	for _, name := range p.sections {
		e.u8(uint8(len(name)))
		e.str(name)
		e.u64(p.payloadLen(name))
		switch name {
		case sectionMetadata:
			e.u32(uint32(len(p.metaKeys)))
			for _, k := range p.metaKeys {
				v := c.Metadata[k]
				e.u16(uint16(len(k)))
				e.str(k)
				e.u32(uint32(len(v)))
				e.str(v)
			}
		case sectionQueues:
			e.u32(uint32(len(p.queueNames)))
			for _, name := range p.queueNames {
				e.u16(uint16(len(name)))
				e.str(name)
				e.u64(c.Queues[name])
			}
		case sectionState:
			e.bytes(c.State)
		default:
			e.bytes(c.Extra[name])
		}
	}

	if e.w == nil {
		e.u32(crc32.Checksum(e.buf, castagnoli))
		return
	}
	e.flush()
	e.u32(e.crc)
	e.flush()
}
