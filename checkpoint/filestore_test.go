package checkpoint

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"
)

// damage rewrites a stored checkpoint file in place; tests only.
func (s *FileStore) damage(t *testing.T, ref Ref, f func([]byte) []byte) {
	path := s.path(t, ref)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, f(b), 0o600); err != nil {
		t.Fatal(err)
	}
}

// path returns the file of a stored checkpoint.
func (s *FileStore) path(t *testing.T, ref Ref) string {
	t.Helper()
	l, err := scan(s.kernelDir(ref.KernelID))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range l.files {
		if e.seq == ref.Seq {
			return filepath.Join(l.dir, e.name)
		}
	}
	t.Fatalf("no file for %+v", ref)
	return ""
}

func openStore(t *testing.T, dir string, opts Options) *FileStore {
	t.Helper()
	s, err := OpenFileStore(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// files returns the paths of all files under dir, relative to it.
func files(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestFileStoreLayout(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, Options{})
	c := sample()
	c.CodeVersion = 42
	save(t, s, c)
	save(t, s, c)
	want := []string{
		"matmul%2ftile-64/00000000000000000001-v42.hkcp",
		"matmul%2ftile-64/00000000000000000002-v42.hkcp",
	}
	if got := files(t, dir); !slices.Equal(got, want) {
		t.Fatalf("files %q, want %q", got, want)
	}
	b, err := os.ReadFile(filepath.Join(dir, want[0]))
	if err != nil || !bytes.Equal(b, mustEncode(t, c)) {
		t.Fatalf("file does not hold the encoding: %v", err)
	}
	fi, err := os.Stat(filepath.Join(dir, want[0]))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v, %v", fi.Mode(), err)
	}
	if s.Dir() != dir {
		t.Errorf("Dir() = %q", s.Dir())
	}
}

func TestFileStoreTempFiles(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openStore(t, dir, Options{})
	save(t, s, ckpt("k", 1))
	kdir := filepath.Join(dir, "k")
	// What a crash during Save leaves: a partial checkpoint under a
	// temporary name, newer than everything else.
	partial := mustEncode(t, ckpt("k", 2))[:100]
	tmp := filepath.Join(kdir, tempPrefix+"123456")
	if err := os.WriteFile(tmp, partial, 0o600); err != nil {
		t.Fatal(err)
	}
	if list, err := s.List(ctx, "k"); err != nil || len(list) != 1 {
		t.Fatalf("List = %v, %v", seqs(list), err)
	}
	if _, ref, err := s.Latest(ctx, "k"); err != nil || ref.Seq != 1 {
		t.Fatalf("Latest = %d, %v", ref.Seq, err)
	}
	if n, err := s.Prune(ctx, "k", 5); n != 0 || err != nil {
		t.Fatalf("Prune = %d, %v", n, err)
	}
	if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Prune left the temporary file: %v", err)
	}

	// Opening the store cleans up as well.
	if err := os.WriteFile(tmp, partial, 0o600); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, dir, Options{})
	if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("OpenFileStore left the temporary file: %v", err)
	}
	if ref := save(t, s, ckpt("k", 3)); ref.Seq != 2 {
		t.Fatalf("Seq %d", ref.Seq)
	}
}

