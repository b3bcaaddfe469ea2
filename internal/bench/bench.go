// Package bench measures the reload manager on the embedded WebAssembly
// backend: message throughput, the pause of a reload by state size with
// and without load, the pause with a small and a large module, and
// throughput while reloading. "hotkernel bench" and the root package's
// go test benchmarks both run these.
package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/hotkernel/hotkernel"
	"github.com/hotkernel/hotkernel/backend/wasm"
	"github.com/hotkernel/hotkernel/code"
	"github.com/hotkernel/hotkernel/examples/kernels"
)

// Options size the measurements.
type Options struct {
	// Duration of each throughput run.
	Duration time.Duration
	// Reloads per pause measurement.
	Reloads int
	// Producers sending messages in the "busy" measurements.
	Producers int
}

// DefaultOptions returns 2 s runs, 200 reloads and 4 producers.
func DefaultOptions() Options {
	return Options{Duration: 2 * time.Second, Reloads: 200, Producers: 4}
}

// Kernel returns the example kernel name as a code source. A non-zero
// salt appends a custom section, so that the bytes (and the SHA-256)
// differ and the backend compiles the module anew instead of finding it
// in its cache; the code is the same.
func Kernel(name string, salt uint64) *code.Source {
	b := kernels.Wasm(name)
	if salt != 0 {
		payload := append([]byte{8}, "hk.bench"...)
		payload = binary.LittleEndian.AppendUint64(payload, salt)
		b = append(append(slices.Clip(b), 0, byte(len(payload))), payload...)
	}
	return code.FromWASM(b, "hk_process").WithMetadata("name", name+".wasm")
}

// manager returns a Manager for measurements: a short health window so
// that reloads can follow each other quickly.
func manager(ctx context.Context) (*hotkernel.Manager, error) {
	rt, err := wasm.NewRuntime(ctx, wasm.DefaultConfig())
	if err != nil {
		return nil, err
	}
	cfg := hotkernel.DefaultConfig()
	cfg.HealthMessages = 64
	cfg.HealthTime = time.Millisecond
	m, err := hotkernel.New(cfg, rt.Backend())
	if err != nil {
		_ = rt.Close(ctx)
		return nil, err
	}
	return m, nil
}

// Throughput is a message rate.
type Throughput struct {
	Name      string  `json:"name"`
	Producers int     `json:"producers"`
	Messages  uint64  `json:"messages"`
	Seconds   float64 `json:"seconds"`
	PerSecond float64 `json:"msgs_per_s"`
	Reloads   int     `json:"reloads,omitempty"`
}

// produce runs producers sending 16-byte messages to k until ctx ends.
func produce(ctx context.Context, k *hotkernel.Kernel, producers int) *sync.WaitGroup {
	var wg sync.WaitGroup
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := uint64(0); ctx.Err() == nil; seq++ {
				msg := make([]byte, 16)
				binary.LittleEndian.PutUint32(msg, uint32(p))
				binary.LittleEndian.PutUint64(msg[8:], seq)
				if _, err := k.Send(ctx, msg); err != nil {
					return
				}
			}
		}()
	}
	return &wg
}

// MessageRate measures how many messages per second the kernel handles
// with producers sending as fast as they can for d, while reloadEvery > 0
// reloads it (to the same code under a new salt) at that interval.
func MessageRate(ctx context.Context, kernel string, producers int, d, reloadEvery time.Duration) (Throughput, error) {
	m, err := manager(ctx)
	if err != nil {
		return Throughput{}, err
	}
	defer m.Close(context.Background())
	k, err := m.Register(ctx, "bench", Kernel(kernel, 0), hotkernel.RegisterOptions{})
	if err != nil {
		return Throughput{}, err
	}
	// Compile the variants up front: the reloads then measure swapping,
	// not compiling, and so does the throughput beside them.
	pctx, stop := context.WithCancel(ctx)
	wg := produce(pctx, k, producers)
	time.Sleep(d / 10) // warm up
	start, h0 := time.Now(), k.Handled()
	reloads := 0
	var rerr error
	if reloadEvery > 0 {
		tick := time.NewTicker(reloadEvery)
		for time.Since(start) < d {
			<-tick.C
			if _, err := m.Reload(ctx, "bench", Kernel(kernel, uint64(reloads%2+1))); err != nil {
				rerr = err
				break
			}
			reloads++
		}
		tick.Stop()
	} else {
		time.Sleep(d)
	}
	n, el := k.Handled()-h0, time.Since(start)
	stop()
	wg.Wait()
	if rerr != nil {
		return Throughput{}, rerr
	}
	name := kernel
	if reloadEvery > 0 {
		name = fmt.Sprintf("%s, reload every %v", kernel, reloadEvery)
	}
	return Throughput{Name: name, Producers: producers, Messages: n, Seconds: el.Seconds(),
		PerSecond: float64(n) / el.Seconds(), Reloads: reloads}, nil
}

