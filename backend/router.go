package backend

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/hotkernel/hotkernel/code"
)

// Router is a Backend that hands each source to the backend registered
// for its format, so that one Manager can run WebAssembly kernels on the
// CPU and PTX kernels on a GPU side by side. A format whose backend could
// not start (no GPU, say) can be marked unavailable with the reason,
// which compiling such a source then reports.
//
// Register formats before the Router is used; after that it is safe for
// concurrent use.
type Router struct {
	mu       sync.Mutex
	backends map[code.Format]Backend
	missing  map[code.Format]error
	closed   bool
}

// NewRouter returns a Router with no formats.
func NewRouter() *Router {
	return &Router{backends: map[code.Format]Backend{}, missing: map[code.Format]error{}}
}

// Handle routes sources of format f to b. A later Handle of the same
// format replaces the earlier one.
func (r *Router) Handle(f code.Format, b Backend) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.backends[f] = b
	delete(r.missing, f)
}

// Unavailable records why format f cannot run here: Compile of such a
// source returns an error wrapping err.
func (r *Router) Unavailable(f code.Format, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.backends, f)
	r.missing[f] = err
}

// Backend returns the backend for f, or nil.
func (r *Router) Backend(f code.Format) Backend {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.backends[f]
}

// Name joins the names of the distinct backends, sorted: "cuda+wasm".
func (r *Router) Name() string {
	var names []string
	for _, b := range r.distinct() {
		names = append(names, b.Name())
	}
	slices.Sort(names)
	return strings.Join(names, "+")
}

// Compile compiles src with the backend for its format. A format with no
// backend is an error naming the format and, when it was marked
// Unavailable, why.
func (r *Router) Compile(ctx context.Context, src *code.Source) (Program, error) {
	f := src.Format()
	r.mu.Lock()
	b, why, closed := r.backends[f], r.missing[f], r.closed
	r.mu.Unlock()
	switch {
	case closed:
		return nil, errors.New("backend router closed")
	case b != nil:
		return b.Compile(ctx, src)
	case why != nil:
		return nil, fmt.Errorf("%s code cannot run here: %w", f, why)
	}
	return nil, fmt.Errorf("no backend runs %s code; this one runs %s", f, r.formats())
}

// Close closes every distinct backend once.
func (r *Router) Close(ctx context.Context) error {
	bs := r.distinct()
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	var errs []error
	for _, b := range bs {
		errs = append(errs, b.Close(ctx))
	}
	return errors.Join(errs...)
}

func (r *Router) distinct() []Backend {
	r.mu.Lock()
	defer r.mu.Unlock()
	var bs []Backend
	for _, b := range r.backends {
		if !slices.Contains(bs, b) {
			bs = append(bs, b)
		}
	}
	return bs
}

func (r *Router) formats() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var fs []string
	for f := range r.backends {
		fs = append(fs, f.String())
	}
	slices.Sort(fs)
	if len(fs) == 0 {
		return "none"
	}
	return strings.Join(fs, ", ")
}
