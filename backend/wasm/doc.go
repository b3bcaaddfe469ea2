// Package wasm runs hotkernel kernels as WebAssembly modules on the CPU,
// with wazero (pure Go, no cgo). It provides the instance-level operations
// a reload manager needs; it does not queue messages or decide reloads.
//
// A kernel follows the kernel ABI, version 1 (docs/kernel-abi.md): it
// exports hk_process and friends, receives batches of framed messages in
// an inbox it owns, writes framed outputs to an outbox (calling hk.flush
// when it is full), and keeps its whole persistent state in one
// 65536-aligned byte range of its linear memory, tagged with a layout
// version.
//
// The pieces:
//
//   - [Runtime] (NewRuntime, Config) holds the wazero runtime, the host
//     module "hk" and WASI preview 1.
//   - [Runtime.Compile] checks and compiles a code.Source into a [Module]:
//     the slow step, which a manager runs while the old code serves.
//   - [Module.Instantiate] creates an [Instance]: fast, independent of
//     other instances.
//   - [Instance.Init] starts with a fresh state; [Instance.ImportState]
//     instead carries state over from another instance, copying it when
//     the layouts match and calling the kernel's hk_migrate otherwise.
//   - [Instance.AdoptState] takes the state of an instance with the same
//     layout over without copying it in the pause: on Linux every linear
//     memory is a memfd, and the state pages are remapped copy-on-write,
//     leaving the old instance untouched as the rollback point.
//   - [Instance.Process] runs messages and delivers outputs, reporting
//     each failed message (kernel error code or trap) and going on.
//   - [Instance.StateView] and [Instance.ExportState] read the state out.
//
// A reload, as a manager drives it: Compile and Instantiate the new code
// while the old instance serves; at a batch boundary take
// old.ExportState(), call new.ImportState with the old layout and code
// version, and send the next batch to the new instance; keep the old one
// idle as the fallback until the new code has proven itself.
//
// Failure model: a kernel error code or a trap fails one message and the
// instance goes on (memory writes before the failure stay). A call that
// runs past its deadline is interrupted and its instance is dead
// (ErrInstanceDead): its state can still be read and carried into a new
// instance. Every error is typed — *ABIError, *KernelError, *TrapError,
// *DeadError — and says what failed and where.
//
// Concurrency: a Runtime and its Modules are safe for concurrent use; an
// Instance is driven by one goroutine at a time. The package starts no
// goroutines of its own; wazero runs one watcher per call into a kernel
// while the call lasts, which is what lets deadlines interrupt it.
package wasm
