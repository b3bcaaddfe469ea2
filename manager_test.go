package hotkernel_test

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hotkernel/hotkernel"
	"github.com/hotkernel/hotkernel/backend/wasm"
	"github.com/hotkernel/hotkernel/checkpoint"
	"github.com/hotkernel/hotkernel/code"
	"github.com/hotkernel/hotkernel/examples/kernels"
)

var le = binary.LittleEndian

// newManager returns a Manager on a fresh WebAssembly runtime, closed at
// the end of the test.
func newManager(t testing.TB, cfg hotkernel.Config, wcfg wasm.Config) *hotkernel.Manager {
	t.Helper()
	rt, err := wasm.NewRuntime(context.Background(), wcfg)
	if err != nil {
		t.Fatal(err)
	}
	m, err := hotkernel.New(cfg, rt.Backend())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	return m
}

func testConfig() hotkernel.Config {
	cfg := hotkernel.DefaultConfig()
	cfg.RetryBackoff = time.Millisecond
	cfg.HealthMessages = 64
	cfg.HealthTime = 5 * time.Millisecond
	return cfg
}

func kernel(name string) *code.Source {
	return code.FromWASM(kernels.Wasm(name), "hk_process").WithMetadata("name", name+".wasm")
}

// counterMsg is a counter kernel message {u32 producer; u32 0; u64 seq}.
func counterMsg(producer uint32, seq uint64) []byte {
	b := make([]byte, 16)
	le.PutUint32(b, producer)
	le.PutUint64(b[8:], seq)
	return b
}

// output is one counter output {u32 producer; u32 tag; u64 seq} with the
// version the manager says produced it.
type output struct {
	producer, tag uint32
	seq, version  uint64
}

// sink collects outputs.
type sink struct {
	mu   sync.Mutex
	outs []output
}

func (s *sink) output(_ string, version, _ uint64, b []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.outs = append(s.outs, output{le.Uint32(b), le.Uint32(b[4:]), le.Uint64(b[8:]), version})
}

func (s *sink) all() []output {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]output(nil), s.outs...)
}

// counterModel is what a counter kernel's state means, whatever its
// layout.
type counterModel struct {
	checksum    uint64
	next, count [64]uint64
}

func (s *counterModel) apply(producer uint32, seq uint64) {
	s.next[producer] = seq + 1
	s.count[producer]++
	s.checksum = s.checksum*31 + seq + uint64(producer)
}

