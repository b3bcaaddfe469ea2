package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// File names inside a kernel's directory.
const (
	fileExt    = ".hkcp" // checkpoint: <seq>-v<code version>.hkcp
	markExt    = ".seq"  // sequence mark: <seq>.seq, empty
	tempPrefix = ".tmp-" // checkpoint being written
	seqDigits  = 20      // sequence numbers are zero-padded to this width
)

// FileStore is a Store in a directory, one checkpoint per file:
//
//	DIR/KERNEL/SEQ-vVERSION.hkcp
//
// KERNEL is the kernel ID escaped into a single safe path element (see
// docs/checkpoint-format.md), SEQ is the sequence number as 20 decimal
// digits, so names sort in sequence order, and VERSION is the code
// version. Each file holds exactly the bytes MarshalBinary returns.
//
// Save writes a temporary file in the kernel's directory, syncs it, renames
// it to its final name and syncs the directory, so after a crash a final
// name holds a complete checkpoint or does not exist. Temporary files a
// crash leaves behind are ignored by List and Latest, and removed by
// OpenFileStore and Prune. Sequence numbers continue across restarts: they
// are derived from the names in the directory, and Prune leaves an empty
// mark file "SEQ.seq" when it removes the newest checkpoint.
//
// A FileStore is safe for concurrent use by multiple goroutines. The
// directory must belong to one FileStore at a time: two FileStores on the
// same directory, in one process or several, may assign the same sequence
// number twice or remove each other's temporary files.
type FileStore struct {
	dir  string
	keep int

	mu      sync.Mutex
	kernels map[string]*fileKernel // by kernel ID
}

// fileKernel serializes access to one kernel's directory: Save and Prune
// hold mu for writing, the readers for reading.
type fileKernel struct {
	mu    sync.RWMutex
	last  uint64 // highest sequence number in use; valid when known
	known bool
}

var _ Store = (*FileStore)(nil)

// OpenFileStore returns a FileStore in dir, creating dir if needed (mode
// 0700). It removes the temporary files that an interrupted Save left in
// the kernels' directories. Directories and files it creates are private
// to the user (0700 and 0600).
func OpenFileStore(dir string, opts Options) (*FileStore, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("checkpoint: open store: %w", err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: open store: %w", err)
	}
	for _, ent := range ents {
		if !ent.IsDir() {
			continue
		}
		l, err := scan(filepath.Join(dir, ent.Name()))
		if err != nil {
			return nil, fmt.Errorf("checkpoint: open store: %w", err)
		}
		if err := l.removeTemps(); err != nil {
			return nil, fmt.Errorf("checkpoint: open store: %w", err)
		}
	}
	return &FileStore{dir: dir, keep: max(opts.Keep, 0), kernels: make(map[string]*fileKernel)}, nil
}

// Dir returns the store's directory.
func (s *FileStore) Dir() string { return s.dir }

// kernelDir returns the directory of kernel id, which must be valid.
func (s *FileStore) kernelDir(id string) string {
	return filepath.Join(s.dir, escapeKernelID(id))
}

func (s *FileStore) kernel(id string) *fileKernel {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.kernels[id]
	if k == nil {
		k = &fileKernel{}
		s.kernels[id] = k
	}
	return k
}

// Save implements Store.Save. An error other than one from the automatic
// pruning means the checkpoint may or may not be stored: a failure after
// the rename (syncing the directory) leaves a complete checkpoint under
// its final name that might not survive a crash.
func (s *FileStore) Save(ctx context.Context, c *Checkpoint) (Ref, error) {
	if err := ctx.Err(); err != nil {
		return Ref{}, err
	}
	if err := c.Validate(); err != nil {
		return Ref{}, err
	}
	k := s.kernel(c.KernelID)
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return Ref{}, err
	}

	dir := s.kernelDir(c.KernelID)
	if err := os.Mkdir(dir, 0o700); err == nil {
		if err := syncDir(s.dir); err != nil {
			return Ref{}, saveErr(c, err)
		}
	} else if !errors.Is(err, fs.ErrExist) {
		return Ref{}, saveErr(c, err)
	}
	if !k.known {
		l, err := scan(dir)
		if err != nil {
			return Ref{}, saveErr(c, err)
		}
		k.last, k.known = l.maxSeq(), true
	}
	if k.last == math.MaxUint64 {
		return Ref{}, saveErr(c, errors.New("sequence numbers exhausted"))
	}
	// The number is used up whatever happens next, so a failure after
	// the rename can never lead to a second file with the same number.
	k.last++
	seq := k.last

	size, err := writeFile(ctx, dir, checkpointName(seq, c.CodeVersion), c)
	if err != nil {
		return Ref{}, saveErr(c, err)
	}
	ref := refOf(c, seq, size)
	if s.keep > 0 && ctx.Err() == nil {
		if _, err := s.prune(ctx, c.KernelID, dir, s.keep); err != nil {
			return ref, fmt.Errorf("checkpoint: kernel %q: saved checkpoint %d, then retention failed: %w", clip(c.KernelID), seq, err)
		}
	}
	return ref, nil
}

