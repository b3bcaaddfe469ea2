package code

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"strings"
)

// Format identifies the kind of a kernel code artifact.
//
// The zero value is FormatUnknown, which no constructor produces and which
// every validator rejects.
type Format uint8

// The formats hotkernel knows. Their String forms ("ptx", "cubin", "spirv",
// "wgsl", "msl", "metallib", "wasm", "source") are stable: they appear in
// manifests, checkpoints, HTTP responses and command output.
const (
	FormatUnknown  Format = iota
	FormatPTX             // NVIDIA PTX assembly text
	FormatCUBIN           // NVIDIA CUDA binary (ELF, machine EM_CUDA)
	FormatSPIRV           // Khronos SPIR-V binary module
	FormatWGSL            // WebGPU Shading Language text
	FormatMSL             // Metal Shading Language text
	FormatMetallib        // compiled Metal library (MTLB container)
	FormatWASM            // WebAssembly binary module
	FormatSource          // generic source text with a language tag
)

var formatNames = [...]string{
	FormatUnknown:  "unknown",
	FormatPTX:      "ptx",
	FormatCUBIN:    "cubin",
	FormatSPIRV:    "spirv",
	FormatWGSL:     "wgsl",
	FormatMSL:      "msl",
	FormatMetallib: "metallib",
	FormatWASM:     "wasm",
	FormatSource:   "source",
}

// String returns the stable lower-case name of f, or "format(N)" for a
// value outside the defined set.
func (f Format) String() string {
	if int(f) < len(formatNames) {
		return formatNames[f]
	}
	return fmt.Sprintf("format(%d)", uint8(f))
}

// Formats returns every known format except FormatUnknown, in declaration
// order.
func Formats() []Format {
	return []Format{FormatPTX, FormatCUBIN, FormatSPIRV, FormatWGSL, FormatMSL, FormatMetallib, FormatWASM, FormatSource}
}

// ParseFormat returns the format named s. It accepts the String forms,
// case-insensitively, and the common aliases "spv", "spir-v", "metal" and
// "webassembly". Any other name is an error that lists the accepted names.
func ParseFormat(s string) (Format, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "ptx":
		return FormatPTX, nil
	case "cubin":
		return FormatCUBIN, nil
	case "spirv", "spir-v", "spv":
		return FormatSPIRV, nil
	case "wgsl":
		return FormatWGSL, nil
	case "msl", "metal":
		return FormatMSL, nil
	case "metallib":
		return FormatMetallib, nil
	case "wasm", "webassembly":
		return FormatWASM, nil
	case "source":
		return FormatSource, nil
	}
	return FormatUnknown, fmt.Errorf("unknown format %q (known: ptx, cubin, spirv, wgsl, msl, metallib, wasm, source)", s)
}

// Binary reports whether artifacts of format f are binary rather than text.
// Text formats report positions as lines, binary formats as byte offsets.
func (f Format) Binary() bool {
	switch f {
	case FormatCUBIN, FormatSPIRV, FormatMetallib, FormatWASM:
		return true
	}
	return false
}

var extensions = map[string]Format{
	".ptx":      FormatPTX,
	".cubin":    FormatCUBIN,
	".spv":      FormatSPIRV,
	".spirv":    FormatSPIRV,
	".wgsl":     FormatWGSL,
	".metal":    FormatMSL,
	".metallib": FormatMetallib,
	".wasm":     FormatWASM,
}

// FormatFromExtension returns the format that the extension of name stands
// for (.ptx .cubin .spv .spirv .wgsl .metal .metallib .wasm, any case). The
// boolean is false when the extension is not one of these.
func FormatFromExtension(name string) (Format, bool) {
	f, ok := extensions[strings.ToLower(filepath.Ext(name))]
	return f, ok
}

// FormatFromContent guesses the format from the first bytes of b: the ELF
// magic with machine EM_CUDA, the SPIR-V magic in either byte order, the
// "MTLB" and "\0asm" magics, and for text the directives and attributes
// that only one language uses (".version"/".entry" for PTX, "@compute" and
// "fn" for WGSL, "kernel void" or "[[kernel]]" for MSL). It returns
// FormatUnknown when nothing matches; it never returns FormatSource.
func FormatFromContent(b []byte) Format {
	switch {
	case len(b) >= 4 && string(b[:4]) == "\x00asm":
		return FormatWASM
	case len(b) >= 4 && string(b[:4]) == "MTLB":
		return FormatMetallib
	case len(b) >= 4 && (binary.LittleEndian.Uint32(b) == spirvMagic || binary.BigEndian.Uint32(b) == spirvMagic):
		return FormatSPIRV
	case len(b) >= 20 && string(b[:4]) == "\x7fELF":
		if isCUDAELF(b) {
			return FormatCUBIN
		}
		return FormatUnknown
	}
	if bytes.IndexByte(b, 0) >= 0 {
		return FormatUnknown
	}
	text := string(b)
	switch {
	case strings.Contains(text, ".version") && (strings.Contains(text, ".target") || strings.Contains(text, ".entry")):
		return FormatPTX
	case strings.Contains(text, "@compute") || strings.Contains(text, "@workgroup_size") ||
		(strings.Contains(text, "fn ") && (strings.Contains(text, "@vertex") || strings.Contains(text, "@fragment"))):
		return FormatWGSL
	case strings.Contains(text, "kernel void") || strings.Contains(text, "[[kernel]]") || strings.Contains(text, "#include <metal_stdlib>"):
		return FormatMSL
	}
	return FormatUnknown
}

// DetectFormat returns the format of the file called name with content b:
// the extension decides when it is a known one, otherwise the content does.
// It returns FormatUnknown when neither tells.
func DetectFormat(name string, b []byte) Format {
	if f, ok := FormatFromExtension(name); ok {
		return f
	}
	return FormatFromContent(b)
}

// spirvMagic is the SPIR-V magic number as a host-order word.
const spirvMagic = 0x07230203

// emCUDA is the ELF machine number of NVIDIA CUDA binaries.
const emCUDA = 190

// isCUDAELF reports whether the ELF header in b names machine EM_CUDA, in
// either byte order.
func isCUDAELF(b []byte) bool {
	var m uint16
	switch b[5] {
	case 1:
		m = binary.LittleEndian.Uint16(b[18:])
	case 2:
		m = binary.BigEndian.Uint16(b[18:])
	default:
		return false
	}
	return m == emCUDA
}
