package hotkernel

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hotkernel/hotkernel/backend"
	"github.com/hotkernel/hotkernel/code"
)

// RequestReload reserves a reload of kernel id to src and assigns src its
// version. At most one request per kernel is outstanding: a second one
// fails with ErrReloadInProgress until the first has been executed (or
// Cancel-ed). It fails with ErrDisabled when reloads are off and
// ErrNotRegistered for an unknown kernel.
func (m *Manager) RequestReload(id string, src *code.Source) (*Request, error) {
	if src == nil {
		return nil, fmt.Errorf("reload %s: nil code", id)
	}
	return m.request(id, func(k *Kernel) (*code.Source, *version, error) {
		return src.WithVersion(m.versions.Add(1)), nil, nil
	})
}

// request registers a reload request on kernel id; pick chooses the code
// (and, for rollbacks, the remembered version) under the kernel's lock.
func (m *Manager) request(id string, pick func(k *Kernel) (*code.Source, *version, error)) (*Request, error) {
	if !m.cfg.Enabled {
		return nil, fmt.Errorf("reload %s: %w", id, ErrDisabled)
	}
	k, err := m.Kernel(id)
	if err != nil {
		return nil, fmt.Errorf("reload: %w", err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return nil, fmt.Errorf("reload %s: %w", id, ErrClosed)
	}
	if k.active != nil {
		return nil, fmt.Errorf("reload %s: %w (request %d, %s)", id, ErrReloadInProgress, k.active.id, k.active.State())
	}
	src, target, err := pick(k)
	if err != nil {
		return nil, fmt.Errorf("reload %s: %w", id, err)
	}
	r := &Request{id: m.requests.Add(1), kernel: id, code: src, created: time.Now(), target: target}
	k.active = r
	return r, nil
}

// Cancel gives up a request that was not executed, so that another can be
// made. It returns false when the request is already executing or done.
func (m *Manager) Cancel(r *Request) bool {
	if !r.executed.CompareAndSwap(false, true) {
		return false
	}
	r.set(Failed)
	if k, err := m.Kernel(r.kernel); err == nil {
		k.release(r)
	}
	return true
}

func (k *Kernel) release(r *Request) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.active == r {
		k.active = nil
	}
}

// Reload is RequestReload followed by ExecuteReload.
func (m *Manager) Reload(ctx context.Context, id string, src *code.Source) (*Result, error) {
	r, err := m.RequestReload(id, src)
	if err != nil {
		return nil, err
	}
	return m.ExecuteReload(ctx, r)
}

// Rollback reloads kernel id to the version that served before the
// current one, from its compiled code (no recompile). The state is carried
// over as in any reload (migrated back when the layouts differ), so no
// message's effect is lost. ErrNoFallback when there is no earlier
// version.
func (m *Manager) Rollback(ctx context.Context, id string) (*Result, error) {
	return m.rollback(ctx, id, 0)
}

// RollbackTo is Rollback to a named version among the remembered ones.
func (m *Manager) RollbackTo(ctx context.Context, id string, ver uint64) (*Result, error) {
	if ver == 0 {
		return nil, fmt.Errorf("rollback %s: version 0: %w", id, ErrNoFallback)
	}
	return m.rollback(ctx, id, ver)
}

func (m *Manager) rollback(ctx context.Context, id string, ver uint64) (*Result, error) {
	r, err := m.request(id, func(k *Kernel) (*code.Source, *version, error) {
		if len(k.history) < 2 {
			return nil, nil, fmt.Errorf("%w: only v%d was ever loaded", ErrNoFallback, k.cur.src.Version())
		}
		if ver == 0 {
			v := k.history[len(k.history)-2]
			return v.src, v, nil
		}
		for _, v := range k.history[:len(k.history)-1] {
			if v.src.Version() == ver {
				return v.src, v, nil
			}
		}
		return nil, nil, fmt.Errorf("%w: v%d is not among the remembered versions %v", ErrNoFallback, ver, k.versionsLocked())
	})
	if err != nil {
		return nil, err
	}
	m.stats.rollbacks.Add(1)
	return m.ExecuteReload(ctx, r)
}

func (k *Kernel) versionsLocked() []uint64 {
	vs := make([]uint64, len(k.history))
	for i, v := range k.history {
		vs[i] = v.src.Version()
	}
	return vs
}

// reloadRun is one attempt at a reload.
type reloadRun struct {
	m   *Manager
	k   *Kernel
	req *Request
	res *Result

	// The replaced instance, idle, once the new code is confirmed; or, when
	// it was closed early (no KeepFallback), a copy of its state.
	retired        backend.Instance
	retiredState   []byte
	retiredLayout  uint32
	retiredVersion *version // the version the replaced instance ran
}

