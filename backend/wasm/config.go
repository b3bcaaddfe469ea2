package wasm

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/tetratelabs/wazero"
)

// Config tunes a Runtime. Start from DefaultConfig and change fields;
// NewRuntime rejects a Config that Validate rejects, so the zero Config is
// not usable.
type Config struct {
	// MemoryLimitPages caps the linear memory of every instance, in
	// 64 KiB WebAssembly pages. A kernel's memory.grow past the cap
	// returns -1 and the host is unaffected; a module whose initial
	// memory is already larger fails to compile, and a declared maximum
	// above the cap is lowered to it. 1 to 65536; default 4096 (256 MiB).
	MemoryLimitPages uint32

	// BatchTimeout bounds each hk_process call. A kernel still running
	// at the deadline is interrupted and its instance is dead (see
	// DeadError). Greater than 0; default 1 s.
	BatchTimeout time.Duration

	// CallTimeout bounds every other call into a kernel: _initialize,
	// hk_init, hk_migrate, hk_scratch and the queries made when an
	// instance starts. Greater than 0; default 10 s.
	CallTimeout time.Duration

	// InboxBytes is the size the host asks of hk_inbox, the 8-byte header
	// included. It bounds the bytes framed for one hk_process call; a
	// message longer than InboxBytes-12 is rejected with
	// ErrMessageTooLarge. 64 to 64 MiB; default 256 KiB.
	InboxBytes uint32

	// OutboxBytes is the size the host asks of hk_outbox, the 8-byte
	// header included. A kernel asks the host to flush when the next
	// output does not fit. 64 to 64 MiB; default 64 KiB.
	OutboxBytes uint32

	// MaxBatchMessages is the most messages framed for one hk_process
	// call, so the most work one BatchTimeout covers. 1 to 1<<20;
	// default 4096.
	MaxBatchMessages int

	// Cache, when not nil, holds compiled machine code and may be shared
	// by several Runtimes (wazero.NewCompilationCache, or
	// wazero.NewCompilationCacheWithDir to keep it on disk). Compiling
	// the same bytes again is then nearly free. The caller owns it:
	// Runtime.Close does not close it. When nil each Runtime keeps its
	// own cache in memory until it is closed.
	Cache wazero.CompilationCache

	// Logger receives the lines kernels log with hk.log and, for WASI
	// kernels, what they write to stdout and stderr (a Go kernel's panic
	// message, say), one record per line. Nil discards them.
	Logger *slog.Logger

	// LogLinesPerSecond is how many lines each instance may log per
	// second; further lines are dropped and counted, and the count is
	// logged with the next line let through. 0 drops every line. 0 to
	// 10000; default 20.
	LogLinesPerSecond int
}

// Limits of Config fields.
const (
	minBufferBytes = 64
	maxBufferBytes = 64 << 20
	maxBatchLimit  = 1 << 20
	maxLogRate     = 10000
	maxMemoryPages = 65536
)

// DefaultConfig returns the defaults documented on each Config field.
func DefaultConfig() Config {
	return Config{
		MemoryLimitPages:  4096,
		BatchTimeout:      time.Second,
		CallTimeout:       10 * time.Second,
		InboxBytes:        256 << 10,
		OutboxBytes:       64 << 10,
		MaxBatchMessages:  4096,
		LogLinesPerSecond: 20,
	}
}

// Validate reports every field outside its documented range, joined into
// one error, or nil.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("wasm config: "+format, args...)) }
	if c.MemoryLimitPages < 1 || c.MemoryLimitPages > maxMemoryPages {
		bad("MemoryLimitPages %d outside 1..%d", c.MemoryLimitPages, maxMemoryPages)
	}
	if c.BatchTimeout <= 0 {
		bad("BatchTimeout %v must be positive", c.BatchTimeout)
	}
	if c.CallTimeout <= 0 {
		bad("CallTimeout %v must be positive", c.CallTimeout)
	}
	if c.InboxBytes < minBufferBytes || c.InboxBytes > maxBufferBytes {
		bad("InboxBytes %d outside %d..%d", c.InboxBytes, minBufferBytes, maxBufferBytes)
	}
	if c.OutboxBytes < minBufferBytes || c.OutboxBytes > maxBufferBytes {
		bad("OutboxBytes %d outside %d..%d", c.OutboxBytes, minBufferBytes, maxBufferBytes)
	}
	if c.MaxBatchMessages < 1 || c.MaxBatchMessages > maxBatchLimit {
		bad("MaxBatchMessages %d outside 1..%d", c.MaxBatchMessages, maxBatchLimit)
	}
	if c.LogLinesPerSecond < 0 || c.LogLinesPerSecond > maxLogRate {
		bad("LogLinesPerSecond %d outside 0..%d", c.LogLinesPerSecond, maxLogRate)
	}
	return errors.Join(errs...)
}
