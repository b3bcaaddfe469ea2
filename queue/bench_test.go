package queue

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// benchCapacity is the ring size of the throughput benchmarks.
const benchCapacity = 1024

// benchFlow sends b.N messages from producers goroutines to one consumer
// that pops with batches of batch, and reports ns per message and
// messages per second.
func benchFlow(b *testing.B, producers, batch int) {
	q, err := New[uint64](Config{Capacity: benchCapacity, Policy: Block})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	dst := make([]uint64, batch)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for p := range producers {
		n := b.N / producers
		if p < b.N%producers {
			n++
		}
		wg.Go(func() {
			for i := range n {
				if _, err := q.Push(ctx, uint64(i)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	for got := 0; got < b.N; {
		if err := q.WaitNonEmpty(ctx); err != nil {
			b.Fatal(err)
		}
		_, n := q.PopBatch(dst)
		got += n
	}
	elapsed := time.Since(start)
	b.StopTimer()
	wg.Wait()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
}

// BenchmarkSPSC is one producer and one consumer, per message.
func BenchmarkSPSC(b *testing.B) {
	for _, batch := range []int{1, 64, 256} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) { benchFlow(b, 1, batch) })
	}
}

// BenchmarkMPSC4 is four producers and one consumer, per message.
func BenchmarkMPSC4(b *testing.B) {
	for _, batch := range []int{1, 64, 256} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) { benchFlow(b, 4, batch) })
	}
}

// BenchmarkPushPopOneGoroutine is the cost of the operations alone, with
// no other goroutine touching the queue: 64 TryPush then one PopBatch of
// 64, per message.
func BenchmarkPushPopOneGoroutine(b *testing.B) {
	q, err := New[uint64](Config{Capacity: 64})
	if err != nil {
		b.Fatal(err)
	}
	dst := make([]uint64, 64)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := q.TryPush(uint64(i)); err != nil {
			b.Fatal(err)
		}
		if i++; i%64 == 0 {
			q.PopBatch(dst)
		}
	}
}

// BenchmarkTryPushFull is the cost of refusing a push on a full queue.
func BenchmarkTryPushFull(b *testing.B) {
	q, err := New[uint64](Config{Capacity: 4, Policy: Fail})
	if err != nil {
		b.Fatal(err)
	}
	for range 4 {
		q.TryPush(0)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := q.TryPush(1); err == nil {
			b.Fatal("push into a full queue succeeded")
		}
	}
}
