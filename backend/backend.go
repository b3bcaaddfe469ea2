// Package backend defines what the reload manager needs of a place that
// runs kernels: compile code outside the pause, start instances, process
// batches of messages, and hand state from one instance to the next.
//
// Implementations live in the sub-packages: backend/wasm runs WebAssembly
// kernels on the CPU with wazero.
package backend

import (
	"context"

	"github.com/hotkernel/hotkernel/code"
)

// Backend compiles kernel code for one kind of device.
//
// A Backend is safe for concurrent use.
type Backend interface {
	// Name is a short lower-case name for logs and metrics ("wasm").
	Name() string
	// Compile validates src and prepares it to run: everything slow
	// happens here, while the current code keeps serving. A Program may be
	// instantiated many times. Invalid code is an error wrapping the
	// validator's *code.Error or the backend's own typed error.
	Compile(ctx context.Context, src *code.Source) (Program, error)
	// Close releases the backend; Programs and Instances made by it stop
	// working.
	Close(ctx context.Context) error
}

// Program is compiled code, ready to instantiate. It is safe for
// concurrent use.
type Program interface {
	// Instantiate starts a new, independent instance. Its state is not set
	// up: call Init or ImportState before Process.
	Instantiate(ctx context.Context) (Instance, error)
	// StateLayout is the code's state layout version.
	StateLayout() uint32
	// Close releases the compiled code; instances already made keep
	// running.
	Close(ctx context.Context) error
}

// Instance is one running copy of a kernel with its state. It is driven by
// one goroutine at a time; it is not safe for concurrent use.
type Instance interface {
	// Init sets up a fresh state, for code that starts without one.
	Init(ctx context.Context) error
	// Process runs msgs in order and passes each output to emit, which must
	// copy what it keeps. A message that fails is reported in
	// Result.Failures and processing goes on; a non-nil error means it
	// stopped early (Result.Processed tells where), after which Err tells
	// whether the instance died.
	Process(ctx context.Context, msgs [][]byte, emit func(out []byte)) (Result, error)
	// StateLayout is the layout version of the state.
	StateLayout() uint32
	// StateView returns the state bytes without copying; valid until the
	// next call into the instance. It works on a dead instance.
	StateView() []byte
	// ImportState replaces the state with bytes of layout oldLayout
	// written by code version oldVersion, copying them when the layout is
	// the same and migrating them with the kernel's own code otherwise.
	ImportState(ctx context.Context, oldLayout uint32, oldVersion uint64, state []byte) error
	// Err is nil while the instance can run code, and the reason once it
	// cannot (it died, or was closed).
	Err() error
	// Close releases the instance. Idempotent.
	Close(ctx context.Context) error
}

// StateAdopter is an optional interface of an Instance that can take the
// state of another instance of the same backend over without copying it
// in the pause, for example by mapping its memory copy-on-write.
//
// AdoptState, called on a fresh instance instead of Init or ImportState,
// makes from's state its own, byte for byte, as ImportState with from's
// layout and StateView would; from is left unchanged and remains a valid
// rollback point. It returns false and a nil error when it cannot do so
// (other backend, other layout or length, unsupported system): the caller
// then uses ImportState, which always works. A non-nil error means the
// instance is not usable for the reload. Implementations document what
// from may do afterwards; at least, from must run no code while the
// adopting instance is open, unless that instance is closed first.
type StateAdopter interface {
	AdoptState(ctx context.Context, from Instance) (bool, error)
}

// AdoptPreparer is an optional interface of a StateAdopter that can do
// part of AdoptState's work before the pause, while from still runs.
//
// PrepareAdopt, called on a fresh instance after Instantiate, gets it
// ready for a later AdoptState(ctx, from), for example by mapping from's
// state memory copy-on-write. from may be driven by another goroutine
// during and after the call, its state may go on changing, and it may
// even be closed: PrepareAdopt reads only what does not change while
// from is open, and AdoptState in the pause still brings the state up
// to date with from's. It returns true when something was prepared, and
// false and a nil error when there is nothing to prepare or it cannot
// be done (AdoptState then does all the work, or refuses). A non-nil
// error means the instance is not usable for the reload.
//
// Misuse: the instance must run no code (Init, Process) between
// PrepareAdopt and AdoptState; its state is unspecified until AdoptState
// or ImportState sets it. AdoptState with another source, ImportState
// and Close all remain correct and let the preparation go.
type AdoptPreparer interface {
	PrepareAdopt(ctx context.Context, from Instance) (bool, error)
}

// Result tells what became of the messages given to Process.
type Result struct {
	// Processed is how many messages, from the first, were handled,
	// successfully or not.
	Processed int
	// Failures are the handled messages that failed, by increasing Index.
	Failures []Failure
	// Outputs is the number of outputs passed to emit.
	Outputs int
}

// Failure is one message that did not complete.
type Failure struct {
	Index int   // index in the slice given to Process
	Err   error // why
}
