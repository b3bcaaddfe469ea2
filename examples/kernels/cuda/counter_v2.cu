/*
 * counter, version 2 (state layout 2), for the CUDA backend: the kernel of
 * ../c/counter_v2.c, with the same messages, state bytes, outputs, error
 * codes and migration.
 *
 * The same messages, checksum and error codes as counter_v1.cu, with a
 * different state layout — the counters are stored as two arrays, the
 * checksum after them, and a total message count in front — and outputs
 * tagged 2. hk_migrate converts layout 1 to layout 2 (and accepts layout
 * 2 of another state size).
 *
 * Built with -DBROKEN it is the deliberately bad release of
 * counter_v2.c -DBROKEN: it takes the state over like version 2 and tags
 * its outputs 3, and on every message with seq % 7 == 3 (before touching
 * the state for it) it makes an illegal memory access, HK_FAULT(), where
 * the WebAssembly kernel traps. On a GPU that is CUDA error 700, which
 * poisons the context: the batch, and everything the context held, is
 * lost.
 */
#include "hk_cuda.h"

#ifndef STATE_BYTES
#define STATE_BYTES 4096
#endif

#define PRODUCERS 64
#ifdef BROKEN
#define TAG 3
#else
#define TAG 2
#endif
#define OUTPUT 16
#define E_STATE_LEN 12
#define HEADER_V1 (16 + PRODUCERS * 16)
#define HEADER_V2 (8 + PRODUCERS * 16 + 16)
#define EXTRA ((uint64_t)STATE_BYTES - HEADER_V2)

/* Layout 2: this header, then hist[EXTRA]. */
struct state {
	uint64_t total;            /* 0: messages seen, all producers */
	uint64_t count[PRODUCERS]; /* 8 */
	uint64_t next[PRODUCERS];  /* 520: last seq seen + 1; 0 = none yet */
	uint64_t checksum;         /* 1032 */
	uint64_t extra_len;        /* 1040: size of hist */
};

HK_STATIC_ASSERT(sizeof(struct state) == HEADER_V2, "layout 2 header");
HK_STATIC_ASSERT(HEADER_V2 == 1048, "layout 2 header");
HK_STATIC_ASSERT(STATE_BYTES > HEADER_V2, "state too small");

HK_GLOBALS(2, STATE_BYTES, OUTPUT, 0);

HK_INIT(state, state_len) {
	if (HK_THREAD_INDEX() != 0 || state_len != STATE_BYTES) return;
	/* The host zeroed the state; hk_init of counter_v2.c zeroes it too. */
	hk_zero(state, HEADER_V2);
	((struct state *)state)->extra_len = EXTRA;
}

/* FAULT is message's result for a message the broken release faults on. */
#define FAULT 0xFFFFFFFFu

/* message handles one message, writing its output, and returns its
 * status. */
HK_FN uint32_t message(uint8_t *state, const uint8_t *msg, uint32_t len, uint8_t *out) {
	struct state *st = (struct state *)state;
	if (len != 16) return 2;
	uint32_t producer = hk_load32(msg);
	uint64_t seq = hk_load64(msg + 8);
	if (producer >= PRODUCERS) return 1;
#ifdef BROKEN
	if (seq % 7 == 3) return FAULT;
#endif
	st->next[producer] = seq + 1;
	st->count[producer]++;
	st->total++;
	st->checksum = st->checksum * 31 + seq + producer;
	state[HEADER_V2 + seq % EXTRA]++;
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
		if (rc == FAULT) {
			HK_FAULT();
			return;
		}
		res[2 * i] = rc;
		res[2 * i + 1] = rc == 0 ? OUTPUT : 0;
	}
}

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
		st->total = 0;
		for (int i = 0; i < PRODUCERS; i++) {
			st->next[i] = hk_load64(old + 16 + i * 16);
			st->count[i] = hk_load64(old + 24 + i * 16);
			st->total += st->count[i];
		}
		old_hist = old + HEADER_V1;
	} else if (layout == 2) {
		if (len < HEADER_V2) return 11;
		old_extra = hk_load64(old + 1040);
		if (old_extra != len - HEADER_V2) return 11;
		hk_copy(state, old, HEADER_V2);
		old_hist = old + HEADER_V2;
	} else {
		return 10;
	}
	st->extra_len = EXTRA;
	uint64_t n = old_extra < EXTRA ? old_extra : EXTRA;
	hk_copy(state + HEADER_V2, old_hist, n);
	hk_zero(state + HEADER_V2 + n, EXTRA - n);
	return 0;
}

/* hk_migrate converts layout 1 (counter_v1.cu) to layout 2, and takes
 * layout 2 of another state size. On an error the state is left fresh, as
 * after hk_init, like counter_v2.c leaves it. */
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
