package wasm

import (
	"context"
	"fmt"

	"github.com/hotkernel/hotkernel/backend"
)

var (
	_ backend.StateAdopter  = (*Instance)(nil)
	_ backend.AdoptPreparer = (*Instance)(nil)
)

// adoptCopyBelow is the state size under which AdoptState copies: a
// copy of a few pages is cheaper than remapping them.
const adoptCopyBelow = 64 << 10

// AdoptState makes from's state the instance's state, as ImportState of
// from.StateView() with the same layout would, but on Linux without
// copying it: the instance's state pages become a copy-on-write mapping
// of the memfd that holds from's state. Call it on a fresh instance
// instead of Init or ImportState, typically in a reload's pause with
// from stopped. It copies only the pages from wrote privately since it
// adopted state itself (usually few), plus a last partial page of state;
// states under 64 KiB are simply copied.
//
// When PrepareAdopt(from) ran before, the mapping is already in place
// and AdoptState only writes from's private pages back into the file and
// copies the partial last page: no remapping happens in the pause.
//
// It returns true when the state was taken over. It returns false, nil
// when it cannot be done this way and the caller should use ImportState:
// from is not an *Instance or is the instance itself, the layouts or
// state lengths differ, one memory is not memfd-backed (on other systems
// than Linux no memory is, and only small states are taken over), or
// from's state pages are still the base of another open instance (from's
// own source, say, when it is still open). It returns an error, and
// false, when the instance is dead or closed (its Err), when from is
// closed, and when the remapping failed and the instance's memory could
// not be put back; the instance is closed then.
//
// After true, from's state pages are the unchanging base of the
// instance's state, which is how from stays an exact rollback point: the
// instance's writes never reach from, and as long as from runs no code
// (Init, Process, ImportState, AdoptState into it) and its StateView is
// not written, neither does the instance see any change. Misuse: running
// code in from while the instance is open may change the instance's
// state under it (before AdoptState that is what PrepareAdopt allows,
// after it never); close the instance first (a rollback does), and from
// is free again. from may be closed at any time; the instance keeps the
// pages. Neither instance may be in use by another goroutine during the
// call.
func (in *Instance) AdoptState(ctx context.Context, from backend.Instance) (bool, error) {
	src, ok := from.(*Instance)
	if !ok || src == in {
		return false, in.unprepare()
	}
	if err := in.Err(); err != nil {
		return false, err
	}
	if src.closed {
		return false, fmt.Errorf("wasm: adopt state: source instance: %w", ErrClosed)
	}
	if src.layout != in.layout || src.stateLen != in.stateLen {
		return false, in.unprepare()
	}
	if in.stateLen < adoptCopyBelow {
		copy(in.StateView(), src.StateView())
		return true, nil
	}
	return in.remapState(ctx, src)
}

// PrepareAdopt does the slow part of a later AdoptState(ctx, from)
// before the pause, while from may still be running on another
// goroutine: on Linux it maps the memfd that holds from's state pages
// copy-on-write over the instance's state pages. As long as the instance
// runs no code, its pages show the file as it is, so that the writes
// from makes until the pause are either in that file already (from's
// state pages map its own memfd) or written into it by AdoptState, which
// then has no mapping to make. Call it on a fresh instance right after
// Instantiate, never on one that has run code or taken state.
//
// It returns true when the mapping is in place. It returns false, nil
// when there is nothing to prepare: from is not an *Instance or is the
// instance itself, the layouts or state lengths differ, the state is
// small enough to be copied (under 64 KiB), a memory is not
// memfd-backed (always so on other systems than Linux), the instance
// took state or was prepared already, from is closed, or the mapping
// was refused. It
// returns an error when the instance is dead or closed, and when the
// mapping failed and the instance's own memory could not be put back
// (the instance is closed then).
//
// PrepareAdopt reads only what stays fixed while from is open (its
// layout, state range and the file under its state pages) and holds a
// reference to that file, so from may run, die or be closed meanwhile.
// The instance must be used by one goroutine only. While prepared, the
// instance counts as depending on from's file: another instance's
// AdoptState that would have to write into that file is refused. The
// preparation is let go by AdoptState from another source or refused,
// by ImportState, by Init, and by Close. Misuse: Process between
// PrepareAdopt and AdoptState sees an unspecified state.
func (in *Instance) PrepareAdopt(_ context.Context, from backend.Instance) (bool, error) {
	if err := in.Err(); err != nil {
		return false, err
	}
	src, ok := from.(*Instance)
	if !ok || src == in || src.layout != in.layout || src.stateLen != in.stateLen || in.stateLen < adoptCopyBelow {
		return false, nil
	}
	return in.prepareState(src)
}
