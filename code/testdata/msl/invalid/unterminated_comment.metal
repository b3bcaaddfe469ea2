#include <metal_stdlib>
using namespace metal;

/* fill: sets every element to zero
kernel void fill(device float* data [[buffer(0)]])
{
    data[0] = 0.0f;
}
