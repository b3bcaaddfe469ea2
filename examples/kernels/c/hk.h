/*
 * hk.h: the hotkernel kernel ABI, version 1, for C kernels compiled to
 * wasm32 without a libc. docs/kernel-abi.md is the specification; this
 * header is a convenience that implements the host-facing plumbing
 * (buffers, batch framing, output framing) so that a kernel only writes its
 * state, hk_init, the per-message handler and, optionally, hk_migrate.
 *
 * Build (see build.sh):
 *   clang --target=wasm32 -O2 -nostdlib -mbulk-memory -mmutable-globals \
 *     -Wl,--no-entry -Wl,--stack-first -Wl,--export=__stack_pointer \
 *     -o k.wasm k.c
 *
 * A kernel including this header defines
 *   int32_t hk_message(const uint8_t *msg, uint32_t len)
 *                       the handler: 0 on success, a positive error code
 *                       on failure
 *   int32_t hk_init(void), exported with HK_EXPORT("hk_init")
 * and states its persistent state once, at file scope, with
 *   HK_STATE_EXPORTS(object, layout)
 * where object is declared HK_STATE_ALIGN (65536-aligned) and holds the
 * whole state. A kernel that exports hk_migrate also writes
 *   HK_SCRATCH_EXPORT()
 * which exports hk_scratch, the buffer the host writes old state into.
 *
 * Everything here is single-threaded: the host calls one export at a time.
 */
#ifndef HK_H
#define HK_H

typedef unsigned char uint8_t;
typedef unsigned int uint32_t;
typedef int int32_t;
typedef unsigned long long uint64_t;
typedef long long int64_t;
typedef unsigned long size_t;

#define HK_ABI_VERSION 1
#define HK_PAGE 65536u

#define HK_EXPORT(name) __attribute__((export_name(name)))
#define HK_STATE_ALIGN __attribute__((aligned(65536)))

/* hk.flush: the host delivers every output framed in the outbox and sets
 * its used count back to 0. */
__attribute__((import_module("hk"), import_name("flush"))) void hk_flush(void);

/* hk.log: a debug line (UTF-8, no trailing newline needed); the host
 * rate-limits and may drop lines. */
__attribute__((import_module("hk"), import_name("log"))) void hk_log_raw(const char *p, uint32_t len);

/* The compiler lowers struct copies and zeroing to these; with
 * -mbulk-memory they become memory.copy and memory.fill. */
void *memcpy(void *dst, const void *src, size_t n) {
	__builtin_memcpy(dst, src, n);
	return dst;
}
void *memset(void *dst, int c, size_t n) {
	__builtin_memset(dst, c, n);
	return dst;
}

static inline uint32_t hk_load32(const uint8_t *p) {
	uint32_t v;
	__builtin_memcpy(&v, p, 4);
	return v;
}
static inline uint64_t hk_load64(const uint8_t *p) {
	uint64_t v;
	__builtin_memcpy(&v, p, 8);
	return v;
}
static inline void hk_store32(uint8_t *p, uint32_t v) { __builtin_memcpy(p, &v, 4); }
static inline void hk_store64(uint8_t *p, uint64_t v) { __builtin_memcpy(p, &v, 8); }

static inline uint32_t hk_pad4(uint32_t n) { return (n + 3u) & ~3u; }

static inline uint32_t hk_strlen(const char *s) {
	uint32_t n = 0;
	while (s[n]) n++;
	return n;
}
static inline void hk_log(const char *s) { hk_log_raw(s, hk_strlen(s)); }

/* hk_pages returns n fresh zeroed bytes at a page boundary, taken by
 * growing linear memory, or 0 when memory cannot grow that far. */
static uint8_t *hk_pages(uint32_t n) {
	uint32_t pages = (n + HK_PAGE - 1) / HK_PAGE;
	int32_t old = __builtin_wasm_memory_grow(0, pages);
	if (old < 0) return 0;
	return (uint8_t *)((uint32_t)old * HK_PAGE);
}

/* Batch and output buffers. Header words: inbox {count, done}, outbox
 * {used, cap}; the frames follow the 8-byte header. */
static uint8_t *hk_in;
static uint32_t hk_in_size;
static uint8_t *hk_out;
static uint32_t hk_out_size;

HK_EXPORT("hk_abi_version") int32_t hk_abi_version(void) { return HK_ABI_VERSION; }

HK_EXPORT("hk_inbox") uint32_t hk_inbox(uint32_t size) {
	if (size > hk_in_size) {
		uint8_t *p = hk_pages(size);
		if (!p) return 0;
		hk_in = p;
		hk_in_size = size;
	}
	return (uint32_t)hk_in;
}

HK_EXPORT("hk_outbox") uint32_t hk_outbox(uint32_t size) {
	if (size > hk_out_size) {
		uint8_t *p = hk_pages(size);
		if (!p) return 0;
		hk_out = p;
		hk_out_size = size;
	}
	return (uint32_t)hk_out;
}

/* hk_emit frames one output into the outbox, asking the host to flush
 * when it does not fit. It returns 0, or -1 when the output is larger
 * than the whole outbox. */
static int32_t hk_emit(const void *p, uint32_t len) {
	uint32_t need = 4 + hk_pad4(len);
	uint32_t used = hk_load32(hk_out);
	uint32_t cap = hk_load32(hk_out + 4);
	if (need > cap) return -1;
	if (need > cap - used) {
		hk_flush();
		used = hk_load32(hk_out);
	}
	uint8_t *f = hk_out + 8 + used;
	hk_store32(f, len);
	__builtin_memcpy(f + 4, p, len);
	for (uint32_t i = len; i < hk_pad4(len); i++) f[4 + i] = 0;
	hk_store32(hk_out, used + need);
	return 0;
}

int32_t hk_message(const uint8_t *msg, uint32_t len);

/* hk_process walks the batch from message 0, storing done = i+1 after
 * each message completes; a handler error stops the batch with -code so
 * that the host can dead-letter message `done` and send the rest again. */
HK_EXPORT("hk_process") int32_t hk_process(uint32_t count) {
	const uint8_t *p = hk_in + 8;
	for (uint32_t i = 0; i < count; i++) {
		uint32_t len = hk_load32(p);
		int32_t rc = hk_message(p + 4, len);
		if (rc != 0) return rc > 0 ? -rc : rc;
		hk_store32(hk_in + 4, i + 1);
		p += 4 + hk_pad4(len);
	}
	return 0;
}

#define HK_STATE_EXPORTS(object, layout)                                               \
	HK_EXPORT("hk_state_ptr") uint32_t hk_state_ptr(void) { return (uint32_t)&(object); } \
	HK_EXPORT("hk_state_len") uint32_t hk_state_len(void) { return (uint32_t)sizeof(object); } \
	HK_EXPORT("hk_state_layout") int32_t hk_state_layout(void) { return (layout); }

/* hk_scratch returns a buffer of at least size bytes, reused while it is
 * big enough. */
#define HK_SCRATCH_EXPORT()                                           \
	static uint8_t *hk_scratch_buf;                               \
	static uint32_t hk_scratch_size;                              \
	HK_EXPORT("hk_scratch") uint32_t hk_scratch(uint32_t size) {  \
		if (size > hk_scratch_size) {                         \
			uint8_t *p = hk_pages(size);                  \
			if (!p) return 0;                             \
			hk_scratch_buf = p;                           \
			hk_scratch_size = size;                       \
		}                                                     \
		return (uint32_t)hk_scratch_buf;                      \
	}

#endif /* HK_H */
