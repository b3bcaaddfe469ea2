package cuda

import (
	"errors"
	"fmt"

	cu "github.com/hotkernel/hotkernel/internal/cuda"
)

// Sentinel errors. The errors of this package wrap at most one of them,
// for errors.Is.
var (
	// ErrNoDriver: the CUDA driver library could not be loaded (no
	// NVIDIA driver on this machine, or Config.Library is wrong).
	ErrNoDriver = cu.ErrNoDriver
	// ErrNoDevice: the driver is there but has no GPU to offer, or
	// Config.Device is not one of them; also what Instantiate returns on
	// a Backend made by NewOffline.
	ErrNoDevice = cu.ErrNoDevice
	// ErrABI: the module does not follow the kernel ABI
	// (docs/cuda.md): a global or entry is missing or has the wrong
	// size or value.
	ErrABI = errors.New("module does not follow the hotkernel CUDA kernel ABI")
	// ErrNoMigrate: state of another layout was offered to code without
	// hk_migrate.
	ErrNoMigrate = errors.New("kernel has no hk_migrate for state of another layout")
	// ErrStateSize: state bytes of the right layout but the wrong length.
	ErrStateSize = errors.New("state has the wrong length")
	// ErrMessageTooLarge: a message is longer than Config.InboxBytes.
	ErrMessageTooLarge = errors.New("message larger than the inbox")
	// ErrNotReported: the kernel returned without writing a status for
	// a message.
	ErrNotReported = errors.New("the kernel did not report the message")
	// ErrOutput: the kernel reported an output longer than
	// hk_max_output.
	ErrOutput = errors.New("output longer than hk_max_output")
	// ErrNotStarted: Process before Init, ImportState or AdoptState.
	ErrNotStarted = errors.New("instance has no state yet: call Init, ImportState or AdoptState first")
	// ErrClosed: the instance, program or backend was closed.
	ErrClosed = errors.New("closed")
	// ErrStateLost: the instance's context was destroyed after a fault
	// and no host copy of its state was there to restore from.
	ErrStateLost = errors.New("state lost with the CUDA context")
	// ErrTimeout: a launch did not finish within its timeout.
	ErrTimeout = errors.New("kernel launch timed out")
)

// KernelError is a message the kernel reported as failed with a
// positive status code.
type KernelError struct {
	Code uint32
}

func (e *KernelError) Error() string { return fmt.Sprintf("kernel error code %d", e.Code) }

// DeadError is why an instance died: a sticky CUDA error (an illegal
// address, say, which poisons its context), a launch that timed out, or
// the loss of its state. A dead instance runs no more code; StateView
// still returns the last state the host holds for it, if any.
type DeadError struct {
	Op  string // what was running: "hk_process", "hk_migrate", ...
	Err error  // the CUDA error or ErrTimeout
}

func (e *DeadError) Error() string { return fmt.Sprintf("kernel instance died in %s: %v", e.Op, e.Err) }

// Unwrap returns Err.
func (e *DeadError) Unwrap() error { return e.Err }
