package code

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"unicode/utf8"
)

// A metallib is Apple's container of compiled Metal functions. Apple does
// not document it; the layout below is the one the Metal tools write as
// far as it is publicly known, all integers little-endian:
//
//	0x00  "MTLB"
//	0x04  u16 target platform (0x8001 macOS, 0x0001 iOS)
//	0x06  u16, u16 file format version, major and minor
//	0x0a  u8 library type (0 executable, 1 Core Image, 2 dynamic, 3 symbol companion)
//	0x0b  u8 target OS
//	0x0c  u16, u16 target OS version, major and minor
//	0x10  u64 file size
//	0x18  u64, u64 function list offset and size
//	0x28  u64, u64 public metadata offset and size
//	0x38  u64, u64 private metadata offset and size
//	0x48  u64, u64 bitcode offset and size
//	0x58  end of header
//
// The function list is a u32 function count and then one tag group per
// function. A tag group is a u32 size and then tags — a four-character
// name, a u16 length and that many bytes — up to an "ENDT" tag that has
// neither length nor content. The tags used here are NAME (the function
// name, nul-terminated), TYPE (u8: 0 vertex, 1 fragment, 2 kernel, 3
// unqualified, 4 visible, 5 extern, 6 intersection, 7 mesh, 8 object),
// MDSZ (u64 bitcode size), OFFT (three u64: the function's offsets in the
// public metadata, private metadata and bitcode sections) and HASH (the
// SHA-256 of the function's bitcode). The function list size counts the
// groups but not the u32 count before them; some writers count the count
// and follow the list with an "ENDT" marker instead, and both are
// accepted. A tag group's size counts its own u32 in the files seen;
// a size that leaves it out is accepted too.
//
// What is checked: the magic, the header file size against the file
// length, that every section lies inside the file after the header, the
// function list's framing, each function's name and type, and — when a
// function gives them — that its bitcode lies inside the bitcode section
// and matches its hash.

const (
	mtlbHeaderSize = 0x58
	mtlbTypeKernel = 2
)

// mtlbOtherKinds names the function types that are entry points of another
// kind. Unqualified, visible and extern functions are not entry points.
var mtlbOtherKinds = map[byte]string{
	0: "vertex",
	1: "fragment",
	6: "intersection",
	7: "mesh",
	8: "object",
}

// mtlbTagSizes are the content sizes of the fixed-size function tags.
var mtlbTagSizes = map[string]uint64{"TYPE": 1, "MDSZ": 8, "OFFT": 24, "HASH": 32, "VERS": 8}

