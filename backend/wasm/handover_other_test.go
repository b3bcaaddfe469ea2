//go:build !linux

package wasm

func remapped(*Instance) bool { return false }

func baseRefs(*Instance) int32 { return 0 }

func prepared(*Instance) bool { return false }
