//go:build wasip1

// Command counter_go is the counter kernel (state layout 1, see
// ../counter_v1.c) written in Go, built as a WASI reactor:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o counter_go.wasm .
//
// It implements the hotkernel kernel ABI version 1 with //go:wasmexport
// functions. Its state bytes are identical to counter_v1.c's at the same
// state size (4096 bytes), so state moves between the two without
// migration. Outputs are tagged 101.
package main

import (
	"encoding/binary"
	"unsafe"
)

const (
	abiVersion = 1
	layout     = 1
	producers  = 64
	tag        = 101
	page       = 65536
	stateBytes = 4096
	headerV1   = 16 + producers*16
	extra      = stateBytes - headerV1

	// Layout 2 offsets (counter_v2.c).
	v2Count    = 8
	v2Next     = 8 + producers*8
	v2Checksum = 8 + producers*16
	v2ExtraLen = v2Checksum + 8
	v2Hist     = v2ExtraLen + 8
)

var le = binary.LittleEndian

// hk.flush and hk.log, the host's imports.
//
//go:wasmimport hk flush
func flush()

//go:wasmimport hk log
func logRaw(p unsafe.Pointer, n int32)

var (
	// stateRaw is over-allocated by a page so that state can start at a
	// 65536-aligned address; the package variable keeps it alive and the
	// Go heap does not move objects.
	stateRaw = make([]byte, stateBytes+page)
	state    = align(stateRaw, stateBytes)

	inbox, outbox, scratch []byte
)

// addr returns the linear-memory address of b's first byte.
func addr(b []byte) int32 { return int32(uintptr(unsafe.Pointer(unsafe.SliceData(b)))) }

// align returns n bytes of b starting at the first 65536-aligned address.
func align(b []byte, n int) []byte {
	off := (page - int(uintptr(unsafe.Pointer(&b[0])))%page) % page
	return b[off : off+n : off+n]
}

func logf(s string) { logRaw(unsafe.Pointer(unsafe.StringData(s)), int32(len(s))) }

//go:wasmexport hk_abi_version
func hkABIVersion() int32 { return abiVersion }

//go:wasmexport hk_state_ptr
func hkStatePtr() int32 { return addr(state) }

//go:wasmexport hk_state_len
func hkStateLen() int32 { return int32(len(state)) }

//go:wasmexport hk_state_layout
func hkStateLayout() int32 { return layout }

//go:wasmexport hk_inbox
func hkInbox(size int32) int32 {
	if int(size) > len(inbox) {
		inbox = make([]byte, size)
	}
	return addr(inbox)
}

//go:wasmexport hk_outbox
func hkOutbox(size int32) int32 {
	if int(size) > len(outbox) {
		outbox = make([]byte, size)
	}
	return addr(outbox)
}

//go:wasmexport hk_scratch
func hkScratch(size int32) int32 {
	if int(size) > len(scratch) {
		scratch = make([]byte, size)
	}
	return addr(scratch)
}

//go:wasmexport hk_init
func hkInit() int32 {
	clear(state)
	le.PutUint64(state[8:], extra)
	logf("counter_go: fresh state")
	return 0
}

// hk_process turns a panic into error code 99 for the message that
// panicked: without the recover the panic would reach the host as a trap,
// after which Go does not promise that its runtime is sound.
//
//go:wasmexport hk_process
func hkProcess(count int32) (rc int32) {
	defer func() {
		if recover() != nil {
			rc = -99
		}
	}()
	off := 8
	for i := int32(0); i < count; i++ {
		n := int(le.Uint32(inbox[off:]))
		msg := inbox[off+4 : off+4+n]
		if code := message(msg); code != 0 {
			return -code
		}
		le.PutUint32(inbox[4:], uint32(i+1))
		off += 4 + (n+3)&^3
	}
	return 0
}

// message handles one message as counter_v1.c does.
func message(msg []byte) int32 {
	if len(msg) != 16 {
		return 2
	}
	producer := le.Uint32(msg)
	seq := le.Uint64(msg[8:])
	if producer >= producers {
		return 1
	}
	p := state[16+producer*16:]
	le.PutUint64(p, seq+1)
	le.PutUint64(p[8:], le.Uint64(p[8:])+1)
	le.PutUint64(state, le.Uint64(state)*31+seq+uint64(producer))
	state[headerV1+seq%extra]++
	var out [16]byte
	le.PutUint32(out[:], producer)
	le.PutUint32(out[4:], tag)
	le.PutUint64(out[8:], seq)
	return emit(out[:])
}

// emit frames out into the outbox, flushing it first when out does not
// fit; code 3 when out is larger than the whole outbox.
func emit(out []byte) int32 {
	need := 4 + (len(out)+3)&^3
	used := int(le.Uint32(outbox))
	capacity := int(le.Uint32(outbox[4:]))
	if need > capacity {
		return 3
	}
	if need > capacity-used {
		flush()
		used = int(le.Uint32(outbox))
	}
	f := outbox[8+used : 8+used+need]
	le.PutUint32(f, uint32(len(out)))
	clear(f[4+len(out):])
	copy(f[4:], out)
	le.PutUint32(outbox, uint32(used+need))
	return 0
}

//go:wasmexport hk_migrate
func hkMigrate(oldLayout int32, oldVersion int64, ptr, n int32) int32 {
	if addr(scratch) != ptr || int(n) > len(scratch) {
		return 11
	}
	old := scratch[:n]
	clear(state)
	le.PutUint64(state[8:], extra)
	var checksum uint64
	var next, count [producers]uint64
	var hist []byte
	switch oldLayout {
	case 1:
		if len(old) < headerV1 || le.Uint64(old[8:]) != uint64(len(old)-headerV1) {
			return 11
		}
		checksum = le.Uint64(old)
		for i := range producers {
			next[i] = le.Uint64(old[16+i*16:])
			count[i] = le.Uint64(old[24+i*16:])
		}
		hist = old[headerV1:]
	case 2:
		if len(old) < v2Hist || le.Uint64(old[v2ExtraLen:]) != uint64(len(old)-v2Hist) {
			return 11
		}
		checksum = le.Uint64(old[v2Checksum:])
		for i := range producers {
			next[i] = le.Uint64(old[v2Next+i*8:])
			count[i] = le.Uint64(old[v2Count+i*8:])
		}
		hist = old[v2Hist:]
	default:
		return 10
	}
	le.PutUint64(state, checksum)
	for i := range producers {
		le.PutUint64(state[16+i*16:], next[i])
		le.PutUint64(state[24+i*16:], count[i])
	}
	copy(state[headerV1:], hist)
	return 0
}

func main() {}
