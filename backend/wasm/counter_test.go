package wasm

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/hotkernel/hotkernel/code"
)

var le64, le32 = binary.LittleEndian.Uint64, binary.LittleEndian.Uint32

// counterState is the meaning of a counter kernel's state, whatever its
// layout: what the accounting depends on.
type counterState struct {
	checksum    uint64
	next, count [64]uint64
	total       uint64
}

// decodeCounter decodes the state of counter_v1/counter_go (layout 1) or
// counter_v2 (layout 2).
func decodeCounter(t *testing.T, layout uint32, b []byte) counterState {
	t.Helper()
	var s counterState
	switch layout {
	case 1:
		s.checksum = le64(b)
		if extra := le64(b[8:]); extra != uint64(len(b)-1040) {
			t.Fatalf("layout 1: extra_len %d, state %d bytes", extra, len(b))
		}
		for i := range 64 {
			s.next[i] = le64(b[16+i*16:])
			s.count[i] = le64(b[24+i*16:])
			s.total += s.count[i]
		}
	case 2:
		s.total = le64(b)
		for i := range 64 {
			s.count[i] = le64(b[8+i*8:])
			s.next[i] = le64(b[520+i*8:])
		}
		s.checksum = le64(b[1032:])
		if extra := le64(b[1040:]); extra != uint64(len(b)-1048) {
			t.Fatalf("layout 2: extra_len %d, state %d bytes", extra, len(b))
		}
	default:
		t.Fatalf("layout %d", layout)
	}
	return s
}

// apply updates the model with the counter messages msgs.
func (s *counterState) apply(msgs [][]byte) {
	for _, m := range msgs {
		p, seq := le32(m), le64(m[8:])
		s.next[p] = seq + 1
		s.count[p]++
		s.total++
		s.checksum = s.checksum*31 + seq + uint64(p)
	}
}

// collect returns an emit function that appends copies of the outputs to
// *outs.
func collect(outs *[][]byte) func([]byte) {
	return func(b []byte) { *outs = append(*outs, bytes.Clone(b)) }
}

// checkOutputs checks one output {producer, tag, seq} per message, in
// order.
func checkOutputs(t *testing.T, outs, msgs [][]byte, tag uint32) {
	t.Helper()
	if len(outs) != len(msgs) {
		t.Fatalf("%d outputs for %d messages", len(outs), len(msgs))
	}
	for i, o := range outs {
		if len(o) != 16 || le32(o) != le32(msgs[i]) || le32(o[4:]) != tag || le64(o[8:]) != le64(msgs[i][8:]) {
			t.Fatalf("output %d: % x for message % x, tag %d", i, o, msgs[i], tag)
		}
	}
}

func TestProcessOutputs(t *testing.T) {
	ctx := context.Background()
	msgs := counterMsgs(1000, 5, 100)
	var states [][]byte
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
	}{
		{"defaults", nil},
		// 2 outputs per outbox, 7 messages per call: flushes inside
		// every call, and 143 calls.
		{"small buffers", func(c *Config) { c.OutboxBytes = 64; c.InboxBytes = 256; c.MaxBatchMessages = 7 }},
		// 12 messages fill the inbox.
		{"inbox bound", func(c *Config) { c.InboxBytes = 256 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := newInstance(t, newRuntime(t, tc.mutate), "counter_v1")
			var outs [][]byte
			res, err := in.Process(ctx, msgs, collect(&outs))
			if err != nil {
				t.Fatal(err)
			}
			if res.Processed != len(msgs) || res.Failures != nil || res.Outputs != len(msgs) || succeeded(res) != len(msgs) {
				t.Errorf("result %+v", res)
			}
			checkOutputs(t, outs, msgs, 1)
			if tc.name == "small buffers" && in.flushes < 400 {
				t.Errorf("%d flushes, want at least 400", in.flushes)
			}
			var want counterState
			want.apply(msgs)
			if got := decodeCounter(t, 1, in.StateView()); got != want {
				t.Errorf("state %+v\nwant %+v", got, want)
			}
			states = append(states, in.ExportState())
		})
	}
	for i := 1; i < len(states); i++ {
		if !bytes.Equal(states[0], states[i]) {
			t.Errorf("state %d differs from state 0", i)
		}
	}
}