// decodeCounter reads the state of counter_v1 (layout 1) or counter_v2
// (layout 2).
func decodeCounter(t testing.TB, layout int, b []byte) counterModel {
	t.Helper()
	var s counterModel
	switch layout {
	case 1:
		s.checksum = le.Uint64(b)
		for i := range 64 {
			s.next[i] = le.Uint64(b[16+i*16:])
			s.count[i] = le.Uint64(b[24+i*16:])
		}
	case 2:
		for i := range 64 {
			s.count[i] = le.Uint64(b[8+i*8:])
			s.next[i] = le.Uint64(b[520+i*8:])
		}
		s.checksum = le.Uint64(b[1032:])
	default:
		t.Fatalf("layout %d", layout)
	}
	return s
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestAccounting streams messages from 4 producers into one kernel while
// it is reloaded at least 100 times between two versions with different
// state layouts (every reload migrates), and checks that every message was
// processed exactly once, in per-producer order, by exactly one version,
// and that the final state equals a reference computed here.
func TestAccounting(t *testing.T) {
	perProducer := 250_000
	reloads := 100
	if testing.Short() {
		perProducer, reloads = 20_000, 10
	}
	m := newManager(t, testConfig(), wasm.DefaultConfig())
	accounting(t, m, kernel, []string{"counter_v1", "counter_v2"}, perProducer, reloads)
}

// accounting registers cycle[0] and reloads the kernel reloads times,
// reload i going to cycle[(i+1) % len(cycle)], while 4 producers send at
// least perProducer messages each; then it checks every message and the
// final state. The names are counter kernels: those with "v1" in their
// name have layout 1 and tag 1, the others layout 2 and tag 2. reloads
// must be a multiple of len(cycle), so that the kernel ends on cycle[0],
// which must have layout 1.
func accounting(t *testing.T, m *hotkernel.Manager, kernel func(string) *code.Source, cycle []string, perProducer, reloads int) {
	t.Helper()
	const producers = 4
	var out sink
	k, err := m.Register(context.Background(), "acct", kernel(cycle[0]), hotkernel.RegisterOptions{Output: out.output})
	if err != nil {
		t.Fatal(err)
	}
	layout := func(name string) uint32 {
		if strings.Contains(name, "v1") {
			return 1
		}
		return 2
	}
	tags := map[uint64]uint32{k.Version(): layout(cycle[0])}
	wantMigrated := 0
	// Producers send at least perProducer messages each and keep sending
	// until the reloads are done, so that every reload happens under
	// traffic. Each records the queue sequence of each of its messages, so
	// that the reference can replay them in the kernel's order.
	order := make([][]uint64, producers)
	var wg sync.WaitGroup
	var reloading atomic.Bool
	reloading.Store(true)
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			seqs := make([]uint64, 0, perProducer)
			for i := 0; i < perProducer || reloading.Load(); i++ {
				s, err := k.Send(context.Background(), counterMsg(uint32(p), uint64(i)))
				if err != nil {
					t.Errorf("producer %d message %d: %v", p, i, err)
					return
				}
				seqs = append(seqs, s)
			}
			order[p] = seqs
		}()
	}
	done := 0
	var migrated, preserved int
	for i := range reloads {
		from, to := cycle[i%len(cycle)], cycle[(i+1)%len(cycle)]
		tag := layout(to)
		if layout(from) != tag {
			wantMigrated++
		}
		res, err := m.Reload(context.Background(), "acct", kernel(to))
		if err != nil {
			reloading.Store(false)
			t.Fatalf("reload %d: %v", i, err)
		}
		tags[res.NewVersion] = tag
		done++
		if res.Migrated {
			migrated++
		}
		if res.StatePreserved {
			preserved++
		}
	}
	reloading.Store(false)
	wg.Wait()
	if done%len(cycle) != 0 {
		t.Fatalf("%d reloads do not end on %s", done, cycle[0])
	}
	total := 0
	for _, seqs := range order {
		total += len(seqs)
	}
	waitFor(t, "every message handled", func() bool { return k.Handled() == uint64(total) })
	state, err := k.State(context.Background())
	if err != nil {
		t.Fatal(err)
	}

	outs := out.all()
	if len(outs) != total {
		t.Fatalf("%d outputs for %d messages", len(outs), total)
	}
	next := make([]uint64, producers)
	for p, seqs := range order {
		defer func() {
			if next[p] != uint64(len(seqs)) {
				t.Errorf("producer %d: %d messages sent, %d came out", p, len(seqs), next[p])
			}
		}()
	}
	perVersion := map[uint64]int{}
	for i, o := range outs {
		if int(o.producer) >= producers {
			t.Fatalf("output %d: producer %d", i, o.producer)
		}
		if o.seq != next[o.producer] {
			t.Fatalf("output %d: producer %d seq %d, want %d (lost, duplicated or reordered)", i, o.producer, o.seq, next[o.producer])
		}
		next[o.producer]++
		if want, ok := tags[o.version]; !ok || want != o.tag {
			t.Fatalf("output %d: produced by v%d with tag %d; v%d has tag %d", i, o.version, o.tag, o.version, want)
		}
		perVersion[o.version]++
	}

	// The reference: every message in queue order.
	type msg struct {
		p   uint32
		seq uint64
	}
	bySeq := make([]msg, total)
	for p, seqs := range order {
		for i, s := range seqs {
			bySeq[s] = msg{uint32(p), uint64(i)}
		}
	}
	var want counterModel
	for _, mm := range bySeq {
		want.apply(mm.p, mm.seq)
	}
	if got := decodeCounter(t, 1, state); got != want {
		t.Fatalf("final state differs from the reference:\n got %+v\nwant %+v", got, want)
	}

	st := m.Stats()
	if st.Successful != uint64(done) || st.Failed != 0 {
		t.Errorf("stats: %d successful, %d failed; want %d, 0", st.Successful, st.Failed, done)
	}
	if migrated != wantMigrated || preserved != done {
		t.Errorf("%d of %d reloads migrated (want %d), %d preserved state", migrated, done, wantMigrated, preserved)
	}
	var counted uint64
	for v, n := range st.Processed["acct"] {
		counted += n
		if int(n) != perVersion[v] {
			t.Errorf("v%d: stats say %d messages, outputs show %d", v, n, perVersion[v])
		}
	}
	if counted != uint64(total) {
		t.Errorf("stats count %d messages, want %d", counted, total)
	}
	t.Logf("%d messages, %d reloads, %d versions served; avg pause %v, max %v", total, done, len(perVersion), st.AvgPause, st.MaxPause)
}

