package checkpoint

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
	"time"
	"unsafe"
)

func TestRoundTrip(t *testing.T) {
	big := make([]byte, 16<<20)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range big {
		big[i] = byte(r.Uint32())
	}
	cases := map[string]*Checkpoint{
		"minimal": minimal(),
		"empty non-nil": {
			KernelID: "k", Created: sampleTime, State: []byte{},
			Queues: map[string]uint64{}, Metadata: map[string]string{}, Extra: map[string][]byte{},
		},
		"sample":    sample(),
		"big state": {KernelID: "big", Created: sampleTime, State: big},
		"limits": {
			KernelID:    strings.Repeat("é", MaxKernelIDLen/2),
			CodeVersion: math.MaxUint64,
			Created:     time.Unix(0, math.MinInt64),
			Queues:      map[string]uint64{strings.Repeat("q", MaxNameLen): math.MaxUint64, "a": 0},
			Metadata:    map[string]string{strings.Repeat("m", MaxNameLen): "", "empty": ""},
			Extra:       map[string][]byte{strings.Repeat("x", MaxSectionNameLen): nil, "0": {0}, "state.v2": {1, 2}},
		},
		"latest time": {KernelID: "k", Created: time.Unix(0, math.MaxInt64)},
		"local time":  {KernelID: "k", Created: sampleTime.In(time.FixedZone("X", 3600))},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			b := mustEncode(t, c)
			d, err := Decode(b)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if s := diff(c, d); s != "" {
				t.Fatalf("round trip: %s", s)
			}
			if d.Created.Location() != time.UTC {
				t.Errorf("Created location %v, want UTC", d.Created.Location())
			}
			if d.Queues == nil || d.Metadata == nil {
				t.Errorf("Decode returned nil maps")
			}
			if len(c.Extra) == 0 && d.Extra != nil {
				t.Errorf("Decode returned non-nil Extra %v", d.Extra)
			}
			again := mustEncode(t, d)
			if !bytes.Equal(again, b) {
				t.Fatalf("encode(decode(x)) differs from x")
			}

			var w bytes.Buffer
			n, err := c.WriteTo(&w)
			if err != nil || n != int64(len(b)) || !bytes.Equal(w.Bytes(), b) {
				t.Fatalf("WriteTo = %d, %v; bytes equal %v", n, err, bytes.Equal(w.Bytes(), b))
			}

			var u Checkpoint
			if err := u.UnmarshalBinary(b); err != nil {
				t.Fatalf("UnmarshalBinary: %v", err)
			}
			if s := diff(c, &u); s != "" {
				t.Fatalf("UnmarshalBinary: %s", s)
			}
		})
	}
}

func TestSizes(t *testing.T) {
	b := mustEncode(t, minimal())
	// header (72 + 1), section count, three sections, checksum
	want := 73 + 4 + (1 + 8 + 8 + 4) + (1 + 6 + 8 + 4) + (1 + 5 + 8) + 4
	if len(b) != want {
		t.Errorf("minimal checkpoint is %d bytes, want %d", len(b), want)
	}
	s := mustEncode(t, sample())
	if len(s) < 200 || len(s) > 600 {
		t.Errorf("sample is %d bytes; the bit-flip test wants a few hundred", len(s))
	}
}

func TestDeterministic(t *testing.T) {
	const n = 200
	build := func(order []int) *Checkpoint {
		c := &Checkpoint{KernelID: "det", Created: sampleTime, Queues: map[string]uint64{}, Metadata: map[string]string{}, Extra: map[string][]byte{}}
		for _, i := range order {
			c.Queues[fmt.Sprintf("q%03d", i)] = uint64(i)
			c.Metadata[fmt.Sprintf("k%03d", i)] = fmt.Sprint(i * i)
			c.Extra[fmt.Sprintf("x%03d", i)] = []byte{byte(i)}
		}
		return c
	}
	fwd := make([]int, n)
	rev := make([]int, n)
	for i := range n {
		fwd[i], rev[i] = i, n-1-i
	}
	shuf := append([]int(nil), fwd...)
	rand.New(rand.NewPCG(3, 4)).Shuffle(n, func(i, j int) { shuf[i], shuf[j] = shuf[j], shuf[i] })
	want := mustEncode(t, build(fwd))
	for _, order := range [][]int{rev, shuf} {
		if got := mustEncode(t, build(order)); !bytes.Equal(got, want) {
			t.Fatal("insertion order changed the encoding")
		}
	}
	for range 20 {
		if got := mustEncode(t, build(fwd)); !bytes.Equal(got, want) {
			t.Fatal("repeated encoding differs")
		}
	}
}