func TestProcessKernelErrors(t *testing.T) {
	ctx := context.Background()
	in := newInstance(t, newRuntime(t, nil), "counter_v1")
	msgs := counterMsgs(6, 3, 0)
	binary.LittleEndian.PutUint32(msgs[1], 64) // producer out of range: code 1
	msgs[3] = msgs[3][:15]                     // short: code 2
	var outs [][]byte
	res, err := in.Process(ctx, msgs, collect(&outs))
	if err != nil {
		t.Fatal(err)
	}
	if res.Processed != 6 || succeeded(res) != 4 || res.Outputs != 4 || len(res.Failures) != 2 {
		t.Fatalf("result %+v", res)
	}
	for i, want := range []KernelError{{fnProcess, 1, 1}, {fnProcess, 3, 2}} {
		f := res.Failures[i]
		ke, ok := f.Err.(*KernelError)
		if !ok || *ke != want || f.Index != want.Index {
			t.Errorf("failure %d: %+v (%v), want %+v", i, f, f.Err, want)
		}
	}
	if got := res.Failures[0].Err.Error(); got != "kernel: hk_process: message 1 failed with code 1" {
		t.Errorf("message %q", got)
	}
	ok := [][]byte{msgs[0], msgs[2], msgs[4], msgs[5]}
	checkOutputs(t, outs, ok, 1)
	var want counterState
	want.apply(ok)
	if got := decodeCounter(t, 1, in.StateView()); got != want {
		t.Errorf("state %+v\nwant %+v", got, want)
	}
}

