// A render pipeline and a compute pass that animates its particles.
#include <metal_stdlib>
using namespace metal;

struct Particle {
    float2 pos;
    float2 vel;
};

struct VertexOut {
    float4 position [[position]];
    float4 color;
};

vertex VertexOut vs_main(uint vid [[vertex_id]],
                         const device Particle* particles [[buffer(0)]])
{
    VertexOut out;
    Particle p = particles[vid];
    out.position = float4(p.pos, 0.0, 1.0);
    out.color = float4(abs(p.vel), 0.5, 1.0);
    return out;
}

fragment half4 fs_main(VertexOut in [[stage_in]])
{
    return half4(in.color);
}

kernel void step(device Particle* particles [[buffer(0)]],
                 constant float& dt         [[buffer(1)]],
                 uint2 gid                  [[thread_position_in_grid]],
                 uint2 grid                 [[threads_per_grid]])
{
    uint i = gid.y * grid.x + gid.x;
    particles[i].pos += particles[i].vel * dt;
}
