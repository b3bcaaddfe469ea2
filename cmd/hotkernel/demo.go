package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hotkernel/hotkernel"
	"github.com/hotkernel/hotkernel/backend/wasm"
	"github.com/hotkernel/hotkernel/code"
	"github.com/hotkernel/hotkernel/examples/kernels"
)

const demoSynopsis = "demo [--producers N] [--interval D]"

// runDemo implements "hotkernel demo": one counter kernel on the embedded
// WebAssembly backend, producers streaming messages into it, three
// reloads while they do — one that copies the state, one that migrates it
// to another layout, one to a deliberately broken version that is rolled
// back — and an account of every message at the end.
func runDemo(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("demo", demoSynopsis, stderr)
	producers := fs.Int("producers", 4, "goroutines sending messages")
	interval := fs.Duration("interval", 400*time.Millisecond, "time between reloads")
	if exit, ok := parseFlagsOnly(fs, args, stderr); !ok {
		return exit
	}
	if *producers < 1 || *producers > 64 {
		fmt.Fprintln(stderr, "hotkernel demo: --producers must be 1 to 64")
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := demo(ctx, stdout, *producers, *interval); err != nil {
		fmt.Fprintln(stderr, "hotkernel demo:", err)
		return exitFailure
	}
	return exitOK
}

// demoAccount checks the counter kernel's outputs as they arrive: one per
// message, in order per producer, each from one version.
type demoAccount struct {
	mu         sync.Mutex
	next       []uint64
	perVersion map[uint64]uint64
	outOfOrder uint64
}

func (a *demoAccount) output(_ string, version, _ uint64, b []byte) {
	p, seq := binary.LittleEndian.Uint32(b), binary.LittleEndian.Uint64(b[8:])
	a.mu.Lock()
	defer a.mu.Unlock()
	if int(p) >= len(a.next) || seq != a.next[p] {
		a.outOfOrder++
	} else {
		a.next[p]++
	}
	a.perVersion[version]++
}

func demo(ctx context.Context, w io.Writer, producers int, interval time.Duration) error {
	rt, err := wasm.NewRuntime(ctx, wasm.DefaultConfig())
	if err != nil {
		return err
	}
	cfg := hotkernel.DefaultConfig()
	cfg.HealthTime = interval / 2
	cfg.HealthMessages = 5000
	m, err := hotkernel.New(cfg, rt.Backend())
	if err != nil {
		_ = rt.Close(ctx)
		return err
	}
	defer m.Close(context.Background())

	start := time.Now()
	say := func(format string, args ...any) {
		fmt.Fprintf(w, "%+7.2fs  %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
	}
	src := func(name string) *code.Source {
		return code.FromWASM(kernels.Wasm(name), "hk_process").WithMetadata("name", name+".wasm")
	}
	names := map[uint64]string{}

	fmt.Fprintf(w, "hotkernel demo: a counter kernel on the embedded WebAssembly backend, %d producers streaming, three reloads\n\n", producers)
	acct := &demoAccount{next: make([]uint64, producers), perVersion: map[uint64]uint64{}}
	k, err := m.Register(ctx, "counter", src("counter_v1"), hotkernel.RegisterOptions{Output: acct.output})
	if err != nil {
		return err
	}
	names[k.Version()] = "counter_v1.wasm"
	say("registered kernel %q v%d  %s  sha256 %.12s…", k.ID(), k.Version(), names[k.Version()], k.Code().SHA256Hex())

	var sent atomic.Uint64
	var wg sync.WaitGroup
	pctx, stopProducers := context.WithCancel(ctx)
	defer stopProducers()
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := uint64(0); pctx.Err() == nil; seq++ {
				msg := make([]byte, 16)
				binary.LittleEndian.PutUint32(msg, uint32(p))
				binary.LittleEndian.PutUint64(msg[8:], seq)
				if _, err := k.Send(pctx, msg); err != nil {
					return
				}
				sent.Add(1)
			}
		}()
	}
	say("%d producers streaming messages", producers)

	steps := []struct{ name, what string }{
		{"counter_go", "same state layout, written in Go: the state is copied"},
		{"counter_v2", "state layout 2: the new code migrates the state"},
		{"counter_v2_broken", "a bad release that traps on every seventh message"},
	}
	for _, st := range steps {
		select {
		case <-time.After(interval):
		case <-ctx.Done():
			return ctx.Err()
		}
		req, err := m.RequestReload("counter", src(st.name))
		if err != nil {
			return err
		}
		names[req.Version()] = st.name + ".wasm"
		say("reload v%d -> v%d  %s  (%s)", k.Version(), req.Version(), names[req.Version()], st.what)
		req.OnPhase(func(phase hotkernel.State, took time.Duration) {
			fmt.Fprintf(w, "           %-14s %10s\n", phase, fmtDur(took))
		})
		res, err := m.ExecuteReload(ctx, req)
		if res != nil && res.Pause > 0 {
			how := "copied"
			if res.Migrated {
				how = "migrated"
			}
			fmt.Fprintf(w, "           %-14s %10s   (state %d bytes %s; cut-off at message %d)\n", "pause", fmtDur(res.Pause), res.CheckpointBytes, how, res.Cutoff)
		}
		switch {
		case err == nil:
			say("v%d serving", res.Active)
		case res != nil && res.RolledBack:
			say("rolled back to v%d: %v", res.Active, err)
		default:
			return err
		}
	}
	time.Sleep(interval / 2)
	stopProducers()
	wg.Wait()
	total := sent.Load()
	deadline := time.Now().Add(30 * time.Second)
	for k.Handled() < k.Sent() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	state, err := k.State(ctx)
	if err != nil {
		return err
	}

	acct.mu.Lock()
	defer acct.mu.Unlock()
	fmt.Fprintf(w, "\n  version  code                    messages\n")
	var processed uint64
	for v := uint64(1); v <= uint64(len(names)); v++ {
		fmt.Fprintf(w, "  v%-7d %-22s %9d\n", v, names[v], acct.perVersion[v])
		processed += acct.perVersion[v]
	}
	var delivered uint64
	for _, n := range acct.next {
		delivered += n
	}
	lost := total - min(delivered, total)
	stateTotal := binary.LittleEndian.Uint64(state) // layout 2: total messages seen
	fmt.Fprintf(w, "\n  sent %d, processed %d, lost %d, duplicated or out of order %d; the state counts %d\n",
		total, processed, lost, acct.outOfOrder, stateTotal)
	if lost != 0 || acct.outOfOrder != 0 || processed != total || stateTotal != total {
		return fmt.Errorf("the account does not balance")
	}
	st := m.Stats()
	fmt.Fprintf(w, "  reloads: %d completed, %d rolled back; average pause %s\n", st.Successful, st.Rollbacks, fmtDur(st.AvgPause))
	return nil
}

// fmtDur prints a duration with three significant digits in a fixed unit.
func fmtDur(d time.Duration) string {
	switch {
	case d < time.Microsecond:
		return fmt.Sprintf("%dns", d.Nanoseconds())
	case d < time.Millisecond:
		return fmt.Sprintf("%.1fµs", float64(d)/float64(time.Microsecond))
	case d < time.Second:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.2fs", d.Seconds())
}