func TestFileStoreForeignFiles(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openStore(t, dir, Options{})
	save(t, s, ckpt("k", 1))
	kdir := filepath.Join(dir, "k")
	for _, name := range []string{
		"README", "1-v1.hkcp", "00000000000000000009-v01.hkcp", "00000000000000000000-v1.hkcp",
		"0000000000000000000x-v1.hkcp", "00000000000000000009-v1.hkcp~", "9.seq", "00000000000000000000.seq",
	} {
		if err := os.WriteFile(filepath.Join(kdir, name), []byte("not mine"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(kdir, "00000000000000000010-v1.hkcp"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "stray-file"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"not%2", "%41", "x!", "a~"} { // no kernel ID escapes to these
		if err := os.MkdirAll(filepath.Join(dir, name), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name, "00000000000000000001-v1.hkcp"), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	list, err := s.List(ctx, "k")
	if err != nil || !slices.Equal(seqs(list), []uint64{1}) {
		t.Fatalf("List = %v, %v", seqs(list), err)
	}
	if ref := save(t, s, ckpt("k", 2)); ref.Seq != 2 {
		t.Fatalf("Seq %d: foreign names changed the numbering", ref.Seq)
	}
	if n, err := s.Prune(ctx, "k", 0); n != 2 || err != nil {
		t.Fatalf("Prune = %d, %v", n, err)
	}
	if _, err := os.Stat(filepath.Join(kdir, "README")); err != nil {
		t.Fatalf("Prune removed a foreign file: %v", err)
	}
	if ids, err := s.Kernels(ctx); err != nil || len(ids) != 0 {
		t.Fatalf("Kernels = %q, %v", ids, err)
	}
}

func TestFileStoreWrongVersionName(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openStore(t, dir, Options{})
	ref := save(t, s, ckpt("k", 1)) // code version 1
	old := s.path(t, ref)
	if err := os.Rename(old, filepath.Join(filepath.Dir(old), checkpointName(1, 9))); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Latest(ctx, "k"); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "code version 1 stored as version 9") {
		t.Fatalf("Latest: %v", err)
	}
	if _, err := s.List(ctx, "k"); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("List: %v", err)
	}
}

func TestFileStoreTruncatedUnderFinalName(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openStore(t, dir, Options{})
	save(t, s, ckpt("k", 1))
	ref := save(t, s, ckpt("k", 2))
	path := s.path(t, ref)
	if err := os.Truncate(path, 77); err != nil {
		t.Fatal(err)
	}
	c, got, err := s.Latest(ctx, "k")
	var d DamagedError
	if c == nil || got.Seq != 1 || !errors.As(err, &d) || d[0].Path != path || !errors.Is(err, ErrTruncated) {
		t.Fatalf("Latest = %d, %v", got.Seq, err)
	}
	if !strings.HasPrefix(err.Error(), path+": checkpoint truncated at byte 77: ") {
		t.Errorf("message %q", err)
	}
	// The numbering does not reuse the damaged checkpoint's number.
	if ref := save(t, s, ckpt("k", 3)); ref.Seq != 3 {
		t.Fatalf("Seq %d", ref.Seq)
	}
}

func TestFileStoreKernelIDsStayInside(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	dir := filepath.Join(root, "store")
	s := openStore(t, dir, Options{})
	ids := oddKernelIDs()
	for i, id := range ids {
		save(t, s, ckpt(id, i))
	}
	all := files(t, root)
	if len(all) != len(ids) {
		t.Fatalf("%d files for %d kernels: %q", len(all), len(ids), all)
	}
	seen := map[string]bool{}
	for _, f := range all {
		parts := strings.Split(f, "/")
		if len(parts) != 3 || parts[0] != "store" {
			t.Fatalf("file %q is not at store/KERNEL/FILE", f)
		}
		seen[strings.ToLower(parts[1])] = true
	}
	if len(seen) != len(ids) {
		t.Fatalf("kernel directories collide when case is ignored")
	}
	got, err := s.Kernels(ctx)
	if err != nil || !slices.Equal(got, slices.Sorted(slices.Values(ids))) {
		t.Fatalf("Kernels = %q, %v", got, err)
	}
}

func TestEscapeKernelID(t *testing.T) {
	for id, want := range map[string]string{
		"matmul":       "matmul",
		"a.b-c_d":      "a.b-c_d",
		"MatMul":       "!mat!mul",
		"/":            "%2f",
		".":            "%2e",
		"..":           "%2e%2e",
		"...":          "%2e.%2e",
		"a/../b":       "a%2f..%2fb",
		"con":          "%63on",
		"con.txt":      "%63on.txt",
		"CON":          "!c!o!n",
		"com1":         "%63om1",
		"com10":        "com10",
		"console":      "console",
		"é":            "%c3%a9",
		"%":            "%25",
		"!":            "%21",
		"~":            "%7e",
		"space name":   "space%20name",
		"trailing.":    "trailing%2e",
		`C:\windows`:   "!c%3a%5cwindows",
		"\u00a0":       "%c2%a0",
		"lpt9.x":       "%6cpt9.x",
		"nul.tar.gz":   "%6eul.tar.gz",
		"auxiliary":    "auxiliary",
		"prn.":         "prn%2e",
		"0123456789":   "0123456789",
		"kernel.v2.bf": "kernel.v2.bf",
	} {
		if got := escapeKernelID(id); got != want {
			t.Errorf("escapeKernelID(%q) = %q, want %q", id, got, want)
		}
		if got, ok := unescapeKernelID(want); !ok || got != id {
			t.Errorf("unescapeKernelID(%q) = %q, %v", want, got, ok)
		}
	}
	long := strings.Repeat("é", 128)
	name := escapeKernelID(long)
	sum := sha256.Sum256([]byte(long))
	if want := strings.Repeat("%c3%a9", 13) + "~" + hex.EncodeToString(sum[:16]); name != want {
		t.Errorf("long name %q, want %q", name, want)
	}
	if _, ok := unescapeKernelID(name); ok {
		t.Errorf("a hashed name unescaped")
	}
	for _, bad := range []string{"", "!", "!A", "%", "%4", "%zz", "%2E", "A", "a/b", ".x", "x.", "%2e.", "con", "%00", "%ff"} {
		if id, ok := unescapeKernelID(bad); ok {
			t.Errorf("unescapeKernelID(%q) = %q; nothing escapes to it", bad, id)
		}
	}
}

// FuzzEscapeKernelID checks that escaped names are single safe path
// elements and distinct.
func FuzzEscapeKernelID(f *testing.F) {
	for _, id := range oddKernelIDs() {
		f.Add(id, strings.ToUpper(id))
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		if kernelIDProblem(a) != "" {
			return
		}
		na := escapeKernelID(a)
		if na == "" || na == "." || na == ".." || len(na) > maxDirName || strings.ContainsAny(na, `/\:`) ||
			na[0] == '.' || na[len(na)-1] == '.' || windowsDevice(na) || strings.ToLower(na) != na || !utf8.ValidString(na) {
			t.Fatalf("escapeKernelID(%q) = %q is not a safe name", a, na)
		}
		if id, ok := unescapeKernelID(na); ok && id != a || !ok && !hashedName(na) {
			t.Fatalf("unescapeKernelID(escapeKernelID(%q)) = %q, %v", a, id, ok)
		}
		if kernelIDProblem(b) == "" && a != b && escapeKernelID(b) == na {
			t.Fatalf("%q and %q both escape to %q", a, b, na)
		}
	})
}

func TestEscapeDistinct(t *testing.T) {
	seen := map[string]string{}
	add := func(id string) {
		n := strings.ToLower(escapeKernelID(id))
		if prev, ok := seen[n]; ok && prev != id {
			t.Fatalf("%q and %q map to %q", prev, id, n)
		}
		seen[n] = id
	}
	for _, id := range oddKernelIDs() {
		add(id)
	}
	for c := range 256 {
		if c != 0 {
			add(string([]byte{byte(c)}))
			add("a" + string([]byte{byte(c)}) + "a")
		}
	}
}

// countdownCtx is a context whose Err turns to Canceled after a number of
// calls, to cancel a Save midway.
type countdownCtx struct {
	context.Context
	left atomic.Int64
}

func (c *countdownCtx) Err() error {
	if c.left.Add(-1) < 0 {
		return context.Canceled
	}
	return nil
}

func TestFileStoreCanceledMidSave(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, Options{})
	save(t, s, ckpt("k", 1))
	c := ckpt("k", 2)
	c.State = make([]byte, 8<<20) // written in eight pieces, each after a check
	for calls := int64(1); calls < 20; calls++ {
		ctx := &countdownCtx{Context: context.Background()}
		ctx.left.Store(calls)
		ref, err := s.Save(ctx, c)
		if err == nil {
			if ref.Seq == 0 {
				t.Fatal("Save succeeded without a Ref")
			}
			break
		}
		if !errors.Is(err, context.Canceled) || ref != (Ref{}) {
			t.Fatalf("after %d checks: %+v, %v", calls, ref, err)
		}
		for _, f := range files(t, dir) {
			if strings.Contains(f, tempPrefix) {
				t.Fatalf("after %d checks: a canceled Save left %s", calls, f)
			}
		}
		if list, err := s.List(context.Background(), "k"); err != nil || len(list) != 1 {
			t.Fatalf("after %d checks: List = %v, %v", calls, seqs(list), err)
		}
	}
	c2, ref, err := s.Latest(context.Background(), "k")
	if err != nil || diff(c2, c) != "" {
		t.Fatalf("Latest = %+v, %v", ref, err)
	}
}

