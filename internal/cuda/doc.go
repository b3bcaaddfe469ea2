// Package cuda is a binding to the NVIDIA CUDA driver API (libcuda),
// loaded at run time: it needs neither cgo nor the CUDA toolkit to build,
// and a program using it runs on machines without a GPU, where Load
// reports ErrNoDriver or ErrNoDevice.
//
// It covers what a kernel host needs: devices and their properties,
// contexts, device and page-locked host memory, modules loaded from PTX
// (compiled by the driver, with its logs), CUBIN or fatbin, kernels and global
// variables, streams with asynchronous copies, memsets and launches, and
// events.
//
// # Loading
//
// Load opens the driver library with the dynamic loader (dlopen through
// github.com/ebitengine/purego), binds the functions it uses by their
// versioned names (cuCtxCreate_v2, cuMemAlloc_v2 and so on) and calls
// cuInit. It looks for DefaultLibrary, libcuda.so.1, in the loader's
// usual directories unless given a path or the environment variable
// HOTKERNEL_LIBCUDA (EnvVar) names one; that is also how tests point it
// at a stand-in library. The binding is built for linux/amd64 and
// linux/arm64; elsewhere the package compiles and Load returns an error
// wrapping ErrNoDriver.
//
// # Threads
//
// The driver keeps a current context per OS thread, while Go moves
// goroutines between threads. Every method of a Context and of the
// objects in it therefore binds the context to the calling OS thread for
// the duration of the call only: it locks the goroutine to its thread,
// makes the context current (cuCtxSetCurrent), makes its driver calls,
// makes no context current again and unlocks. Methods are safe for
// concurrent use from any goroutine, and no thread is left with a
// context current between calls, NewContext's creating thread included.
// Destroying a context (or a module, stream or event) waits for the calls
// in progress on it, blocking waits included (see Context); later calls
// return an error wrapping ErrDestroyed.
//
// # Errors
//
// A failed driver call returns an *Error holding the driver function, the
// CUresult and the driver's name and description of it. Some errors of
// kernels are sticky (Error.Sticky, IsSticky): an illegal address, an
// illegal instruction, a misaligned address, a launch timeout and the
// like leave the context unusable, every later call in it returning the
// same error, until the context is destroyed. A host recovers by
// destroying the context and creating a new one, loading its modules
// again; see Result.Sticky for the list of codes and the caveat of the
// CUDA documentation about them.
package cuda
