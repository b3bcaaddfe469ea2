/* Two-pass sum reduction.
   /* Block comments nest in WGSL: this inner one closes here, */
   and the outer one only here. A { or ( in a comment does not count.
*/

override WG: u32 = 128;

@group(0) @binding(0) var<storage, read> input: array<f32>;
@group(0) @binding(1) var<storage, read_write> partial: array<f32>;
@group(0) @binding(2) var<storage, read_write> total: array<f32, 1>;

var<workgroup> scratch: array<f32, 128>;

fn add_pair(x: f32, y: f32) -> f32 {
    return x + y;
}

// First pass: each workgroup sums its slice into partial[wid].
@compute
@workgroup_size(WG, 1, 1)
fn reduce_partial(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(global_invocation_id) gid: vec3<u32>,
) {
    var v = 0.0;
    if (gid.x < arrayLength(&input)) {
        v = input[gid.x];
    }
    scratch[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (lid < s) {
            scratch[lid] = add_pair(scratch[lid], scratch[lid + s]);
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        partial[wid.x] = scratch[0];
    }
}

// Second pass: one invocation adds up the partial sums.
@compute @workgroup_size(1)
fn reduce_final() {
    var sum = 0.0;
    for (var i = 0u; i < arrayLength(&partial); i++) {
        sum += partial[i];
    }
    total[0] = sum;
}
