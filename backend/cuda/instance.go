package cuda

import (
	"context"
	"fmt"
	"runtime"
	"time"

	"github.com/hotkernel/hotkernel/backend"
	cu "github.com/hotkernel/hotkernel/internal/cuda"
)

// notReported is the status the host writes before a launch; a message
// still showing it afterwards was never reported by the kernel.
const notReported = 0xFFFFFFFF

// Instance is one running copy of a kernel: its module loaded in its
// lineage's context, its state in device memory, and its message
// buffers. Each batch is one launch of hk_process (docs/cuda.md).
//
// An Instance is driven by one goroutine at a time. A message the kernel
// reports as failed leaves the instance usable; a sticky CUDA error or a
// launch past Config.BatchTimeout kills it (see DeadError) and poisons
// its context, which the lineage's other instances replace before they
// run again.
type Instance struct {
	p   *Program
	b   *Backend
	cfg *Config
	l   *lineage // nil until the instance is started or prepared

	// Resources of generation gen of l's context.
	gen                       uint64
	mod                       *cu.Module
	fProcess, fInit, fMigrate *cu.Function
	dIn, dOut                 cu.DevicePtr
	hIn, hOut                 []byte // page-locked staging buffers
	resBytes                  int    // bytes of dOut before the outputs

	// The state. Fields shared with a lender or borrower are guarded by
	// l.mu.
	hasState bool
	state    cu.DevicePtr
	lender   *Instance // whose state buffer this instance took over
	borrower *Instance // who took this instance's state buffer over
	dirty    bool      // the state buffer holds a borrower's writes
	waitCopy *Instance // a lender whose checkpoint copy must end before this instance launches
	mirror   hostCopy  // host copy of the state

	dead   *DeadError
	closed bool
}

// Program returns the program the instance was made from.
func (in *Instance) Program() *Program { return in.p }

// StateLayout is the program's hk_state_layout.
func (in *Instance) StateLayout() uint32 { return in.p.meta.layout }

// Err is nil while the instance can run code, the *DeadError once it
// died, and an error wrapping ErrClosed after Close.
func (in *Instance) Err() error {
	switch {
	case in.closed:
		return fmt.Errorf("cuda: instance %w", ErrClosed)
	case in.dead != nil:
		return in.dead
	}
	return nil
}

// die records why the instance can run no more code and poisons its
// context when the cause is sticky.
func (in *Instance) die(op string, err error) error {
	if in.dead == nil {
		in.dead = &DeadError{Op: op, Err: err}
	}
	if cu.IsSticky(err) || err == ErrTimeout {
		in.l.poison(err)
	}
	return in.dead
}

// start gives an unstarted instance a context of its own.
func (in *Instance) start() error {
	if in.l != nil {
		return nil
	}
	l, err := in.b.newLineage()
	if err != nil {
		return err
	}
	in.l = l
	return nil
}

// ready returns the context and stream to run in, after bringing the
// instance up to date with its lineage: a new context (after a fault)
// means loading the module again and restoring the state from its host
// copy; a state buffer a closed borrower wrote to is restored from the
// checkpoint taken when it was lent; a borrower first waits for its
// lender's checkpoint copy.
func (in *Instance) ready(op string) (*cu.Context, *cu.Stream, error) {
	if err := in.Err(); err != nil {
		return nil, nil, err
	}
	if in.l == nil {
		return nil, nil, fmt.Errorf("cuda: %w", ErrNotStarted)
	}
	c, s, gen, err := in.l.current()
	if err != nil {
		return nil, nil, err
	}
	if gen != in.gen {
		if err := in.rebind(c, gen); err != nil {
			return nil, nil, in.die(op, err)
		}
	}
	in.l.mu.Lock()
	lender, dirty := in.waitCopy, in.dirty
	in.waitCopy, in.dirty = nil, false
	in.l.mu.Unlock()
	if lender != nil {
		if err := lender.mirror.wait(); err != nil {
			return nil, nil, in.die(op, err)
		}
	}
	if dirty {
		// The checkpoint copy ran on the stream; this copy does not.
		if err := in.mirror.wait(); err != nil {
			return nil, nil, in.die(op, fmt.Errorf("checkpoint of the lent state: %w", err))
		}
		if err := c.CopyHtoD(in.state, in.mirror.bytes()); err != nil {
			return nil, nil, in.die(op, fmt.Errorf("restore the state from its checkpoint: %w", err))
		}
	}
	in.mirror.invalidate()
	return c, s, nil
}

