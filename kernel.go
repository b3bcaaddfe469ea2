package hotkernel

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hotkernel/hotkernel/backend"
	"github.com/hotkernel/hotkernel/checkpoint"
	"github.com/hotkernel/hotkernel/code"
	"github.com/hotkernel/hotkernel/queue"
)

// OutputFunc receives a kernel's outputs, in the order the kernel wrote
// them, on the kernel's runner goroutine. data is valid only during the
// call: copy what you keep. version is the code version that produced the
// output. seq tells which messages it came from: the runner hands the
// kernel messages in batches, and seq is the queue sequence number of the
// first message of the output's batch — a batch is a run of consecutive
// messages [seq, seq+n) taken from the queue together, so an output with
// seq s was produced by a message with sequence s or later, and by none
// sent after the next batch began. A slow OutputFunc slows the kernel
// down; it must not call methods of the same kernel that wait for the
// runner (reloads, State).
type OutputFunc func(kernel string, version, seq uint64, data []byte)

// DeadLetter is a message that failed, with the error and the version
// that failed it.
type DeadLetter struct {
	Seq     uint64
	Version uint64
	Data    []byte
	Err     error
	Time    time.Time
}

// version is one code version of a kernel with its compiled program.
type version struct {
	src  *code.Source
	prog backend.Program
	// checkpoint is the version's state when it was last replaced; nil
	// while it has never been. Guarded by the kernel's mu.
	checkpoint *checkpoint.Checkpoint
	// processed counts the messages this version completed or failed.
	processed atomic.Uint64
	failed    atomic.Uint64
}

// Kernel is a registered kernel: an input queue, a runner goroutine that
// feeds batches from the queue into the current instance, and the
// versions it has run. Its methods are safe for concurrent use.
type Kernel struct {
	id  string
	m   *Manager
	q   *queue.Queue[[]byte]
	out OutputFunc

	handled   atomic.Uint64 // messages finished, for Handled
	delivered atomic.Uint64 // messages whose outputs were all delivered, for Delivered

	ctrl   chan *pause
	wakeFn atomic.Pointer[context.CancelFunc]
	done   chan struct{}

	mu      sync.Mutex
	cur     *version
	history []*version // oldest first; the last is cur
	every   []*version // every version ever run, for the per-version counts
	active  *Request
	dead    []DeadLetter
	deadN   uint64
	closed  bool

	// Owned by the runner goroutine.
	inst      backend.Instance
	running   *version
	batchSeq  uint64 // sequence of the first message of the batch in the kernel
	buf       [][]byte
	probation *probation
	ctx       context.Context
	cancel    context.CancelFunc
}

// ID returns the kernel's ID.
func (k *Kernel) ID() string { return k.id }

// Send queues msg for the kernel and returns its sequence number. The
// kernel keeps msg: do not modify it afterwards. When the queue is full
// Send waits for room until ctx is done (policy queue.Block) or fails at
// once with an error wrapping queue.ErrFull (queue.Fail). Messages sent
// during a reload wait in the queue; they are never dropped. After the
// kernel is unregistered Send fails with an error wrapping ErrClosed.
func (k *Kernel) Send(ctx context.Context, msg []byte) (uint64, error) {
	seq, err := k.q.Push(ctx, msg)
	if errors.Is(err, queue.ErrClosed) {
		return 0, fmt.Errorf("kernel %s: %w", k.id, ErrClosed)
	}
	if err != nil {
		return 0, fmt.Errorf("kernel %s: %w", k.id, err)
	}
	return seq, nil
}

// QueueLen returns the number of messages waiting.
func (k *Kernel) QueueLen() int { return k.q.Len() }

// Sent returns how many messages were accepted by Send so far.
func (k *Kernel) Sent() uint64 { return k.q.Tail() }

// Handled returns how many messages the runner has finished with,
// processed or dead-lettered. Once Handled equals Sent, every message sent
// so far has been handled; outputs of code on probation are delivered
// when its health window ends.
func (k *Kernel) Handled() uint64 { return k.handled.Load() }

// Status returns "running", "reloading" while a reload is requested or
// under way, or "stopped" once the kernel is unregistered.
func (k *Kernel) Status() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	switch {
	case k.closed:
		return "stopped"
	case k.active != nil:
		return "reloading"
	}
	return "running"
}

