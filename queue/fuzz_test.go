package queue

import (
	"context"
	"errors"
	"testing"
)

// FuzzOps runs a random sequence of operations from one goroutine and
// compares every result with a plain slice model of the queue.
func FuzzOps(f *testing.F) {
	f.Add(uint8(0), []byte{0, 0, 2 | 4<<2, 1, 3})
	f.Add(uint8(2), []byte{0, 1, 0, 1, 0, 1, 2 | 2<<2, 0, 4, 3, 2 | 8<<2, 7})
	f.Add(uint8(4), []byte{1, 1, 1, 6, 2 | 1<<2, 3, 0, 5, 2 | 3<<2})
	done, cancel := context.WithCancel(context.Background())
	cancel()
	f.Fuzz(func(t *testing.T, capExp uint8, ops []byte) {
		capacity := 1 << (capExp % 5)
		q := newQ[int](t, capacity, Fail)
		var (
			model  []int // values in the queue, head first
			head   uint64
			closed bool
			val    int
		)
		dst := make([]int, 16)
		for _, b := range ops {
			arg := int(b >> 3)
			switch b & 7 {
			case 0, 1, 4: // push
				val++
				var seq uint64
				var err error
				if b&7 == 1 {
					seq, err = q.Push(done, val)
				} else {
					seq, err = q.TryPush(val)
				}
				switch {
				case closed:
					if err != ErrClosed {
						t.Fatalf("push after Close: %v", err)
					}
				case len(model) == capacity:
					if !errors.Is(err, ErrFull) {
						t.Fatalf("push into a full queue: %v", err)
					}
				default:
					if err != nil || seq != head+uint64(len(model)) {
						t.Fatalf("push = %d, %v; want %d", seq, err, head+uint64(len(model)))
					}
					model = append(model, val)
				}
			case 2, 5: // pop
				size := arg % (len(dst) + 1)
				first, n := q.PopBatch(dst[:size])
				want := min(size, len(model))
				if first != head || n != want {
					t.Fatalf("PopBatch(%d) = %d, %d; want %d, %d", size, first, n, head, want)
				}
				for i := range n {
					if dst[i] != model[i] {
						t.Fatalf("PopBatch item %d = %d, want %d", i, dst[i], model[i])
					}
				}
				model = model[n:]
				head += uint64(n)
			case 3: // wait with a done context
				err := q.WaitNonEmpty(done)
				switch {
				case len(model) > 0:
					if err != nil {
						t.Fatalf("WaitNonEmpty with %d messages: %v", len(model), err)
					}
				case closed:
					if err != ErrClosed {
						t.Fatalf("WaitNonEmpty on closed empty queue: %v", err)
					}
				default:
					if !errors.Is(err, context.Canceled) {
						t.Fatalf("WaitNonEmpty on empty queue with done context: %v", err)
					}
				}
			case 6:
				if arg == 0 {
					q.Close()
					closed = true
				}
			case 7: // nothing; only the checks below
			}
			if q.Len() != len(model) || q.Head() != head || q.Tail() != head+uint64(len(model)) || q.Closed() != closed {
				t.Fatalf("Len %d Head %d Tail %d Closed %v; model %d %d %d %v",
					q.Len(), q.Head(), q.Tail(), q.Closed(), len(model), head, head+uint64(len(model)), closed)
			}
		}
	})
}
