package repository_test

import (
	"bytes"
	"context"
	"io/fs"
	"path/filepath"
	"testing"

	"github.com/hotkernel/hotkernel/examples/kernels"
	examplerepo "github.com/hotkernel/hotkernel/examples/repository"
	"github.com/hotkernel/hotkernel/repository"
)

// TestInSync checks that the example repository scans complete, pins
// version 1, and holds exactly the modules of examples/kernels; run
// `go generate ./examples/repository` when it fails.
func TestInSync(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "repo")
	if err := examplerepo.WriteTo(dir); err != nil {
		t.Fatal(err)
	}
	if err := examplerepo.WriteTo(dir); err == nil || !errorsIsExist(err) {
		t.Fatalf("second WriteTo: %v, want fs.ErrExist", err)
	}
	repo, err := repository.Open(dir, repository.Options{})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := repo.Scan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	k, ok := snap.Kernel("counter")
	if !ok || k.Selected != 1 || len(k.Versions) != 2 || len(k.Problems) != 0 {
		t.Fatalf("counter: %+v", k)
	}
	for n, name := range map[uint64]string{1: "counter_v1", 2: "counter_v2"} {
		src, _, err := repo.Load(context.Background(), "counter", n)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(src.Bytes(), kernels.Wasm(name)) {
			t.Errorf("counter/%d differs from %s.wasm: run go generate ./examples/repository", n, name)
		}
	}
}

func errorsIsExist(err error) bool {
	pe, ok := err.(*fs.PathError)
	return ok && pe.Err == fs.ErrExist
}
