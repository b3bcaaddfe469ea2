package wasm

import (
	"errors"
	"fmt"
)

// Sentinel errors; test for them with errors.Is.
var (
	// ErrABI: a module breaks the kernel ABI (a missing export, a wrong
	// signature, a forbidden import, an unaligned state, a malformed
	// outbox). Every *ABIError wraps it.
	ErrABI = errors.New("kernel ABI violation")

	// ErrInstanceDead: the instance can run no more kernel code. Its
	// linear memory is still readable (StateView, ExportState) until
	// Close. Every *DeadError matches it.
	ErrInstanceDead = errors.New("kernel instance is dead")

	// ErrDeadline: a call into the kernel ran past its time limit and was
	// interrupted, which kills the instance. A *DeadError's Cause wraps
	// it.
	ErrDeadline = errors.New("kernel call exceeded its deadline")

	// ErrClosed: the Runtime, Module or Instance was closed by its owner.
	ErrClosed = errors.New("closed")

	// ErrMessageTooLarge: a message does not fit in the inbox even alone
	// (Config.InboxBytes less the 12 bytes of header and framing). The
	// message is reported as a Failure; the kernel never sees it.
	ErrMessageTooLarge = errors.New("message larger than the kernel inbox")
)

// ABIError says how a module breaks the kernel ABI. Compile returns it
// for a module that cannot be run; ImportState returns it when the new
// code cannot read the old state; a malformed outbox kills an instance
// with one as the DeadError's Cause.
//
// Its message is "kernel ABI: " followed by Reason, for example
// "kernel ABI: export hk_abi_version missing".
type ABIError struct {
	// Name is the export ("hk_process"), import ("env.foo") or buffer
	// ("outbox") concerned; empty when the fault is not about one name.
	Name string
	// Reason says what is wrong, naming Name where there is one.
	Reason string
}

// Error implements the error interface.
func (e *ABIError) Error() string { return "kernel ABI: " + e.Reason }

// Unwrap returns ErrABI.
func (e *ABIError) Unwrap() error { return ErrABI }

func abiErr(name, format string, args ...any) *ABIError {
	return &ABIError{Name: name, Reason: fmt.Sprintf(format, args...)}
}

// KernelError is a non-zero error code returned by the kernel itself: by
// hk_process for one message, by hk_init, or by hk_migrate. The instance
// stays usable.
type KernelError struct {
	// Func is the export that returned the code: "hk_process", "hk_init"
	// or "hk_migrate".
	Func string
	// Index is the failed message's index in the slice given to Process;
	// -1 when the call was not about a message.
	Index int
	// Code is the kernel's error code: the E of hk_process's -E, or the
	// value hk_init and hk_migrate returned.
	Code int32
}

// Error implements the error interface.
func (e *KernelError) Error() string {
	if e.Index >= 0 {
		return fmt.Sprintf("kernel: %s: message %d failed with code %d", e.Func, e.Index, e.Code)
	}
	return fmt.Sprintf("kernel: %s failed with code %d", e.Func, e.Code)
}

// TrapError is a WebAssembly trap (unreachable, out-of-bounds access,
// division by zero, stack overflow, ...) during a call into the kernel.
// The instance stays usable: memory writes made before the trap remain,
// and the host resets the exported __stack_pointer, if any.
type TrapError struct {
	// Func is the export that trapped.
	Func string
	// Index is the message being processed when the trap happened, as an
	// index in the slice given to Process; -1 when the call was not about
	// a message.
	Index int
	// Message is the first line of the runtime's trap text, for example
	// "wasm error: unreachable".
	Message string
	// Err is the runtime's error, with the WebAssembly stack trace.
	Err error
}

// Error implements the error interface.
func (e *TrapError) Error() string {
	if e.Index >= 0 {
		return fmt.Sprintf("kernel: %s: message %d trapped: %s", e.Func, e.Index, e.Message)
	}
	return fmt.Sprintf("kernel: %s trapped: %s", e.Func, e.Message)
}

// Unwrap returns the runtime's error.
func (e *TrapError) Unwrap() error { return e.Err }

// DeadError says that an instance died during a call: it was interrupted
// at its deadline or by the cancellation of the caller's context, the
// kernel exited (a WASI proc_exit, as a Go kernel does when it panics),
// the runtime was closed, or the kernel broke the output protocol. The
// instance runs no more code; every later call on it returns the same
// DeadError. errors.Is(err, ErrInstanceDead) holds, and Unwrap gives
// Cause, so errors.Is(err, ErrDeadline) tells a deadline.
type DeadError struct {
	// Func is the export that was running.
	Func string
	// Index is the message being processed when the instance died, as an
	// index in the slice given to that Process call; -1 when the call was
	// not about a message or no message can be blamed.
	Index int
	// Cause is why: an error wrapping ErrDeadline, the caller's
	// context.Canceled or context.DeadlineExceeded, the runtime's
	// *sys.ExitError, an *ABIError, or ErrClosed.
	Cause error
}

// Error implements the error interface.
func (e *DeadError) Error() string {
	if e.Index >= 0 {
		return fmt.Sprintf("kernel: %s: message %d: instance dead: %v", e.Func, e.Index, e.Cause)
	}
	return fmt.Sprintf("kernel: %s: instance dead: %v", e.Func, e.Cause)
}

// Is reports whether target is ErrInstanceDead.
func (e *DeadError) Is(target error) bool { return target == ErrInstanceDead }

// Unwrap returns Cause.
func (e *DeadError) Unwrap() error { return e.Cause }
