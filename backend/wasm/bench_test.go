package wasm

import (
	"context"
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/hotkernel/hotkernel/examples/kernels"
)

// counterMsgs returns n 16-byte counter messages {producer, pad, seq}
// spread over producers.
func counterMsgs(n, producers int, firstSeq uint64) [][]byte {
	msgs := make([][]byte, n)
	for i := range msgs {
		b := make([]byte, 16)
		binary.LittleEndian.PutUint32(b, uint32(i%producers))
		binary.LittleEndian.PutUint64(b[8:], firstSeq+uint64(i))
		msgs[i] = b
	}
	return msgs
}

// BenchmarkProcessTrivial measures the host's per-message cost with the
// cheapest kernel: batches of 16-byte messages, no outputs.
func BenchmarkProcessTrivial(b *testing.B) {
	for _, batch := range []int{256, 4096} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			ctx := context.Background()
			rt := newRuntime(b, nil)
			in := newInstance(b, rt, "trivial")
			msgs := counterMsgs(batch, 64, 0)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := in.Process(ctx, msgs, nil); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)*float64(batch)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

// BenchmarkProcessCounter is BenchmarkProcessTrivial with a kernel that
// updates per-producer state and emits one 16-byte output per message.
func BenchmarkProcessCounter(b *testing.B) {
	for _, batch := range []int{256, 4096} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			ctx := context.Background()
			rt := newRuntime(b, nil)
			in := newInstance(b, rt, "counter_v1")
			msgs := counterMsgs(batch, 64, 0)
			outs := 0
			emit := func([]byte) { outs++ }
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := in.Process(ctx, msgs, emit); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)*float64(batch)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

var stateSizes = []struct {
	name, suffix string
}{{"4KiB", ""}, {"1MiB", "_1m"}, {"16MiB", "_16m"}}

// BenchmarkExportState measures copying a kernel's state out.
func BenchmarkExportState(b *testing.B) {
	for _, s := range stateSizes {
		b.Run(s.name, func(b *testing.B) {
			in := newInstance(b, newRuntime(b, nil), "counter_v1"+s.suffix)
			b.SetBytes(int64(len(in.StateView())))
			b.ResetTimer()
			for range b.N {
				if st := in.ExportState(); st == nil {
					b.Fatal("no state")
				}
			}
		})
	}
}

// BenchmarkImportState measures writing state of the same layout into an
// instance (the direct copy, no kernel call).
func BenchmarkImportState(b *testing.B) {
	ctx := context.Background()
	for _, s := range stateSizes {
		b.Run(s.name, func(b *testing.B) {
			rt := newRuntime(b, nil)
			in := newInstance(b, rt, "counter_v1"+s.suffix)
			state := in.ExportState()
			b.SetBytes(int64(len(state)))
			b.ResetTimer()
			for range b.N {
				if err := in.ImportState(ctx, 1, 1, state); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkMigrate measures ImportState through hk_migrate: layout 1
// state into the layout-2 counter of the same size.
func BenchmarkMigrate(b *testing.B) {
	ctx := context.Background()
	for _, s := range stateSizes {
		b.Run(s.name, func(b *testing.B) {
			rt := newRuntime(b, nil)
			old := newInstance(b, rt, "counter_v1"+s.suffix)
			state := old.ExportState()
			in := newInstance(b, rt, "counter_v2"+s.suffix)
			b.SetBytes(int64(len(state)))
			b.ResetTimer()
			for range b.N {
				if err := in.ImportState(ctx, 1, 1, state); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCompile measures Compile (validation, machine-code compilation
// and the probe instance) of the 3 MB module and of the Go kernel, without
// a shared cache; this is the work a manager does before the pause.
func BenchmarkCompile(b *testing.B) {
	ctx := context.Background()
	for _, name := range []string{"big", "counter_go", "counter_v1"} {
		b.Run(name, func(b *testing.B) {
			bin := kernels.Wasm(name)
			b.SetBytes(int64(len(bin)))
			for range b.N {
				rt := newRuntime(b, func(c *Config) { c.Cache = nil })
				m, err := rt.Compile(ctx, source(name))
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				_ = m.Close(ctx)
				_ = rt.Close(ctx)
				b.StartTimer()
			}
		})
	}
}

// BenchmarkInstantiate measures Instantiate plus Init of compiled modules:
// the part of a reload that can also run before the pause.
func BenchmarkInstantiate(b *testing.B) {
	ctx := context.Background()
	for _, name := range []string{"counter_v1", "counter_v1_16m", "counter_go", "big"} {
		b.Run(name, func(b *testing.B) {
			rt := newRuntime(b, nil)
			m := compile(b, rt, name)
			b.ResetTimer()
			for range b.N {
				in, err := m.Instantiate(ctx)
				if err != nil {
					b.Fatal(err)
				}
				if err := in.Init(ctx); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				_ = in.Close(ctx)
				b.StartTimer()
			}
		})
	}
}
