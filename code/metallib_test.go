package code_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hotkernel/hotkernel/code"
)

// No metallib can be built without Apple's tools, so the tests build their
// own, in the layout that metallib.go describes:
//
//	header (0x58 bytes)
//	function list: u32 count, then per function a tag group:
//	    u32 group size (counting itself), NAME, TYPE, HASH, MDSZ, OFFT,
//	    VERS, ENDT
//	header extension: ENDT alone
//	public metadata: per function a u32 4 and ENDT
//	private metadata: the same
//	bitcode: the functions' bitcode, one after the other
//
// The header's function list size counts the tag groups, not the count.

type mtlbFunc struct {
	name    string
	typ     byte
	bitcode []byte
}

type mtlbLayout struct {
	// sizeCountsCount makes the function list size count the u32 count
	// too, with an ENDT marker right after the groups.
	sizeCountsCount bool
	// groupSizeWithoutSelf leaves each group size's own 4 bytes out of it.
	groupSizeWithoutSelf bool
}

func mtlbTag(name string, content []byte) []byte {
	b := append([]byte(name), 0, 0)
	binary.LittleEndian.PutUint16(b[4:], uint16(len(content)))
	return append(b, content...)
}

func mtlbBuild(funcs []mtlbFunc, layout mtlbLayout) []byte {
	le := binary.LittleEndian
	var groups, public, private, bitcode []byte
	for _, f := range funcs {
		sum := sha256.Sum256(f.bitcode)
		offt := make([]byte, 24)
		le.PutUint64(offt, uint64(len(public)))
		le.PutUint64(offt[8:], uint64(len(private)))
		le.PutUint64(offt[16:], uint64(len(bitcode)))
		tags := bytes.Join([][]byte{
			mtlbTag("NAME", append([]byte(f.name), 0)),
			mtlbTag("TYPE", []byte{f.typ}),
			mtlbTag("HASH", sum[:]),
			mtlbTag("MDSZ", le.AppendUint64(nil, uint64(len(f.bitcode)))),
			mtlbTag("OFFT", offt),
			mtlbTag("VERS", []byte{2, 0, 6, 0, 3, 0, 0, 0}),
			[]byte("ENDT"),
		}, nil)
		size := 4 + len(tags)
		if layout.groupSizeWithoutSelf {
			size -= 4
		}
		groups = le.AppendUint32(groups, uint32(size))
		groups = append(groups, tags...)
		public = append(le.AppendUint32(public, 4), "ENDT"...)
		private = append(le.AppendUint32(private, 4), "ENDT"...)
		bitcode = append(bitcode, f.bitcode...)
	}
	list := append(le.AppendUint32(nil, uint32(len(funcs))), groups...)
	listSize := len(groups)
	if layout.sizeCountsCount {
		listSize += 4
	}
	list = append(list, "ENDT"...) // the header extension, or the marker

	const header = 0x58
	b := make([]byte, header)
	copy(b, "MTLB")
	le.PutUint16(b[4:], 0x8001) // macOS
	le.PutUint16(b[6:], 1)      // version 1.2
	le.PutUint16(b[8:], 2)
	b[10] = 0    // executable
	b[11] = 0x81 // macOS
	le.PutUint16(b[12:], 14)
	le.PutUint16(b[14:], 0)
	sections := [][]byte{list, public, private, bitcode}
	sizes := []int{listSize, len(public), len(private), len(bitcode)}
	if len(funcs) == 0 {
		sections[0], sizes[0] = nil, 0
	}
	off := header
	for i, s := range sections {
		le.PutUint64(b[0x18+16*i:], uint64(off))
		le.PutUint64(b[0x20+16*i:], uint64(sizes[i]))
		off += len(s)
	}
	for _, s := range sections {
		b = append(b, s...)
	}
	le.PutUint64(b[0x10:], uint64(len(b)))
	return b
}

// mtlbSample are the functions of testdata/metallib/shaders.metallib.
var mtlbSample = []mtlbFunc{
	{"add_arrays", 2, []byte("\xde\xc0\x17\x0b add_arrays bitcode")},
	{"vertex_main", 0, []byte("\xde\xc0\x17\x0b vertex_main bitcode")},
	{"scale", 2, []byte("\xde\xc0\x17\x0b scale bitcode")},
	{"fragment_main", 1, []byte("\xde\xc0\x17\x0b fragment_main bitcode")},
	{"helper", 4, []byte("\xde\xc0\x17\x0b visible helper bitcode")},
}

