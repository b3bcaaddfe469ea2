package repository

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hotkernel/hotkernel/code"
)

// Default limits; see Options.
const (
	DefaultMaxArtifactBytes = 256 << 20
	DefaultMaxEntries       = 10000
)

// Options tune a Repo. The zero value selects the defaults.
type Options struct {
	// MaxArtifactBytes is the largest artifact Scan, Load and Put accept;
	// 0 means DefaultMaxArtifactBytes. A larger artifact makes its version
	// Invalid with ErrTooLarge.
	MaxArtifactBytes int64
	// MaxEntries is the most entries read from one directory (the
	// repository or a kernel directory); 0 means DefaultMaxEntries. Beyond
	// it Scan reports a problem and ignores the rest.
	MaxEntries int
}

// Repo is a kernel repository directory. It holds no open files and no
// cached state, so it is safe for concurrent use; every method reads the
// disk afresh. Concurrent Puts of the same version are safe: at most one
// succeeds, the others fail with ErrExists.
type Repo struct {
	dir  string
	opts Options
}

// Open returns the repository at dir, which must exist and be a directory
// (it may itself be reached through a symbolic link; links inside it are
// never followed). opts may be the zero Options.
func Open(dir string, opts Options) (*Repo, error) {
	if dir == "" {
		return nil, errors.New("repository: empty directory name")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("repository: %w", err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("repository: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("repository: %s is not a directory", abs)
	}
	if opts.MaxArtifactBytes <= 0 {
		opts.MaxArtifactBytes = DefaultMaxArtifactBytes
	}
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = DefaultMaxEntries
	}
	return &Repo{dir: abs, opts: opts}, nil
}

// Dir returns the repository's absolute directory.
func (r *Repo) Dir() string { return r.dir }

// validID matches the kernel ID rule of the root package's CheckID: 1 to
// 128 letters, digits, '.', '_' or '-', starting with a letter or digit.
// The two must stay the same.
var validID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// CheckID returns an error wrapping ErrInvalidID unless id is a valid
// kernel ID: 1 to 128 letters, digits, '.', '_' or '-', starting with a
// letter or digit (the same rule as hotkernel.CheckID). Such an ID is a
// safe single path element: no separator, never "." or "..".
func CheckID(id string) error {
	if !validID.MatchString(id) {
		return fmt.Errorf("%w %q: want 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit", ErrInvalidID, truncate(id, 140))
	}
	return nil
}

// ParseVersion parses a version directory name: a positive decimal
// integer without leading zeros or sign that fits in a uint64. Any other
// name is an error wrapping ErrInvalidVersion.
func ParseVersion(name string) (uint64, error) {
	bad := func() (uint64, error) {
		return 0, fmt.Errorf("%w: directory name %q is not a positive integer without leading zeros", ErrInvalidVersion, truncate(name, 140))
	}
	if name == "" || name[0] < '1' || name[0] > '9' {
		return bad()
	}
	for i := 0; i < len(name); i++ {
		if name[i] < '0' || name[i] > '9' {
			return bad()
		}
	}
	n, err := strconv.ParseUint(name, 10, 64)
	if err != nil {
		return bad()
	}
	return n, nil
}

// State is the state of one version directory.
type State uint8

// The version states.
const (
	// Invalid: something is wrong that completing a copy will not fix (a
	// bad directory name, a bad manifest, an artifact that fails
	// code.Validate, a symbolic link, a file over its limit).
	Invalid State = iota
	// Incomplete: the manifest or the artifact is missing, or the
	// artifact's SHA-256 does not match the manifest yet.
	Incomplete
	// Complete: a valid manifest and a valid artifact whose SHA-256
	// matches it. Only complete versions are ever selected or loaded.
	Complete
)

// String returns "invalid", "incomplete" or "complete".
func (s State) String() string {
	switch s {
	case Invalid:
		return "invalid"
	case Incomplete:
		return "incomplete"
	case Complete:
		return "complete"
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// Version is what Scan found in one version directory.
type Version struct {
	// Name is the directory's name; Number is its value, 0 when Name is
	// not a valid version (State is then Invalid).
	Name   string
	Number uint64
	State  State
	// Err is why the version is not complete (nil when it is): it wraps
	// one of the sentinel errors and may be a *ManifestError, a
	// *SHA256MismatchError or wrap a *code.Error. Reason is its text.
	Err    error
	Reason string
	// Manifest is the parsed manifest, nil when it is missing or invalid.
	Manifest *Manifest
	// Path is the version directory's absolute path.
	Path string
	// SHA256 (lower-case hex), Size and ModTime describe the artifact as
	// read; they are zero when it was not read.
	SHA256  string
	Size    int64
	ModTime time.Time
}

// Kernel is what Scan found in one kernel directory.
type Kernel struct {
	ID string
	// Policy is the kernel's version policy: policy.json's, or "latest"
	// when there is none. When policy.json is invalid Policy is its zero
	// value, nothing is selected and the error is among Problems.
	Policy Policy
	// Versions are sorted by Number ascending, with invalid names last in
	// lexical order.
	Versions []Version
	// Selected is the complete version the policy picks, 0 when none.
	Selected uint64
	// Problems are the kernel-level problems: a bad policy.json, a pin on
	// a version that is not complete, stray files, too many entries.
	Problems []error
}

// Version returns the version numbered n and whether there is one.
func (k *Kernel) Version(n uint64) (*Version, bool) {
	for i := range k.Versions {
		if k.Versions[i].Number == n && n != 0 {
			return &k.Versions[i], true
		}
	}
	return nil, false
}

// SelectedVersion returns the selected version, or nil when none is.
func (k *Kernel) SelectedVersion() *Version {
	v, _ := k.Version(k.Selected)
	return v
}

// Snapshot is the state of a whole repository as one Scan read it. It is
// a plain value: nothing in it changes after Scan returns, and it does
// not follow later changes on disk.
type Snapshot struct {
	// Kernels are sorted by ID.
	Kernels []Kernel
	// Problems are repository-level problems: entries whose names are not
	// kernel IDs, symbolic links, stray files, too many entries.
	Problems []error
}

// Kernel returns the kernel with the given ID and whether there is one.
func (s *Snapshot) Kernel(id string) (*Kernel, bool) {
	i, ok := slices.BinarySearchFunc(s.Kernels, id, func(k Kernel, id string) int { return strings.Compare(k.ID, id) })
	if !ok {
		return nil, false
	}
	return &s.Kernels[i], true
}

// root opens the repository directory as an os.Root: every path opened
// through it stays inside the repository whatever the links on disk say.
func (r *Repo) root() (*os.Root, error) {
	root, err := os.OpenRoot(r.dir)
	if err != nil {
		return nil, fmt.Errorf("repository: %w", err)
	}
	return root, nil
}

// readDir reads at most r.opts.MaxEntries entries of the directory name
// inside root, sorted by name; truncated reports that more were left.
func (r *Repo) readDir(root *os.Root, name string) (ents []fs.DirEntry, truncated bool, err error) {
	f, err := root.Open(name)
	if err != nil {
		return nil, false, err
	}
	defer f.Close()
	ents, err = f.ReadDir(r.opts.MaxEntries + 1)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, false, err
	}
	if len(ents) > r.opts.MaxEntries {
		ents, truncated = ents[:r.opts.MaxEntries], true
	}
	slices.SortFunc(ents, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	return ents, truncated, nil
}

// Scan reads the whole repository once: every kernel directory, its
// policy, and every version with its manifest and artifact, which it
// hashes and validates with code.Validate. It returns an error only when
// the repository itself cannot be read or ctx ends; everything wrong
// inside it is reported in the Snapshot. Hidden entries (names starting
// with '.', such as Put's staging directories) are ignored.
//
// Scan reads each artifact whole (up to Options.MaxArtifactBytes), one
// at a time, so a repository of many large artifacts takes time to scan.
func (r *Repo) Scan(ctx context.Context) (*Snapshot, error) {
	root, err := r.root()
	if err != nil {
		return nil, err
	}
	defer root.Close()
	ents, truncated, err := r.readDir(root, ".")
	if err != nil {
		return nil, fmt.Errorf("repository: read %s: %w", r.dir, err)
	}
	snap := &Snapshot{}
	if truncated {
		snap.Problems = append(snap.Problems, fmt.Errorf("repository %s: more than %d entries; the rest are ignored", r.dir, r.opts.MaxEntries))
	}
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			continue
		}
		if err := CheckID(name); err != nil {
			snap.Problems = append(snap.Problems, fmt.Errorf("entry %q: %w", name, err))
			continue
		}
		fi, err := root.Lstat(name)
		if err != nil {
			snap.Problems = append(snap.Problems, fmt.Errorf("kernel %s: %w", name, err))
			continue
		}
		if !fi.IsDir() {
			snap.Problems = append(snap.Problems, fmt.Errorf("kernel %s: %w: %s is not a directory", name, ErrUnsafePath, describeMode(fi.Mode())))
			continue
		}
		k, err := r.scanKernel(ctx, root, name)
		if err != nil {
			return nil, err
		}
		snap.Kernels = append(snap.Kernels, k)
	}
	return snap, nil
}

// scanKernel reads one kernel directory; it fails only when ctx ends.
func (r *Repo) scanKernel(ctx context.Context, root *os.Root, id string) (Kernel, error) {
	k := Kernel{ID: id, Policy: Policy{Policy: PolicyLatest}}
	ents, truncated, err := r.readDir(root, id)
	if err != nil {
		k.Problems = append(k.Problems, fmt.Errorf("kernel %s: %w", id, err))
		return k, nil
	}
	if truncated {
		k.Problems = append(k.Problems, fmt.Errorf("kernel %s: more than %d entries; the rest are ignored", id, r.opts.MaxEntries))
	}
	policyOK := true
	for _, e := range ents {
		if err := ctx.Err(); err != nil {
			return Kernel{}, err
		}
		name := e.Name()
		switch {
		case strings.HasPrefix(name, "."):
			continue
		case name == PolicyFile:
			p, err := r.readPolicy(root, id)
			if err != nil {
				k.Policy, policyOK = Policy{}, false
				k.Problems = append(k.Problems, err)
				continue
			}
			k.Policy = *p
			continue
		}
		k.Versions = append(k.Versions, r.scanVersion(root, id, name))
	}
	slices.SortFunc(k.Versions, func(a, b Version) int {
		switch {
		case a.Number != 0 && b.Number != 0:
			return cmpUint(a.Number, b.Number)
		case a.Number != 0:
			return -1
		case b.Number != 0:
			return 1
		}
		return strings.Compare(a.Name, b.Name)
	})
	if policyOK {
		sel, err := k.Policy.pick(id, k.Versions)
		k.Selected = sel
		if err != nil {
			k.Problems = append(k.Problems, err)
		}
	}
	return k, nil
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// readPolicy reads and parses id/policy.json.
func (r *Repo) readPolicy(root *os.Root, id string) (*Policy, error) {
	rel := path.Join(id, PolicyFile)
	data, _, err := readRegular(root, rel, MaxManifestBytes)
	if err != nil {
		return nil, err
	}
	return ParsePolicy(rel, data)
}

// scanVersion checks one entry of a kernel directory as a version.
func (r *Repo) scanVersion(root *os.Root, id, name string) Version {
	v := Version{Name: name, Path: filepath.Join(r.dir, id, name)}
	n, err := ParseVersion(name)
	if err != nil {
		return v.fail(Invalid, fmt.Errorf("%s/%s: %w", id, name, err))
	}
	v.Number = n
	r.checkVersion(root, id, &v, nil)
	return v
}

// fail sets v's state and error.
func (v Version) fail(s State, err error) Version {
	v.State, v.Err, v.Reason = s, err, err.Error()
	return v
}

// checkVersion fills in v (whose Name, Number and Path are set) from the
// disk. When artifact is not nil it receives the artifact's bytes of a
// complete version.
func (r *Repo) checkVersion(root *os.Root, id string, v *Version, artifact *[]byte) {
	dir := path.Join(id, v.Name)
	fi, err := root.Lstat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		*v = v.fail(Invalid, fmt.Errorf("%s: %w", dir, ErrNotFound))
		return
	case err != nil:
		*v = v.fail(Invalid, err)
		return
	case !fi.IsDir():
		*v = v.fail(Invalid, fmt.Errorf("%s: %w: %s is not a directory", dir, ErrUnsafePath, describeMode(fi.Mode())))
		return
	}
	mpath := path.Join(dir, ManifestFile)
	data, _, err := readRegular(root, mpath, MaxManifestBytes)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		*v = v.fail(Incomplete, fmt.Errorf("%s: %w", mpath, ErrManifestMissing))
		return
	case err != nil:
		*v = v.fail(Invalid, err)
		return
	}
	m, err := ParseManifest(mpath, data)
	if err != nil {
		*v = v.fail(Invalid, err)
		return
	}
	v.Manifest = m
	apath := path.Join(dir, m.ArtifactName())
	b, afi, err := readRegular(root, apath, r.opts.MaxArtifactBytes)
	if afi != nil {
		v.Size, v.ModTime = afi.Size(), afi.ModTime()
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		*v = v.fail(Incomplete, fmt.Errorf("%s: %w", apath, ErrArtifactMissing))
		return
	case err != nil:
		*v = v.fail(Invalid, err)
		return
	}
	sum := sha256.Sum256(b)
	v.SHA256 = hex.EncodeToString(sum[:])
	if want, _ := m.SHA256Bytes(); want != sum {
		*v = v.fail(Incomplete, &SHA256MismatchError{File: apath, Expected: strings.ToLower(m.SHA256), Actual: v.SHA256, Size: int64(len(b))})
		return
	}
	f, _ := m.CodeFormat()
	src := code.New(f, b, m.Entry)
	if _, err := code.Validate(src, code.Options{Name: apath}); err != nil {
		*v = v.fail(Invalid, fmt.Errorf("%w: %w", ErrInvalidArtifact, err))
		return
	}
	v.State = Complete
	if artifact != nil {
		*artifact = b
	}
}