// Delivered returns how many messages, from the first, have had all their
// outputs delivered to the OutputFunc: Handled, less the messages handled
// by code on probation, whose outputs are held back until its health
// window ends (and which are handled again by the old code if it fails).
func (k *Kernel) Delivered() uint64 { return k.delivered.Load() }

// Version returns the code version serving now.
func (k *Kernel) Version() uint64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.cur.src.Version()
}

// Code returns the code serving now.
func (k *Kernel) Code() *code.Source {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.cur.src
}

// History returns the remembered versions, oldest first; the last one is
// serving.
func (k *Kernel) History() []*code.Source {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make([]*code.Source, len(k.history))
	for i, v := range k.history {
		out[i] = v.src
	}
	return out
}

// Checkpoints returns the checkpoints of the remembered versions that have
// been replaced at least once — each one's state at the cut-off of the
// reload that replaced it — oldest version first. They are shared: do not
// modify them.
func (k *Kernel) Checkpoints() []*checkpoint.Checkpoint {
	k.mu.Lock()
	defer k.mu.Unlock()
	var cps []*checkpoint.Checkpoint
	for _, v := range k.history {
		if v.checkpoint != nil {
			cps = append(cps, v.checkpoint)
		}
	}
	return cps
}

// checkpointOf builds the checkpoint of version v with the given state.
func (k *Kernel) checkpointOf(v *version, state []byte, layout uint32, cutoff uint64) *checkpoint.Checkpoint {
	return &checkpoint.Checkpoint{
		KernelID:    k.id,
		CodeVersion: v.src.Version(),
		CodeSHA256:  v.src.SHA256(),
		Created:     time.Now().UTC(),
		State:       state,
		Queues:      map[string]uint64{"input": cutoff},
		Metadata: map[string]string{
			"state.layout": strconv.FormatUint(uint64(layout), 10),
			"code.format":  v.src.Format().String(),
		},
	}
}

// DeadLetters returns the most recent failed messages (at most
// Config.DeadLetters), oldest first, and how many failed in all.
func (k *Kernel) DeadLetters() ([]DeadLetter, uint64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]DeadLetter(nil), k.dead...), k.deadN
}

// Processed returns how many messages each version has handled.
func (k *Kernel) Processed() map[uint64]uint64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make(map[uint64]uint64)
	for _, v := range k.every {
		out[v.src.Version()] = v.processed.Load()
	}
	return out
}

// State returns a copy of the kernel's state as it is between two
// batches. It waits for the runner, like a reload's cut-off but without a
// swap, so it reflects every message sent before the call.
func (k *Kernel) State(ctx context.Context) ([]byte, error) {
	var state []byte
	p := k.newPause(k.q.Tail(), func(ctx context.Context, k *Kernel) error {
		state = append([]byte(nil), k.inst.StateView()...)
		return nil
	})
	if err := k.submit(ctx, p); err != nil {
		return nil, err
	}
	return state, nil
}

// pause asks the runner to stop at a cut-off in the queue and run fn
// there, between two batches.
type pause struct {
	cutoff  uint64
	fn      func(ctx context.Context, k *Kernel) error
	ctx     context.Context
	state   atomic.Int32 // pauseWaiting → pauseRunning or pauseCancelled
	reached time.Time    // when the runner got to the cut-off
	err     error
	done    chan struct{}
}

const (
	pauseWaiting int32 = iota
	pauseRunning
	pauseCancelled
)

func (k *Kernel) newPause(cutoff uint64, fn func(context.Context, *Kernel) error) *pause {
	return &pause{cutoff: cutoff, fn: fn, done: make(chan struct{})}
}

// submit hands p to the runner and waits until it ran, or ctx is done
// first, in which case p is cancelled unless it already started (then
// submit waits for it to finish).
func (k *Kernel) submit(ctx context.Context, p *pause) error {
	p.ctx = ctx
	select {
	case k.ctrl <- p:
	case <-k.done:
		return fmt.Errorf("kernel %s: %w", k.id, ErrClosed)
	case <-ctx.Done():
		return ctx.Err()
	}
	k.wake()
	select {
	case <-p.done:
		return p.err
	case <-k.done:
		return fmt.Errorf("kernel %s: %w", k.id, ErrClosed)
	case <-ctx.Done():
		if p.state.CompareAndSwap(pauseWaiting, pauseCancelled) {
			return ctx.Err()
		}
		<-p.done
		return p.err
	}
}

// wake interrupts the runner's idle wait, if it is in one.
func (k *Kernel) wake() {
	if f := k.wakeFn.Load(); f != nil {
		(*f)()
	}
}

