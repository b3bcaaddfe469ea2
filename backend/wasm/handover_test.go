package wasm

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// spreadMsgs returns n counter messages whose sequence numbers are stride
// apart from first, so that the counter's histogram writes to n different
// places of its state (n different pages for a stride of 4096).
func spreadMsgs(n int, first, stride uint64) [][]byte {
	msgs := make([][]byte, n)
	for i := range msgs {
		b := make([]byte, 16)
		binary.LittleEndian.PutUint32(b, uint32(i%64))
		binary.LittleEndian.PutUint64(b[8:], first+uint64(i)*stride)
		msgs[i] = b
	}
	return msgs
}

// process runs msgs and fails the test on any failure.
func process(tb testing.TB, in *Instance, msgs [][]byte) {
	tb.Helper()
	res, err := in.Process(context.Background(), msgs, nil)
	if err != nil || len(res.Failures) > 0 || res.Processed != len(msgs) {
		tb.Fatalf("process: %+v, %v", res, err)
	}
}

// instantiate starts an instance of m without state and closes it when
// the test ends.
func instantiate(tb testing.TB, m *Module) *Instance {
	tb.Helper()
	in, err := m.Instantiate(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = in.Close(context.Background()) })
	return in
}

// adopt calls AdoptState and fails the test unless the result is want.
func adopt(tb testing.TB, in, from *Instance, want bool) {
	tb.Helper()
	ok, err := in.AdoptState(context.Background(), from)
	if err != nil || ok != want {
		tb.Fatalf("AdoptState: %v, %v; want %v", ok, err, want)
	}
}

func stateSum(in *Instance) [32]byte { return sha256.Sum256(in.StateView()) }

// zeroCopy tells whether AdoptState remaps on this system.
func zeroCopy() bool { return runtime.GOOS == "linux" }

func TestAdoptState(t *testing.T) {
	for _, s := range stateSizes {
		t.Run(s.name, func(t *testing.T) {
			rt := newRuntime(t, nil)
			m := compile(t, rt, "counter_v1"+s.suffix)
			old, ref := newInstance(t, rt, "counter_v1"+s.suffix), newInstance(t, rt, "counter_v1"+s.suffix)
			first := spreadMsgs(300, 0, 4096)
			process(t, old, first)
			process(t, ref, first)
			before := stateSum(old)

			next := instantiate(t, m)
			adopt(t, next, old, true)
			if want := zeroCopy() && next.stateLen >= adoptCopyBelow; remapped(next) != want {
				t.Fatalf("remapped %v, want %v", remapped(next), want)
			}
			if !bytes.Equal(next.StateView(), old.StateView()) {
				t.Fatal("adopted state differs from the source's")
			}
			// The new instance's writes do not reach the old one.
			second := spreadMsgs(500, 7, 4096)
			process(t, next, second)
			process(t, ref, second)
			if !bytes.Equal(next.StateView(), ref.StateView()) {
				t.Fatal("state after processing differs from the reference")
			}
			if stateSum(old) != before {
				t.Fatal("the source's state changed after the adopter processed messages")
			}
			// Rollback: the adopter goes, the old instance goes on from
			// the cut-off.
			if err := next.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			if stateSum(old) != before {
				t.Fatal("the source's state changed when the adopter closed")
			}
			back := newInstance(t, rt, "counter_v1"+s.suffix)
			process(t, back, first)
			third := spreadMsgs(200, 3, 4096)
			process(t, old, third)
			process(t, back, third)
			if !bytes.Equal(old.StateView(), back.StateView()) {
				t.Fatal("the source after rollback differs from the reference")
			}
		})
	}
}

