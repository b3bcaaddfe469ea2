package queue

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestNewConfig(t *testing.T) {
	for _, c := range []struct{ in, want int }{
		{1, 1}, {2, 2}, {3, 4}, {4, 4}, {5, 8}, {1000, 1024}, {1024, 1024}, {1025, 2048},
		{MaxCapacity/2 + 1, MaxCapacity}, {MaxCapacity, MaxCapacity},
	} {
		if got := roundUp(c.in); got != c.want {
			t.Errorf("roundUp(%d) = %d, want %d", c.in, got, c.want)
		}
		if c.in > 1<<20 {
			continue // do not allocate the largest rings
		}
		q, err := New[int](Config{Capacity: c.in})
		if err != nil {
			t.Fatalf("New capacity %d: %v", c.in, err)
		}
		if q.Cap() != c.want {
			t.Errorf("capacity %d: Cap() = %d, want %d", c.in, q.Cap(), c.want)
		}
		if q.Policy() != Block {
			t.Errorf("zero Policy = %v, want block", q.Policy())
		}
	}
	for _, c := range []Config{{Capacity: 0}, {Capacity: -1}, {Capacity: MaxCapacity + 1}, {Capacity: 8, Policy: Policy(7)}} {
		if _, err := New[int](c); err == nil {
			t.Errorf("New(%+v) succeeded, want an error", c)
		}
	}
	if s := Policy(7).String(); s != "Policy(7)" {
		t.Errorf("Policy(7).String() = %q", s)
	}
	if Block.String() != "block" || Fail.String() != "fail" {
		t.Errorf("policy names: %q %q", Block, Fail)
	}
}

func TestSequentialPushPop(t *testing.T) {
	q := newQ[string](t, 8, Block)
	ctx := context.Background()
	if q.Head() != 0 || q.Tail() != 0 || q.Len() != 0 {
		t.Fatalf("new queue: head %d tail %d len %d", q.Head(), q.Tail(), q.Len())
	}
	for i := range 5 {
		seq, err := q.Push(ctx, fmt.Sprint("m", i))
		if err != nil || seq != uint64(i) {
			t.Fatalf("Push %d = %d, %v", i, seq, err)
		}
	}
	if q.Len() != 5 || q.Tail() != 5 || q.Head() != 0 {
		t.Fatalf("after 5 pushes: len %d tail %d head %d", q.Len(), q.Tail(), q.Head())
	}
	dst := make([]string, 3)
	first, n := q.PopBatch(dst)
	if first != 0 || n != 3 || dst[0] != "m0" || dst[2] != "m2" {
		t.Fatalf("PopBatch = %d, %d, %q", first, n, dst)
	}
	first, n = q.PopBatch(make([]string, 10))
	if first != 3 || n != 2 {
		t.Fatalf("second PopBatch = %d, %d", first, n)
	}
	first, n = q.PopBatch(make([]string, 10))
	if first != 5 || n != 0 {
		t.Fatalf("PopBatch on empty queue = %d, %d; want 5, 0", first, n)
	}
	first, n = q.PopBatch(nil)
	if first != 5 || n != 0 {
		t.Fatalf("PopBatch(nil) = %d, %d", first, n)
	}
	st := q.Stats()
	if st != (Stats{Pushed: 5, Popped: 5}) {
		t.Fatalf("Stats = %+v", st)
	}
}

func TestPopBatchClearsSlots(t *testing.T) {
	q := newQ[*int](t, 4, Block)
	for range 4 {
		v := new(int)
		if _, err := q.TryPush(v); err != nil {
			t.Fatal(err)
		}
	}
	q.PopBatch(make([]*int, 4))
	for i := range q.slots {
		if q.slots[i].val != nil {
			t.Errorf("slot %d still refers to a popped message", i)
		}
	}
}