func TestDecodeDoesNotAlias(t *testing.T) {
	b := mustEncode(t, sample())
	c, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] = 0xff
	}
	if s := diff(sample(), c); s != "" {
		t.Fatalf("decoded checkpoint changed with its input: %s", s)
	}
}

func TestEveryBitFlip(t *testing.T) {
	b := mustEncode(t, sample())
	k := len(sample().KernelID)
	for i := range len(b) * 8 {
		f := bytes.Clone(b)
		f[i/8] ^= 1 << (i % 8)
		c, err := Decode(f)
		if err == nil {
			t.Fatalf("bit %d (byte %d) flipped: decoded %+v", i, i/8, c)
		}
		var fe *FormatError
		if !errors.As(err, &fe) {
			t.Fatalf("bit %d: error %T is not a *FormatError: %v", i, err, err)
		}
		var want error
		switch at := i / 8; {
		case at < offVersion:
			want = ErrBadMagic
		case at < offTotal:
			want = ErrVersion
		case at >= offIDLen && at < offID:
			// A changed kernel ID length moves the header checksum, or
			// leaves the allowed range.
			if !errors.Is(err, ErrChecksum) && !errors.Is(err, ErrCorrupt) {
				t.Fatalf("bit %d in the ID length: %v", i, err)
			}
			continue
		default:
			want = ErrChecksum
		}
		if !errors.Is(err, want) {
			t.Fatalf("bit %d (byte %d, header %d bytes): got %v, want %v", i, i/8, headerFixed+k, err, want)
		}
	}
}

func TestEveryTruncation(t *testing.T) {
	b := mustEncode(t, sample())
	for n := range len(b) {
		_, err := Decode(b[:n])
		if !errors.Is(err, ErrTruncated) {
			t.Fatalf("Decode of the first %d of %d bytes: %v, want ErrTruncated", n, len(b), err)
		}
		var fe *FormatError
		if !errors.As(err, &fe) || fe.Offset != int64(n) {
			t.Fatalf("Decode of %d bytes: error %v does not give offset %d", n, err, n)
		}
		if !strings.Contains(err.Error(), fmt.Sprintf("truncated at byte %d: ", n)) {
			t.Fatalf("message %q", err)
		}
		if _, err := Read(bytes.NewReader(b[:n])); n > 0 && !errors.Is(err, ErrTruncated) || n == 0 && err != io.EOF {
			t.Fatalf("Read of the first %d of %d bytes: %v, want ErrTruncated", n, len(b), err)
		}
	}
}

func TestTrailingBytes(t *testing.T) {
	b := append(mustEncode(t, sample()), 0)
	_, err := Decode(b)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "1 bytes follow the end") {
		t.Fatalf("got %v", err)
	}
}

func TestBadMagic(t *testing.T) {
	b := mustEncode(t, minimal())
	for _, in := range [][]byte{
		[]byte("PK\x03\x04 a zip file, not a checkpoint"),
		append([]byte("\x89HKCKPT\r\n"), b[8:]...), // line endings rewritten
		{0x88},
		[]byte("{}"),
	} {
		_, err := Decode(in)
		if !errors.Is(err, ErrBadMagic) {
			t.Fatalf("Decode(%q): %v, want ErrBadMagic", in[:min(len(in), 10)], err)
		}
		if !strings.HasPrefix(err.Error(), "not a checkpoint (magic ") {
			t.Errorf("message %q", err)
		}
		if _, err := Read(bytes.NewReader(in)); !errors.Is(err, ErrBadMagic) {
			t.Errorf("Read: %v, want ErrBadMagic", err)
		}
	}
}

func TestUnknownVersion(t *testing.T) {
	for _, v := range []uint16{0, 2, 0xffff} {
		b := mustEncode(t, sample())
		binary.LittleEndian.PutUint16(b[offVersion:], v)
		fixCRCs(b) // so that only the version check can object
		_, err := Decode(b)
		if !errors.Is(err, ErrVersion) {
			t.Fatalf("version %d: %v, want ErrVersion", v, err)
		}
		want := fmt.Sprintf("unsupported checkpoint format version %d (this build reads 1)", v)
		if err.Error() != want {
			t.Errorf("message %q, want %q", err, want)
		}
		if _, err := Read(bytes.NewReader(b)); !errors.Is(err, ErrVersion) {
			t.Errorf("Read: %v", err)
		}
	}
}