// rebind loads the module into generation gen of the context and
// allocates the buffers, restoring the state from its host copy when
// the instance had state in an earlier generation.
func (in *Instance) rebind(c *cu.Context, gen uint64) error {
	old := in.gen
	in.mod, in.fProcess, in.fInit, in.fMigrate = nil, nil, nil, nil
	in.dIn, in.dOut, in.hIn, in.hOut = 0, 0, nil, nil
	if err := in.bind(c); err != nil {
		return err
	}
	in.gen = gen
	if old == 0 || !in.hasState {
		return nil
	}
	// The state buffer went with the old context.
	in.l.mu.Lock()
	if in.borrower != nil {
		in.borrower.lender = nil
		in.borrower = nil
	}
	in.lender = nil
	in.dirty = false
	in.l.mu.Unlock()
	in.mirror.forget()
	if !in.mirror.valid() {
		in.hasState = false
		return fmt.Errorf("%w: the context was replaced after a fault", ErrStateLost)
	}
	p, err := in.allocState(c)
	if err != nil {
		return err
	}
	in.state = p
	if err := c.CopyHtoD(p, in.mirror.bytes()); err != nil {
		return fmt.Errorf("restore the state from its checkpoint: %w", err)
	}
	in.b.log.Info("instance restored from its checkpoint in a new context", "generation", gen, "state_bytes", in.p.meta.stateLen)
	return nil
}

// bind loads the module into c and allocates the message buffers.
func (in *Instance) bind(c *cu.Context) error {
	mod, jl, err := c.LoadModule(in.p.image, cu.JITOptions{Verbose: in.cfg.JITVerbose})
	if err != nil {
		return in.b.loadError(in.p.name, in.p.format, jl, err)
	}
	in.mod = mod
	if in.fProcess, err = mod.Function(entryProcess); err != nil {
		return err
	}
	if in.p.meta.hasInit {
		if in.fInit, err = mod.Function(entryInit); err != nil {
			return err
		}
	}
	if in.p.meta.hasMigrate {
		if in.fMigrate, err = mod.Function(entryMigrate); err != nil {
			return err
		}
	}
	maxN := in.cfg.MaxBatchMessages
	inBytes := align(4*(maxN+1), 256) + in.cfg.InboxBytes
	in.resBytes = align(8*maxN, 256)
	outBytes := in.resBytes + maxN*int(in.p.meta.maxOutput)
	if in.dIn, err = c.Alloc(uint64(inBytes)); err != nil {
		return err
	}
	if in.dOut, err = c.Alloc(uint64(outBytes)); err != nil {
		return err
	}
	if in.hIn, err = c.AllocHost(inBytes); err != nil {
		return err
	}
	if in.hOut, err = c.AllocHost(outBytes); err != nil {
		return err
	}
	return nil
}

// allocState allocates a state buffer (at least one byte, so that a
// stateless kernel still gets a valid pointer).
func (in *Instance) allocState(c *cu.Context) (cu.DevicePtr, error) {
	n := in.p.meta.stateLen
	if n == 0 {
		n = 1
	}
	return c.Alloc(n)
}

// prepare starts the instance if needed and binds it to the current
// generation of its context.
func (in *Instance) prepare(op string) (*cu.Context, *cu.Stream, error) {
	if err := in.Err(); err != nil {
		return nil, nil, err
	}
	if err := in.start(); err != nil {
		return nil, nil, err
	}
	return in.ready(op)
}