func TestTryPushFullNeverBlocks(t *testing.T) {
	for _, p := range []Policy{Block, Fail} {
		t.Run(p.String(), func(t *testing.T) {
			q := newQ[int](t, 3, p) // rounds up to 4
			for i := range 4 {
				if seq, err := q.TryPush(i); err != nil || seq != uint64(i) {
					t.Fatalf("TryPush %d = %d, %v", i, seq, err)
				}
			}
			_, err := q.TryPush(99)
			if !errors.Is(err, ErrFull) {
				t.Fatalf("TryPush on full queue: %v, want ErrFull", err)
			}
			if !strings.Contains(err.Error(), "full") || !strings.Contains(err.Error(), "capacity 4") {
				t.Errorf("full error %q does not say full and the capacity", err)
			}
			if q.Tail() != 4 || q.Stats().RejectedFull != 1 {
				t.Errorf("tail %d, stats %+v", q.Tail(), q.Stats())
			}
		})
	}
}

func TestFailPolicyPush(t *testing.T) {
	q := newQ[int](t, 2, Fail)
	ctx := context.Background()
	for i := range 2 {
		if _, err := q.Push(ctx, i); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		if _, err := q.Push(ctx, 7); !errors.Is(err, ErrFull) {
			t.Fatalf("Push on full queue with Fail: %v", err)
		}
	}
	st := q.Stats()
	if st.RejectedFull != 3 || st.Blocked != 0 || st.Pushed != 2 {
		t.Fatalf("Stats = %+v", st)
	}
	dst := make([]int, 4)
	if first, n := q.PopBatch(dst); first != 0 || n != 2 || dst[0] != 0 || dst[1] != 1 {
		t.Fatalf("PopBatch = %d, %d, %v", first, n, dst)
	}
	if seq, err := q.Push(ctx, 5); err != nil || seq != 2 {
		t.Fatalf("Push after pop = %d, %v", seq, err)
	}
}

// fill pushes until q is full.
func fill(t *testing.T, q *Queue[int]) {
	t.Helper()
	for i := range q.Cap() {
		if _, err := q.TryPush(i); err != nil {
			t.Fatalf("fill: %v", err)
		}
	}
}

func TestBlockCancel(t *testing.T) {
	noLeaks(t)
	q := newQ[int](t, 4, Block)
	fill(t, q)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := q.Push(ctx, 100)
		done <- err
	}()
	until(t, "the push to block", func() bool { return q.Stats().Blocked == 1 })
	cancel()
	var err error
	select {
	case err = <-done:
	case <-time.After(guard):
		t.Fatal("Push did not return after its context was canceled")
	}
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "full") {
		t.Fatalf("Push after cancel: %v; want a wrapped context.Canceled that says the queue is full", err)
	}

	tctx, tcancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer tcancel()
	if _, err := q.Push(tctx, 101); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Push with timeout: %v; want a wrapped context.DeadlineExceeded", err)
	}

	// A push that finds no room with a context already done does not wait.
	if _, err := q.Push(ctx, 102); !errors.Is(err, context.Canceled) {
		t.Fatalf("Push with a done context on a full queue: %v", err)
	}
	// A push that finds room succeeds even with a done context.
	q.PopBatch(make([]int, 1))
	if seq, err := q.Push(ctx, 103); err != nil || seq != 4 {
		t.Fatalf("Push with a done context and room = %d, %v", seq, err)
	}

	dst := make([]int, 8)
	first, n := q.PopBatch(dst)
	if first != 1 || n != 4 || dst[3] != 103 {
		t.Fatalf("PopBatch = %d, %d, %v; the canceled pushes must not be in the queue", first, n, dst[:n])
	}
	if st := q.Stats(); st.Blocked != 3 || st.RejectedFull != 0 {
		t.Errorf("Stats = %+v", st)
	}
}