func TestChecksumMismatch(t *testing.T) {
	b := mustEncode(t, sample())
	b[len(b)-20] ^= 0x40 // inside the last section
	_, err := Decode(b)
	var fe *FormatError
	if !errors.As(err, &fe) || fe.Kind != ErrChecksum || fe.Offset != int64(len(b)-4) {
		t.Fatalf("got %#v", err)
	}
	if !strings.HasPrefix(err.Error(), "checkpoint checksum mismatch: stored 0x") || !strings.Contains(err.Error(), ", computed 0x") {
		t.Errorf("message %q", err)
	}

	b = mustEncode(t, sample())
	b[offTotal] ^= 1 // the declared length is covered by the header checksum
	_, err = Decode(b)
	if !errors.As(err, &fe) || fe.Kind != ErrChecksum || !strings.Contains(err.Error(), "header checksum mismatch") {
		t.Fatalf("got %v", err)
	}
}

// hostile checks that decoding b fails with want without a large
// allocation, by Decode and by Read.
func hostile(t *testing.T, b []byte, want error, msg string) {
	t.Helper()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err := Decode(b)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, want) {
		t.Fatalf("Decode: %v, want %v", err, want)
	}
	if msg != "" && !strings.Contains(err.Error(), msg) {
		t.Errorf("message %q does not contain %q", err, msg)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 64<<10 {
		t.Errorf("Decode allocated %d bytes for a %d-byte input", n, len(b))
	}
	runtime.ReadMemStats(&before)
	_, err = Read(bytes.NewReader(b))
	runtime.ReadMemStats(&after)
	if !errors.Is(err, want) {
		t.Fatalf("Read: %v, want %v", err, want)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 2<<20 {
		t.Errorf("Read allocated %d bytes for a %d-byte input", n, len(b))
	}
}

func TestHostileLengths(t *testing.T) {
	meta, queues := sec("metadata", emptyMeta()), sec("queues", emptyQueues())
	state := sec("state", []byte("st"))
	cases := []struct {
		name string
		b    []byte
		want error
		msg  string
	}{
		{"valid baseline", nil, nil, ""},
		{"section count max", frame("k", cat(le32(math.MaxUint32), meta, queues, state)), ErrCorrupt, "section count 4294967295 cannot fit"},
		{"section count one more", frame("k", cat(le32(4), meta, queues, state)), ErrCorrupt, "section name length needs 1 bytes"},
		{"state length 2^62", frame("k", cat(le32(3), meta, queues, secLen("state", 1<<62, []byte("st")))), ErrCorrupt, `section "state" needs 4611686018427387904 bytes`},
		{"state length max u64", frame("k", cat(le32(3), meta, queues, secLen("state", math.MaxUint64, []byte("st")))), ErrCorrupt, "needs 18446744073709551615 bytes"},
		{"section length overruns by one", frame("k", cat(le32(3), meta, queues, secLen("state", 3, []byte("st")))), ErrCorrupt, "only 2 remain"},
		{"queue count max", frame("k", cat(le32(3), meta, sec("queues", le32(math.MaxUint32)), state)), ErrCorrupt, "queue count 4294967295 cannot fit"},
		{"metadata count max", frame("k", cat(le32(3), sec("metadata", le32(math.MaxUint32)), queues, state)), ErrCorrupt, "metadata count 4294967295 cannot fit"},
		{"metadata value length max", frame("k", cat(le32(3), sec("metadata", cat(le32(1), le16(1), []byte("a"), le32(math.MaxUint32), []byte("v"))), queues, state)), ErrCorrupt, "metadata value needs 4294967295 bytes"},
		{"queue name length max", frame("k", cat(le32(3), meta, sec("queues", cat(le32(1), le16(math.MaxUint16), []byte("q"), le64(1))), state)), ErrCorrupt, "queue name needs 65535 bytes"},
		{"section name length max", frame("k", cat(le32(3), meta, queues, []byte{255}, []byte("state"), le64(2), []byte("st"))), ErrCorrupt, ""},
		{"declared total 2^63", setTotal(frame("k", stdBody(nil)), 1<<63), ErrTruncated, "checkpoint declares 9223372036854775808 bytes"},
		{"declared total max", setTotal(frame("k", stdBody(nil)), math.MaxUint64), ErrTruncated, ""},
		{"declared total too small", setTotal(frame("k", stdBody(nil)), 10), ErrCorrupt, "declared length 10"},
		{"kernel ID length 0", setIDLen(frame("k", stdBody(nil)), 0), ErrCorrupt, "kernel ID length 0 is outside"},
		{"kernel ID length max", setIDLen(frame("k", stdBody(nil)), math.MaxUint16), ErrCorrupt, "kernel ID length 65535"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.b == nil {
				if _, err := Decode(frame("k", stdBody([]byte("st")))); err != nil {
					t.Fatalf("hand-made baseline does not decode: %v", err)
				}
				return
			}
			hostile(t, tc.b, tc.want, tc.msg)
		})
	}
}