// TestMetallibTestdata checks that the committed sample is what the
// builder makes; HOTKERNEL_WRITE_METALLIB=1 rewrites it (testdata/metallib/gen.sh).
func TestMetallibTestdata(t *testing.T) {
	path := filepath.Join("testdata", "metallib", "shaders.metallib")
	b := mtlbBuild(mtlbSample, mtlbLayout{})
	if os.Getenv("HOTKERNEL_WRITE_METALLIB") == "1" {
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if got := binaryTestdata(t, "metallib", "shaders.metallib"); !bytes.Equal(got, b) {
		t.Errorf("%s differs from the builder's output; run testdata/metallib/gen.sh", path)
	}
}

func TestMetallib(t *testing.T) {
	layouts := map[string]mtlbLayout{
		"groups only":                 {},
		"size counts the count":       {sizeCountsCount: true},
		"group size without its size": {groupSizeWithoutSelf: true},
		"both the other way":          {sizeCountsCount: true, groupSizeWithoutSelf: true},
	}
	for name, layout := range layouts {
		t.Run(name, func(t *testing.T) {
			b := mtlbBuild(mtlbSample, layout)
			if f := code.FormatFromContent(b); f != code.FormatMetallib {
				t.Errorf("FormatFromContent = %v", f)
			}
			info, err := code.Inspect(code.FormatMetallib, b, code.Options{Name: "shaders.metallib"})
			if err != nil {
				t.Fatal(err)
			}
			if info.Version != "1.2" {
				t.Errorf("Version = %q", info.Version)
			}
			var entries, others []string
			for _, e := range info.Entries {
				entries = append(entries, e.Name+":"+e.Kind)
			}
			for _, e := range info.Others {
				others = append(others, e.Name+":"+e.Kind)
			}
			if got := strings.Join(entries, ","); got != "add_arrays:kernel,scale:kernel" {
				t.Errorf("entries %s", got)
			}
			if got := strings.Join(others, ","); got != "vertex_main:vertex,fragment_main:fragment" {
				t.Errorf("others %s", got)
			}
			for _, e := range append(info.Entries, info.Others...) {
				if !e.HasOffset || !bytes.HasPrefix(b[e.Offset+4:], append([]byte("NAME"), byte(len(e.Name)+1), 0)) {
					t.Errorf("entry %+v: offset is not its tag group", e)
				}
			}
		})
	}
}

func TestMetallibValidateEntry(t *testing.T) {
	b := binaryTestdata(t, "metallib", "shaders.metallib")
	opts := code.Options{Name: "shaders.metallib"}
	if _, err := code.Validate(code.FromMetallib(b, "scale"), opts); err != nil {
		t.Error(err)
	}
	_, err := code.Validate(code.FromMetallib(b, "vertex_main"), opts)
	wantBinaryErr(t, err, code.ErrEntryNotFound, -1, `entry "vertex_main" is a vertex entry point, not a compute entry point`)
	_, err = code.Validate(code.FromMetallib(b, "helper"), opts)
	wantBinaryErr(t, err, code.ErrEntryNotFound, -1, `entry "helper" not found; entries: add_arrays, scale`)
	info, _ := code.Inspect(code.FormatMetallib, b, opts)
	_, err = code.Validate(code.FromMetallib(b, "nope"), opts)
	e := wantBinaryErr(t, err, code.ErrEntryNotFound, info.Entries[0].Offset, `entry "nope" not found`)
	if !strings.HasPrefix(e.Error(), "shaders.metallib: byte ") {
		t.Errorf("message %q", e)
	}

	// Only render functions.
	render := mtlbBuild([]mtlbFunc{{"vs", 0, []byte("v")}, {"fs", 1, []byte("f")}}, mtlbLayout{})
	_, err = code.Inspect(code.FormatMetallib, render, opts)
	wantBinaryErr(t, err, code.ErrNoEntries, -1, "no compute entry point (only fragment fs, vertex vs)")
	// No functions at all.
	_, err = code.Inspect(code.FormatMetallib, mtlbBuild(nil, mtlbLayout{}), opts)
	wantBinaryErr(t, err, code.ErrNoEntries, -1, "no compute entry point")
}

func TestMetallibMalformed(t *testing.T) {
	good := mtlbBuild(mtlbSample, mtlbLayout{})
	one := mtlbBuild(mtlbSample[:1], mtlbLayout{})
	le := binary.LittleEndian
	patch := func(b []byte, f func(b []byte)) []byte {
		b = bytes.Clone(b)
		f(b)
		return b
	}
	n := uint64(len(good))
	list := int64(le.Uint64(good[0x18:]))
	group := list + 4        // the first tag group
	tags := group + 4        // its first tag, NAME
	typeTag := tags + 6 + 11 // "add_arrays\x00" is 11 bytes
	bitcode := le.Uint64(good[0x48:])
	// tagAt finds the first tag called name.
	tagAt := func(b []byte, name string) int { return bytes.Index(b, []byte(name)) }

	tests := []struct {
		name   string
		b      []byte
		off    int64
		substr string
	}{
		{"bad magic", patch(good, func(b []byte) { b[0] = 'X' }), 0, "bad magic number"},
		{"truncated header", good[:40], 40, "truncated header: 40 bytes"},
		{"magic only", good[:4], 4, "truncated header"},
		{"file longer than its size", append(bytes.Clone(good), 0), 0x10, "header file size"},
		{"truncated", good[:len(good)-1], 0x10, "does not match the file length"},
		{"file size field", patch(good, func(b []byte) { le.PutUint64(b[0x10:], 1<<40) }), 0x10, "header file size 1099511627776"},
		{"function list past the end", patch(good, func(b []byte) { le.PutUint64(b[0x18:], n) }), 0x18, "function list section"},
		{"function list size past the end", patch(good, func(b []byte) { le.PutUint64(b[0x20:], n) }), 0x18, "does not lie inside the file"},
		{"function list in the header", patch(good, func(b []byte) { le.PutUint64(b[0x18:], 0x10) }), 0x18, "after the header"},
		{"public metadata offset overflows", patch(good, func(b []byte) { le.PutUint64(b[0x28:], 1<<63) }), 0x28, "public metadata section"},
		{"private metadata size huge", patch(good, func(b []byte) { le.PutUint64(b[0x40:], 1<<63) }), 0x38, "private metadata section"},
		{"bitcode past the end", patch(good, func(b []byte) { le.PutUint64(b[0x50:], n-bitcode+1) }), 0x48, "bitcode section"},
		{"function count too large", patch(good, func(b []byte) { le.PutUint32(b[list:], 1000) }), list, "function count 1000 cannot fit"},
		{"fewer functions than the list holds", patch(good, func(b []byte) { le.PutUint32(b[list:], 4) }), -1, "function list size"},
		{"group size wrong", patch(good, func(b []byte) { le.PutUint32(b[group:], 7) }), group, "tag group size 7 does not match its tags"},
		{"tag past the end", patch(one, func(b []byte) { le.PutUint16(b[tagAt(b, "VERS")+4:], 500) }), int64(tagAt(one, "VERS")), `tag "VERS" of 500 bytes runs past the end`},
		{"no ENDT", patch(one, func(b []byte) { copy(b[tagAt(b, "ENDT"):], "ENDX") }), int64(tagAt(one, "ENDT")), `tag "ENDX" runs past the end of the function list`},
		{"name not terminated", patch(good, func(b []byte) { b[tags+6+10] = 'x' }), tags, "NAME is not one nul-terminated string"},
		{"empty name", patch(one, func(b []byte) { b[tags+6] = 0 }), tags, "NAME is not one nul-terminated string"},
		{"type of two bytes", patch(good, func(b []byte) { le.PutUint16(b[typeTag+4:], 2) }), typeTag, `tag "TYPE" has 2 bytes, want 1`},
		{"no type", patch(good, func(b []byte) { copy(b[typeTag:], "TYPX") }), group, "has no NAME or no TYPE tag"},
		{"bitcode outside its section", patch(one, func(b []byte) { le.PutUint64(b[tagAt(b, "MDSZ")+6:], 1000) }), group, "does not lie inside the bitcode section"},
		{"bitcode hash", patch(good, func(b []byte) { b[bitcode+5]++ }), int64(bitcode), `function "add_arrays": its bitcode does not match its SHA-256 hash`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := code.Inspect(code.FormatMetallib, tt.b, code.Options{Name: "bad.metallib"})
			wantBinaryErr(t, err, code.ErrMalformed, tt.off, tt.substr)
		})
	}
}

func FuzzMetallib(f *testing.F) {
	f.Add(mtlbBuild(mtlbSample, mtlbLayout{}))
	f.Add(mtlbBuild(mtlbSample[:1], mtlbLayout{sizeCountsCount: true}))
	f.Add(mtlbBuild(mtlbSample[1:3], mtlbLayout{groupSizeWithoutSelf: true}))
	f.Add(mtlbBuild(nil, mtlbLayout{}))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) == 0 {
			return
		}
		info, err := code.Inspect(code.FormatMetallib, b, code.Options{})
		checkFuzzResult(t, info, err)
	})
}
