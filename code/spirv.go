package code

import (
	"encoding/binary"
	"fmt"
	"unicode/utf8"
)

// A SPIR-V module is a stream of 32-bit words in the byte order its magic
// number is written in: a five-word header (magic, version 0x00MMmm00,
// generator, id bound, schema 0) and then instructions, each starting with
// a word holding its word count in the high half and its opcode in the low
// half.

// SPIR-V opcodes, execution models, modes and decorations used here.
const (
	spvOpEntryPoint       = 15
	spvOpExecutionMode    = 16
	spvOpFunction         = 54
	spvOpDecorate         = 71
	spvOpExecutionModeId  = 331
	spvModeLocalSize      = 17
	spvModeLocalSizeId    = 38
	spvDecorationBuiltIn  = 11
	spvBuiltInWorkgroupSz = 25
	spvModelGLCompute     = 5
	spvModelKernel        = 6
	spvHeaderWords        = 5
	spvMaxMinorVersion    = 6
)

var spvModelNames = map[uint32]string{
	0:    "Vertex",
	1:    "TessellationControl",
	2:    "TessellationEvaluation",
	3:    "Geometry",
	4:    "Fragment",
	5:    "GLCompute",
	6:    "Kernel",
	5267: "TaskNV",
	5268: "MeshNV",
	5313: "RayGenerationKHR",
	5314: "IntersectionKHR",
	5315: "AnyHitKHR",
	5316: "ClosestHitKHR",
	5317: "MissKHR",
	5318: "CallableKHR",
	5364: "TaskEXT",
	5365: "MeshEXT",
}

func spvModelName(m uint32) string {
	if s, ok := spvModelNames[m]; ok {
		return s
	}
	return fmt.Sprintf("ExecutionModel(%d)", m)
}

var spvOpNames = map[uint32]string{
	spvOpEntryPoint:      "OpEntryPoint",
	spvOpExecutionMode:   "OpExecutionMode",
	spvOpFunction:        "OpFunction",
	spvOpDecorate:        "OpDecorate",
	spvOpExecutionModeId: "OpExecutionModeId",
}

func spvOpName(op uint32) string {
	if s, ok := spvOpNames[op]; ok {
		return s
	}
	return fmt.Sprintf("opcode %d", op)
}

// spvResults says where an instruction's result id is.
type spvResults uint8

const (
	spvNoResult      spvResults = iota
	spvResult                   // word 1 is the result id
	spvTypeAndResult            // word 1 is the result type id, word 2 the result id
)

