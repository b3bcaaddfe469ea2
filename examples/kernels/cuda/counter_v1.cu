/*
 * counter, version 1 (state layout 1), for the CUDA backend: the kernel of
 * ../c/counter_v1.c, with the same messages, state bytes, outputs, error
 * codes and migration.
 *
 * Messages are 16 bytes: {u32 producer; u32 pad; u64 seq}, little endian.
 * For each of up to 64 producers the state keeps the last sequence number
 * seen plus one and the number of messages, and over all messages a
 * running checksum sum = sum*31 + seq + producer (mod 2^64). Every message
 * produces one 16-byte output {u32 producer; u32 tag = 1; u64 seq}; the tag
 * tells which code processed the message.
 *
 * Error codes: 1 = producer >= 64, 2 = message not 16 bytes; from
 * hk_migrate 10 = unknown layout, 11 = old state too short or
 * inconsistent. 12 = the host passed a state length other than
 * hk_state_len (a host bug; the state is left alone). The WebAssembly
 * kernel's code 3 (output larger than the outbox) cannot happen here.
 *
 * STATE_BYTES sets the size of the state (default 4096): the area after
 * the counters is a byte histogram of seq mod its size, so that bigger
 * states are really used. The checksum depends on the order of the
 * messages, so the whole batch runs in one thread (hk_block = 0).
 */
#include "hk_cuda.h"

#ifndef STATE_BYTES
#define STATE_BYTES 4096
#endif

#define PRODUCERS 64
#define TAG 1
#define OUTPUT 16
#define E_STATE_LEN 12
#define HEADER_V1 (16 + PRODUCERS * 16)
#define EXTRA ((uint64_t)STATE_BYTES - HEADER_V1)

/* Layout 1: this header, then hist[EXTRA]. */
struct state {
	uint64_t checksum;  /* 0 */
	uint64_t extra_len; /* 8: size of hist */
	struct {
		uint64_t next;  /* last seq seen + 1; 0 = none yet */
		uint64_t count; /* messages seen */
	} p[PRODUCERS];     /* 16 */
};

HK_STATIC_ASSERT(sizeof(struct state) == HEADER_V1, "layout 1 header");
HK_STATIC_ASSERT(STATE_BYTES > HEADER_V1, "state too small");

HK_GLOBALS(1, STATE_BYTES, OUTPUT, 0);

HK_INIT(state, state_len) {
	if (HK_THREAD_INDEX() != 0 || state_len != STATE_BYTES) return;
	/* The host zeroed the state; hk_init of counter_v1.c zeroes it too. */
	hk_zero(state, HEADER_V1);
	((struct state *)state)->extra_len = EXTRA;
}

/* message handles one message, writing its output, and returns its
 * status. */
HK_FN uint32_t message(uint8_t *state, const uint8_t *msg, uint32_t len, uint8_t *out) {
	struct state *st = (struct state *)state;
	if (len != 16) return 2;
	uint32_t producer = hk_load32(msg);
	uint64_t seq = hk_load64(msg + 8);
	if (producer >= PRODUCERS) return 1;
	st->p[producer].next = seq + 1;
	st->p[producer].count++;
	st->checksum = st->checksum * 31 + seq + producer;
	state[HEADER_V1 + seq % EXTRA]++;
	hk_store32(out, producer);
	hk_store32(out + 4, TAG);
	hk_store64(out + 8, seq);
	return 0;
}

HK_PROCESS(state, state_len, in, off, count, res, out) {
	if (HK_THREAD_INDEX() != 0) return;
	for (uint32_t i = 0; i < count; i++) {
		uint32_t rc = E_STATE_LEN;
		if (state_len == STATE_BYTES) rc = message(state, in + off[i], off[i + 1] - off[i], out + (uint64_t)i * OUTPUT);
		res[2 * i] = rc;
		res[2 * i + 1] = rc == 0 ? OUTPUT : 0;
	}
}

/* Layout 2, as counter_v2.cu writes it: total, count[64], next[64],
 * checksum, extra_len, hist. */
#define V2_TOTAL 0
#define V2_COUNT 8
#define V2_NEXT (8 + PRODUCERS * 8)
#define V2_CHECKSUM (8 + PRODUCERS * 16)
#define V2_EXTRA_LEN (V2_CHECKSUM + 8)
#define V2_HIST (V2_EXTRA_LEN + 8)

/* migrate fills the state from old state bytes, or returns an error code
 * having written nothing. The histogram is copied as far as both sizes
 * allow, and the rest of it zeroed. */
HK_FN uint32_t migrate(uint8_t *state, const uint8_t *old, uint64_t len, uint32_t layout) {
	struct state *st = (struct state *)state;
	uint64_t old_extra;
	const uint8_t *old_hist;
	if (layout == 1) {
		if (len < HEADER_V1) return 11;
		old_extra = hk_load64(old + 8);
		if (old_extra != len - HEADER_V1) return 11;
		st->checksum = hk_load64(old);
		for (int i = 0; i < PRODUCERS; i++) {
			st->p[i].next = hk_load64(old + 16 + i * 16);
			st->p[i].count = hk_load64(old + 24 + i * 16);
		}
		old_hist = old + HEADER_V1;
	} else if (layout == 2) {
		if (len < V2_HIST) return 11;
		old_extra = hk_load64(old + V2_EXTRA_LEN);
		if (old_extra != len - V2_HIST) return 11;
		st->checksum = hk_load64(old + V2_CHECKSUM);
		for (int i = 0; i < PRODUCERS; i++) {
			st->p[i].next = hk_load64(old + V2_NEXT + i * 8);
			st->p[i].count = hk_load64(old + V2_COUNT + i * 8);
		}
		old_hist = old + V2_HIST;
	} else {
		return 10;
	}
	st->extra_len = EXTRA;
	uint64_t n = old_extra < EXTRA ? old_extra : EXTRA;
	hk_copy(state + HEADER_V1, old_hist, n);
	hk_zero(state + HEADER_V1 + n, EXTRA - n);
	return 0;
}

/* hk_migrate converts layout 2 (counter_v2.cu) back to layout 1, and
 * takes layout 1 of another state size. On an error the state is left
 * fresh, as after hk_init, like counter_v1.c leaves it. */
HK_MIGRATE(state, state_len, old, old_len, old_layout, old_version, status) {
	(void)old_version;
	if (HK_THREAD_INDEX() != 0) return;
	if (state_len != STATE_BYTES) {
		status[0] = E_STATE_LEN;
		return;
	}
	uint32_t rc = migrate(state, old, old_len, old_layout);
	if (rc != 0) {
		hk_zero(state, STATE_BYTES);
		((struct state *)state)->extra_len = EXTRA;
	}
	status[0] = rc;
}
