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
// the instance's state pages, unless PrepareAdopt did so already, and
// copies the partial last page.
func (in *Instance) remapState(_ context.Context, src *Instance) (bool, error) {
	dst, from := &in.hm, &src.hm
	if dst.lm == nil || from.lm == nil || in.statePtr%uint32(pageSize) != 0 || src.statePtr%uint32(pageSize) != 0 {
		return false, in.unprepare()
	}
	base := from.base
	// The base is written below: nobody but src (and the instance, whose
	// mapping is replaced) may depend on it.
	limit := int32(1)
	if dst.base == base {
		limit = 2
	}
	if base.refs.Load() > limit {
		return false, in.unprepare()
	}
	n := statePages(in.stateLen)
	if from.base != from.lm.own {
		if err := from.syncBase(src.statePtr, n); err != nil {
			return false, fmt.Errorf("wasm: adopt state: %w", err)
		}
	}
	if !dst.prepared || dst.base != base || dst.baseOff != from.baseOff {
		if ok, err := in.mapBase(base, from.baseOff, false); !ok {
			return false, err
		}
	} else {
		dst.setBase(base.ref(), from.baseOff, false)
	}
	if tail := in.stateLen - uint32(n); tail > 0 {
		copy(dst.lm.mem[in.statePtr+uint32(n):][:tail], from.lm.mem[src.statePtr+uint32(n):][:tail])
	}
	return true, nil
}

// prepareState is PrepareAdopt's Linux part: it maps the file under
// src's state pages, at the same offset, copy-on-write over the
// instance's state pages. src may be in use by another goroutine: its
// base and offset are read under its lock, and the file is referenced
// before the lock is let go, so that src's Close cannot close it.
func (in *Instance) prepareState(src *Instance) (bool, error) {
	dst := &in.hm
	if dst.lm == nil || dst.base != dst.lm.own || in.statePtr%uint32(pageSize) != 0 || src.statePtr%uint32(pageSize) != 0 {
		return false, nil // no memfd, or state taken over already
	}
	from := &src.hm
	from.mu.Lock()
	if from.lm == nil {
		from.mu.Unlock()
		return false, nil // src closed, or no memfd
	}
	base, off := from.base.ref(), from.baseOff
	from.mu.Unlock()
	ok, err := in.mapBase(base, off, true)
	base.unref() // mapBase took the instance's own reference
	return ok, err
}

// mapBase maps base at off copy-on-write over the instance's state
// pages and makes it the instance's base, letting the previous one go;
// prepared tells whether that is PrepareAdopt's mapping.
// When the mapping fails it puts the instance's own memory back and
// returns false and a nil error, or closes the instance and returns an
// error when even that fails.
func (in *Instance) mapBase(base *memFile, off int64, prepared bool) (bool, error) {
	h := &in.hm
	n := statePages(in.stateLen)
	addr := unsafe.Add(h.lm.addr, in.statePtr)
	const prot = unix.PROT_READ | unix.PROT_WRITE
	if _, err := unix.MmapPtr(base.fd, off, addr, uintptr(n), prot, unix.MAP_PRIVATE|unix.MAP_FIXED); err != nil {
		// Put the instance's own mapping back and let the caller copy.
		if rerr := in.unprepareMapping(); rerr != nil {
			return false, fmt.Errorf("wasm: adopt state: map %d bytes: %w; %w", n, err, rerr)
		}
		return false, nil
	}
	h.setBase(base.ref(), off, prepared)
	return true, nil
}

// unprepare undoes PrepareAdopt, when it was done: the state pages map
// the instance's own memfd again, shared, and the base file taken is let
// go. It returns an error, and closes the instance, when the own mapping
// cannot be put back.
func (in *Instance) unprepare() error {
	if !in.hm.prepared {
		return nil
	}
	return in.unprepareMapping()
}

// unprepareMapping maps the instance's base back over its state pages
// after a failed mapping: its own memfd, shared, when it had taken no
// state or only prepared to, the file of the state it adopted, privately,
// otherwise.
func (in *Instance) unprepareMapping() error {
	h := &in.hm
	n := statePages(in.stateLen)
	addr := unsafe.Add(h.lm.addr, in.statePtr)
	const prot = unix.PROT_READ | unix.PROT_WRITE
	flags := unix.MAP_SHARED
	fd, off := h.lm.own.fd, int64(in.statePtr)
	if !h.prepared && h.base != h.lm.own {
		// State adopted before: keep that base.
		flags, fd, off = unix.MAP_PRIVATE, h.base.fd, h.baseOff
	}
	if _, err := unix.MmapPtr(fd, off, addr, uintptr(n), prot, flags|unix.MAP_FIXED); err != nil {
		_ = in.Close(context.Background())
		return fmt.Errorf("wasm: restoring the instance's memory (%d bytes): %w (instance closed)", n, err)
	}
	if h.prepared {
		h.setBase(h.lm.own, int64(in.statePtr), false)
	}
	return nil
}

// setBase makes f at off the base of the state pages and lets the
// previous base go unless it is the instance's own memfd. f carries a
// reference taken for the instance unless it is the own memfd. The
// fields change under the lock, for prepareState reading them from
// another goroutine.
func (h *handover) setBase(f *memFile, off int64, prepared bool) {
	h.mu.Lock()
	old := h.base
	h.base, h.baseOff, h.prepared = f, off, prepared
	h.mu.Unlock()
	if old != h.lm.own {
		old.unref()
	}
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