// spvResultRanges lists, for every core instruction that has a result id
// in the SPIR-V 1.6 grammar (revision 1, unified headers 1.3.239), the
// opcode ranges and where the result id is. Opcodes not listed have no
// result id or are unknown; their operands are not checked.
var spvResultRanges = [...]struct {
	lo, hi uint16
	kind   spvResults
}{
	{1, 1, spvTypeAndResult},       // OpUndef
	{7, 7, spvResult},              // OpString
	{11, 11, spvResult},            // OpExtInstImport
	{12, 12, spvTypeAndResult},     // OpExtInst
	{19, 38, spvResult},            // OpTypeVoid .. OpTypePipe
	{41, 46, spvTypeAndResult},     // OpConstantTrue .. OpConstantNull
	{48, 52, spvTypeAndResult},     // OpSpecConstantTrue .. OpSpecConstantOp
	{54, 55, spvTypeAndResult},     // OpFunction .. OpFunctionParameter
	{57, 57, spvTypeAndResult},     // OpFunctionCall
	{59, 61, spvTypeAndResult},     // OpVariable .. OpLoad
	{65, 70, spvTypeAndResult},     // OpAccessChain .. OpInBoundsPtrAccessChain
	{73, 73, spvResult},            // OpDecorationGroup
	{77, 84, spvTypeAndResult},     // OpVectorExtractDynamic .. OpTranspose
	{86, 98, spvTypeAndResult},     // OpSampledImage .. OpImageRead
	{100, 107, spvTypeAndResult},   // OpImage .. OpImageQuerySamples
	{109, 124, spvTypeAndResult},   // OpConvertFToU .. OpBitcast
	{126, 152, spvTypeAndResult},   // OpSNegate .. OpSMulExtended
	{154, 191, spvTypeAndResult},   // OpAny .. OpFUnordGreaterThanEqual
	{194, 205, spvTypeAndResult},   // OpShiftRightLogical .. OpBitCount
	{207, 215, spvTypeAndResult},   // OpDPdx .. OpFwidthCoarse
	{227, 227, spvTypeAndResult},   // OpAtomicLoad
	{229, 242, spvTypeAndResult},   // OpAtomicExchange .. OpAtomicXor
	{245, 245, spvTypeAndResult},   // OpPhi
	{248, 248, spvResult},          // OpLabel
	{259, 259, spvTypeAndResult},   // OpGroupAsyncCopy
	{261, 271, spvTypeAndResult},   // OpGroupAll .. OpGroupSMax
	{274, 279, spvTypeAndResult},   // OpReadPipe .. OpReserveWritePipePackets
	{282, 286, spvTypeAndResult},   // OpIsValidReserveId .. OpGroupReserveWritePipePackets
	{291, 296, spvTypeAndResult},   // OpEnqueueMarker .. OpGetKernelPreferredWorkGroupSizeMultiple
	{299, 300, spvTypeAndResult},   // OpCreateUserEvent .. OpIsValidEvent
	{303, 316, spvTypeAndResult},   // OpGetDefaultQueue .. OpImageSparseTexelsResident
	{318, 318, spvTypeAndResult},   // OpAtomicFlagTestAndSet
	{320, 321, spvTypeAndResult},   // OpImageSparseRead .. OpSizeOf
	{322, 322, spvResult},          // OpTypePipeStorage
	{323, 326, spvTypeAndResult},   // OpConstantPipeStorage .. OpGetKernelMaxNumSubgroups
	{327, 327, spvResult},          // OpTypeNamedBarrier
	{328, 328, spvTypeAndResult},   // OpNamedBarrierInitialize
	{333, 366, spvTypeAndResult},   // OpGroupNonUniformElect .. OpGroupNonUniformQuadSwap
	{400, 403, spvTypeAndResult},   // OpCopyLogical .. OpPtrDiff
	{4421, 4422, spvTypeAndResult}, // OpSubgroupBallotKHR .. OpSubgroupFirstInvocationKHR
	{4428, 4432, spvTypeAndResult}, // OpSubgroupAllKHR .. OpSubgroupReadInvocationKHR
	{4447, 4447, spvTypeAndResult}, // OpConvertUToAccelerationStructureKHR
	{4450, 4455, spvTypeAndResult}, // OpSDot .. OpSUDotAccSat
	{4472, 4472, spvResult},        // OpTypeRayQueryKHR
	{4477, 4477, spvTypeAndResult}, // OpRayQueryProceedKHR
	{4479, 4479, spvTypeAndResult}, // OpRayQueryGetIntersectionTypeKHR
	{5000, 5007, spvTypeAndResult}, // OpGroupIAddNonUniformAMD .. OpGroupSMaxNonUniformAMD
	{5011, 5012, spvTypeAndResult}, // OpFragmentMaskFetchAMD .. OpFragmentFetchAMD
	{5056, 5056, spvTypeAndResult}, // OpReadClockKHR
	{5252, 5255, spvTypeAndResult}, // OpHitObjectGetWorldToObjectNV .. OpHitObjectGetObjectRayOriginNV
	{5257, 5258, spvTypeAndResult}, // OpHitObjectGetShaderRecordBufferHandleNV .. OpHitObjectGetShaderBindingTableRecordIndexNV
	{5265, 5265, spvTypeAndResult}, // OpHitObjectGetCurrentTimeNV
	{5267, 5278, spvTypeAndResult}, // OpHitObjectGetHitKindNV .. OpHitObjectIsMissNV
	{5281, 5281, spvResult},        // OpTypeHitObjectNV
	{5283, 5283, spvTypeAndResult}, // OpImageSampleFootprintNV
	{5296, 5296, spvTypeAndResult}, // OpGroupNonUniformPartitionNV
	{5334, 5334, spvTypeAndResult}, // OpReportIntersectionNV
	{5341, 5341, spvResult},        // OpTypeAccelerationStructureNV
	{5358, 5358, spvResult},        // OpTypeCooperativeMatrixNV
	{5359, 5359, spvTypeAndResult}, // OpCooperativeMatrixLoadNV
	{5361, 5362, spvTypeAndResult}, // OpCooperativeMatrixMulAddNV .. OpCooperativeMatrixLengthNV
	{5381, 5381, spvTypeAndResult}, // OpIsHelperInvocationEXT
	{5391, 5396, spvTypeAndResult}, // OpConvertUToImageNV .. OpConvertSampledImageToUNV
	{5571, 5575, spvTypeAndResult}, // OpSubgroupShuffleINTEL .. OpSubgroupBlockReadINTEL
	{5577, 5577, spvTypeAndResult}, // OpSubgroupImageBlockReadINTEL
	{5580, 5580, spvTypeAndResult}, // OpSubgroupImageMediaBlockReadINTEL
	{5585, 5598, spvTypeAndResult}, // OpUCountLeadingZerosINTEL .. OpUMul32x16INTEL
	{5600, 5601, spvTypeAndResult}, // OpConstantFunctionPointerINTEL .. OpFunctionPointerCallINTEL
	{5609, 5611, spvTypeAndResult}, // OpAsmTargetINTEL .. OpAsmCallINTEL
	{5614, 5615, spvTypeAndResult}, // OpAtomicFMinEXT .. OpAtomicFMaxEXT
	{5631, 5631, spvTypeAndResult}, // OpExpectKHR
	{5699, 5699, spvTypeAndResult}, // OpVmeImageINTEL
	{5700, 5712, spvResult},        // OpTypeVmeImageINTEL .. OpTypeAvcSicResultINTEL
	{5713, 5816, spvTypeAndResult}, // OpSubgroupAvcMceGetDefaultInterBaseMultiReferencePenaltyINTEL .. OpSubgroupAvcSicGetInterRawSadsINTEL
	{5818, 5819, spvTypeAndResult}, // OpVariableLengthArrayINTEL .. OpSaveMemoryINTEL
	{5840, 5843, spvTypeAndResult}, // OpArbitraryFloatSinCosPiINTEL .. OpArbitraryFloatCastToIntINTEL
	{5846, 5882, spvTypeAndResult}, // OpArbitraryFloatAddINTEL .. OpArbitraryFloatPowNINTEL
	{5911, 5913, spvResult},        // OpAliasDomainDeclINTEL .. OpAliasScopeListDeclINTEL
	{5923, 5934, spvTypeAndResult}, // OpFixedSqrtINTEL .. OpPtrCastToCrossWorkgroupINTEL
	{5938, 5938, spvTypeAndResult}, // OpCrossWorkgroupCastToPtrINTEL
	{5946, 5947, spvTypeAndResult}, // OpReadPipeBlockingINTEL .. OpWritePipeBlockingINTEL
	{5949, 5949, spvTypeAndResult}, // OpFPGARegINTEL
	{6016, 6032, spvTypeAndResult}, // OpRayQueryGetRayTMinKHR .. OpRayQueryGetIntersectionWorldToObjectKHR
	{6035, 6035, spvTypeAndResult}, // OpAtomicFAddEXT
	{6086, 6086, spvResult},        // OpTypeBufferSurfaceINTEL
	{6401, 6408, spvTypeAndResult}, // OpGroupIMulKHR .. OpGroupLogicalXorKHR
}

