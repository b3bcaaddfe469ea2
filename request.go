package hotkernel

import (
	"sync/atomic"
	"time"

	"github.com/hotkernel/hotkernel/code"
)

// State is where a reload request stands.
type State int32

// The states of a reload request, in the order a successful reload goes
// through them: Idle (requested, not started), Validating, Compiling,
// Draining, Checkpointing, Swapping, Restoring, Completed. A failure
// passes through RollingBack (when anything had changed) to Failed.
const (
	Idle State = iota
	Draining
	Checkpointing
	Compiling
	Validating
	Swapping
	Restoring
	Completed
	Failed
	RollingBack
)

var stateNames = [...]string{"idle", "draining", "checkpointing", "compiling", "validating", "swapping", "restoring", "completed", "failed", "rolling back"}

// String returns the state's lower-case name.
func (s State) String() string {
	if s >= 0 && int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "unknown"
}

// Terminal reports whether s is Completed or Failed.
func (s State) Terminal() bool { return s == Completed || s == Failed }

// Request is one reload of one kernel, made by RequestReload and run by
// ExecuteReload. Its methods are safe for concurrent use, so another
// goroutine may watch State while the reload runs.
type Request struct {
	id       uint64
	kernel   string
	code     *code.Source // with its version assigned
	created  time.Time
	state    atomic.Int32
	executed atomic.Bool
	target   *version // set for a rollback to a remembered version
	onPhase  func(State, time.Duration)
}

// ID is the request's number, unique within its Manager.
func (r *Request) ID() uint64 { return r.id }

// Kernel is the ID of the kernel being reloaded.
func (r *Request) Kernel() string { return r.kernel }

// Code is the new code, with the version the Manager assigned to it.
func (r *Request) Code() *code.Source { return r.code }

// Version is the version the new code will have.
func (r *Request) Version() uint64 { return r.code.Version() }

// Created is when the request was made.
func (r *Request) Created() time.Time { return r.created }

// State is where the request stands now.
func (r *Request) State() State { return State(r.state.Load()) }

// OnPhase registers f to be called as each phase ends, with the phase and
// how long it took; call it before ExecuteReload. f runs on the reloading
// goroutine and must not block: it is how "hotkernel reload" prints the
// phases as they happen.
func (r *Request) OnPhase(f func(phase State, took time.Duration)) { r.onPhase = f }

func (r *Request) set(s State) { r.state.Store(int32(s)) }

// Result is the outcome of a reload that completed or rolled back.
type Result struct {
	Kernel     string
	OldVersion uint64
	NewVersion uint64
	// Active is the version serving when the reload ended: NewVersion on
	// success, OldVersion after a rollback.
	Active uint64
	// Attempts is how many times the reload was tried (1 without retries).
	Attempts int
	// Phase durations of the last attempt. Validate, Compile and Drain run
	// while the old code keeps serving; Checkpoint, Swap and Restore make
	// the pause.
	Validate, Compile, Drain, Checkpoint, Swap, Restore time.Duration
	// Pause is how long no message was being processed: from the old code
	// finishing the last message before the cut-off to the new code being
	// ready for the first one after it.
	Pause time.Duration
	// Health is how long the health window lasted, and HealthMessages how
	// many messages the new code handled in it.
	Health         time.Duration
	HealthMessages int
	// Total is the wall time of the whole reload, retries included.
	Total time.Duration
	// Cutoff is the queue sequence number where the versions meet:
	// messages below it went to the old code, the others to the new one
	// (unless the reload rolled back).
	Cutoff uint64
	// CheckpointBytes is the size of the state carried over.
	CheckpointBytes int
	// StatePreserved tells whether the state was carried over (copied or
	// migrated) rather than started fresh; Migrated whether the new code
	// migrated it from another layout.
	StatePreserved bool
	Migrated       bool
	// RolledBack is true when the reload failed after the swap and the old
	// code was restored; Err then says why.
	RolledBack bool
	Err        error
}
