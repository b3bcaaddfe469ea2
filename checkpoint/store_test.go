package checkpoint

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// harness is a store under test with the means to damage it.
type harness struct {
	Store
	// damage replaces the stored bytes of the checkpoint ref with f of them.
	damage func(t *testing.T, ref Ref, f func([]byte) []byte)
	// reopen returns a new store on the same storage, or is nil when the
	// storage does not outlive the store.
	reopen func(t *testing.T) Store
}

var stores = map[string]func(t *testing.T, opts Options) *harness{
	"MemStore": func(t *testing.T, opts Options) *harness {
		s := NewMemStore(opts)
		return &harness{Store: s, damage: s.damage}
	},
	"FileStore": func(t *testing.T, opts Options) *harness {
		dir := t.TempDir()
		s, err := OpenFileStore(dir, opts)
		if err != nil {
			t.Fatal(err)
		}
		return &harness{
			Store:  s,
			damage: s.damage,
			reopen: func(t *testing.T) Store {
				s, err := OpenFileStore(dir, opts)
				if err != nil {
					t.Fatal(err)
				}
				return s
			},
		}
	},
}

// damage rewrites a stored checkpoint in place; tests only.
func (s *MemStore) damage(t *testing.T, ref Ref, f func([]byte) []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.kernels[ref.KernelID]
	for i := range k.entries {
		if k.entries[i].ref.Seq == ref.Seq {
			k.entries[i].data = f(bytes.Clone(k.entries[i].data))
			return
		}
	}
	t.Fatalf("no checkpoint %v", ref)
}

// forEachStore runs test against every Store implementation.
func forEachStore(t *testing.T, opts Options, test func(t *testing.T, h *harness)) {
	for name, mk := range stores {
		t.Run(name, func(t *testing.T) { test(t, mk(t, opts)) })
	}
}

// ckpt returns a distinct checkpoint of kernel id.
func ckpt(id string, n int) *Checkpoint {
	return &Checkpoint{
		KernelID:    id,
		CodeVersion: uint64(n % 3),
		Created:     sampleTime.Add(time.Duration(n) * time.Second),
		State:       []byte(fmt.Sprintf("state %d of %s", n, id)),
		Queues:      map[string]uint64{"input.enqueued": uint64(n * 10), "input.processed": uint64(n * 9)},
		Metadata:    map[string]string{"n": fmt.Sprint(n)},
	}
}

func save(t *testing.T, s Store, c *Checkpoint) Ref {
	t.Helper()
	ref, err := s.Save(context.Background(), c)
	if err != nil {
		t.Fatalf("Save: %v", err)
	}
	return ref
}

func seqs(refs []Ref) []uint64 {
	out := make([]uint64, len(refs))
	for i, r := range refs {
		out[i] = r.Seq
	}
	return out
}

func TestStoreSaveLoad(t *testing.T) {
	ctx := context.Background()
	forEachStore(t, Options{}, func(t *testing.T, h *harness) {
		var refs []Ref
		for i := range 3 {
			c := ckpt("alpha", i)
			ref := save(t, h, c)
			want := Ref{KernelID: "alpha", Seq: uint64(i + 1), CodeVersion: c.CodeVersion, Created: c.Created.UTC(), Size: int64(len(mustEncode(t, c)))}
			if ref != want {
				t.Fatalf("Save returned %+v, want %+v", ref, want)
			}
			refs = append(refs, ref)
		}
		if ref := save(t, h, ckpt("beta", 9)); ref.Seq != 1 {
			t.Fatalf("first checkpoint of another kernel has Seq %d", ref.Seq)
		}
		for i, ref := range refs {
			c, err := h.Load(ctx, Ref{KernelID: ref.KernelID, Seq: ref.Seq})
			if err != nil {
				t.Fatalf("Load %d: %v", ref.Seq, err)
			}
			if s := diff(c, ckpt("alpha", i)); s != "" {
				t.Fatalf("Load %d: %s", ref.Seq, s)
			}
		}
		list, err := h.List(ctx, "alpha")
		if err != nil || !slices.Equal(list, refs) {
			t.Fatalf("List = %+v, %v; want %+v", list, err, refs)
		}
		c, ref, err := h.Latest(ctx, "alpha")
		if err != nil || ref != refs[2] || diff(c, ckpt("alpha", 2)) != "" {
			t.Fatalf("Latest = %+v, %v", ref, err)
		}
		ids, err := h.Kernels(ctx)
		if err != nil || !slices.Equal(ids, []string{"alpha", "beta"}) {
			t.Fatalf("Kernels = %q, %v", ids, err)
		}
	})
}

