/*
 * Threadgroup sum reduction. Brackets in comments do not count: { ( [
 */
#include <metal_stdlib>
#define GROUP_SIZE 256   /* a macro; a ( here is part of a comment */
#define SQUARE(x) ((x) * (x))

using namespace metal;

struct ReduceParams {
    uint count;
    float scale;
};

static inline float combine(float a, float b) {
    return a + b;
}

// The attribute form of a kernel, with a limit on the threadgroup size.
[[kernel, max_total_threads_per_threadgroup(GROUP_SIZE)]]
void reduce_sum(device const float* input    [[buffer(0)]],
                device atomic_float* output  [[buffer(1)]],
                constant ReduceParams& p     [[buffer(2)]],
                uint gid                     [[thread_position_in_grid]],
                uint lid                     [[thread_position_in_threadgroup]],
                uint tg_size                 [[threads_per_threadgroup]])
{
    threadgroup float scratch[GROUP_SIZE];
    scratch[lid] = gid < p.count ? input[gid] * p.scale : 0.0f;
    threadgroup_barrier(mem_flags::mem_threadgroup);
    for (uint s = tg_size / 2; s > 0; s >>= 1) {
        if (lid < s) {
            scratch[lid] = combine(scratch[lid], scratch[lid + s]);
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);
    }
    if (lid == 0) {
        atomic_fetch_add_explicit(output, scratch[0], memory_order_relaxed);
    }
}

// A second kernel: squares in place. Characters like '{' and strings
// like "}" are literals, not brackets.
[[kernel]] void square(device float* data [[buffer(0)]],
                       uint gid [[thread_position_in_grid]])
{
    const char open = '{';
    const char quote = '\'';
    const constant char* label = "square(}";
    (void)open; (void)quote; (void)label;
    data[gid] = SQUARE(data[gid]) * 1'000.0f / 1'000.0f;
}
