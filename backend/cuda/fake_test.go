package cuda_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/hotkernel/hotkernel/backend/cuda"
	"github.com/hotkernel/hotkernel/code"
	cudakernels "github.com/hotkernel/hotkernel/examples/kernels/cuda"
	"github.com/hotkernel/hotkernel/internal/cudafake"
)

// These tests drive the backend through the driver double of
// internal/cudafake: the host side (batches, statuses, outputs, state
// handover, checkpoints, recovery from a poisoned context) is the real
// code; the kernels run as host C builds of the example sources. They say
// nothing about a real GPU; gpu_test.go does, on a machine with one.

var le = binary.LittleEndian

// fakeBackend returns a Backend on the driver double with every example
// kernel bound to its host implementation.
func fakeBackend(t *testing.T, mod func(*cuda.Config)) (*cuda.Backend, string) {
	t.Helper()
	lib := cudafake.Build(t)
	if err := cudafake.BindExamples(lib); err != nil {
		t.Fatal(err)
	}
	cfg := cuda.DefaultConfig()
	cfg.Library = lib
	if mod != nil {
		mod(&cfg)
	}
	b, err := cuda.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	return b, lib
}

func kernelSrc(name string) *code.Source {
	return code.FromPTX(string(cudakernels.PTX(name)), "hk_process").WithMetadata("name", name+".ptx")
}

func compile(t *testing.T, b *cuda.Backend, name string) *cuda.Program {
	t.Helper()
	p, err := b.CompileProgram(context.Background(), kernelSrc(name))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func start(t *testing.T, p *cuda.Program) *cuda.Instance {
	t.Helper()
	in, err := p.NewInstance()
	if err != nil {
		t.Fatal(err)
	}
	if err := in.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = in.Close(context.Background()) })
	return in
}

func msg(producer uint32, seq uint64) []byte {
	b := make([]byte, 16)
	le.PutUint32(b, producer)
	le.PutUint64(b[8:], seq)
	return b
}

// model is the meaning of a counter state, whatever its layout.
type model struct {
	checksum    uint64
	next, count [64]uint64
}

func (s *model) apply(m []byte) {
	p, seq := le.Uint32(m), le.Uint64(m[8:])
	s.next[p] = seq + 1
	s.count[p]++
	s.checksum = s.checksum*31 + seq + uint64(p)
}

func decode(t *testing.T, layout uint32, b []byte) model {
	t.Helper()
	var s model
	switch layout {
	case 1:
		s.checksum = le.Uint64(b)
		for i := range 64 {
			s.next[i] = le.Uint64(b[16+i*16:])
			s.count[i] = le.Uint64(b[24+i*16:])
		}
	case 2:
		for i := range 64 {
			s.count[i] = le.Uint64(b[8+i*8:])
			s.next[i] = le.Uint64(b[520+i*8:])
		}
		s.checksum = le.Uint64(b[1032:])
	default:
		t.Fatalf("layout %d", layout)
	}
	return s
}

// run processes msgs and returns the outputs' tags.
func run(t *testing.T, in *cuda.Instance, msgs [][]byte) []uint32 {
	t.Helper()
	var tags []uint32
	res, err := in.Process(context.Background(), msgs, func(out []byte) { tags = append(tags, le.Uint32(out[4:])) })
	if err != nil {
		t.Fatal(err)
	}
	if res.Processed != len(msgs) || len(res.Failures) != 0 || res.Outputs != len(msgs) {
		t.Fatalf("result %+v for %d messages", res, len(msgs))
	}
	return tags
}

func batch(from, n int) [][]byte {
	var msgs [][]byte
	for i := from; i < from+n; i++ {
		msgs = append(msgs, msg(uint32(i%5), uint64(i)))
	}
	return msgs
}

func TestFakeDevice(t *testing.T) {
	b, _ := fakeBackend(t, nil)
	info, ok := b.Device()
	if !ok || info.Arch != "sm_90" || info.DriverVersion == 0 || b.Name() != "cuda" {
		t.Fatalf("device %+v %v", info, ok)
	}
}

