package hotkernel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hotkernel/hotkernel/backend"
	"github.com/hotkernel/hotkernel/checkpoint"
	"github.com/hotkernel/hotkernel/code"
	"github.com/hotkernel/hotkernel/queue"
)

// Manager runs kernels and replaces their code while they run. It is
// safe for concurrent use.
type Manager struct {
	cfg     Config
	backend backend.Backend

	mu      sync.RWMutex
	kernels map[string]*Kernel
	closed  bool

	versions atomic.Uint64
	requests atomic.Uint64
	stats    counters

	// fault, when set by tests, is called as each reload phase starts; a
	// non-nil error fails that phase.
	fault func(kernel string, phase State) error
}

// New returns a Manager that runs kernels on be with configuration cfg.
// It fails when cfg does not pass Validate or be is nil. The Manager owns
// be: Close closes it.
func New(cfg Config, be backend.Backend) (*Manager, error) {
	if be == nil {
		return nil, errors.New("hotkernel: New: nil backend")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Manager{cfg: cfg, backend: be, kernels: make(map[string]*Kernel)}, nil
}

// Config returns the configuration the Manager was made with.
func (m *Manager) Config() Config { return m.cfg }

// IsEnabled reports whether reloads are enabled.
func (m *Manager) IsEnabled() bool { return m.cfg.Enabled }

func (m *Manager) log() *slog.Logger {
	if m.cfg.Logger != nil {
		return m.cfg.Logger
	}
	return discard
}

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

var validID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// CheckID returns an error unless id is a valid kernel ID: 1 to 128
// letters, digits, '.', '_' or '-', starting with a letter or digit. IDs
// double as directory names, so nothing else is allowed.
func CheckID(id string) error {
	if !validID.MatchString(id) {
		return fmt.Errorf("invalid kernel ID %q: want 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit", id)
	}
	return nil
}

// RegisterOptions are the per-kernel settings of Register.
type RegisterOptions struct {
	// Output receives the kernel's outputs; nil discards them.
	Output OutputFunc
	// QueueCapacity overrides Config.QueueCapacity when positive.
	QueueCapacity int
	// State, when not nil, is the kernel's initial state instead of a
	// fresh one (a restart from a checkpoint), written by code with state
	// layout StateLayout and version StateVersion.
	State        []byte
	StateLayout  uint32
	StateVersion uint64
}

// Register compiles src, starts an instance with a fresh state (or
// opts.State), and starts the kernel's runner. It assigns src its first
// version. It fails with ErrAlreadyRegistered for an ID in use,
// ErrInvalidCode for code that does not compile, and ErrClosed after
// Close; nothing is left running on failure.
func (m *Manager) Register(ctx context.Context, id string, src *code.Source, opts RegisterOptions) (*Kernel, error) {
	if err := CheckID(id); err != nil {
		return nil, err
	}
	m.mu.RLock()
	_, exists := m.kernels[id]
	closed := m.closed
	m.mu.RUnlock()
	switch {
	case closed:
		return nil, fmt.Errorf("register %s: manager %w", id, ErrClosed)
	case exists:
		return nil, fmt.Errorf("register %s: %w", id, ErrAlreadyRegistered)
	}
	v := &version{src: src.WithVersion(m.versions.Add(1))}
	if err := m.compile(ctx, v, nil); err != nil {
		return nil, fmt.Errorf("register %s: %w", id, err)
	}
	inst, err := v.prog.Instantiate(ctx)
	if err == nil {
		if opts.State != nil {
			err = inst.ImportState(ctx, opts.StateLayout, opts.StateVersion, opts.State)
		} else {
			err = inst.Init(ctx)
		}
		if err != nil {
			_ = inst.Close(ctx)
		}
	}
	if err != nil {
		_ = v.prog.Close(ctx)
		return nil, fmt.Errorf("register %s: start: %w", id, err)
	}
	capacity := m.cfg.QueueCapacity
	if opts.QueueCapacity > 0 {
		capacity = opts.QueueCapacity
	}
	q, err := queue.New[[]byte](queue.Config{Capacity: capacity, Policy: m.cfg.QueuePolicy})
	if err != nil {
		_ = inst.Close(ctx)
		_ = v.prog.Close(ctx)
		return nil, fmt.Errorf("register %s: %w", id, err)
	}
	k := &Kernel{
		id: id, m: m, q: q, out: opts.Output,
		ctrl: make(chan *pause, 1), done: make(chan struct{}),
		cur: v, history: []*version{v}, every: []*version{v},
		inst: inst, running: v, buf: make([][]byte, m.cfg.BatchSize),
	}
	k.ctx, k.cancel = context.WithCancel(context.Background())
	m.mu.Lock()
	if m.closed || m.kernels[id] != nil {
		m.mu.Unlock()
		_ = inst.Close(ctx)
		_ = v.prog.Close(ctx)
		if m.closed {
			return nil, fmt.Errorf("register %s: manager %w", id, ErrClosed)
		}
		return nil, fmt.Errorf("register %s: %w", id, ErrAlreadyRegistered)
	}
	m.kernels[id] = k
	m.mu.Unlock()
	go k.run()
	m.log().Info("kernel registered", "kernel", id, "version", v.src.Version(), "format", src.Format(), "sha256", src.SHA256Hex())
	return k, nil
}

// compile validates (when configured) and compiles v's code, timing the
// phases into res when it is not nil.
func (m *Manager) compile(ctx context.Context, v *version, r *reloadRun) error {
	if m.cfg.ValidateBeforeSwap {
		done := r.phase(Validating)
		err := m.inject(r, Validating)
		if err == nil {
			name, _ := v.src.MetadataValue("name")
			if _, verr := code.Validate(v.src, code.Options{Name: name}); verr != nil {
				err = fmt.Errorf("%w: %w", ErrInvalidCode, verr)
			}
		}
		done()
		if err != nil {
			return r.fail(Validating, err)
		}
	}
	done := r.phase(Compiling)
	err := m.inject(r, Compiling)
	if err == nil {
		var prog backend.Program
		prog, err = m.backend.Compile(ctx, v.src)
		if err != nil && ctx.Err() == nil {
			err = fmt.Errorf("%w: %w", ErrInvalidCode, err)
		}
		v.prog = prog
	}
	done()
	if err != nil {
		return r.fail(Compiling, err)
	}
	return nil
}

// inject calls the test fault hook for phase.
func (m *Manager) inject(r *reloadRun, phase State) error {
	if m.fault == nil || r == nil {
		return nil
	}
	return m.fault(r.req.kernel, phase)
}

// Kernel returns the registered kernel with that ID.
func (m *Manager) Kernel(id string) (*Kernel, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	k, ok := m.kernels[id]
	if !ok {
		return nil, fmt.Errorf("kernel %q: %w", id, ErrNotRegistered)
	}
	return k, nil
}

// Send queues msg for kernel id; see Kernel.Send. Hold on to the *Kernel
// from Register or Kernel to skip the lookup on a hot path.
func (m *Manager) Send(ctx context.Context, id string, msg []byte) (uint64, error) {
	k, err := m.Kernel(id)
	if err != nil {
		return 0, err
	}
	return k.Send(ctx, msg)
}

// Unregister stops kernel id: Send fails from now on, the runner handles
// every message already queued, and then the instance and the compiled
// versions are released. It waits for that or for ctx; when ctx ends
// first the kernel is stopped without finishing its queue and the
// unfinished messages are counted as dead letters.
func (m *Manager) Unregister(ctx context.Context, id string) error {
	m.mu.Lock()
	k, ok := m.kernels[id]
	if ok {
		delete(m.kernels, id)
	}
	m.mu.Unlock()
	if !ok {
		return fmt.Errorf("unregister %q: %w", id, ErrNotRegistered)
	}
	return k.stop(ctx)
}

// stop closes the queue, waits for the runner to drain it and releases
// everything.
func (k *Kernel) stop(ctx context.Context) error {
	k.mu.Lock()
	k.closed = true
	k.mu.Unlock()
	k.q.Close()
	k.wake()
	var err error
	select {
	case <-k.done:
	case <-ctx.Done():
		k.cancel()
		<-k.done
		err = fmt.Errorf("kernel %s stopped before its queue was drained: %w", k.id, ctx.Err())
	}
	bg := context.Background()
	if k.m.cfg.Store != nil && k.inst.Err() == nil {
		cp := k.checkpointOf(k.running, append([]byte(nil), k.inst.StateView()...), k.inst.StateLayout(), k.q.Head())
		cp.Metadata["reason"] = "stop"
		// The final checkpoint is written even when ctx ended the drain.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		k.m.save(sctx, cp)
		cancel()
	}
	_ = k.inst.Close(bg)
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, v := range k.history {
		_ = v.prog.Close(bg)
	}
	return err
}

// save writes cp to the configured store, logging a failure.
func (m *Manager) save(ctx context.Context, cp *checkpoint.Checkpoint) {
	if m.cfg.Store == nil {
		return
	}
	if _, err := m.cfg.Store.Save(ctx, cp); err != nil {
		m.log().Error("checkpoint not saved", "kernel", cp.KernelID, "version", cp.CodeVersion, "err", err)
	}
}

// List returns the IDs of the registered kernels, sorted.
func (m *Manager) List() []string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	ids := make([]string, 0, len(m.kernels))
	for id := range m.kernels {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// IsRegistered reports whether a kernel has that ID.
func (m *Manager) IsRegistered(id string) bool {
	_, err := m.Kernel(id)
	return err == nil
}

// CurrentVersion returns the version serving kernel id.
func (m *Manager) CurrentVersion(id string) (uint64, error) {
	k, err := m.Kernel(id)
	if err != nil {
		return 0, err
	}
	return k.Version(), nil
}

// CurrentCode returns the code serving kernel id.
func (m *Manager) CurrentCode(id string) (*code.Source, error) {
	k, err := m.Kernel(id)
	if err != nil {
		return nil, err
	}
	return k.Code(), nil
}

// IsReloadInProgress reports whether kernel id has a reload requested or
// running.
func (m *Manager) IsReloadInProgress(id string) bool {
	k, err := m.Kernel(id)
	if err != nil {
		return false
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.active != nil
}

// Close unregisters every kernel (each drains its queue, within ctx) and
// closes the backend. Later calls fail with ErrClosed.
func (m *Manager) Close(ctx context.Context) error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return ErrClosed
	}
	m.closed = true
	ks := make([]*Kernel, 0, len(m.kernels))
	for _, k := range m.kernels {
		ks = append(ks, k)
	}
	clear(m.kernels)
	m.mu.Unlock()
	var errs []error
	for _, k := range ks {
		errs = append(errs, k.stop(ctx))
	}
	errs = append(errs, m.backend.Close(context.Background()))
	return errors.Join(errs...)
}
