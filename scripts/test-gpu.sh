#!/usr/bin/env bash
# The GPU check, for a machine with an NVIDIA GPU and its driver: names the
# device, runs the tests that use the GPU with HOTKERNEL_REQUIRE_GPU=1 (so
# that a test which finds no GPU fails instead of skipping), then measures
# the CUDA backend with "hotkernel bench --backend cuda".
#
#   bash scripts/test-gpu.sh
#
# Writes, under $OUT (default: the repository root), when the bench runs
# succeed:
#   gpu-bench.json  the report of one bench run, as JSON
#   gpu-bench.txt   the table of a second run (its figures differ a little)
# BENCH_ARGS adds flags to both bench runs, for example "--reloads 50".
#
# Needs Go and the module's dependencies in the module cache (go mod
# download, where there is a network); no CUDA toolkit. The tests run under
# the race detector when cgo is available (a C compiler), without it
# otherwise. With ptxas (HOTKERNEL_PTXAS or PATH) the bench also loads
# CUBINs assembled for GPUs that have no embedded CUBIN.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-.}
mkdir -p "$out"
export HOTKERNEL_REQUIRE_GPU=1

echo "== device"
if command -v nvidia-smi >/dev/null 2>&1; then
	nvidia-smi -L
else
	echo "nvidia-smi not found; the bench below names the device the driver opens"
fi

race=-race
if [ "$(go env CGO_ENABLED)" != 1 ]; then
	echo "cgo is off (no C compiler): the tests run without the race detector" >&2
	race=
fi

# Every step runs even when an earlier one failed, so that one run on a
# GPU gives every result; the script fails at the end if any step did.
failed=()
step() {
	local label=$1
	shift
	echo "== $label"
	"$@" || failed+=("$label")
}

step "tests: internal/cuda, backend/cuda" go test -count=1 $race ./internal/cuda ./backend/cuda
step "tests: the manager on CUDA" go test -count=1 $race -run CUDA .

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
bench_json() {
	"$tmp/hotkernel" bench --backend cuda --json "$@" >"$tmp/gpu-bench.json" && mv "$tmp/gpu-bench.json" "$out/gpu-bench.json"
}
bench_table() {
	"$tmp/hotkernel" bench --backend cuda "$@" | tee "$tmp/gpu-bench.txt" && mv "$tmp/gpu-bench.txt" "$out/gpu-bench.txt"
}
if step "build hotkernel" go build -o "$tmp/hotkernel" ./cmd/hotkernel && [ -x "$tmp/hotkernel" ]; then
	# shellcheck disable=SC2086 # BENCH_ARGS is a list of flags
	step "hotkernel bench --backend cuda --json > $out/gpu-bench.json" bench_json ${BENCH_ARGS:-}
	# shellcheck disable=SC2086
	step "hotkernel bench --backend cuda" bench_table ${BENCH_ARGS:-}
fi

if [ ${#failed[@]} -gt 0 ]; then
	echo "FAILED:" >&2
	printf '  %s\n' "${failed[@]}" >&2
	exit 1
fi
echo "GPU tests passed; the bench report is in $out/gpu-bench.json and $out/gpu-bench.txt"