// phase sets the request's state and returns a func that records the
// phase's duration when it ends.
func (r *reloadRun) phase(s State) func() {
	if r == nil {
		return func() {}
	}
	r.req.set(s)
	start := time.Now()
	return func() {
		d := time.Since(start)
		switch s {
		case Validating:
			r.res.Validate = d
		case Compiling:
			r.res.Compile = d
		case Draining:
			r.res.Drain = d
		}
		if r.req.onPhase != nil {
			r.req.onPhase(s, d)
		}
	}
}

// fail wraps err with the phase it happened in.
func (r *reloadRun) fail(s State, err error) error {
	if r == nil {
		return err
	}
	return &PhaseError{Kernel: r.req.kernel, Version: r.req.Version(), Phase: s, Err: err}
}

// ExecuteReload runs a requested reload: validate and compile the new
// code and start its instance while the old code serves; drain the queue
// up to the cut-off (the queue's tail when the drain starts); then, in the
// pause, checkpoint the old state, swap, and restore or migrate the state
// into the new instance; resume. The new code is then on probation for
// the health window, and any failure from the checkpoint on rolls back to
// the old instance with its state byte-for-byte as at the cut-off.
// Transient failures are retried up to Config.MaxRetries times with
// backoff, all within Config.Timeout.
//
// It returns the Result with phase timings, and an error (a *PhaseError)
// when the reload did not complete; the Result is returned then too,
// with RolledBack set when the swap was undone. A request can be executed
// once; after that the kernel accepts the next request.
func (m *Manager) ExecuteReload(ctx context.Context, req *Request) (*Result, error) {
	if req == nil {
		return nil, errors.New("execute reload: nil request")
	}
	if !req.executed.CompareAndSwap(false, true) {
		return nil, fmt.Errorf("execute reload %s request %d: already executed or cancelled", req.kernel, req.id)
	}
	k, err := m.Kernel(req.kernel)
	if err != nil {
		req.set(Failed)
		return nil, fmt.Errorf("execute reload: %w", err)
	}
	defer k.release(req)
	ctx, cancel := context.WithTimeout(ctx, m.cfg.Timeout)
	defer cancel()
	start := time.Now()
	var res *Result
	for attempt := 1; ; attempt++ {
		res = &Result{Kernel: k.id, NewVersion: req.Version(), Attempts: attempt}
		err = (&reloadRun{m: m, k: k, req: req, res: res}).run(ctx)
		if err == nil || permanent(err) || attempt > m.cfg.MaxRetries || ctx.Err() != nil {
			break
		}
		m.log().Warn("reload attempt failed; retrying", "kernel", k.id, "version", req.Version(), "attempt", attempt, "err", err)
		m.stats.retries.Add(1)
		backoff := m.cfg.RetryBackoff << (attempt - 1)
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
	res.Total = time.Since(start)
	if err != nil && ctx.Err() != nil && !errors.Is(err, ErrTimeout) && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		err = fmt.Errorf("%w after %v: %w", ErrTimeout, m.cfg.Timeout, err)
	}
	res.Err = err
	if m.cfg.OnReload != nil {
		defer m.cfg.OnReload(res, err)
	}
	if err != nil {
		req.set(Failed)
		m.stats.failed.Add(1)
		m.log().Error("reload failed", "kernel", k.id, "version", req.Version(), "rolled_back", res.RolledBack, "err", err)
		return res, err
	}
	req.set(Completed)
	m.stats.record(res)
	m.log().Info("reload completed", "kernel", k.id, "from", res.OldVersion, "to", res.NewVersion,
		"pause", res.Pause, "compile", res.Compile, "drain", res.Drain, "state_bytes", res.CheckpointBytes, "migrated", res.Migrated)
	return res, nil
}

