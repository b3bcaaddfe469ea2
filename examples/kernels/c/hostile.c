/*
 * hostile: a kernel that misbehaves on request, for testing the host.
 *
 * A message starts with a u32 command; the rest depends on it:
 *   0 ok          count it, emit the message back
 *   1 trap        execute unreachable
 *   2 fail        return the kernel error code in the next u32
 *   3 loop        spin forever
 *   4 grow        grow memory one page at a time until memory.grow fails,
 *                 record the page count reached, then fail with code 12
 *   5 oob         load from beyond the end of linear memory
 *   6 recurse     recurse without bound with a 256-byte C stack frame: the
 *                 C stack (64 KiB, at the bottom of memory) runs out and
 *                 the access below address 0 traps
 *   7 emit N      emit N outputs of 16 bytes, with the message's index
 *                 among ok messages in the first word
 *   8 trap late   emit one output, write the state, then trap
 *   9 deep        recurse without bound and without a C stack frame: the
 *                 runtime's call stack overflows
 * Shorter messages and unknown commands fail with code 1.
 *
 * Built with -DTRAP_ALL, every message traps.
 *
 * State (layout 1): {u64 ok; u64 pages_reached; u64 late_writes}.
 */
#include "hk.h"

static struct {
	uint64_t ok;
	uint64_t pages_reached;
	uint64_t late_writes;
} st HK_STATE_ALIGN;

HK_STATE_EXPORTS(st, 1)

HK_EXPORT("hk_init") int32_t hk_init(void) {
	__builtin_memset(&st, 0, sizeof st);
	return 0;
}

static volatile uint32_t sink;

/* Calls go through volatile function pointers so that the compiler can
 * turn neither recursion into a loop. */
static uint32_t recurse(uint32_t n);
static uint32_t deep(uint32_t n);
static uint32_t (*volatile recurse_ptr)(uint32_t) = recurse;
static uint32_t (*volatile deep_ptr)(uint32_t) = deep;

static uint32_t recurse(uint32_t n) {
	volatile uint8_t frame[256];
	frame[n & 255] = (uint8_t)n;
	return recurse_ptr(n + 1) + frame[(n + 1) & 255];
}

static uint32_t deep(uint32_t n) {
	sink = n;
	return deep_ptr(n + 1) + 1;
}

int32_t hk_message(const uint8_t *msg, uint32_t len) {
#ifdef TRAP_ALL
	(void)msg;
	(void)len;
	__builtin_trap();
#else
	if (len < 4) return 1;
	switch (hk_load32(msg)) {
	case 0:
		st.ok++;
		return hk_emit(msg, len) == 0 ? 0 : 3;
	case 1:
		__builtin_trap();
	case 2:
		if (len < 8) return 1;
		return (int32_t)hk_load32(msg + 4);
	case 3:
		for (;;) sink++;
	case 4: {
		uint32_t pages = __builtin_wasm_memory_size(0);
		while (__builtin_wasm_memory_grow(0, 1) != (size_t)-1) pages++;
		st.pages_reached = pages;
		return 12;
	}
	case 5: {
		volatile uint32_t *p = (volatile uint32_t *)(__builtin_wasm_memory_size(0) * HK_PAGE);
		sink = *p;
		return 0;
	}
	case 6:
		sink = recurse(0);
		return 0;
	case 7: {
		uint32_t n = len >= 8 ? hk_load32(msg + 4) : 1;
		for (uint32_t i = 0; i < n; i++) {
			uint8_t out[16] = {0};
			hk_store32(out, (uint32_t)st.ok);
			hk_store32(out + 4, i);
			if (hk_emit(out, 16) != 0) return 3;
		}
		st.ok++;
		return 0;
	}
	case 8:
		hk_emit(msg, len);
		st.late_writes++;
		__builtin_trap();
	case 9:
		sink = deep(0);
		return 0;
	}
	return 1;
#endif
}