func saveErr(c *Checkpoint, err error) error {
	return fmt.Errorf("checkpoint: save kernel %q: %w", clip(c.KernelID), err)
}

// writeFile writes c to dir/name through a synced temporary file and a
// rename, syncs dir, and returns the encoded size.
func writeFile(ctx context.Context, dir, name string, c *Checkpoint) (size int64, err error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	f, err := os.CreateTemp(dir, tempPrefix+"*")
	if err != nil {
		return 0, err
	}
	tmp := f.Name()
	renamed := false
	defer func() {
		if err != nil && !renamed {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if size, err = c.WriteTo(ctxWriter{ctx, f}); err != nil {
		return 0, err
	}
	if err = ctx.Err(); err != nil {
		return 0, err
	}
	if err = f.Sync(); err != nil {
		return 0, err
	}
	if err = f.Close(); err != nil {
		return 0, err
	}
	// Last point at which the save can still be abandoned cleanly.
	if err = ctx.Err(); err != nil {
		return 0, err
	}
	if err = os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return 0, err
	}
	renamed = true
	if err = syncDir(dir); err != nil {
		return 0, err
	}
	return size, nil
}

// ctxWriter writes in pieces and stops when its context is done.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (w ctxWriter) Write(p []byte) (int, error) {
	const piece = 1 << 20
	n := 0
	for len(p) > 0 {
		if err := w.ctx.Err(); err != nil {
			return n, err
		}
		m, err := w.w.Write(p[:min(len(p), piece)])
		n += m
		if err != nil {
			return n, err
		}
		p = p[m:]
	}
	return n, nil
}

// syncDir makes the entries of dir durable. Windows cannot sync a
// directory; there the file system's own journaling has to do.
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// Load implements Store.Load. It reads the kernel's directory to find the
// file, then reads and decodes the whole file.
func (s *FileStore) Load(ctx context.Context, ref Ref) (*Checkpoint, error) {
	if err := CheckKernelID(ref.KernelID); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	k := s.kernel(ref.KernelID)
	k.mu.RLock()
	defer k.mu.RUnlock()
	dir := s.kernelDir(ref.KernelID)
	l, err := scan(dir)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: load kernel %q: %w", clip(ref.KernelID), err)
	}
	for _, e := range l.files {
		if e.seq == ref.Seq {
			c, _, err := s.read(ctx, ref.KernelID, dir, e)
			return c, err
		}
	}
	return nil, &RefError{Ref: Ref{KernelID: ref.KernelID, Seq: ref.Seq}, Err: ErrNotFound}
}

// read reads and decodes one checkpoint file. Its errors are *RefError,
// except for the context's.
func (s *FileStore) read(ctx context.Context, id, dir string, e fileEntry) (*Checkpoint, Ref, error) {
	if err := ctx.Err(); err != nil {
		return nil, Ref{}, err
	}
	path := filepath.Join(dir, e.name)
	fail := func(size int64, err error) (*Checkpoint, Ref, error) {
		r := Ref{KernelID: id, Seq: e.seq, CodeVersion: e.version, Size: size}
		return nil, Ref{}, &RefError{Ref: r, Path: path, Err: err}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return fail(0, err)
	}
	c, err := decode(b, true)
	if err == nil {
		err = checkPlace(c.KernelID, c.CodeVersion, id, e.version)
	}
	if err != nil {
		return fail(int64(len(b)), err)
	}
	return c, refOf(c, e.seq, int64(len(b))), nil
}

