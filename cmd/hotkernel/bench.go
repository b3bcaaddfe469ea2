package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hotkernel/hotkernel/internal/bench"
)

const benchSynopsis = "bench [--backend wasm|cuda] [--json] [--duration D] [--reloads N] [--producers N]"

// runBench implements "hotkernel bench": throughput, reload pauses by
// state size with and without load, and throughput under 10 reloads per
// second; on the WebAssembly backend also the pause with a small and a
// large module, each beside its target; on the CUDA backend (--backend
// cuda) the GPU, the state carried over by each reload and the load time
// of every example module, without targets. It prints a table, or JSON
// with --json. Without a CUDA driver or device, --backend cuda fails
// (exit 1) saying so.
func runBench(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("bench", benchSynopsis, stderr)
	asJSON := fs.Bool("json", false, "print the report as JSON")
	o := bench.DefaultOptions()
	fs.StringVar(&o.Backend, "backend", o.Backend, "backend to measure: wasm (embedded, CPU) or cuda (the first NVIDIA GPU)")
	fs.DurationVar(&o.Duration, "duration", o.Duration, "length of each throughput run")
	fs.IntVar(&o.Reloads, "reloads", o.Reloads, "reloads per pause measurement (a quarter of them for the largest state: 16 MiB on wasm, 64 MiB on cuda)")
	fs.IntVar(&o.Producers, "producers", o.Producers, "producers in the busy measurements")
	if exit, ok := parseFlagsOnly(fs, args, stderr); !ok {
		return exit
	}
	if o.Duration <= 0 || o.Reloads < 2 || o.Producers < 1 {
		fmt.Fprintln(stderr, "hotkernel bench: --duration must be positive, --reloads at least 2, --producers at least 1")
		return exitUsage
	}
	if o.Backend != bench.BackendWasm && o.Backend != bench.BackendCUDA {
		fmt.Fprintf(stderr, "hotkernel bench: --backend %q: want %s or %s\n", o.Backend, bench.BackendWasm, bench.BackendCUDA)
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	progress := func(s string) { fmt.Fprintln(stderr, "measuring", s) }
	r, err := bench.Run(ctx, o, progress)
	if err != nil {
		fmt.Fprintln(stderr, "hotkernel bench:", err)
		return exitFailure
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(r); err != nil {
			fmt.Fprintln(stderr, "hotkernel bench:", err)
			return exitFailure
		}
		return exitOK
	}
	printReport(stdout, r)
	return exitOK
}

func printReport(w io.Writer, r *bench.Report) {
	if r.Backend == bench.BackendCUDA {
		printCUDAReport(w, r)
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "THROUGHPUT\tPRODUCERS\tMSGS/S\tRELOADS\tTARGET")
	for i, t := range r.Throughput {
		target := ""
		if i == 0 {
			target = fmt.Sprintf(">= 5 M msgs/s: %s", verdict(t.PerSecond >= 5e6))
		}
		fmt.Fprintf(tw, "%s\t%d\t%.2f M\t%d\t%s\n", t.Name, t.Producers, t.PerSecond/1e6, t.Reloads, target)
	}
	fmt.Fprintf(tw, "under 10 reloads/s vs none\t\t%.1f%%\t\t>= 95%%: %s\n", 100*r.ReloadRatio, verdict(r.ReloadRatio >= 0.95))
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PAUSE\tRELOADS\tP50\tP99\tMAX\tCOMPILE P50\tTARGET")
	var p99small time.Duration
	for _, p := range r.Pauses {
		target := ""
		switch {
		case p.StateBytes == 4096 && p.Producers == 0:
			p99small = p.P99
			target = fmt.Sprintf("p99 <= 50µs: %s", verdict(p.P99 <= 50*time.Microsecond))
		case p.StateBytes == 16<<20 && p.Producers == 0 && p99small > 0:
			target = fmt.Sprintf("p99 <= 2x 4 KiB: %s", verdict(p.P99 <= 2*p99small))
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\n", p.Name, p.Reloads, fmtDur(p.P50), fmtDur(p.P99), fmtDur(p.Max), fmtDur(p.Compile), target)
	}
	tw.Flush()
}

// printCUDAReport prints the figures of a CUDA report: the same tables
// as printReport without the targets, which were set for the WebAssembly
// backend, the state each reload carried over, and the module loads.
func printCUDAReport(w io.Writer, r *bench.Report) {
	fmt.Fprintln(w, "device:", r.Device)
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "THROUGHPUT\tPRODUCERS\tMSGS/S\tRELOADS")
	for _, t := range r.Throughput {
		fmt.Fprintf(tw, "%s\t%d\t%.2f M\t%d\n", t.Name, t.Producers, t.PerSecond/1e6, t.Reloads)
	}
	fmt.Fprintf(tw, "under 10 reloads/s vs none\t\t%.1f%%\t\n", 100*r.ReloadRatio)
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PAUSE\tRELOADS\tP50\tP99\tMAX\tCOMPILE P50\tCHECKPOINT")
	for _, p := range r.Pauses {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\n", p.Name, p.Reloads, fmtDur(p.P50), fmtDur(p.P99), fmtDur(p.Max), fmtDur(p.Compile), bench.Bytes(p.StateBytes))
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "MODULE LOAD\tPTX\tJIT (NEW BYTES)\tJIT (SAME BYTES AGAIN)\tCUBIN")
	for _, m := range r.ModuleLoads {
		cubin := "none for this architecture (no ptxas to assemble one)"
		switch {
		case m.CUBINError != "":
			cubin = fmt.Sprintf("%s, %s: failed: %s", m.CUBINArch, m.CUBINFrom, firstLine(m.CUBINError))
		case m.CUBINArch != "":
			cubin = fmt.Sprintf("%s (%s, %s)", fmtDur(m.CUBIN), m.CUBINArch, m.CUBINFrom)
		}
		fmt.Fprintf(tw, "%s\t%.1f KiB\t%s\t%s\t%s\n", m.Kernel, float64(m.PTXBytes)/1024, fmtDur(m.JIT), fmtDur(m.JITAgain), cubin)
	}
	tw.Flush()
}

// firstLine returns s up to its first newline.
func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}