func TestBlockWakesOnPop(t *testing.T) {
	noLeaks(t)
	q := newQ[int](t, 2, Block)
	fill(t, q)
	ctx := guardCtx(t)
	type res struct {
		seq uint64
		err error
	}
	done := make(chan res, 1)
	go func() {
		seq, err := q.Push(ctx, 42)
		done <- res{seq, err}
	}()
	until(t, "the push to block", func() bool { return q.Stats().Blocked == 1 })
	// Let the producer go to sleep, then free one slot.
	time.Sleep(10 * time.Millisecond)
	if _, n := q.PopBatch(make([]int, 1)); n != 1 {
		t.Fatal("PopBatch on a full queue returned nothing")
	}
	select {
	case r := <-done:
		if r.err != nil || r.seq != 2 {
			t.Fatalf("blocked Push = %d, %v; want 2, nil", r.seq, r.err)
		}
	case <-time.After(guard):
		t.Fatalf("blocked Push did not wake after a pop\n%s", stacks())
	}
}

func TestCloseWakesBlockedProducers(t *testing.T) {
	noLeaks(t)
	q := newQ[int](t, 4, Block)
	fill(t, q)
	const producers = 6
	ctx := guardCtx(t)
	errs := make(chan error, producers)
	for i := range producers {
		go func() {
			_, err := q.Push(ctx, 1000+i)
			errs <- err
		}()
	}
	until(t, "the pushes to block", func() bool { return q.Stats().Blocked == producers })
	time.Sleep(10 * time.Millisecond)
	q.Close()
	for range producers {
		select {
		case err := <-errs:
			if err != ErrClosed {
				t.Errorf("blocked Push after Close: %v, want ErrClosed", err)
			}
		case <-time.After(guard):
			t.Fatalf("blocked producers did not wake on Close\n%s", stacks())
		}
	}
	q.Close() // a second Close does nothing
	if _, err := q.Push(context.Background(), 1); err != ErrClosed {
		t.Errorf("Push after Close: %v", err)
	}
	if _, err := q.TryPush(1); err != ErrClosed {
		t.Errorf("TryPush after Close: %v", err)
	}
	if !q.Closed() || q.Tail() != 4 {
		t.Errorf("Closed %v, Tail %d", q.Closed(), q.Tail())
	}
	// Everything accepted before Close is still there.
	got := consume(t, ctx, q, []int{3})
	if len(got) != 4 {
		t.Fatalf("drained %d messages after Close, want 4", len(got))
	}
	for i, m := range got {
		if m.seq != uint64(i) || m.val != i {
			t.Errorf("message %d = %+v", i, m)
		}
	}
}

func TestCloseWakesConsumer(t *testing.T) {
	noLeaks(t)
	q := newQ[int](t, 4, Block)
	ctx := guardCtx(t)
	done := make(chan error, 1)
	go func() { done <- q.WaitNonEmpty(ctx) }()
	time.Sleep(10 * time.Millisecond) // let it go to sleep; not required for correctness
	q.Close()
	select {
	case err := <-done:
		if err != ErrClosed {
			t.Fatalf("WaitNonEmpty after Close on an empty queue: %v", err)
		}
	case <-time.After(guard):
		t.Fatalf("consumer did not wake on Close\n%s", stacks())
	}
}

func TestWaitNonEmptyWakesOnPush(t *testing.T) {
	noLeaks(t)
	q := newQ[int](t, 4, Block)
	ctx := guardCtx(t)
	done := make(chan error, 1)
	go func() { done <- q.WaitNonEmpty(ctx) }()
	time.Sleep(10 * time.Millisecond)
	if _, err := q.TryPush(1); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("WaitNonEmpty: %v", err)
		}
	case <-time.After(guard):
		t.Fatalf("consumer did not wake on a push\n%s", stacks())
	}
	if first, n := q.PopBatch(make([]int, 4)); first != 0 || n != 1 {
		t.Fatalf("PopBatch = %d, %d", first, n)
	}
}

func TestWaitNonEmptyContext(t *testing.T) {
	noLeaks(t)
	q := newQ[int](t, 4, Block)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := q.WaitNonEmpty(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitNonEmpty with timeout: %v", err)
	}
	ctx, cancel = context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- q.WaitNonEmpty(ctx) }()
	time.Sleep(10 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("WaitNonEmpty after cancel: %v", err)
		}
	case <-time.After(guard):
		t.Fatal("WaitNonEmpty did not return after cancel")
	}
	// A ready message wins over a done context.
	q.TryPush(1)
	if err := q.WaitNonEmpty(ctx); err != nil {
		t.Fatalf("WaitNonEmpty with a message ready and a done context: %v", err)
	}
}