func inspectMetallib(name string, b []byte, opts Options) (*Info, error) {
	bad := func(off uint64, format string, args ...any) (*Info, error) {
		return nil, offsetErr(name, FormatMetallib, int64(off), ErrMalformed, format, args...)
	}
	if !bytes.HasPrefix(b, []byte("MTLB")[:min(len(b), 4)]) {
		return bad(0, "bad magic number %q, want \"MTLB\"", b[:min(len(b), 4)])
	}
	if len(b) < mtlbHeaderSize {
		return bad(uint64(len(b)), "truncated header: %d bytes, the header is %d", len(b), mtlbHeaderSize)
	}
	le := binary.LittleEndian
	n := uint64(len(b))
	if size := le.Uint64(b[0x10:]); size != n {
		return bad(0x10, "header file size %d does not match the file length %d", size, n)
	}
	sections := [...]string{"function list", "public metadata", "private metadata", "bitcode"}
	var off, size [4]uint64
	for i, s := range sections {
		at := uint64(0x18 + 16*i)
		off[i], size[i] = le.Uint64(b[at:]), le.Uint64(b[at+8:])
		extra := uint64(0)
		if i == 0 && size[0] > 0 {
			extra = 4 // the function count before the groups
		}
		if size[i] == 0 {
			continue
		}
		if off[i] < mtlbHeaderSize || off[i] > n || size[i] > n-off[i] || extra > n-off[i]-size[i] {
			return bad(at, "%s section (offset %d, size %d) does not lie inside the file after the header (%d bytes)", s, off[i], size[i], n)
		}
	}
	info := &Info{Version: fmt.Sprintf("%d.%d", le.Uint16(b[6:]), le.Uint16(b[8:]))}
	if size[0] == 0 {
		return info, nil
	}

	listEnd := off[0] + 4 + size[0]
	count := uint64(le.Uint32(b[off[0]:]))
	if count > size[0]/8 {
		return bad(off[0], "function count %d cannot fit in a function list of %d bytes", count, size[0])
	}
	p := off[0] + 4
	for i := uint64(0); i < count; i++ {
		group := p
		if listEnd-p < 4 {
			return bad(p, "function %d: the tag group runs past the end of the function list", i)
		}
		gsize := uint64(le.Uint32(b[p:]))
		p += 4
		var (
			fname            string
			hasName, hasType bool
			ftype            byte
			mdsz, bcOff      uint64
			hasSize, hasOff  bool
			hash             []byte
		)
		for {
			if listEnd-p < 4 {
				return bad(p, "function %d: the tag group has no ENDT tag before the end of the function list", i)
			}
			tag := string(b[p : p+4])
			if tag == "ENDT" {
				p += 4
				break
			}
			if listEnd-p < 6 {
				return bad(p, "function %d: tag %q runs past the end of the function list", i, tag)
			}
			tlen := uint64(le.Uint16(b[p+4:]))
			data := p + 6
			if tlen > listEnd-data {
				return bad(p, "function %d: tag %q of %d bytes runs past the end of the function list", i, tag, tlen)
			}
			content := b[data : data+tlen]
			if want, ok := mtlbTagSizes[tag]; ok && tlen != want {
				return bad(p, "function %d: tag %q has %d bytes, want %d", i, tag, tlen, want)
			}
			switch tag {
			case "NAME":
				z := bytes.IndexByte(content, 0)
				if z < 0 || z != len(content)-1 {
					return bad(p, "function %d: NAME is not one nul-terminated string", i)
				}
				fname = string(content[:z])
				if fname == "" || !utf8.ValidString(fname) {
					return bad(p, "function %d: NAME %q is empty or not valid UTF-8", i, fname)
				}
				hasName = true
			case "TYPE":
				ftype, hasType = content[0], true
			case "MDSZ":
				mdsz, hasSize = le.Uint64(content), true
			case "OFFT":
				bcOff, hasOff = le.Uint64(content[16:]), true
			case "HASH":
				hash = content
			}
			p = data + tlen
		}
		if used := p - group; gsize != used && gsize != used-4 {
			return bad(group, "function %d: tag group size %d does not match its tags (%d bytes)", i, gsize, used)
		}
		if !hasName || !hasType {
			return bad(group, "function %d has no NAME or no TYPE tag", i)
		}
		if hasSize && hasOff {
			if bcOff > size[3] || mdsz > size[3]-bcOff {
				return bad(group, "function %q: its bitcode (offset %d, size %d) does not lie inside the bitcode section (%d bytes)", fname, bcOff, mdsz, size[3])
			}
			if hash != nil {
				var code []byte
				at := group
				if size[3] > 0 { // the section was checked to lie inside the file
					code, at = b[off[3]+bcOff:off[3]+bcOff+mdsz], off[3]+bcOff
				}
				if sum := sha256.Sum256(code); !bytes.Equal(sum[:], hash) {
					return bad(at, "function %q: its bitcode does not match its SHA-256 hash", fname)
				}
			}
		}
		e := Entry{Name: fname, Offset: int64(group), HasOffset: true}
		if ftype == mtlbTypeKernel {
			e.Kind = "kernel"
			info.Entries = append(info.Entries, e)
		} else if k, ok := mtlbOtherKinds[ftype]; ok {
			e.Kind = k
			info.Others = append(info.Others, e)
		}
	}
	if p != listEnd && (p+4 != listEnd || string(b[p:listEnd]) != "ENDT") {
		return bad(p, "function list size %d does not match its %d functions, which end at byte %d", size[0], count, p)
	}
	return info, nil
}
