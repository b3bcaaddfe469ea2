package checkpoint

import (
	"context"
	"time"
)

// Store keeps encoded checkpoints per kernel, each under a sequence number
// that the store assigns.
//
// Sequence numbers start at 1 and increase strictly with every Save of a
// kernel; they are never reused, though a failed Save may leave a gap. The
// implementations in this package are safe for concurrent use by multiple
// goroutines, and check their context before each blocking step.
//
// Every method that takes a kernel ID returns an error wrapping ErrInvalid
// when the ID breaks the rules of Checkpoint.KernelID; no checkpoint can
// exist under such an ID.
type Store interface {
	// Save encodes and stores c and returns its Ref. c must pass Validate;
	// Save does not modify or retain c. When the store has a retention
	// limit (Options.Keep), Save then prunes the kernel's older
	// checkpoints; if only that pruning fails, Save returns the valid Ref
	// together with the error, so a Ref with a non-zero Seq always means
	// that c was stored.
	Save(ctx context.Context, c *Checkpoint) (Ref, error)

	// Load returns the checkpoint that ref.KernelID and ref.Seq identify;
	// the other fields of ref are ignored. The result is the caller's own
	// copy. It fails with a *RefError that wraps ErrNotFound when there is
	// no such checkpoint, or the decoding error (ErrChecksum, ErrTruncated,
	// ...) when the stored bytes are damaged.
	Load(ctx context.Context, ref Ref) (*Checkpoint, error)

	// Latest returns the newest checkpoint of the kernel that decodes, and
	// its Ref. It fails with an error wrapping ErrNotFound when the kernel
	// has no checkpoints.
	//
	// Damaged checkpoints newer than the one returned are skipped, not
	// hidden: Latest then returns the good checkpoint together with a
	// DamagedError that lists them, newest first, so that the caller can
	// log it and go on with the checkpoint. When every checkpoint of the
	// kernel is damaged, Latest returns a nil checkpoint and the
	// DamagedError. Callers should therefore test the checkpoint for nil
	// before the error.
	Latest(ctx context.Context, kernelID string) (*Checkpoint, Ref, error)

	// List returns the Refs of the kernel's checkpoints, oldest (lowest
	// Seq) first. It reads each checkpoint's header and verifies the
	// header checksum and the stored length, but not the rest. Checkpoints
	// that fail those checks are left out of the result and reported in a
	// DamagedError returned with it. A kernel without checkpoints gives an
	// empty list and no error.
	List(ctx context.Context, kernelID string) ([]Ref, error)

	// Prune removes the kernel's checkpoints except the newest keep (by
	// Seq), damaged ones included, and returns how many it removed. keep
	// may be 0, which removes them all; sequence numbers still continue
	// from where they were. A negative keep is an error wrapping
	// ErrInvalid.
	Prune(ctx context.Context, kernelID string, keep int) (removed int, err error)

	// Kernels returns the IDs of the kernels that have at least one
	// stored checkpoint, in increasing byte order.
	Kernels(ctx context.Context) ([]string, error)
}

// Ref identifies a stored checkpoint and describes it without its state.
type Ref struct {
	// KernelID and Seq identify the checkpoint within its store.
	KernelID string
	Seq      uint64
	// CodeVersion and Created repeat the checkpoint's fields; Created is
	// in UTC.
	CodeVersion uint64
	Created     time.Time
	// Size is the encoded size in bytes.
	Size int64
}

// Options configure a store. The zero value keeps every checkpoint.
type Options struct {
	// Keep, when positive, makes Save prune the kernel's checkpoints to
	// the newest Keep after each successful save, as Prune does. Zero or
	// negative disables automatic pruning.
	Keep int
}

// refFromHeader describes a stored checkpoint from its header.
func refFromHeader(h header, seq uint64, size int64) Ref {
	return Ref{
		KernelID:    h.kernelID,
		Seq:         seq,
		CodeVersion: h.codeVersion,
		Created:     time.Unix(0, h.created).UTC(),
		Size:        size,
	}
}

// refOf describes a checkpoint that was just encoded or decoded.
func refOf(c *Checkpoint, seq uint64, size int64) Ref {
	return Ref{
		KernelID:    c.KernelID,
		Seq:         seq,
		CodeVersion: c.CodeVersion,
		Created:     time.Unix(0, c.Created.UnixNano()).UTC(),
		Size:        size,
	}
}

// checkHeader verifies the header of a stored checkpoint of size bytes
// whose first bytes are b, and that it belongs where the store found it:
// to kernel id, with code version version.
func checkHeader(b []byte, size int64, id string, version uint64) (header, error) {
	h, err := parseHeader(b)
	if err != nil {
		return h, err
	}
	if err := checkLength(h, size); err != nil {
		return h, err
	}
	return h, checkPlace(h.kernelID, h.codeVersion, id, version)
}

// checkPlace reports a checkpoint of kernel gotID and code version
// gotVersion that was found where kernel id, version version belongs.
func checkPlace(gotID string, gotVersion uint64, id string, version uint64) error {
	if gotID != id {
		return corruptf(offID, "checkpoint of kernel %q stored under kernel %q", clip(gotID), clip(id))
	}
	if gotVersion != version {
		return corruptf(offID+len(gotID), "checkpoint of code version %d stored as version %d", gotVersion, version)
	}
	return nil
}
