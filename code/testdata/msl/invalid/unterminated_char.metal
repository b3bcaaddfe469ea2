#include <metal_stdlib>
using namespace metal;

kernel void fill(device char* data [[buffer(0)]])
{
    data[0] = '{;
}
