/*
 * big: a kernel with a lot of code, for measuring compilation. It behaves
 * like trivial.c (counts messages, emits nothing) but first passes each
 * message's length through one of 10000 distinct mixing functions, chosen
 * by the message count, so that none of them can be discarded. The
 * functions are stamped out by the preprocessor; the module is over 2 MB.
 * State layout 1: {u64 messages; u64 bytes; u64 mix}.
 */
#include "hk.h"

#define MIX(x, k) ((x) ^= (x) >> 29, (x) *= 0x9E3779B97F4A7C15ull + (k), (x) ^= (x) << 17, (x) += (k) * 0x632BE59BD9B4E019ull)

#define FN(n)                                                                          \
	__attribute__((noinline)) static uint64_t f##n(uint64_t x) {                   \
		const uint64_t k = 1##n##ull;                                          \
		MIX(x, k); MIX(x, k + 1); MIX(x, k * 3);                               \
		MIX(x, k * 5); MIX(x, k * 7); MIX(x, k * 11);                          \
		return x;                                                              \
	}
#define REF(n) f##n,

#define D1(m, p) m(p##0) m(p##1) m(p##2) m(p##3) m(p##4) m(p##5) m(p##6) m(p##7) m(p##8) m(p##9)
#define D2(m, p) D1(m, p##0) D1(m, p##1) D1(m, p##2) D1(m, p##3) D1(m, p##4) D1(m, p##5) D1(m, p##6) D1(m, p##7) D1(m, p##8) D1(m, p##9)
#define D3(m, p) D2(m, p##0) D2(m, p##1) D2(m, p##2) D2(m, p##3) D2(m, p##4) D2(m, p##5) D2(m, p##6) D2(m, p##7) D2(m, p##8) D2(m, p##9)
#define D4(m) D3(m, 0) D3(m, 1) D3(m, 2) D3(m, 3) D3(m, 4) D3(m, 5) D3(m, 6) D3(m, 7) D3(m, 8) D3(m, 9)

D4(FN)

static uint64_t (*const mixers[])(uint64_t) = {D4(REF)};
#define MIXERS (sizeof mixers / sizeof mixers[0])

static struct {
	uint64_t messages;
	uint64_t bytes;
	uint64_t mix;
} st HK_STATE_ALIGN;

HK_STATE_EXPORTS(st, 1)

HK_EXPORT("hk_init") int32_t hk_init(void) {
	__builtin_memset(&st, 0, sizeof st);
	return 0;
}

int32_t hk_message(const uint8_t *msg, uint32_t len) {
	(void)msg;
	st.mix += mixers[st.messages % MIXERS](len);
	st.messages++;
	st.bytes += len;
	return 0;
}
