#!/bin/sh
# Compiles the GLSL shaders here with glslangValidator and assembles the
# SPIR-V assembly files with spirv-as, then checks every output with
# spirv-val for the environment it is meant for.
set -eu

glslangValidator -V --quiet --target-env vulkan1.2 -o vadd.spv vadd.comp
spirv-val --target-env vulkan1.2 vadd.spv

glslangValidator -V --quiet --target-env vulkan1.0 -o scale.spv scale.comp
spirv-val --target-env vulkan1.0 scale.spv

glslangValidator -V --quiet --target-env vulkan1.0 -o tri.vert.spv tri.vert
spirv-val --target-env vulkan1.0 tri.vert.spv

glslangValidator -V --quiet --target-env vulkan1.0 -o tri.frag.spv tri.frag
spirv-val --target-env vulkan1.0 tri.frag.spv

spirv-as --target-env spv1.2 -o kernels.spv kernels.spvasm
spirv-val --target-env opencl2.2 kernels.spv

spirv-as --target-env spv1.5 -o mixed.spv mixed.spvasm
spirv-val --target-env spv1.5 mixed.spv
