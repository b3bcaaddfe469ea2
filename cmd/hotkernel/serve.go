package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/hotkernel/hotkernel"
	"github.com/hotkernel/hotkernel/backend"
	"github.com/hotkernel/hotkernel/backend/cuda"
	"github.com/hotkernel/hotkernel/backend/wasm"
	"github.com/hotkernel/hotkernel/checkpoint"
	"github.com/hotkernel/hotkernel/code"
	examplerepo "github.com/hotkernel/hotkernel/examples/repository"
	"github.com/hotkernel/hotkernel/repository"
	"github.com/hotkernel/hotkernel/server"
	"github.com/prometheus/client_golang/prometheus"
)

const serveSynopsis = "serve [--repo DIR] [--listen ADDR] [--token T] [--state DIR] [--log-format text|json] [--rescan D] [--cuda auto|on|off] [--cuda-device N] [--cuda-compiler driver|ptxas]"

// Daemon settings that have no flag.
const (
	defaultListen   = "127.0.0.1:7420"
	debounceDelay   = 200 * time.Millisecond // quiet time after the last file event before a scan
	retryDelay      = time.Second            // scan again this soon when a reload could not start
	checkpointsKept = 10                     // checkpoints kept per kernel in the state directory
	shutdownGrace   = 10 * time.Second       // for in-flight HTTP requests
	drainGrace      = 30 * time.Second       // for the kernels' queues and final checkpoints
)

// serveOptions are the parsed flags of "hotkernel serve".
type serveOptions struct {
	repo, listen, token, state string
	rescan                     time.Duration
	cuda                       string // auto, on or off
	cudaDevice                 int
	cudaCompiler               cuda.Compiler
}

// runServe implements "hotkernel serve": it runs every kernel of a
// repository behind the HTTP API of package server and reloads a kernel
// whenever the version its policy selects changes on disk.
func runServe(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("serve", serveSynopsis, stderr)
	var o serveOptions
	fs.StringVar(&o.repo, "repo", "", "kernel repository `directory` (default: a copy of the bundled example repository in the user cache directory)")
	fs.StringVar(&o.listen, "listen", defaultListen, "`address` to serve HTTP on; other than loopback only with a token")
	fs.StringVar(&o.token, "token", "", "bearer `token` clients must present (default $HOTKERNEL_TOKEN)")
	fs.StringVar(&o.state, "state", "", "checkpoint `directory` (default: <user cache dir>/hotkernel/state/<repository name>-<hash of its path>)")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	fs.DurationVar(&o.rescan, "rescan", 30*time.Second, "full repository rescan `interval`, besides watching it for changes")
	fs.StringVar(&o.cuda, "cuda", "auto", "run PTX and CUBIN kernels on the GPU: auto (when there is one), on (fail without one) or off")
	fs.IntVar(&o.cudaDevice, "cuda-device", 0, "ordinal of the GPU to use")
	compiler := fs.String("cuda-compiler", "driver", "how PTX is compiled: driver (the CUDA driver's JIT) or ptxas")
	if exit, ok := parseFlagsOnly(fs, args, stderr); !ok {
		return exit
	}
	switch o.cuda {
	case "auto", "on", "off":
	default:
		fmt.Fprintf(stderr, "hotkernel serve: --cuda must be auto, on or off, not %q\n", o.cuda)
		return exitUsage
	}
	var err error
	if o.cudaCompiler, err = cuda.ParseCompiler(*compiler); err != nil {
		fmt.Fprintf(stderr, "hotkernel serve: --cuda-compiler: %v\n", err)
		return exitUsage
	}
	if o.token == "" {
		o.token = os.Getenv("HOTKERNEL_TOKEN")
	}
	var log *slog.Logger
	switch *logFormat {
	case "text":
		log = slog.New(slog.NewTextHandler(stderr, nil))
	case "json":
		log = slog.New(slog.NewJSONHandler(stderr, nil))
	default:
		fmt.Fprintf(stderr, "hotkernel serve: --log-format must be text or json, not %q\n", *logFormat)
		return exitUsage
	}
	if o.rescan <= 0 {
		fmt.Fprintln(stderr, "hotkernel serve: --rescan must be positive")
		return exitUsage
	}
	if err := server.CheckBind(o.listen, o.token); err != nil {
		fmt.Fprintf(stderr, "hotkernel serve: %v; pass --token or set HOTKERNEL_TOKEN, or listen on 127.0.0.1\n", err)
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, o, log); err != nil {
		fmt.Fprintln(stderr, "hotkernel serve:", err)
		return exitFailure
	}
	return exitOK
}