// run is one attempt.
func (r *reloadRun) run(ctx context.Context) error {
	m, k, req := r.m, r.k, r.req
	v := req.target
	if v == nil {
		v = &version{src: req.code}
		if err := m.compile(ctx, v, r); err != nil {
			return err
		}
	}
	fresh := v != req.target
	closeFresh := func() {
		if fresh && v.prog != nil {
			_ = v.prog.Close(context.Background())
		}
	}
	next, err := v.prog.Instantiate(ctx)
	if err == nil && !m.cfg.PreserveState {
		if err = next.Init(ctx); err != nil {
			_ = next.Close(ctx)
		}
	}
	if err != nil {
		closeFresh()
		return r.fail(Compiling, fmt.Errorf("start instance: %w", err))
	}
	if m.cfg.PreserveState {
		if err := r.prepareAdopt(ctx, next); err != nil {
			_ = next.Close(ctx)
			closeFresh()
			return r.fail(Compiling, fmt.Errorf("prepare state handover: %w", err))
		}
	}

	// Drain up to the cut-off, then pause there.
	doneDrain := r.phase(Draining)
	if err := m.inject(r, Draining); err != nil {
		doneDrain()
		_ = next.Close(ctx)
		closeFresh()
		return r.fail(Draining, err)
	}
	var pr *probation
	cutoff := k.q.Tail()
	r.res.Cutoff = cutoff
	p := k.newPause(cutoff, func(ctx context.Context, k *Kernel) error {
		doneDrain()
		var err error
		pr, err = r.swap(ctx, next, v)
		return err
	})
	if err := k.submit(ctx, p); err != nil {
		if p.state.Load() != pauseRunning {
			doneDrain()
			_ = next.Close(context.Background())
			closeFresh()
			if ctx.Err() != nil {
				return r.fail(Draining, fmt.Errorf("%w: the queue did not reach the cut-off %d: %w", ErrTimeout, cutoff, err))
			}
			return r.fail(Draining, err)
		}
		closeFresh()
		return err // the swap failed and was undone; the old code serves
	}
	if fresh {
		k.remember(v)
	}

	// Health window.
	if pr == nil {
		k.confirm(v)
		r.retire(ctx)
		return nil
	}
	select {
	case err = <-pr.result:
	case <-ctx.Done():
		abort := k.newPause(0, func(context.Context, *Kernel) error {
			if k.probation == pr {
				k.endProbation(fmt.Errorf("%w: health window still open", ErrTimeout))
			}
			return nil
		})
		_ = k.submit(context.Background(), abort)
		err = <-pr.result
	}
	r.res.Health = time.Since(pr.start)
	r.res.HealthMessages = pr.handled
	if err != nil {
		r.res.RolledBack = true
		r.res.Active = r.res.OldVersion
		m.stats.rollbacks.Add(1)
		k.forget(v, fresh)
		return r.fail(RollingBack, err)
	}
	k.confirm(v)
	r.retired, r.retiredState, r.retiredLayout = pr.old, pr.checkpoint, pr.layout
	r.retire(ctx)
	return nil
}

// retire records the checkpoint of the version a completed reload
// replaced — its state at the cut-off, read from the idle old instance
// outside the pause — in the history and, when Config.Store is set, in the
// store; then it releases the old instance. A store failure is logged, not
// returned: the reload itself has completed.
func (r *reloadRun) retire(ctx context.Context) {
	k, old := r.k, r.retired
	state, layout := r.retiredState, r.retiredLayout
	if old != nil {
		state, layout = append([]byte(nil), old.StateView()...), old.StateLayout()
		defer old.Close(context.Background())
	}
	if state == nil {
		return
	}
	v := r.retiredVersion
	cp := k.checkpointOf(v, state, layout, r.res.Cutoff)
	k.mu.Lock()
	v.checkpoint = cp
	k.mu.Unlock()
	k.m.save(ctx, cp)
}

// prepareAdopt lets next do the slow part of taking the current
// instance's state over (backend.AdoptPreparer) before the pause, while
// the current instance keeps serving. The runner hands the current
// instance over between two batches without stopping. Nothing prepared
// is no error: AdoptState in the pause does all the work then, or
// ImportState copies. An error means next is unusable.
func (r *reloadRun) prepareAdopt(ctx context.Context, next backend.Instance) error {
	p, ok := next.(backend.AdoptPreparer)
	if !ok {
		return nil
	}
	var cur backend.Instance
	hop := r.k.newPause(0, func(_ context.Context, k *Kernel) error {
		cur = k.inst
		return nil
	})
	if err := r.k.submit(ctx, hop); err != nil || cur == nil {
		return nil
	}
	_, err := p.PrepareAdopt(ctx, cur)
	return err
}

