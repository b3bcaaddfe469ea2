/*
 * counter, version 1 (state layout 1).
 *
 * Messages are 16 bytes: {u32 producer; u32 pad; u64 seq}, little endian.
 * For each of up to 64 producers the state keeps the last sequence number
 * seen plus one and the number of messages, and over all messages a
 * running checksum sum = sum*31 + seq + producer (mod 2^64). Every message
 * produces one 16-byte output {u32 producer; u32 tag = 1; u64 seq}; the tag
 * tells which code processed the message.
 *
 * Error codes: 1 = producer >= 64, 2 = message not 16 bytes, 3 = output
 * larger than the outbox (cannot happen with 16-byte outputs).
 *
 * STATE_BYTES sets the size of the state (default 4096): the area after
 * the counters is a byte histogram of seq mod its size, so that bigger
 * states are really used. hk_migrate converts layout 2 (counter_v2.c)
 * back to layout 1.
 */
#include "hk.h"

#ifndef STATE_BYTES
#define STATE_BYTES 4096
#endif

#define PRODUCERS 64
#define TAG 1
#define HEADER_V1 (16 + PRODUCERS * 16)
#define EXTRA (STATE_BYTES - HEADER_V1)

/* Layout 1. */
struct state {
	uint64_t checksum;  /* 0 */
	uint64_t extra_len; /* 8: size of hist */
	struct {
		uint64_t next;  /* last seq seen + 1; 0 = none yet */
		uint64_t count; /* messages seen */
	} p[PRODUCERS];              /* 16 */
	uint8_t hist[EXTRA];         /* HEADER_V1 */
};

_Static_assert(sizeof(struct state) == STATE_BYTES, "state size");

static struct state st HK_STATE_ALIGN;

HK_STATE_EXPORTS(st, 1)
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
	st.p[producer].next = seq + 1;
	st.p[producer].count++;
	st.checksum = st.checksum * 31 + seq + producer;
	st.hist[seq % EXTRA]++;
	uint8_t out[16];
	hk_store32(out, producer);
	hk_store32(out + 4, TAG);
	hk_store64(out + 8, seq);
	return hk_emit(out, 16) == 0 ? 0 : 3;
}

/* Layout 2, as counter_v2.c writes it: total, count[64], next[64],
 * checksum, extra_len, hist. */
#define V2_TOTAL 0
#define V2_COUNT 8
#define V2_NEXT (8 + PRODUCERS * 8)
#define V2_CHECKSUM (8 + PRODUCERS * 16)
#define V2_EXTRA_LEN (V2_CHECKSUM + 8)
#define V2_HIST (V2_EXTRA_LEN + 8)

/* hk_migrate fills the state from old state bytes. Codes: 10 = unknown
 * layout, 11 = old state too short or inconsistent. The histogram is
 * copied as far as both sizes allow. */
HK_EXPORT("hk_migrate") int32_t hk_migrate(int32_t old_layout, int64_t old_version, const uint8_t *old, uint32_t len) {
	(void)old_version;
	hk_init();
	if (old_layout == 1) {
		if (len < HEADER_V1) return 11;
		uint64_t old_extra = hk_load64(old + 8);
		if (old_extra != len - HEADER_V1) return 11;
		st.checksum = hk_load64(old);
		for (int i = 0; i < PRODUCERS; i++) {
			st.p[i].next = hk_load64(old + 16 + i * 16);
			st.p[i].count = hk_load64(old + 24 + i * 16);
		}
		uint64_t n = old_extra < EXTRA ? old_extra : EXTRA;
		__builtin_memcpy(st.hist, old + HEADER_V1, n);
		return 0;
	}
	if (old_layout == 2) {
		if (len < V2_HIST) return 11;
		uint64_t old_extra = hk_load64(old + V2_EXTRA_LEN);
		if (old_extra != len - V2_HIST) return 11;
		st.checksum = hk_load64(old + V2_CHECKSUM);
		for (int i = 0; i < PRODUCERS; i++) {
			st.p[i].next = hk_load64(old + V2_NEXT + i * 8);
			st.p[i].count = hk_load64(old + V2_COUNT + i * 8);
		}
		uint64_t n = old_extra < EXTRA ? old_extra : EXTRA;
		__builtin_memcpy(st.hist, old + V2_HIST, n);
		return 0;
	}
	return 10;
}