// Pauses are the pauses of a series of reloads.
type Pauses struct {
	Name       string        `json:"name"`
	StateBytes int           `json:"state_bytes"`
	Producers  int           `json:"producers"`
	Reloads    int           `json:"reloads"`
	P50        time.Duration `json:"p50_ns"`
	P99        time.Duration `json:"p99_ns"`
	Max        time.Duration `json:"max_ns"`
	// Compile is the median compile time, outside the pause.
	Compile time.Duration `json:"compile_p50_ns"`
}

// Pause reloads kernel a to b and back, n times in all, with producers
// sending meanwhile (0: idle), and reports the pause percentiles. When
// salt is true every reload carries new bytes, so the module is compiled
// each time (outside the pause).
func Pause(ctx context.Context, name, a, b string, n, producers int, salt bool) (Pauses, error) {
	m, err := manager(ctx)
	if err != nil {
		return Pauses{}, err
	}
	defer m.Close(context.Background())
	k, err := m.Register(ctx, "bench", Kernel(a, 0), hotkernel.RegisterOptions{})
	if err != nil {
		return Pauses{}, err
	}
	pctx, stop := context.WithCancel(ctx)
	defer stop()
	wg := produce(pctx, k, producers)
	defer wg.Wait()
	pauses := make([]time.Duration, 0, n)
	compiles := make([]time.Duration, 0, n)
	var state int
	for i := range n {
		next := b
		if i%2 == 1 {
			next = a
		}
		var s uint64
		if salt {
			s = uint64(i + 1)
		}
		res, err := m.Reload(ctx, "bench", Kernel(next, s))
		if err != nil {
			return Pauses{}, err
		}
		pauses = append(pauses, res.Pause)
		compiles = append(compiles, res.Compile)
		state = res.CheckpointBytes
	}
	stop()
	slices.Sort(pauses)
	slices.Sort(compiles)
	pct := func(s []time.Duration, p float64) time.Duration { return s[min(len(s)-1, int(float64(len(s))*p))] }
	return Pauses{Name: name, StateBytes: state, Producers: producers, Reloads: n,
		P50: pct(pauses, 0.5), P99: pct(pauses, 0.99), Max: pauses[len(pauses)-1], Compile: pct(compiles, 0.5)}, nil
}

// Report is every measurement of Run.
type Report struct {
	Throughput []Throughput `json:"throughput"`
	Pauses     []Pauses     `json:"pauses"`
	// ReloadRatio is the throughput with 10 reloads per second divided by
	// the throughput without.
	ReloadRatio float64 `json:"reload_throughput_ratio"`
}

// Run takes every measurement; progress, when not nil, is told each one's
// name as it starts.
func Run(ctx context.Context, o Options, progress func(string)) (*Report, error) {
	say := func(s string) {
		if progress != nil {
			progress(s)
		}
	}
	r := &Report{}
	for _, p := range []int{1, o.Producers} {
		say(fmt.Sprintf("throughput, trivial kernel, %d producers", p))
		t, err := MessageRate(ctx, "trivial", p, o.Duration, 0)
		if err != nil {
			return nil, err
		}
		r.Throughput = append(r.Throughput, t)
	}
	say("throughput, trivial kernel, 10 reloads/s")
	t, err := MessageRate(ctx, "trivial", o.Producers, o.Duration, 100*time.Millisecond)
	if err != nil {
		return nil, err
	}
	r.Throughput = append(r.Throughput, t)
	r.ReloadRatio = t.PerSecond / r.Throughput[1].PerSecond

	sizes := []struct{ name, kernel string }{
		{"4 KiB", "counter_v1"}, {"1 MiB", "counter_v1_1m"}, {"16 MiB", "counter_v1_16m"},
	}
	for _, s := range sizes {
		for _, p := range []int{0, o.Producers} {
			n := o.Reloads
			if s.kernel == "counter_v1_16m" {
				n = max(2, n/4)
			}
			label := fmt.Sprintf("state %s, idle", s.name)
			if p > 0 {
				label = fmt.Sprintf("state %s, %d producers", s.name, p)
			}
			say("pause, " + label)
			ps, err := Pause(ctx, label, s.kernel, s.kernel, n, p, false)
			if err != nil {
				return nil, err
			}
			r.Pauses = append(r.Pauses, ps)
		}
	}
	for _, s := range []struct{ name, kernel string }{{"small module (trivial)", "trivial"}, {"2 MB+ module (big)", "big"}} {
		say("pause, " + s.name)
		ps, err := Pause(ctx, s.name+", compiled every reload", s.kernel, s.kernel, max(2, o.Reloads/10), o.Producers, true)
		if err != nil {
			return nil, err
		}
		r.Pauses = append(r.Pauses, ps)
	}
	return r, nil
}

// Bytes reports n bytes in KiB or MiB.
func Bytes(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}