func TestStoreLoadIsIndependent(t *testing.T) {
	ctx := context.Background()
	forEachStore(t, Options{}, func(t *testing.T, h *harness) {
		ref := save(t, h, sample())
		a, err := h.Load(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		a.State[0] ^= 0xff
		a.Queues["input.enqueued"] = 0
		a.Metadata["host"] = "changed"
		b, _, err := h.Latest(ctx, ref.KernelID)
		if err != nil {
			t.Fatal(err)
		}
		if s := diff(b, sample()); s != "" {
			t.Fatalf("changing a loaded checkpoint changed the store: %s", s)
		}
		// Nor does changing the saved checkpoint after Save.
		c := sample()
		ref = save(t, h, c)
		c.State[0] ^= 0xff
		if d, err := h.Load(ctx, ref); err != nil || diff(d, sample()) != "" {
			t.Fatalf("store kept a reference to the saved checkpoint: %v", err)
		}
	})
}

func TestStoreNotFound(t *testing.T) {
	ctx := context.Background()
	forEachStore(t, Options{}, func(t *testing.T, h *harness) {
		if _, _, err := h.Latest(ctx, "nobody"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Latest: %v", err)
		}
		list, err := h.List(ctx, "nobody")
		if err != nil || len(list) != 0 {
			t.Errorf("List = %v, %v", list, err)
		}
		save(t, h, ckpt("k", 1))
		_, err = h.Load(ctx, Ref{KernelID: "k", Seq: 2})
		var re *RefError
		if !errors.Is(err, ErrNotFound) || !errors.As(err, &re) || re.Ref.Seq != 2 {
			t.Errorf("Load of a missing seq: %v", err)
		}
		if _, err := h.Load(ctx, Ref{KernelID: "other", Seq: 1}); !errors.Is(err, ErrNotFound) {
			t.Errorf("Load of a missing kernel: %v", err)
		}
		if n, err := h.Prune(ctx, "nobody", 0); n != 0 || err != nil {
			t.Errorf("Prune of a missing kernel = %d, %v", n, err)
		}
	})
}

func TestStoreInvalid(t *testing.T) {
	ctx := context.Background()
	forEachStore(t, Options{}, func(t *testing.T, h *harness) {
		c := ckpt("k", 1)
		c.Created = time.Time{}
		if ref, err := h.Save(ctx, c); !errors.Is(err, ErrInvalid) || ref != (Ref{}) {
			t.Errorf("Save of an invalid checkpoint = %+v, %v", ref, err)
		}
		if _, err := h.Save(ctx, nil); !errors.Is(err, ErrInvalid) {
			t.Errorf("Save(nil): %v", err)
		}
		for _, id := range []string{"", "a\x00", "\xff", strings.Repeat("x", 300)} {
			if _, err := h.List(ctx, id); !errors.Is(err, ErrInvalid) {
				t.Errorf("List(%q): %v", id, err)
			}
			if _, _, err := h.Latest(ctx, id); !errors.Is(err, ErrInvalid) {
				t.Errorf("Latest(%q): %v", id, err)
			}
			if _, err := h.Load(ctx, Ref{KernelID: id, Seq: 1}); !errors.Is(err, ErrInvalid) {
				t.Errorf("Load(%q): %v", id, err)
			}
			if _, err := h.Prune(ctx, id, 1); !errors.Is(err, ErrInvalid) {
				t.Errorf("Prune(%q): %v", id, err)
			}
		}
		if _, err := h.Prune(ctx, "k", -1); !errors.Is(err, ErrInvalid) {
			t.Errorf("Prune(-1): %v", err)
		}
		if ids, err := h.Kernels(ctx); err != nil || len(ids) != 0 {
			t.Errorf("Kernels after failed saves = %q, %v", ids, err)
		}
	})
}

func TestStorePrune(t *testing.T) {
	ctx := context.Background()
	forEachStore(t, Options{}, func(t *testing.T, h *harness) {
		for i := range 5 {
			save(t, h, ckpt("k", i))
		}
		save(t, h, ckpt("other", 0))
		if n, err := h.Prune(ctx, "k", 2); n != 3 || err != nil {
			t.Fatalf("Prune(2) = %d, %v", n, err)
		}
		list, err := h.List(ctx, "k")
		if err != nil || !slices.Equal(seqs(list), []uint64{4, 5}) {
			t.Fatalf("List after Prune(2) = %v, %v", seqs(list), err)
		}
		if n, err := h.Prune(ctx, "k", 2); n != 0 || err != nil {
			t.Fatalf("second Prune(2) = %d, %v", n, err)
		}
		if n, err := h.Prune(ctx, "k", 10); n != 0 || err != nil {
			t.Fatalf("Prune(10) = %d, %v", n, err)
		}
		if n, err := h.Prune(ctx, "k", 0); n != 2 || err != nil {
			t.Fatalf("Prune(0) = %d, %v", n, err)
		}
		if _, _, err := h.Latest(ctx, "k"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Latest after Prune(0): %v", err)
		}
		if ids, _ := h.Kernels(ctx); !slices.Equal(ids, []string{"other"}) {
			t.Fatalf("Kernels after Prune(0) = %q", ids)
		}
		if ref := save(t, h, ckpt("k", 6)); ref.Seq != 6 {
			t.Fatalf("Save after Prune(0) got Seq %d, want 6", ref.Seq)
		}
		if list, _ := h.List(ctx, "other"); len(list) != 1 {
			t.Fatalf("Prune of one kernel touched another: %v", list)
		}
	})
}

func TestStoreRetention(t *testing.T) {
	ctx := context.Background()
	forEachStore(t, Options{Keep: 2}, func(t *testing.T, h *harness) {
		for i := range 5 {
			if ref := save(t, h, ckpt("k", i)); ref.Seq != uint64(i+1) {
				t.Fatalf("Seq %d", ref.Seq)
			}
			list, err := h.List(ctx, "k")
			if err != nil || len(list) != min(i+1, 2) || list[len(list)-1].Seq != uint64(i+1) {
				t.Fatalf("after save %d: List = %v, %v", i+1, seqs(list), err)
			}
		}
	})
}

func TestStoreDamage(t *testing.T) {
	ctx := context.Background()
	flipBody := func(b []byte) []byte { b[len(b)-10] ^= 1; return b }
	flipHeader := func(b []byte) []byte { b[offID] ^= 1; return b }
	truncate := func(b []byte) []byte { return b[:len(b)/2] }
	empty := func(b []byte) []byte { return nil }
	cases := []struct {
		name     string
		f        func([]byte) []byte
		want     error
		inHeader bool // List sees it
	}{
		{"body bit", flipBody, ErrChecksum, false},
		{"header bit", flipHeader, ErrChecksum, true},
		{"truncated", truncate, ErrTruncated, true},
		{"empty", empty, ErrTruncated, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			forEachStore(t, Options{}, func(t *testing.T, h *harness) {
				var refs []Ref
				for i := range 3 {
					refs = append(refs, save(t, h, ckpt("k", i)))
				}
				h.damage(t, refs[2], tc.f)

				c, ref, err := h.Latest(ctx, "k")
				if c == nil || ref != refs[1] || diff(c, ckpt("k", 1)) != "" {
					t.Fatalf("Latest = %+v, %v; want checkpoint 2", ref, err)
				}
				var d DamagedError
				if !errors.As(err, &d) || len(d) != 1 || d[0].Ref.Seq != 3 || !errors.Is(err, tc.want) {
					t.Fatalf("Latest error %v, want a DamagedError for seq 3 wrapping %v", err, tc.want)
				}

				_, err = h.Load(ctx, refs[2])
				var re *RefError
				if !errors.As(err, &re) || re.Ref.Seq != 3 || !errors.Is(err, tc.want) {
					t.Fatalf("Load of the damaged checkpoint: %v", err)
				}
				if _, err := h.Load(ctx, refs[0]); err != nil {
					t.Fatalf("Load of an intact checkpoint: %v", err)
				}

				list, err := h.List(ctx, "k")
				if tc.inHeader {
					if !slices.Equal(list, refs[:2]) || !errors.As(err, &d) || len(d) != 1 || d[0].Ref.Seq != 3 || !errors.Is(err, tc.want) {
						t.Fatalf("List = %v, %v", seqs(list), err)
					}
				} else if !slices.Equal(list, refs) || err != nil {
					t.Fatalf("List = %v, %v; the header is intact", seqs(list), err)
				}

				// With every checkpoint damaged there is nothing to return.
				h.damage(t, refs[1], tc.f)
				h.damage(t, refs[0], tc.f)
				c, _, err = h.Latest(ctx, "k")
				if c != nil || !errors.As(err, &d) || len(d) != 3 || errors.Is(err, ErrNotFound) {
					t.Fatalf("Latest with all damaged = %v, %v", c != nil, err)
				}
				if got := seqs([]Ref{d[0].Ref, d[1].Ref, d[2].Ref}); !slices.Equal(got, []uint64{3, 2, 1}) {
					t.Fatalf("DamagedError order %v, want newest first", got)
				}
				if ids, _ := h.Kernels(ctx); !slices.Equal(ids, []string{"k"}) {
					t.Fatalf("Kernels = %q; damaged checkpoints still exist", ids)
				}
				// Prune removes damaged checkpoints like any other.
				if n, err := h.Prune(ctx, "k", 1); n != 2 || err != nil {
					t.Fatalf("Prune = %d, %v", n, err)
				}
			})
		})
	}
}