// Latest implements Store.Latest. Files it cannot read (for lack of
// permission, say) count as damaged, like files that do not decode.
func (s *FileStore) Latest(ctx context.Context, kernelID string) (*Checkpoint, Ref, error) {
	if err := CheckKernelID(kernelID); err != nil {
		return nil, Ref{}, err
	}
	if err := ctx.Err(); err != nil {
		return nil, Ref{}, err
	}
	k := s.kernel(kernelID)
	k.mu.RLock()
	defer k.mu.RUnlock()
	dir := s.kernelDir(kernelID)
	l, err := scan(dir)
	if err != nil {
		return nil, Ref{}, fmt.Errorf("checkpoint: kernel %q: %w", clip(kernelID), err)
	}
	if len(l.files) == 0 {
		return nil, Ref{}, fmt.Errorf("kernel %q: %w", clip(kernelID), ErrNotFound)
	}
	var damaged DamagedError
	for _, e := range slices.Backward(l.files) {
		c, ref, err := s.read(ctx, kernelID, dir, e)
		if err != nil {
			var re *RefError
			if !errors.As(err, &re) {
				return nil, Ref{}, err
			}
			damaged = append(damaged, re)
			continue
		}
		return c, ref, damaged.orNil()
	}
	return nil, Ref{}, damaged
}

// List implements Store.List. It reads the first bytes of every file, not
// the whole files. Files it cannot open count as damaged.
func (s *FileStore) List(ctx context.Context, kernelID string) ([]Ref, error) {
	if err := CheckKernelID(kernelID); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	k := s.kernel(kernelID)
	k.mu.RLock()
	defer k.mu.RUnlock()
	dir := s.kernelDir(kernelID)
	l, err := scan(dir)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: kernel %q: %w", clip(kernelID), err)
	}
	refs := make([]Ref, 0, len(l.files))
	var damaged DamagedError
	for _, e := range l.files {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		path := filepath.Join(dir, e.name)
		h, size, err := readHeader(path, kernelID, e.version)
		if err != nil {
			r := Ref{KernelID: kernelID, Seq: e.seq, CodeVersion: e.version, Size: size}
			damaged = append(damaged, &RefError{Ref: r, Path: path, Err: err})
			continue
		}
		refs = append(refs, refFromHeader(h, e.seq, size))
	}
	return refs, damaged.orNil()
}

// readHeader reads and checks the header of a checkpoint file, and returns
// it with the file's size.
func readHeader(path, id string, version uint64) (header, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return header{}, 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return header{}, 0, err
	}
	b := make([]byte, min(fi.Size(), maxHeader))
	if _, err := io.ReadFull(f, b); err != nil {
		return header{}, fi.Size(), err
	}
	h, err := checkHeader(b, fi.Size(), id, version)
	return h, fi.Size(), err
}

