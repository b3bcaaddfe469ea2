#!/bin/sh
# Rebuilds every kernel module (.wasm) under this directory from the
# sources beside it (c/*.c, counter_go/*.go); `go generate
# ./examples/kernels` runs it. The outputs are deterministic for a given
# clang and Go release: run it twice and the bytes do not change. The committed modules were built with clang 14
# (wasm-ld 14) and Go 1.26; another release may produce other bytes.
#
# Tools: clang with the wasm32 target and wasm-ld (CLANG=path to
# override), and the go command.
set -eu
cd "$(dirname "$0")"
clang=${CLANG:-clang}

# C kernels: no libc, no entry point; bulk memory so that struct copies
# become memory.copy/memory.fill; the C stack first in memory, so that a
# stack overflow traps instead of overwriting data; __stack_pointer
# exported (needs mutable globals) so that the host can reset the C stack
# after a trap.
cc() {
	out=$1
	shift
	(cd c && "$clang" --target=wasm32 -O2 -nostdlib -mbulk-memory -mmutable-globals \
		-Wl,--no-entry -Wl,--stack-first -Wl,--export=__stack_pointer \
		-o "$out" "$@" && chmod 644 "$out")
	echo "built c/$out"
}

for v in 1 2; do
	cc counter_v$v.wasm counter_v$v.c
	cc counter_v${v}_1m.wasm -DSTATE_BYTES=1048576 counter_v$v.c
	cc counter_v${v}_16m.wasm -DSTATE_BYTES=16777216 counter_v$v.c
done
cc counter_v2_broken.wasm -DBROKEN counter_v2.c
cc trivial.wasm trivial.c
cc hostile.wasm hostile.c
cc hostile_trap_all.wasm -DTRAP_ALL hostile.c
cc big.wasm big.c

# The Go kernel: a WASI reactor (-buildmode=c-shared exports _initialize).
(cd counter_go && GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath \
	-buildvcs=false -ldflags=-buildid= -o counter_go.wasm .)
echo "built counter_go/counter_go.wasm"
