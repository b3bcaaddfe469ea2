package hotkernel_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/hotkernel/hotkernel"
	"github.com/hotkernel/hotkernel/backend/wasm"
	"github.com/hotkernel/hotkernel/internal/bench"
)

// BenchmarkThroughputTrivial sends b.N 16-byte messages from one producer
// to a kernel with the cheapest handler and waits until all are handled.
func BenchmarkThroughputTrivial(b *testing.B) {
	m := newManager(b, testConfig(), wasm.DefaultConfig())
	k, err := m.Register(context.Background(), "t", bench.Kernel("trivial", 0), hotkernel.RegisterOptions{})
	if err != nil {
		b.Fatal(err)
	}
	msg := make([]byte, 16)
	ctx := context.Background()
	b.ResetTimer()
	for i := range b.N {
		binary.LittleEndian.PutUint64(msg[8:], uint64(i))
		if _, err := k.Send(ctx, msg); err != nil {
			b.Fatal(err)
		}
	}
	for k.Handled() < uint64(b.N) {
		time.Sleep(10 * time.Microsecond)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkPause reloads a counter kernel between two instances of the
// same code b.N times, idle and with 4 producers, for 4 KiB, 1 MiB and
// 16 MiB of state, and reports the pause percentiles.
func BenchmarkPause(b *testing.B) {
	for _, size := range []struct{ name, kernel string }{
		{"4KiB", "counter_v1"}, {"1MiB", "counter_v1_1m"}, {"16MiB", "counter_v1_16m"},
	} {
		for _, producers := range []int{0, 4} {
			b.Run(fmt.Sprintf("%s/producers=%d", size.name, producers), func(b *testing.B) {
				p, err := bench.Pause(context.Background(), size.name, size.kernel, size.kernel, max(b.N, 2), producers, false)
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(p.P50.Nanoseconds()), "p50-ns")
				b.ReportMetric(float64(p.P99.Nanoseconds()), "p99-ns")
				b.ReportMetric(float64(p.Max.Nanoseconds()), "max-ns")
			})
		}
	}
}

// BenchmarkPauseModuleSize reloads with new bytes every time, so that each
// reload compiles its module, a small one and one of over 2 MB: the
// compile time grows, the pause does not.
func BenchmarkPauseModuleSize(b *testing.B) {
	for _, kernel := range []string{"trivial", "big"} {
		b.Run(kernel, func(b *testing.B) {
			p, err := bench.Pause(context.Background(), kernel, kernel, kernel, max(b.N, 2), 0, true)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(p.P50.Nanoseconds()), "pause-p50-ns")
			b.ReportMetric(float64(p.Compile.Nanoseconds()), "compile-p50-ns")
		})
	}
}

// BenchmarkThroughputUnderReloads measures the trivial kernel's rate with
// 4 producers for 1 s with and without 10 reloads per second.
func BenchmarkThroughputUnderReloads(b *testing.B) {
	for _, every := range []time.Duration{0, 100 * time.Millisecond} {
		b.Run(fmt.Sprintf("reload-every=%v", every), func(b *testing.B) {
			for b.Loop() {
				t, err := bench.MessageRate(context.Background(), "trivial", 4, time.Second, every)
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(t.PerSecond, "msgs/s")
			}
		})
	}
}
