package cudafake

import (
	"encoding/binary"
	"testing"
	"unsafe"

	cudakernels "github.com/hotkernel/hotkernel/examples/kernels/cuda"
)

// kernel runs one module of package cudakernels through the fake as the
// CUDA backend does: a state buffer, one launch per batch, statuses and
// outputs copied back.
type kernel struct {
	t        *testing.T
	d        *driver
	m        *module
	stream   uintptr
	state    devMem
	stateLen uint64
	layout   uint32
	maxOut   uint32
	block    uint32
}

// newKernel binds and loads the module called name in the current
// context, allocates its zeroed state and, when fresh, runs hk_init.
func newKernel(t *testing.T, d *driver, lib, name string, fresh bool) *kernel {
	t.Helper()
	if err := Bind(lib, cudakernels.PTX(name), name); err != nil {
		t.Fatal(err)
	}
	k := &kernel{t: t, d: d, m: mustLoad(t, d, cudakernels.PTX(name))}
	check(t, "cuStreamCreate", d.cuStreamCreate(&k.stream, 1), cudaSuccess)
	var v uint64
	_, k.stateLen, _ = k.m.global(t, "hk_state_len")
	_, v, _ = k.m.global(t, "hk_state_layout")
	k.layout = uint32(v)
	_, v, _ = k.m.global(t, "hk_max_output")
	k.maxOut = uint32(v)
	_, v, _ = k.m.global(t, "hk_block")
	k.block = uint32(v)
	k.state = alloc(t, d, k.stateLen)
	check(t, "cuMemsetD8Async", d.cuMemsetD8Async(k.state.ptr, 0, k.stateLen, k.stream), cudaSuccess)
	if fresh {
		if _, ok := k.m.fn["hk_init"]; ok {
			check(t, "launch hk_init", k.m.launch("hk_init", 1, 1, k.stream, k.state.ptr, k.stateLen), cudaSuccess)
		}
		check(t, "cuStreamSynchronize", d.cuStreamSynchronize(k.stream), cudaSuccess)
	}
	return k
}

// batch is one launch of hk_process, ready to go.
type batch struct {
	k                 *kernel
	count             uint32
	in, off, res, out devMem
}

// prepare packs msgs into device buffers and fills res with 0xFF.
func (k *kernel) prepare(msgs [][]byte) *batch {
	t, d := k.t, k.d
	var in []byte
	off := make([]byte, 4*(len(msgs)+1))
	for i, m := range msgs {
		in = append(in, m...)
		binary.LittleEndian.PutUint32(off[4*(i+1):], uint32(len(in)))
	}
	n := uint64(len(msgs))
	b := &batch{k: k, count: uint32(n),
		in:  alloc(t, d, max(1, uint64(len(in)))),
		off: alloc(t, d, uint64(len(off))),
		res: alloc(t, d, max(1, 8*n)),
		out: alloc(t, d, max(1, n*uint64(k.maxOut))),
	}
	if len(in) > 0 {
		check(t, "cuMemcpyHtoDAsync_v2", d.cuMemcpyHtoDAsync(b.in.ptr, unsafe.Pointer(&in[0]), uint64(len(in)), k.stream), cudaSuccess)
	}
	check(t, "cuMemcpyHtoDAsync_v2", d.cuMemcpyHtoDAsync(b.off.ptr, unsafe.Pointer(&off[0]), uint64(len(off)), k.stream), cudaSuccess)
	check(t, "cuMemsetD32Async", d.cuMemsetD32Async(b.res.ptr, 0xFFFFFFFF, 2*n, k.stream), cudaSuccess)
	return b
}

// launch launches hk_process as the ABI says: one thread for hk_block 0,
// else ceil(count/hk_block) blocks of hk_block threads.
func (b *batch) launch() int32 {
	k := b.k
	grid, block := uint32(1), uint32(1)
	if k.block > 0 {
		grid, block = (b.count+k.block-1)/k.block, k.block
	}
	return k.m.launch("hk_process", grid, block, k.stream,
		k.state.ptr, k.stateLen, b.in.ptr, b.off.ptr, b.count, b.res.ptr, b.out.ptr)
}

// results copies statuses and outputs back: status[i], and out[i] for
// the messages that produced output.
func (b *batch) results() (status []uint32, outs [][]byte) {
	t := b.k.t
	check(t, "cuStreamSynchronize", b.k.d.cuStreamSynchronize(b.k.stream), cudaSuccess)
	res := b.res.read(t)
	out := b.out.read(t)
	for i := range int(b.count) {
		st, n := binary.LittleEndian.Uint32(res[8*i:]), binary.LittleEndian.Uint32(res[8*i+4:])
		status = append(status, st)
		if n > b.k.maxOut {
			t.Fatalf("message %d: output length %d > hk_max_output %d", i, n, b.k.maxOut)
		}
		if n > 0 {
			o := int(b.k.maxOut) * i
			outs = append(outs, append([]byte{}, out[o:o+int(n)]...))
		}
	}
	for _, m := range []devMem{b.in, b.off, b.res, b.out} {
		check(t, "cuMemFree_v2", b.k.d.cuMemFree(m.ptr), cudaSuccess)
	}
	return status, outs
}

// process runs one batch and returns its statuses and outputs.
func (k *kernel) process(msgs [][]byte) ([]uint32, [][]byte) {
	b := k.prepare(msgs)
	check(k.t, "cuLaunchKernel", b.launch(), cudaSuccess)
	return b.results()
}

// migrate runs hk_migrate on old state bytes and returns its status.
func (k *kernel) migrate(layout uint32, version uint64, old []byte) uint32 {
	t, d := k.t, k.d
	o := alloc(t, d, max(1, uint64(len(old))))
	o.write(t, old)
	st := alloc(t, d, 4)
	check(t, "cuMemsetD32Async", d.cuMemsetD32Async(st.ptr, 0xFFFFFFFF, 1, k.stream), cudaSuccess)
	check(t, "launch hk_migrate", k.m.launch("hk_migrate", 1, 1, k.stream,
		k.state.ptr, k.stateLen, o.ptr, uint64(len(old)), layout, version, st.ptr), cudaSuccess)
	check(t, "cuStreamSynchronize", d.cuStreamSynchronize(k.stream), cudaSuccess)
	return binary.LittleEndian.Uint32(st.read(t))
}

// stateBytes copies the state back.
func (k *kernel) stateBytes() []byte { return k.state.read(k.t) }
