@compute @workgroup_size(64)
var<private> counter: u32;

@compute @workgroup_size(64)
fn main() {
    counter = 1u;
}
