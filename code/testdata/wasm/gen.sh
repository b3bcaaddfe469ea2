#!/bin/sh
# Assembles the WebAssembly text files here with wat2wasm. invalid.wat is
# well-formed but does not validate, so it is assembled with --no-check.
set -eu
wat2wasm -o kernel.wasm kernel.wat
wat2wasm -o start.wasm start.wat
wat2wasm --enable-threads --debug-names -o features.wasm features.wat
wat2wasm --no-check -o invalid.wasm invalid.wat
if wat2wasm -o /dev/null invalid.wat 2>/dev/null; then
	echo "gen.sh: invalid.wat unexpectedly validates" >&2
	exit 1
fi
