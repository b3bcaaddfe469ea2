package wasm

import (
	"bytes"
	"strings"
	"time"
)

// maxLogLine is the longest line logged; longer lines are cut.
const maxLogLine = 1024

// logLimiter passes an instance's log lines to Config.Logger, at most
// Config.LogLinesPerSecond per second. It runs on the goroutine driving
// the instance (host functions are called synchronously), so it needs no
// lock.
type logLimiter struct {
	in      *Instance
	window  time.Time
	n       int
	dropped int
}

func (l *logLimiter) init(in *Instance) { l.in = in }

// enabled reports whether lines can be logged at all.
func (l *logLimiter) enabled() bool {
	return l.in.cfg.Logger != nil && l.in.cfg.LogLinesPerSecond > 0
}

// line logs one line from source ("hk.log", "stdout", "stderr").
func (l *logLimiter) line(source string, text []byte) {
	if !l.enabled() {
		return
	}
	now := time.Now()
	if now.Sub(l.window) >= time.Second {
		l.window, l.n = now, 0
	}
	if l.n >= l.in.cfg.LogLinesPerSecond {
		l.dropped++
		return
	}
	l.n++
	if len(text) > maxLogLine {
		text = text[:maxLogLine]
	}
	attrs := []any{"module", l.in.m.name, "instance", l.in.id, "source", source}
	if l.dropped > 0 {
		attrs = append(attrs, "dropped", l.dropped)
		l.dropped = 0
	}
	l.in.cfg.Logger.Info(strings.ToValidUTF8(string(text), "\uFFFD"), attrs...)
}

// logGuest logs the line at [ptr, ptr+n) of the instance's memory, for
// hk.log.
func (in *Instance) logGuest(ptr, n uint32) {
	if !in.log.enabled() {
		return
	}
	b, ok := in.mem.Read(ptr, min(n, maxLogLine))
	if !ok {
		in.log.line("hk.log", []byte("hk.log: line outside linear memory"))
		return
	}
	in.log.line("hk.log", bytes.TrimRight(b, "\n"))
}

// lineWriter splits what a WASI kernel writes to stdout or stderr into
// lines for the instance's log.
type lineWriter struct {
	in     *Instance
	source string
	buf    []byte
}

// Write implements io.Writer; it never fails.
func (w *lineWriter) Write(p []byte) (int, error) {
	if !w.in.log.enabled() {
		return len(p), nil
	}
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			room := maxLogLine - len(w.buf)
			w.buf = append(w.buf, p[:min(room, len(p))]...)
			break
		}
		w.buf = append(w.buf, p[:i]...)
		w.in.log.line(w.source, w.buf)
		w.buf = w.buf[:0]
		p = p[i+1:]
	}
	return n, nil
}
