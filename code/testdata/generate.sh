#!/bin/sh
# Rebuilds every generated artifact under testdata from the sources beside
# it. Each format's directory has a gen.sh that this script runs from that
# directory. Tools: ptxas (PTXAS=path to override), glslangValidator,
# spirv-as, spirv-val, wat2wasm.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
for script in "$here"/*/gen.sh; do
	[ -f "$script" ] || continue
	echo "generate: $script"
	(cd "$(dirname "$script")" && sh ./gen.sh)
done
