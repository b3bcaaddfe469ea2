//go:build !unix

package cuda

func allocHostMemory(n int) ([]byte, error) { return make([]byte, n), nil }

func freeHostMemory([]byte) {}
