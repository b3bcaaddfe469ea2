/*
 * hk_cuda.h: the hotkernel CUDA kernel ABI, version 1, for kernels written
 * in the common subset of CUDA C++ and C, so that one source builds two
 * ways:
 *
 *  - as device code (PTX), with clang and no CUDA headers:
 *      clang -x cuda --cuda-device-only --cuda-gpu-arch=sm_52 \
 *        -nocudainc -nocudalib -O2 -S -o k.ptx k.cu
 *  - as plain host C for internal/cudafake, the test double of libcuda:
 *      cc -x c -c -fPIC -O1 -DHK_NAME=k -o k.o k.cu
 *    Every entry point then becomes a host function named
 *    <HK_NAME>__<entry> (k__hk_process, k__hk_init, k__hk_migrate), which
 *    registers itself with the fake when the library is loaded; the fake
 *    runs it for every block and thread of a launch, one after the other.
 *
 * A kernel including this header defines its entry points with
 *   HK_PROCESS(state, state_len, in, off, count, res, out) { ... }
 *   HK_INIT(state, state_len) { ... }                          (optional)
 *   HK_MIGRATE(state, state_len, old, old_len, old_layout,
 *              old_version, status) { ... }                    (optional)
 * (the arguments name the parameters; their types are fixed here), states
 * its globals once, at file scope, with
 *   HK_GLOBALS(layout, state_len, max_output, block);
 * and declares helper functions HK_FN (static, inline, device code).
 *
 * The ABI (the host side is written against exactly this):
 *
 *  Globals, read by the host with cuModuleGetGlobal: u32 hk_abi = 1,
 *  u64 hk_state_len (bytes of state, may be 0), u32 hk_state_layout,
 *  u32 hk_max_output (bytes of output one message may produce) and
 *  u32 hk_block (threads per block for hk_process; 0 launches the whole
 *  batch as one thread, N > 0 launches ceil(count / N) blocks of N).
 *
 *  hk_process: message i (0 <= i < count, queue order) is
 *  in[off[i] .. off[i+1]); off has count + 1 entries and off[0] = 0.
 *  For every message the kernel writes res[2i] = status (0 = ok, a
 *  positive error code = this message failed) and res[2i+1] = the length
 *  of its output (0 = none, at most hk_max_output), whose bytes are at
 *  out + i * hk_max_output. The host fills res with 0xFFFFFFFF before the
 *  launch, so a message the kernel never reported shows. The effect on
 *  the state is that of handling the messages in order. All pointers are
 *  device global memory; the state is 256-byte aligned, messages and
 *  outputs need not be aligned at all.
 *
 *  hk_init (one thread) sets up a fresh state; the host has zeroed it.
 *  hk_migrate (one thread) fills the state from old state bytes of another
 *  layout, writing status[0] = 0 or a positive error code.
 *
 * HK_FAULT() makes an illegal memory access: on a GPU a store to address 8
 * (CUDA_ERROR_ILLEGAL_ADDRESS, 700, which poisons the context); in the
 * fake, the launch stops there and the context gets the same sticky error.
 * On a GPU the thread goes on after the faulting store, so write
 * HK_FAULT(); return;.
 */
#ifndef HK_CUDA_H
#define HK_CUDA_H

/* The compilers' own type macros: no libc or CUDA header is needed, and
 * the types are those of <stdint.h> on both sides. */
typedef __UINT8_TYPE__ uint8_t;
typedef __UINT32_TYPE__ uint32_t;
typedef __INT32_TYPE__ int32_t;
typedef __UINT64_TYPE__ uint64_t;
typedef __UINTPTR_TYPE__ uintptr_t;

#define HK_ABI_VERSION 1

#define HK_CAT_(a, b) a##b
#define HK_CAT(a, b) HK_CAT_(a, b)
#define HK_STR_(a) #a
#define HK_STR(a) HK_STR_(a)

#ifdef __cplusplus
#define HK_STATIC_ASSERT(cond, msg) static_assert(cond, msg)
#else
#define HK_STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)
#endif

#if defined(__CUDA__) && defined(__CUDA_ARCH__)
/* ---- Device code (clang -x cuda --cuda-device-only). ---- */

