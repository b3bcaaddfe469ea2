package hotkernel

import (
	"sync"
	"sync/atomic"
	"time"
)

// counters are the Manager's running totals.
type counters struct {
	successful     atomic.Uint64
	failed         atomic.Uint64
	rollbacks      atomic.Uint64
	retries        atomic.Uint64
	restarts       atomic.Uint64
	failedMessages atomic.Uint64
	preserved      atomic.Uint64

	mu                                  sync.Mutex
	drain, compile, swap, pause, health time.Duration
	maxPause                            time.Duration
}

// record adds a completed reload.
func (c *counters) record(r *Result) {
	c.successful.Add(1)
	if r.StatePreserved {
		c.preserved.Add(1)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.drain += r.Drain
	c.compile += r.Compile
	c.swap += r.Checkpoint + r.Swap + r.Restore
	c.pause += r.Pause
	c.maxPause = max(c.maxPause, r.Pause)
}

// Stats is a snapshot of a Manager's statistics.
type Stats struct {
	// Reloads by outcome. Rollbacks counts both automatic ones (a reload
	// that failed after its swap) and those asked for with Rollback.
	Successful, Failed, Rollbacks, Retries uint64
	// StatePreserved counts completed reloads that carried the state over.
	StatePreserved uint64
	// Averages over completed reloads, and the longest pause.
	AvgDrain, AvgCompile, AvgSwap, AvgPause, MaxPause time.Duration
	// Restarts counts instances started again after their kernel died
	// (a deadline, a kernel exit); FailedMessages the dead letters.
	Restarts, FailedMessages uint64
	// Processed is, per kernel and code version, the messages handled.
	Processed map[string]map[uint64]uint64
}

// Stats returns a snapshot of the statistics.
func (m *Manager) Stats() Stats {
	c := &m.stats
	s := Stats{
		Successful: c.successful.Load(), Failed: c.failed.Load(), Rollbacks: c.rollbacks.Load(),
		Retries: c.retries.Load(), StatePreserved: c.preserved.Load(),
		Restarts: c.restarts.Load(), FailedMessages: c.failedMessages.Load(),
		Processed: make(map[string]map[uint64]uint64),
	}
	c.mu.Lock()
	if n := time.Duration(s.Successful); n > 0 {
		s.AvgDrain, s.AvgCompile, s.AvgSwap, s.AvgPause = c.drain/n, c.compile/n, c.swap/n, c.pause/n
	}
	s.MaxPause = c.maxPause
	c.mu.Unlock()
	m.mu.RLock()
	ks := make([]*Kernel, 0, len(m.kernels))
	for _, k := range m.kernels {
		ks = append(ks, k)
	}
	m.mu.RUnlock()
	for _, k := range ks {
		s.Processed[k.id] = k.Processed()
	}
	return s
}
