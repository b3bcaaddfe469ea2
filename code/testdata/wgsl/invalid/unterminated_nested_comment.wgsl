@group(0) @binding(0) var<storage, read_write> data: array<f32>;

/* outer comment
   /* inner comment */
   the outer comment never ends
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    data[gid.x] = 0.0;
}