func TestStoreWrongPlace(t *testing.T) {
	ctx := context.Background()
	forEachStore(t, Options{}, func(t *testing.T, h *harness) {
		ref := save(t, h, ckpt("a", 1))
		other := mustEncode(t, ckpt("b", 1))
		h.damage(t, ref, func([]byte) []byte { return other })
		_, _, err := h.Latest(ctx, "a")
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), `checkpoint of kernel "b" stored under kernel "a"`) {
			t.Fatalf("Latest: %v", err)
		}
		if _, err := h.List(ctx, "a"); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("List: %v", err)
		}
	})
}

func TestStoreCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	forEachStore(t, Options{}, func(t *testing.T, h *harness) {
		if _, err := h.Save(ctx, ckpt("k", 1)); !errors.Is(err, context.Canceled) {
			t.Errorf("Save: %v", err)
		}
		if _, err := h.Load(ctx, Ref{KernelID: "k", Seq: 1}); !errors.Is(err, context.Canceled) {
			t.Errorf("Load: %v", err)
		}
		if _, _, err := h.Latest(ctx, "k"); !errors.Is(err, context.Canceled) {
			t.Errorf("Latest: %v", err)
		}
		if _, err := h.List(ctx, "k"); !errors.Is(err, context.Canceled) {
			t.Errorf("List: %v", err)
		}
		if _, err := h.Prune(ctx, "k", 0); !errors.Is(err, context.Canceled) {
			t.Errorf("Prune: %v", err)
		}
		if _, err := h.Kernels(ctx); !errors.Is(err, context.Canceled) {
			t.Errorf("Kernels: %v", err)
		}
		if ids, _ := h.Kernels(context.Background()); len(ids) != 0 {
			t.Errorf("a canceled Save stored something: %q", ids)
		}
	})
}