// defaultDirs fills in the repository and state directories that o leaves
// empty: the bundled example repository, copied once into the user cache
// directory, and a state directory per repository path there.
func defaultDirs(o *serveOptions, log *slog.Logger) error {
	var cache string
	if o.repo == "" || o.state == "" {
		c, err := os.UserCacheDir()
		if err != nil {
			return fmt.Errorf("no user cache directory for the defaults (pass --repo and --state): %w", err)
		}
		cache = filepath.Join(c, "hotkernel")
		if err := os.MkdirAll(cache, 0o700); err != nil {
			return err
		}
	}
	if o.repo == "" {
		o.repo = filepath.Join(cache, "example-repository")
		switch err := examplerepo.WriteTo(o.repo); {
		case err == nil:
			log.Info("wrote the example repository", "dir", o.repo)
		case errors.Is(err, fs.ErrExist):
		default:
			return fmt.Errorf("writing the example repository: %w", err)
		}
	}
	abs, err := filepath.Abs(o.repo)
	if err != nil {
		return err
	}
	o.repo = abs
	if o.state == "" {
		sum := sha256.Sum256([]byte(abs))
		o.state = filepath.Join(cache, "state", filepath.Base(abs)+"-"+hex.EncodeToString(sum[:4]))
	}
	return nil
}

// newBackends returns the backends of the daemon: WebAssembly always, and
// the GPU for PTX and CUBIN as --cuda says. Without a GPU under "auto",
// PTX and CUBIN kernels fail to load with the reason, and the rest runs.
func newBackends(ctx context.Context, o serveOptions, log *slog.Logger) (*backend.Router, error) {
	rt, err := wasm.NewRuntime(ctx, wasm.DefaultConfig())
	if err != nil {
		return nil, err
	}
	r := backend.NewRouter()
	r.Handle(code.FormatWASM, rt.Backend())
	var gpu *cuda.Backend
	if o.cuda == "off" {
		err = errors.New("the CUDA backend is off (--cuda=off)")
	} else {
		cfg := cuda.DefaultConfig()
		cfg.Device, cfg.Compiler, cfg.Logger = o.cudaDevice, o.cudaCompiler, log
		gpu, err = cuda.New(cfg)
	}
	switch {
	case err == nil:
		info, _ := gpu.Device()
		log.Info("PTX and CUBIN kernels run on the GPU", "device", info.Name, "arch", info.Arch, "driver", info.DriverVersion)
		r.Handle(code.FormatPTX, gpu)
		r.Handle(code.FormatCUBIN, gpu)
	case o.cuda == "on":
		_ = r.Close(ctx)
		return nil, err
	default:
		if o.cuda == "auto" {
			log.Info("no GPU backend; PTX and CUBIN kernels will not load", "reason", err)
		}
		r.Unavailable(code.FormatPTX, err)
		r.Unavailable(code.FormatCUBIN, err)
	}
	return r, nil
}