// run is the runner goroutine: it takes batches from the queue and feeds
// them to the current instance, stops at the cut-offs of pauses, and
// returns when the queue is closed and empty.
func (k *Kernel) run() {
	defer close(k.done)
	defer k.cancel()
	var p *pause
	for {
		if p == nil {
			select {
			case p = <-k.ctrl:
			default:
			}
		}
		limit := len(k.buf)
		if p != nil {
			if p.state.Load() == pauseCancelled {
				p = nil
				continue
			}
			head := k.q.Head()
			if head >= p.cutoff {
				if p.state.CompareAndSwap(pauseWaiting, pauseRunning) {
					p.reached = time.Now()
					p.err = p.fn(p.ctx, k)
					close(p.done)
				}
				p = nil
				continue
			}
			limit = int(min(uint64(limit), p.cutoff-head))
		}
		first, n := k.q.PopBatch(k.buf[:limit])
		if n > 0 {
			k.process(first, k.buf[:n])
			clear(k.buf[:n])
			k.handled.Store(first + uint64(n))
			if k.probation == nil {
				k.delivered.Store(first + uint64(n))
			}
			continue
		}
		if k.q.Closed() && k.q.Len() == 0 && p == nil {
			if len(k.ctrl) == 0 {
				k.endProbation(nil)
				return
			}
			continue
		}
		k.idle(p != nil)
	}
}

// idle waits for a message, a pause, or the end of the health window.
func (k *Kernel) idle(pausePending bool) {
	ctx, cancel := context.WithCancel(k.ctx)
	defer cancel()
	if pr := k.probation; pr != nil {
		if time.Now().After(pr.deadline) {
			k.endProbation(nil)
			return
		}
		var c context.CancelFunc
		ctx, c = context.WithDeadline(ctx, pr.deadline)
		defer c()
	}
	k.wakeFn.Store(&cancel)
	defer k.wakeFn.Store(nil)
	if !pausePending && len(k.ctrl) > 0 {
		return
	}
	_ = k.q.WaitNonEmpty(ctx)
	if pr := k.probation; pr != nil && time.Now().After(pr.deadline) {
		k.endProbation(nil)
	}
}

// process runs one batch whose first message has sequence first.
func (k *Kernel) process(first uint64, msgs [][]byte) {
	for len(msgs) > 0 {
		inst, v := k.inst, k.running
		k.batchSeq = first
		res, err := inst.Process(k.ctx, msgs, k.emit)
		v.processed.Add(uint64(res.Processed))
		if pr := k.probation; pr != nil {
			pr.msgs = append(pr.msgs, msgs[:res.Processed]...)
			pr.batches = append(pr.batches, res.Processed)
			pr.handled += res.Processed
			if len(res.Failures) > 0 || err != nil {
				cause := err
				if len(res.Failures) > 0 {
					f := res.Failures[0]
					cause = fmt.Errorf("message seq %d: %w", first+uint64(f.Index), f.Err)
				}
				// The old code takes over and handles the window's messages
				// again, then the rest of this batch.
				k.endProbation(cause)
				msgs, first = msgs[res.Processed:], first+uint64(res.Processed)
				continue
			}
			if pr.handled >= pr.maxMessages || time.Now().After(pr.deadline) {
				k.endProbation(nil)
			}
			return
		}
		for _, f := range res.Failures {
			k.deadLetter(first+uint64(f.Index), v, msgs[f.Index], f.Err)
		}
		if err == nil {
			return
		}
		msgs, first = msgs[res.Processed:], first+uint64(res.Processed)
		if inst.Err() == nil {
			// Stopped early without dying: the runner's context ended.
			return
		}
		if rerr := k.recover(inst, v); rerr != nil {
			// The kernel cannot be brought back; what is left fails.
			for i, msg := range msgs {
				k.deadLetter(first+uint64(i), v, msg, rerr)
			}
			return
		}
	}
}

// emit passes one output on, or holds it while the new code is on
// probation.
func (k *Kernel) emit(data []byte) {
	if pr := k.probation; pr != nil {
		pr.outputs = append(pr.outputs, heldOutput{k.batchSeq, append([]byte(nil), data...)})
		return
	}
	if k.out != nil {
		k.out(k.id, k.running.src.Version(), k.batchSeq, data)
	}
}

