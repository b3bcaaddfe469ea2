//go:build !linux || android || !(amd64 || arm64)

package cuda

import (
	"fmt"
	"runtime"
)

// openLibrary always fails here: the binding is built for the platforms
// NVIDIA ships a Linux driver library for, linux/amd64 and linux/arm64
// (Android excluded).
func openLibrary(path string, _ bool) (*api, error) {
	return nil, fmt.Errorf("%w: cannot load %s: the CUDA driver binding is not available on %s/%s",
		ErrNoDriver, path, runtime.GOOS, runtime.GOARCH)
}
