/*
 * trivial: the cheapest possible handler. It counts messages and their
 * bytes in its state and emits nothing; the benchmarks use it to measure
 * the host's per-message cost. State layout 1 of this kernel: {u64
 * messages; u64 bytes}.
 */
#include "hk.h"

static struct {
	uint64_t messages;
	uint64_t bytes;
} st HK_STATE_ALIGN;

HK_STATE_EXPORTS(st, 1)

HK_EXPORT("hk_init") int32_t hk_init(void) {
	st.messages = 0;
	st.bytes = 0;
	return 0;
}

int32_t hk_message(const uint8_t *msg, uint32_t len) {
	(void)msg;
	st.messages++;
	st.bytes += len;
	return 0;
}
