// A module with a render pipeline and a compute pass that animates it.

struct Particle {
    pos: vec2<f32>,
    vel: vec2<f32>,
}

struct VertexOut {
    @builtin(position) position: vec4<f32>,
    @location(0) color: vec4<f32>,
}

// The render pass reads the particles; the compute pass moves them.
@group(0) @binding(0) var<storage, read> particles_in: array<Particle>;
@group(1) @binding(0) var<storage, read_write> particles: array<Particle>;

@vertex
fn vs_main(@builtin(vertex_index) vi: u32) -> VertexOut {
    var out: VertexOut;
    let p = particles_in[vi];
    out.position = vec4<f32>(p.pos, 0.0, 1.0);
    out.color = vec4<f32>(abs(p.vel), 0.5, 1.0);
    return out;
}

@fragment
fn fs_main(in: VertexOut) -> @location(0) vec4<f32> {
    return in.color;
}

@compute @workgroup_size(8, 8)
fn step(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.y * 8u + gid.x;
    if (i >= arrayLength(&particles)) {
        return;
    }
    particles[i].pos += particles[i].vel * 0.016;
}