#define HK_FN static __attribute__((device)) inline

/* extern "C" keeps the PTX names unmangled. */
#define HK_ENTRY(name, params) extern "C" __attribute__((global)) void name params

/* A non-const __device__ variable is a .visible .global in the PTX. */
#define HK_GLOBAL(type, name, value) extern "C" __attribute__((device)) type name = (value)

#define HK_TID_X() __nvvm_read_ptx_sreg_tid_x()
#define HK_NTID_X() __nvvm_read_ptx_sreg_ntid_x()
#define HK_CTAID_X() __nvvm_read_ptx_sreg_ctaid_x()

#define HK_FAULT() ((void)(*(volatile uint32_t *)(uintptr_t)8 = 0))

#define HK_ATOMIC_ADD64(p, v) ((void)__nvvm_atom_add_gen_ll((long long *)(p), (long long)(v)))

#else
/* ---- Host C for internal/cudafake. ---- */

#define HK_FN static inline

/* The entry point signatures, as the fake calls them. */
typedef void (*hk_process_fn)(uint8_t *state, uint64_t state_len, const uint8_t *in, const uint32_t *off,
                              uint32_t count, uint32_t *res, uint8_t *out);
typedef void (*hk_init_fn)(uint8_t *state, uint64_t state_len);
typedef void (*hk_migrate_fn)(uint8_t *state, uint64_t state_len, const uint8_t *old, uint64_t old_len,
                              uint32_t old_layout, uint64_t old_version, uint32_t *status);

/* Provided by the fake: the thread and block of the running kernel
 * thread (x dimension), and the abort of a launch with an illegal
 * address. */
extern __thread uint32_t hk_fake_tid_x, hk_fake_ntid_x, hk_fake_ctaid_x;
void hk_fake_fault(void) __attribute__((noreturn));
void hk_fake_register_process(const char *impl, hk_process_fn fn);
void hk_fake_register_init(const char *impl, hk_init_fn fn);
void hk_fake_register_migrate(const char *impl, hk_migrate_fn fn);

#define HK_TID_X() hk_fake_tid_x
#define HK_NTID_X() hk_fake_ntid_x
#define HK_CTAID_X() hk_fake_ctaid_x

#define HK_FAULT() hk_fake_fault()

#define HK_ATOMIC_ADD64(p, v) ((void)__atomic_fetch_add((p), (uint64_t)(v), __ATOMIC_RELAXED))

/* The fake reads the globals from the PTX text; here they are only
 * named, for a reader of the host build. */
#define HK_GLOBAL(type, name, value) static const type HK_CAT(hk_host_, name) __attribute__((unused)) = (value)

/* HK_ENTRY defines the host function <HK_NAME>__<name> and a constructor
 * that registers it with the fake under the name HK_NAME. */
#define HK_HOST_FN(name) HK_CAT(HK_NAME, HK_CAT(__, name))
#define HK_ENTRY_REG(name, reg, params)                                            \
	void HK_HOST_FN(name) params;                                                 \
	__attribute__((constructor)) static void HK_CAT(hk_register_, name)(void) { \
		reg(HK_STR(HK_NAME), HK_HOST_FN(name));                                \
	}                                                                             \
	void HK_HOST_FN(name) params

#endif

#if defined(__CUDA__) && defined(__CUDA_ARCH__)
#define HK_PROCESS(state, state_len, in, off, count, res, out)                                                \
	HK_ENTRY(hk_process, (uint8_t * state, uint64_t state_len, const uint8_t *in, const uint32_t *off, \
	                      uint32_t count, uint32_t *res, uint8_t *out))
#define HK_INIT(state, state_len) HK_ENTRY(hk_init, (uint8_t * state, uint64_t state_len))
#define HK_MIGRATE(state, state_len, old, old_len, old_layout, old_version, status)                     \
	HK_ENTRY(hk_migrate, (uint8_t * state, uint64_t state_len, const uint8_t *old, uint64_t old_len, \
	                      uint32_t old_layout, uint64_t old_version, uint32_t *status))
#elif defined(HK_NAME)
#define HK_PROCESS(state, state_len, in, off, count, res, out)                                          \
	HK_ENTRY_REG(hk_process, hk_fake_register_process,                                               \
	             (uint8_t * state, uint64_t state_len, const uint8_t *in, const uint32_t *off, \
	              uint32_t count, uint32_t *res, uint8_t *out))
