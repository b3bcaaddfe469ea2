package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hotkernel/hotkernel/checkpoint"
	"github.com/hotkernel/hotkernel/examples/kernels"
	"github.com/hotkernel/hotkernel/repository"
)

// buildBinary builds the hotkernel command into a temporary directory.
func buildBinary(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to build the binary with")
	}
	bin := filepath.Join(t.TempDir(), "hotkernel")
	cmd := exec.Command(goBin, "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// daemonProc is a running "hotkernel serve".
type daemonProc struct {
	cmd  *exec.Cmd
	log  string
	done chan error
}

var httpc = &http.Client{Timeout: 30 * time.Second}

func startDaemon(t *testing.T, bin, logName string, args ...string) *daemonProc {
	t.Helper()
	logf, err := os.Create(logName)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, append([]string{"serve"}, args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &daemonProc{cmd: cmd, log: logName, done: make(chan error, 1)}
	go func() { d.done <- cmd.Wait(); logf.Close() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-d.done
		if t.Failed() {
			b, _ := os.ReadFile(logName)
			t.Logf("daemon log %s:\n%s", logName, b)
		}
	})
	return d
}

// waitReady polls /readyz until it answers 200.
func (d *daemonProc) waitReady(t *testing.T, base string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-d.done:
			d.done <- err
			t.Fatalf("daemon exited before it was ready: %v", err)
		default:
		}
		if resp, err := httpc.Get(base + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("daemon not ready within 30s")
}

// stop sends SIGTERM and waits for a clean exit.
func (d *daemonProc) stop(t *testing.T) {
	t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-d.done:
		d.done <- err
		if err != nil {
			t.Fatalf("daemon exit: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("daemon did not stop within 30s of SIGTERM")
	}
}

// kernelInfo is GET /v1/kernels/{id}.
type kernelInfo struct {
	Version uint64 `json:"version"`
	History []struct {
		Version           uint64 `json:"version"`
		RepositoryVersion string `json:"repository_version"`
	} `json:"history"`
}

func (k kernelInfo) repoVersion() string {
	for _, h := range k.History {
		if h.Version == k.Version {
			return h.RepositoryVersion
		}
	}
	return ""
}

func getKernel(t *testing.T, base string) kernelInfo {
	t.Helper()
	resp, err := httpc.Get(base + "/v1/kernels/counter")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var k kernelInfo
	if resp.StatusCode != 200 {
		t.Fatalf("GET kernel: %s", resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&k); err != nil {
		t.Fatal(err)
	}
	return k
}

// producer sends counter messages {producer, seq} in batches and records
// the outputs it gets back.
type producer struct {
	id   uint32
	next uint64
	got  []uint64
	tags map[uint32]int
}

func (p *producer) batch(base string) error {
	const n = 16
	msgs := make([][]byte, n)
	for i := range msgs {
		m := make([]byte, 16)
		binary.LittleEndian.PutUint32(m, p.id)
		binary.LittleEndian.PutUint64(m[8:], p.next+uint64(i))
		msgs[i] = m
	}
	body, _ := json.Marshal(map[string]any{"messages": msgs})
	resp, err := httpc.Post(base+"/v1/kernels/counter/messages", "application/json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return fmt.Errorf("send: %s: %s", resp.Status, raw)
	}
	var r struct {
		Outputs []struct {
			Data []byte `json:"data"`
		} `json:"outputs"`
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return err
	}
	for _, o := range r.Outputs {
		if len(o.Data) != 16 || binary.LittleEndian.Uint32(o.Data) != p.id {
			return fmt.Errorf("producer %d: foreign output %x", p.id, o.Data)
		}
		p.got = append(p.got, binary.LittleEndian.Uint64(o.Data[8:]))
		p.tags[binary.LittleEndian.Uint32(o.Data[4:])]++
	}
	p.next += n
	return nil
}

// streamAll runs the producers until stop is closed, then returns their
// first error.
func streamAll(base string, ps []*producer) (stop func() error) {
	quit := make(chan struct{})
	errs := make([]error, len(ps))
	var wg sync.WaitGroup
	for i, p := range ps {
		wg.Go(func() {
			for {
				select {
				case <-quit:
					return
				default:
				}
				if err := p.batch(base); err != nil {
					errs[i] = err
					return
				}
			}
		})
	}
	return func() error {
		close(quit)
		wg.Wait()
		return errors.Join(errs...)
	}
}

// copySlowly writes version ver of counter into repoDir file by file, the
// artifact in chunks, pausing longer than the daemon's debounce between
// writes, and checks after each pause that the daemon still serves
// code version stay.
func copySlowly(t *testing.T, base, repoDir string, ver uint64, artifact []byte, manifestFirst bool, stay uint64) {
	t.Helper()
	dir := filepath.Join(repoDir, "counter", strconv.FormatUint(ver, 10))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	m := repository.Manifest{Format: "wasm", Entry: repository.WasmEntry, ABIVersion: 1}
	sumRepo, err := repository.Open(t.TempDir(), repository.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// Let Put fill in the SHA-256, then read the manifest it wrote.
	if err := sumRepo.Put(context.Background(), "x", 1, artifact, m); err != nil {
		t.Fatal(err)
	}
	manifest, err := os.ReadFile(filepath.Join(sumRepo.Dir(), "x", "1", repository.ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	pause := func(what string) {
		time.Sleep(350 * time.Millisecond)
		if k := getKernel(t, base); k.Version != stay {
			t.Fatalf("after %s of version %d the daemon serves code version %d, want %d (a partial copy was loaded)", what, ver, k.Version, stay)
		}
	}
	writeManifest := func() {
		if err := os.WriteFile(filepath.Join(dir, repository.ManifestFile), manifest, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if manifestFirst {
		writeManifest()
		pause("the manifest")
	}
	f, err := os.OpenFile(filepath.Join(dir, "kernel.wasm"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	const chunks = 4
	for i := range chunks {
		lo, hi := len(artifact)*i/chunks, len(artifact)*(i+1)/chunks
		if _, err := f.Write(artifact[lo:hi]); err != nil {
			t.Fatal(err)
		}
		if i < chunks-1 || !manifestFirst {
			pause(fmt.Sprintf("chunk %d of the artifact", i+1))
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if !manifestFirst {
		writeManifest()
	}
}

// waitRepoVersion waits until the daemon serves repository version rv.
func waitRepoVersion(t *testing.T, base, rv string) kernelInfo {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		k := getKernel(t, base)
		if k.repoVersion() == rv {
			return k
		}
		if time.Now().After(deadline) {
			t.Fatalf("the daemon still serves repository version %q, want %q", k.repoVersion(), rv)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stateCounts decodes the counter's per-producer {next, count} from a
// checkpoint of either state layout.
func stateCounts(t *testing.T, cp *checkpoint.Checkpoint, p int) (next, count uint64) {
	t.Helper()
	le := binary.LittleEndian
	switch layout := cp.Metadata["state.layout"]; layout {
	case "1":
		return le.Uint64(cp.State[16+p*16:]), le.Uint64(cp.State[24+p*16:])
	case "2":
		return le.Uint64(cp.State[520+p*8:]), le.Uint64(cp.State[8+p*8:])
	default:
		t.Fatalf("unknown state layout %q", layout)
	}
	return 0, 0
}

// checkFinalCheckpoint checks the final checkpoint in stateDir against
// what the producers sent.
func checkFinalCheckpoint(t *testing.T, stateDir string, ps []*producer, layout string) {
	t.Helper()
	store, err := checkpoint.OpenFileStore(stateDir, checkpoint.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cp, _, err := store.Latest(context.Background(), "counter")
	if cp == nil {
		t.Fatalf("no checkpoint: %v", err)
	}
	if cp.Metadata["reason"] != "stop" || cp.Metadata["state.layout"] != layout {
		t.Fatalf("latest checkpoint metadata %v, want reason stop and layout %s", cp.Metadata, layout)
	}
	for _, p := range ps {
		next, count := stateCounts(t, cp, int(p.id))
		if next != p.next || count != p.next {
			t.Errorf("producer %d: the state says next %d count %d; %d messages were sent", p.id, next, count, p.next)
		}
	}
}

func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the daemon")
	}
	bin := buildBinary(t)
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
	if err := repo.Put(context.Background(), "counter", 1, kernels.Wasm("counter_v1"), man); err != nil {
		t.Fatal(err)
	}

	// A non-loopback address without a token is refused.
	out, err := exec.Command(bin, "serve", "--repo", repoDir, "--state", stateDir, "--listen", "0.0.0.0:0").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "without a token") {
		t.Fatalf("serve on 0.0.0.0 without a token: err %v, output %q", err, out)
	}

	addr := freeAddr(t)
	base := "http://" + addr
	args := []string{"--repo", repoDir, "--state", stateDir, "--listen", addr, "--rescan", "2s"}
	d := startDaemon(t, bin, filepath.Join(root, "daemon1.log"), args...)
	d.waitReady(t, base)
	if k := getKernel(t, base); k.Version != 1 || k.repoVersion() != "1" {
		t.Fatalf("first start: %+v", k)
	}

	// Path traversal in IDs and versions is rejected.
	for _, c := range []struct{ method, path, body string }{
		{"GET", "/v1/kernels/..%2F..%2Fetc", ""},
		{"POST", "/v1/kernels/..%2Fcounter/reload", `{"version": 1}`},
		{"POST", "/v1/kernels/counter/reload", `{"version": "../1"}`},
		{"POST", "/v1/kernels/counter/rollback", `{"to": "../../1"}`},
	} {
		req, _ := http.NewRequest(c.method, base+c.path, strings.NewReader(c.body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := httpc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s %s %s: %s, want 400", c.method, c.path, c.body, resp.Status)
		}
	}

	ps := []*producer{{id: 0, tags: map[uint32]int{}}, {id: 1, tags: map[uint32]int{}}}
	stop := streamAll(base, ps)

	// Version 2: the artifact in chunks, then the manifest.
	copySlowly(t, base, repoDir, 2, kernels.Wasm("counter_v2"), false, 1)
	k := waitRepoVersion(t, base, "2")
	// Version 3: the manifest first, then the artifact in chunks.
	copySlowly(t, base, repoDir, 3, kernels.Wasm("counter_v1"), true, k.Version)
	waitRepoVersion(t, base, "3")

	// A removed active version does not stop the kernel.
	if err := os.RemoveAll(filepath.Join(repoDir, "counter", "3")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	waitRepoVersion(t, base, "2")

	// Roll back with the CLI, to the version before (repository version 3).
	out, err = exec.Command(bin, "rollback", "counter", "--addr", base).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "completed") {
		t.Fatalf("hotkernel rollback: %v\n%s", err, out)
	}
	waitRepoVersion(t, base, "3")
	out, err = exec.Command(bin, "status", "--addr", base).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "counter") {
		t.Fatalf("hotkernel status: %v\n%s", err, out)
	}
	time.Sleep(200 * time.Millisecond)
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	// Completed reloads: 2, 3, back to 2 when 3 was removed, the rollback.
	resp, err := httpc.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := `hotkernel_reloads_total{kernel="counter",result="completed"} 4`; !strings.Contains(string(metrics), want) {
		t.Errorf("/metrics lacks %s", want)
	}
	d.stop(t)
	checkFinalCheckpoint(t, stateDir, ps, "1")
	// The scans saw the partial copies, and left them alone.
	if log, _ := os.ReadFile(d.log); !bytes.Contains(log, []byte("version incomplete")) {
		t.Errorf("the daemon never logged an incomplete version")
	}

	// Restart: the kernel resumes from its final checkpoint.
	d = startDaemon(t, bin, filepath.Join(root, "daemon2.log"), args...)
	d.waitReady(t, base)
	if k := getKernel(t, base); k.repoVersion() != "2" {
		t.Fatalf("after the restart the daemon serves repository version %q, want 2", k.repoVersion())
	}
	stop = streamAll(base, ps)
	time.Sleep(300 * time.Millisecond)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	d.stop(t)
	checkFinalCheckpoint(t, stateDir, ps, "2")

	for _, p := range ps {
		if uint64(len(p.got)) != p.next {
			t.Errorf("producer %d: %d outputs for %d messages", p.id, len(p.got), p.next)
		}
		for i, seq := range p.got {
			if seq != uint64(i) {
				t.Fatalf("producer %d: output %d has seq %d: lost, duplicated or out of order", p.id, i, seq)
			}
		}
		if p.tags[1] == 0 || p.tags[2] == 0 {
			t.Errorf("producer %d: outputs per code tag %v; want both versions", p.id, p.tags)
		}
		t.Logf("producer %d: %d messages, each output exactly once in order; per tag %v", p.id, p.next, p.tags)
	}
}