func TestFileStoreSaveFailsCleanly(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, Options{})
	// A file where the kernel's directory should be.
	if err := os.WriteFile(filepath.Join(dir, "k"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if ref, err := s.Save(context.Background(), ckpt("k", 1)); err == nil || ref != (Ref{}) {
		t.Fatalf("Save = %+v, %v", ref, err)
	}
}

func TestFileStoreRetentionError(t *testing.T) {
	// Retention runs after the checkpoint is in place, so when only the
	// pruning fails, Save returns a valid Ref with the error.
	dir := t.TempDir()
	s := openStore(t, dir, Options{Keep: 1})
	save(t, s, ckpt("k", 1))
	seen := false
	for calls := int64(1); calls < 20 && !seen; calls++ {
		ctx := &countdownCtx{Context: context.Background()}
		ctx.left.Store(calls)
		c := ckpt("k", int(calls))
		ref, err := s.Save(ctx, c)
		switch {
		case err == nil:
			continue // canceled just before retention, which was skipped
		case ref.Seq == 0:
			continue // canceled before the checkpoint was in place
		}
		seen = true
		if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "retention failed") {
			t.Fatalf("Save = %+v, %v", ref, err)
		}
		got, err := s.Load(context.Background(), ref)
		if err != nil || diff(got, c) != "" {
			t.Fatalf("the checkpoint of a Save whose retention failed: %v", err)
		}
	}
	if !seen {
		t.Fatal("no retention failure seen")
	}
	// The next successful Save prunes what the failed one left.
	save(t, s, ckpt("k", 99))
	if list, _ := s.List(context.Background(), "k"); len(list) != 1 {
		t.Fatalf("List = %v", seqs(list))
	}
}

func TestFileStoreMarks(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openStore(t, dir, Options{})
	for round := range 3 {
		for i := range 2 {
			save(t, s, ckpt("k", i))
		}
		if _, err := s.Prune(ctx, "k", 0); err != nil {
			t.Fatal(err)
		}
		s = openStore(t, dir, Options{})
		got := files(t, dir)
		want := []string{"k/" + markName(uint64(2*round+2))}
		if !slices.Equal(got, want) {
			t.Fatalf("round %d: files %q, want %q", round, got, want)
		}
	}
	if ref := save(t, s, ckpt("k", 9)); ref.Seq != 7 {
		t.Fatalf("Seq %d, want 7", ref.Seq)
	}
}

func TestFileStoreListCreated(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, Options{})
	c := ckpt("k", 1)
	c.Created = time.Date(2030, 1, 2, 3, 4, 5, 6, time.FixedZone("E", 3*3600))
	ref := save(t, s, c)
	list, err := openStore(t, dir, Options{}).List(context.Background(), "k")
	if err != nil || len(list) != 1 || list[0] != ref || !list[0].Created.Equal(c.Created) || list[0].Created.Location() != time.UTC {
		t.Fatalf("List = %+v, %v; Save gave %+v", list, err, ref)
	}
}