func TestCloseThenDrain(t *testing.T) {
	q := newQ[int](t, 8, Block)
	for i := range 5 {
		q.TryPush(i)
	}
	q.Close()
	ctx := context.Background()
	dst := make([]int, 2)
	var got []int
	for {
		err := q.WaitNonEmpty(ctx)
		if err == ErrClosed {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		_, n := q.PopBatch(dst)
		got = append(got, dst[:n]...)
	}
	if fmt.Sprint(got) != "[0 1 2 3 4]" {
		t.Fatalf("drained %v", got)
	}
	if err := q.WaitNonEmpty(ctx); err != ErrClosed {
		t.Fatalf("WaitNonEmpty on closed empty queue: %v", err)
	}
}

// claim takes the next sequence the way a producer does, without
// publishing it, to stand for a producer paused between its claim and
// its write. q.publish finishes the claim.
func claim[T any](t *testing.T, q *Queue[T]) uint64 {
	t.Helper()
	seq := q.Tail()
	if !q.tail.CompareAndSwap(seq, seq+1) {
		t.Fatal("claim: tail moved")
	}
	return seq
}

func TestUnpublishedSequenceIsNotSkipped(t *testing.T) {
	noLeaks(t)
	q := newQ[int](t, 8, Block)
	if _, err := q.TryPush(10); err != nil { // seq 0
		t.Fatal(err)
	}
	slow := claim(t, q) // seq 1, claimed, not written
	for i := range 3 {  // seqs 2..4, published
		if seq, err := q.TryPush(20 + i); err != nil || seq != uint64(2+i) {
			t.Fatalf("TryPush = %d, %v", seq, err)
		}
	}
	if q.Len() != 5 {
		t.Errorf("Len = %d, want 5 (claimed messages count)", q.Len())
	}
	dst := make([]int, 8)
	if first, n := q.PopBatch(dst); first != 0 || n != 1 || dst[0] != 10 {
		t.Fatalf("PopBatch = %d, %d, %v; want only seq 0", first, n, dst[:n])
	}
	if first, n := q.PopBatch(dst); first != 1 || n != 0 {
		t.Fatalf("PopBatch with seq 1 unpublished = %d, %d; want 1, 0", first, n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := q.WaitNonEmpty(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitNonEmpty with the head unpublished: %v", err)
	}

	// Close does not make the consumer give up on a claimed sequence.
	q.Close()
	gctx := guardCtx(t)
	done := make(chan error, 1)
	go func() { done <- q.WaitNonEmpty(gctx) }()
	time.Sleep(10 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("WaitNonEmpty returned %v before the claimed sequence was published", err)
	default:
	}
	q.publish(&q.slots[slow&q.mask], slow, 11)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("WaitNonEmpty after publish: %v", err)
		}
	case <-time.After(guard):
		t.Fatalf("consumer did not wake on the late publish\n%s", stacks())
	}
	first, n := q.PopBatch(dst)
	if first != 1 || n != 4 || fmt.Sprint(dst[:n]) != "[11 20 21 22]" {
		t.Fatalf("PopBatch = %d, %d, %v", first, n, dst[:n])
	}
	if err := q.WaitNonEmpty(context.Background()); err != ErrClosed {
		t.Fatalf("WaitNonEmpty on drained closed queue: %v", err)
	}
}

func TestConcurrentConsumerPanics(t *testing.T) {
	q := newQ[int](t, 4, Block)
	q.busy.Store(1) // as if another consumer call were running
	for name, f := range map[string]func(){
		"PopBatch":     func() { q.PopBatch(make([]int, 1)) },
		"WaitNonEmpty": func() { q.WaitNonEmpty(context.Background()) },
	} {
		func() {
			defer func() {
				r := recover()
				if s, _ := r.(string); !strings.Contains(s, "single consumer") {
					t.Errorf("%s during another consumer call: recovered %v, want a panic about the single consumer", name, r)
				}
			}()
			f()
		}()
	}
	q.busy.Store(0)
	// Consumer calls from different goroutines one after the other are fine.
	q.TryPush(1)
	var wg sync.WaitGroup
	wg.Go(func() { q.PopBatch(make([]int, 1)) })
	wg.Wait()
	if q.Head() != 1 {
		t.Fatalf("Head = %d", q.Head())
	}
}

func TestNilContextPanics(t *testing.T) {
	q := newQ[int](t, 1, Block)
	for name, f := range map[string]func(){
		"Push":         func() { q.Push(nil, 1) }, // the misuse under test
		"WaitNonEmpty": func() { q.WaitNonEmpty(nil) },
	} {
		func() {
			defer func() {
				if r := recover(); r == nil {
					t.Errorf("%s(nil) did not panic", name)
				}
			}()
			f()
		}()
	}
}

func TestCapacityOne(t *testing.T) {
	q := newQ[int](t, 1, Fail)
	ctx := context.Background()
	dst := make([]int, 4)
	for i := range 1000 {
		seq, err := q.Push(ctx, i)
		if err != nil || seq != uint64(i) {
			t.Fatalf("Push %d = %d, %v", i, seq, err)
		}
		if _, err := q.Push(ctx, -1); !errors.Is(err, ErrFull) {
			t.Fatalf("second Push into capacity 1: %v", err)
		}
		if q.Len() != 1 {
			t.Fatalf("Len = %d", q.Len())
		}
		first, n := q.PopBatch(dst)
		if first != uint64(i) || n != 1 || dst[0] != i {
			t.Fatalf("PopBatch = %d, %d, %v", first, n, dst[:n])
		}
	}
	if st := q.Stats(); st.Pushed != 1000 || st.Popped != 1000 || st.RejectedFull != 1000 {
		t.Fatalf("Stats = %+v", st)
	}
}

func TestWrapAround(t *testing.T) {
	q := newQ[uint64](t, 4, Fail)
	dst := make([]uint64, 5)
	var next, want uint64
	// Push and pop in changing amounts so every slot is reused with
	// every offset many times.
	for round := range 100_000 {
		for range round % 5 {
			seq, err := q.TryPush(next * 3)
			if errors.Is(err, ErrFull) {
				break
			}
			if err != nil || seq != next {
				t.Fatalf("TryPush = %d, %v; want %d", seq, err, next)
			}
			next++
		}
		first, n := q.PopBatch(dst[:round%4+1])
		if first != want {
			t.Fatalf("PopBatch first = %d, want %d", first, want)
		}
		for k := range n {
			if dst[k] != (want+uint64(k))*3 {
				t.Fatalf("seq %d holds %d", want+uint64(k), dst[k])
			}
		}
		want += uint64(n)
		if q.Len() != int(next-want) {
			t.Fatalf("Len = %d, want %d", q.Len(), next-want)
		}
	}
	if next < 100_000 {
		t.Fatalf("only %d messages went through", next)
	}
}

func TestZeroQueuePanics(t *testing.T) {
	ctx := context.Background()
	for name, f := range map[string]func(q *Queue[int]){
		"TryPush":      func(q *Queue[int]) { q.TryPush(1) },
		"Push":         func(q *Queue[int]) { q.Push(ctx, 1) },
		"PopBatch":     func(q *Queue[int]) { q.PopBatch(make([]int, 1)) },
		"WaitNonEmpty": func(q *Queue[int]) { q.WaitNonEmpty(ctx) },
	} {
		for _, p := range []Policy{Block, Fail} {
			func() {
				defer func() {
					if recover() == nil {
						t.Errorf("%s on a zero Queue (policy %v) did not panic", name, p)
					}
				}()
				f(&Queue[int]{policy: p})
			}()
		}
	}
}