// ownState gives the instance a state buffer of its own, dropping one it
// took over (misuse: ImportState after AdoptState).
func (in *Instance) ownState(c *cu.Context) error {
	in.l.mu.Lock()
	lender := in.lender
	if lender != nil {
		lender.borrower = nil
		lender.dirty = true
		in.lender = nil
		in.hasState = false
	}
	in.l.mu.Unlock()
	if in.hasState {
		return nil
	}
	p, err := in.allocState(c)
	if err != nil {
		return err
	}
	in.state, in.hasState = p, true
	return nil
}

// Init sets up a fresh state: zeroed, then hk_init when the kernel has
// it.
func (in *Instance) Init(ctx context.Context) error {
	c, s, err := in.prepare(entryInit)
	if err != nil {
		return err
	}
	if err := in.ownState(c); err != nil {
		return err
	}
	if err := s.MemsetD8(in.state, 0, max(in.p.meta.stateLen, 1)); err != nil {
		return in.fail(entryInit, err)
	}
	if in.fInit != nil {
		if err := s.Launch(in.fInit, one, one, 0, uint64(in.state), in.p.meta.stateLen); err != nil {
			return in.fail(entryInit, err)
		}
	}
	return in.wait(ctx, entryInit, s, in.cfg.CallTimeout)
}

var one = cu.Dim3{X: 1, Y: 1, Z: 1}

// ImportState replaces the state with state, written by code version
// oldVersion with layout oldLayout: copied to the device when the layout
// is the instance's (the length must then be hk_state_len, else
// ErrStateSize), migrated by the kernel's hk_migrate otherwise
// (ErrNoMigrate without one; a *KernelError when it reports a failure).
func (in *Instance) ImportState(ctx context.Context, oldLayout uint32, oldVersion uint64, state []byte) error {
	c, s, err := in.prepare(entryMigrate)
	if err != nil {
		return err
	}
	m := in.p.meta
	if oldLayout == m.layout {
		if uint64(len(state)) != m.stateLen {
			return fmt.Errorf("cuda: %w: %d bytes of layout %d, the kernel's state is %d", ErrStateSize, len(state), oldLayout, m.stateLen)
		}
		if err := in.ownState(c); err != nil {
			return err
		}
		if len(state) > 0 {
			if err := c.CopyHtoD(in.state, state); err != nil {
				return in.fail("import state", err)
			}
		}
		return nil
	}
	if in.fMigrate == nil {
		return fmt.Errorf("cuda: %w: state of layout %d offered to code of layout %d", ErrNoMigrate, oldLayout, m.layout)
	}
	if err := in.ownState(c); err != nil {
		return err
	}
	old, err := c.Alloc(uint64(max(len(state), 1)) + 256)
	if err != nil {
		return err
	}
	defer c.Free(old)
	status := old + cu.DevicePtr(align(max(len(state), 1), 256))
	if err := s.MemsetD8(in.state, 0, max(m.stateLen, 1)); err != nil {
		return in.fail(entryMigrate, err)
	}
	if err := s.MemsetD32(status, notReported, 1); err != nil {
		return in.fail(entryMigrate, err)
	}
	if len(state) > 0 {
		if err := c.CopyHtoD(old, state); err != nil {
			return in.fail(entryMigrate, err)
		}
	}
	if err := s.Launch(in.fMigrate, one, one, 0, uint64(in.state), m.stateLen, uint64(old), uint64(len(state)),
		uint64(oldLayout), oldVersion, uint64(status)); err != nil {
		return in.fail(entryMigrate, err)
	}
	var st [4]byte
	if err := s.CopyDtoH(st[:], status); err != nil {
		return in.fail(entryMigrate, err)
	}
	if err := in.wait(ctx, entryMigrate, s, in.cfg.CallTimeout); err != nil {
		return err
	}
	switch code := le.Uint32(st[:]); code {
	case 0:
		return nil
	case notReported:
		return fmt.Errorf("cuda: hk_migrate from layout %d: %w", oldLayout, ErrNotReported)
	default:
		return fmt.Errorf("cuda: hk_migrate from layout %d: %w", oldLayout, &KernelError{Code: code})
	}
}