func TestProcessAndFailures(t *testing.T) {
	b, _ := fakeBackend(t, func(c *cuda.Config) { c.MaxBatchMessages = 7; c.InboxBytes = 64 })
	p := compile(t, b, "counter_v1")
	if p.StateLayout() != 1 || p.StateLen() != 4096 {
		t.Fatalf("layout %d len %d", p.StateLayout(), p.StateLen())
	}
	in := start(t, p)
	var want model
	msgs := batch(0, 50) // split into launches of at most 7 messages and 64 bytes
	for _, m := range msgs {
		want.apply(m)
	}
	tags := run(t, in, msgs)
	for _, tag := range tags {
		if tag != 1 {
			t.Fatalf("tag %d", tag)
		}
	}
	if got := decode(t, 1, in.StateView()); got != want {
		t.Fatal("state differs from the model")
	}

	// Failures: a producer out of range (code 1), a short message (code
	// 2), a message larger than the inbox. The rest go on.
	bad := [][]byte{msg(1, 100), msg(64, 101), []byte("short"), make([]byte, 65), msg(2, 102)}
	var outs int
	res, err := in.Process(context.Background(), bad, func([]byte) { outs++ })
	if err != nil {
		t.Fatal(err)
	}
	if res.Processed != 5 || outs != 2 || len(res.Failures) != 3 {
		t.Fatalf("result %+v, outputs %d", res, outs)
	}
	var ke *cuda.KernelError
	if !errors.As(res.Failures[0].Err, &ke) || ke.Code != 1 || res.Failures[0].Index != 1 {
		t.Errorf("failure 0: %+v", res.Failures[0])
	}
	if !errors.As(res.Failures[1].Err, &ke) || ke.Code != 2 {
		t.Errorf("failure 1: %+v", res.Failures[1])
	}
	if !errors.Is(res.Failures[2].Err, cuda.ErrMessageTooLarge) || res.Failures[2].Index != 3 {
		t.Errorf("failure 2: %+v", res.Failures[2])
	}
	if in.Err() != nil {
		t.Fatal(in.Err())
	}
}

func TestImportStateAndMigrate(t *testing.T) {
	b, _ := fakeBackend(t, nil)
	v1, v2 := compile(t, b, "counter_v1"), compile(t, b, "counter_v2")
	a := start(t, v1)
	var want model
	msgs := batch(0, 40)
	for _, m := range msgs {
		want.apply(m)
	}
	run(t, a, msgs)

	c, _ := v2.NewInstance()
	defer c.Close(context.Background())
	if err := c.ImportState(context.Background(), 1, 7, a.StateView()); err != nil {
		t.Fatal(err)
	}
	if got := decode(t, 2, c.StateView()); got != want {
		t.Fatal("migrated state differs")
	}
	if tags := run(t, c, batch(40, 3)); tags[0] != 2 {
		t.Fatalf("v2 tag %d", tags[0])
	}
	d, _ := v1.NewInstance()
	defer d.Close(context.Background())
	if err := d.ImportState(context.Background(), 1, 7, make([]byte, 10)); !errors.Is(err, cuda.ErrStateSize) {
		t.Fatalf("short state: %v", err)
	}
	err := d.ImportState(context.Background(), 9, 7, make([]byte, 10))
	var ke *cuda.KernelError
	if !errors.As(err, &ke) || ke.Code != 10 {
		t.Fatalf("unknown layout: %v", err)
	}
	tr := compile(t, b, "trivial")
	e, _ := tr.NewInstance()
	defer e.Close(context.Background())
	if err := e.ImportState(context.Background(), 5, 1, []byte{1}); !errors.Is(err, cuda.ErrNoMigrate) {
		t.Fatalf("no hk_migrate: %v", err)
	}
}

// TestAdoptInPlace checks the reload path: the new instance takes the
// state buffer over without a copy, the old one keeps the checkpoint of
// the cut-off, and closing the new one gives the old one its state back
// exactly as at the cut-off.
func TestAdoptInPlace(t *testing.T) {
	b, lib := fakeBackend(t, nil)
	v1 := compile(t, b, "counter_v1")
	old := start(t, v1)
	run(t, old, batch(0, 30))
	cut := bytes.Clone(old.StateView())

	next, _ := v1.NewInstance()
	ctx := context.Background()
	contexts := cudafake.Calls(lib, "cuCtxCreate_v2")
	if ok, err := next.PrepareAdopt(ctx, old); !ok || err != nil {
		t.Fatalf("PrepareAdopt %v %v", ok, err)
	}
	if cudafake.Calls(lib, "cuCtxCreate_v2") != contexts {
		t.Fatal("PrepareAdopt made a new context instead of joining the old one")
	}
	run(t, old, batch(30, 5)) // the old code still serves while prepared
	cut = bytes.Clone(old.StateView())
	htod := cudafake.Calls(lib, "cuMemcpyHtoD_v2") + cudafake.Calls(lib, "cuMemcpyHtoDAsync_v2")
	if ok, err := next.AdoptState(ctx, old); !ok || err != nil {
		t.Fatalf("AdoptState %v %v", ok, err)
	}
	run(t, next, batch(35, 20))
	if !bytes.Equal(old.StateView(), cut) {
		t.Fatal("the old instance's checkpoint is not the state at the cut-off")
	}
	if bytes.Equal(next.StateView(), cut) {
		t.Fatal("the new instance's state did not move on")
	}
	// Only the batches went host-to-device: the state was not copied.
	if n := cudafake.Calls(lib, "cuMemcpyHtoD_v2") + cudafake.Calls(lib, "cuMemcpyHtoDAsync_v2") - htod; n != 1 {
		t.Fatalf("%d host-to-device copies for one batch", n)
	}
	// Roll back: the old instance gets its buffer back, restored.
	if err := next.Close(ctx); err != nil {
		t.Fatal(err)
	}
	var want model
	for _, m := range batch(0, 35) {
		want.apply(m)
	}
	for _, m := range batch(35, 20) {
		want.apply(m)
	}
	run(t, old, batch(35, 20))
	if got := decode(t, 1, old.StateView()); got != want {
		t.Fatal("after the rollback the old code did not continue from the cut-off")
	}

	// Confirmed instead: the old instance closes first and the buffer
	// stays with the new one.
	next2, _ := v1.NewInstance()
	if ok, _ := next2.PrepareAdopt(ctx, old); !ok {
		t.Fatal("PrepareAdopt")
	}
	if ok, _ := next2.AdoptState(ctx, old); !ok {
		t.Fatal("AdoptState")
	}
	cut = bytes.Clone(old.StateView())
	if err := old.Close(ctx); err != nil {
		t.Fatal(err)
	}
	run(t, next2, batch(55, 10))
	for _, m := range batch(55, 10) {
		want.apply(m)
	}
	if got := decode(t, 1, next2.StateView()); got != want {
		t.Fatal("the new instance lost the state when the old one closed")
	}
	_ = next2.Close(ctx)
}

