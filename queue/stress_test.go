package queue

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

// msg identifies a message by its producer and its index in that
// producer's stream.
type msg struct {
	p, i int
}

// sent is what one producer recorded: the index and sequence of every
// message it got accepted, in order.
type sent struct {
	idx []int
	seq []uint64
}

// checkRun checks a finished run: every accepted message was popped
// exactly once, no refused message was popped, each producer's messages
// came out in the order they were pushed, sequences are gap-free from 0
// and follow pop order, and each popped message carries the sequence its
// producer was given.
func checkRun(t *testing.T, q *Queue[msg], accepted []sent, got []popped[msg]) {
	t.Helper()
	total := 0
	for _, s := range accepted {
		total += len(s.idx)
	}
	if len(got) != total {
		t.Errorf("popped %d messages, %d were accepted", len(got), total)
	}
	if q.Tail() != uint64(total) || q.Head() != uint64(len(got)) {
		t.Errorf("Tail %d Head %d, want %d and %d", q.Tail(), q.Head(), total, len(got))
	}
	pos := make([]int, len(accepted)) // next expected position per producer
	for k, m := range got {
		if m.seq != uint64(k) {
			t.Fatalf("pop %d has sequence %d: sequences must be gap-free and in pop order", k, m.seq)
		}
		p := m.val.p
		if p < 0 || p >= len(accepted) {
			t.Fatalf("pop %d: unknown producer %d", k, p)
		}
		s := accepted[p]
		j := pos[p]
		if j >= len(s.idx) {
			t.Fatalf("pop %d: message %d of producer %d was not accepted or is a duplicate", k, m.val.i, p)
		}
		if s.idx[j] != m.val.i {
			t.Fatalf("pop %d: producer %d message %d, want %d (lost, duplicated or reordered)", k, p, m.val.i, s.idx[j])
		}
		if s.seq[j] != m.seq {
			t.Fatalf("pop %d: producer %d message %d was given sequence %d but popped as %d", k, p, m.val.i, s.seq[j], m.seq)
		}
		pos[p]++
	}
	for p, s := range accepted {
		if pos[p] != len(s.idx) {
			t.Errorf("producer %d: %d messages accepted, %d popped", p, len(s.idx), pos[p])
		}
	}
}

// run starts producers goroutines, each calling produce, and one consumer
// popping with the given batch sizes. It closes the queue once every
// producer has returned, and returns what was accepted and what was
// popped.
func run(t *testing.T, q *Queue[msg], producers int, sizes []int, produce func(p int, s *sent)) ([]sent, []popped[msg]) {
	t.Helper()
	ctx := guardCtx(t)
	accepted := make([]sent, producers)
	var got []popped[msg]
	done := make(chan struct{})
	go func() {
		defer close(done)
		got = consume(t, ctx, q, sizes)
	}()
	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() { produce(p, &accepted[p]) })
	}
	allSent := make(chan struct{})
	go func() { wg.Wait(); close(allSent) }()
	wait(t, allSent, "producers")
	q.Close()
	wait(t, done, "consumer")
	return accepted, got
}

func TestManyProducersOneConsumer(t *testing.T) {
	const producers, each = 8, 20_000
	for _, c := range []struct {
		capacity int
		sizes    []int
	}{
		{1024, []int{256}},
		{64, []int{1, 7, 64, 3}},
		{8, []int{1}},
		{1, []int{1, 2}},
	} {
		t.Run(fmt.Sprintf("cap%d", c.capacity), func(t *testing.T) {
			noLeaks(t)
			q := newQ[msg](t, c.capacity, Block)
			n := each
			if c.capacity == 1 {
				n = each / 10
			}
			ctx := guardCtx(t)
			accepted, got := run(t, q, producers, c.sizes, func(p int, s *sent) {
				for i := range n {
					seq, err := q.Push(ctx, msg{p, i})
					if err != nil {
						t.Errorf("producer %d: Push %d: %v", p, i, err)
						return
					}
					s.idx = append(s.idx, i)
					s.seq = append(s.seq, seq)
				}
			})
			checkRun(t, q, accepted, got)
			if len(got) != producers*n {
				t.Errorf("popped %d, want %d", len(got), producers*n)
			}
		})
	}
}

func TestFailPolicyConcurrent(t *testing.T) {
	noLeaks(t)
	const producers, each = 8, 20_000
	q := newQ[msg](t, 16, Fail)
	var rejected atomic.Uint64
	ctx := context.Background()
	accepted, got := run(t, q, producers, []int{1, 5, 16}, func(p int, s *sent) {
		for i := range each {
			var seq uint64
			var err error
			if i%2 == 0 {
				seq, err = q.Push(ctx, msg{p, i})
			} else {
				seq, err = q.TryPush(msg{p, i})
			}
			switch {
			case err == nil:
				s.idx = append(s.idx, i)
				s.seq = append(s.seq, seq)
			case errors.Is(err, ErrFull):
				rejected.Add(1)
				runtime.Gosched() // give the consumer a chance to make room
			default:
				t.Errorf("producer %d: push %d: %v", p, i, err)
				return
			}
		}
	})
	checkRun(t, q, accepted, got)
	st := q.Stats()
	if st.RejectedFull != rejected.Load() {
		t.Errorf("Stats.RejectedFull = %d, producers saw %d", st.RejectedFull, rejected.Load())
	}
	if st.Pushed+st.RejectedFull != producers*each {
		t.Errorf("accepted %d + rejected %d != %d attempts", st.Pushed, st.RejectedFull, producers*each)
	}
	if st.Blocked != 0 {
		t.Errorf("Stats.Blocked = %d under Fail", st.Blocked)
	}
	t.Logf("accepted %d, rejected %d", st.Pushed, st.RejectedFull)
}