// fail handles an error from enqueuing work: sticky errors kill the
// instance, others are returned as they are.
func (in *Instance) fail(op string, err error) error {
	if cu.IsSticky(err) {
		return in.die(op, err)
	}
	return err
}

// wait waits until the stream has done everything enqueued, at most
// limit. The kernel cannot be interrupted: past the limit the instance
// is dead and its context poisoned. ctx is not allowed to cut a launch
// short, since the state would then be in an unknown condition; it only
// ends the wait early when the caller gives up anyway (a cancelled
// Init), again killing the instance.
func (in *Instance) wait(ctx context.Context, op string, s *cu.Stream, limit time.Duration) error {
	start := time.Now()
	deadline := start.Add(limit)
	for {
		done, err := s.Query()
		if err != nil {
			return in.fail(op, err)
		}
		if done {
			return nil
		}
		now := time.Now()
		if now.After(deadline) {
			return in.die(op, fmt.Errorf("%w after %v", ErrTimeout, limit))
		}
		if op != entryProcess && ctx.Err() != nil {
			return in.die(op, ctx.Err())
		}
		if elapsed := now.Sub(start); elapsed < 50*time.Microsecond {
			runtime.Gosched()
		} else {
			time.Sleep(min(elapsed/8, time.Millisecond))
		}
	}
}

// Process runs msgs through hk_process, up to Config.MaxBatchMessages
// messages and Config.InboxBytes bytes per launch, and passes each output
// to emit after its launch completed. A message longer than InboxBytes
// fails with ErrMessageTooLarge without a launch. A launch the driver
// refuses without poisoning the context fails every message of it with
// the driver's error. A sticky error or a timeout kills the instance: the
// error is the *DeadError and Result.Processed stops before the launch
// that died, whose messages may have changed the state.
func (in *Instance) Process(ctx context.Context, msgs [][]byte, emit func(out []byte)) (backend.Result, error) {
	var res backend.Result
	_, s, err := in.ready(entryProcess)
	if err != nil {
		return res, err
	}
	maxN, maxBytes := in.cfg.MaxBatchMessages, in.cfg.InboxBytes
	for i := 0; i < len(msgs); {
		if len(msgs[i]) > maxBytes {
			res.Failures = append(res.Failures, backend.Failure{Index: i,
				Err: fmt.Errorf("cuda: %w: %d bytes, the inbox holds %d", ErrMessageTooLarge, len(msgs[i]), maxBytes)})
			i++
			res.Processed = i
			continue
		}
		j, n := i, 0
		for j < len(msgs) && j-i < maxN && len(msgs[j]) <= maxBytes && n+len(msgs[j]) <= maxBytes {
			n += len(msgs[j])
			j++
		}
		if err := in.launch(ctx, s, msgs[i:j], i, &res, emit); err != nil {
			return res, err
		}
		i = j
		res.Processed = i
	}
	return res, nil
}