// TestAdoptStateChain hands the state down seven generations of
// instances of two modules with the same layout, with writes between
// handovers, a rollback in the middle, and the previous generation
// closed only after the next one ran; each state is checked against a
// reference instance that processed the same messages. In the prepared
// variant each handover is prepared first, and the current generation
// goes on writing between PrepareAdopt and AdoptState.
func TestAdoptStateChain(t *testing.T) {
	for _, tc := range []struct {
		suffix  string
		prepare bool
	}{{"_1m", false}, {"_16m", false}, {"_1m", true}, {"_16m", true}} {
		suffix := tc.suffix
		name := suffix[1:]
		if tc.prepare {
			name += "/prepared"
		}
		t.Run(name, func(t *testing.T) {
			rt := newRuntime(t, nil)
			mods := []*Module{compile(t, rt, "counter_v1"+suffix), compile(t, rt, "counter_v1"+suffix)}
			ref := newInstance(t, rt, "counter_v1"+suffix)
			cur := newInstance(t, rt, "counter_v1"+suffix)
			seq := uint64(0)
			step := func(in *Instance, n int, stride uint64) {
				msgs := spreadMsgs(n, seq, stride)
				seq += uint64(n) * stride
				process(t, in, msgs)
				process(t, ref, msgs)
			}
			step(cur, 400, 4096)
			for gen := 1; gen <= 7; gen++ {
				next := instantiate(t, mods[gen%2])
				if tc.prepare && gen == 2 {
					// A reload abandoned after its preparation.
					gone := instantiate(t, mods[0])
					prepare(t, gone, cur, zeroCopy())
					step(cur, 30, 4096)
					_ = gone.Close(context.Background())
				}
				if tc.prepare {
					prepare(t, next, cur, zeroCopy())
					step(cur, 20*gen, 4096)
				}
				adopt(t, next, cur, true)
				if remapped(next) != zeroCopy() {
					t.Fatalf("generation %d: remapped %v", gen, remapped(next))
				}
				if !bytes.Equal(next.StateView(), ref.StateView()) {
					t.Fatalf("generation %d: adopted state differs from the reference", gen)
				}
				checkpoint := stateSum(cur)
				if gen == 4 {
					// The new code fails: it wrote some pages, then the
					// old instance takes over again and goes on.
					process(t, next, spreadMsgs(100, 1<<40, 4096))
					if stateSum(cur) != checkpoint {
						t.Fatalf("generation %d: rollback point changed", gen)
					}
					_ = next.Close(context.Background())
					step(cur, 50, 4096)
					continue
				}
				step(next, 100*gen, uint64(4096*gen+1))
				if stateSum(cur) != checkpoint {
					t.Fatalf("generation %d: the previous generation's state changed", gen)
				}
				_ = cur.Close(context.Background())
				cur = next
				if !bytes.Equal(cur.StateView(), ref.StateView()) {
					t.Fatalf("generation %d: state differs from the reference", gen)
				}
			}
		})
	}
}

// TestAdoptStateRefused covers the cases where AdoptState leaves the work
// to ImportState, and the errors.
func TestAdoptStateRefused(t *testing.T) {
	ctx := context.Background()
	rt := newRuntime(t, nil)
	v1 := newInstance(t, rt, "counter_v1_1m")
	process(t, v1, spreadMsgs(100, 0, 4096))

	// Another layout: false, and ImportState migrates.
	v2 := instantiate(t, compile(t, rt, "counter_v2_1m"))
	adopt(t, v2, v1, false)
	if err := v2.ImportState(ctx, v1.StateLayout(), 1, v1.StateView()); err != nil {
		t.Fatal(err)
	}
	// Another length.
	small := instantiate(t, compile(t, rt, "counter_v1"))
	adopt(t, small, v1, false)
	// Itself.
	adopt(t, v1, v1, false)

	if zeroCopy() {
		// The source's own source is still open: its pages are the base
		// of two instances, so they cannot be brought up to date.
		m := compile(t, rt, "counter_v1_1m")
		b := instantiate(t, m)
		adopt(t, b, v1, true)
		process(t, b, spreadMsgs(10, 5, 4096))
		c := instantiate(t, m)
		adopt(t, c, b, false)
		if err := c.ImportState(ctx, 1, 1, b.StateView()); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(c.StateView(), b.StateView()) {
			t.Fatal("copied state differs")
		}
		// Once it is closed, the handover works.
		_ = v1.Close(ctx)
		d := instantiate(t, m)
		adopt(t, d, b, true)
		if !bytes.Equal(d.StateView(), b.StateView()) {
			t.Fatal("adopted state differs")
		}
	}

	// A closed source is an error; a closed target too.
	src := newInstance(t, rt, "counter_v1_1m")
	dst := instantiate(t, compile(t, rt, "counter_v1_1m"))
	_ = src.Close(ctx)
	if ok, err := dst.AdoptState(ctx, src); ok || err == nil {
		t.Fatalf("closed source: %v, %v", ok, err)
	}
	_ = dst.Close(ctx)
	if ok, err := dst.AdoptState(ctx, newInstance(t, rt, "counter_v1_1m")); ok || err == nil {
		t.Fatalf("closed target: %v, %v", ok, err)
	}
}

