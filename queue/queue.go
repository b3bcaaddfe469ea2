package queue

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
	"runtime"
	"sync/atomic"
)

// MaxCapacity is the largest capacity [New] accepts, after rounding up to
// a power of two.
const MaxCapacity = 1 << 30

// ErrClosed is returned by pushes on a closed queue, and by
// [Queue.WaitNonEmpty] when the queue is closed and every message in it
// has been popped.
var ErrClosed = errors.New("queue: closed")

// ErrFull is the cause of a push refused because the queue is full. The
// error a push returns wraps ErrFull and states the queue's capacity;
// test for it with errors.Is(err, queue.ErrFull).
var ErrFull = errors.New("queue: full")

// Policy says what [Queue.Push] does when the queue is full.
type Policy int

const (
	// Block makes Push wait until a slot frees up, the queue is closed
	// (ErrClosed) or the push's context is done (the context's error,
	// wrapped). It is the zero Policy.
	Block Policy = iota
	// Fail makes Push return an error wrapping ErrFull at once.
	Fail
)

// String returns "block", "fail", or "Policy(N)" for an unknown value.
func (p Policy) String() string {
	switch p {
	case Block:
		return "block"
	case Fail:
		return "fail"
	}
	return fmt.Sprintf("Policy(%d)", int(p))
}

// Config configures a [Queue].
type Config struct {
	// Capacity is the least number of messages the queue holds. It must
	// be at least 1; New rounds it up to a power of two, at most
	// MaxCapacity.
	Capacity int
	// Policy is what Push does when the queue is full. The zero value
	// is Block.
	Policy Policy
}

// Stats are the queue's counters at one moment. Each field is read
// atomically, but not all together: while the queue is in use, the
// fields may come from slightly different instants.
type Stats struct {
	// Pushed is the number of accepted pushes; it equals Tail.
	Pushed uint64
	// Popped is the number of popped messages; it equals Head.
	Popped uint64
	// RejectedFull is the number of pushes refused with ErrFull: by Push
	// under the Fail policy and by TryPush under either policy.
	RejectedFull uint64
	// Blocked is the number of Push calls (Block policy) that found the
	// queue full and had to wait, whatever the wait ended with.
	Blocked uint64
}

const (
	// closedBit is set in the tail word by Close. Sequences use the 63
	// bits below it.
	closedBit = uint64(1) << 63
	// cacheLine is the padding unit that keeps fields written by
	// different goroutines on different cache lines.
	cacheLine = 64
)

// spinTries is how many times a waiter re-checks, yielding the
// processor between tries, before it goes to sleep. Tests lower it to
// exercise the sleeping path.
var spinTries = 16

type pad [cacheLine]byte

// slot is one cell of the ring. stamp is s+1 once the message of
// sequence s is written into it; 0 before the first message.
type slot[T any] struct {
	stamp atomic.Uint64
	val   T
}

// Queue is a bounded multi-producer, single-consumer queue of T. Create
// it with [New]; pushing into or popping from a Queue not made by New
// panics.
//
// Push, TryPush, Close and the read-only methods (Head, Tail, Len, Cap,
// Closed, Policy, Stats) may be called from any number of goroutines at
// once. PopBatch and WaitNonEmpty are the consumer's: at most one call of
// either may be running at any time. They may be called from different
// goroutines one after another (each call publishes its effects to the
// next through an atomic flag). Overlapping calls are a misuse, which
// would hand the same message out twice: PopBatch always detects it and
// panics; WaitNonEmpty detects it, and panics, when it has to wait.
type Queue[T any] struct {
	slots   []slot[T]
	mask    uint64
	policy  Policy
	errFull error // wraps ErrFull, names the capacity

	_ pad
	// tail is the next sequence to give out, with closedBit.
	tail atomic.Uint64

	_ pad
	// head is the next sequence to pop. Only the consumer writes it, once
	// per PopBatch; producers read it to see whether there is room.
	head atomic.Uint64

	_ pad
	// busy is 1 while a consumer call runs.
	busy atomic.Uint32

	_ pad
	// Written on the slow paths only. consumer.armed is read by producers
	// after each publish, producer.armed by the consumer after each pop.
	consumer waiter
	producer waiter

	_            pad
	rejectedFull atomic.Uint64
	blocked      atomic.Uint64
	_            pad
}

// New returns an empty queue configured by cfg. It fails if cfg.Capacity
// is below 1 or rounds up beyond MaxCapacity, or if cfg.Policy is not
// Block or Fail.
func New[T any](cfg Config) (*Queue[T], error) {
	if cfg.Capacity < 1 || cfg.Capacity > MaxCapacity {
		return nil, fmt.Errorf("queue: capacity %d out of range [1, %d]", cfg.Capacity, MaxCapacity)
	}
	if cfg.Policy != Block && cfg.Policy != Fail {
		return nil, fmt.Errorf("queue: unknown full-queue policy %v", cfg.Policy)
	}
	n := roundUp(cfg.Capacity)
	q := &Queue[T]{
		slots:   make([]slot[T], n),
		mask:    uint64(n - 1),
		policy:  cfg.Policy,
		errFull: fmt.Errorf("%w (capacity %d)", ErrFull, n),
	}
	return q, nil
}