// TestStressSmallCapacity runs 8 producers against rings of 2 to 8
// slots, mixing blocking pushes and TryPush retries, with the consumer
// popping in odd batch sizes, so that the ring is full, empty and wraps
// around constantly and both sides sleep and wake often.
func TestStressSmallCapacity(t *testing.T) {
	const producers = 8
	each := 10_000
	if testing.Short() {
		each = 1_000
	}
	for _, capacity := range []int{2, 4, 8} {
		t.Run(fmt.Sprintf("cap%d", capacity), func(t *testing.T) {
			noLeaks(t)
			q := newQ[msg](t, capacity, Block)
			ctx := guardCtx(t)
			accepted, got := run(t, q, producers, []int{1, 3, capacity, 2 * capacity}, func(p int, s *sent) {
				for i := range each {
					var seq uint64
					var err error
					if (i+p)%3 == 0 {
						for {
							seq, err = q.TryPush(msg{p, i})
							if !errors.Is(err, ErrFull) {
								break
							}
							runtime.Gosched() // leave the processor to the consumer
						}
					} else {
						seq, err = q.Push(ctx, msg{p, i})
					}
					if err != nil {
						t.Errorf("producer %d: push %d: %v", p, i, err)
						return
					}
					s.idx = append(s.idx, i)
					s.seq = append(s.seq, seq)
					if l := q.Len(); l < 0 || l > q.Cap() {
						t.Errorf("Len = %d out of [0, %d]", l, q.Cap())
					}
				}
			})
			checkRun(t, q, accepted, got)
			if len(got) != producers*each {
				t.Errorf("popped %d, want %d", len(got), producers*each)
			}
		})
	}
}

// TestCloseWhileBusy closes the queue while producers are pushing into a
// small ring and the consumer is popping: every push that returned a
// sequence must be popped exactly once, and every push that returned
// ErrClosed must not be.
func TestCloseWhileBusy(t *testing.T) {
	for round := range 20 {
		t.Run(fmt.Sprint(round), func(t *testing.T) {
			noLeaks(t)
			const producers = 8
			q := newQ[msg](t, 4, Block)
			ctx := guardCtx(t)
			accepted := make([]sent, producers)
			var got []popped[msg]
			done := make(chan struct{})
			go func() {
				defer close(done)
				got = consume(t, ctx, q, []int{1, 4, 2})
			}()
			var wg sync.WaitGroup
			for p := range producers {
				wg.Go(func() {
					s := &accepted[p]
					for i := 0; ; i++ {
						seq, err := q.Push(ctx, msg{p, i})
						if err == ErrClosed {
							return
						}
						if err != nil {
							t.Errorf("producer %d: %v", p, err)
							return
						}
						s.idx = append(s.idx, i)
						s.seq = append(s.seq, seq)
					}
				})
			}
			until(t, "some traffic", func() bool { return q.Head() > uint64(100*(round+1)) })
			q.Close()
			allSent := make(chan struct{})
			go func() { wg.Wait(); close(allSent) }()
			wait(t, allSent, "producers to see ErrClosed")
			wait(t, done, "consumer to drain")
			checkRun(t, q, accepted, got)
		})
	}
}

// TestSleepWake turns off the spinning before sleeping, so that both
// sides go to sleep at almost every wait, and checks that no wake-up is
// lost: a lost one hangs the run until the guard time.
func TestSleepWake(t *testing.T) {
	saved := spinTries
	spinTries = 0
	t.Cleanup(func() { spinTries = saved })
	for _, c := range []struct{ capacity, producers int }{{1, 1}, {1, 4}, {2, 8}, {16, 3}} {
		t.Run(fmt.Sprintf("cap%d_p%d", c.capacity, c.producers), func(t *testing.T) {
			noLeaks(t)
			const each = 5_000
			q := newQ[msg](t, c.capacity, Block)
			ctx := guardCtx(t)
			accepted, got := run(t, q, c.producers, []int{1, 2, 5}, func(p int, s *sent) {
				for i := range each {
					seq, err := q.Push(ctx, msg{p, i})
					if err != nil {
						t.Errorf("producer %d: Push %d: %v", p, i, err)
						return
					}
					s.idx = append(s.idx, i)
					s.seq = append(s.seq, seq)
				}
			})
			checkRun(t, q, accepted, got)
			if len(got) != c.producers*each {
				t.Errorf("popped %d, want %d", len(got), c.producers*each)
			}
		})
	}
}