func setTotal(b []byte, n uint64) []byte {
	binary.LittleEndian.PutUint64(b[offTotal:], n)
	return fixCRCs(b)
}

func setIDLen(b []byte, n uint16) []byte {
	binary.LittleEndian.PutUint16(b[offIDLen:], n)
	return b // the header checksum cannot be placed; the length check comes first
}

func TestCorruptStructure(t *testing.T) {
	meta, queues, state := sec("metadata", emptyMeta()), sec("queues", emptyQueues()), sec("state", nil)
	q := func(entries ...[]byte) []byte { return sec("queues", cat(le32(uint32(len(entries))), cat(entries...))) }
	qe := func(name string, v uint64) []byte { return cat(le16(uint16(len(name))), []byte(name), le64(v)) }
	m := func(entries ...[]byte) []byte {
		return sec("metadata", cat(le32(uint32(len(entries))), cat(entries...)))
	}
	me := func(k, v string) []byte { return cat(le16(uint16(len(k))), []byte(k), le32(uint32(len(v))), []byte(v)) }
	cases := []struct {
		name string
		b    []byte
		msg  string
	}{
		{"missing state", frame("k", cat(le32(2), meta, queues)), `missing section "state"`},
		{"missing metadata", frame("k", cat(le32(2), queues, state)), `missing section "metadata"`},
		{"no sections", frame("k", le32(0)), `missing section "metadata"`},
		{"duplicate section", frame("k", cat(le32(4), meta, queues, state, state)), `duplicate section "state"`},
		{"sections out of order", frame("k", cat(le32(3), queues, meta, state)), `section "metadata" follows "queues"`},
		{"duplicate extra", frame("k", cat(le32(5), sec("a", nil), sec("a", nil), meta, queues, state)), `duplicate section "a"`},
		{"empty section name", frame("k", cat(le32(4), sec("", nil), meta, queues, state)), "section name"},
		{"uppercase section name", frame("k", cat(le32(4), sec("Zz", nil), meta, queues, state)), `section name "Zz"`},
		{"queue names out of order", frame("k", cat(le32(3), meta, q(qe("b", 1), qe("a", 2)), state)), `queue name "a" follows "b"`},
		{"duplicate queue", frame("k", cat(le32(3), meta, q(qe("a", 1), qe("a", 2)), state)), `duplicate queue name "a"`},
		{"empty queue name", frame("k", cat(le32(3), meta, sec("queues", cat(le32(1), qe("", 1), []byte{0})), state)), "queue name \"\" is empty"},
		{"queue name not UTF-8", frame("k", cat(le32(3), meta, q(qe("\xff", 1)), state)), "not valid UTF-8"},
		{"queues trailing bytes", frame("k", cat(le32(3), meta, sec("queues", cat(le32(0), []byte{0})), state)), `1 unused bytes at the end of section "queues"`},
		{"metadata keys out of order", frame("k", cat(le32(3), m(me("b", ""), me("a", "")), queues, state)), `metadata key "a" follows "b"`},
		{"duplicate metadata key", frame("k", cat(le32(3), m(me("a", "1"), me("a", "2")), queues, state)), `duplicate metadata key "a"`},
		{"metadata value not UTF-8", frame("k", cat(le32(3), m(me("a", "\xc3")), queues, state)), "not valid UTF-8"},
		{"metadata key not UTF-8", frame("k", cat(le32(3), m(me("\xc3", "")), queues, state)), "not valid UTF-8"},
		{"bytes after the last section", frame("k", cat(stdBody(nil), []byte{1, 2})), "2 bytes between the last section and the checksum"},
		{"kernel ID not UTF-8", frame("\xfe", stdBody(nil)), "kernel ID \"\\xfe\" is not valid UTF-8"},
		{"kernel ID with NUL", frame("a\x00b", stdBody(nil)), "contains a NUL byte"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode(tc.b)
			var fe *FormatError
			if !errors.As(err, &fe) || fe.Kind != ErrCorrupt {
				t.Fatalf("got %v, want a corrupt-checkpoint error", err)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("message %q does not contain %q", err, tc.msg)
			}
			if fe.Offset <= 0 || fe.Offset >= int64(len(tc.b)) {
				t.Errorf("offset %d outside the input", fe.Offset)
			}
		})
	}
}