func TestConcurrentRequestReload(t *testing.T) {
	m := newManager(t, testConfig(), wasm.DefaultConfig())
	if _, err := m.Register(context.Background(), "k", kernel("counter_v1"), hotkernel.RegisterOptions{}); err != nil {
		t.Fatal(err)
	}
	const n = 16
	var ok, busy atomic.Int32
	var wg sync.WaitGroup
	reqs := make(chan *hotkernel.Request, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := m.RequestReload("k", kernel("counter_v2"))
			switch {
			case err == nil:
				ok.Add(1)
				reqs <- r
			case errors.Is(err, hotkernel.ErrReloadInProgress):
				busy.Add(1)
			default:
				t.Errorf("unexpected error: %v", err)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 1 || busy.Load() != n-1 {
		t.Fatalf("%d requests let through, %d refused; want 1 and %d", ok.Load(), busy.Load(), n-1)
	}
	if !m.IsReloadInProgress("k") {
		t.Error("IsReloadInProgress false while a request is outstanding")
	}
	if k, _ := m.Kernel("k"); k.Status() != "reloading" {
		t.Errorf("status %q while a request is outstanding", k.Status())
	}
	r := <-reqs
	if _, err := m.ExecuteReload(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	if m.IsReloadInProgress("k") {
		t.Error("IsReloadInProgress true after the reload")
	}
	if k, _ := m.Kernel("k"); k.Status() != "running" {
		t.Errorf("status %q after the reload", k.Status())
	}
	if _, err := m.ExecuteReload(context.Background(), r); err == nil {
		t.Error("a request executed twice")
	}
	if _, err := m.RequestReload("k", kernel("counter_v1")); err != nil {
		t.Errorf("next request refused: %v", err)
	}
}

func stateSum(t *testing.T, k *hotkernel.Kernel) [32]byte {
	t.Helper()
	s, err := k.State(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(s)
}

// send sends n counter messages from producer p starting at seq first.
func send(t *testing.T, k *hotkernel.Kernel, p uint32, first, n int) {
	t.Helper()
	for i := first; i < first+n; i++ {
		if _, err := k.Send(context.Background(), counterMsg(p, uint64(i))); err != nil {
			t.Fatal(err)
		}
	}
}

func TestFaultInjectionRollsBack(t *testing.T) {
	phases := []hotkernel.State{hotkernel.Validating, hotkernel.Compiling, hotkernel.Draining,
		hotkernel.Checkpointing, hotkernel.Swapping, hotkernel.Restoring}
	for _, phase := range phases {
		t.Run(phase.String(), func(t *testing.T) {
			cfg := testConfig()
			cfg.MaxRetries = 2
			m := newManager(t, cfg, wasm.DefaultConfig())
			var out sink
			k, err := m.Register(context.Background(), "k", kernel("counter_v1"), hotkernel.RegisterOptions{Output: out.output})
			if err != nil {
				t.Fatal(err)
			}
			send(t, k, 0, 0, 1000)
			before := stateSum(t, k)
			oldVersion := k.Version()
			injected := errors.New("injected fault")
			var calls atomic.Int32
			m.SetFault(func(_ string, p hotkernel.State) error {
				if p == phase {
					calls.Add(1)
					return injected
				}
				return nil
			})
			res, err := m.Reload(context.Background(), "k", kernel("counter_v2"))
			if !errors.Is(err, injected) {
				t.Fatalf("reload error %v, want the injected fault", err)
			}
			var pe *hotkernel.PhaseError
			if !errors.As(err, &pe) || pe.Phase != phase {
				t.Fatalf("error %v does not name phase %s", err, phase)
			}
			if res.Attempts != 3 || calls.Load() != 3 {
				t.Errorf("%d attempts, fault hit %d times; want 3 (1 + 2 retries)", res.Attempts, calls.Load())
			}
			if k.Version() != oldVersion {
				t.Errorf("serving v%d after a failed reload, want v%d", k.Version(), oldVersion)
			}
			if after := stateSum(t, k); after != before {
				t.Error("state changed by a failed reload")
			}
			// The old code still serves.
			send(t, k, 0, 1000, 500)
			waitFor(t, "1500 outputs", func() bool { return len(out.all()) == 1500 })
			for _, o := range out.all() {
				if o.tag != 1 || o.version != oldVersion {
					t.Fatalf("output from v%d tag %d after a failed reload", o.version, o.tag)
				}
			}
			if st := m.Stats(); st.Failed != 1 || st.Successful != 0 {
				t.Errorf("stats %d failed %d successful", st.Failed, st.Successful)
			}

			// A fault that clears is retried and the reload succeeds.
			calls.Store(0)
			m.SetFault(func(_ string, p hotkernel.State) error {
				if p == phase && calls.Add(1) == 1 {
					return injected
				}
				return nil
			})
			res, err = m.Reload(context.Background(), "k", kernel("counter_v2"))
			if err != nil {
				t.Fatalf("retried reload: %v", err)
			}
			if res.Attempts != 2 {
				t.Errorf("%d attempts, want 2", res.Attempts)
			}
		})
	}
}

func TestInvalidCodeNotRetried(t *testing.T) {
	m := newManager(t, testConfig(), wasm.DefaultConfig())
	k, err := m.Register(context.Background(), "k", kernel("counter_v1"), hotkernel.RegisterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	bad := code.FromWASM([]byte("\x00asm\x01\x00\x00\x00\x01\xff"), "hk_process")
	res, err := m.Reload(context.Background(), "k", bad)
	if !errors.Is(err, hotkernel.ErrInvalidCode) {
		t.Fatalf("error %v, want ErrInvalidCode", err)
	}
	var ce *code.Error
	if !errors.As(err, &ce) {
		t.Errorf("error %v carries no *code.Error", err)
	}
	if res.Attempts != 1 {
		t.Errorf("invalid code tried %d times", res.Attempts)
	}
	if v := k.Version(); v != 1 {
		t.Errorf("serving v%d", v)
	}
}

// TestHealthWindowRollback reloads to code that traps on every message:
// the reload rolls back, the old code handles the messages the new one
// failed on, its state is as if the new code had never run, and no
// output of the new code escapes.
func TestHealthWindowRollback(t *testing.T) {
	cfg := testConfig()
	cfg.PreserveState = false // the trapping kernel has another state
	cfg.HealthTime = time.Minute
	cfg.HealthMessages = 10
	m := newManager(t, cfg, wasm.DefaultConfig())
	var out sink
	k, err := m.Register(context.Background(), "k", kernel("counter_v1"), hotkernel.RegisterOptions{Output: out.output})
	if err != nil {
		t.Fatal(err)
	}
	send(t, k, 1, 0, 100)
	before, err := k.State(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var model counterModel
	for i := range 100 {
		model.apply(1, uint64(i))
	}
	if got := decodeCounter(t, 1, before); got != model {
		t.Fatal("state before the reload differs from the model")
	}
	res, err := reloadThenSend(t, m, k, kernel("hostile_trap_all"), func() { send(t, k, 1, 100, 50) })
	if !errors.Is(err, hotkernel.ErrUnhealthy) {
		t.Fatalf("reload error %v, want ErrUnhealthy", err)
	}
	if !res.RolledBack || res.Active != 1 {
		t.Errorf("result %+v: want rolled back to v1", res)
	}
	waitFor(t, "150 outputs", func() bool { return len(out.all()) == 150 })
	for i, o := range out.all() {
		if o.version != 1 || o.tag != 1 || o.seq != uint64(i) {
			t.Fatalf("output %d: %+v; want v1 seq %d", i, o, i)
		}
	}
	for i := 100; i < 150; i++ {
		model.apply(1, uint64(i))
	}
	after, err := k.State(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := decodeCounter(t, 1, after); got != model {
		t.Fatal("state after the rollback differs from the model")
	}
	if dl, n := k.DeadLetters(); n != 0 {
		t.Errorf("%d dead letters after a rollback: %v", n, dl)
	}
	if st := m.Stats(); st.Rollbacks != 1 || st.Failed != 1 {
		t.Errorf("stats: %d rollbacks, %d failed", st.Rollbacks, st.Failed)
	}
}

func TestRollbackAPI(t *testing.T) {
	m := newManager(t, testConfig(), wasm.DefaultConfig())
	var out sink
	k, err := m.Register(context.Background(), "k", kernel("counter_v1"), hotkernel.RegisterOptions{Output: out.output})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Rollback(context.Background(), "k"); !errors.Is(err, hotkernel.ErrNoFallback) {
		t.Fatalf("rollback with one version: %v, want ErrNoFallback", err)
	}
	send(t, k, 2, 0, 10)
	if _, err := m.Reload(context.Background(), "k", kernel("counter_v2")); err != nil {
		t.Fatal(err)
	}
	send(t, k, 2, 10, 10)
	res, err := m.Rollback(context.Background(), "k")
	if err != nil {
		t.Fatal(err)
	}
	if res.NewVersion != 1 || k.Version() != 1 || !res.Migrated {
		t.Errorf("rollback result %+v, serving v%d", res, k.Version())
	}
	if res.Compile != 0 || res.Validate != 0 {
		t.Errorf("rollback recompiled: validate %v compile %v", res.Validate, res.Compile)
	}
	send(t, k, 2, 20, 10)
	state, err := k.State(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var model counterModel
	for i := range 30 {
		model.apply(2, uint64(i))
	}
	if got := decodeCounter(t, 1, state); got != model {
		t.Errorf("state after rollback %+v, want %+v", got, model)
	}
	if _, err := m.RollbackTo(context.Background(), "k", 99); !errors.Is(err, hotkernel.ErrNoFallback) {
		t.Errorf("rollback to unknown version: %v", err)
	}
	if _, err := m.RollbackTo(context.Background(), "k", 2); err != nil {
		t.Errorf("rollback to v2: %v", err)
	}
	if k.Version() != 2 {
		t.Errorf("serving v%d, want v2", k.Version())
	}
}

// TestHostileKernels checks that a kernel stuck in a loop, one that grows
// memory without bound and one that traps on every message are contained:
// their messages fail, they keep running, and another kernel keeps
// serving.
func TestHostileKernels(t *testing.T) {
	wcfg := wasm.DefaultConfig()
	wcfg.BatchTimeout = 200 * time.Millisecond
	wcfg.MemoryLimitPages = 64
	m := newManager(t, testConfig(), wcfg)
	var good sink
	ok, err := m.Register(context.Background(), "good", kernel("counter_v1"), hotkernel.RegisterOptions{Output: good.output})
	if err != nil {
		t.Fatal(err)
	}
	var hostileOut atomic.Int32
	h, err := m.Register(context.Background(), "hostile", kernel("hostile"), hotkernel.RegisterOptions{
		Output: func(string, uint64, uint64, []byte) { hostileOut.Add(1) },
	})
	if err != nil {
		t.Fatal(err)
	}
	trap, err := m.Register(context.Background(), "trap", kernel("hostile_trap_all"), hotkernel.RegisterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cmd := func(c uint32) []byte {
		b := make([]byte, 8)
		le.PutUint32(b, c)
		return b
	}
	for _, c := range []uint32{0, 3, 0, 4, 0, 1, 0, 5, 0, 9, 0} { // ok, loop, ok, grow, ok, trap, ok, oob, ok, deep, ok
		if _, err := h.Send(context.Background(), cmd(c)); err != nil {
			t.Fatal(err)
		}
		send(t, ok, 3, int(ok.Sent()), 100)
		if _, err := trap.Send(context.Background(), cmd(0)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the hostile kernel to finish its messages", func() bool { return h.Handled() == 11 })
	waitFor(t, "the good kernel", func() bool { return len(good.all()) == 1100 })
	waitFor(t, "the trapping kernel", func() bool { return trap.Handled() == 11 })
	dl, n := h.DeadLetters()
	if n != 5 {
		t.Fatalf("hostile kernel: %d dead letters, want 5 (loop, grow, trap, oob, deep): %v", n, dl)
	}
	for _, d := range dl {
		t.Logf("dead letter seq %d: %v", d.Seq, d.Err)
	}
	if hostileOut.Load() != 6 {
		t.Errorf("hostile kernel emitted %d outputs for 6 good messages", hostileOut.Load())
	}
	if _, n := trap.DeadLetters(); n != 11 {
		t.Errorf("trapping kernel: %d dead letters, want 11", n)
	}
	if st := m.Stats(); st.Restarts < 1 {
		t.Errorf("no instance restart after the endless loop: %+v", st)
	}
	// The hostile kernel's state survived its restarts: 6 good messages.
	state, err := h.State(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := le.Uint64(state); got != 6 {
		t.Errorf("hostile kernel counted %d good messages, want 6", got)
	}
}

func TestManagerErrors(t *testing.T) {
	cfg := testConfig()
	cfg.Enabled = false
	m := newManager(t, cfg, wasm.DefaultConfig())
	if _, err := m.Register(context.Background(), "../x", kernel("counter_v1"), hotkernel.RegisterOptions{}); err == nil {
		t.Error("an ID with a path in it was accepted")
	}
	if _, err := m.Register(context.Background(), "k", kernel("counter_v1"), hotkernel.RegisterOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Register(context.Background(), "k", kernel("counter_v1"), hotkernel.RegisterOptions{}); !errors.Is(err, hotkernel.ErrAlreadyRegistered) {
		t.Errorf("second register: %v", err)
	}
	if _, err := m.RequestReload("k", kernel("counter_v2")); !errors.Is(err, hotkernel.ErrDisabled) {
		t.Errorf("reload while disabled: %v", err)
	}
	if _, err := m.CurrentVersion("nope"); !errors.Is(err, hotkernel.ErrNotRegistered) {
		t.Errorf("unknown kernel: %v", err)
	}
	if got := fmt.Sprint(m.List()); got != "[k]" {
		t.Errorf("List = %s", got)
	}
	k, _ := m.Kernel("k")
	send(t, k, 0, 0, 100)
	if err := m.Unregister(context.Background(), "k"); err != nil {
		t.Fatal(err)
	}
	if k.Handled() != 100 {
		t.Errorf("unregister left %d of 100 messages unhandled", 100-k.Handled())
	}
	if _, err := k.Send(context.Background(), counterMsg(0, 100)); !errors.Is(err, hotkernel.ErrClosed) {
		t.Errorf("send after unregister: %v", err)
	}
	if m.IsRegistered("k") {
		t.Error("still registered")
	}
	if k.Status() != "stopped" {
		t.Errorf("status %q after unregister", k.Status())
	}
}

// TestBrokenReleaseRollsBack reloads, under traffic, to a release that
// takes the state over (migrating it) and then traps: the reload rolls
// back within the health window and the accounting still balances.
func TestBrokenReleaseRollsBack(t *testing.T) {
	cfg := testConfig()
	cfg.HealthTime = time.Minute
	cfg.HealthMessages = 100
	m := newManager(t, cfg, wasm.DefaultConfig())
	var out sink
	k, err := m.Register(context.Background(), "k", kernel("counter_v1"), hotkernel.RegisterOptions{Output: out.output})
	if err != nil {
		t.Fatal(err)
	}
	send(t, k, 5, 0, 1000)
	res, err := reloadThenSend(t, m, k, kernel("counter_v2_broken"), func() { send(t, k, 5, 1000, 5000) })
	if !errors.Is(err, hotkernel.ErrUnhealthy) || !res.RolledBack || !res.Migrated {
		t.Fatalf("reload to a broken release: %v (result %+v)", err, res)
	}
	waitFor(t, "6000 outputs", func() bool { return len(out.all()) == 6000 })
	if d, h := k.Delivered(), k.Handled(); d != 6000 || h != 6000 {
		t.Errorf("delivered %d, handled %d; want 6000 each", d, h)
	}
	for i, o := range out.all() {
		if o.version != 1 || o.tag != 1 || o.seq != uint64(i) {
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
	if got := decodeCounter(t, 1, state); got != model {
		t.Fatal("state after the rollback differs from the model")
	}
}

// reloadThenSend reloads kernel k to src and, once the new code is on
// probation (the request is Restoring, after the swap), calls send, so
// that its messages come after the cut-off.
func reloadThenSend(t *testing.T, m *hotkernel.Manager, k *hotkernel.Kernel, src *code.Source, send func()) (*hotkernel.Result, error) {
	t.Helper()
	req, err := m.RequestReload(k.ID(), src)
	if err != nil {
		t.Fatal(err)
	}
	type outcome struct {
		res *hotkernel.Result
		err error
	}
	c := make(chan outcome, 1)
	go func() {
		res, err := m.ExecuteReload(context.Background(), req)
		c <- outcome{res, err}
	}()
	waitFor(t, "the new code to go on probation", func() bool {
		s := req.State()
		return s == hotkernel.Restoring || s.Terminal()
	})
	send()
	o := <-c
	return o.res, o.err
}

// TestLargeStateHandover reloads a kernel with 1 MiB of state, whose state
// is handed over copy-on-write, many times under traffic, with transient
// faults injected at every phase of some reloads (each is retried), and
// checks the outputs and the final state against a model.
func TestLargeStateHandover(t *testing.T) {
	cfg := testConfig()
	cfg.MaxRetries = 1
	m := newManager(t, cfg, wasm.DefaultConfig())
	var out sink
	k, err := m.Register(context.Background(), "big", kernel("counter_v1_1m"), hotkernel.RegisterOptions{Output: out.output})
	if err != nil {
		t.Fatal(err)
	}
	phases := []hotkernel.State{hotkernel.Draining, hotkernel.Checkpointing, hotkernel.Swapping, hotkernel.Restoring}
	var fail atomic.Int32 // index+1 of the phase to fail once; 0: none
	m.SetFault(func(_ string, p hotkernel.State) error {
		if f := fail.Load(); f > 0 && phases[f-1] == p && fail.CompareAndSwap(f, 0) {
			return errors.New("injected fault")
		}
		return nil
	})
	sent := 0
	for i := range 24 {
		send(t, k, 7, sent, 500)
		sent += 500
		if i%3 == 0 {
			fail.Store(int32(i/3%len(phases)) + 1)
		}
		res, err := m.Reload(context.Background(), "big", kernel("counter_v1_1m"))
		if err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
		if !res.StatePreserved || res.CheckpointBytes != 1<<20 {
			t.Fatalf("reload %d: %+v", i, res)
		}
	}
	send(t, k, 7, sent, 500)
	sent += 500
	waitFor(t, "every output", func() bool { return len(out.all()) == sent })
	for i, o := range out.all() {
		if o.seq != uint64(i) || o.tag != 1 {
			t.Fatalf("output %d: %+v", i, o)
		}
	}
	var model counterModel
	for i := range sent {
		model.apply(7, uint64(i))
	}
	state, err := k.State(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := decodeCounter(t, 1, state); got != model {
		t.Fatal("state after the reloads differs from the model")
	}
	if st := m.Stats(); st.Retries != 8 || st.Successful != 24 {
		t.Errorf("stats: %d retries, %d successful; want 8, 24", st.Retries, st.Successful)
	}
}

// TestCheckpoints checks that every replaced version leaves a checkpoint
// of its state at the cut-off, in the history and in the configured store,
// and that unregistering writes a final one.
func TestCheckpoints(t *testing.T) {
	cfg := testConfig()
	store := checkpoint.NewMemStore(checkpoint.Options{})
	cfg.Store = store
	var observed atomic.Int32
	cfg.OnReload = func(res *hotkernel.Result, err error) {
		if res != nil && err == nil && res.Pause > 0 {
			observed.Add(1)
		}
	}
	m := newManager(t, cfg, wasm.DefaultConfig())
	k, err := m.Register(context.Background(), "cp", kernel("counter_v1"), hotkernel.RegisterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var model counterModel
	sent := 0
	for i, next := range []string{"counter_v2", "counter_v1", "counter_v2"} {
		send(t, k, 9, sent, 300)
		for j := sent; j < sent+300; j++ {
			model.apply(9, uint64(j))
		}
		sent += 300
		old := k.Code()
		if _, err := m.Reload(context.Background(), "cp", kernel(next)); err != nil {
			t.Fatal(err)
		}
		cps := k.Checkpoints()
		if len(cps) == 0 {
			t.Fatalf("reload %d: no checkpoint in the history", i)
		}
		refs, err := store.List(context.Background(), "cp")
		if err != nil || len(refs) != i+1 {
			t.Fatalf("reload %d: store holds %d checkpoints (%v), want %d", i, len(refs), err, i+1)
		}
		cp, _, err := store.Latest(context.Background(), "cp")
		if err != nil {
			t.Fatal(err)
		}
		if cp.CodeVersion != old.Version() || cp.CodeSHA256 != old.SHA256() || cp.Queues["input"] != uint64(sent) {
			t.Errorf("reload %d: checkpoint of v%d sha %x at %d; want v%d at %d", i, cp.CodeVersion, cp.CodeSHA256[:4], cp.Queues["input"], old.Version(), sent)
		}
		layout := 1
		if cp.Metadata["state.layout"] == "2" {
			layout = 2
		}
		if got := decodeCounter(t, layout, cp.State); got != model {
			t.Errorf("reload %d: checkpointed state differs from the model", i)
		}
	}
	send(t, k, 9, sent, 100)
	for j := sent; j < sent+100; j++ {
		model.apply(9, uint64(j))
	}
	if observed.Load() != 3 {
		t.Errorf("OnReload saw %d completed reloads, want 3", observed.Load())
	}
	if err := m.Unregister(context.Background(), "cp"); err != nil {
		t.Fatal(err)
	}
	cp, _, err := store.Latest(context.Background(), "cp")
	if err != nil {
		t.Fatal(err)
	}
	if cp.Metadata["reason"] != "stop" || cp.Metadata["state.layout"] != "2" {
		t.Fatalf("final checkpoint metadata %v", cp.Metadata)
	}
	if got := decodeCounter(t, 2, cp.State); got != model {
		t.Error("final checkpoint differs from the model")
	}
}
