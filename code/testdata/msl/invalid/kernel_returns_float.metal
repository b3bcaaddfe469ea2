#include <metal_stdlib>
using namespace metal;

kernel float scale(device float* data [[buffer(0)]],
                   uint gid [[thread_position_in_grid]])
{
    return data[gid] * 2.0f;
}