// TestStickyFaultRecovery: the new code faults with an illegal address,
// which poisons the context. The old instance, the rollback point, gets a
// new context, loads its module again and restores its state from the
// checkpoint taken at the cut-off.
func TestStickyFaultRecovery(t *testing.T) {
	b, lib := fakeBackend(t, nil)
	v2, broken := compile(t, b, "counter_v2"), compile(t, b, "counter_v2_broken")
	old := start(t, v2)
	run(t, old, batch(0, 3)) // seqs 0..2: below the broken code's fault
	cut := bytes.Clone(old.StateView())

	ctx := context.Background()
	next, _ := broken.NewInstance()
	if ok, err := next.PrepareAdopt(ctx, old); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if ok, err := next.AdoptState(ctx, old); !ok || err != nil {
		t.Fatal(ok, err)
	}
	destroyed := cudafake.Calls(lib, "cuCtxDestroy_v2")
	res, err := next.Process(ctx, batch(3, 10), func([]byte) {})
	var dead *cuda.DeadError
	if !errors.As(err, &dead) || res.Processed != 0 || next.Err() == nil {
		t.Fatalf("broken code: %+v, %v; want a DeadError", res, err)
	}
	if !strings.Contains(err.Error(), "700") || !strings.Contains(err.Error(), "ILLEGAL_ADDRESS") {
		t.Errorf("error %q does not name the CUDA error", err)
	}
	if fault := cudafake.LastFault(lib); fault == "" {
		t.Error("the fake saw no fault")
	}
	if !bytes.Equal(old.StateView(), cut) {
		t.Fatal("the checkpoint changed")
	}
	_ = next.Close(ctx)
	var want model
	for _, m := range batch(0, 13) {
		want.apply(m)
	}
	run(t, old, batch(3, 10))
	if cudafake.Calls(lib, "cuCtxDestroy_v2") == destroyed {
		t.Error("the poisoned context was not destroyed")
	}
	if got := decode(t, 2, old.StateView()); got != want {
		t.Fatal("the old code did not resume from the checkpoint")
	}

	// A fault with no checkpoint loses the state: the instance says so.
	lone := start(t, broken)
	if _, err := lone.Process(ctx, batch(0, 5), func([]byte) {}); !errors.As(err, &dead) {
		t.Fatalf("lone broken instance: %v", err)
	}
	if lone.StateView() != nil {
		t.Error("a dead instance with no host copy returned a state")
	}
}

func TestCompileErrorsFromDriver(t *testing.T) {
	b, _ := fakeBackend(t, nil)
	text := string(cudakernels.PTX("trivial"))
	lines := strings.Split(text, "\n")
	lines = append(lines[:8], append([]string{"// hk_fake_jit_error"}, lines[8:]...)...)
	_, err := b.Compile(context.Background(), code.FromPTX(strings.Join(lines, "\n"), "hk_process").WithMetadata("name", "bad.ptx"))
	var ce *code.Error
	if !errors.As(err, &ce) || ce.Line != 9 || !strings.Contains(err.Error(), "bad.ptx:9:") {
		t.Fatalf("JIT error: %v; want it at bad.ptx:9", err)
	}
	// A CUBIN built for another architecture is refused before loading.
	cubin := cudakernels.CUBIN("trivial", "sm_80")
	_, err = b.Compile(context.Background(), code.FromCUBIN(cubin, "hk_process").WithMetadata("name", "trivial.sm_80.cubin"))
	if !errors.Is(err, code.ErrArch) {
		t.Fatalf("sm_80 CUBIN on an sm_90 device: %v", err)
	}
}
