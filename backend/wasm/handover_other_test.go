//go:build !linux

package wasm

func remapped(*Instance) bool { return false }
