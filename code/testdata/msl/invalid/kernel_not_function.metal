#include <metal_stdlib>
using namespace metal;

kernel void scale;

kernel void fill(device float* data [[buffer(0)]])
{
    data[0] = 0.0f;
}
