//go:build linux

package wasm

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// remapState is AdoptState's zero-copy path (see AdoptState and
// handover): it brings the file under src's state pages up to date with
// src's private writes, then maps that file's range copy-on-write over
// the instance's state pages, and copies the partial last page.
func (in *Instance) remapState(_ context.Context, src *Instance) (bool, error) {
	dst, from := &in.hm, &src.hm
	if dst.lm == nil || from.lm == nil || in.statePtr%uint32(pageSize) != 0 || src.statePtr%uint32(pageSize) != 0 {
		return false, nil
	}
	base := from.base
	// The base is written below: nobody but src (and the instance, whose
	// mapping is replaced) may depend on it.
	limit := int32(1)
	if dst.base == base {
		limit = 2
	}
	if base.refs.Load() > limit {
		return false, nil
	}
	n := statePages(in.stateLen)
	if from.base != from.lm.own {
		if err := from.syncBase(src.statePtr, n); err != nil {
			return false, fmt.Errorf("wasm: adopt state: %w", err)
		}
	}
	addr := unsafe.Add(dst.lm.addr, in.statePtr)
	const prot = unix.PROT_READ | unix.PROT_WRITE
	if _, err := unix.MmapPtr(base.fd, from.baseOff, addr, uintptr(n), prot, unix.MAP_PRIVATE|unix.MAP_FIXED); err != nil {
		// Put the instance's own mapping back and let the caller copy.
		flags := unix.MAP_SHARED
		if dst.base != dst.lm.own {
			flags = unix.MAP_PRIVATE
		}
		if _, rerr := unix.MmapPtr(dst.base.fd, dst.baseOff, addr, uintptr(n), prot, flags|unix.MAP_FIXED); rerr != nil {
			_ = in.Close(context.Background())
			return false, fmt.Errorf("wasm: adopt state: map %d bytes: %w; restoring the instance's memory: %w (instance closed)", n, err, rerr)
		}
		return false, nil
	}
	base.ref()
	if dst.base != dst.lm.own {
		dst.base.unref()
	}
	dst.base, dst.baseOff = base, from.baseOff
	if tail := in.stateLen - uint32(n); tail > 0 {
		copy(dst.lm.mem[in.statePtr+uint32(n):][:tail], from.lm.mem[src.statePtr+uint32(n):][:tail])
	}
	return true, nil
}

// Bits of a /proc/self/pagemap entry.
const (
	pmPresent = 1 << 63
	pmSwapped = 1 << 62
	pmFile    = 1 << 61 // file page or shared anonymous
)

// The PAGEMAP_SCAN ioctl of /proc/self/pagemap (Linux 6.7): its argument,
// the regions it fills, and the page categories used here.
const (
	pagemapScan   = 0xC0606610 // _IOWR('f', 16, struct pm_scan_arg)
	pageIsFile    = 1 << 2
	pageIsPresent = 1 << 3
	pageIsSwapped = 1 << 4
)

type pmScanArg struct {
	size, flags, start, end, walkEnd, vec, vecLen, maxPages       uint64
	categoryInverted, categoryMask, categoryAnyofMask, returnMask uint64
}

type pageRegion struct{ start, end, categories uint64 }

var pagemap struct {
	once   sync.Once
	fd     int
	err    error
	noScan atomic.Bool // PAGEMAP_SCAN is not supported
}

// pagemapFD returns a descriptor of /proc/self/pagemap, opened once and
// kept for the life of the process.
func pagemapFD() (int, error) {
	pagemap.once.Do(func() {
		pagemap.fd, pagemap.err = unix.Open("/proc/self/pagemap", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	})
	return pagemap.fd, pagemap.err
}

// syncBase writes into the base file the state pages that the instance
// wrote privately, so that the file holds the instance's state: the
// state pages [statePtr, +n) map the base copy-on-write, and a page that
// has no private copy shows the file already. A page counts as written
// when it is present and not a file page, or swapped out. The pages are
// found with PAGEMAP_SCAN, which skips unpopulated page tables at once,
// or else by reading pagemap entries; without pagemap every page is
// written.
func (h *handover) syncBase(statePtr uint32, n int) error {
	view := h.lm.mem[statePtr:][:n]
	write := func(off, end int) error {
		for off < end {
			w, err := unix.Pwrite(h.base.fd, view[off:end], h.baseOff+int64(off))
			if err != nil {
				return fmt.Errorf("write state pages to the base file: %w", err)
			}
			off += w
		}
		return nil
	}
	pm, err := pagemapFD()
	if err != nil {
		return write(0, n)
	}
	start := uintptr(unsafe.Pointer(&view[0]))
	if !pagemap.noScan.Load() {
		err := scanWritten(pm, start, uintptr(n), func(from, to uintptr) error {
			return write(int(from-start), int(to-start))
		})
		if err != unix.ENOTTY && err != unix.EINVAL {
			return err
		}
		pagemap.noScan.Store(true)
	}
	return readWritten(pm, start, n, write)
}

// scanWritten calls fn for each run [from, to) of written pages in
// [start, start+n), found with PAGEMAP_SCAN.
func scanWritten(pm int, start, n uintptr, fn func(from, to uintptr) error) error {
	var vec [64]pageRegion
	for end := start + n; start < end; {
		arg := pmScanArg{
			size: uint64(unsafe.Sizeof(pmScanArg{})), start: uint64(start), end: uint64(end),
			vec: uint64(uintptr(unsafe.Pointer(&vec[0]))), vecLen: uint64(len(vec)),
			categoryInverted: pageIsFile, categoryMask: pageIsFile,
			categoryAnyofMask: pageIsPresent | pageIsSwapped,
			returnMask:        pageIsFile | pageIsPresent | pageIsSwapped,
		}
		got, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(pm), pagemapScan, uintptr(unsafe.Pointer(&arg)))
		runtime.KeepAlive(&vec)
		if errno != 0 {
			return errno
		}
		for _, r := range vec[:got] {
			if err := fn(uintptr(r.start), uintptr(r.end)); err != nil {
				return err
			}
		}
		if arg.walkEnd <= uint64(start) {
			return unix.EINVAL
		}
		start = uintptr(arg.walkEnd)
	}
	return nil
}

// readWritten calls write for each run of written pages among the n
// bytes at start, found by reading pagemap entries.
func readWritten(pm int, start uintptr, n int, write func(off, end int) error) error {
	var entries [512]uint64
	buf := unsafe.Slice((*byte)(unsafe.Pointer(&entries[0])), len(entries)*8)
	first := start / uintptr(pageSize)
	pages := n / pageSize
	run := -1 // first page of the current run of written pages
	for p := 0; p < pages; {
		k := min(pages-p, len(entries))
		got, err := unix.Pread(pm, buf[:k*8], int64(first+uintptr(p))*8)
		if err != nil || got != k*8 {
			return write(0, n)
		}
		for i, e := range entries[:k] {
			written := e&pmPresent != 0 && e&pmFile == 0 || e&pmSwapped != 0
			switch {
			case written && run < 0:
				run = p + i
			case !written && run >= 0:
				if err := write(run*pageSize, (p+i)*pageSize); err != nil {
					return err
				}
				run = -1
			}
		}
		p += k
	}
	if run >= 0 {
		return write(run*pageSize, n)
	}
	return nil
}
