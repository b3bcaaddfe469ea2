// Package repository embeds the example kernel repository that
// "hotkernel serve" runs when it is given no --repo: one kernel, counter,
// with version 1 (examples/kernels' counter_v1.wasm, state layout 1) and
// version 2 (counter_v2.wasm, state layout 2), and a policy.json that
// pins version 1, so that "hotkernel reload counter --version 2" has
// something to do.
//
// The files are written by gen.go from examples/kernels; run
// `go generate ./examples/repository` after rebuilding the modules. A
// test checks that they are in sync.
package repository

//go:generate go run gen.go

import (
	"embed"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
)

//go:embed counter
var files embed.FS

// FS returns the repository's files, rooted at the repository directory.
func FS() fs.FS { return files }

// WriteTo writes the repository into dir, which must not exist yet (its
// parent must); it writes into a hidden sibling first and renames it, so
// dir is either absent or complete. It fails with fs.ErrExist when dir
// exists.
func WriteTo(dir string) error {
	if _, err := os.Lstat(dir); err == nil {
		return &fs.PathError{Op: "write example repository", Path: dir, Err: fs.ErrExist}
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), "."+filepath.Base(dir)+".tmp-")
	if err != nil {
		return err
	}
	err = os.CopyFS(tmp, files)
	if err == nil {
		err = os.Rename(tmp, dir)
	}
	if err != nil {
		return errors.Join(err, os.RemoveAll(tmp))
	}
	return nil
}
