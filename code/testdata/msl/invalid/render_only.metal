#include <metal_stdlib>
using namespace metal;

vertex float4 vs_main(uint vid [[vertex_id]])
{
    return float4(float(vid), 0.0, 0.0, 1.0);
}

fragment half4 fs_main()
{
    return half4(1.0);
}