// serve runs the daemon until ctx ends, then shuts it down.
func serve(ctx context.Context, o serveOptions, log *slog.Logger) (err error) {
	if err := defaultDirs(&o, log); err != nil {
		return err
	}
	repo, err := repository.Open(o.repo, repository.Options{})
	if err != nil {
		return err
	}
	store, err := checkpoint.OpenFileStore(o.state, checkpoint.Options{Keep: checkpointsKept})
	if err != nil {
		return err
	}
	met := server.NewMetrics(prometheus.NewRegistry())
	cfg := hotkernel.DefaultConfig()
	cfg.Store = store
	cfg.OnReload = met.ObserveReload
	cfg.Logger = log
	bg := context.WithoutCancel(ctx)
	backends, err := newBackends(bg, o, log)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, backends.Close(bg)) }()
	mgr, err := hotkernel.New(cfg, backends)
	if err != nil {
		return err
	}
	closed := false
	defer func() {
		if !closed {
			_ = mgr.Close(bg)
		}
	}()
	srv, err := server.New(server.Config{Manager: mgr, Repo: repo, Token: o.token, Metrics: met, Logger: log})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return err
	}
	log.Info("starting", "repository", repo.Dir(), "state", o.state, "listen", ln.Addr().String(), "auth", o.token != "")

	d := &daemon{repo: repo, srv: srv, mgr: mgr, store: store, log: log, retry: map[string]bool{}}
	w := d.newWatcher()
	d.sync(ctx) // the first scan registers every kernel
	wctx, stopWatch := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { d.watch(wctx, w, o.rescan) })

	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	served := make(chan error, 1)
	wg.Go(func() { served <- hs.Serve(ln) })
	log.Info("serving", "listen", ln.Addr().String())

	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case err = <-served:
		err = fmt.Errorf("http server: %w", err)
	}
	srv.Stopping()
	stopWatch()
	sctx, cancel := context.WithTimeout(bg, shutdownGrace)
	if serr := hs.Shutdown(sctx); serr != nil {
		log.Warn("requests still running at the end of the grace period were cut off", "err", serr)
		_ = hs.Close()
	}
	cancel()
	wg.Wait()
	dctx, cancel := context.WithTimeout(bg, drainGrace)
	defer cancel()
	closed = true
	if cerr := mgr.Close(dctx); cerr != nil {
		log.Error("closing the kernels", "err", cerr)
		err = errors.Join(err, cerr)
	}
	log.Info("stopped")
	return err
}

// daemon keeps the Manager's kernels in line with the repository. Only
// the watch goroutine (and serve, before starting it) use it.
type daemon struct {
	repo  *repository.Repo
	srv   *server.Server
	mgr   *hotkernel.Manager
	store checkpoint.Store
	log   *slog.Logger

	prev  *repository.Snapshot // the last scan
	retry map[string]bool      // kernels whose reload could not start; tried again on the next scan
	seen  map[string]string    // version path -> reason last logged, for versions not complete
}

// newWatcher returns a file watcher on the repository, or nil (with a
// warning) when the system has none; the periodic rescan then does.
func (d *daemon) newWatcher() *fsnotify.Watcher {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		d.log.Warn("cannot watch the repository; relying on the periodic rescan", "err", err)
		return nil
	}
	d.addWatches(w)
	return w
}

// addWatches watches the repository directory, every kernel directory and
// every version directory; hidden ones (Put's staging directories) are
// left out. Adding a watch twice is harmless.
func (d *daemon) addWatches(w *fsnotify.Watcher) {
	if w == nil {
		return
	}
	root := d.repo.Dir()
	d.addTree(w, root, 2)
}

// addTree watches dir and, depth levels down, its non-hidden
// subdirectories. Symbolic links are not followed.
func (d *daemon) addTree(w *fsnotify.Watcher, dir string, depth int) {
	if err := w.Add(dir); err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			d.log.Warn("cannot watch directory", "dir", dir, "err", err)
		}
		return
	}
	if depth == 0 {
		return
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if e.IsDir() && !isHidden(e.Name()) {
			d.addTree(w, filepath.Join(dir, e.Name()), depth-1)
		}
	}
}

