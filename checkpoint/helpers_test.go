package checkpoint

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"maps"
	"testing"
	"time"
)

var sampleTime = time.Date(2026, 3, 14, 15, 9, 26, 535897932, time.UTC)

// sample returns a checkpoint of a few hundred bytes with every section
// present, an extra one included.
func sample() *Checkpoint {
	state := make([]byte, 96)
	for i := range state {
		state[i] = byte(i*7 + 3)
	}
	return &Checkpoint{
		KernelID:    "matmul/tile-64",
		CodeVersion: 7,
		CodeSHA256:  sha256.Sum256([]byte("kernel code v7")),
		Created:     sampleTime,
		State:       state,
		Queues: map[string]uint64{
			"input.enqueued":  1234,
			"input.processed": 1200,
			"output.emitted":  1199,
		},
		Metadata: map[string]string{
			"host":   "gpu-node-3",
			"reason": "before reload to v8",
			"ünï":    "cödé",
		},
		Extra: map[string][]byte{"zz.trace": []byte("trace-data")},
	}
}

// minimal returns a checkpoint with every optional part empty.
func minimal() *Checkpoint {
	return &Checkpoint{KernelID: "k", Created: time.Unix(0, 1)}
}

func mustEncode(t testing.TB, c *Checkpoint) []byte {
	t.Helper()
	b, err := c.MarshalBinary()
	if err != nil {
		t.Fatalf("MarshalBinary: %v", err)
	}
	return b
}

// diff returns "" when a and b hold the same checkpoint, treating nil and
// empty slices and maps alike, else a description of the first difference.
func diff(a, b *Checkpoint) string {
	switch {
	case a.KernelID != b.KernelID:
		return fmt.Sprintf("KernelID %q != %q", a.KernelID, b.KernelID)
	case a.CodeVersion != b.CodeVersion:
		return fmt.Sprintf("CodeVersion %d != %d", a.CodeVersion, b.CodeVersion)
	case a.CodeSHA256 != b.CodeSHA256:
		return "CodeSHA256 differs"
	case !a.Created.Equal(b.Created):
		return fmt.Sprintf("Created %v != %v", a.Created, b.Created)
	case !bytes.Equal(a.State, b.State):
		return fmt.Sprintf("State differs (%d vs %d bytes)", len(a.State), len(b.State))
	case !maps.Equal(a.Queues, b.Queues):
		return fmt.Sprintf("Queues %v != %v", a.Queues, b.Queues)
	case !maps.Equal(a.Metadata, b.Metadata):
		return fmt.Sprintf("Metadata %v != %v", a.Metadata, b.Metadata)
	case !maps.EqualFunc(a.Extra, b.Extra, bytes.Equal):
		return "Extra differs"
	}
	return ""
}

// Raw building blocks for hand-made encodings.

func le16(v uint16) []byte { return binary.LittleEndian.AppendUint16(nil, v) }
func le32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }
func le64(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// sec encodes a section with its true payload length.
func sec(name string, payload []byte) []byte {
	return secLen(name, uint64(len(payload)), payload)
}

// secLen encodes a section with a chosen payload length.
func secLen(name string, n uint64, payload []byte) []byte {
	return cat([]byte{byte(len(name))}, []byte(name), le64(n), payload)
}

func emptyMeta() []byte   { return le32(0) }
func emptyQueues() []byte { return le32(0) }

// stdBody is a valid body: the section count and the three standard
// sections, with the given state.
func stdBody(state []byte) []byte {
	return cat(le32(3), sec("metadata", emptyMeta()), sec("queues", emptyQueues()), sec("state", state))
}

// frame puts a header for kernel id in front of body and the checksum
// behind it, with a correct total length and correct checksums.
func frame(id string, body []byte) []byte {
	b := cat([]byte(magic), le16(FormatVersion), le64(0), le16(uint16(len(id))), []byte(id),
		le64(1), make([]byte, 32), le64(uint64(sampleTime.UnixNano())), le32(0))
	b = append(b, body...)
	b = append(b, 0, 0, 0, 0)
	binary.LittleEndian.PutUint64(b[offTotal:], uint64(len(b)))
	return fixCRCs(b)
}

// fixCRCs recomputes both checksums of b in place, using the kernel ID
// length stored in b, and returns b.
func fixCRCs(b []byte) []byte {
	k := int(binary.LittleEndian.Uint16(b[offIDLen:]))
	at := headerFixed + k - 4
	binary.LittleEndian.PutUint32(b[at:], crc32.Checksum(b[:at], castagnoli))
	end := len(b) - 4
	binary.LittleEndian.PutUint32(b[end:], crc32.Checksum(b[:end], castagnoli))
	return b
}