// launch runs one launch of hk_process over batch, whose first message
// has index base in the caller's slice.
func (in *Instance) launch(ctx context.Context, s *cu.Stream, batch [][]byte, base int, res *backend.Result, emit func([]byte)) error {
	n := len(batch)
	m := in.p.meta
	offBytes := align(4*(n+1), 256)
	pos := 0
	for k, msg := range batch {
		le.PutUint32(in.hIn[4*k:], uint32(pos))
		copy(in.hIn[offBytes+pos:], msg)
		pos += len(msg)
	}
	le.PutUint32(in.hIn[4*n:], uint32(pos))
	grid, block := one, one
	if m.block > 0 {
		block.X = m.block
		grid.X = uint32((n + int(m.block) - 1) / int(m.block))
	}
	outBytes := n * int(m.maxOutput)
	err := s.CopyHtoD(in.dIn, in.hIn[:offBytes+pos])
	if err == nil {
		err = s.MemsetD32(in.dOut, notReported, uint64(2*n))
	}
	if err == nil {
		err = s.Launch(in.fProcess, grid, block, 0,
			uint64(in.state), m.stateLen, uint64(in.dIn)+uint64(offBytes), uint64(in.dIn), uint64(n),
			uint64(in.dOut), uint64(in.dOut)+uint64(in.resBytes))
	}
	if err == nil {
		err = s.CopyDtoH(in.hOut[:8*n], in.dOut)
	}
	if err == nil && outBytes > 0 {
		err = s.CopyDtoH(in.hOut[in.resBytes:in.resBytes+outBytes], in.dOut+cu.DevicePtr(in.resBytes))
	}
	if err == nil {
		err = in.wait(ctx, entryProcess, s, in.cfg.BatchTimeout)
	}
	if err != nil {
		if err = in.fail(entryProcess, err); in.dead != nil {
			return err
		}
		// Refused without harm to the context: the batch did not run.
		for k := range n {
			res.Failures = append(res.Failures, backend.Failure{Index: base + k, Err: err})
		}
		return nil
	}
	for k := range n {
		st, olen := le.Uint32(in.hOut[8*k:]), le.Uint32(in.hOut[8*k+4:])
		var ferr error
		switch {
		case st == notReported:
			ferr = fmt.Errorf("cuda: %w", ErrNotReported)
		case st != 0:
			ferr = &KernelError{Code: st}
		case olen > m.maxOutput:
			ferr = fmt.Errorf("cuda: %w: %d bytes, at most %d", ErrOutput, olen, m.maxOutput)
		case olen > 0:
			at := in.resBytes + k*int(m.maxOutput)
			emit(in.hOut[at : at+int(olen)])
			res.Outputs++
		}
		if ferr != nil {
			res.Failures = append(res.Failures, backend.Failure{Index: base + k, Err: ferr})
		}
	}
	return nil
}

// StateView returns the state as the host last copied it, copying it
// from the device first when the instance is alive and idle. While the
// state is lent to a newer instance (AdoptState), it is the checkpoint
// taken at the moment it was lent. On a dead instance whose context was
// lost it is the last host copy, or nil when there is none. Valid until
// the next call into the instance.
func (in *Instance) StateView() []byte {
	n := in.p.meta.stateLen
	if in.l == nil || !in.hasState {
		return nil
	}
	if n == 0 {
		return []byte{}
	}
	in.l.mu.Lock()
	lent := in.borrower != nil || in.dirty
	in.l.mu.Unlock()
	if lent || in.mirror.valid() {
		if err := in.mirror.wait(); err != nil {
			return nil
		}
		return in.mirror.bytes()
	}
	if in.dead != nil || in.closed {
		return nil
	}
	c, _, gen, err := in.l.current()
	if err != nil || gen != in.gen {
		return nil
	}
	if err := in.mirror.ensure(c, gen, int(n)); err != nil {
		in.b.log.Warn("cannot allocate the host copy of a state", "bytes", n, "err", err)
		return nil
	}
	if err := c.CopyDtoH(in.mirror.bytes(), in.state); err != nil {
		_ = in.fail("read state", err)
		return nil
	}
	in.mirror.setValid()
	return in.mirror.bytes()
}

