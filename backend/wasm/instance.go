package wasm

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/sys"
)

var le = binary.LittleEndian

// Instance is one running copy of a kernel: its linear memory, which
// holds the state, and the host's view of its inbox and outbox.
//
// An Instance is not safe for concurrent use: one goroutine drives it,
// and no method may be called from inside an emit callback. Different
// instances may run in parallel. A kernel failure in one message (an
// error code or a trap) leaves the instance usable; an interrupted or
// exited kernel leaves it dead (see DeadError), after which only
// StateView, ExportState, Err and Close are useful.
type Instance struct {
	m   *Module
	cfg *Config
	id  uint64
	mod api.Module
	mem api.Memory

	fnProcess, fnInit, fnMigrate, fnScratch, fnStatePtr, fnStateLen api.Function

	stackPtr     api.MutableGlobal // exported __stack_pointer, or nil
	stackPtrInit uint64

	inbox, inboxLen   uint32
	outbox, outboxLen uint32
	statePtr          uint32
	stateLen          uint32
	layout            uint32

	stack [4]uint64 // parameters and results of calls

	// During Process: the caller's emit and the outputs delivered.
	emit    func([]byte)
	outputs int
	flushes int // hk.flush calls, for tests
	// Set by hk.flush when it aborts the kernel's call: a protocol
	// violation, or the value the caller's emit panicked with.
	hostErr   error
	emitPanic any

	dead   *DeadError
	closed bool
	log    logLimiter

	hm handover // memfd-backed memory and state handover (Linux)
}

// Module returns the Module the instance was created from.
func (in *Instance) Module() *Module { return in.m }

// ID returns a number that identifies the instance within its Runtime.
func (in *Instance) ID() uint64 { return in.id }

// Err returns nil while the instance can run kernel code, the *DeadError
// once it died, and ErrClosed after Close.
func (in *Instance) Err() error {
	if in.closed {
		return ErrClosed
	}
	if in.dead != nil {
		return in.dead
	}
	return nil
}

// Init calls hk_init to set up a fresh state, for code that starts
// without previous state. A non-zero return is a *KernelError; the
// instance is then usable but its state is whatever hk_init left.
// Outputs written during hk_init are discarded.
// After PrepareAdopt it lets the preparation go first.
func (in *Instance) Init(ctx context.Context) error {
	if err := in.Err(); err != nil {
		return err
	}
	if err := in.unprepare(); err != nil {
		return err
	}
	rc, err := in.call(ctx, in.fnInit, fnInit, -1, in.cfg.CallTimeout)
	in.resetOutbox()
	if err != nil {
		return err
	}
	if rc := int32(rc); rc != 0 {
		return &KernelError{Func: fnInit, Index: -1, Code: rc}
	}
	return in.checkStateStable(ctx, fnInit)
}

