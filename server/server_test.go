package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hotkernel/hotkernel"
	"github.com/hotkernel/hotkernel/backend/wasm"
	"github.com/hotkernel/hotkernel/code"
	"github.com/hotkernel/hotkernel/examples/kernels"
	"github.com/hotkernel/hotkernel/repository"
	"github.com/hotkernel/hotkernel/server"
	"github.com/prometheus/client_golang/prometheus"
)

var le = binary.LittleEndian

type env struct {
	mgr  *hotkernel.Manager
	srv  *server.Server
	repo *repository.Repo
	h    http.Handler
}

func counterMsg(producer uint32, seq uint64) []byte {
	b := make([]byte, 16)
	le.PutUint32(b, producer)
	le.PutUint64(b[8:], seq)
	return b
}

func wasmSrc(name string) *code.Source {
	return code.FromWASM(kernels.Wasm(name), "hk_process")
}

func newEnv(t *testing.T, token string) *env {
	t.Helper()
	ctx := context.Background()
	rt, err := wasm.NewRuntime(ctx, wasm.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	met := server.NewMetrics(reg)
	cfg := hotkernel.DefaultConfig()
	cfg.RetryBackoff = time.Millisecond
	cfg.HealthMessages = 4
	cfg.HealthTime = 5 * time.Millisecond
	cfg.OnReload = met.ObserveReload
	mgr, err := hotkernel.New(cfg, rt.Backend())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mgr.Close(context.Background()) })
	repo, err := repository.Open(t.TempDir(), repository.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i, name := range []string{"counter_v1", "counter_v2"} {
		if err := repo.Put(ctx, "counter", uint64(i+1), kernels.Wasm(name), repository.Manifest{Format: "wasm", Entry: "hk_process", ABIVersion: 1}); err != nil {
			t.Fatal(err)
		}
	}
	srv, err := server.New(server.Config{Manager: mgr, Repo: repo, Token: token, Metrics: met, MaxBodyBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Register(ctx, "counter", wasmSrc("counter_v1"), hotkernel.RegisterOptions{}); err != nil {
		t.Fatal(err)
	}
	return &env{mgr: mgr, srv: srv, repo: repo, h: srv.Handler()}
}

// do runs one request through the handler.
func (e *env) do(t *testing.T, method, target, ctype string, body []byte, hdr ...string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, target, bytes.NewReader(body))
	if ctype != "" {
		r.Header.Set("Content-Type", ctype)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, r)
	return w
}

func decode[T any](t *testing.T, w *httptest.ResponseRecorder) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil {
		t.Fatalf("decode %q: %v", w.Body.String(), err)
	}
	return v
}

type errBody struct {
	Error  string `json:"error"`
	Code   string `json:"code"`
	Detail []struct {
		File   string `json:"file"`
		Reason string `json:"reason"`
	} `json:"detail"`
}

func wantStatus(t *testing.T, w *httptest.ResponseRecorder, status int) {
	t.Helper()
	if w.Code != status {
		t.Fatalf("status %d, want %d: %s", w.Code, status, w.Body.String())
	}
	if status >= 400 {
		var eb errBody
		if err := json.Unmarshal(w.Body.Bytes(), &eb); err != nil || eb.Error == "" || eb.Code == "" {
			t.Fatalf("error body %q is not {error, code}", w.Body.String())
		}
	}
}

type sendResp struct {
	FirstSeq uint64 `json:"first_seq"`
	Outputs  []struct {
		Version uint64 `json:"version"`
		Data    []byte `json:"data"`
	} `json:"outputs"`
}

func (e *env) send(t *testing.T, producer uint32, from uint64, n int) sendResp {
	t.Helper()
	msgs := make([][]byte, n)
	for i := range msgs {
		msgs[i] = counterMsg(producer, from+uint64(i))
	}
	body, _ := json.Marshal(map[string]any{"messages": msgs})
	w := e.do(t, "POST", "/v1/kernels/counter/messages", "application/json", body)
	wantStatus(t, w, 200)
	return decode[sendResp](t, w)
}

