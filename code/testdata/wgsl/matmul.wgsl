// Tiled matrix multiply, C = A x B, with 16x16 tiles in workgroup memory.
enable f16;

const TILE: u32 = 16u;

struct Dims {
    m: u32,
    n: u32,
    k: u32,
}

@group(0) @binding(0) var<storage, read> A: array<f32>;
@group(0) @binding(1) var<storage, read> B: array<f32>;
@group(0) @binding(2) var<storage, read_write> C: array<f32>;
@group(0) @binding(3) var<uniform> dims: Dims;

var<workgroup> tileA: array<array<f32, 16>, 16>;
var<workgroup> tileB: array<array<f32, 16>, 16>;

@compute @workgroup_size(16, 16, 1)
fn matmul(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let row = gid.y;
    let col = gid.x;
    var acc: f32 = 0.0;
    let tiles = (dims.k + TILE - 1u) / TILE;
    for (var t = 0u; t < tiles; t++) {
        let ak = t * TILE + lid.x;
        let bk = t * TILE + lid.y;
        tileA[lid.y][lid.x] = select(0.0, A[row * dims.k + ak], row < dims.m && ak < dims.k);
        tileB[lid.y][lid.x] = select(0.0, B[bk * dims.n + col], bk < dims.k && col < dims.n);
        workgroupBarrier();
        for (var i = 0u; i < TILE; i++) {
            acc += tileA[lid.y][i] * tileB[i][lid.x];
        }
        workgroupBarrier();
    }
    if (row < dims.m && col < dims.n) {
        C[row * dims.n + col] = acc;
    }
}
