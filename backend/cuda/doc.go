// Package cuda runs hotkernel kernels written in PTX or CUBIN on an
// NVIDIA GPU. It loads the CUDA driver (libcuda.so.1) at run time with
// purego: no cgo and no CUDA headers, so every hotkernel binary builds
// everywhere, and New says "no CUDA driver" or "no CUDA device" where
// there is none.
//
// A kernel follows the CUDA kernel ABI (docs/cuda.md): globals hk_abi,
// hk_state_len, hk_state_layout, hk_max_output and hk_block, and entries
// hk_process, optionally hk_init and hk_migrate.
//
// The pieces:
//
//   - [New] opens a device; [NewOffline] compiles and checks for an
//     architecture without one (ptxas), which is how the compile path is
//     tested on machines without a GPU.
//   - [Backend.Compile] validates the source, compiles PTX with the
//     driver's JIT (cuModuleLoadDataEx, its error log turned into errors
//     with PTX line numbers) or with ptxas, checks a CUBIN's SM
//     architecture against the device, and reads the ABI globals: all
//     while the old code keeps serving.
//   - An [Instance] holds its state in device memory. Each batch is one
//     launch of hk_process: messages are copied to a device inbox, the
//     kernel writes a status and an output per message, the results are
//     copied back, all on one stream, and the swap to new code happens
//     between two launches.
//   - Reloads keep the state in place: the new instance joins the old
//     one's context before the pause ([Instance.PrepareAdopt]) and takes
//     the state buffer over in the pause ([Instance.AdoptState]) without
//     copying it; a device-to-host copy of the state, ordered on the
//     stream before the new code's first launch, is the checkpoint for
//     rollback and durability.
//   - A fault that poisons the context (an illegal address: a sticky
//     CUDA error) kills the instance. The context is destroyed and made
//     again, and the instances that hold a checkpoint — the previous
//     version during a health window — load their module again and
//     restore their state from it.
//
// Each kernel (lineage of instances) has a context of its own, so that a
// faulting kernel does not take the others down; contexts time-share the
// GPU.
//
// Concurrency: a Backend and its Programs are safe for concurrent use; an
// Instance is driven by one goroutine at a time. The package starts no
// goroutines.
package cuda
