package wasm

import (
	"bytes"
	"context"
	"runtime"
	"sync"
	"testing"
)

// prepare calls PrepareAdopt and fails the test unless the result is
// want.
func prepare(tb testing.TB, in, from *Instance, want bool) {
	tb.Helper()
	ok, err := in.PrepareAdopt(context.Background(), from)
	if err != nil || ok != want {
		tb.Fatalf("PrepareAdopt: %v, %v; want %v", ok, err, want)
	}
}

// TestPrepareAdopt prepares the handover while the source goes on
// processing messages on another goroutine, writing pages it wrote
// before and pages it never wrote, then adopts: the state must be the
// source's exactly. The source is first an instance with its own state
// and then one that adopted its state itself.
func TestPrepareAdopt(t *testing.T) {
	for _, s := range stateSizes {
		for _, gen := range []string{"first", "second"} {
			t.Run(s.name+"/"+gen, func(t *testing.T) {
				rt := newRuntime(t, nil)
				kernel := "counter_v1" + s.suffix
				m := compile(t, rt, kernel)
				old, ref := newInstance(t, rt, kernel), newInstance(t, rt, kernel)
				both := func(msgs [][]byte) { process(t, old, msgs); process(t, ref, msgs) }
				both(spreadMsgs(200, 0, 4096))
				if gen == "second" {
					next := instantiate(t, m)
					adopt(t, next, old, true)
					_ = old.Close(context.Background())
					old = next
					both(spreadMsgs(100, 1<<30, 4096))
				}
				zc := zeroCopy() && old.stateLen >= adoptCopyBelow

				next := instantiate(t, m)
				var wg sync.WaitGroup
				wg.Add(1)
				go func() {
					defer wg.Done()
					// Pages written before, then pages never written.
					both(spreadMsgs(150, 0, 4096))
					both(spreadMsgs(150, 2048, 4096))
				}()
				prepare(t, next, old, zc)
				wg.Wait()
				if prepared(next) != zc {
					t.Fatalf("prepared %v, want %v", prepared(next), zc)
				}
				both(spreadMsgs(300, 4096*300+5, 4096))

				adopt(t, next, old, true)
				if prepared(next) || remapped(next) != zc {
					t.Fatalf("after AdoptState: prepared %v, remapped %v", prepared(next), remapped(next))
				}
				if !bytes.Equal(next.StateView(), old.StateView()) || !bytes.Equal(next.StateView(), ref.StateView()) {
					t.Fatal("adopted state differs from the source's")
				}
				checkpoint := stateSum(old)
				more := spreadMsgs(400, 9, 4096)
				process(t, next, more)
				process(t, ref, more)
				if !bytes.Equal(next.StateView(), ref.StateView()) {
					t.Fatal("state after processing differs from the reference")
				}
				if stateSum(old) != checkpoint {
					t.Fatal("the source's state changed after the adopter processed messages")
				}
			})
		}
	}
}

// TestPrepareAdoptAbandoned prepares handovers that never happen: the
// prepared instance is closed, and the source keeps working and can
// still hand its state over later, with and without preparation.
func TestPrepareAdoptAbandoned(t *testing.T) {
	ctx := context.Background()
	for _, suffix := range []string{"_1m", "_16m"} {
		t.Run(suffix[1:], func(t *testing.T) {
			rt := newRuntime(t, nil)
			kernel := "counter_v1" + suffix
			m := compile(t, rt, kernel)
			cur, ref := newInstance(t, rt, kernel), newInstance(t, rt, kernel)
			seq := uint64(0)
			both := func(in *Instance, n int) {
				msgs := spreadMsgs(n, seq, 4096)
				seq += uint64(n) * 4096
				process(t, in, msgs)
				process(t, ref, msgs)
			}
			both(cur, 200)
			for round := range 4 {
				refs := baseRefs(cur)
				next := instantiate(t, m)
				prepare(t, next, cur, zeroCopy())
				both(cur, 50)
				if zeroCopy() && baseRefs(cur) != refs+1 {
					t.Fatalf("round %d: base references %d while prepared, want %d", round, baseRefs(cur), refs+1)
				}
				_ = next.Close(ctx)
				if baseRefs(cur) != refs {
					t.Fatalf("round %d: base references %d after the prepared instance closed, want %d", round, baseRefs(cur), refs)
				}
				both(cur, 50)
				if !bytes.Equal(cur.StateView(), ref.StateView()) {
					t.Fatalf("round %d: the source's state differs from the reference", round)
				}
				// A later handover, prepared every other round.
				next = instantiate(t, m)
				if round%2 == 0 {
					prepare(t, next, cur, zeroCopy())
					both(cur, 30)
				}
				adopt(t, next, cur, true)
				if !bytes.Equal(next.StateView(), ref.StateView()) {
					t.Fatalf("round %d: adopted state differs from the reference", round)
				}
				_ = cur.Close(ctx)
				cur = next
				both(cur, 20)
			}
		})
	}
}