// roundUp returns the least power of two >= n, for 1 <= n <= MaxCapacity.
func roundUp(n int) int { return 1 << bits.Len(uint(n-1)) }

// Cap returns the number of messages the queue holds when full: the
// configured capacity rounded up to a power of two.
func (q *Queue[T]) Cap() int { return len(q.slots) }

// Policy returns the full-queue policy the queue was created with.
func (q *Queue[T]) Policy() Policy { return q.policy }

// Head returns the next sequence the consumer will pop, which is also the
// number of messages popped so far. Called by the consumer between its
// own calls, it is exact; from another goroutine it may be stale as soon
// as it returns, but it never decreases.
func (q *Queue[T]) Head() uint64 { return q.head.Load() }

// Tail returns the next sequence a push will be given, which is also the
// number of accepted pushes so far. It is a cut-off: every sequence below
// the value returned has been given to a producer (its message may still
// be being written, and the consumer will wait for it), and every push
// not yet accepted at that instant gets that value or a higher one. After
// Close, Tail no longer changes.
func (q *Queue[T]) Tail() uint64 { return q.tail.Load() &^ closedBit }

// Len returns the number of messages in the queue: accepted and not yet
// popped, counting those whose producers are still writing them. It is a
// snapshot, between 0 and Cap.
func (q *Queue[T]) Len() int {
	h := q.head.Load()
	t := q.Tail() // read after h, so t >= h
	if n := t - h; n < uint64(len(q.slots)) {
		return int(n)
	}
	return len(q.slots)
}

// Closed reports whether Close has been called.
func (q *Queue[T]) Closed() bool { return q.tail.Load()&closedBit != 0 }

// Stats returns the queue's counters.
func (q *Queue[T]) Stats() Stats {
	return Stats{
		Pushed:       q.Tail(),
		Popped:       q.head.Load(),
		RejectedFull: q.rejectedFull.Load(),
		Blocked:      q.blocked.Load(),
	}
}

// Close stops the queue from accepting messages. Pushes that were given a
// sequence before Close stay in the queue and the consumer can pop them;
// every push after it, and every push waiting for room, fails with
// ErrClosed. A consumer waiting in WaitNonEmpty wakes up; it returns
// ErrClosed once the queue is empty. Close may be called more than once
// and from any goroutine; later calls do nothing.
func (q *Queue[T]) Close() {
	if q.tail.Or(closedBit)&closedBit != 0 {
		return
	}
	q.producer.wakeAll()
	q.consumer.wakeAll()
}

// result of one push attempt.
type attempt int

const (
	pushed attempt = iota
	full
	closed
)

// try makes one non-blocking push attempt. On success it returns the
// sequence given to v.
func (q *Queue[T]) try(v T) (uint64, attempt) {
	t := q.tail.Load()
	for {
		if t&closedBit != 0 {
			return 0, closed
		}
		// The head is loaded after t, so t >= h+Cap means that when h was
		// loaded the queue held Cap messages. If t < h, t is stale and the
		// compare-and-swap fails.
		if h := q.head.Load(); t >= h+uint64(len(q.slots)) {
			return 0, full
		}
		if q.tail.CompareAndSwap(t, t+1) {
			q.publish(&q.slots[t&q.mask], t, v)
			return t, pushed
		}
		// Another producer took t; try the new tail.
		t = q.tail.Load()
	}
}

// publish writes v, the message of the claimed sequence t, into its slot
// s, makes it visible to the consumer and wakes the consumer if it
// sleeps.
func (q *Queue[T]) publish(s *slot[T], t uint64, v T) {
	s.val = v
	s.stamp.Store(t + 1)
	if q.consumer.armed.Load() {
		q.consumer.wakeAll()
	}
}

// TryPush adds v to the queue without ever waiting, whatever the policy.
// It returns v's sequence, or an error wrapping ErrFull (the queue held
// Cap messages at that instant) or ErrClosed. On error v is not in the
// queue.
func (q *Queue[T]) TryPush(v T) (uint64, error) {
	seq, r := q.try(v)
	switch r {
	case pushed:
		return seq, nil
	case full:
		return 0, q.refuse()
	}
	return 0, ErrClosed
}

// Push adds v to the queue and returns its sequence. When the queue is
// full it follows the queue's policy: under Fail it returns an error
// wrapping ErrFull at once; under Block it waits until a slot frees up,
// returning ErrClosed if the queue is closed first, or, if ctx is done
// first, an error that wraps ctx.Err() (errors.Is works with
// context.Canceled and context.DeadlineExceeded). ctx is consulted only
// when the push has to wait: a push that finds room succeeds even if ctx
// is already done. On error v is not in the queue. Push panics if ctx is
// nil.
//
// Under Block, a Push from the consumer's own goroutine into a full queue
// waits for a pop that cannot come; it returns only when ctx is done or
// the queue is closed.
func (q *Queue[T]) Push(ctx context.Context, v T) (uint64, error) {
	if ctx == nil {
		panic("queue: Push with nil context")
	}
	seq, r := q.try(v)
	switch r {
	case pushed:
		return seq, nil
	case closed:
		return 0, ErrClosed
	}
	if q.policy == Fail {
		return 0, q.refuse()
	}
	return q.pushWait(ctx, v)
}