// checkOutputs asserts one output per message, in order, from version ver
// with the counter's tag for that version.
func checkOutputs(t *testing.T, r sendResp, producer uint32, from uint64, n int, ver uint64, tag uint32) {
	t.Helper()
	if len(r.Outputs) != n {
		t.Fatalf("%d outputs, want %d", len(r.Outputs), n)
	}
	for i, o := range r.Outputs {
		if len(o.Data) != 16 || le.Uint32(o.Data) != producer || le.Uint32(o.Data[4:]) != tag || le.Uint64(o.Data[8:]) != from+uint64(i) || o.Version != ver {
			t.Fatalf("output %d = %x version %d; want producer %d tag %d seq %d version %d", i, o.Data, o.Version, producer, tag, from+uint64(i), ver)
		}
	}
}

type resultResp struct {
	Kernel     string `json:"kernel"`
	OldVersion uint64 `json:"old_version"`
	NewVersion uint64 `json:"new_version"`
	Active     uint64 `json:"active"`
	RolledBack bool   `json:"rolled_back"`
	Pause      struct {
		NS   int64  `json:"ns"`
		Text string `json:"text"`
	} `json:"pause"`
	Phases map[string]struct {
		NS   int64  `json:"ns"`
		Text string `json:"text"`
	} `json:"phases"`
	Error string `json:"error"`
}

func TestListAndGet(t *testing.T) {
	e := newEnv(t, "")
	e.send(t, 1, 0, 3)
	w := e.do(t, "GET", "/v1/kernels", "", nil)
	wantStatus(t, w, 200)
	list := decode[struct {
		Kernels []struct {
			ID, Format, SHA256, State string
			Version, Processed        uint64
			QueueDepth                int `json:"queue_depth"`
		} `json:"kernels"`
	}](t, w)
	if len(list.Kernels) != 1 || list.Kernels[0].ID != "counter" || list.Kernels[0].Format != "wasm" ||
		list.Kernels[0].State != "running" || list.Kernels[0].Processed != 3 || list.Kernels[0].SHA256 != wasmSrc("counter_v1").SHA256Hex() {
		t.Fatalf("list = %+v", list)
	}
	w = e.do(t, "GET", "/v1/kernels/counter", "", nil)
	wantStatus(t, w, 200)
	one := decode[struct {
		ID      string
		History []struct {
			Version, Processed uint64
			Checkpoint         bool
		}
	}](t, w)
	if one.ID != "counter" || len(one.History) != 1 || one.History[0].Processed != 3 || one.History[0].Checkpoint {
		t.Fatalf("kernel = %s", w.Body.String())
	}
	wantStatus(t, e.do(t, "GET", "/v1/kernels/nope", "", nil), 404)
	wantStatus(t, e.do(t, "POST", "/v1/kernels/nope/messages", "application/json", []byte(`{"messages":["AA=="]}`)), 404)
	wantStatus(t, e.do(t, "GET", "/healthz", "", nil), 200)
	wantStatus(t, e.do(t, "GET", "/readyz", "", nil), 200)
	w = e.do(t, "GET", "/v1/stats", "", nil)
	wantStatus(t, w, 200)
	if !strings.Contains(w.Body.String(), `"processed":{"counter":{"1":3}}`) {
		t.Fatalf("stats = %s", w.Body.String())
	}
}

