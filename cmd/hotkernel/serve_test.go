package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hotkernel/hotkernel/checkpoint"
	"github.com/hotkernel/hotkernel/examples/kernels"
	"github.com/hotkernel/hotkernel/repository"
)

// syncBuffer is a bytes.Buffer safe for the logger and the test at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestServeInProcess runs the daemon in the test process (so that the
// race detector sees its goroutines): a new version put into the
// repository is loaded, a bad one is refused while the running code keeps
// serving, and cancelling the context shuts it down with a final
// checkpoint.
func TestServeInProcess(t *testing.T) {
	root := t.TempDir()
	repoDir, stateDir := filepath.Join(root, "repo"), filepath.Join(root, "state")
	if err := os.Mkdir(repoDir, 0o755); err != nil {
		t.Fatal(err)
	}
	repo, err := repository.Open(repoDir, repository.Options{})
	if err != nil {
		t.Fatal(err)
	}
	man := repository.Manifest{Format: "wasm", Entry: repository.WasmEntry, ABIVersion: 1}
	ctx := context.Background()
	if err := repo.Put(ctx, "counter", 1, kernels.Wasm("counter_v1"), man); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	base := "http://" + addr
	logs := &syncBuffer{}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- serve(sctx, serveOptions{repo: repoDir, state: stateDir, listen: addr, rescan: time.Hour},
			slog.New(slog.NewTextHandler(logs, nil)))
	}()
	defer func() {
		cancel()
		<-done
		if t.Failed() {
			t.Logf("daemon log:\n%s", logs)
		}
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("not ready")
		}
		time.Sleep(20 * time.Millisecond)
	}

	if err := repo.Put(ctx, "counter", 2, kernels.Wasm("counter_v2"), man); err != nil {
		t.Fatal(err)
	}
	waitRepoVersion(t, base, "2")

	// Version 3 has a matching SHA-256 but is not WebAssembly: it is
	// invalid, never selected, and version 2 keeps serving.
	bad := []byte("not a wasm module")
	dir := filepath.Join(repoDir, "counter", "3")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "kernel.wasm"), bad, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(bad)
	badMan := `{"format": "wasm", "entry": "hk_process", "abi_version": 1, "sha256": "` + hex.EncodeToString(sum[:]) + `"}`
	if err := os.WriteFile(filepath.Join(dir, repository.ManifestFile), []byte(badMan), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &producer{id: 3, tags: map[uint32]int{}}
	deadline = time.Now().Add(20 * time.Second)
	for !strings.Contains(logs.String(), "version invalid; ignored") {
		if err := p.batch(base); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatal("the invalid version was never reported")
		}
	}
	if err := p.batch(base); err != nil {
		t.Fatal(err)
	}
	if k := getKernel(t, base); k.repoVersion() != "2" {
		t.Fatalf("serving repository version %q after the invalid one, want 2", k.repoVersion())
	}
	if len(p.got) != int(p.next) || p.tags[2] != len(p.got) {
		t.Fatalf("%d outputs for %d messages, per tag %v", len(p.got), p.next, p.tags)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	done <- nil
	store, err := checkpoint.OpenFileStore(stateDir, checkpoint.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cp, _, err := store.Latest(ctx, "counter")
	if cp == nil || cp.Metadata["reason"] != "stop" {
		t.Fatalf("final checkpoint %v: %v", cp, err)
	}
	if next, count := stateCounts(t, cp, 3); next != p.next || count != p.next {
		t.Fatalf("state next %d count %d, want %d", next, count, p.next)
	}
}

func TestClientErrors(t *testing.T) {
	addr := freeAddr(t) // nothing listens there any more
	var out, errb bytes.Buffer
	if code := run([]string{"status", "--addr", "http://" + addr}, &out, &errb); code != exitFailure {
		t.Fatalf("exit %d", code)
	}
	if !strings.Contains(errb.String(), "cannot reach the daemon at http://"+addr) || !strings.Contains(errb.String(), "hotkernel serve") {
		t.Fatalf("stderr %q", errb.String())
	}
	errb.Reset()
	if code := run([]string{"reload", "counter", "--addr", addr}, &out, &errb); code != exitUsage {
		t.Fatalf("reload without --version or --file: exit %d", code)
	}
	errb.Reset()
	if code := run([]string{"serve", "--listen", "0.0.0.0:7420", "--token", ""}, &out, &errb); code != exitUsage ||
		!strings.Contains(errb.String(), "without a token") {
		t.Fatalf("serve on 0.0.0.0: %q", errb.String())
	}
}
