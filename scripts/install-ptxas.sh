#!/usr/bin/env bash
# Installs NVIDIA's PTX assembler (ptxas) alone, without the CUDA toolkit,
# from Debian bookworm's non-free nvidia-cuda-toolkit package, and prints
# its path. Needs root for apt. Does nothing when ptxas is already there.
#
#   PTXAS_DIR  where to unpack (default /opt/hotkernel/cuda)
set -euo pipefail
dir=${PTXAS_DIR:-/opt/hotkernel/cuda}
bin=$dir/usr/bin/ptxas
if [ -x "$bin" ]; then
	echo "$bin"
	exit 0
fi
src=/etc/apt/sources.list.d/hotkernel-nonfree.sources
if ! apt-cache policy nvidia-cuda-toolkit 2>/dev/null | grep -q 'Candidate: [0-9]'; then
	cat >"$src" <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: contrib non-free
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
	apt-get update -qq >&2
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && apt-get download -qq nvidia-cuda-toolkit >&2)
mkdir -p "$dir"
dpkg -x "$tmp"/nvidia-cuda-toolkit_*.deb "$tmp/x"
mkdir -p "$dir/usr/bin"
cp "$tmp/x/usr/bin/ptxas" "$bin"
"$bin" --version >&2
echo "$bin"