func TestBatchOutputsAndReloads(t *testing.T) {
	e := newEnv(t, "")
	r := e.send(t, 7, 0, 10)
	if r.FirstSeq != 0 {
		t.Fatalf("first_seq %d", r.FirstSeq)
	}
	checkOutputs(t, r, 7, 0, 10, 1, 1)

	// Reload by repository version.
	w := e.do(t, "POST", "/v1/kernels/counter/reload", "application/json", []byte(`{"version":2}`))
	wantStatus(t, w, 200)
	res := decode[resultResp](t, w)
	if res.Kernel != "counter" || res.OldVersion != 1 || res.NewVersion != 2 || res.Active != 2 || res.RolledBack || res.Phases["total"].NS <= 0 || res.Pause.Text == "" {
		t.Fatalf("result = %s", w.Body.String())
	}
	// The first messages after the swap run in the health window; their
	// outputs still belong to this request.
	r = e.send(t, 7, 10, 10)
	if r.FirstSeq != 10 {
		t.Fatalf("first_seq %d", r.FirstSeq)
	}
	checkOutputs(t, r, 7, 10, 10, 2, 2)

	// Reload by upload.
	w = e.do(t, "POST", "/v1/kernels/counter/reload", "application/wasm", kernels.Wasm("counter_v1"))
	wantStatus(t, w, 200)
	if res := decode[resultResp](t, w); res.NewVersion != 3 {
		t.Fatalf("result = %s", w.Body.String())
	}
	checkOutputs(t, e.send(t, 7, 20, 5), 7, 20, 5, 3, 1)
	w = e.do(t, "POST", "/v1/kernels/counter/reload?format=wasm&entry=hk_process", "application/octet-stream", kernels.Wasm("counter_v2"))
	wantStatus(t, w, 200)
	checkOutputs(t, e.send(t, 7, 25, 5), 7, 25, 5, 4, 2)

	// Rollback to the previous version, then to a named one.
	w = e.do(t, "POST", "/v1/kernels/counter/rollback", "", nil)
	wantStatus(t, w, 200)
	if res := decode[resultResp](t, w); res.Active != 3 {
		t.Fatalf("rollback = %s", w.Body.String())
	}
	checkOutputs(t, e.send(t, 7, 30, 3), 7, 30, 3, 3, 1)
	w = e.do(t, "POST", "/v1/kernels/counter/rollback", "application/json", []byte(`{"to":2}`))
	wantStatus(t, w, 200)
	checkOutputs(t, e.send(t, 7, 33, 3), 7, 33, 3, 2, 2)
	wantStatus(t, e.do(t, "POST", "/v1/kernels/counter/rollback", "application/json", []byte(`{"to":99}`)), 409)

	// Metrics.
	w = e.do(t, "GET", "/metrics", "", nil)
	wantStatus(t, w, 200)
	body := w.Body.String()
	for _, want := range []string{
		`hotkernel_reloads_total{kernel="counter",result="completed"} 5`,
		`hotkernel_messages_processed_total{kernel="counter",version="1"} 10`,
		`hotkernel_reload_pause_seconds_bucket{kernel="counter"`,
		`hotkernel_reload_phase_seconds_count{kernel="counter",phase="compile"}`,
		`hotkernel_queue_depth{kernel="counter"} 0`,
		`hotkernel_messages_failed_total{kernel="counter"} 0`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if t.Failed() {
		t.Log(body)
	}
}

func TestStream(t *testing.T) {
	e := newEnv(t, "")
	ts := httptest.NewServer(e.h)
	defer ts.Close()
	var in bytes.Buffer
	for i := range 20 {
		fmt.Fprintf(&in, "{\"data\":%q}\n", base64.StdEncoding.EncodeToString(counterMsg(3, uint64(i))))
	}
	resp, err := http.Post(ts.URL+"/v1/kernels/counter/stream", "application/x-ndjson", &in)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	sc := bufio.NewScanner(resp.Body)
	n := 0
	for sc.Scan() {
		var r sendResp
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		if r.FirstSeq != uint64(n) {
			t.Fatalf("line %d first_seq %d", n, r.FirstSeq)
		}
		checkOutputs(t, r, 3, uint64(n), 1, 1, 1)
		n++
	}
	if n != 20 {
		t.Fatalf("%d lines, want 20", n)
	}

	// A bad line ends the stream with an error line.
	resp2, err := http.Post(ts.URL+"/v1/kernels/counter/stream", "application/x-ndjson", strings.NewReader("{\"data\":\"AAAA\",\"x\":1}\n"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp2.Body)
	resp2.Body.Close()
	if !strings.Contains(string(b), `"code":"bad_json"`) {
		t.Fatalf("bad line answered %q", b)
	}
}

func TestConcurrentBatches(t *testing.T) {
	e := newEnv(t, "")
	var wg sync.WaitGroup
	for p := range 4 {
		wg.Go(func() {
			for round := range 5 {
				from := uint64(round * 8)
				msgs := make([][]byte, 8)
				for i := range msgs {
					msgs[i] = counterMsg(uint32(p), from+uint64(i))
				}
				body, _ := json.Marshal(map[string]any{"messages": msgs})
				w := e.do(t, "POST", "/v1/kernels/counter/messages", "application/json", body)
				if w.Code != 200 {
					t.Errorf("status %d", w.Code)
					return
				}
				var r sendResp
				_ = json.Unmarshal(w.Body.Bytes(), &r)
				if len(r.Outputs) != 8 {
					t.Errorf("%d outputs", len(r.Outputs))
					return
				}
				for i, o := range r.Outputs {
					if le.Uint32(o.Data) != uint32(p) || le.Uint64(o.Data[8:]) != from+uint64(i) {
						t.Errorf("producer %d got output %x", p, o.Data)
					}
				}
			}
		})
	}
	wg.Wait()
}

func TestReloadErrors(t *testing.T) {
	e := newEnv(t, "")
	// Invalid upload: the validator's message comes back.
	w := e.do(t, "POST", "/v1/kernels/counter/reload", "application/wasm", []byte("\x00asm\x01\x00\x00\x00garbage"))
	wantStatus(t, w, 422)
	eb := decode[errBody](t, w)
	if eb.Code != "invalid_code" || len(eb.Detail) == 0 || eb.Detail[0].Reason == "" {
		t.Fatalf("422 body %s", w.Body.String())
	}
	// A held request makes the next reload conflict.
	req, err := e.mgr.RequestReload("counter", wasmSrc("counter_v2"))
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, e.do(t, "POST", "/v1/kernels/counter/reload", "application/json", []byte(`{"version":2}`)), 409)
	wantStatus(t, e.do(t, "POST", "/v1/kernels/counter/rollback", "", nil), 409)
	e.mgr.Cancel(req)
	// Bad requests.
	wantStatus(t, e.do(t, "POST", "/v1/kernels/counter/reload", "application/json", []byte(`{"version":`)), 400)
	wantStatus(t, e.do(t, "POST", "/v1/kernels/counter/reload", "application/json", []byte(`{"version":2,"extra":1}`)), 400)
	wantStatus(t, e.do(t, "POST", "/v1/kernels/counter/reload", "application/json", []byte(`{"version":0}`)), 400)
	wantStatus(t, e.do(t, "POST", "/v1/kernels/counter/reload", "application/json", []byte(`{"version":-1}`)), 400)
	wantStatus(t, e.do(t, "POST", "/v1/kernels/counter/reload", "application/json", []byte(`{"version":"../1"}`)), 400)
	wantStatus(t, e.do(t, "POST", "/v1/kernels/counter/reload", "application/json", []byte(`{"version":9}`)), 404)
	wantStatus(t, e.do(t, "POST", "/v1/kernels/counter/reload", "text/plain", []byte(`x`)), 415)
	wantStatus(t, e.do(t, "POST", "/v1/kernels/counter/messages", "application/json", []byte(`{"messages":["AA=="],"x":1}`)), 400)
	wantStatus(t, e.do(t, "POST", "/v1/kernels/counter/messages", "application/json", []byte(`not json`)), 400)
	wantStatus(t, e.do(t, "POST", "/v1/kernels/counter/rollback", "application/json", []byte(`{"to":"x"}`)), 400)
	// Oversized bodies.
	big := make([]byte, 2<<20)
	wantStatus(t, e.do(t, "POST", "/v1/kernels/counter/reload", "application/wasm", big), 413)
	wantStatus(t, e.do(t, "POST", "/v1/kernels/counter/messages", "application/json", append([]byte(`{"messages":["`), bytes.Repeat([]byte("A"), 2<<20)...)), 413)
	if v, _ := e.mgr.CurrentVersion("counter"); v != 1 {
		t.Fatalf("version %d after failed reloads", v)
	}
	// The kernel still answers.
	checkOutputs(t, e.send(t, 1, 0, 2), 1, 0, 2, 1, 1)
}

func TestConcurrentReloads(t *testing.T) {
	e := newEnv(t, "")
	var wg sync.WaitGroup
	codes := make([]int, 2)
	for i := range codes {
		wg.Go(func() {
			codes[i] = e.do(t, "POST", "/v1/kernels/counter/reload", "application/json", []byte(`{"version":2}`)).Code
		})
	}
	wg.Wait()
	// Both may succeed one after the other; when they overlap, one is 409.
	for _, c := range codes {
		if c != 200 && c != 409 {
			t.Fatalf("codes %v", codes)
		}
	}
	if codes[0] != 200 && codes[1] != 200 {
		t.Fatalf("codes %v: none succeeded", codes)
	}
}

func TestPathTraversal(t *testing.T) {
	e := newEnv(t, "")
	for _, p := range []string{
		"/v1/kernels/%2e%2e/reload", "/v1/kernels/a%2Fb/reload", "/v1/kernels/..%2F..%2Fetc/reload",
		"/v1/kernels/../reload", "/v1/kernels/.%2e/messages", "/v1/kernels/%2e%2e",
	} {
		w := e.do(t, "POST", p, "application/json", []byte(`{"version":1}`))
		if w.Code != 400 && w.Code != 404 && w.Code != 405 && w.Code != 301 && w.Code != 307 {
			t.Errorf("%s: status %d", p, w.Code)
		}
	}
	if v, _ := e.mgr.CurrentVersion("counter"); v != 1 {
		t.Fatalf("version %d", v)
	}
}

func TestAuth(t *testing.T) {
	e := newEnv(t, "s3cret")
	w := e.do(t, "GET", "/v1/kernels", "", nil)
	wantStatus(t, w, 401)
	if w.Header().Get("WWW-Authenticate") == "" {
		t.Fatal("no WWW-Authenticate")
	}
	wantStatus(t, e.do(t, "GET", "/v1/kernels", "", nil, "Authorization", "Bearer wrong"), 401)
	wantStatus(t, e.do(t, "GET", "/metrics", "", nil), 401)
	wantStatus(t, e.do(t, "GET", "/v1/kernels", "", nil, "Authorization", "Bearer s3cret"), 200)
	wantStatus(t, e.do(t, "GET", "/healthz", "", nil), 200)
}

func TestCheckBind(t *testing.T) {
	for _, a := range []string{"0.0.0.0:8080", ":8080", "[::]:80", "10.0.0.1:80", "example.com:80"} {
		if server.CheckBind(a, "") == nil {
			t.Errorf("%s accepted without a token", a)
		}
		if server.CheckBind(a, "t") != nil {
			t.Errorf("%s refused with a token", a)
		}
	}
	for _, a := range []string{"127.0.0.1:8080", "[::1]:8080", "localhost:8080", "127.0.0.2:1"} {
		if err := server.CheckBind(a, ""); err != nil {
			t.Errorf("%s: %v", a, err)
		}
	}
}

func TestNoOutputsForForeignKernel(t *testing.T) {
	e := newEnv(t, "")
	if _, err := e.mgr.Register(context.Background(), "direct", wasmSrc("counter_v1"), hotkernel.RegisterOptions{}); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, e.do(t, "POST", "/v1/kernels/direct/messages", "application/json", []byte(`{"messages":["AA=="]}`)), 409)
}

