package hotkernel

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hotkernel/hotkernel/checkpoint"
	"github.com/hotkernel/hotkernel/queue"
)

// Config tunes a Manager. Start from DefaultConfig; New rejects a Config
// that Validate rejects.
type Config struct {
	// Enabled turns reloads on. A disabled Manager still registers and
	// runs kernels, but RequestReload and Rollback fail with ErrDisabled.
	Enabled bool
	// Timeout bounds one whole reload, retries included: validation,
	// compilation, the drain up to the cut-off, the pause and the health
	// window. A reload that runs out of time before its swap leaves the
	// old code serving; one that runs out during its health window rolls
	// back. Default 30 s.
	Timeout time.Duration
	// PreserveState carries the state over a reload (copied, or migrated
	// by the new code when its layout differs). When false the new code
	// starts from a fresh state (its hk_init). Default true.
	PreserveState bool
	// MaxRetries is how many times a reload that failed for a transient
	// reason (an instance that could not start, an injected fault, a
	// store error) is tried again. Invalid code and failed migrations are
	// not transient and are never retried. Default 3.
	MaxRetries int
	// RetryBackoff is the wait before the first retry; it doubles for each
	// further one. Default 500 ms.
	RetryBackoff time.Duration
	// ValidateBeforeSwap runs the format's structural validator before
	// compiling. The backend validates again as it compiles; turning this
	// off only skips the separate Validating phase. Default true.
	ValidateBeforeSwap bool
	// KeepFallback keeps the previous instance, idle and with its state
	// exactly as at the cut-off, until the new code has passed its health
	// window, so a failure rolls back without recompiling or copying.
	// Default true.
	KeepFallback bool
	// HistorySize is how many versions per kernel are remembered, with
	// their compiled code, for Rollback. At least 1; default 5.
	HistorySize int
	// HealthMessages and HealthTime make the post-swap health window: the
	// new code is on probation until it has processed HealthMessages
	// messages or HealthTime has passed, whichever comes first. On
	// probation its outputs are held back; if it traps or fails a message,
	// the reload rolls back, its held outputs are dropped and the messages
	// it handled are processed again by the old code. HealthMessages 0
	// and HealthTime 0 turn the window off. Defaults 256 messages, 200 ms.
	HealthMessages int
	HealthTime     time.Duration
	// QueueCapacity is the size of each kernel's input queue (rounded up
	// to a power of two) and QueuePolicy what Send does when it is full:
	// wait (queue.Block) or fail with an error (queue.Fail). Defaults
	// 65536, queue.Block.
	QueueCapacity int
	QueuePolicy   queue.Policy
	// BatchSize is the most messages the runner takes from the queue for
	// one call into the kernel. Default 1024.
	BatchSize int
	// DeadLetters is how many failed messages each kernel remembers, with
	// their errors. Default 100.
	DeadLetters int
	// Store, when not nil, receives a checkpoint of every version a
	// completed reload replaced (its state at the cut-off) and a final
	// checkpoint of each kernel that is unregistered or closed, after its
	// queue was drained. Store failures are logged and do not fail the
	// reload. Default nil.
	Store checkpoint.Store
	// OnReload, when not nil, is called at the end of every executed
	// reload, completed or not, with its Result (nil only when the request
	// could not start) and error; metrics hang here. It runs on the
	// reloading goroutine and must not block or call the Manager's reload
	// methods. Default nil.
	OnReload func(res *Result, err error)
	// Logger receives reload and failure records. Nil discards them.
	Logger *slog.Logger
}

// DefaultConfig returns the defaults documented on each Config field:
// enabled, 30 s timeout, state preserved, 3 retries with 500 ms backoff,
// validation before swap, fallback kept, 5 versions of history.
func DefaultConfig() Config {
	return Config{
		Enabled:            true,
		Timeout:            30 * time.Second,
		PreserveState:      true,
		MaxRetries:         3,
		RetryBackoff:       500 * time.Millisecond,
		ValidateBeforeSwap: true,
		KeepFallback:       true,
		HistorySize:        5,
		HealthMessages:     256,
		HealthTime:         200 * time.Millisecond,
		QueueCapacity:      1 << 16,
		QueuePolicy:        queue.Block,
		BatchSize:          1024,
		DeadLetters:        100,
	}
}

// Validate reports the first field out of range, naming it.
func (c Config) Validate() error {
	var errs []error
	check := func(ok bool, field, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf("hotkernel: config: %s: %s", field, fmt.Sprintf(format, args...)))
		}
	}
	check(c.Timeout > 0, "Timeout", "must be positive, got %v", c.Timeout)
	check(c.MaxRetries >= 0, "MaxRetries", "must not be negative, got %d", c.MaxRetries)
	check(c.RetryBackoff >= 0, "RetryBackoff", "must not be negative, got %v", c.RetryBackoff)
	check(c.HistorySize >= 1, "HistorySize", "must be at least 1, got %d", c.HistorySize)
	check(c.HealthMessages >= 0, "HealthMessages", "must not be negative, got %d", c.HealthMessages)
	check(c.HealthTime >= 0, "HealthTime", "must not be negative, got %v", c.HealthTime)
	check(c.QueueCapacity >= 1 && c.QueueCapacity <= queue.MaxCapacity, "QueueCapacity", "must be 1 to %d, got %d", queue.MaxCapacity, c.QueueCapacity)
	check(c.QueuePolicy == queue.Block || c.QueuePolicy == queue.Fail, "QueuePolicy", "unknown policy %d", c.QueuePolicy)
	check(c.BatchSize >= 1 && c.BatchSize <= 1<<20, "BatchSize", "must be 1 to %d, got %d", 1<<20, c.BatchSize)
	check(c.DeadLetters >= 0, "DeadLetters", "must not be negative, got %d", c.DeadLetters)
	return errors.Join(errs...)
}