func TestMessageTooLarge(t *testing.T) {
	in := newInstance(t, newRuntime(t, func(c *Config) { c.InboxBytes = 64 }), "counter_v1")
	msgs := counterMsgs(3, 1, 0)
	msgs = append(msgs[:1], append([][]byte{make([]byte, 53)}, msgs[1:]...)...)
	res, err := in.Process(context.Background(), msgs, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Processed != 4 || len(res.Failures) != 1 || res.Failures[0].Index != 1 || !errors.Is(res.Failures[0].Err, ErrMessageTooLarge) {
		t.Fatalf("result %+v", res)
	}
	// 52 bytes fit: 64 - 8 (header) - 4 (frame); the kernel rejects the
	// length with code 2.
	res, err = in.Process(context.Background(), [][]byte{make([]byte, 52)}, nil)
	if ke, ok := firstErr(res).(*KernelError); err != nil || !ok || ke.Code != 2 {
		t.Fatalf("52 bytes: %+v, %v", res, err)
	}
}

func TestStateRoundTrip(t *testing.T) {
	ctx := context.Background()
	for _, name := range []string{"counter_v1", "counter_v2_1m", "counter_go"} {
		t.Run(name, func(t *testing.T) {
			rt := newRuntime(t, nil)
			a := newInstance(t, rt, name)
			if _, err := a.Process(ctx, counterMsgs(500, 7, 0), nil); err != nil {
				t.Fatal(err)
			}
			state := a.ExportState()
			b, err := a.Module().Instantiate(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close(ctx)
			if err := b.ImportState(ctx, a.StateLayout(), 1, state); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b.StateView(), state) {
				t.Fatal("imported state differs")
			}
			// Both go on identically.
			more := counterMsgs(300, 11, 500)
			var outA, outB [][]byte
			if _, err := a.Process(ctx, more, collect(&outA)); err != nil {
				t.Fatal(err)
			}
			if _, err := b.Process(ctx, more, collect(&outB)); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(a.StateView(), b.StateView()) {
				t.Error("states diverged after the import")
			}
			if fmt.Sprint(outA) != fmt.Sprint(outB) {
				t.Error("outputs diverged after the import")
			}
			// ExportState is a copy, StateView is not.
			exp := a.ExportState()
			exp[0]++
			if a.StateView()[0] == exp[0] {
				t.Error("ExportState shares memory with the instance")
			}
		})
	}
}

// TestMigration carries counter state through alternating reloads
// v1 → v2 → v1 → v2, across state sizes, checking the accounting after
// each step and which code emitted each output.
func TestMigration(t *testing.T) {
	ctx := context.Background()
	rt := newRuntime(t, nil)
	steps := []string{"counter_v1", "counter_v2", "counter_v1_1m", "counter_v2_16m", "counter_v1", "counter_go", "counter_v2"}
	var model counterState
	var cur *Instance
	var curVersion uint64
	seq := uint64(0)
	for i, name := range steps {
		m := compile(t, rt, name)
		next, err := m.Instantiate(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer next.Close(ctx)
		if cur == nil {
			err = next.Init(ctx)
		} else {
			old := cur.ExportState()
			if err := m.CheckImport(cur.StateLayout(), len(old)); err != nil {
				t.Fatalf("%s: CheckImport: %v", name, err)
			}
			err = next.ImportState(ctx, cur.StateLayout(), curVersion, old)
		}
		if err != nil {
			t.Fatalf("step %d %s: %v", i, name, err)
		}
		if got := decodeCounter(t, next.StateLayout(), next.StateView()); got != model {
			t.Fatalf("step %d %s: state after import %+v\nwant %+v", i, name, got, model)
		}
		msgs := counterMsgs(200+i, 64, seq)
		seq += uint64(len(msgs))
		var outs [][]byte
		if _, err := next.Process(ctx, msgs, collect(&outs)); err != nil {
			t.Fatal(err)
		}
		tag := next.StateLayout()
		if name == "counter_go" {
			tag = 101
		}
		checkOutputs(t, outs, msgs, tag)
		model.apply(msgs)
		if got := decodeCounter(t, next.StateLayout(), next.StateView()); got != model {
			t.Fatalf("step %d %s: state %+v\nwant %+v", i, name, got, model)
		}
		cur, curVersion = next, uint64(i+1)
	}
}

func TestImportWithoutMigrate(t *testing.T) {
	ctx := context.Background()
	rt := newRuntime(t, nil)
	in := newInstance(t, rt, "trivial")
	for _, tc := range []struct {
		layout uint32
		len    int
		want   string
	}{
		{2, 16, "kernel ABI: new code (layout 1) cannot read state of layout 2: it exports no hk_migrate"},
		{1, 32, "kernel ABI: new code (layout 1, 16 bytes of state) cannot read state of the same layout with 32 bytes: it exports no hk_migrate"},
	} {
		err := in.Module().CheckImport(tc.layout, tc.len)
		if err == nil || err.Error() != tc.want || !errors.Is(err, ErrABI) {
			t.Errorf("CheckImport(%d, %d) = %v, want %q", tc.layout, tc.len, err, tc.want)
		}
		err2 := in.ImportState(ctx, tc.layout, 1, make([]byte, tc.len))
		if err2 == nil || err2.Error() != tc.want {
			t.Errorf("ImportState(%d, %d bytes) = %v, want %q", tc.layout, tc.len, err2, tc.want)
		}
	}
	if err := in.Module().CheckImport(1, 16); err != nil {
		t.Error(err)
	}
}

func TestMigrateFails(t *testing.T) {
	ctx := context.Background()
	rt := newRuntime(t, nil)
	in := newInstance(t, rt, "counter_v2")
	// Layout 7 is unknown to counter_v2: code 10. A layout-1 state whose
	// extra_len does not match its length: code 11.
	for _, tc := range []struct {
		layout uint32
		state  []byte
		code   int32
	}{{7, make([]byte, 4096), 10}, {1, make([]byte, 4000), 11}} {
		err := in.ImportState(ctx, tc.layout, 3, tc.state)
		var ke *KernelError
		if !errors.As(err, &ke) || ke.Func != fnMigrate || ke.Code != tc.code || ke.Index != -1 {
			t.Errorf("layout %d: %v, want hk_migrate code %d", tc.layout, err, tc.code)
		}
	}
}

func TestGoKernel(t *testing.T) {
	ctx := context.Background()
	var logs bytes.Buffer
	var mu sync.Mutex
	rt := newRuntime(t, func(c *Config) {
		c.Logger = slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &mu}, nil))
		c.OutboxBytes = 100 // flushes
	})
	goIn := newInstance(t, rt, "counter_go")
	cIn := newInstance(t, rt, "counter_v1")
	msgs := counterMsgs(777, 13, 5)
	var goOuts, cOuts [][]byte
	if res, err := goIn.Process(ctx, msgs, collect(&goOuts)); err != nil || succeeded(res) != len(msgs) {
		t.Fatal(res, err)
	}
	if _, err := cIn.Process(ctx, msgs, collect(&cOuts)); err != nil {
		t.Fatal(err)
	}
	checkOutputs(t, goOuts, msgs, 101)
	if !bytes.Equal(goIn.StateView(), cIn.StateView()) {
		t.Error("Go and C layout-1 states differ")
	}
	// Error codes from Go.
	bad := counterMsgs(1, 1, 0)
	binary.LittleEndian.PutUint32(bad[0], 99)
	res, err := goIn.Process(ctx, bad, nil)
	if ke, ok := firstErr(res).(*KernelError); err != nil || !ok || ke.Code != 1 {
		t.Errorf("producer 99: %+v, %v", res, err)
	}
	// A second Go instance is independent and takes C state directly.
	other, err := goIn.Module().Instantiate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(ctx)
	if err := other.ImportState(ctx, 1, 9, cIn.ExportState()); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(other.StateView(), cIn.StateView()) {
		t.Error("Go instance did not take C state")
	}
	// hk.log: hk_init logs one line per instance.
	mu.Lock()
	text := logs.String()
	mu.Unlock()
	if n := strings.Count(text, "counter_go: fresh state"); n != 1 || !strings.Contains(text, "module=counter_go") || !strings.Contains(text, "source=hk.log") {
		t.Errorf("log (%d fresh-state lines):\n%s", n, text)
	}
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestConcurrentInstances drives several instances of one module from
// separate goroutines.
func TestConcurrentInstances(t *testing.T) {
	ctx := context.Background()
	rt := newRuntime(t, nil)
	m := compile(t, rt, "counter_v1")
	var wg sync.WaitGroup
	states := make([][]byte, 4)
	errs := make([]error, 4)
	for g := range states {
		wg.Go(func() {
			in, err := m.Instantiate(ctx)
			if err != nil {
				errs[g] = err
				return
			}
			defer in.Close(ctx)
			if err := in.Init(ctx); err != nil {
				errs[g] = err
				return
			}
			for b := range 20 {
				if _, err := in.Process(ctx, counterMsgs(100, 9, uint64(b*100)), nil); err != nil {
					errs[g] = err
					return
				}
			}
			states[g] = in.ExportState()
		})
	}
	wg.Wait()
	for g := range states {
		if errs[g] != nil {
			t.Fatal(errs[g])
		}
		if !bytes.Equal(states[g], states[0]) {
			t.Errorf("instance %d state differs", g)
		}
	}
}