// PrepareAdopt joins from's context and loads the module there, before
// the pause, so that AdoptState has only pointers to move. It also
// prepares for states of another layout: ImportState then migrates in
// from's context without making a new one. false when from is not a
// started instance of this backend.
func (in *Instance) PrepareAdopt(_ context.Context, from backend.Instance) (bool, error) {
	if err := in.Err(); err != nil {
		return false, err
	}
	src, ok := from.(*Instance)
	if !ok || src == in || src.b != in.b || in.l != nil || src.l == nil {
		return false, nil
	}
	if !src.l.acquire() {
		return false, nil
	}
	in.l = src.l
	if _, _, err := in.ready("prepare"); err != nil {
		return false, err
	}
	return true, nil
}

// AdoptState takes from's state buffer over in place: no copy of the
// state inside the pause. It enqueues, on the lineage's stream, a copy of
// the state to from's host checkpoint, which this instance's first launch
// waits for; from's StateView returns that checkpoint. If this instance
// is closed while from is open, the buffer goes back to from, which
// restores it from the checkpoint before it runs again (a rollback);
// if from is closed first, the buffer stays here. false, nil when from is
// not an instance of the same program layout and size in the same
// context (call PrepareAdopt before), or is dead.
func (in *Instance) AdoptState(_ context.Context, from backend.Instance) (bool, error) {
	if err := in.Err(); err != nil {
		return false, err
	}
	src, ok := from.(*Instance)
	if !ok || src == in || src.b != in.b || src.l == nil || src.l != in.l || src.dead != nil || src.closed ||
		!src.hasState || in.hasState || src.p.meta.layout != in.p.meta.layout || src.p.meta.stateLen != in.p.meta.stateLen {
		return false, nil
	}
	c, s, gen, err := in.l.current()
	if err != nil || gen != in.gen || gen != src.gen {
		return false, err
	}
	n := int(in.p.meta.stateLen)
	if n > 0 {
		if err := src.mirror.ensure(c, gen, n); err != nil {
			return false, err
		}
		if err := s.CopyDtoH(src.mirror.bytes(), src.state); err != nil {
			return false, src.fail("checkpoint", err)
		}
		if err := src.mirror.record(c, s); err != nil {
			return false, src.fail("checkpoint", err)
		}
	}
	in.l.mu.Lock()
	defer in.l.mu.Unlock()
	if src.borrower != nil {
		return false, nil
	}
	in.state, in.hasState, in.lender, in.waitCopy = src.state, true, src, src
	src.borrower = in
	return true, nil
}

// Close releases the instance: its module, buffers and host copy, and
// its share of the context (destroyed with its last instance). The
// state buffer goes to the instance it is shared with, if any.
// Idempotent.
func (in *Instance) Close(context.Context) error {
	if in.closed {
		return nil
	}
	in.closed = true
	if in.l == nil {
		return nil
	}
	c, _, gen, cerr := in.l.current()
	live := cerr == nil && gen == in.gen
	in.l.mu.Lock()
	freeState := in.hasState
	if lender := in.lender; lender != nil {
		lender.borrower = nil
		if !lender.closed {
			lender.dirty = true
			freeState = false
		}
		in.lender = nil
	}
	if b := in.borrower; b != nil {
		b.lender = nil
		if b.waitCopy == in {
			// The borrower has not launched yet: let the copy end before
			// the host copy goes.
			b.waitCopy = nil
			_ = in.mirror.wait()
		}
		in.borrower = nil
		freeState = false
	}
	in.l.mu.Unlock()
	if live {
		if freeState {
			_ = c.Free(in.state)
		}
		if in.dIn != 0 {
			_ = c.Free(in.dIn)
		}
		if in.dOut != 0 {
			_ = c.Free(in.dOut)
		}
		if in.hIn != nil {
			_ = c.FreeHost(in.hIn)
		}
		if in.hOut != nil {
			_ = c.FreeHost(in.hOut)
		}
		if in.mod != nil {
			_ = in.mod.Unload()
		}
	}
	in.mirror.free(c, live)
	in.hIn, in.hOut, in.mod = nil, nil, nil
	in.l.release()
	return nil
}

func align(n, a int) int { return (n + a - 1) / a * a }
