// Package hotkernel replaces the code of long-running compute kernels
// while they run, with no lost message and no lost state.
//
// A [Manager] runs kernels on a backend (backend/wasm runs WebAssembly
// kernels on the CPU with wazero). Each registered [Kernel] has a bounded
// input queue, filled by any number of goroutines with [Kernel.Send], and
// one runner goroutine that feeds the queue to the kernel in batches.
//
//	rt, _ := wasm.NewRuntime(ctx, wasm.DefaultConfig())
//	m, _ := hotkernel.New(hotkernel.DefaultConfig(), rt.Backend())
//	k, _ := m.Register(ctx, "counter", code.FromWASM(v1, "hk_process"), hotkernel.RegisterOptions{Output: deliver})
//	k.Send(ctx, msg)
//	res, err := m.Reload(ctx, "counter", code.FromWASM(v2, "hk_process"))
//
// A reload ([Manager.RequestReload], then [Manager.ExecuteReload])
// validates and compiles the new code and starts its instance while the
// old code keeps serving; drains the queue up to a cut-off, so that every
// message before it is handled by the old code and every later one by the
// new code; then, in a pause that holds only checkpoint, swap and
// restore, hands the state to the new code (copied, or migrated by the new
// code when its layout differs) and resumes. The new code is on probation
// for a health window; if it fails, or any phase fails, the old instance
// comes back with its state exactly as at the cut-off and handles the
// messages the new code failed on. docs/reload-protocol.md states the
// guarantees.
package hotkernel
