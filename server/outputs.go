package server

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hotkernel/hotkernel"
	"github.com/hotkernel/hotkernel/code"
)

// ErrNoOutputs is returned by Send for a kernel whose outputs do not reach
// the Server (it was not registered through Server.Register or with
// Server.Output).
var ErrNoOutputs = errors.New("kernel outputs are not delivered to the server")

// Output is one kernel output: the code version that produced it and its
// bytes.
type Output struct {
	Version uint64
	Data    []byte
}

// sink receives one kernel's outputs and hands each to the send request
// whose messages produced it, found by the output's batch sequence.
type sink struct {
	send sync.Mutex // held by one send request (or stream line) while it sends

	mu      sync.Mutex
	open    []*collection // requests still collecting, by increasing first
	next    hotkernel.OutputFunc
	ignored atomic.Uint64 // outputs that arrived with no collector
}

// collection is what one send request gathers: the outputs of batches
// that start at a sequence number from first on (and below the first of
// the next request).
type collection struct {
	first   uint64
	outs    []Output
	bytes   int
	limit   int
	dropped int
}

func (s *Server) sinkFor(id string, create bool) *sink {
	s.mu.Lock()
	defer s.mu.Unlock()
	sk := s.sinks[id]
	if sk == nil && create {
		sk = &sink{}
		s.sinks[id] = sk
	}
	return sk
}

// Output returns the OutputFunc to give the Manager when registering kernel
// id, so that the send endpoints return its outputs. Each call for the same
// id returns a function feeding the same per-kernel buffer. Outputs that
// arrive while no send request is collecting (those of messages sent to
// the kernel by other means, with no request waiting) are discarded and
// counted in hotkernel_outputs_discarded_total.
func (s *Server) Output(id string) hotkernel.OutputFunc {
	return s.sinkFor(id, true).deliver
}

func (sk *sink) deliver(kernel string, version, seq uint64, data []byte) {
	sk.mu.Lock()
	next := sk.next
	var c *collection
	for i := len(sk.open) - 1; i >= 0; i-- {
		if sk.open[i].first <= seq {
			c = sk.open[i]
			break
		}
	}
	if c == nil {
		sk.ignored.Add(1)
	} else if c.bytes+len(data) > c.limit {
		c.dropped++
	} else {
		c.outs = append(c.outs, Output{Version: version, Data: append([]byte(nil), data...)})
		c.bytes += len(data)
	}
	sk.mu.Unlock()
	if next != nil {
		next(kernel, version, seq, data)
	}
}

// Register registers kernel id with the Manager, with Server.Output(id) as
// its OutputFunc; when opts.Output is set it receives every output too,
// after the Server has copied it. Errors are the Manager's.
func (s *Server) Register(ctx context.Context, id string, src *code.Source, opts hotkernel.RegisterOptions) (*hotkernel.Kernel, error) {
	sk := s.sinkFor(id, true)
	sk.mu.Lock()
	sk.next = opts.Output
	sk.mu.Unlock()
	opts.Output = sk.deliver
	return s.mgr.Register(ctx, id, src, opts)
}

// Reload reloads kernel id to src through the Manager (Manager.Reload).
// Send requests go on during the reload, its health window included. Reload
// does not record metrics: the Manager's Config.OnReload does.
func (s *Server) Reload(ctx context.Context, id string, src *code.Source) (*hotkernel.Result, error) {
	return s.ReloadWithPhases(ctx, id, src, nil)
}

// ReloadWithPhases is Reload that calls onPhase, when not nil, as each
// phase of the reload ends, with the phase and how long it took (see
// hotkernel.Request.OnPhase: it runs on the reloading goroutine and must
// not block). The reload can fail before any phase runs, for the reasons
// Manager.RequestReload gives; the Result is then nil.
func (s *Server) ReloadWithPhases(ctx context.Context, id string, src *code.Source, onPhase func(phase hotkernel.State, took time.Duration)) (*hotkernel.Result, error) {
	req, err := s.mgr.RequestReload(id, src)
	if err != nil {
		return nil, err
	}
	if onPhase != nil {
		req.OnPhase(onPhase)
	}
	return s.mgr.ExecuteReload(ctx, req)
}

// Rollback rolls kernel id back (Manager.Rollback), or to version to when
// to is not 0 (Manager.RollbackTo).
func (s *Server) Rollback(ctx context.Context, id string, to uint64) (*hotkernel.Result, error) {
	if to == 0 {
		return s.mgr.Rollback(ctx, id)
	}
	return s.mgr.RollbackTo(ctx, id, to)
}

