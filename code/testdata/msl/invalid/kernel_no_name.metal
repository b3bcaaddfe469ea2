#include <metal_stdlib>
using namespace metal;

kernel void (device float* data [[buffer(0)]])
{
    data[0] = 0.0f;
}