// TestBrokenReleaseUnderAPITraffic reloads, through the server, to a
// release that traps on every seventh message while clients keep sending
// batches: the new code sees those messages in its health window and is
// rolled back, and every batch still gets exactly its own outputs, all
// from the old version.
func TestBrokenReleaseUnderAPITraffic(t *testing.T) {
	e := newEnv(t, "")
	checkOutputs(t, e.send(t, 1, 0, 10), 1, 0, 10, 1, 1)
	type outcome struct {
		res *hotkernel.Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := e.srv.Reload(context.Background(), "counter", wasmSrc("counter_v2_broken"))
		done <- outcome{res, err}
	}()
	// Two clients send while the reload runs.
	var wg sync.WaitGroup
	var stop atomic.Bool
	for p := uint32(1); p <= 2; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			next := uint64(0)
			if p == 1 {
				next = 10
			}
			for !stop.Load() {
				checkOutputs(t, e.send(t, p, next, 20), p, next, 20, 1, 1)
				next += 20
			}
		}()
	}
	o := <-done
	stop.Store(true)
	wg.Wait()
	if !errors.Is(o.err, hotkernel.ErrUnhealthy) || o.res == nil || !o.res.RolledBack || o.res.HealthMessages == 0 {
		t.Fatalf("reload to a broken release under traffic: %v (result %+v)", o.err, o.res)
	}
}
