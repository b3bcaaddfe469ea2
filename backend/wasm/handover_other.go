//go:build !linux

package wasm

import "context"

// handover is empty where linear memory is wazero's own: state is copied.
type handover struct{}

func (h *handover) prepare(ctx context.Context, _ *Config) context.Context { return ctx }
func (h *handover) bind(uint32, uint32)                                    {}
func (h *handover) release(uint32, uint32)                                 {}

// remapState is not possible without memfd-backed memory.
func (in *Instance) remapState(context.Context, *Instance) (bool, error) { return false, nil }

// prepareState has nothing to map without memfd-backed memory.
func (in *Instance) prepareState(*Instance) (bool, error) { return false, nil }

// unprepare has nothing to undo without memfd-backed memory.
func (in *Instance) unprepare() error { return nil }