func isHidden(name string) bool { return len(name) > 0 && name[0] == '.' }

// depthOf returns how many levels below the repository directory path is
// (1 for a kernel directory, 2 for a version directory), or -1.
func (d *daemon) depthOf(path string) int {
	rel, err := filepath.Rel(d.repo.Dir(), path)
	if err != nil || rel == "." || rel == ".." || filepath.IsAbs(rel) || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return -1
	}
	return 1 + strings.Count(rel, string(filepath.Separator))
}

// watch scans the repository after file events have been quiet for
// debounceDelay, every rescan interval, and soon after a reload that
// could not start; it returns when ctx ends, closing w.
func (d *daemon) watch(ctx context.Context, w *fsnotify.Watcher, rescan time.Duration) {
	var events chan fsnotify.Event
	var errs chan error
	if w != nil {
		defer w.Close()
		events, errs = w.Events, w.Errors
	}
	ticker := time.NewTicker(rescan)
	defer ticker.Stop()
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	defer debounce.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if ev.Has(fsnotify.Create) {
				// Watch a new kernel or version directory at once, so
				// that the files copied into it are seen.
				if depth := d.depthOf(ev.Name); depth >= 1 && depth <= 2 && !isHidden(filepath.Base(ev.Name)) {
					if fi, err := os.Lstat(ev.Name); err == nil && fi.IsDir() {
						d.addTree(w, ev.Name, 2-depth)
					}
				}
			}
			debounce.Reset(debounceDelay)
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			// An overflow loses events: scan to catch up.
			d.log.Warn("repository watch", "err", err)
			debounce.Reset(debounceDelay)
		case <-debounce.C:
			d.addWatches(w)
			d.sync(ctx)
		case <-ticker.C:
			d.addWatches(w)
			d.sync(ctx)
		}
		if len(d.retry) > 0 {
			debounce.Reset(retryDelay)
		}
	}
}

// sync scans the repository and applies what changed since the last scan:
// a kernel whose selected version changed is reloaded (or registered when
// it is new). Versions that are not complete are never loaded; a version
// that fails to load or reload is logged and the running one keeps
// serving.
func (d *daemon) sync(ctx context.Context) {
	snap, err := d.repo.Scan(ctx)
	if err != nil {
		if ctx.Err() == nil {
			d.log.Error("repository scan failed", "err", err)
		}
		return
	}
	d.report(snap)
	changes := repository.Diff(d.prev, snap)
	changed := map[string]bool{}
	for _, c := range changes {
		changed[c.ID] = true
	}
	for id := range d.retry {
		if k, ok := snap.Kernel(id); ok && !changed[id] && k.Selected != 0 {
			changes = append(changes, repository.Change{ID: id, New: k.Selected})
		}
	}
	clear(d.retry)
	for _, c := range changes {
		if ctx.Err() != nil {
			return
		}
		d.apply(ctx, c)
	}
	d.prev = snap
}

// report logs repository problems and versions that are not complete,
// each once until its reason changes.
func (d *daemon) report(snap *repository.Snapshot) {
	seen := map[string]string{}
	note := func(key, reason string, f func()) {
		seen[key] = reason
		if d.seen[key] != reason {
			f()
		}
	}
	for _, p := range snap.Problems {
		note("repo:"+p.Error(), p.Error(), func() { d.log.Warn("repository problem", "err", p) })
	}
	for i := range snap.Kernels {
		k := &snap.Kernels[i]
		for _, p := range k.Problems {
			note("kernel:"+k.ID+":"+p.Error(), p.Error(), func() { d.log.Warn("kernel problem", "kernel", k.ID, "err", p) })
		}
		for _, v := range k.Versions {
			switch v.State {
			case repository.Incomplete:
				note(v.Path, v.Reason, func() {
					d.log.Info("version incomplete; not loaded until it is", "kernel", k.ID, "version", v.Name, "reason", v.Reason)
				})
			case repository.Invalid:
				note(v.Path, v.Reason, func() {
					d.log.Warn("version invalid; ignored", "kernel", k.ID, "version", v.Name, "reason", v.Reason)
				})
			}
		}
	}
	d.seen = seen
}