#define HK_INIT(state, state_len) HK_ENTRY_REG(hk_init, hk_fake_register_init, (uint8_t * state, uint64_t state_len))
#define HK_MIGRATE(state, state_len, old, old_len, old_layout, old_version, status)                    \
	HK_ENTRY_REG(hk_migrate, hk_fake_register_migrate,                                              \
	             (uint8_t * state, uint64_t state_len, const uint8_t *old, uint64_t old_len, \
	              uint32_t old_layout, uint64_t old_version, uint32_t *status))
#else
/* Host C without HK_NAME (the fake itself) gets the declarations above
 * only; a kernel built as host C must say whose entries it defines. */
#define HK_PROCESS(...) HK_NAME_must_be_defined_to_build_a_kernel_as_host_C
#define HK_INIT(...) HK_NAME_must_be_defined_to_build_a_kernel_as_host_C
#define HK_MIGRATE(...) HK_NAME_must_be_defined_to_build_a_kernel_as_host_C
#endif

/* HK_GLOBALS defines the five globals of ABI version 1. */
#define HK_GLOBALS(layout, state_len, max_output, block)      \
	HK_GLOBAL(uint32_t, hk_abi, HK_ABI_VERSION);           \
	HK_GLOBAL(uint64_t, hk_state_len, (state_len));        \
	HK_GLOBAL(uint32_t, hk_state_layout, (layout));        \
	HK_GLOBAL(uint32_t, hk_max_output, (max_output));      \
	HK_GLOBAL(uint32_t, hk_block, (block))

/* HK_THREAD_INDEX() is the index of the calling thread in the whole launch. */
#define HK_THREAD_INDEX() (HK_CTAID_X() * HK_NTID_X() + HK_TID_X())

/* Little-endian loads and stores at any alignment. */
HK_FN uint32_t hk_load32(const uint8_t *p) {
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
HK_FN uint64_t hk_load64(const uint8_t *p) { return (uint64_t)hk_load32(p) | (uint64_t)hk_load32(p + 4) << 32; }
HK_FN void hk_store32(uint8_t *p, uint32_t v) {
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}
HK_FN void hk_store64(uint8_t *p, uint64_t v) {
	hk_store32(p, (uint32_t)v);
	hk_store32(p + 4, (uint32_t)(v >> 32));
}

/* hk_copy copies n bytes, 8 at a time, eight loads in flight, when both
 * pointers are 8-aligned; a single GPU thread copying a large state is
 * bound by load latency, not bandwidth. */
HK_FN void hk_copy(uint8_t *dst, const uint8_t *src, uint64_t n) {
	uint64_t i = 0;
	if ((((uintptr_t)dst | (uintptr_t)src) & 7) == 0) {
		uint64_t *d = (uint64_t *)dst;
		const uint64_t *s = (const uint64_t *)src;
		uint64_t words = n / 8, w = 0;
		for (; w + 8 <= words; w += 8) {
			uint64_t v0 = s[w], v1 = s[w + 1], v2 = s[w + 2], v3 = s[w + 3];
			uint64_t v4 = s[w + 4], v5 = s[w + 5], v6 = s[w + 6], v7 = s[w + 7];
			d[w] = v0, d[w + 1] = v1, d[w + 2] = v2, d[w + 3] = v3;
			d[w + 4] = v4, d[w + 5] = v5, d[w + 6] = v6, d[w + 7] = v7;
		}
		for (; w < words; w++) d[w] = s[w];
		i = words * 8;
	}
	for (; i < n; i++) dst[i] = src[i];
}

/* hk_zero zeroes n bytes, 8 at a time where it can. */
HK_FN void hk_zero(uint8_t *dst, uint64_t n) {
	uint64_t i = 0;
	for (; i < n && ((uintptr_t)(dst + i) & 7) != 0; i++) dst[i] = 0;
	for (; i + 8 <= n; i += 8) *(uint64_t *)(dst + i) = 0;
	for (; i < n; i++) dst[i] = 0;
}

#endif /* HK_CUDA_H */
