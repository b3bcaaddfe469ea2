package queue_test

import (
	"context"
	"fmt"

	"github.com/hotkernel/hotkernel/queue"
)

// A reload takes Tail as its cut-off: the messages below it go to the old
// code, the later ones to the new code. The consumer stops its batch at
// the cut-off by sizing the destination.
func Example() {
	q, err := queue.New[string](queue.Config{Capacity: 8, Policy: queue.Block})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	for _, m := range []string{"a", "b", "c"} {
		if _, err := q.Push(ctx, m); err != nil {
			panic(err)
		}
	}
	cut := q.Tail() // messages with a sequence below cut run the old code
	q.Push(ctx, "d")
	q.Push(ctx, "e")
	q.Close() // the consumer still drains what was accepted

	buf := make([]string, 4)
	for q.WaitNonEmpty(ctx) == nil {
		dst := buf
		if h := q.Head(); h < cut {
			dst = buf[:min(uint64(len(buf)), cut-h)]
		}
		first, n := q.PopBatch(dst)
		for i, m := range dst[:n] {
			seq := first + uint64(i)
			code := "new"
			if seq < cut {
				code = "old"
			}
			fmt.Println(seq, m, code)
		}
	}
	fmt.Println(q.Stats())
	// Output:
	// 0 a old
	// 1 b old
	// 2 c old
	// 3 d new
	// 4 e new
	// {5 5 0 0}
}
