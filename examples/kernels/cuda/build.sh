#!/bin/sh
# Rebuilds every CUDA kernel module under this directory from the sources
# beside it; `go generate ./examples/kernels/cuda` runs it. Each line of
# the file `variants` names a module, its source and its -D flags; for
# each, clang writes NAME.ptx (for sm_52, so that the driver can JIT it on
# every GPU since Maxwell) and ptxas assembles NAME.sm_80.cubin and
# NAME.sm_90.cubin from it. The outputs are deterministic for a given
# clang and ptxas: run it twice and the bytes do not change. The committed
# modules were built with clang 14 and ptxas 11.8.
#
# Tools: clang with the nvptx64 target (CLANG=path to override; no CUDA
# headers or libraries are needed) and ptxas (PTXAS=path to override;
# otherwise $HOTKERNEL_PTXAS, ptxas on PATH, or
# /opt/hotkernel/cuda/usr/bin/ptxas, where scripts/install-ptxas.sh puts
# it).
set -eu
cd "$(dirname "$0")"
clang=${CLANG:-clang}
ptxas=${PTXAS:-${HOTKERNEL_PTXAS:-}}
if [ -z "$ptxas" ]; then
	ptxas=$(command -v ptxas || echo /opt/hotkernel/cuda/usr/bin/ptxas)
fi

# The newest PTX ISA that ptxas 11.8, the oldest assembler and driver JIT
# the modules are meant for, reads.
max_major=7
max_minor=8

archs="sm_80 sm_90"

grep -v '^#' variants | grep -v '^[[:space:]]*$' | while read -r name src flags; do
	# $flags is split into words on purpose: one -D flag each.
	# shellcheck disable=SC2086
	"$clang" -x cuda --cuda-device-only --cuda-gpu-arch=sm_52 -nocudainc -nocudalib \
		-O2 -S -Wall -Werror $flags -o "$name.ptx" "$src"
	chmod 644 "$name.ptx"
	version=$(sed -n 's/^\.version \([0-9]*\)\.\([0-9]*\)$/\1 \2/p' "$name.ptx")
	set -- $version
	if [ $# -ne 2 ] || [ "$1" -gt $max_major ] || { [ "$1" -eq $max_major ] && [ "$2" -gt $max_minor ]; }; then
		echo "build.sh: $name.ptx declares .version '$version', want at most $max_major.$max_minor" >&2
		exit 1
	fi
	for arch in $archs; do
		"$ptxas" -arch="$arch" -o "$name.$arch.cubin" "$name.ptx"
		chmod 644 "$name.$arch.cubin"
	done
	echo "built $name.ptx and $(echo "$archs" | sed "s/\([^ ]*\)/$name.\1.cubin/g")"
done