// TestBackendInterface drives the counter through the backend package's
// interfaces, as the reload manager does.
func TestBackendInterface(t *testing.T) {
	ctx := context.Background()
	be := newRuntime(t, nil).Backend()
	if be.Name() != "wasm" {
		t.Errorf("Name %q", be.Name())
	}
	if p, err := be.Compile(ctx, code.FromWASM([]byte("\x00asm"), "")); err == nil || p != nil {
		t.Errorf("bad code: %v, %v", p, err)
	}
	p, err := be.Compile(ctx, source("counter_v2"))
	if err != nil {
		t.Fatal(err)
	}
	if p.StateLayout() != 2 {
		t.Errorf("layout %d", p.StateLayout())
	}
	if c, ok := p.(interface{ CheckImport(uint32, int) error }); !ok || c.CheckImport(1, 4096) != nil {
		t.Error("the Program does not expose CheckImport")
	}
	in, err := p.Instantiate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close(ctx)
	if err := in.Init(ctx); err != nil {
		t.Fatal(err)
	}
	msgs := counterMsgs(10, 2, 0)
	res, err := in.Process(ctx, msgs, nil)
	if err != nil || res.Processed != 10 || res.Outputs != 10 {
		t.Fatalf("%+v, %v", res, err)
	}
	var want counterState
	want.apply(msgs)
	if got := decodeCounter(t, 2, in.StateView()); got != want {
		t.Errorf("state %+v", got)
	}
	if err := be.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := in.Process(ctx, msgs, nil); !errors.Is(err, ErrInstanceDead) {
		t.Errorf("after Close: %v", err)
	}
}
