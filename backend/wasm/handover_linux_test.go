//go:build linux

package wasm

// remapped tells whether in's state pages map another instance's memfd.
func remapped(in *Instance) bool { return in.hm.lm != nil && in.hm.base != in.hm.lm.own }

// baseRefs is the reference count of the file under in's state pages.
func baseRefs(in *Instance) int32 { return in.hm.base.refs.Load() }

// prepared tells whether in holds a PrepareAdopt mapping.
func prepared(in *Instance) bool { return in.hm.prepared }
