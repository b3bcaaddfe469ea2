/*
 * trivial, for the CUDA backend: the cheapest possible handler, the kernel
 * of ../c/trivial.c. It counts messages and their bytes in its state and
 * emits nothing; the benchmarks use it to measure the host's per-message
 * cost. State layout 1 of this kernel: {u64 messages; u64 bytes}.
 *
 * Each message has a thread of its own (hk_block = 256): the sums do not
 * depend on the order in which the messages are counted. No message
 * fails, except with 12 when the host passes a state length other than
 * hk_state_len (a host bug; the state is left alone).
 */
#include "hk_cuda.h"

#define STATE_BYTES 16
#define BLOCK 256
#define E_STATE_LEN 12

struct state {
	uint64_t messages;
	uint64_t bytes;
};

HK_STATIC_ASSERT(sizeof(struct state) == STATE_BYTES, "state size");

HK_GLOBALS(1, STATE_BYTES, 0, BLOCK);

HK_INIT(state, state_len) {
	if (HK_THREAD_INDEX() != 0 || state_len != STATE_BYTES) return;
	struct state *st = (struct state *)state;
	st->messages = 0;
	st->bytes = 0;
}

HK_PROCESS(state, state_len, in, off, count, res, out) {
	(void)in;
	(void)out;
	uint32_t i = HK_THREAD_INDEX();
	if (i >= count) return;
	if (state_len != STATE_BYTES) {
		res[2 * i] = E_STATE_LEN;
		res[2 * i + 1] = 0;
		return;
	}
	struct state *st = (struct state *)state;
	HK_ATOMIC_ADD64(&st->messages, 1);
	HK_ATOMIC_ADD64(&st->bytes, off[i + 1] - off[i]);
	res[2 * i] = 0;
	res[2 * i + 1] = 0;
}
