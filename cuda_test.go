package hotkernel_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hotkernel/hotkernel"
	"github.com/hotkernel/hotkernel/backend/cuda"
	"github.com/hotkernel/hotkernel/code"
	cudakernels "github.com/hotkernel/hotkernel/examples/kernels/cuda"
	"github.com/hotkernel/hotkernel/internal/cudafake"
)

// cudaManager returns a Manager on the CUDA backend: the machine's GPU
// when it has one, otherwise the driver double of internal/cudafake, which
// runs the example kernels as host code (the manager and the backend's
// host side are then the real code, the GPU is not). onGPU says which.
// HOTKERNEL_REQUIRE_GPU=1 makes a machine without a GPU fail the test.
func cudaManager(t *testing.T, cfg hotkernel.Config) (m *hotkernel.Manager, onGPU bool) {
	t.Helper()
	ccfg := cuda.DefaultConfig()
	b, err := cuda.New(ccfg)
	if err == nil {
		if info, _ := b.Device(); !strings.Contains(info.Name, "fake") {
			t.Logf("on %s (%s)", info.Name, info.Arch)
			onGPU = true
		} else {
			_ = b.Close(context.Background())
			b = nil
		}
	}
	if !onGPU {
		if os.Getenv("HOTKERNEL_REQUIRE_GPU") == "1" {
			t.Fatalf("HOTKERNEL_REQUIRE_GPU=1 and no GPU: %v", err)
		}
		lib := cudafake.Build(t)
		if err := cudafake.BindExamples(lib); err != nil {
			t.Fatal(err)
		}
		ccfg.Library = lib
		if b, err = cuda.New(ccfg); err != nil {
			t.Fatal(err)
		}
	}
	m, err = hotkernel.New(cfg, b)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	return m, onGPU
}

func cudaKernel(name string) *code.Source {
	return code.FromPTX(string(cudakernels.PTX(name)), "hk_process").WithMetadata("name", name+".ptx")
}

// TestCUDAAccounting is TestAccounting on the CUDA backend, with reloads
// that keep the state in place (same layout) and reloads that migrate
// it, alternating.
func TestCUDAAccounting(t *testing.T) {
	m, onGPU := cudaManager(t, testConfig())
	perProducer, reloads := 20_000, 40
	if onGPU {
		perProducer, reloads = 250_000, 100
	}
	if testing.Short() {
		perProducer, reloads = 5_000, 8
	}
	accounting(t, m, cudaKernel, []string{"counter_v1", "counter_v1", "counter_v2", "counter_v2"}, perProducer, reloads)
}

// TestCUDAFaultingReleaseRollsBack reloads, under traffic, to a release
// that faults with an illegal address (a sticky error that poisons the
// kernel's context) — once taking the state over in place, once
// migrating it. The reload rolls back: the context is made again, the old
// code is restored from the checkpoint of the cut-off, handles the
// health window's messages again, and the accounting balances.
func TestCUDAFaultingReleaseRollsBack(t *testing.T) {
	for _, c := range []struct {
		from     string
		layout   int
		migrated bool
	}{{"counter_v2", 2, false}, {"counter_v1", 1, true}} {
		t.Run(c.from, func(t *testing.T) {
			cfg := testConfig()
			cfg.HealthTime = time.Minute
			cfg.HealthMessages = 100
			m, _ := cudaManager(t, cfg)
			var out sink
			k, err := m.Register(context.Background(), "k", cudaKernel(c.from), hotkernel.RegisterOptions{Output: out.output})
			if err != nil {
				t.Fatal(err)
			}
			send(t, k, 5, 0, 1000)
			res, err := reloadThenSend(t, m, k, cudaKernel("counter_v2_broken"), func() { send(t, k, 5, 1000, 5000) })
			if !errors.Is(err, hotkernel.ErrUnhealthy) || !res.RolledBack || res.Migrated != c.migrated {
				t.Fatalf("reload to a faulting release: %v (result %+v)", err, res)
			}
			var dead *cuda.DeadError
			if !errors.As(err, &dead) || !strings.Contains(err.Error(), "ILLEGAL_ADDRESS") {
				t.Errorf("the error %q does not carry the CUDA fault", err)
			}
			waitFor(t, "6000 outputs", func() bool { return len(out.all()) == 6000 })
			for i, o := range out.all() {
				if o.version != 1 || o.tag != uint32(c.layout) || o.seq != uint64(i) {
					t.Fatalf("output %d: %+v; want v1 seq %d", i, o, i)
				}
			}
			var model counterModel
			for i := range 6000 {
				model.apply(5, uint64(i))
			}
			state, err := k.State(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if got := decodeCounter(t, c.layout, state); got != model {
				t.Fatal("state after the rollback differs from the model")
			}
			if _, n := k.DeadLetters(); n != 0 {
				t.Errorf("%d dead letters", n)
			}
			if st := m.Stats(); st.Rollbacks != 1 {
				t.Errorf("stats: %d rollbacks", st.Rollbacks)
			}
		})
	}
}