// Prune implements Store.Prune. It also removes temporary files left by
// an interrupted Save.
func (s *FileStore) Prune(ctx context.Context, kernelID string, keep int) (int, error) {
	if err := CheckKernelID(kernelID); err != nil {
		return 0, err
	}
	if keep < 0 {
		return 0, invalidf("negative keep %d", keep)
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	k := s.kernel(kernelID)
	k.mu.Lock()
	defer k.mu.Unlock()
	return s.prune(ctx, kernelID, s.kernelDir(kernelID), keep)
}

// prune does Prune's work; the caller holds the kernel's write lock.
func (s *FileStore) prune(ctx context.Context, id, dir string, keep int) (int, error) {
	l, err := scan(dir)
	if err != nil {
		return 0, fmt.Errorf("checkpoint: prune kernel %q: %w", clip(id), err)
	}
	if err := l.removeTemps(); err != nil {
		return 0, fmt.Errorf("checkpoint: prune kernel %q: %w", clip(id), err)
	}
	drop := max(len(l.files)-keep, 0)
	if drop == 0 {
		return 0, nil
	}
	if keep == 0 {
		// The newest checkpoint goes: record its number first, so that
		// numbering continues after a restart.
		if top := l.files[len(l.files)-1].seq; top > l.mark {
			if err := createEmpty(filepath.Join(dir, markName(top))); err != nil {
				return 0, fmt.Errorf("checkpoint: prune kernel %q: %w", clip(id), err)
			}
			if err := syncDir(dir); err != nil {
				return 0, fmt.Errorf("checkpoint: prune kernel %q: %w", clip(id), err)
			}
			l.marks = append(l.marks, markName(top))
			l.mark = top
		}
	}
	removed := 0
	for _, e := range l.files[:drop] {
		if err := ctx.Err(); err != nil {
			return removed, err
		}
		if err := os.Remove(filepath.Join(dir, e.name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return removed, fmt.Errorf("checkpoint: prune kernel %q: %w", clip(id), err)
		}
		removed++
	}
	for _, m := range l.marks {
		if m != markName(l.mark) {
			os.Remove(filepath.Join(dir, m)) // a stale mark is harmless
		}
	}
	if err := syncDir(dir); err != nil {
		return removed, fmt.Errorf("checkpoint: prune kernel %q: %w", clip(id), err)
	}
	return removed, nil
}

func createEmpty(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Kernels implements Store.Kernels. The result is a snapshot: it does not
// wait for saves or prunes in progress. A kernel whose ID is too long for
// a readable directory name is stored under a hashed name; its ID is then
// read from its checkpoints' headers, and it is left out when none of them
// has an intact header. Directories that no kernel ID maps to are ignored.
func (s *FileStore) Kernels(ctx context.Context) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: kernels: %w", err)
	}
	var ids []string
	for _, ent := range ents {
		if !ent.IsDir() {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		name := ent.Name()
		dir := filepath.Join(s.dir, name)
		l, err := scan(dir)
		if err != nil {
			return nil, fmt.Errorf("checkpoint: kernels: %w", err)
		}
		if len(l.files) == 0 {
			continue
		}
		if id, ok := unescapeKernelID(name); ok {
			ids = append(ids, id)
			continue
		}
		if !hashedName(name) {
			continue
		}
		for _, e := range slices.Backward(l.files) {
			f, err := os.Open(filepath.Join(dir, e.name))
			if err != nil {
				continue
			}
			b := make([]byte, maxHeader)
			n, _ := io.ReadFull(f, b)
			f.Close()
			if h, err := parseHeader(b[:n]); err == nil && escapeKernelID(h.kernelID) == name {
				ids = append(ids, h.kernelID)
				break
			}
		}
	}
	slices.Sort(ids)
	return ids, nil
}

// fileEntry is a checkpoint file in a kernel's directory.
type fileEntry struct {
	seq     uint64
	version uint64
	name    string
}

// listing is what a kernel's directory holds.
type listing struct {
	dir   string
	files []fileEntry // checkpoints, by increasing seq
	mark  uint64      // highest sequence mark
	marks []string    // names of the sequence marks
	temps []string    // names of temporary files
}

// scan lists a kernel's directory. A directory that does not exist is
// empty. Names the store does not write are ignored.
func scan(dir string) (*listing, error) {
	l := &listing{dir: dir}
	ents, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return l, nil
		}
		return nil, err
	}
	for _, ent := range ents {
		name := ent.Name()
		if !ent.Type().IsRegular() {
			continue
		}
		switch {
		case strings.HasPrefix(name, tempPrefix):
			l.temps = append(l.temps, name)
		case strings.HasSuffix(name, markExt):
			if seq, ok := parseMarkName(name); ok {
				l.marks = append(l.marks, name)
				l.mark = max(l.mark, seq)
			}
		default:
			if seq, v, ok := parseCheckpointName(name); ok {
				l.files = append(l.files, fileEntry{seq: seq, version: v, name: name})
			}
		}
	}
	slices.SortFunc(l.files, func(a, b fileEntry) int {
		if a.seq != b.seq {
			if a.seq < b.seq {
				return -1
			}
			return 1
		}
		return strings.Compare(a.name, b.name)
	})
	return l, nil
}

// maxSeq returns the highest sequence number in use.
func (l *listing) maxSeq() uint64 {
	top := l.mark
	if n := len(l.files); n > 0 {
		top = max(top, l.files[n-1].seq)
	}
	return top
}

func (l *listing) removeTemps() error {
	for _, t := range l.temps {
		if err := os.Remove(filepath.Join(l.dir, t)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

func checkpointName(seq, version uint64) string {
	return fmt.Sprintf("%0*d-v%d%s", seqDigits, seq, version, fileExt)
}

func markName(seq uint64) string {
	return fmt.Sprintf("%0*d%s", seqDigits, seq, markExt)
}

// parseCheckpointName parses a name that checkpointName produces.
func parseCheckpointName(name string) (seq, version uint64, ok bool) {
	rest, found := strings.CutSuffix(name, fileExt)
	if !found || len(rest) < seqDigits+3 || rest[seqDigits:seqDigits+2] != "-v" {
		return 0, 0, false
	}
	seq, err := strconv.ParseUint(rest[:seqDigits], 10, 64)
	if err != nil || seq == 0 {
		return 0, 0, false
	}
	version, err = strconv.ParseUint(rest[seqDigits+2:], 10, 64)
	if err != nil || checkpointName(seq, version) != name {
		return 0, 0, false
	}
	return seq, version, true
}

// parseMarkName parses a name that markName produces.
func parseMarkName(name string) (uint64, bool) {
	rest, found := strings.CutSuffix(name, markExt)
	if !found || len(rest) != seqDigits {
		return 0, false
	}
	seq, err := strconv.ParseUint(rest, 10, 64)
	if err != nil || seq == 0 || markName(seq) != name {
		return 0, false
	}
	return seq, true
}