// TestPrepareAdoptRefused prepares handovers that AdoptState then
// refuses or takes from another source: the instance falls back to its
// own memory (ImportState copies correctly) or to the other source, and
// the prepared file's reference is let go.
func TestPrepareAdoptRefused(t *testing.T) {
	ctx := context.Background()
	rt := newRuntime(t, nil)
	m := compile(t, rt, "counter_v1_1m")
	v1 := newInstance(t, rt, "counter_v1_1m")
	process(t, v1, spreadMsgs(100, 0, 4096))

	// The source's own source is still open: AdoptState refuses.
	b := instantiate(t, m)
	adopt(t, b, v1, true)
	process(t, b, spreadMsgs(10, 5, 4096))
	c := instantiate(t, m)
	prepare(t, c, b, zeroCopy())
	process(t, b, spreadMsgs(10, 6, 4096))
	if zeroCopy() {
		adopt(t, c, b, false)
		if prepared(c) || remapped(c) || baseRefs(b) != 2 {
			t.Fatalf("after refusal: prepared %v, remapped %v, base references %d", prepared(c), remapped(c), baseRefs(b))
		}
	}
	if err := c.ImportState(ctx, 1, 1, b.StateView()); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(c.StateView(), b.StateView()) {
		t.Fatal("imported state differs")
	}
	process(t, c, spreadMsgs(10, 7, 4096))

	// ImportState and Init straight after PrepareAdopt.
	_ = v1.Close(ctx)
	for _, init := range []bool{false, true} {
		d := instantiate(t, m)
		prepare(t, d, b, zeroCopy())
		var err error
		if init {
			err = d.Init(ctx)
		} else {
			err = d.ImportState(ctx, 1, 1, b.StateView())
		}
		if err != nil {
			t.Fatal(err)
		}
		if prepared(d) || remapped(d) || zeroCopy() && baseRefs(b) != 1 {
			t.Fatalf("init %v: prepared %v, remapped %v, base references %d", init, prepared(d), remapped(d), baseRefs(b))
		}
		if !init && !bytes.Equal(d.StateView(), b.StateView()) {
			t.Fatal("imported state differs")
		}
		_ = d.Close(ctx)
	}

	// Prepared from one source, adopted from another.
	e := instantiate(t, m)
	prepare(t, e, c, zeroCopy())
	adopt(t, e, b, true)
	if !bytes.Equal(e.StateView(), b.StateView()) {
		t.Fatal("state adopted from another source than the prepared one differs")
	}
	if zeroCopy() && (baseRefs(c) != 1 || baseRefs(b) != 2) {
		t.Fatalf("base references: prepared source %d, adopted source %d", baseRefs(c), baseRefs(b))
	}

	// Nothing to prepare: another layout, another length, itself, a
	// small state; a closed source is no error.
	v2 := instantiate(t, compile(t, rt, "counter_v2_1m"))
	prepare(t, v2, b, false)
	small := instantiate(t, compile(t, rt, "counter_v1"))
	prepare(t, small, b, false)
	prepare(t, e, e, false)
	closed := newInstance(t, rt, "counter_v1_1m")
	_ = closed.Close(ctx)
	prepare(t, instantiate(t, m), closed, false)
	// A closed instance cannot prepare.
	f := instantiate(t, m)
	_ = f.Close(ctx)
	if ok, err := f.PrepareAdopt(ctx, b); ok || err == nil {
		t.Fatalf("closed instance: %v, %v", ok, err)
	}
}

// TestPrepareAdoptSourceCloses closes the source while an instance is
// prepared from it: the prepared instance keeps the file, and can still
// fall back to ImportState of a copy.
func TestPrepareAdoptSourceCloses(t *testing.T) {
	ctx := context.Background()
	rt := newRuntime(t, nil)
	m := compile(t, rt, "counter_v1_1m")
	src := newInstance(t, rt, "counter_v1_1m")
	process(t, src, spreadMsgs(100, 0, 4096))
	want := src.ExportState()
	next := instantiate(t, m)
	prepare(t, next, src, zeroCopy())
	_ = src.Close(ctx)
	if ok, err := next.AdoptState(ctx, src); ok || err == nil {
		t.Fatalf("closed source: %v, %v", ok, err)
	}
	if err := next.ImportState(ctx, 1, 1, want); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(next.StateView(), want) {
		t.Fatal("imported state differs")
	}
}

// TestPrepareAdoptNoLeak prepares and abandons many instances of a 16 MiB
// state, and checks that descriptors, memory and references are given
// back and the source still hands its state over.
func TestPrepareAdoptNoLeak(t *testing.T) {
	if !zeroCopy() {
		t.Skip("memfd-backed memory is Linux-only")
	}
	ctx := context.Background()
	rt := newRuntime(t, nil)
	m := compile(t, rt, "counter_v1_16m")
	first := instantiate(t, m)
	if err := first.Init(ctx); err != nil {
		t.Fatal(err)
	}
	pages := spreadMsgs(16<<20/4096, 0, 4096)
	process(t, first, pages)
	cur := instantiate(t, m)
	adopt(t, cur, first, true)
	_ = first.Close(ctx)
	process(t, cur, pages)
	refs := baseRefs(cur)
	fds, mem := openFDs(t), rss(t)
	const rounds = 60
	for i := range rounds {
		next := instantiate(t, m)
		prepare(t, next, cur, true)
		// The prepared instance reads every page, as it would once adopted.
		for off := 0; off < len(next.StateView()); off += 4096 {
			_ = next.StateView()[off]
		}
		process(t, cur, spreadMsgs(64, uint64(i), 4096))
		_ = next.Close(ctx)
	}
	runtime.GC()
	if n := openFDs(t); n > fds {
		t.Errorf("open descriptors grew from %d to %d over %d prepared instances", fds, n, rounds)
	}
	if grown := rss(t) - mem; grown > 128<<20 {
		t.Errorf("resident memory grew by %d MiB over %d prepared instances", grown>>20, rounds)
	}
	if baseRefs(cur) != refs {
		t.Errorf("base references %d, want %d", baseRefs(cur), refs)
	}
	next := instantiate(t, m)
	prepare(t, next, cur, true)
	adopt(t, next, cur, true)
	if !bytes.Equal(next.StateView(), cur.StateView()) {
		t.Fatal("adopted state differs")
	}
}
