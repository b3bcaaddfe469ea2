// One templated kernel, instantiated for two element types. The host
// finds each instance by its host_name.
#include <metal_stdlib>
using namespace metal;

namespace ops {

template <typename T>
kernel void axpy(device const T* x [[buffer(0)]],
                 device T* y       [[buffer(1)]],
                 constant T& alpha [[buffer(2)]],
                 uint gid          [[thread_position_in_grid]])
{
    y[gid] = alpha * x[gid] + y[gid];
}

template [[host_name("axpy_float")]] kernel void axpy<float>(
    device const float*, device float*, constant float&, uint);
template [[host_name("axpy_half")]] kernel void axpy<half>(
    device const half*, device half*, constant half&, uint);

} // namespace ops

// A declaration is not a definition.
kernel void fill(device float* out [[buffer(0)]], uint gid [[thread_position_in_grid]]);

kernel void fill(device float* out [[buffer(0)]], uint gid [[thread_position_in_grid]])
{
    out[gid] = 0.0f;
}
