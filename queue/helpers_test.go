package queue

import (
	"context"
	"runtime"
	"testing"
	"time"
)

// guard is how long a test may wait for anything before it is declared
// hung. It only guards against deadlocks; no test asserts on speed.
const guard = 30 * time.Second

// newQ returns a new queue or fails the test.
func newQ[T any](t testing.TB, capacity int, p Policy) *Queue[T] {
	t.Helper()
	q, err := New[T](Config{Capacity: capacity, Policy: p})
	if err != nil {
		t.Fatalf("New(%d, %v): %v", capacity, p, err)
	}
	return q
}

// noLeaks records the number of goroutines now and, when the test ends,
// fails it if that number has not come back within the guard time.
func noLeaks(t *testing.T) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(guard)
		for {
			n := runtime.NumGoroutine()
			if n <= before {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("goroutine leak: %d goroutines, %d before the test\n%s", n, before, stacks())
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
}

// wait waits for done to be closed and fails the test with every
// goroutine's stack if it is not within the guard time.
func wait(t *testing.T, done <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(guard):
		t.Fatalf("hung waiting for %s\n%s", what, stacks())
	}
}

// until polls cond until it holds, failing the test after the guard time.
func until(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(guard)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("hung waiting for %s\n%s", what, stacks())
		}
		time.Sleep(time.Millisecond)
	}
}

func stacks() string {
	buf := make([]byte, 1<<20)
	return string(buf[:runtime.Stack(buf, true)])
}

// guardCtx returns a context that ends after the guard time, so that a
// hung wait in a test turns into an error instead of a hang.
func guardCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	t.Cleanup(cancel)
	return ctx
}

// popped is one message as the consumer saw it.
type popped[T any] struct {
	seq uint64
	val T
}

// consume runs the consumer loop until the queue is closed and empty, with
// batch sizes taken in turn from sizes, and returns every popped message
// with its sequence. Errors other than ErrClosed are reported on t.
func consume[T any](t *testing.T, ctx context.Context, q *Queue[T], sizes []int) []popped[T] {
	var out []popped[T]
	maxSize := 0
	for _, s := range sizes {
		maxSize = max(maxSize, s)
	}
	buf := make([]T, maxSize)
	for i := 0; ; i++ {
		if err := q.WaitNonEmpty(ctx); err != nil {
			if err != ErrClosed {
				t.Errorf("WaitNonEmpty: %v", err)
			}
			return out
		}
		first, n := q.PopBatch(buf[:sizes[i%len(sizes)]])
		if n == 0 && sizes[i%len(sizes)] > 0 {
			t.Errorf("PopBatch returned nothing after WaitNonEmpty succeeded")
		}
		for k := range n {
			out = append(out, popped[T]{first + uint64(k), buf[k]})
		}
	}
}
