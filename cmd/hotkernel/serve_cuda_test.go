package main

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hotkernel/hotkernel/checkpoint"
	cudakernels "github.com/hotkernel/hotkernel/examples/kernels/cuda"
	"github.com/hotkernel/hotkernel/internal/cudafake"
	"github.com/hotkernel/hotkernel/repository"
)

// startServe runs serve in the background on a fresh loopback address
// until the test ends, and waits until it is ready or, when ready is
// false, until cond holds of its log.
func startServe(t *testing.T, o serveOptions, cond func(log string) bool) (base string, logs *syncBuffer, stop func() error) {
	t.Helper()
	o.listen = freeAddr(t)
	o.rescan = time.Hour
	base = "http://" + o.listen
	logs = &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, o, slog.New(slog.NewTextHandler(logs, nil))) }()
	stopped := false
	stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		return <-done
	}
	t.Cleanup(func() {
		_ = stop()
		if t.Failed() {
			t.Logf("daemon log:\n%s", logs)
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		if resp, err := http.Get(base + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 && cond(logs.String()) {
				return base, logs, stop
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the daemon never got ready")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func ptxRepo(t *testing.T) (dir string, repo *repository.Repo) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "repo")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	repo, err := repository.Open(dir, repository.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := repo.Put(context.Background(), "counter", 1, cudakernels.PTX("counter_v1"), ptxManifest); err != nil {
		t.Fatal(err)
	}
	return dir, repo
}

var ptxManifest = repository.Manifest{Format: "ptx", Entry: "hk_process", ABIVersion: 1}

// TestServeCUDA serves a PTX kernel from the repository on the CUDA
// backend (the driver double here, a GPU where there is one), reloads it
// when a new version lands, and checks every message and the final
// checkpoint.
func TestServeCUDA(t *testing.T) {
	lib := cudafake.Build(t)
	if err := cudafake.BindExamples(lib); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HOTKERNEL_LIBCUDA", lib)
	dir, repo := ptxRepo(t)
	state := filepath.Join(t.TempDir(), "state")
	base, logs, stop := startServe(t, serveOptions{repo: dir, state: state, cuda: "on"}, func(string) bool { return true })
	if !strings.Contains(logs.String(), "PTX and CUBIN kernels run on the GPU") {
		t.Fatal("the daemon did not say it runs PTX on the GPU")
	}
	p := &producer{id: 7, tags: map[uint32]int{}}
	for range 10 {
		if err := p.batch(base); err != nil {
			t.Fatal(err)
		}
	}
	if err := repo.Put(context.Background(), "counter", 2, cudakernels.PTX("counter_v2"), ptxManifest); err != nil {
		t.Fatal(err)
	}
	waitRepoVersion(t, base, "2")
	for range 10 {
		if err := p.batch(base); err != nil {
			t.Fatal(err)
		}
	}
	if len(p.got) != int(p.next) || p.tags[1] != 160 || p.tags[2] != 160 {
		t.Fatalf("%d outputs for %d messages, per tag %v", len(p.got), p.next, p.tags)
	}
	for i, seq := range p.got {
		if seq != uint64(i) {
			t.Fatalf("output %d has seq %d", i, seq)
		}
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	store, err := checkpoint.OpenFileStore(state, checkpoint.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cp, _, err := store.Latest(context.Background(), "counter")
	if cp == nil || cp.Metadata["reason"] != "stop" {
		t.Fatalf("final checkpoint %v: %v", cp, err)
	}
	if next, count := stateCounts(t, cp, 7); next != p.next || count != p.next {
		t.Fatalf("state next %d count %d, want %d", next, count, p.next)
	}
}

// TestServeWithoutGPU: with no CUDA driver the daemon still serves, and
// the PTX kernel is reported as not loadable, with the reason; --cuda=on
// refuses to start.
func TestServeWithoutGPU(t *testing.T) {
	t.Setenv("HOTKERNEL_LIBCUDA", "/nonexistent/libcuda.so.1")
	dir, _ := ptxRepo(t)
	state := filepath.Join(t.TempDir(), "state")
	startServe(t, serveOptions{repo: dir, state: state, cuda: "auto"}, func(log string) bool {
		return strings.Contains(log, "ptx code cannot run here: no CUDA driver")
	})
	err := serve(context.Background(), serveOptions{repo: dir, state: state, cuda: "on", listen: freeAddr(t), rescan: time.Hour},
		slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "no CUDA driver") {
		t.Fatalf("serve --cuda=on without a driver: %v", err)
	}
}