// describeMode names the kind of file a mode describes.
func describeMode(m fs.FileMode) string {
	switch {
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	case m.IsDir():
		return "a directory"
	case m.IsRegular():
		return "a regular file"
	}
	return "a special file (" + m.Type().String() + ")"
}

// readRegular reads the file name inside root, which must be a regular
// file and not a symbolic link, of at most limit bytes. The returned info
// is the open file's (nil when it could not be opened). A missing file is
// an error wrapping fs.ErrNotExist.
func readRegular(root *os.Root, name string, limit int64) ([]byte, fs.FileInfo, error) {
	li, err := root.Lstat(name)
	if err != nil {
		return nil, nil, err
	}
	if !li.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("%s: %w: %s, not a regular file", name, ErrUnsafePath, describeMode(li.Mode()))
	}
	f, err := root.Open(name)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	// The file opened must be the one checked: a link swapped in between
	// is caught here.
	if !fi.Mode().IsRegular() || !os.SameFile(li, fi) {
		return nil, nil, fmt.Errorf("%s: %w: replaced while being opened", name, ErrUnsafePath)
	}
	if fi.Size() > limit {
		return nil, fi, fmt.Errorf("%s: %w: %d bytes, over the limit of %d", name, ErrTooLarge, fi.Size(), limit)
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fi, fmt.Errorf("%s: %w", name, err)
	}
	if int64(len(b)) > limit {
		return nil, fi, fmt.Errorf("%s: %w: over the limit of %d bytes", name, ErrTooLarge, limit)
	}
	return b, fi, nil
}

