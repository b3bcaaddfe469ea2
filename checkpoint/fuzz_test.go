package checkpoint

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

// FuzzDecode checks that Decode never panics, that every failure is a
// *FormatError with an offset inside the input, that whatever decodes
// encodes back to the same bytes, by MarshalBinary and by WriteTo, and
// that Read agrees with Decode. The seed corpus in
// testdata/fuzz/FuzzDecode holds valid checkpoints of several shapes and
// damaged ones.
func FuzzDecode(f *testing.F) {
	f.Add(mustEncode(f, sample()))
	f.Add(mustEncode(f, minimal()))
	f.Fuzz(checkDecode)
}

// FuzzDecodeStructure is FuzzDecode with the declared length and both
// checksums made right before decoding, so that mutations reach the
// structural checks behind them instead of failing the checksum.
func FuzzDecodeStructure(f *testing.F) {
	f.Add(mustEncode(f, sample()))
	f.Add(mustEncode(f, minimal()))
	f.Add(frame("k", cat(le32(4), sec("a", []byte{1}), stdBody([]byte("s"))[4:])))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) >= offID {
			k := int(binary.LittleEndian.Uint16(b[offIDLen:]))
			if k >= 1 && k <= MaxKernelIDLen && len(b) >= headerFixed+k+4 {
				binary.LittleEndian.PutUint64(b[offTotal:], uint64(len(b)))
				fixCRCs(b)
			}
		}
		checkDecode(t, b)
	})
}

func checkDecode(t *testing.T, b []byte) {
	c, err := Decode(b)
	if err != nil {
		var fe *FormatError
		if !errors.As(err, &fe) {
			t.Fatalf("error %T is not a *FormatError: %v", err, err)
		}
		if fe.Offset < 0 || fe.Offset > int64(len(b)) {
			t.Fatalf("offset %d outside the %d-byte input: %v", fe.Offset, len(b), err)
		}
		// Read stops at the declared end, so it may accept a prefix of
		// b, but never all of it.
		if r, rerr := Read(bytes.NewReader(b)); rerr == nil {
			out, merr := r.MarshalBinary()
			if merr != nil || len(out) >= len(b) || !bytes.Equal(out, b[:len(out)]) {
				t.Fatalf("Read accepts what Decode rejects: %v", err)
			}
		}
		return
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("decoded checkpoint fails Validate: %v", err)
	}
	out, err := c.MarshalBinary()
	if err != nil {
		t.Fatalf("MarshalBinary of a decoded checkpoint: %v", err)
	}
	if !bytes.Equal(out, b) {
		t.Fatalf("encode(decode(x)) != x:\n x = %x\nre = %x", b, out)
	}
	var w bytes.Buffer
	if n, err := c.WriteTo(&w); err != nil || n != int64(len(b)) || !bytes.Equal(w.Bytes(), b) {
		t.Fatalf("WriteTo = %d, %v", n, err)
	}
	r, err := Read(bytes.NewReader(b))
	if err != nil || diff(r, c) != "" {
		t.Fatalf("Read: %v", err)
	}
}