// refuse counts a push refused for lack of room and returns its error.
func (q *Queue[T]) refuse() error {
	if q.slots == nil {
		// A zero Queue has no slots and looks full forever.
		panic("queue: use of a Queue not created by New")
	}
	q.rejectedFull.Add(1)
	return q.errFull
}

// pushWait is Push's slow path under the Block policy: the queue was full.
func (q *Queue[T]) pushWait(ctx context.Context, v T) (uint64, error) {
	if q.slots == nil {
		panic("queue: use of a Queue not created by New")
	}
	q.blocked.Add(1)
	for i := 0; ; i++ {
		if err := ctx.Err(); err != nil {
			return 0, q.waitErr(err)
		}
		if i < spinTries {
			runtime.Gosched()
		} else {
			// Register, check again, then sleep: a consumer that frees a
			// slot after the check sees the registration and wakes us.
			wake := q.producer.prepare()
			seq, r := q.try(v)
			if r != full {
				return q.pushResult(seq, r)
			}
			if err := q.producer.sleep(ctx, wake); err != nil {
				return 0, q.waitErr(err)
			}
		}
		seq, r := q.try(v)
		if r != full {
			return q.pushResult(seq, r)
		}
	}
}

func (q *Queue[T]) pushResult(seq uint64, r attempt) (uint64, error) {
	if r == closed {
		return 0, ErrClosed
	}
	return seq, nil
}

func (q *Queue[T]) waitErr(err error) error {
	return fmt.Errorf("queue: push waited for room in a full queue (capacity %d): %w", len(q.slots), err)
}

// enter marks the start of a consumer call and panics if another one is
// running.
func (q *Queue[T]) enter(name string) {
	if !q.busy.CompareAndSwap(0, 1) {
		panic("queue: " + name + " called while another PopBatch or WaitNonEmpty is running; a Queue has a single consumer")
	}
}

func (q *Queue[T]) leave() { q.busy.Store(0) }

// PopBatch moves up to len(dst) messages from the queue into dst[:n], in
// sequence order, without waiting. The message in dst[i] has sequence
// first+i. It stops at the first sequence that is not yet published, so
// it returns only an unbroken run starting at the head: it never skips a
// sequence whose producer is still writing it. When n is 0 (empty queue,
// or len(dst) is 0), first is the head, the sequence the next pop will
// return. The slots given back are cleared, so the queue keeps no
// reference to popped messages. PopBatch works on a closed queue too,
// until it is empty.
//
// PopBatch is a consumer call: it panics if another PopBatch or
// WaitNonEmpty on q is running at the same time.
func (q *Queue[T]) PopBatch(dst []T) (first uint64, n int) {
	q.enter("PopBatch")
	h := q.head.Load()
	first = h
	var zero T
	for n < len(dst) {
		s := &q.slots[h&q.mask]
		if s.stamp.Load() != h+1 {
			break
		}
		dst[n] = s.val
		s.val = zero
		h++
		n++
	}
	if n > 0 {
		q.head.Store(h)
		if q.producer.armed.Load() {
			q.producer.wakeAll()
		}
	}
	q.leave()
	return first, n
}

// ready reports whether the message at head h is published.
func (q *Queue[T]) ready(h uint64) bool {
	return q.slots[h&q.mask].stamp.Load() == h+1
}

// WaitNonEmpty waits until the message at the head is published, and then
// returns nil: the next PopBatch will return at least one message. It
// returns ErrClosed when the queue is closed and every accepted message
// has been popped, and an error wrapping ctx.Err() if ctx is done first.
// It returns at once if the condition already holds. It does not pop.
//
// WaitNonEmpty is a consumer call. If it has to wait while another
// PopBatch or WaitNonEmpty on q is running, it panics; it also panics if
// ctx is nil.
func (q *Queue[T]) WaitNonEmpty(ctx context.Context) error {
	if ctx == nil {
		panic("queue: WaitNonEmpty with nil context")
	}
	h := q.head.Load()
	if q.ready(h) {
		return nil
	}
	q.enter("WaitNonEmpty")
	defer q.leave()
	h = q.head.Load()
	for i := 0; ; i++ {
		if q.ready(h) {
			return nil
		}
		if t := q.tail.Load(); t&closedBit != 0 && t&^closedBit == h {
			return ErrClosed
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("queue: wait for a message: %w", err)
		}
		if i < spinTries {
			runtime.Gosched()
			continue
		}
		// Register, check again, then sleep: a producer that publishes,
		// or a Close, after the check sees the registration and wakes us.
		wake := q.consumer.prepare()
		if q.ready(h) {
			return nil
		}
		if t := q.tail.Load(); t&closedBit != 0 && t&^closedBit == h {
			return ErrClosed
		}
		if err := q.consumer.sleep(ctx, wake); err != nil {
			return fmt.Errorf("queue: wait for a message: %w", err)
		}
	}
}
