package checkpoint

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// maxDirName is the longest directory name escapeKernelID produces in its
// readable form; longer escapes are shortened and completed with a hash.
// It stays well below the 255-byte limit of common file systems, and below
// the 143 bytes of encrypting ones.
const (
	maxDirName   = 128
	hashedPrefix = 80 // readable bytes kept in front of a hash
	hashMark     = '~'
)

// escapeKernelID maps a valid kernel ID to a directory name that is one
// safe path element on every common file system: it is never empty, "."
// or "..", and holds only lowercase ASCII letters, digits and "-_.!%~".
// It never starts or ends with '.', and never names a Windows device.
//
// Lowercase letters, digits, '-' and '_' stand for themselves, and so does
// '.' except at either end. An uppercase letter becomes '!' and the
// letter in lowercase, so names stay distinct on case-insensitive file
// systems. Every other byte becomes '%' and two lowercase hex digits. A
// name that would begin a Windows device name (con, prn, aux, nul, com1-9,
// lpt1-9) has its first letter escaped as well.
//
// The mapping is one to one. When the result would be longer than
// maxDirName bytes, it is cut to at most hashedPrefix bytes (between escape
// sequences) and completed with '~' and the first 128 bits of the ID's
// SHA-256; '~' appears in no readable name, so the two forms cannot meet.
func escapeKernelID(id string) string {
	var b strings.Builder
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
			b.WriteByte(c)
		case c == '.' && i > 0 && i < len(id)-1:
			b.WriteByte(c)
		case 'A' <= c && c <= 'Z':
			b.WriteByte('!')
			b.WriteByte(c - 'A' + 'a')
		default:
			b.WriteByte('%')
			b.WriteString(hex.EncodeToString([]byte{c}))
		}
	}
	s := b.String()
	if windowsDevice(s) {
		s = "%" + hex.EncodeToString([]byte{s[0]}) + s[1:]
	}
	if len(s) <= maxDirName {
		return s
	}
	cut := 0
	for cut < len(s) {
		n := 1
		switch s[cut] {
		case '!':
			n = 2
		case '%':
			n = 3
		}
		if cut+n > hashedPrefix {
			break
		}
		cut += n
	}
	sum := sha256.Sum256([]byte(id))
	return s[:cut] + string(hashMark) + hex.EncodeToString(sum[:16])
}

// windowsDevice reports whether the escaped name s, up to its first dot,
// is a reserved Windows device name. s holds no uppercase letters.
func windowsDevice(s string) bool {
	base, _, _ := strings.Cut(s, ".")
	switch base {
	case "con", "prn", "aux", "nul":
		return true
	}
	return len(base) == 4 && (base[:3] == "com" || base[:3] == "lpt") && '1' <= base[3] && base[3] <= '9'
}

// unescapeKernelID returns the kernel ID whose readable escape is name.
// It reports false for a hashed name, and for any name escapeKernelID
// would not produce.
func unescapeKernelID(name string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch c {
		case '!':
			if i+1 >= len(name) {
				return "", false
			}
			b.WriteByte(name[i+1] - 'a' + 'A')
			i++
		case '%':
			if i+2 >= len(name) {
				return "", false
			}
			v, err := hex.DecodeString(name[i+1 : i+3])
			if err != nil {
				return "", false
			}
			b.WriteByte(v[0])
			i += 2
		default:
			b.WriteByte(c)
		}
	}
	id := b.String()
	if kernelIDProblem(id) != "" || escapeKernelID(id) != name {
		return "", false
	}
	return id, true
}

// hashedName reports whether name is in the hashed form of escapeKernelID.
func hashedName(name string) bool {
	return strings.IndexByte(name, hashMark) >= 0
}
