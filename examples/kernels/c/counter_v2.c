/*
 * counter, version 2 (state layout 2).
 *
 * The same messages, checksum and error codes as counter_v1.c, with a
 * different state layout — the counters are stored as two arrays, the
 * checksum after them, and a total message count in front — and outputs
 * tagged 2 (3 when built with -DBROKEN, a variant that traps on every
 * seventh message). hk_migrate converts layout 1 to layout 2 (and accepts layout 2
 * of another state size).
 */
#include "hk.h"

#ifndef STATE_BYTES
#define STATE_BYTES 4096
#endif

#define PRODUCERS 64
#ifdef BROKEN
/* A deliberately bad release for demonstrations and tests: it takes the
 * state over like version 2, then traps on every seventh message. */
#define TAG 3
#else
#define TAG 2
#endif
#define HEADER_V1 (16 + PRODUCERS * 16)
#define HEADER_V2 (8 + PRODUCERS * 16 + 16)
#define EXTRA (STATE_BYTES - HEADER_V2)

/* Layout 2. */
struct state {
	uint64_t total;            /* 0: messages seen, all producers */
	uint64_t count[PRODUCERS]; /* 8 */
	uint64_t next[PRODUCERS];  /* 520: last seq seen + 1; 0 = none yet */
	uint64_t checksum;         /* 1032 */
	uint64_t extra_len;        /* 1040: size of hist */
	uint8_t hist[EXTRA];       /* 1048 */
};

_Static_assert(sizeof(struct state) == STATE_BYTES, "state size");
_Static_assert(HEADER_V2 == 1048, "layout 2 header");

static struct state st HK_STATE_ALIGN;

HK_STATE_EXPORTS(st, 2)
HK_SCRATCH_EXPORT()

HK_EXPORT("hk_init") int32_t hk_init(void) {
	__builtin_memset(&st, 0, sizeof st);
	st.extra_len = EXTRA;
	return 0;
}

int32_t hk_message(const uint8_t *msg, uint32_t len) {
	if (len != 16) return 2;
	uint32_t producer = hk_load32(msg);
	uint64_t seq = hk_load64(msg + 8);
	if (producer >= PRODUCERS) return 1;
#ifdef BROKEN
	if (seq % 7 == 3) __builtin_trap();
#endif
	st.next[producer] = seq + 1;
	st.count[producer]++;
	st.total++;
	st.checksum = st.checksum * 31 + seq + producer;
	st.hist[seq % EXTRA]++;
	uint8_t out[16];
	hk_store32(out, producer);
	hk_store32(out + 4, TAG);
	hk_store64(out + 8, seq);
	return hk_emit(out, 16) == 0 ? 0 : 3;
}

/* hk_migrate fills the state from old state bytes. Codes: 10 = unknown
 * layout, 11 = old state too short or inconsistent. */
HK_EXPORT("hk_migrate") int32_t hk_migrate(int32_t old_layout, int64_t old_version, const uint8_t *old, uint32_t len) {
	(void)old_version;
	hk_init();
	if (old_layout == 1) {
		if (len < HEADER_V1) return 11;
		uint64_t old_extra = hk_load64(old + 8);
		if (old_extra != len - HEADER_V1) return 11;
		st.checksum = hk_load64(old);
		for (int i = 0; i < PRODUCERS; i++) {
			st.next[i] = hk_load64(old + 16 + i * 16);
			st.count[i] = hk_load64(old + 24 + i * 16);
			st.total += st.count[i];
		}
		uint64_t n = old_extra < EXTRA ? old_extra : EXTRA;
		__builtin_memcpy(st.hist, old + HEADER_V1, n);
		return 0;
	}
	if (old_layout == 2) {
		if (len < HEADER_V2) return 11;
		uint64_t old_extra = hk_load64(old + 1040);
		if (old_extra != len - HEADER_V2) return 11;
		__builtin_memcpy(&st, old, HEADER_V2);
		st.extra_len = EXTRA;
		uint64_t n = old_extra < EXTRA ? old_extra : EXTRA;
		__builtin_memcpy(st.hist, old + HEADER_V2, n);
		return 0;
	}
	return 10;
}
