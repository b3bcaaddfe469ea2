package checkpoint

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sort"
	"sync"
)

// MemStore is a Store in memory, for tests and for processes that need
// rollback but not durability. It keeps each checkpoint encoded, exactly
// as a FileStore would write it, so Load and Latest decode a fresh,
// independent copy every time and report damage the same way.
//
// A MemStore is safe for concurrent use. Its contents and sequence
// numbers last as long as the MemStore.
type MemStore struct {
	keep    int
	mu      sync.Mutex
	kernels map[string]*memKernel
}

type memKernel struct {
	last    uint64     // highest sequence number assigned
	entries []memEntry // increasing Seq
}

type memEntry struct {
	ref  Ref
	data []byte // encoded checkpoint; never modified once stored
}

var _ Store = (*MemStore)(nil)

// NewMemStore returns an empty MemStore.
func NewMemStore(opts Options) *MemStore {
	return &MemStore{keep: max(opts.Keep, 0), kernels: make(map[string]*memKernel)}
}

// Save implements Store.Save. It fails only when c is invalid (ErrInvalid),
// when ctx is done, or when the kernel has used up every sequence number.
func (s *MemStore) Save(ctx context.Context, c *Checkpoint) (Ref, error) {
	if err := ctx.Err(); err != nil {
		return Ref{}, err
	}
	b, err := c.MarshalBinary()
	if err != nil {
		return Ref{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.kernels[c.KernelID]
	if k == nil {
		k = &memKernel{}
		s.kernels[c.KernelID] = k
	}
	if k.last == math.MaxUint64 {
		return Ref{}, fmt.Errorf("checkpoint: kernel %q: sequence numbers exhausted", clip(c.KernelID))
	}
	k.last++
	ref := refOf(c, k.last, int64(len(b)))
	k.entries = append(k.entries, memEntry{ref: ref, data: b})
	if s.keep > 0 {
		k.prune(s.keep)
	}
	return ref, nil
}

// Load implements Store.Load. Every call decodes a fresh copy.
func (s *MemStore) Load(ctx context.Context, ref Ref) (*Checkpoint, error) {
	if err := CheckKernelID(ref.KernelID); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	e, ok := s.find(ref.KernelID, ref.Seq)
	if !ok {
		return nil, &RefError{Ref: Ref{KernelID: ref.KernelID, Seq: ref.Seq}, Err: ErrNotFound}
	}
	c, err := e.decode()
	if err != nil {
		return nil, &RefError{Ref: e.damagedRef(), Err: err}
	}
	return c, nil
}

// Latest implements Store.Latest. It decodes the kernel's checkpoints from
// the newest down until one decodes.
func (s *MemStore) Latest(ctx context.Context, kernelID string) (*Checkpoint, Ref, error) {
	if err := CheckKernelID(kernelID); err != nil {
		return nil, Ref{}, err
	}
	if err := ctx.Err(); err != nil {
		return nil, Ref{}, err
	}
	entries := s.snapshot(kernelID)
	if len(entries) == 0 {
		return nil, Ref{}, fmt.Errorf("kernel %q: %w", clip(kernelID), ErrNotFound)
	}
	var damaged DamagedError
	for _, e := range slices.Backward(entries) {
		if err := ctx.Err(); err != nil {
			return nil, Ref{}, err
		}
		c, err := e.decode()
		if err != nil {
			damaged = append(damaged, &RefError{Ref: e.damagedRef(), Err: err})
			continue
		}
		return c, e.ref, damaged.orNil()
	}
	return nil, Ref{}, damaged
}

// List implements Store.List. It checks each checkpoint's header as a
// FileStore does, so both report the same damage.
func (s *MemStore) List(ctx context.Context, kernelID string) ([]Ref, error) {
	if err := CheckKernelID(kernelID); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	entries := s.snapshot(kernelID)
	refs := make([]Ref, 0, len(entries))
	var damaged DamagedError
	for _, e := range entries {
		h, err := checkHeader(e.data, int64(len(e.data)), e.ref.KernelID, e.ref.CodeVersion)
		if err != nil {
			damaged = append(damaged, &RefError{Ref: e.damagedRef(), Err: err})
			continue
		}
		refs = append(refs, refFromHeader(h, e.ref.Seq, int64(len(e.data))))
	}
	return refs, damaged.orNil()
}

// Prune implements Store.Prune. Sequence numbers continue after it even
// when it removes every checkpoint of the kernel.
func (s *MemStore) Prune(ctx context.Context, kernelID string, keep int) (int, error) {
	if err := CheckKernelID(kernelID); err != nil {
		return 0, err
	}
	if keep < 0 {
		return 0, invalidf("negative keep %d", keep)
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.kernels[kernelID]
	if k == nil {
		return 0, nil
	}
	return k.prune(keep), nil
}

// Kernels implements Store.Kernels. A kernel whose checkpoints were all
// pruned is not listed.
func (s *MemStore) Kernels(ctx context.Context) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]string, 0, len(s.kernels))
	for id, k := range s.kernels {
		if len(k.entries) > 0 {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids, nil
}

// prune removes all but the newest keep entries and returns how many it
// removed. The caller holds the store's lock.
func (k *memKernel) prune(keep int) int {
	n := len(k.entries) - keep
	if n <= 0 {
		return 0
	}
	// Copy rather than reslice, so the removed entries can be collected;
	// snapshots taken earlier keep their own view.
	k.entries = slices.Clone(k.entries[n:])
	return n
}

// find returns the entry of kernel id with sequence number seq.
func (s *MemStore) find(id string, seq uint64) (memEntry, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.kernels[id]
	if k == nil {
		return memEntry{}, false
	}
	i := sort.Search(len(k.entries), func(i int) bool { return k.entries[i].ref.Seq >= seq })
	if i == len(k.entries) || k.entries[i].ref.Seq != seq {
		return memEntry{}, false
	}
	return k.entries[i], true
}

// snapshot returns the entries of kernel id at this moment.
func (s *MemStore) snapshot(id string) []memEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.kernels[id]
	if k == nil {
		return nil
	}
	return slices.Clone(k.entries)
}

// decode decodes the entry into a fresh checkpoint and checks that it
// belongs where it is stored.
func (e memEntry) decode() (*Checkpoint, error) {
	c, err := Decode(e.data)
	if err != nil {
		return nil, err
	}
	if err := checkPlace(c.KernelID, c.CodeVersion, e.ref.KernelID, e.ref.CodeVersion); err != nil {
		return nil, err
	}
	return c, nil
}

// damagedRef is what a RefError reports of a damaged entry: what the
// store knows without decoding it.
func (e memEntry) damagedRef() Ref {
	return Ref{KernelID: e.ref.KernelID, Seq: e.ref.Seq, CodeVersion: e.ref.CodeVersion, Size: int64(len(e.data))}
}