// Load re-reads version of kernel id from the disk, checks it as Scan
// does (manifest, SHA-256 of the artifact, code.Validate), and returns it
// as a code.Source with the manifest. An artifact changed since a Scan is
// therefore caught, never returned. The Source's metadata is the
// manifest's plus "name" ("<id>/<version>/<artifact>") and
// "repository.version" ("<version>"); its creation time is the artifact's
// modification time.
//
// Errors: ErrInvalidID, ErrInvalidVersion (version 0), ErrNotFound (no
// such kernel or version directory), and for a version that is not
// complete the error Scan would report for it (ErrManifestMissing,
// ErrSHA256Mismatch, ErrInvalidManifest, ...).
func (r *Repo) Load(ctx context.Context, id string, version uint64) (*code.Source, *Manifest, error) {
	if err := CheckID(id); err != nil {
		return nil, nil, fmt.Errorf("load: %w", err)
	}
	if version == 0 {
		return nil, nil, fmt.Errorf("load %s: %w: 0", id, ErrInvalidVersion)
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	root, err := r.root()
	if err != nil {
		return nil, nil, err
	}
	defer root.Close()
	fi, err := root.Lstat(id)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, nil, fmt.Errorf("load %s: kernel %w", id, ErrNotFound)
	case err != nil:
		return nil, nil, fmt.Errorf("load %s: %w", id, err)
	case !fi.IsDir():
		return nil, nil, fmt.Errorf("load %s: %w: %s is not a directory", id, ErrUnsafePath, describeMode(fi.Mode()))
	}
	name := strconv.FormatUint(version, 10)
	v := Version{Name: name, Number: version, Path: filepath.Join(r.dir, id, name)}
	var b []byte
	r.checkVersion(root, id, &v, &b)
	if v.State != Complete {
		return nil, nil, fmt.Errorf("load %s version %d: %s: %w", id, version, v.State, v.Err)
	}
	m := v.Manifest
	f, _ := m.CodeFormat()
	src := code.New(f, b, m.Entry).WithCreated(v.ModTime)
	for k, val := range m.Metadata {
		src = src.WithMetadata(k, val)
	}
	src = src.WithMetadata("name", id+"/"+name+"/"+m.ArtifactName()).
		WithMetadata("repository.version", name)
	return src, m, nil
}