func TestUnknownSectionsKept(t *testing.T) {
	b := frame("k", cat(le32(5), sec("a.first", []byte{1}), sec("metadata", emptyMeta()), sec("queues", emptyQueues()),
		sec("state", []byte("s")), sec("zeta", []byte("newer writer"))))
	c, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if string(c.Extra["zeta"]) != "newer writer" || string(c.Extra["a.first"]) != "\x01" || len(c.Extra) != 2 {
		t.Fatalf("Extra = %q", c.Extra)
	}
	// frame writes code version 1 and a zero SHA-256; nothing else is lost.
	if again := mustEncode(t, c); !bytes.Equal(again, b) {
		t.Fatal("re-encoding changed the bytes")
	}
}

func TestValidate(t *testing.T) {
	bad := map[string]func(c *Checkpoint){
		"nil":                    nil,
		"empty kernel ID":        func(c *Checkpoint) { c.KernelID = "" },
		"long kernel ID":         func(c *Checkpoint) { c.KernelID = strings.Repeat("k", MaxKernelIDLen+1) },
		"kernel ID not UTF-8":    func(c *Checkpoint) { c.KernelID = "k\xff" },
		"kernel ID with NUL":     func(c *Checkpoint) { c.KernelID = "k\x00" },
		"zero time":              func(c *Checkpoint) { c.Created = time.Time{} },
		"time after 2262":        func(c *Checkpoint) { c.Created = time.Date(2263, 1, 1, 0, 0, 0, 0, time.UTC) },
		"time before 1678":       func(c *Checkpoint) { c.Created = time.Date(1677, 1, 1, 0, 0, 0, 0, time.UTC) },
		"empty queue name":       func(c *Checkpoint) { c.Queues[""] = 1 },
		"long queue name":        func(c *Checkpoint) { c.Queues[strings.Repeat("q", MaxNameLen+1)] = 1 },
		"queue name not UTF-8":   func(c *Checkpoint) { c.Queues["\xff"] = 1 },
		"empty metadata key":     func(c *Checkpoint) { c.Metadata[""] = "v" },
		"metadata key not UTF-8": func(c *Checkpoint) { c.Metadata["\xff"] = "v" },
		"metadata value":         func(c *Checkpoint) { c.Metadata["k"] = "\xff" },
		"extra named state":      func(c *Checkpoint) { c.Extra["state"] = nil },
		"extra named queues":     func(c *Checkpoint) { c.Extra["queues"] = nil },
		"extra uppercase":        func(c *Checkpoint) { c.Extra["Trace"] = nil },
		"extra empty name":       func(c *Checkpoint) { c.Extra[""] = nil },
		"extra long name":        func(c *Checkpoint) { c.Extra[strings.Repeat("x", MaxSectionNameLen+1)] = nil },
	}
	for name, mod := range bad {
		t.Run(name, func(t *testing.T) {
			var c *Checkpoint
			if mod != nil {
				c = sample()
				mod(c)
			}
			err := c.Validate()
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Validate: %v, want ErrInvalid", err)
			}
			if b, err := c.MarshalBinary(); !errors.Is(err, ErrInvalid) || b != nil {
				t.Errorf("MarshalBinary: %d bytes, %v", len(b), err)
			}
			var w bytes.Buffer
			if n, err := c.WriteTo(&w); !errors.Is(err, ErrInvalid) || n != 0 || w.Len() != 0 {
				t.Errorf("WriteTo: %d, %v, wrote %d bytes", n, err, w.Len())
			}
		})
	}
	if err := sample().Validate(); err != nil {
		t.Fatalf("sample: %v", err)
	}
	// Messages are deterministic even though maps are not ordered.
	c := sample()
	for i := range 20 {
		c.Queues[fmt.Sprintf("\xff%d", i)] = 1
	}
	first := c.Validate().Error()
	for range 20 {
		if got := c.Validate().Error(); got != first {
			t.Fatalf("Validate reports %q, then %q", first, got)
		}
	}
}