func TestStoreConcurrentSave(t *testing.T) {
	ctx := context.Background()
	const goroutines, each = 16, 8
	forEachStore(t, Options{}, func(t *testing.T, h *harness) {
		var wg sync.WaitGroup
		var mu sync.Mutex
		got := map[string][]uint64{}
		for g := range goroutines {
			wg.Go(func() {
				id := fmt.Sprintf("k%d", g%2)
				for i := range each {
					ref, err := h.Save(ctx, ckpt(id, g*each+i))
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					got[id] = append(got[id], ref.Seq)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		for _, id := range []string{"k0", "k1"} {
			s := got[id]
			slices.Sort(s)
			for i, seq := range s {
				if seq != uint64(i+1) {
					t.Fatalf("kernel %s: sequence numbers %v, want 1..%d each once", id, s, len(s))
				}
			}
			list, err := h.List(ctx, id)
			if err != nil || len(list) != goroutines*each/2 {
				t.Fatalf("List(%s) has %d, %v", id, len(list), err)
			}
			if _, ref, err := h.Latest(ctx, id); err != nil || ref.Seq != uint64(len(list)) {
				t.Fatalf("Latest(%s) = %d, %v", id, ref.Seq, err)
			}
		}
	})
}

func TestStoreConcurrentMixed(t *testing.T) {
	ctx := context.Background()
	forEachStore(t, Options{Keep: 3}, func(t *testing.T, h *harness) {
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				for i := range 10 {
					switch (g + i) % 4 {
					case 0:
						if _, err := h.Save(ctx, ckpt("k", i)); err != nil {
							t.Error(err)
						}
					case 1:
						if c, _, err := h.Latest(ctx, "k"); err != nil && !errors.Is(err, ErrNotFound) || c == nil && err == nil {
							t.Error(err)
						}
					case 2:
						refs, err := h.List(ctx, "k")
						if err != nil {
							t.Error(err)
						}
						for _, r := range refs {
							// A concurrent prune may remove it; anything
							// else is a failure.
							if _, err := h.Load(ctx, r); err != nil && !errors.Is(err, ErrNotFound) {
								t.Error(err)
							}
						}
					case 3:
						if _, err := h.Prune(ctx, "k", 2); err != nil {
							t.Error(err)
						}
						if _, err := h.Kernels(ctx); err != nil {
							t.Error(err)
						}
					}
				}
			})
		}
		wg.Wait()
		if list, err := h.List(ctx, "k"); err != nil || len(list) == 0 || len(list) > 3 {
			t.Fatalf("List = %v, %v", seqs(list), err)
		}
	})
}

func TestStoreReopen(t *testing.T) {
	ctx := context.Background()
	forEachStore(t, Options{}, func(t *testing.T, h *harness) {
		if h.reopen == nil {
			t.Skip("storage does not outlive the store")
		}
		for i := range 3 {
			save(t, h, ckpt("k", i))
		}
		s := h.reopen(t)
		if ref := save(t, s, ckpt("k", 3)); ref.Seq != 4 {
			t.Fatalf("Seq after reopening = %d, want 4", ref.Seq)
		}
		if c, ref, err := s.Latest(ctx, "k"); err != nil || ref.Seq != 4 || diff(c, ckpt("k", 3)) != "" {
			t.Fatalf("Latest after reopening = %d, %v", ref.Seq, err)
		}
		if n, err := s.Prune(ctx, "k", 0); n != 4 || err != nil {
			t.Fatalf("Prune(0) = %d, %v", n, err)
		}
		s = h.reopen(t)
		if ref := save(t, s, ckpt("k", 4)); ref.Seq != 5 {
			t.Fatalf("Seq after pruning everything and reopening = %d, want 5", ref.Seq)
		}
		s = h.reopen(t)
		if ids, err := s.Kernels(ctx); err != nil || !slices.Equal(ids, []string{"k"}) {
			t.Fatalf("Kernels = %q, %v", ids, err)
		}
	})
}

func TestStoreOddKernelIDs(t *testing.T) {
	ctx := context.Background()
	ids := oddKernelIDs()
	forEachStore(t, Options{}, func(t *testing.T, h *harness) {
		for i, id := range ids {
			save(t, h, ckpt(id, i))
		}
		for i, id := range ids {
			c, ref, err := h.Latest(ctx, id)
			if err != nil || ref.Seq != 1 || diff(c, ckpt(id, i)) != "" {
				t.Fatalf("Latest(%q) = %+v, %v", id, ref, err)
			}
		}
		got, err := h.Kernels(ctx)
		want := slices.Sorted(slices.Values(ids))
		if err != nil || !slices.Equal(got, want) {
			t.Fatalf("Kernels = %q, %v\nwant %q", got, err, want)
		}
	})
}

// oddKernelIDs are kernel IDs that are hard to store under a file name.
func oddKernelIDs() []string {
	return []string{
		"/", "//", ".", "..", "...", "../../etc/passwd", "a/../../b", "/abs/path", `C:\windows`, "a\\b",
		"x", "X", "Kernel", "kernel", "KERNEL", "con", "CON", "nul.txt", "com1", "lpt9.x", "com10",
		"trailing.", ".hidden", "space name", "tab\tname", "new\nline", "%41", "!a", "~", "a~b",
		"名前/カーネル", "ünï.cödé", "emoji-🔥", "\x7f", "\u00a0", "\u202e-rtl",
		strings.Repeat("k", 256), strings.Repeat("K", 256), strings.Repeat("é", 128), strings.Repeat("/", 256),
		strings.Repeat("é", 127) + "a", strings.Repeat("é", 127) + "b", strings.Repeat("a", 128), strings.Repeat("a", 129),
	}
}