// Put publishes version of kernel id: it checks the arguments (a valid
// ID, a positive version, a valid manifest whose sha256 matches artifact
// — an empty SHA256 is filled in from artifact — and an artifact that
// passes code.Validate), then writes artifact and manifest into a hidden
// staging directory inside REPO/<id>/, syncs them, renames the directory
// to REPO/<id>/<version> and syncs the kernel directory. A crash leaves
// either no version or a complete one (and at worst a hidden staging
// directory, which Scan ignores). Put creates REPO/<id> when needed.
//
// Put never replaces a version: when REPO/<id>/<version> exists it fails
// with ErrExists. It does not change policy.json.
func (r *Repo) Put(ctx context.Context, id string, version uint64, artifact []byte, m Manifest) error {
	if err := CheckID(id); err != nil {
		return fmt.Errorf("put: %w", err)
	}
	if version == 0 {
		return fmt.Errorf("put %s: %w: 0", id, ErrInvalidVersion)
	}
	name := strconv.FormatUint(version, 10)
	where := id + "/" + name
	if int64(len(artifact)) > r.opts.MaxArtifactBytes {
		return fmt.Errorf("put %s: %w: %d bytes, over the limit of %d", where, ErrTooLarge, len(artifact), r.opts.MaxArtifactBytes)
	}
	sum := sha256.Sum256(artifact)
	if m.SHA256 == "" {
		m.SHA256 = hex.EncodeToString(sum[:])
	}
	if err := m.Validate(); err != nil {
		err.(*ManifestError).File = where + "/" + ManifestFile
		return fmt.Errorf("put: %w", err)
	}
	if want, _ := m.SHA256Bytes(); want != sum {
		return fmt.Errorf("put: %w", &SHA256MismatchError{File: where + "/" + m.ArtifactName(), Expected: strings.ToLower(m.SHA256), Actual: hex.EncodeToString(sum[:]), Size: int64(len(artifact))})
	}
	f, _ := m.CodeFormat()
	if _, err := code.Validate(code.New(f, artifact, m.Entry), code.Options{Name: where + "/" + m.ArtifactName()}); err != nil {
		return fmt.Errorf("put: %w: %w", ErrInvalidArtifact, err)
	}
	mdata, err := m.Marshal()
	if err != nil {
		return fmt.Errorf("put %s: %w", where, err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	root, err := r.root()
	if err != nil {
		return err
	}
	defer root.Close()
	createdKernel := false
	switch err := root.Mkdir(id, 0o755); {
	case err == nil:
		createdKernel = true
	case !errors.Is(err, fs.ErrExist):
		return fmt.Errorf("put %s: %w", where, err)
	}
	if fi, err := root.Lstat(id); err != nil {
		return fmt.Errorf("put %s: %w", where, err)
	} else if !fi.IsDir() {
		return fmt.Errorf("put %s: %w: %s is %s", where, ErrUnsafePath, id, describeMode(fi.Mode()))
	}
	if createdKernel {
		if err := syncDir(root, "."); err != nil {
			return fmt.Errorf("put %s: %w", where, err)
		}
	}
	if _, err := root.Lstat(where); err == nil {
		return fmt.Errorf("put %s: %w", where, ErrExists)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("put %s: %w", where, err)
	}

	var rnd [8]byte
	rand.Read(rnd[:])
	tmp := id + "/.put-" + name + "-" + hex.EncodeToString(rnd[:])
	if err := root.Mkdir(tmp, 0o755); err != nil {
		return fmt.Errorf("put %s: %w", where, err)
	}
	done := false
	defer func() {
		if !done {
			root.RemoveAll(tmp)
		}
	}()
	if err := writeSynced(root, tmp+"/"+m.ArtifactName(), artifact); err != nil {
		return fmt.Errorf("put %s: %w", where, err)
	}
	if err := writeSynced(root, tmp+"/"+ManifestFile, mdata); err != nil {
		return fmt.Errorf("put %s: %w", where, err)
	}
	if err := syncDir(root, tmp); err != nil {
		return fmt.Errorf("put %s: %w", where, err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// Renaming onto an existing non-empty directory fails, so a version
	// published concurrently is never replaced.
	if err := root.Rename(tmp, where); err != nil {
		if _, serr := root.Lstat(where); serr == nil {
			return fmt.Errorf("put %s: %w", where, ErrExists)
		}
		return fmt.Errorf("put %s: %w", where, err)
	}
	done = true
	if err := syncDir(root, id); err != nil {
		return fmt.Errorf("put %s: published, but syncing %s failed: %w", where, id, err)
	}
	return nil
}

// writeSynced creates name (which must not exist), writes b and syncs it.
func writeSynced(root *os.Root, name string, b []byte) error {
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// syncDir syncs the directory name inside root, making renames and
// creations in it durable.
func syncDir(root *os.Root, name string) error {
	f, err := root.Open(name)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Change is one kernel whose selected version differs between two
// snapshots. Old or New is 0 when no version was or is selected (the
// kernel was added or removed, or nothing complete was or is left).
// A selected version whose number is unchanged but whose artifact's
// SHA-256 differs (rewritten in place) is a change too.
type Change struct {
	ID        string
	Old, New  uint64
	OldSHA256 string
	NewSHA256 string
}

// Diff returns the kernels whose selected version changed from old to
// new, sorted by ID: the ones to reload, start or stop. A nil snapshot
// counts as empty. Kernels with nothing selected in either are left out.
func Diff(old, new *Snapshot) []Change {
	type sel struct {
		n   uint64
		sum string
	}
	collect := func(s *Snapshot) map[string]sel {
		out := map[string]sel{}
		if s == nil {
			return out
		}
		for i := range s.Kernels {
			k := &s.Kernels[i]
			if v := k.SelectedVersion(); v != nil {
				out[k.ID] = sel{v.Number, v.SHA256}
			}
		}
		return out
	}
	o, n := collect(old), collect(new)
	var out []Change
	for id, a := range o {
		if b := n[id]; a != b {
			out = append(out, Change{ID: id, Old: a.n, New: b.n, OldSHA256: a.sum, NewSHA256: b.sum})
		}
	}
	for id, b := range n {
		if _, ok := o[id]; !ok {
			out = append(out, Change{ID: id, New: b.n, NewSHA256: b.sum})
		}
	}
	slices.SortFunc(out, func(a, b Change) int { return strings.Compare(a.ID, b.ID) })
	return out
}
