// Package queue is the input queue of a kernel: a bounded, lock-free
// queue with many producers and one consumer, in which every accepted
// message gets a sequence number.
//
// # Algorithm
//
// A [Queue] is a ring of slots whose length is a power of two (the
// requested capacity rounded up; [Queue.Cap] reports it). Two 63-bit
// counters run over it: the tail, the next sequence a producer will get,
// and the head, the next sequence the consumer will pop. Sequence s lives
// in slot s mod Cap. Each slot carries a stamp: s+1 once the message of
// sequence s has been written into it. Before that the slot still shows
// the stamp of its previous sequence, s-Cap+1 (or 0 for a slot never
// used), which is never s+1, even when Cap is 1.
//
// A producer loads the tail t, then the head h. If t >= h+Cap the queue
// holds Cap messages: it is full. Otherwise the producer claims t with a
// compare-and-swap of the tail from t to t+1 (on failure another producer
// took t, and it starts again with the new tail), writes its message into
// slot t mod Cap and stores the stamp t+1: it publishes.
//
// The consumer pops sequence h when the stamp of slot h mod Cap is h+1:
// it copies the message out and clears the slot. After a batch it stores
// the new head once, which hands all the freed slots back to the
// producers together. No mutex is taken on either side; a push costs one
// compare-and-swap and one atomic store, and a pop one atomic load per
// message and one atomic store per batch.
//
// Memory ordering follows from the Go memory model, in which all
// sync/atomic operations are sequentially consistent and an atomic load
// that observes an atomic store is synchronized after it. The producer
// writes the message before it stores the stamp t+1, and the consumer
// reads the message only after it loads t+1 from the stamp, so it sees
// the whole message. The consumer reads and clears slot s mod Cap before
// it stores a head above s, and a producer writes that slot again, for
// sequence s+Cap, only after it has loaded such a head, so the producer's
// write cannot overtake the consumer's read. The compare-and-swap on the
// tail gives every sequence to exactly one producer, and since the head
// only grows, a room check that held before the compare-and-swap still
// holds after it.
//
// # Sequences and cut-offs
//
// The first accepted message gets sequence 0; each accepted push gets
// the next one, with no gaps and no repeats, and the consumer pops in
// strictly increasing sequence order, one sequence after another. A push
// that fails (full, closed, context done) gets no sequence. Sequences
// have 63 bits: a queue accepts at most 2^63 messages in its life, which
// at a billion messages a second takes about 290 years.
//
// Producers claim sequences in one order but may finish writing in
// another: sequence k can be claimed and still being written while k+1
// is already published. The consumer never skips: [Queue.PopBatch]
// returns only the published run that starts at the head and stops at
// the first slot not yet published.
//
// [Queue.Tail] is a cut-off. When it returns c, every sequence below c
// has been given to a producer and every push that has not yet been given
// a sequence will get c or more. The messages below c may still be being
// written; the consumer will get all of them, in order, before any
// message at or above c. To pop exactly up to a cut-off c, the consumer
// passes PopBatch a destination of at most c-[Queue.Head] elements.
//
// # Full queue, close and waiting
//
// A [Policy] set at construction decides what [Queue.Push] does when the
// queue is full: [Block] waits for room or for its context, [Fail] returns
// an error that wraps [ErrFull]. [Queue.TryPush] never waits. No message
// is ever dropped silently: a push either returns a sequence or an error.
//
// [Queue.Close] sets a flag bit in the tail word itself, so closing and
// claiming are ordered by the same atomic variable: the pushes that got a
// sequence before Close stay in the queue and the consumer can drain them;
// every later push fails with [ErrClosed], and the tail no longer moves.
//
// Waiting is only on the slow path. A producer that finds the queue full
// (Block policy) and a consumer that finds it empty first retry a few
// times, yielding the processor, then register as sleepers (which sets an
// atomic flag), check again, and sleep on a channel. The other side loads
// the flag after every publish (for the consumer) or every batch popped
// (for producers) and, only when it is set, closes the channel, waking
// every sleeper. While nobody sleeps, the cost is one atomic load of a
// flag that does not change. Because the sleeper sets the flag before its
// last check and the other side loads the flag after its change, one of
// the two always sees the other: no wake-up is lost.
//
// # Progress
//
// Producers never wait for each other except for retrying a lost
// compare-and-swap. The consumer, however, depends on every producer that
// claimed a sequence finishing its write: a producer descheduled between
// its claim and its publish holds back the consumer, and so, once the ring
// fills up, the other producers too, until it runs again. The write
// between claim and publish is a plain copy of the message and cannot
// fail.
package queue
