#!/bin/sh
# Metal libraries can only be built with Apple's tools. shaders.metallib is
# written by the builder in code/metallib_test.go, which assembles the
# container layout described in code/metallib.go around placeholder
# bitcode; this rewrites it.
set -eu
cd ../../..
HOTKERNEL_WRITE_METALLIB=1 go test -count=1 -run '^TestMetallibTestdata$' ./code