// Send sends msgs to kernel id in order and returns the sequence number of
// the first one, the outputs the kernel produced for them, in the order
// the kernel wrote them, and how many outputs were dropped for exceeding
// Config.MaxOutputBytes.
//
// The guarantee: send requests of one kernel (Send, the messages endpoint,
// each line of a stream) send one at a time. Each one waits until every
// message sent before it has been handled, sends its messages, and waits
// until they have been handled; the next request may then send. Because
// no batch the kernel runs mixes two requests' messages, every output's
// batch sequence (hotkernel.OutputFunc) names the request it belongs to,
// and the request gets exactly its own outputs, in order — also during a
// reload's health window: the request then waits, without holding up the
// next one, until the outputs held back in the window have been released
// (or dropped and produced again by the old code after a rollback:
// hotkernel.Kernel.Delivered). This holds when every message to the kernel
// is sent through the Server; messages sent to the kernel by other means
// can share a batch with a request's messages, and their outputs then
// count as the request's.
//
// Send fails with ErrNoOutputs when the kernel's outputs do not reach the
// Server, with the Manager's errors for unknown or closed kernels, and
// with ctx's error when ctx ends first; after a failure the outputs
// collected so far are returned with it.
func (s *Server) Send(ctx context.Context, id string, msgs [][]byte) (uint64, []Output, int, error) {
	k, err := s.mgr.Kernel(id)
	if err != nil {
		return 0, nil, 0, err
	}
	sk := s.sinkFor(id, false)
	if sk == nil {
		return 0, nil, 0, fmt.Errorf("kernel %s: %w", id, ErrNoOutputs)
	}
	sk.send.Lock()
	locked := true
	defer func() {
		if locked {
			sk.send.Unlock()
		}
	}()
	// Earlier messages must be handled before this request starts, so that
	// no batch of the kernel mixes them with this request's. A reload in
	// progress is not waited for here: its new code, on probation, must see
	// these messages for its health window to mean anything.
	if err := sk.quiesce(ctx, k, k.Sent(), false); err != nil {
		return 0, nil, 0, err
	}
	c := &collection{first: k.Sent(), limit: s.cfg.MaxOutputBytes}
	sk.mu.Lock()
	sk.open = append(sk.open, c)
	sk.mu.Unlock()
	finish := func() ([]Output, int) {
		sk.mu.Lock()
		defer sk.mu.Unlock()
		for i, o := range sk.open {
			if o == c {
				sk.open = append(sk.open[:i], sk.open[i+1:]...)
				break
			}
		}
		return c.outs, c.dropped
	}
	var first, end uint64
	for i, m := range msgs {
		seq, err := k.Send(ctx, m)
		if err != nil {
			if i > 0 {
				_ = sk.quiesce(ctx, k, end, true)
			}
			outs, dropped := finish()
			return first, outs, dropped, err
		}
		if i == 0 {
			first = seq
		}
		end = seq + 1
	}
	// Once its messages are handled, the next request may send: its
	// batches cannot include these messages. Outputs held back by a health
	// window still come here by their batch sequence, after the window.
	err = sk.quiesce(ctx, k, end, false)
	sk.send.Unlock()
	locked = false
	if err == nil {
		err = sk.quiesce(ctx, k, end, true)
	}
	outs, dropped := finish()
	return first, outs, dropped, err
}

// quiesce waits until kernel k has handled every message below end and,
// when delivered is true, delivered all their outputs (those held back in
// a health window released, or produced again by the old code after a
// rollback), or ctx ends. Nothing notifies either, so it polls with a
// backoff from 20 µs to 2 ms.
func (sk *sink) quiesce(ctx context.Context, k *hotkernel.Kernel, end uint64, delivered bool) error {
	wait := 20 * time.Microsecond
	var t *time.Timer
	for {
		if k.Handled() >= end && (!delivered || k.Delivered() >= end) {
			return nil
		}
		if k.Status() == "stopped" && k.QueueLen() == 0 {
			return fmt.Errorf("kernel %s: %w", k.ID(), hotkernel.ErrClosed)
		}
		if t == nil {
			t = time.NewTimer(wait)
			defer t.Stop()
		} else {
			t.Reset(wait)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		wait = min(2*wait, 2*time.Millisecond)
	}
}
