package server_test

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// streamedLine is any line of a streamed reload.
type streamedLine struct {
	Phase string `json:"phase"`
	Took  *struct {
		NS   int64  `json:"ns"`
		Text string `json:"text"`
	} `json:"took"`
	Result *struct {
		OldVersion uint64 `json:"old_version"`
		NewVersion uint64 `json:"new_version"`
		Active     uint64 `json:"active"`
		Pause      struct {
			Text string `json:"text"`
		} `json:"pause"`
		Error string `json:"error"`
	} `json:"result"`
	Error string `json:"error"`
	Code  string `json:"code"`
}

func readStreamed(t *testing.T, body string) []streamedLine {
	t.Helper()
	var out []streamedLine
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		var l streamedLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		out = append(out, l)
	}
	return out
}

func TestStreamedReload(t *testing.T) {
	e := newEnv(t, "")
	e.send(t, 0, 0, 10)
	w := e.do(t, "POST", "/v1/kernels/counter/reload", "application/json", []byte(`{"version": 2}`), "Accept", "application/x-ndjson")
	wantStatus(t, w, http.StatusOK)
	if ct := w.Header().Get("Content-Type"); ct != "application/x-ndjson" {
		t.Fatalf("Content-Type %q", ct)
	}
	lines := readStreamed(t, w.Body.String())
	if len(lines) < 2 {
		t.Fatalf("got %d lines: %s", len(lines), w.Body.String())
	}
	var seen []string
	for _, l := range lines[:len(lines)-1] {
		if l.Phase == "" || l.Took == nil || l.Result != nil {
			t.Fatalf("not a phase line: %+v", l)
		}
		seen = append(seen, l.Phase)
	}
	for _, want := range []string{"validating", "compiling", "draining", "checkpointing", "swapping", "restoring"} {
		if !strings.Contains(strings.Join(seen, " "), want) {
			t.Errorf("phase %s missing from %v", want, seen)
		}
	}
	last := lines[len(lines)-1]
	if last.Result == nil || last.Result.Error != "" || last.Result.Active != 2 || last.Result.OldVersion != 1 || last.Result.Pause.Text == "" {
		t.Fatalf("last line: %s", w.Body.String())
	}
	// Messages after the streamed reload get the new code's outputs.
	checkOutputs(t, e.send(t, 0, 10, 5), 0, 10, 5, 2, 2)

	// A reload that cannot start is an ordinary JSON error.
	w = e.do(t, "POST", "/v1/kernels/nope/reload", "application/json", []byte(`{"version": 2}`), "Accept", "application/x-ndjson")
	wantStatus(t, w, http.StatusNotFound)
	w = e.do(t, "POST", "/v1/kernels/counter/reload", "application/json", []byte(`{"version": 9}`), "Accept", "application/x-ndjson")
	wantStatus(t, w, http.StatusNotFound)

	// Without the Accept header the reply is the plain Result.
	w = e.do(t, "POST", "/v1/kernels/counter/reload", "application/json", []byte(`{"version": 1}`))
	wantStatus(t, w, http.StatusOK)
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q", ct)
	}
}
