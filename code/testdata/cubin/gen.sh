#!/bin/sh
# Assembles each PTX file here into a CUBIN for a few SM architectures:
# NAME.sm_XY.cubin. reduce.ptx is also assembled as a relocatable object
# (ptxas -c), in which its device function keeps its own section.
# PTXAS names the assembler (default: ptxas on PATH).
set -eu
ptxas=${PTXAS:-ptxas}
for src in vadd.ptx reduce.ptx; do
	base=${src%.ptx}
	for arch in sm_52 sm_80 sm_90; do
		"$ptxas" -arch="$arch" -o "$base.$arch.cubin" "$src"
	done
done
"$ptxas" -c -arch=sm_80 -o reduce.sm_80.rel.cubin reduce.ptx