// spvResultKind returns where opcode op has its result id.
func spvResultKind(op uint32) spvResults {
	lo, hi := 0, len(spvResultRanges)
	for lo < hi {
		m := (lo + hi) / 2
		r := spvResultRanges[m]
		switch {
		case op < uint32(r.lo):
			hi = m
		case op > uint32(r.hi):
			lo = m + 1
		default:
			return r.kind
		}
	}
	return spvNoResult
}

// spvString decodes the nul-terminated literal string at the start of
// words: its bytes fill each word from the low-order byte up. It returns
// the string and the number of words it takes; ok is false when no nul
// ends it within words.
func spvString(words []uint32) (s string, n int, ok bool) {
	var buf []byte
	for i, w := range words {
		for k := 0; k < 4; k++ {
			c := byte(w >> (8 * k))
			if c == 0 {
				return string(buf), i + 1, true
			}
			buf = append(buf, c)
		}
	}
	return "", 0, false
}

type spvEntryPoint struct {
	model uint32
	fn    uint32
	name  string
	off   int
}

func inspectSPIRV(name string, b []byte, opts Options) (*Info, error) {
	bad := func(off int, format string, args ...any) (*Info, error) {
		return nil, offsetErr(name, FormatSPIRV, int64(off), ErrMalformed, format, args...)
	}
	if len(b) < 4 {
		return bad(0, "truncated module: %d bytes, the header alone is %d", len(b), 4*spvHeaderWords)
	}
	var bo binary.ByteOrder
	switch {
	case binary.LittleEndian.Uint32(b) == spirvMagic:
		bo = binary.LittleEndian
	case binary.BigEndian.Uint32(b) == spirvMagic:
		bo = binary.BigEndian
	default:
		return bad(0, "bad magic number 0x%08x, want 0x%08x", binary.LittleEndian.Uint32(b), spirvMagic)
	}
	if r := len(b) % 4; r != 0 {
		return bad(len(b)-r, "file length %d is not a multiple of 4 (a module is 32-bit words)", len(b))
	}
	if len(b) < 4*spvHeaderWords {
		return bad(len(b), "truncated header: %d bytes, the header is %d", len(b), 4*spvHeaderWords)
	}
	n := len(b) / 4
	word := func(i int) uint32 { return bo.Uint32(b[4*i:]) }

	version := word(1)
	major, minor := version>>16&0xff, version>>8&0xff
	if version&0xff0000ff != 0 || major != 1 || minor > spvMaxMinorVersion {
		return bad(4, "unknown version word 0x%08x (known: 1.0 to 1.%d, as 0x00010000 to 0x0001%02x00)", version, spvMaxMinorVersion, spvMaxMinorVersion)
	}
	bound := word(3)
	if bound == 0 {
		return bad(12, "id bound is 0; it must be greater than every id in the module")
	}
	if s := word(4); s != 0 {
		return bad(16, "schema word is %d; it must be 0", s)
	}

	checkID := func(off int, op uint32, what string, id uint32) error {
		if id == 0 || id >= bound {
			return offsetErr(name, FormatSPIRV, int64(off), ErrMalformed, "%s: %s id %d is outside the id bound %d (ids run from 1 to %d)", spvOpName(op), what, id, bound, bound-1)
		}
		return nil
	}

	type def struct {
		op  uint32
		off int
	}
	type entryKey struct {
		model uint32
		name  string
	}
	var (
		entries    []spvEntryPoint
		entryAt    = make(map[entryKey]int) // entry point -> offset
		entryFns   = make(map[uint32]bool)  // function ids of entry points
		defined    = make(map[uint32]def)   // result id -> defining instruction
		sized      = make(map[uint32]bool)  // function ids with a LocalSize mode
		modeRefs   []spvEntryPoint          // execution modes: fn and offset
		builtInWGS bool                     // some id is decorated BuiltIn WorkgroupSize
	)
	for i := spvHeaderWords; i < n; {
		off := 4 * i
		first := word(i)
		wc, op := int(first>>16), first&0xffff
		if wc == 0 {
			return bad(off, "%s has word count 0", spvOpName(op))
		}
		if wc > n-i {
			return bad(off, "%s: word count %d runs past the end of the module (%d words left)", spvOpName(op), wc, n-i)
		}
		operand := func(k int) uint32 { return word(i + k) }

		switch spvResultKind(op) {
		case spvResult:
			if wc < 2 {
				return bad(off, "%s: word count %d leaves no room for its result id", spvOpName(op), wc)
			}
			if err := checkID(off, op, "result", operand(1)); err != nil {
				return nil, err
			}
		case spvTypeAndResult:
			if wc < 3 {
				return bad(off, "%s: word count %d leaves no room for its result type and result id", spvOpName(op), wc)
			}
			if err := checkID(off, op, "result type", operand(1)); err != nil {
				return nil, err
			}
			if err := checkID(off, op, "result", operand(2)); err != nil {
				return nil, err
			}
		}
		if k := spvResultKind(op); k != spvNoResult {
			id := operand(int(k))
			if prev, dup := defined[id]; dup {
				return bad(off, "%s: result id %d is already defined at byte %d", spvOpName(op), id, prev.off)
			}
			defined[id] = def{op, off}
		}

		switch op {
		case spvOpEntryPoint:
			if wc < 4 {
				return bad(off, "OpEntryPoint: word count %d is too small (at least 4: model, function, name)", wc)
			}
			model, fn := operand(1), operand(2)
			if err := checkID(off, op, "function", fn); err != nil {
				return nil, err
			}
			words := make([]uint32, wc-3)
			for k := range words {
				words[k] = operand(3 + k)
			}
			s, used, ok := spvString(words)
			if !ok {
				return bad(off, "OpEntryPoint: entry point name is not nul-terminated within the instruction")
			}
			if !utf8.ValidString(s) {
				return bad(off, "OpEntryPoint: entry point name %q is not valid UTF-8", s)
			}
			for k := 3 + used; k < wc; k++ {
				if err := checkID(off, op, "interface", operand(k)); err != nil {
					return nil, err
				}
			}
			if prev, dup := entryAt[entryKey{model, s}]; dup {
				return bad(off, "OpEntryPoint: a %s entry point named %q is already declared at byte %d", spvModelName(model), s, prev)
			}
			entryAt[entryKey{model, s}] = off
			entryFns[fn] = true
			entries = append(entries, spvEntryPoint{model: model, fn: fn, name: s, off: off})
		case spvOpExecutionMode, spvOpExecutionModeId:
			if wc < 3 {
				return bad(off, "%s: word count %d is too small (at least 3: entry point, mode)", spvOpName(op), wc)
			}
			fn, mode := operand(1), operand(2)
			if err := checkID(off, op, "entry point", fn); err != nil {
				return nil, err
			}
			modeRefs = append(modeRefs, spvEntryPoint{fn: fn, off: off})
			switch mode {
			case spvModeLocalSize:
				if wc != 6 {
					return bad(off, "%s LocalSize: word count %d, want 6 (x, y, z)", spvOpName(op), wc)
				}
				if op == spvOpExecutionModeId {
					return bad(off, "LocalSize takes literal sizes and must be set with OpExecutionMode, not OpExecutionModeId")
				}
				x, y, z := operand(3), operand(4), operand(5)
				if x == 0 || y == 0 || z == 0 {
					return bad(off, "OpExecutionMode LocalSize %d %d %d: a workgroup size is at least 1 in every dimension", x, y, z)
				}
				sized[fn] = true
			case spvModeLocalSizeId:
				if wc != 6 {
					return bad(off, "%s LocalSizeId: word count %d, want 6 (x, y, z ids)", spvOpName(op), wc)
				}
				for k := 3; k < 6; k++ {
					if err := checkID(off, op, "LocalSizeId size", operand(k)); err != nil {
						return nil, err
					}
				}
				sized[fn] = true
			}
		case spvOpDecorate:
			if wc < 3 {
				return bad(off, "OpDecorate: word count %d is too small (at least 3: target, decoration)", wc)
			}
			if err := checkID(off, op, "target", operand(1)); err != nil {
				return nil, err
			}
			if wc >= 4 && operand(2) == spvDecorationBuiltIn && operand(3) == spvBuiltInWorkgroupSz {
				builtInWGS = true
			}
		}
		i += wc
	}

	for _, m := range modeRefs {
		if !entryFns[m.fn] {
			return bad(m.off, "execution mode names id %d, which no OpEntryPoint declares", m.fn)
		}
	}
	info := &Info{Version: fmt.Sprintf("%d.%d", major, minor)}
	for _, e := range entries {
		if defined[e.fn].op != spvOpFunction {
			return bad(e.off, "entry point %q names id %d, which is not an OpFunction result", e.name, e.fn)
		}
		entry := Entry{Name: e.name, Kind: spvModelName(e.model), Offset: int64(e.off), HasOffset: true}
		switch e.model {
		case spvModelGLCompute:
			if !sized[e.fn] && !builtInWGS {
				return bad(e.off, "GLCompute entry point %q has no LocalSize or LocalSizeId execution mode (and no WorkgroupSize built-in)", e.name)
			}
			info.Entries = append(info.Entries, entry)
		case spvModelKernel:
			info.Entries = append(info.Entries, entry)
		default:
			info.Others = append(info.Others, entry)
		}
	}
	return info, nil
}