// Process runs msgs through the kernel, in order, and passes each output
// to emit, in the order the kernel wrote them. It frames as many
// messages as fit into the inbox (Config.InboxBytes, at most
// Config.MaxBatchMessages) for one hk_process call, and makes as many
// calls as needed; each runs under Config.BatchTimeout.
//
// emit receives a view into the kernel's memory, valid only until emit
// returns: copy what you keep. emit must not call into the instance. A
// nil emit discards outputs (they are still counted). Outputs a message
// wrote before it failed are delivered too. If emit panics the instance
// is dead and the panic continues in the caller.
//
// A message that fails — the kernel returns an error code for it, or
// traps in it — is reported in ProcessResult.Failures, and processing
// goes on with the next message: the messages before it completed and
// the failed one's memory writes before the failure remain (they are not
// undone). The error is nil then.
//
// Process returns a non-nil error only when it stopped early:
//   - ctx was done before a call started: ctx.Err(), and the instance is
//     fine;
//   - the instance died (deadline, ctx cancelled during a call, kernel
//     exit, runtime closed, malformed outbox): the *DeadError, which is
//     also the last Failure when a message can be blamed. The caller
//     recovers by starting a new instance and importing the state (the
//     dead instance's ExportState still reads it);
//   - the instance was already dead or closed: that error, with nothing
//     processed.
//
// ProcessResult.Processed says how far it got in every case.
func (in *Instance) Process(ctx context.Context, msgs [][]byte, emit func(out []byte)) (res ProcessResult, err error) {
	if err := in.Err(); err != nil {
		return res, err
	}
	in.emit, in.outputs = emit, 0
	defer func() {
		res.Outputs = in.outputs
		in.emit = nil
		if r := recover(); r != nil {
			in.kill(&DeadError{Func: fnProcess, Index: -1, Cause: errEmitPanicked})
			panic(r)
		}
	}()
	maxN := in.cfg.MaxBatchMessages
	for i := 0; i < len(msgs); {
		if err := ctx.Err(); err != nil {
			res.Processed = i
			return res, err
		}
		buf, _ := in.mem.Read(in.inbox, in.inboxLen)
		off, n := inboxHeader, 0
		for i+n < len(msgs) && n < maxN {
			msg := msgs[i+n]
			need := frameHeader + pad4(len(msg))
			if need > len(buf)-off {
				break
			}
			le.PutUint32(buf[off:], uint32(len(msg)))
			copy(buf[off+frameHeader:], msg)
			if len(msg)&3 != 0 {
				clear(buf[off+frameHeader+len(msg) : off+need])
			}
			off += need
			n++
		}
		if n == 0 {
			res.Failures = append(res.Failures, Failure{Index: i, Err: fmt.Errorf("message %d: %d bytes: %w (%d bytes at most)",
				i, len(msgs[i]), ErrMessageTooLarge, int(in.inboxLen)-inboxHeader-frameHeader)})
			i++
			continue
		}
		le.PutUint32(buf[0:], uint32(n))
		le.PutUint32(buf[4:], 0)

		in.stack[0] = uint64(n)
		rc, callErr := in.call(ctx, in.fnProcess, fnProcess, -1, in.cfg.BatchTimeout)
		if p := in.emitPanic; p != nil {
			in.emitPanic = nil
			panic(p) // emit panicked inside hk.flush; the deferred recover kills the instance
		}
		if callErr == nil && int32(rc) == 0 {
			if err := in.deliver(); err != nil {
				res.Processed = i + n
				return res, in.kill(&DeadError{Func: fnProcess, Index: -1, Cause: err})
			}
			i += n
			continue
		}
		// Message `done` of this batch failed; those before it completed.
		done := n - 1
		if h, ok := in.mem.Read(in.inbox, inboxHeader); ok {
			done = int(min(le.Uint32(h[4:]), uint32(n-1)))
		}
		idx := i + done
		var fail error
		switch e := callErr.(type) {
		case nil:
			if int32(rc) > 0 {
				fail = in.kill(&DeadError{Func: fnProcess, Index: idx, Cause: abiErr(fnProcess,
					"hk_process returned %d; it returns 0 or a negative error code", int32(rc))})
			} else {
				fail = &KernelError{Func: fnProcess, Index: idx, Code: -int32(rc)}
			}
		case *TrapError:
			e.Index = idx
			fail = e
		case *DeadError:
			e.Index = idx
			fail = e
		default:
			fail = callErr
		}
		res.Failures = append(res.Failures, Failure{Index: idx, Err: fail})
		if err := in.deliver(); err != nil && in.dead == nil {
			in.kill(&DeadError{Func: fnProcess, Index: idx, Cause: err})
		}
		if in.dead != nil {
			res.Processed = idx + 1
			return res, in.dead
		}
		i = idx + 1
	}
	res.Processed = len(msgs)
	return res, nil
}

func pad4(n int) int { return (n + 3) &^ 3 }

// deliver passes the outputs framed in the outbox to emit and empties
// the outbox. It returns an *ABIError for a malformed outbox.
func (in *Instance) deliver() error {
	if in.outboxLen == 0 {
		return nil // hk.flush before the start sequence asked for an outbox
	}
	buf, ok := in.mem.Read(in.outbox, in.outboxLen)
	if !ok {
		return abiErr("outbox", "outbox [%#x, +%d) is outside linear memory", in.outbox, in.outboxLen)
	}
	used := le.Uint32(buf)
	if used == 0 {
		return nil
	}
	capacity := in.outboxLen - outboxHeader
	if used > capacity {
		return abiErr("outbox", "outbox used count %d exceeds its capacity %d", used, capacity)
	}
	frames := buf[outboxHeader : outboxHeader+used]
	// Reset first, so that a panicking emit leaves no output to be
	// delivered twice.
	in.resetOutbox()
	for off := 0; off < len(frames); {
		if len(frames)-off < frameHeader {
			return abiErr("outbox", "outbox frame at offset %d is cut short (used %d)", off, used)
		}
		n := int(le.Uint32(frames[off:]))
		end := off + frameHeader + pad4(n)
		if n > len(frames) || end > len(frames) {
			return abiErr("outbox", "outbox frame at offset %d claims %d bytes, beyond the used count %d", off, n, used)
		}
		out := frames[off+frameHeader : off+frameHeader+n]
		in.outputs++
		if in.emit != nil {
			in.emit(out)
		}
		off = end
	}
	return nil
}

