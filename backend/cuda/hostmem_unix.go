//go:build unix

package cuda

import "golang.org/x/sys/unix"

// allocHostMemory maps n bytes of anonymous memory, page-aligned, outside
// the Go heap.
func allocHostMemory(n int) ([]byte, error) {
	return unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANON)
}

func freeHostMemory(b []byte) { _ = unix.Munmap(b) }
