#version 450
// x[i] *= s, with the workgroup size set at pipeline creation through
// specialization constant 0 (default 128).

layout(local_size_x_id = 0) in;

layout(std430, set = 0, binding = 0) buffer X { float x[]; };

layout(push_constant) uniform Params {
	float s;
	uint n;
} params;

void main() {
	uint i = gl_GlobalInvocationID.x;
	if (i < params.n) {
		x[i] *= params.s;
	}
}
