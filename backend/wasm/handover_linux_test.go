//go:build linux

package wasm

// remapped tells whether in's state pages map another instance's memfd.
func remapped(in *Instance) bool { return in.hm.lm != nil && in.hm.base != in.hm.lm.own }