// apply brings kernel c.ID to repository version c.New.
func (d *daemon) apply(ctx context.Context, c repository.Change) {
	log := d.log.With("kernel", c.ID, "version", c.New)
	if c.New == 0 {
		if d.mgr.IsRegistered(c.ID) {
			log.Warn("no complete version is selected any more; the running code keeps serving", "previous", c.Old)
		}
		return
	}
	src, man, err := d.repo.Load(ctx, c.ID, c.New)
	if err != nil {
		log.Warn("version not loaded; the running code keeps serving", "reason", err)
		return
	}
	if !d.mgr.IsRegistered(c.ID) {
		d.register(ctx, c.ID, src, man)
		return
	}
	if cur, err := d.mgr.CurrentCode(c.ID); err == nil && cur.SHA256Hex() == src.SHA256Hex() {
		log.Info("selected version already serving")
		return
	}
	res, err := d.srv.Reload(ctx, c.ID, src)
	switch {
	case err == nil:
		log.Info("reloaded", "from", res.OldVersion, "to", res.NewVersion, "pause", res.Pause, "total", res.Total)
	case res == nil && (errors.Is(err, hotkernel.ErrReloadInProgress)):
		log.Info("another reload is running; trying again shortly")
		d.retry[c.ID] = true
	default:
		log.Error("reload failed; the running code keeps serving", "err", err)
	}
}

// register starts kernel id, from its latest checkpoint when the store
// has one. A checkpoint that exists but cannot be restored leaves the
// kernel unregistered rather than starting it with a fresh state.
func (d *daemon) register(ctx context.Context, id string, src *code.Source, man *repository.Manifest) {
	rv, _ := src.MetadataValue("repository.version")
	log := d.log.With("kernel", id, "version", rv)
	opts, err := d.restoreOptions(ctx, id, log)
	if err != nil {
		log.Error("kernel not started: its checkpoint cannot be restored", "err", err)
		return
	}
	opts.QueueCapacity = man.QueueCapacity
	k, err := d.srv.Register(ctx, id, src, opts)
	if err != nil {
		log.Error("kernel not started", "err", err)
		return
	}
	log.Info("kernel started", "code_version", k.Version(), "sha256", src.SHA256Hex(), "restored", opts.State != nil)
}

// restoreOptions returns the RegisterOptions that restart kernel id from
// its latest checkpoint, if any.
func (d *daemon) restoreOptions(ctx context.Context, id string, log *slog.Logger) (hotkernel.RegisterOptions, error) {
	var opts hotkernel.RegisterOptions
	cp, ref, err := d.store.Latest(ctx, id)
	if cp == nil {
		if err != nil && !errors.Is(err, checkpoint.ErrNotFound) {
			return opts, fmt.Errorf("reading its latest checkpoint: %w", err)
		}
		return opts, nil
	}
	if err != nil {
		log.Warn("damaged checkpoints skipped", "err", err)
	}
	layout, perr := strconv.ParseUint(cp.Metadata["state.layout"], 10, 32)
	if perr != nil {
		return opts, fmt.Errorf("checkpoint %d: bad state.layout %q", ref.Seq, cp.Metadata["state.layout"])
	}
	if cp.Metadata["reason"] != "stop" {
		log.Warn("the latest checkpoint was not taken at shutdown; messages handled after it are missing from the state", "seq", ref.Seq)
	}
	opts.State, opts.StateLayout, opts.StateVersion = cp.State, uint32(layout), cp.CodeVersion
	log.Info("restoring state from checkpoint", "seq", ref.Seq, "code_version", cp.CodeVersion, "layout", layout, "bytes", len(cp.State))
	return opts, nil
}