// deadLetter records a failed message.
func (k *Kernel) deadLetter(seq uint64, v *version, msg []byte, err error) {
	v.failed.Add(1)
	k.m.stats.failedMessages.Add(1)
	k.mu.Lock()
	defer k.mu.Unlock()
	k.deadN++
	if k.m.cfg.DeadLetters == 0 {
		return
	}
	if len(k.dead) == k.m.cfg.DeadLetters {
		copy(k.dead, k.dead[1:])
		k.dead = k.dead[:len(k.dead)-1]
	}
	k.dead = append(k.dead, DeadLetter{Seq: seq, Version: v.src.Version(), Data: msg, Err: err, Time: time.Now()})
	k.m.log().Warn("message failed", "kernel", k.id, "version", v.src.Version(), "seq", seq, "err", err)
}

// recover replaces a dead instance with a new one of the same code that
// carries the dead one's state (as the kernel left it).
func (k *Kernel) recover(dead backend.Instance, v *version) error {
	k.m.log().Warn("kernel instance died; starting a new one", "kernel", k.id, "version", v.src.Version(), "err", dead.Err())
	next, err := k.restart(v, dead.StateLayout(), dead.StateView())
	if err != nil {
		return fmt.Errorf("restart after the instance died: %w", err)
	}
	_ = dead.Close(k.ctx)
	k.inst = next
	k.m.stats.restarts.Add(1)
	return nil
}

// restart starts a new instance of version v holding state.
func (k *Kernel) restart(v *version, layout uint32, state []byte) (backend.Instance, error) {
	next, err := v.prog.Instantiate(k.ctx)
	if err != nil {
		return nil, err
	}
	if err := next.ImportState(k.ctx, layout, v.src.Version(), state); err != nil {
		_ = next.Close(k.ctx)
		return nil, fmt.Errorf("restore state: %w", err)
	}
	return next, nil
}

// probation is the health window of code just swapped in.
type probation struct {
	old         backend.Instance // the previous instance, idle, state as at the cut-off; nil without KeepFallback
	checkpoint  []byte           // a copy of the state at the cut-off, when old is nil
	layout      uint32           // the layout of checkpoint
	oldVersion  *version
	newVersion  *version
	start       time.Time
	deadline    time.Time
	maxMessages int
	handled     int
	msgs        [][]byte // messages the new code handled, to hand back on failure
	batches     []int    // how many of msgs each call into the new code handled
	firstSeq    uint64
	outputs     []heldOutput // outputs held back until the window passes
	result      chan error
}

// heldOutput is an output held back during a health window, with the
// sequence number of its batch.
type heldOutput struct {
	seq  uint64
	data []byte
}

// endProbation ends the health window: with cause nil the new code is
// confirmed and its held outputs are released; otherwise the old instance
// is put back, with its state exactly as at the cut-off, and handles the
// window's messages again.
func (k *Kernel) endProbation(cause error) {
	pr := k.probation
	if pr == nil {
		return
	}
	k.probation = nil
	if cause == nil {
		for _, o := range pr.outputs {
			if k.out != nil {
				k.out(k.id, pr.newVersion.src.Version(), o.seq, o.data)
			}
		}
		k.delivered.Store(k.handled.Load())
		// The reload goroutine takes the old instance over: it reads the
		// checkpoint from it and releases it.
		pr.result <- nil
		return
	}
	failed := k.inst
	k.running = pr.oldVersion
	if pr.old != nil {
		k.inst = pr.old
	} else if old, err := k.restart(pr.oldVersion, pr.layout, pr.checkpoint); err == nil {
		k.inst = old
	} else {
		// The old code cannot be started again: keep the new instance,
		// which is the only one left, and say so.
		k.running = pr.newVersion
		k.m.log().Error("rollback impossible; the new code keeps running", "kernel", k.id, "err", err)
		pr.result <- fmt.Errorf("%w: %w (rollback failed: %w)", ErrUnhealthy, cause, err)
		return
	}
	_ = failed.Close(k.ctx)
	// The window's messages count for the old code, which handles them now.
	pr.newVersion.processed.Add(-uint64(len(pr.msgs)))
	// Batch by batch as the new code had them, so that every output keeps
	// the batch sequence its message had.
	seq, msgs := pr.firstSeq, pr.msgs
	for _, n := range pr.batches {
		if n > 0 {
			k.process(seq, msgs[:n])
		}
		seq, msgs = seq+uint64(n), msgs[n:]
	}
	k.delivered.Store(k.handled.Load())
	pr.result <- fmt.Errorf("%w: %w", ErrUnhealthy, cause)
}