// swap runs in the runner goroutine at the cut-off: checkpoint, swap,
// restore. On failure it puts the old instance back and returns the error.
func (r *reloadRun) swap(ctx context.Context, next backend.Instance, v *version) (*probation, error) {
	m, k, res := r.m, r.k, r.res
	old, oldV := k.inst, k.running
	r.retiredVersion = oldV
	res.OldVersion, res.Active = oldV.src.Version(), oldV.src.Version()
	undo := func(s State, err error) (*probation, error) {
		r.req.set(RollingBack)
		k.inst, k.running = old, oldV
		_ = next.Close(context.Background())
		return nil, r.fail(s, err)
	}
	t0 := time.Now()

	r.req.set(Checkpointing)
	if err := m.inject(r, Checkpointing); err != nil {
		return undo(Checkpointing, err)
	}
	// The checkpoint is the old instance itself, idle from now on: its
	// state stays exactly as at the cut-off. Without KeepFallback it is a
	// copy. The state is read only where it is needed: a backend that
	// keeps it on a device copies it to the host to read it.
	layout := old.StateLayout()
	var checkpoint []byte
	if !m.cfg.KeepFallback {
		checkpoint = append([]byte(nil), old.StateView()...)
	}
	t1 := time.Now()
	res.Checkpoint = t1.Sub(t0)

	r.req.set(Swapping)
	if err := m.inject(r, Swapping); err != nil {
		return undo(Swapping, err)
	}
	k.inst, k.running = next, v
	t2 := time.Now()
	res.Swap = t2.Sub(t1)

	r.req.set(Restoring)
	if err := m.inject(r, Restoring); err != nil {
		return undo(Restoring, err)
	}
	if m.cfg.PreserveState {
		// Same layout: the new instance may take the old state over
		// without a copy, leaving the old instance as it is.
		adopted := false
		if a, ok := next.(backend.StateAdopter); ok && layout == next.StateLayout() {
			var err error
			if adopted, err = a.AdoptState(ctx, old); err != nil {
				return undo(Restoring, fmt.Errorf("%w: %w", ErrStateTransfer, err))
			}
		}
		if !adopted {
			state := old.StateView()
			if err := next.ImportState(ctx, layout, oldV.src.Version(), state); err != nil {
				return undo(Restoring, fmt.Errorf("%w: %w", ErrStateTransfer, err))
			}
			res.CheckpointBytes = len(state)
		}
		res.StatePreserved = true
		res.Migrated = layout != next.StateLayout()
	}
	t3 := time.Now()
	res.Restore = t3.Sub(t2)
	res.Pause = t3.Sub(t0)
	if res.CheckpointBytes == 0 {
		// Outside the pause: the checkpoint the old instance now holds.
		res.CheckpointBytes = len(old.StateView())
	}
	if r.req.onPhase != nil {
		r.req.onPhase(Checkpointing, res.Checkpoint)
		r.req.onPhase(Swapping, res.Swap)
		r.req.onPhase(Restoring, res.Restore)
	}
	res.Active = v.src.Version()

	if m.cfg.HealthMessages == 0 && m.cfg.HealthTime == 0 {
		if m.cfg.KeepFallback {
			r.retired = old
		} else {
			r.retiredState, r.retiredLayout = checkpoint, layout
			_ = old.Close(context.Background())
		}
		return nil, nil
	}
	pr := &probation{
		oldVersion: oldV, newVersion: v, start: t3,
		deadline:    t3.Add(m.cfg.HealthTime),
		maxMessages: m.cfg.HealthMessages,
		firstSeq:    k.q.Head(),
		result:      make(chan error, 1),
	}
	if m.cfg.HealthTime == 0 {
		pr.deadline = t3.Add(m.cfg.Timeout)
	}
	if m.cfg.HealthMessages == 0 {
		pr.maxMessages = int(^uint(0) >> 1)
	}
	if m.cfg.KeepFallback {
		pr.old = old
	} else {
		pr.checkpoint, pr.layout = checkpoint, layout
		_ = old.Close(context.Background())
	}
	k.probation = pr
	r.req.set(Restoring)
	return pr, nil
}

// remember adds a freshly compiled version to the history.
func (k *Kernel) remember(v *version) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.history = append(k.history, v)
	k.every = append(k.every, v)
}

// confirm makes v the current version, moving it to the end of the
// history and dropping the oldest versions beyond Config.HistorySize.
func (k *Kernel) confirm(v *version) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.cur = v
	for i, h := range k.history {
		if h == v {
			k.history = append(k.history[:i], k.history[i+1:]...)
			break
		}
	}
	k.history = append(k.history, v)
	for len(k.history) > k.m.cfg.HistorySize {
		_ = k.history[0].prog.Close(context.Background())
		k.history = k.history[1:]
	}
}

// forget removes a version that failed its health window from the
// history, releasing its code when it was compiled for this reload.
func (k *Kernel) forget(v *version, compiled bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if !compiled {
		return
	}
	for i, h := range k.history {
		if h == v {
			k.history = append(k.history[:i], k.history[i+1:]...)
			break
		}
	}
	_ = v.prog.Close(context.Background())
}