// TestAdoptStateDeadSource adopts the state of an instance that died
// (its runtime closed under it): its memory stays readable until it is
// closed.
func TestAdoptStateDeadSource(t *testing.T) {
	ctx := context.Background()
	rt, rtOld := newRuntime(t, nil), newRuntime(t, nil)
	old := newInstance(t, rtOld, "counter_v1_1m")
	process(t, old, spreadMsgs(100, 0, 4096))
	want := old.ExportState()
	_ = rtOld.Close(ctx)
	if _, err := old.Process(ctx, spreadMsgs(1, 0, 1), nil); err == nil || old.Err() == nil {
		t.Fatalf("instance of a closed runtime not dead: %v", err)
	}
	next := instantiate(t, compile(t, rt, "counter_v1_1m"))
	adopt(t, next, old, true)
	_ = old.Close(ctx)
	if !bytes.Equal(next.StateView(), want) {
		t.Fatal("state adopted from a dead instance differs")
	}
	process(t, next, spreadMsgs(10, 1, 4096))
}

// openFDs counts the process's open file descriptors.
func openFDs(t *testing.T) int {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd:", err)
	}
	return len(entries)
}

// rss is the process's resident memory in bytes.
func rss(t *testing.T) int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		t.Skip("no /proc/self/statm:", err)
	}
	f := strings.Fields(string(b))
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}

// TestAdoptStateNoLeak runs many generations of 16 MiB states, every page
// written in each, and checks that descriptors and memory are given back.
func TestAdoptStateNoLeak(t *testing.T) {
	if !zeroCopy() {
		t.Skip("memfd-backed memory is Linux-only")
	}
	rt := newRuntime(t, nil)
	m := compile(t, rt, "counter_v1_16m")
	cur := instantiate(t, m)
	if err := cur.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	pages := spreadMsgs(16<<20/4096, 0, 4096) // one message per page of state
	process(t, cur, pages)
	fds, mem := openFDs(t), rss(t)
	const gens = 40
	for i := range gens {
		next := instantiate(t, m)
		adopt(t, next, cur, true)
		process(t, next, spreadMsgs(len(pages), uint64(i+1), 4096))
		_ = cur.Close(context.Background())
		cur = next
		if i == 0 {
			fds, mem = openFDs(t), rss(t)
		}
	}
	runtime.GC()
	if n := openFDs(t); n > fds {
		t.Errorf("open descriptors grew from %d to %d over %d generations", fds, n, gens)
	}
	// Each generation holds 16 MiB of private pages and 16 MiB of base
	// file at most; leaking them would add 1 GiB or more.
	if grown := rss(t) - mem; grown > 128<<20 {
		t.Errorf("resident memory grew by %d MiB over %d generations", grown>>20, gens)
	}

	// Instances without handover release everything too.
	before := openFDs(t)
	for range 100 {
		in := instantiate(t, m)
		_ = in.Close(context.Background())
	}
	if n := openFDs(t); n != before {
		t.Errorf("open descriptors %d after 100 instances, %d before", n, before)
	}
}

// BenchmarkAdoptState measures AdoptState (the reload pause's state
// handover) into a fresh instance from one that adopted its state in the
// previous round and since wrote the given number of pages, for 4 KiB, 1
// MiB and 16 MiB of state. Compare with BenchmarkImportState. The
// prepared variants call PrepareAdopt, untimed, before the pages are
// written, as a reload does before its pause.
func BenchmarkAdoptState(b *testing.B) {
	ctx := context.Background()
	for _, s := range stateSizes {
		for _, v := range []struct {
			written  int
			prepared bool
		}{{0, false}, {16, false}, {256, false}, {0, true}, {16, true}, {256, true}} {
			written := v.written
			name := fmt.Sprintf("%s/written=%d", s.name, written)
			if v.prepared {
				name += "/prepared"
			}
			b.Run(name, func(b *testing.B) {
				rt := newRuntime(b, nil)
				m := compile(b, rt, "counter_v1"+s.suffix)
				cur := newInstance(b, rt, "counter_v1"+s.suffix)
				b.SetBytes(int64(len(cur.StateView())))
				seq := uint64(0)
				b.ResetTimer()
				for range b.N {
					b.StopTimer()
					next, err := m.Instantiate(ctx)
					if err != nil {
						b.Fatal(err)
					}
					if v.prepared {
						if _, err := next.PrepareAdopt(ctx, cur); err != nil {
							b.Fatal(err)
						}
					}
					if written > 0 {
						process(b, cur, spreadMsgs(written, seq, 4096))
						seq += uint64(written) * 4096
					}
					b.StartTimer()
					ok, err := next.AdoptState(ctx, cur)
					b.StopTimer()
					if !ok || err != nil {
						b.Fatal(ok, err)
					}
					_ = cur.Close(ctx)
					cur = next
					b.StartTimer()
				}
				b.StopTimer()
				_ = cur.Close(ctx)
			})
		}
	}
}
