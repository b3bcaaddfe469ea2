package hotkernel

import (
	"errors"
	"fmt"
)

// Errors for errors.Is.
var (
	// ErrDisabled: the Manager's Config.Enabled is false.
	ErrDisabled = errors.New("hot reload is disabled")
	// ErrNotRegistered: no kernel has that ID.
	ErrNotRegistered = errors.New("kernel not registered")
	// ErrAlreadyRegistered: Register was given an ID already in use.
	ErrAlreadyRegistered = errors.New("kernel already registered")
	// ErrReloadInProgress: the kernel already has a reload requested or
	// running; at most one runs per kernel.
	ErrReloadInProgress = errors.New("reload already in progress")
	// ErrNoFallback: Rollback found no earlier version to go back to.
	ErrNoFallback = errors.New("no fallback version")
	// ErrInvalidCode: the new code failed validation, compilation or the
	// ABI checks. Never retried.
	ErrInvalidCode = errors.New("invalid code")
	// ErrTimeout: the reload did not finish within Config.Timeout.
	ErrTimeout = errors.New("reload timed out")
	// ErrClosed: the Manager or the kernel was closed.
	ErrClosed = errors.New("closed")
	// ErrUnhealthy: the new code failed a message within its health window.
	ErrUnhealthy = errors.New("new code failed its health window")
	// ErrStateTransfer: the state could not be carried into the new code
	// (its migration refused or trapped). Never retried.
	ErrStateTransfer = errors.New("state transfer failed")
)

// PhaseError is a reload failure with the phase it happened in. It wraps
// the cause, so errors.Is(err, ErrInvalidCode) and errors.As to the
// backend's or validator's own error types work through it.
type PhaseError struct {
	Kernel  string
	Version uint64 // the version that was being loaded
	Phase   State  // the phase that failed
	Err     error
}

// Error implements the error interface.
func (e *PhaseError) Error() string {
	return fmt.Sprintf("reload %s to v%d: %s: %v", e.Kernel, e.Version, e.Phase, e.Err)
}

// Unwrap returns the cause.
func (e *PhaseError) Unwrap() error { return e.Err }

// permanent reports whether a reload failure would fail the same way
// again, so that retrying is pointless.
func permanent(err error) bool {
	return errors.Is(err, ErrInvalidCode) || errors.Is(err, ErrStateTransfer) ||
		errors.Is(err, ErrUnhealthy) || errors.Is(err, ErrTimeout) || errors.Is(err, ErrClosed)
}
