package repository

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hotkernel/hotkernel/code"
	"github.com/hotkernel/hotkernel/examples/kernels"
)

func sum(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

func wasmManifest(b []byte) Manifest {
	return Manifest{Format: "wasm", Entry: "hk_process", ABIVersion: 1, SHA256: sum(b)}
}

// writeVersion writes REPO/id/ver with artifact b (if not nil) and a
// manifest (raw JSON when manifest is a string, else marshalled).
func writeVersion(t *testing.T, dir, id, ver string, b []byte, manifest any) {
	t.Helper()
	vd := filepath.Join(dir, id, ver)
	if err := os.MkdirAll(vd, 0o755); err != nil {
		t.Fatal(err)
	}
	if b != nil {
		if err := os.WriteFile(filepath.Join(vd, "kernel.wasm"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var data []byte
	switch m := manifest.(type) {
	case nil:
		return
	case string:
		data = []byte(m)
	case Manifest:
		var err error
		if data, err = m.Marshal(); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(vd, ManifestFile), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func open(t *testing.T, dir string) *Repo {
	t.Helper()
	r, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func scan(t *testing.T, r *Repo) *Snapshot {
	t.Helper()
	s, err := r.Scan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func kernel(t *testing.T, s *Snapshot, id string) *Kernel {
	t.Helper()
	k, ok := s.Kernel(id)
	if !ok {
		t.Fatalf("kernel %s not in snapshot", id)
	}
	return k
}

func version(t *testing.T, k *Kernel, name string) *Version {
	t.Helper()
	for i := range k.Versions {
		if k.Versions[i].Name == name {
			return &k.Versions[i]
		}
	}
	t.Fatalf("kernel %s: no version %s", k.ID, name)
	return nil
}

func wantState(t *testing.T, v *Version, st State, target error, substr string) {
	t.Helper()
	if v.State != st {
		t.Fatalf("version %s: state %s (%v), want %s", v.Name, v.State, v.Err, st)
	}
	if target != nil && !errors.Is(v.Err, target) {
		t.Fatalf("version %s: error %v, want %v", v.Name, v.Err, target)
	}
	if substr != "" && !strings.Contains(v.Reason, substr) {
		t.Fatalf("version %s: reason %q does not contain %q", v.Name, v.Reason, substr)
	}
}

func TestScanStates(t *testing.T) {
	dir := t.TempDir()
	v1, v2 := kernels.Wasm("counter_v1"), kernels.Wasm("counter_v2")
	writeVersion(t, dir, "counter", "1", v1, wasmManifest(v1))
	writeVersion(t, dir, "counter", "2", v2, wasmManifest(v2))
	writeVersion(t, dir, "counter", "3", v2[:len(v2)/2], wasmManifest(v2)) // half-copied
	writeVersion(t, dir, "counter", "4", v2, nil)                          // manifest missing
	writeVersion(t, dir, "counter", "5", nil, wasmManifest(v2))            // artifact missing
	writeVersion(t, dir, "counter", "6", v2, "{\n  \"format\": \"wasm\",\n  \"entry\" \"hk_process\"\n}")
	writeVersion(t, dir, "counter", "7", v2, `{"format":"wasm","entry":"hk_process","abi_version":1,"sha256":"`+sum(v2)+`","colour":"red"}`)
	bad := wasmManifest(v2)
	bad.Format = "fortran"
	writeVersion(t, dir, "counter", "8", v2, bad)
	bad = wasmManifest(v2)
	bad.ABIVersion = 2
	writeVersion(t, dir, "counter", "9", v2, bad)
	bad = wasmManifest(v2)
	bad.SHA256 = "xyz"
	writeVersion(t, dir, "counter", "10", v2, bad)
	garbage := []byte("this is not a wasm module")
	writeVersion(t, dir, "counter", "11", garbage, wasmManifest(garbage))
	writeVersion(t, dir, "counter", "012", v2, wasmManifest(v2))
	writeVersion(t, dir, "counter", "v3", v2, wasmManifest(v2))
	writeVersion(t, dir, "counter", ".put-13-abc", v2, wasmManifest(v2)) // hidden: ignored
	writeVersion(t, dir, "counter", "12", v2, `{"format":"wasm","entry":"hk_process","abi_version":"1","sha256":"`+sum(v2)+`"}`)

	s := scan(t, open(t, dir))
	k := kernel(t, s, "counter")
	if k.Selected != 2 {
		t.Fatalf("selected %d, want 2 (problems %v)", k.Selected, k.Problems)
	}
	if len(k.Problems) != 0 {
		t.Errorf("problems: %v", k.Problems)
	}
	wantState(t, version(t, k, "1"), Complete, nil, "")
	c := version(t, k, "2")
	wantState(t, c, Complete, nil, "")
	if c.SHA256 != sum(v2) || c.Size != int64(len(v2)) || c.ModTime.IsZero() || c.Manifest == nil || c.Path != filepath.Join(dir, "counter", "2") {
		t.Errorf("complete version fields: %+v", c)
	}
	h := version(t, k, "3")
	wantState(t, h, Incomplete, ErrSHA256Mismatch, sum(v2))
	var me *SHA256MismatchError
	if !errors.As(h.Err, &me) || me.Expected != sum(v2) || me.Actual != sum(v2[:len(v2)/2]) || me.Size != int64(len(v2)/2) {
		t.Errorf("mismatch error: %#v", h.Err)
	}
	wantState(t, version(t, k, "4"), Incomplete, ErrManifestMissing, "counter/4/kernel.json")
	wantState(t, version(t, k, "5"), Incomplete, ErrArtifactMissing, "counter/5/kernel.wasm")
	wantState(t, version(t, k, "6"), Invalid, ErrInvalidManifest, "counter/6/kernel.json:3:11:")
	wantState(t, version(t, k, "7"), Invalid, ErrInvalidManifest, `field colour: unknown field`)
	if !strings.Contains(version(t, k, "7").Reason, "kernel.json:1:") {
		t.Errorf("unknown field without position: %s", version(t, k, "7").Reason)
	}
	wantState(t, version(t, k, "8"), Invalid, ErrInvalidManifest, "field format")
	wantState(t, version(t, k, "9"), Invalid, ErrInvalidManifest, "field abi_version")
	wantState(t, version(t, k, "10"), Invalid, ErrInvalidManifest, "field sha256")
	g := version(t, k, "11")
	wantState(t, g, Invalid, ErrInvalidArtifact, "counter/11/kernel.wasm")
	var ce *code.Error
	if !errors.As(g.Err, &ce) {
		t.Errorf("code.Validate failure does not carry a *code.Error: %v", g.Err)
	}
	wantState(t, version(t, k, "12"), Invalid, ErrInvalidManifest, "kernel.json:1:")
	if !strings.Contains(version(t, k, "12").Reason, "field abi_version") {
		t.Errorf("type error without field: %s", version(t, k, "12").Reason)
	}
	wantState(t, version(t, k, "012"), Invalid, ErrInvalidVersion, "")
	wantState(t, version(t, k, "v3"), Invalid, ErrInvalidVersion, "")
	for _, v := range k.Versions {
		if strings.HasPrefix(v.Name, ".") {
			t.Errorf("hidden entry scanned: %s", v.Name)
		}
	}
	// Order: numbers ascending, invalid names last.
	var names []string
	for _, v := range k.Versions {
		names = append(names, v.Name)
	}
	if got := strings.Join(names, " "); got != "1 2 3 4 5 6 7 8 9 10 11 12 012 v3" {
		t.Errorf("order: %s", got)
	}
}

func writePolicy(t *testing.T, dir, id, data string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, id, PolicyFile), []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestPolicy(t *testing.T) {
	dir := t.TempDir()
	v1, v2 := kernels.Wasm("counter_v1"), kernels.Wasm("counter_v2")
	for _, id := range []string{"latest", "pin1", "pinincomplete", "pinmissing", "badpolicy", "none"} {
		writeVersion(t, dir, id, "1", v1, wasmManifest(v1))
		writeVersion(t, dir, id, "2", v2, wasmManifest(v2))
		writeVersion(t, dir, id, "3", v2[:10], wasmManifest(v2))
	}
	writePolicy(t, dir, "latest", `{"policy":"latest"}`)
	writePolicy(t, dir, "pin1", `{"policy":"pinned","version":1}`)
	writePolicy(t, dir, "pinincomplete", `{"policy":"pinned","version":3}`)
	writePolicy(t, dir, "pinmissing", `{"policy":"pinned","version":9}`)
	writePolicy(t, dir, "badpolicy", `{"policy":"pinned"}`)
	os.Remove(filepath.Join(dir, "none", "2", "kernel.wasm"))
	os.Remove(filepath.Join(dir, "none", "1", "kernel.json"))

	s := scan(t, open(t, dir))
	for _, c := range []struct {
		id       string
		selected uint64
		problem  error
	}{
		{"latest", 2, nil},
		{"pin1", 1, nil},
		{"pinincomplete", 0, ErrSHA256Mismatch},
		{"pinmissing", 0, ErrNotFound},
		{"badpolicy", 0, ErrInvalidManifest},
		{"none", 0, nil},
	} {
		k := kernel(t, s, c.id)
		if k.Selected != c.selected {
			t.Errorf("%s: selected %d, want %d", c.id, k.Selected, c.selected)
		}
		switch {
		case c.problem == nil && len(k.Problems) != 0:
			t.Errorf("%s: problems %v", c.id, k.Problems)
		case c.problem != nil && (len(k.Problems) != 1 || !errors.Is(k.Problems[0], c.problem)):
			t.Errorf("%s: problems %v, want one wrapping %v", c.id, k.Problems, c.problem)
		}
	}
	if k := kernel(t, s, "pin1"); k.Policy != (Policy{Policy: PolicyPinned, Version: 1}) {
		t.Errorf("policy %+v", k.Policy)
	}
	if k := kernel(t, s, "none"); k.Policy.Policy != PolicyLatest {
		t.Errorf("default policy %+v", k.Policy)
	}
}

func TestPathSafety(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir()
	v1 := kernels.Wasm("counter_v1")
	writeVersion(t, outside, "evil", "1", v1, wasmManifest(v1))
	writeVersion(t, dir, "good", "1", v1, wasmManifest(v1))
	// A kernel directory that is a link to outside.
	if err := os.Symlink(filepath.Join(outside, "evil"), filepath.Join(dir, "linked")); err != nil {
		t.Fatal(err)
	}
	// A version directory that is a link to outside.
	if err := os.Symlink(filepath.Join(outside, "evil", "1"), filepath.Join(dir, "good", "2")); err != nil {
		t.Fatal(err)
	}
	// An artifact and a manifest that are links to outside.
	writeVersion(t, dir, "good", "3", nil, wasmManifest(v1))
	os.Symlink(filepath.Join(outside, "evil", "1", "kernel.wasm"), filepath.Join(dir, "good", "3", "kernel.wasm"))
	os.MkdirAll(filepath.Join(dir, "good", "4"), 0o755)
	os.Symlink(filepath.Join(outside, "evil", "1", "kernel.json"), filepath.Join(dir, "good", "4", "kernel.json"))
	// A manifest naming an artifact outside.
	writeVersion(t, dir, "good", "5", v1, `{"format":"wasm","entry":"hk_process","abi_version":1,"artifact":"../../../evil/1/kernel.wasm","sha256":"`+sum(v1)+`"}`)
	// A policy that is a link.
	os.Symlink(filepath.Join(outside, "p.json"), filepath.Join(dir, "good", PolicyFile))
	os.WriteFile(filepath.Join(outside, "p.json"), []byte(`{"policy":"pinned","version":2}`), 0o644)
	// A name that is not an ID.
	os.MkdirAll(filepath.Join(dir, "_bad"), 0o755)

	r := open(t, dir)
	s := scan(t, r)
	if _, ok := s.Kernel("linked"); ok {
		t.Error("linked kernel directory scanned")
	}
	if len(s.Problems) != 2 || !errors.Is(s.Problems[0], ErrInvalidID) || !errors.Is(s.Problems[1], ErrUnsafePath) {
		t.Errorf("repository problems: %v", s.Problems)
	}
	k := kernel(t, s, "good")
	wantState(t, version(t, k, "1"), Complete, nil, "")
	wantState(t, version(t, k, "2"), Invalid, ErrUnsafePath, "symbolic link")
	wantState(t, version(t, k, "3"), Invalid, ErrUnsafePath, "symbolic link")
	wantState(t, version(t, k, "4"), Invalid, ErrUnsafePath, "symbolic link")
	wantState(t, version(t, k, "5"), Invalid, ErrInvalidManifest, "field artifact")
	if k.Selected != 0 || len(k.Problems) != 1 || !errors.Is(k.Problems[0], ErrUnsafePath) {
		t.Errorf("linked policy: selected %d, problems %v", k.Selected, k.Problems)
	}

	ctx := context.Background()
	for _, id := range []string{"..", ".", "a/b", "/etc", "../evil", "", strings.Repeat("a", 129), "a\\b"} {
		if _, _, err := r.Load(ctx, id, 1); !errors.Is(err, ErrInvalidID) {
			t.Errorf("Load(%q): %v", id, err)
		}
		if err := r.Put(ctx, id, 1, v1, wasmManifest(v1)); !errors.Is(err, ErrInvalidID) {
			t.Errorf("Put(%q): %v", id, err)
		}
	}
	if _, _, err := r.Load(ctx, "linked", 1); !errors.Is(err, ErrUnsafePath) {
		t.Errorf("Load through linked kernel: %v", err)
	}
	for _, n := range []uint64{2, 3, 4} {
		if _, _, err := r.Load(ctx, "good", n); !errors.Is(err, ErrUnsafePath) {
			t.Errorf("Load(good, %d): %v", n, err)
		}
	}
	if err := r.Put(ctx, "linked", 7, v1, wasmManifest(v1)); !errors.Is(err, ErrUnsafePath) {
		t.Errorf("Put through linked kernel: %v", err)
	}
	if _, err := os.Stat(filepath.Join(outside, "evil", "7")); err == nil {
		t.Error("Put wrote outside the repository")
	}
	m := wasmManifest(v1)
	m.Artifact = "../x.wasm"
	if err := r.Put(ctx, "good", 8, v1, m); !errors.Is(err, ErrInvalidManifest) {
		t.Errorf("Put with artifact ../x.wasm: %v", err)
	}
	if _, err := Open(filepath.Join(dir, "good", "1", "kernel.wasm"), Options{}); err == nil {
		t.Error("Open of a file succeeded")
	}
}

func TestPutLoad(t *testing.T) {
	dir := t.TempDir()
	r := open(t, dir)
	ctx := context.Background()
	v1, v2 := kernels.Wasm("counter_v1"), kernels.Wasm("counter_v2")

	m := wasmManifest(v1)
	m.SHA256 = "" // filled in by Put
	m.Metadata = map[string]string{"owner": "team-a"}
	m.Migration = &Migration{FromLayouts: []uint32{2}}
	if err := r.Put(ctx, "counter", 1, v1, m); err != nil {
		t.Fatal(err)
	}
	if err := r.Put(ctx, "counter", 1, v2, wasmManifest(v2)); !errors.Is(err, ErrExists) {
		t.Errorf("second Put: %v", err)
	}
	wrong := wasmManifest(v1)
	if err := r.Put(ctx, "counter", 2, v2, wrong); !errors.Is(err, ErrSHA256Mismatch) {
		t.Errorf("Put with wrong sha: %v", err)
	}
	garbage := []byte("garbage")
	if err := r.Put(ctx, "counter", 2, garbage, wasmManifest(garbage)); !errors.Is(err, ErrInvalidArtifact) {
		t.Errorf("Put of garbage: %v", err)
	}
	if err := r.Put(ctx, "counter", 0, v2, wasmManifest(v2)); !errors.Is(err, ErrInvalidVersion) {
		t.Errorf("Put of version 0: %v", err)
	}
	s := scan(t, r)
	k := kernel(t, s, "counter")
	if k.Selected != 1 || len(k.Versions) != 1 || k.Versions[0].State != Complete {
		t.Fatalf("after Put: %+v", k)
	}
	ents, _ := os.ReadDir(filepath.Join(dir, "counter"))
	if len(ents) != 1 {
		t.Errorf("staging directories left behind: %v", ents)
	}

	src, lm, err := r.Load(ctx, "counter", 1)
	if err != nil {
		t.Fatal(err)
	}
	if src.Format() != code.FormatWASM || src.Entry() != "hk_process" || src.SHA256Hex() != sum(v1) {
		t.Errorf("source: %v %q %s", src.Format(), src.Entry(), src.SHA256Hex())
	}
	md := src.Metadata()
	if md["name"] != "counter/1/kernel.wasm" || md["repository.version"] != "1" || md["owner"] != "team-a" {
		t.Errorf("metadata %v", md)
	}
	if lm.Migration == nil || lm.Migration.FromLayouts[0] != 2 || lm.SHA256 != sum(v1) {
		t.Errorf("manifest %+v", lm)
	}

	// A change after Scan is caught by Load.
	if err := os.WriteFile(filepath.Join(dir, "counter", "1", "kernel.wasm"), v2, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.Load(ctx, "counter", 1); !errors.Is(err, ErrSHA256Mismatch) {
		t.Errorf("Load after change: %v", err)
	}
	if _, _, err := r.Load(ctx, "counter", 5); !errors.Is(err, ErrNotFound) {
		t.Errorf("Load of missing version: %v", err)
	}
	if _, _, err := r.Load(ctx, "nobody", 1); !errors.Is(err, ErrNotFound) {
		t.Errorf("Load of missing kernel: %v", err)
	}
}

func TestDiff(t *testing.T) {
	dir := t.TempDir()
	r := open(t, dir)
	ctx := context.Background()
	v1, v2 := kernels.Wasm("counter_v1"), kernels.Wasm("counter_v2")
	for _, id := range []string{"a", "b", "c"} {
		if err := r.Put(ctx, id, 1, v1, wasmManifest(v1)); err != nil {
			t.Fatal(err)
		}
	}
	s1 := scan(t, r)
	if d := Diff(nil, s1); len(d) != 3 || d[0] != (Change{ID: "a", New: 1, NewSHA256: sum(v1)}) {
		t.Errorf("Diff(nil, s1) = %+v", d)
	}
	if d := Diff(s1, s1); len(d) != 0 {
		t.Errorf("Diff(s1, s1) = %+v", d)
	}
	// a: new version; b: removed; c: rewritten in place; d: added.
	if err := r.Put(ctx, "a", 2, v2, wasmManifest(v2)); err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(filepath.Join(dir, "b"))
	os.WriteFile(filepath.Join(dir, "c", "1", "kernel.wasm"), v2, 0o644)
	writeVersion(t, dir, "c", "1", v2, wasmManifest(v2))
	if err := r.Put(ctx, "d", 3, v2, wasmManifest(v2)); err != nil {
		t.Fatal(err)
	}
	s2 := scan(t, r)
	want := []Change{
		{ID: "a", Old: 1, New: 2, OldSHA256: sum(v1), NewSHA256: sum(v2)},
		{ID: "b", Old: 1, OldSHA256: sum(v1)},
		{ID: "c", Old: 1, New: 1, OldSHA256: sum(v1), NewSHA256: sum(v2)},
		{ID: "d", New: 3, NewSHA256: sum(v2)},
	}
	d := Diff(s1, s2)
	if len(d) != len(want) {
		t.Fatalf("Diff = %+v", d)
	}
	for i := range want {
		if d[i] != want[i] {
			t.Errorf("change %d = %+v, want %+v", i, d[i], want[i])
		}
	}
}

func TestManifestValidate(t *testing.T) {
	b := kernels.Wasm("counter_v1")
	for _, c := range []struct {
		name  string
		edit  func(*Manifest)
		field string
	}{
		{"ok", func(*Manifest) {}, ""},
		{"no format", func(m *Manifest) { m.Format = "" }, "format"},
		{"wrong entry", func(m *Manifest) { m.Entry = "main" }, "entry"},
		{"no abi", func(m *Manifest) { m.ABIVersion = 0 }, "abi_version"},
		{"no sha", func(m *Manifest) { m.SHA256 = "" }, "sha256"},
		{"short sha", func(m *Manifest) { m.SHA256 = m.SHA256[:63] }, "sha256"},
		{"queue", func(m *Manifest) { m.QueueCapacity = -1 }, "queue_capacity"},
		{"state", func(m *Manifest) { m.State = &StateLimits{MaxStateBytes: -1} }, "state.max_state_bytes"},
		{"empty migration", func(m *Manifest) { m.Migration = &Migration{} }, "migration.from_layouts"},
		{"dup layouts", func(m *Manifest) { m.Migration = &Migration{FromLayouts: []uint32{1, 1}} }, "migration.from_layouts[1]"},
		{"reserved metadata", func(m *Manifest) { m.Metadata = map[string]string{"name": "x"} }, "metadata.name"},
		{"hidden artifact", func(m *Manifest) { m.Artifact = ".k.wasm" }, "artifact"},
		{"manifest as artifact", func(m *Manifest) { m.Artifact = "kernel.json" }, "artifact"},
		{"ptx abi 2", func(m *Manifest) { m.Format, m.Entry, m.ABIVersion = "ptx", "k", 2 }, "abi_version"},
	} {
		m := wasmManifest(b)
		c.edit(&m)
		err := m.Validate()
		var me *ManifestError
		switch {
		case c.field == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.field != "" && (!errors.As(err, &me) || me.Field != c.field):
			t.Errorf("%s: error %v, want field %s", c.name, err, c.field)
		}
	}
	if _, err := ParseManifest("k.json", []byte(strings.Repeat(" ", MaxManifestBytes+1))); !errors.Is(err, ErrInvalidManifest) {
		t.Errorf("oversized manifest: %v", err)
	}
	if _, err := ParseManifest("k.json", []byte(`{"format":"wasm"} {}`)); err == nil || !strings.Contains(err.Error(), "k.json:1:") {
		t.Errorf("trailing data: %v", err)
	}
	if _, err := ParseManifest("k.json", []byte(`[1]`)); !errors.Is(err, ErrInvalidManifest) {
		t.Errorf("array manifest: %v", err)
	}
}

func TestArtifactLimit(t *testing.T) {
	dir := t.TempDir()
	v1 := kernels.Wasm("counter_v1")
	writeVersion(t, dir, "k", "1", v1, wasmManifest(v1))
	r, err := Open(dir, Options{MaxArtifactBytes: int64(len(v1) - 1)})
	if err != nil {
		t.Fatal(err)
	}
	k := kernel(t, scan(t, r), "k")
	wantState(t, version(t, k, "1"), Invalid, ErrTooLarge, "")
	if err := r.Put(context.Background(), "k", 2, v1, wasmManifest(v1)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Put over limit: %v", err)
	}
}

func TestCheckIDAndVersion(t *testing.T) {
	for _, id := range []string{"a", "A.b_c-1", "9", strings.Repeat("x", 128)} {
		if err := CheckID(id); err != nil {
			t.Errorf("CheckID(%q): %v", id, err)
		}
	}
	for _, s := range []string{"1", "2", "10", "18446744073709551615"} {
		if _, err := ParseVersion(s); err != nil {
			t.Errorf("ParseVersion(%q): %v", s, err)
		}
	}
	for _, s := range []string{"0", "01", "-1", "+1", "1.0", "1 ", "18446744073709551616", ""} {
		if _, err := ParseVersion(s); !errors.Is(err, ErrInvalidVersion) {
			t.Errorf("ParseVersion(%q): %v", s, err)
		}
	}
}
