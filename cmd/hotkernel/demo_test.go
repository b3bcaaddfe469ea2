package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/hotkernel/hotkernel/internal/bench"
)

func TestDemo(t *testing.T) {
	code, out, stderr := runCLI(t, "demo", "--interval", "150ms", "--producers", "2")
	if code != exitOK {
		t.Fatalf("demo exit %d\n%s%s", code, out, stderr)
	}
	for _, want := range []string{"counter_go.wasm", "migrated", "rolled back to v3", ", lost 0, duplicated or out of order 0", "2 completed, 1 rolled back"} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
}

func TestBenchJSON(t *testing.T) {
	if testing.Short() {
		t.Skip("runs every measurement")
	}
	code, out, stderr := runCLI(t, "bench", "--json", "--duration", "100ms", "--reloads", "4", "--producers", "2")
	if code != exitOK {
		t.Fatalf("bench exit %d\n%s", code, stderr)
	}
	var r bench.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("bench --json: %v\n%s", err, out)
	}
	if len(r.Throughput) != 3 || len(r.Pauses) != 8 || r.ReloadRatio <= 0 {
		t.Errorf("report %+v", r)
	}
	for _, p := range r.Pauses {
		if p.Reloads < 2 || p.P50 <= 0 || p.Max < p.P99 || p.P99 < p.P50 {
			t.Errorf("pause row %+v", p)
		}
	}
	if code, _, _ := runCLI(t, "bench", "--reloads", "1"); code != exitUsage {
		t.Errorf("bench --reloads 1: exit %d", code)
	}
}