func TestCheckKernelID(t *testing.T) {
	for _, id := range []string{"k", "a/b", "..", strings.Repeat("é", 128), "名前"} {
		if err := CheckKernelID(id); err != nil {
			t.Errorf("CheckKernelID(%q): %v", id, err)
		}
	}
	for _, id := range []string{"", "\x00", "\xff", strings.Repeat("k", 257)} {
		if err := CheckKernelID(id); !errors.Is(err, ErrInvalid) {
			t.Errorf("CheckKernelID(%q): %v, want ErrInvalid", id, err)
		}
	}
}

func TestUnmarshalBinaryKeepsOnError(t *testing.T) {
	c := sample()
	b := mustEncode(t, minimal())
	if err := c.UnmarshalBinary(b[:len(b)-1]); !errors.Is(err, ErrTruncated) {
		t.Fatalf("got %v", err)
	}
	if s := diff(c, sample()); s != "" {
		t.Fatalf("failed UnmarshalBinary changed the checkpoint: %s", s)
	}
}

func TestReadStream(t *testing.T) {
	var w bytes.Buffer
	cs := []*Checkpoint{sample(), minimal(), sample()}
	cs[2].State = bytes.Repeat([]byte("x"), 3<<20)
	for _, c := range cs {
		if _, err := c.WriteTo(&w); err != nil {
			t.Fatal(err)
		}
	}
	r := bytes.NewReader(w.Bytes())
	for i, c := range cs {
		d, err := Read(r)
		if err != nil {
			t.Fatalf("checkpoint %d: %v", i, err)
		}
		if s := diff(c, d); s != "" {
			t.Fatalf("checkpoint %d: %s", i, s)
		}
	}
	if _, err := Read(r); err != io.EOF {
		t.Fatalf("Read at the end of the stream: %v, want io.EOF", err)
	}
	boom := errors.New("boom")
	if _, err := Read(io.MultiReader(bytes.NewReader(w.Bytes()[:100]), errReader{boom})); !errors.Is(err, boom) {
		t.Fatalf("reader error: got %v", err)
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

// failWriter fails once it has taken limit bytes.
type failWriter struct {
	limit int
	n     int
}

func (w *failWriter) Write(p []byte) (int, error) {
	if w.n+len(p) > w.limit {
		m := w.limit - w.n
		w.n = w.limit
		return m, errors.New("disk full")
	}
	w.n += len(p)
	return len(p), nil
}

func TestWriteToError(t *testing.T) {
	c := sample()
	c.State = make([]byte, 1<<20)
	for _, limit := range []int{0, 10, 300, 100 << 10, 1<<20 + 100} {
		w := &failWriter{limit: limit}
		n, err := c.WriteTo(w)
		if err == nil || n != int64(limit) {
			t.Errorf("limit %d: WriteTo = %d, %v", limit, n, err)
		}
	}
}

// recordWriter keeps the slices it is given without copying them.
type recordWriter struct{ writes [][]byte }

func (w *recordWriter) Write(p []byte) (int, error) {
	w.writes = append(w.writes, p)
	return len(p), nil
}

func TestWriteToDoesNotCopyState(t *testing.T) {
	c := sample()
	c.State = make([]byte, 1<<20)
	w := &recordWriter{}
	if _, err := c.WriteTo(w); err != nil {
		t.Fatal(err)
	}
	for _, p := range w.writes {
		if len(p) == len(c.State) && unsafe.SliceData(p) == unsafe.SliceData(c.State) {
			return
		}
	}
	t.Fatal("State was not passed to the writer as it is")
}

func TestErrorsAs(t *testing.T) {
	b := mustEncode(t, sample())
	_, err := Decode(b[:50])
	wrapped := fmt.Errorf("restore: %w", err)
	var fe *FormatError
	if !errors.As(wrapped, &fe) || fe.Offset != 50 || !errors.Is(wrapped, ErrTruncated) || errors.Is(wrapped, ErrCorrupt) {
		t.Fatalf("got %#v", fe)
	}
}
