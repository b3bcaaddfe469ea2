#!/usr/bin/env bash
# The project's test command: vet, the unit tests under the race detector,
# then every fuzz target for a short while (FUZZTIME, default 15s).
#
# PTX assembly tests need ptxas: set HOTKERNEL_PTXAS or put it on PATH
# (scripts/install-ptxas.sh installs it). Without it they skip, unless
# HOTKERNEL_REQUIRE_TOOLS=1, which turns a missing tool into a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-15s}

unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
	echo "gofmt needed on:" >&2
	echo "$unformatted" >&2
	exit 1
fi
go vet ./...
go test -race -count=1 ./...

if [ "$fuzztime" != 0 ]; then
	for pkg in $(go list ./...); do
		for target in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
			echo "fuzz $pkg $target for $fuzztime"
			go test "$pkg" -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" -fuzzminimizetime 5s >/tmp/hotkernel-fuzz.log 2>&1 || {
				cat /tmp/hotkernel-fuzz.log
				exit 1
			}
			tail -n 1 /tmp/hotkernel-fuzz.log
		done
	done
fi
echo "all tests passed"