var errEmitPanicked = errors.New("the caller's emit function panicked")

// flushFromKernel is hk.flush: it delivers the outbox, and aborts the
// kernel's call when the outbox is malformed or emit panics, recording
// why for Process.
func (in *Instance) flushFromKernel() {
	in.flushes++
	err := func() (err error) {
		defer func() {
			if r := recover(); r != nil {
				in.emitPanic = r
				err = errEmitPanicked
			}
		}()
		return in.deliver()
	}()
	if err != nil {
		if in.emitPanic == nil {
			in.hostErr = err
		}
		panic(err)
	}
}

// resetOutbox writes an empty outbox header: used 0 and the capacity.
func (in *Instance) resetOutbox() {
	if in.outboxLen == 0 {
		return
	}
	if buf, ok := in.mem.Read(in.outbox, outboxHeader); ok {
		le.PutUint32(buf, 0)
		le.PutUint32(buf[4:], in.outboxLen-outboxHeader)
	}
}

// call calls f with the parameters in in.stack under a deadline and
// returns its first result. Errors are classified: a trap is a
// *TrapError and the instance goes on; a closed module (deadline,
// cancellation, exit), a host function's protocol error, or a panic in
// emit makes the instance dead and returns the *DeadError.
func (in *Instance) call(ctx context.Context, f api.Function, name string, index int, timeout time.Duration) (uint64, error) {
	if in.dead != nil {
		return 0, in.dead
	}
	if in.closed {
		return 0, ErrClosed
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	err := f.CallWithStack(&callCtx{Context: cctx, in: in}, in.stack[:])
	cancel()
	if err == nil {
		return in.stack[0], nil
	}
	return 0, in.classify(ctx, name, index, timeout, err)
}

func (in *Instance) classify(ctx context.Context, name string, index int, timeout time.Duration, err error) error {
	if in.emitPanic != nil {
		return in.kill(&DeadError{Func: name, Index: index, Cause: errEmitPanicked})
	}
	if h := in.hostErr; h != nil {
		in.hostErr = nil
		return in.kill(&DeadError{Func: name, Index: index, Cause: h})
	}
	if in.mod.IsClosed() {
		cause := err
		var exit *sys.ExitError
		if errors.As(err, &exit) {
			switch exit.ExitCode() {
			case sys.ExitCodeDeadlineExceeded, sys.ExitCodeContextCanceled:
				if ctx.Err() != nil {
					cause = ctx.Err()
				} else {
					cause = fmt.Errorf("%w (%v)", ErrDeadline, timeout)
				}
			default:
				cause = fmt.Errorf("kernel exited with code %d: %w", exit.ExitCode(), err)
			}
		}
		if in.m.rt.closed.Load() {
			cause = fmt.Errorf("runtime closed: %w", ErrClosed)
		}
		return in.kill(&DeadError{Func: name, Index: index, Cause: cause})
	}
	if in.stackPtr != nil {
		in.stackPtr.Set(in.stackPtrInit)
	}
	msg, _, _ := strings.Cut(err.Error(), "\n")
	return &TrapError{Func: name, Index: index, Message: msg, Err: err}
}

// kill marks the instance dead and returns the DeadError.
func (in *Instance) kill(e *DeadError) *DeadError {
	if in.dead == nil {
		in.dead = e
	}
	return in.dead
}

// checkStateStable checks that the state range did not move during a
// call: the ABI requires it fixed for the instance's life.
func (in *Instance) checkStateStable(ctx context.Context, after string) error {
	ptr, n, err := in.stateRange(ctx)
	if err != nil {
		return err
	}
	if ptr != in.statePtr || n != in.stateLen {
		return abiErr(fnStatePtr, "state range moved from [%#x, +%d) to [%#x, +%d) during %s; it must stay fixed for the instance's life",
			in.statePtr, in.stateLen, ptr, n, after)
	}
	return nil
}

// StateLayout returns the kernel's state layout version (hk_state_layout).
func (in *Instance) StateLayout() uint32 { return in.layout }

// StateView returns the kernel's state, the byte range [hk_state_ptr,
// +hk_state_len) of its linear memory, without copying. The view is valid
// only until the next call into the instance (Init, Process,
// ImportState), which may change the bytes or move memory, and until
// Close; writing to it writes the kernel's state. It works on a dead
// instance (the state is as the kernel left it, including a partial
// update by the message it died in) and returns nil after Close.
//
// At a reload the old instance's StateView can go straight to the new
// instance's ImportState, which copies it once: the old instance is not
// called in between.
func (in *Instance) StateView() []byte {
	if in.closed {
		return nil
	}
	b, _ := in.mem.Read(in.statePtr, in.stateLen)
	return b
}

// ExportState returns a copy of the kernel's state (see StateView), or
// nil after Close.
func (in *Instance) ExportState() []byte {
	v := in.StateView()
	if v == nil {
		return nil
	}
	return append(make([]byte, 0, len(v)), v...)
}

// ImportState replaces the instance's state with state exported from an
// instance of code with layout oldLayout and version oldCodeVersion.
// Call it on a fresh instance instead of Init; after PrepareAdopt it
// lets the preparation go first.
//
// When oldLayout equals the instance's layout and len(state) its state
// length, the bytes are copied into the state range and no kernel code
// runs. Otherwise the kernel must export hk_migrate: the host writes the
// old bytes into the buffer hk_scratch(len(state)) returns, then calls
// hk_migrate(oldLayout, oldCodeVersion, ptr, len) under
// Config.CallTimeout, which builds the new state from them. Without
// hk_migrate the error is an *ABIError such as "new code (layout 2)
// cannot read state of layout 1: it exports no hk_migrate". A non-zero
// hk_migrate result is a *KernelError, a trap a *TrapError; after either
// the state is whatever the kernel left and the instance should be
// discarded.
func (in *Instance) ImportState(ctx context.Context, oldLayout uint32, oldCodeVersion uint64, state []byte) error {
	if err := in.Err(); err != nil {
		return err
	}
	if err := in.unprepare(); err != nil {
		return err
	}
	if oldLayout == in.layout && len(state) == int(in.stateLen) {
		v, _ := in.mem.Read(in.statePtr, in.stateLen)
		copy(v, state)
		return nil
	}
	if err := checkImport(in.layout, in.stateLen, in.fnMigrate != nil, oldLayout, len(state)); err != nil {
		return err
	}
	if uint64(len(state)) > math.MaxUint32 {
		return fmt.Errorf("wasm: import state: %d bytes of old state do not fit in a 32-bit memory", len(state))
	}
	ptr, err := in.buffer(ctx, in.fnScratch, fnScratch, uint32(len(state)))
	if err != nil {
		return err
	}
	scratch, _ := in.mem.Read(ptr, uint32(len(state)))
	copy(scratch, state)
	in.stack[0] = uint64(oldLayout)
	in.stack[1] = oldCodeVersion
	in.stack[2] = uint64(ptr)
	in.stack[3] = uint64(len(state))
	rc, err := in.call(ctx, in.fnMigrate, fnMigrate, -1, in.cfg.CallTimeout)
	in.resetOutbox()
	if err != nil {
		return err
	}
	if rc := int32(rc); rc != 0 {
		return &KernelError{Func: fnMigrate, Index: -1, Code: rc}
	}
	return in.checkStateStable(ctx, fnMigrate)
}

// Close releases the instance. Later calls return ErrClosed, and
// StateView and ExportState return nil. Close is idempotent.
func (in *Instance) Close(ctx context.Context) error {
	if in.closed {
		return nil
	}
	in.closed = true
	err := in.mod.Close(ctx)
	in.hm.release(in.statePtr, in.stateLen)
	// Let the memory and the call stacks go even if the Instance is kept.
	in.mod, in.mem, in.stackPtr = nil, nil, nil
	in.fnProcess, in.fnInit, in.fnMigrate, in.fnScratch, in.fnStatePtr, in.fnStateLen = nil, nil, nil, nil, nil, nil
	return err
}
