/*
 * fake.c: a test double of the CUDA driver library (libcuda) for
 * hotkernel's tests, built by cudafake.Build into libcuda-fake.so together
 * with the example kernels of examples/kernels/cuda compiled as host C.
 *
 * It exports the driver functions that internal/cuda binds, with their
 * real signatures and CUresult codes, and keeps the driver's rules that
 * the host code depends on: a per-thread stack of current contexts,
 * handles that belong to one context, sticky errors, JIT logs. Device
 * memory is host memory: a CUdeviceptr is a host address, 256-byte
 * aligned. A module is PTX text, from which the fake reads the entry
 * names and the globals; a module whose bytes were bound (fake_bind) to a
 * host implementation runs it on the calling thread at cuLaunchKernel,
 * every block and thread one after the other. Streams complete their work
 * as it is enqueued, so stream order holds trivially and events are
 * complete as soon as recorded.
 *
 * Faults: when a kernel calls hk_fake_fault (HK_FAULT in hk_cuda.h), or
 * a launch's arguments point outside the context's memory, the launch is
 * abandoned and the context gets the sticky error
 * CUDA_ERROR_ILLEGAL_ADDRESS: cuLaunchKernel itself succeeds, as it does
 * on a GPU, where the fault shows later; every later call made with that
 * context current returns 700, until cuCtxDestroy_v2. Other contexts go
 * on.
 *
 * Every API function takes one global lock; kernels run under it.
 * fake_calls counts the calls of each function, failed ones included.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hk_cuda.h"

/* ---- The driver API's types and codes, as cuda.h has them. ---- */

typedef int CUresult;
typedef int CUdevice;
typedef int CUdevice_attribute;
typedef int CUjit_option;
typedef unsigned long long CUdeviceptr;
typedef struct fake_ctx *CUcontext;
/* The other handles are numbers that are never reused, so that a stale
 * handle is recognised as such. */
typedef struct fake_module_handle *CUmodule;
typedef struct fake_function_handle *CUfunction;
typedef struct fake_stream_handle *CUstream;
typedef struct fake_event_handle *CUevent;

enum {
	CUDA_SUCCESS = 0,
	CUDA_ERROR_INVALID_VALUE = 1,
	CUDA_ERROR_OUT_OF_MEMORY = 2,
	CUDA_ERROR_NOT_INITIALIZED = 3,
	CUDA_ERROR_NO_DEVICE = 100,
	CUDA_ERROR_INVALID_DEVICE = 101,
	CUDA_ERROR_INVALID_CONTEXT = 201,
	CUDA_ERROR_NO_BINARY_FOR_GPU = 209,
	CUDA_ERROR_INVALID_PTX = 218,
	CUDA_ERROR_INVALID_HANDLE = 400,
	CUDA_ERROR_NOT_FOUND = 500,
	CUDA_ERROR_ILLEGAL_ADDRESS = 700,
	CUDA_ERROR_CONTEXT_IS_DESTROYED = 709,
	CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED = 712,
	CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED = 713,
	CUDA_ERROR_NOT_SUPPORTED = 801,
};

enum {
	CU_JIT_WALL_TIME = 2,
	CU_JIT_INFO_LOG_BUFFER = 3,
	CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES = 4,
	CU_JIT_ERROR_LOG_BUFFER = 5,
	CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES = 6,
};

#define STREAM_LEGACY ((uintptr_t)1)
#define STREAM_PER_THREAD ((uintptr_t)2)

/* ---- What the fake pretends to be. ---- */

#define DRIVER_VERSION 12040
#define DEVICE_NAME "hotkernel fake GPU"
#define DEVICE_MEMORY (80ull << 30)
#define ALIGN 256
#define MAX_THREADS_PER_BLOCK 1024
#define MAX_SHARED_MEMORY (48 << 10)
#define NO_DEVICE_ENV "HOTKERNEL_FAKE_NO_DEVICE"

/* ---- Call counting. ---- */

#define FAKE_FUNCTIONS(X)                                                                          \
	X(cuInit) X(cuDriverGetVersion) X(cuGetErrorName) X(cuGetErrorString) X(cuDeviceGetCount)   \
	X(cuDeviceGet) X(cuDeviceGetName) X(cuDeviceGetAttribute) X(cuDeviceTotalMem_v2)             \
	X(cuCtxCreate_v2) X(cuCtxDestroy_v2) X(cuCtxSetCurrent) X(cuCtxPopCurrent_v2)                \
	X(cuCtxSynchronize) X(cuModuleLoadDataEx) X(cuModuleUnload) X(cuModuleGetFunction)           \
	X(cuModuleGetGlobal_v2) X(cuMemAlloc_v2) X(cuMemFree_v2) X(cuMemAllocHost_v2)                \
	X(cuMemFreeHost) X(cuMemcpyHtoD_v2) X(cuMemcpyDtoH_v2) X(cuMemcpyHtoDAsync_v2)               \
	X(cuMemcpyDtoHAsync_v2) X(cuMemcpyDtoDAsync_v2) X(cuMemsetD8Async) X(cuMemsetD32Async)       \
	X(cuStreamCreate) X(cuStreamDestroy_v2) X(cuStreamSynchronize) X(cuStreamQuery)              \
	X(cuEventCreate) X(cuEventRecord) X(cuEventSynchronize) X(cuEventQuery) X(cuEventDestroy_v2) \
	X(cuLaunchKernel) X(cuMemHostRegister_v2) X(cuMemHostUnregister)

#define AS_ENUM(name) CALL_##name,
enum { FAKE_FUNCTIONS(AS_ENUM) CALL_COUNT };
#define AS_NAME(name) #name,
static const char *const call_names[] = {FAKE_FUNCTIONS(AS_NAME)};
static unsigned long long calls[CALL_COUNT];

/* ---- State. ---- */

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int initialized;
static uintptr_t last_id = 0x1000; /* handles: never 0, 1 or 2 */
static char last_fault[512];

/* An allocation: device memory, page-locked host memory, a module's
 * global, or the caller's memory registered with cuMemHostRegister_v2
 * (which the fake does not own). */
enum { ALLOC_DEVICE, ALLOC_HOST, ALLOC_GLOBAL, ALLOC_REGISTERED };
struct alloc {
	struct alloc *next;
	uint8_t *base;
	size_t size;
	int kind;
	uintptr_t module; /* ALLOC_GLOBAL: the module it belongs to */
};

enum { ENTRY_OTHER, ENTRY_PROCESS, ENTRY_INIT, ENTRY_MIGRATE };
struct function {
	uintptr_t id;
	char name[128];
	int kind;
};

struct global {
	char name[128];
	struct alloc *mem;
};

struct impl {
	char name[64];
	hk_process_fn process;
	hk_init_fn init;
	hk_migrate_fn migrate;
};

struct module {
	struct module *next;
	uintptr_t id;
	const struct impl *impl; /* NULL: not bound */
	struct function *funcs;
	int nfuncs;
	struct global *globals;
	int nglobals;
};

struct object { /* a stream or an event */
	struct object *next;
	uintptr_t id;
};

struct fake_ctx {
	struct fake_ctx *next_all;
	int destroyed;
	CUresult sticky;
	struct alloc *allocs;
	struct module *modules;
	struct object *streams;
	struct object *events;
};

static struct fake_ctx *all_ctxs; /* never freed, so a stale handle stays recognisable */

/* The calling thread's context stack; the top is the current context. */
#define STACK_DEPTH 64
static __thread struct fake_ctx *ctx_stack[STACK_DEPTH];
static __thread int ctx_depth;

/* The kernel thread being run, for the kernels' HK_TID_X() and friends. */
__thread uint32_t hk_fake_tid_x, hk_fake_ntid_x, hk_fake_ctaid_x;
static __thread jmp_buf *fault_jmp;

/* ---- Host implementations and bound images. ---- */

#define MAX_IMPLS 64
static struct impl impls[MAX_IMPLS];
static int nimpls;

static struct impl *impl_named(const char *name, int create) {
	for (int i = 0; i < nimpls; i++)
		if (strcmp(impls[i].name, name) == 0) return &impls[i];
	if (!create) return NULL;
	if (nimpls == MAX_IMPLS || strlen(name) >= sizeof impls[0].name) {
		fprintf(stderr, "cudafake: cannot register host implementation %s\n", name);
		abort();
	}
	struct impl *im = &impls[nimpls++];
	strcpy(im->name, name);
	return im;
}

void hk_fake_register_process(const char *impl, hk_process_fn fn) {
	pthread_mutex_lock(&mu);
	impl_named(impl, 1)->process = fn;
	pthread_mutex_unlock(&mu);
}
void hk_fake_register_init(const char *impl, hk_init_fn fn) {
	pthread_mutex_lock(&mu);
	impl_named(impl, 1)->init = fn;
	pthread_mutex_unlock(&mu);
}
void hk_fake_register_migrate(const char *impl, hk_migrate_fn fn) {
	pthread_mutex_lock(&mu);
	impl_named(impl, 1)->migrate = fn;
	pthread_mutex_unlock(&mu);
}

struct binding {
	struct binding *next;
	uint8_t *image;
	size_t len;
	const struct impl *impl;
};
static struct binding *bindings;

/* image_len is the length of an image without trailing NUL bytes. */
static size_t image_len(const uint8_t *p, size_t n) {
	while (n > 0 && p[n - 1] == 0) n--;
	return n;
}

static const struct impl *bound_impl(const uint8_t *image, size_t len) {
	for (struct binding *b = bindings; b; b = b->next)
		if (b->len == len && memcmp(b->image, image, len) == 0) return b->impl;
	return NULL;
}

/* fake_bind makes images with exactly these bytes (trailing NULs aside)
 * run the host implementation impl when loaded from now on. It returns 0,
 * -1 when there is no implementation impl, -2 for an empty image, -3 when
 * out of memory. */
int fake_bind(const void *image, size_t len, const char *impl) {
	int rc = 0;
	pthread_mutex_lock(&mu);
	const struct impl *im = impl ? impl_named(impl, 0) : NULL;
	len = image ? image_len(image, len) : 0;
	if (!im) {
		rc = -1;
	} else if (len == 0) {
		rc = -2;
	} else {
		struct binding *b = NULL;
		for (b = bindings; b; b = b->next)
			if (b->len == len && memcmp(b->image, image, len) == 0) break;
		if (!b) {
			b = calloc(1, sizeof *b);
			uint8_t *copy = malloc(len);
			if (!b || !copy) {
				free(b);
				free(copy);
				rc = -3;
				goto out;
			}
			memcpy(copy, image, len);
			b->image = copy;
			b->len = len;
			b->next = bindings;
			bindings = b;
		}
		b->impl = im;
	}
out:
	pthread_mutex_unlock(&mu);
	return rc;
}

/* fake_impls writes the names of the host implementations, separated by
 * spaces, into buf (NUL-terminated, cut at n bytes). */
void fake_impls(char *buf, size_t n) {
	if (!buf || n == 0) return;
	buf[0] = 0;
	pthread_mutex_lock(&mu);
	size_t used = 0;
	for (int i = 0; i < nimpls; i++) {
		int w = snprintf(buf + used, n - used, "%s%s", i ? " " : "", impls[i].name);
		if (w < 0 || (size_t)w >= n - used) break;
		used += (size_t)w;
	}
	pthread_mutex_unlock(&mu);
}

/* fake_calls returns how many times the driver function name was called,
 * or -1 when the fake has no such function. */
long long fake_calls(const char *name) {
	if (!name) return -1;
	for (int i = 0; i < CALL_COUNT; i++)
		if (strcmp(call_names[i], name) == 0) return (long long)__atomic_load_n(&calls[i], __ATOMIC_RELAXED);
	return -1;
}

/* fake_last_fault writes into buf (NUL-terminated, cut at n bytes) what
 * the latest fault of any context was, or "" when none happened yet. */
void fake_last_fault(char *buf, size_t n) {
	if (!buf || n == 0) return;
	pthread_mutex_lock(&mu);
	snprintf(buf, n, "%s", last_fault);
	pthread_mutex_unlock(&mu);
}

/* hk_fake_fault abandons the running launch (see cuLaunchKernel). */
void hk_fake_fault(void) {
	if (!fault_jmp) {
		fprintf(stderr, "cudafake: hk_fake_fault called outside a kernel launch\n");
		abort();
	}
	longjmp(*fault_jmp, 1);
}

/* ---- Helpers; the lock is held. ---- */

static uintptr_t new_id(void) { return last_id += 0x10; }

static int ctx_known(struct fake_ctx *c) {
	for (struct fake_ctx *k = all_ctxs; k; k = k->next_all)
		if (k == c) return 1;
	return 0;
}

/* current finds the calling thread's current context, usable for work. */
static CUresult current(struct fake_ctx **out) {
	if (!initialized) return CUDA_ERROR_NOT_INITIALIZED;
	if (ctx_depth == 0) return CUDA_ERROR_INVALID_CONTEXT;
	struct fake_ctx *c = ctx_stack[ctx_depth - 1];
	if (c->destroyed) return CUDA_ERROR_CONTEXT_IS_DESTROYED;
	if (c->sticky) return c->sticky;
	*out = c;
	return CUDA_SUCCESS;
}

static struct alloc *add_alloc(struct fake_ctx *c, size_t size, int kind, uintptr_t module) {
	struct alloc *a = calloc(1, sizeof *a);
	void *p = NULL;
	if (!a || posix_memalign(&p, ALIGN, size ? size : 1) != 0) {
		free(a);
		return NULL;
	}
	memset(p, 0, size);
	a->base = p;
	a->size = size;
	a->kind = kind;
	a->module = module;
	a->next = c->allocs;
	c->allocs = a;
	return a;
}

static void free_allocs(struct fake_ctx *c, int (*match)(struct alloc *, const void *), const void *arg) {
	for (struct alloc **pa = &c->allocs; *pa;) {
		struct alloc *a = *pa;
		if (match(a, arg)) {
			*pa = a->next;
			if (a->kind != ALLOC_REGISTERED) free(a->base);
			free(a);
		} else {
			pa = &a->next;
		}
	}
}

static int match_all(struct alloc *a, const void *arg) {
	(void)a;
	(void)arg;
	return 1;
}
static int match_module(struct alloc *a, const void *arg) {
	return a->kind == ALLOC_GLOBAL && a->module == *(const uintptr_t *)arg;
}
static int match_ptr(struct alloc *a, const void *arg) { return a == arg; }

/* in_memory reports whether [p, p+n) lies inside one allocation of c
 * that the device can reach (all of them: page-locked and registered host
 * memory is mapped under unified addressing). n = 0 is always inside. */
static int in_memory(struct fake_ctx *c, uint64_t p, uint64_t n) {
	if (n == 0) return 1;
	for (struct alloc *a = c->allocs; a; a = a->next) {
		uint64_t base = (uint64_t)(uintptr_t)a->base;
		if (p >= base && p - base <= a->size && n <= a->size - (p - base)) return 1;
	}
	return 0;
}

static struct alloc *find_alloc(struct fake_ctx *c, const void *base, int kind) {
	for (struct alloc *a = c->allocs; a; a = a->next)
		if (a->base == base && a->kind == kind) return a;
	return NULL;
}

static struct module *find_module(struct fake_ctx *c, CUmodule h) {
	for (struct module *m = c->modules; m; m = m->next)
		if (m->id == (uintptr_t)h) return m;
	return NULL;
}

static struct function *find_function(struct fake_ctx *c, CUfunction h, struct module **mod) {
	for (struct module *m = c->modules; m; m = m->next)
		for (int i = 0; i < m->nfuncs; i++)
			if (m->funcs[i].id == (uintptr_t)h) {
				*mod = m;
				return &m->funcs[i];
			}
	return NULL;
}

static struct object **find_object(struct object **list, uintptr_t id) {
	for (; *list; list = &(*list)->next)
		if ((*list)->id == id) return list;
	return NULL;
}

/* stream_ok reports whether h names a stream usable in c: the NULL
 * stream, CU_STREAM_LEGACY, CU_STREAM_PER_THREAD or one of c's. */
static int stream_ok(struct fake_ctx *c, CUstream h) {
	uintptr_t id = (uintptr_t)h;
	return id == 0 || id == STREAM_LEGACY || id == STREAM_PER_THREAD || find_object(&c->streams, id) != NULL;
}

static void free_objects(struct object **list) {
	while (*list) {
		struct object *o = *list;
		*list = o->next;
		free(o);
	}
}

static void free_module(struct fake_ctx *c, struct module *m) {
	free_allocs(c, match_module, &m->id);
	free(m->funcs);
	free(m->globals);
	free(m);
}

/* ---- The API. Each function counts its call, takes the lock and runs
 * the body written after API(...). ---- */

#define API(name, params, args)                                  \
	static CUresult name##_locked params;                    \
	CUresult name params {                                   \
		__atomic_fetch_add(&calls[CALL_##name], 1, __ATOMIC_RELAXED); \
		pthread_mutex_lock(&mu);                         \
		CUresult r = name##_locked args;                 \
		pthread_mutex_unlock(&mu);                       \
		return r;                                        \
	}                                                        \
	static CUresult name##_locked params

API(cuInit, (unsigned int flags), (flags)) {
	if (flags != 0) return CUDA_ERROR_INVALID_VALUE;
	const char *e = getenv(NO_DEVICE_ENV);
	if (e && strcmp(e, "1") == 0) return CUDA_ERROR_NO_DEVICE;
	initialized = 1;
	return CUDA_SUCCESS;
}

API(cuDriverGetVersion, (int *version), (version)) {
	if (!version) return CUDA_ERROR_INVALID_VALUE;
	*version = DRIVER_VERSION;
	return CUDA_SUCCESS;
}

static const struct {
	CUresult code;
	const char *name, *text;
} errors[] = {
	{0, "CUDA_SUCCESS", "no error"},
	{1, "CUDA_ERROR_INVALID_VALUE", "invalid argument"},
	{2, "CUDA_ERROR_OUT_OF_MEMORY", "out of memory"},
	{3, "CUDA_ERROR_NOT_INITIALIZED", "initialization error"},
	{4, "CUDA_ERROR_DEINITIALIZED", "driver shutting down"},
	{100, "CUDA_ERROR_NO_DEVICE", "no CUDA-capable device is detected"},
	{101, "CUDA_ERROR_INVALID_DEVICE", "invalid device ordinal"},
	{200, "CUDA_ERROR_INVALID_IMAGE", "device kernel image is invalid"},
	{201, "CUDA_ERROR_INVALID_CONTEXT", "invalid device context"},
	{209, "CUDA_ERROR_NO_BINARY_FOR_GPU", "no kernel image is available for execution on the device"},
	{218, "CUDA_ERROR_INVALID_PTX", "a PTX JIT compilation failed"},
	{400, "CUDA_ERROR_INVALID_HANDLE", "invalid resource handle"},
	{500, "CUDA_ERROR_NOT_FOUND", "named symbol not found"},
	{600, "CUDA_ERROR_NOT_READY", "device not ready"},
	{700, "CUDA_ERROR_ILLEGAL_ADDRESS", "an illegal memory access was encountered"},
	{701, "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES", "too many resources requested for launch"},
	{702, "CUDA_ERROR_LAUNCH_TIMEOUT", "the launch timed out and was terminated"},
	{709, "CUDA_ERROR_CONTEXT_IS_DESTROYED", "context is destroyed"},
	{712, "CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED", "part or all of the requested memory range is already mapped"},
	{713, "CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED", "pointer does not correspond to a registered memory region"},
	{714, "CUDA_ERROR_HARDWARE_STACK_ERROR", "hardware stack error"},
	{715, "CUDA_ERROR_ILLEGAL_INSTRUCTION", "an illegal instruction was encountered"},
	{716, "CUDA_ERROR_MISALIGNED_ADDRESS", "misaligned address"},
	{717, "CUDA_ERROR_INVALID_ADDRESS_SPACE", "operation not supported on global/shared address space"},
	{718, "CUDA_ERROR_INVALID_PC", "invalid program counter"},
	{719, "CUDA_ERROR_LAUNCH_FAILED", "unspecified launch failure"},
	{801, "CUDA_ERROR_NOT_SUPPORTED", "operation not supported"},
	{999, "CUDA_ERROR_UNKNOWN", "unknown error"},
};

static CUresult error_text(CUresult code, const char **out, int name) {
	if (!out) return CUDA_ERROR_INVALID_VALUE;
	for (size_t i = 0; i < sizeof errors / sizeof errors[0]; i++)
		if (errors[i].code == code) {
			*out = name ? errors[i].name : errors[i].text;
			return CUDA_SUCCESS;
		}
	*out = NULL;
	return CUDA_ERROR_INVALID_VALUE;
}

API(cuGetErrorName, (CUresult code, const char **name), (code, name)) { return error_text(code, name, 1); }

API(cuGetErrorString, (CUresult code, const char **text), (code, text)) { return error_text(code, text, 0); }

API(cuDeviceGetCount, (int *count), (count)) {
	if (!initialized) return CUDA_ERROR_NOT_INITIALIZED;
	if (!count) return CUDA_ERROR_INVALID_VALUE;
	*count = 1;
	return CUDA_SUCCESS;
}

API(cuDeviceGet, (CUdevice * dev, int ordinal), (dev, ordinal)) {
	if (!initialized) return CUDA_ERROR_NOT_INITIALIZED;
	if (!dev) return CUDA_ERROR_INVALID_VALUE;
	if (ordinal != 0) return CUDA_ERROR_INVALID_DEVICE;
	*dev = 0;
	return CUDA_SUCCESS;
}

API(cuDeviceGetName, (char *name, int len, CUdevice dev), (name, len, dev)) {
	if (!initialized) return CUDA_ERROR_NOT_INITIALIZED;
	if (!name || len <= 0) return CUDA_ERROR_INVALID_VALUE;
	if (dev != 0) return CUDA_ERROR_INVALID_DEVICE;
	snprintf(name, (size_t)len, "%s", DEVICE_NAME);
	return CUDA_SUCCESS;
}

API(cuDeviceGetAttribute, (int *value, CUdevice_attribute attr, CUdevice dev), (value, attr, dev)) {
	if (!initialized) return CUDA_ERROR_NOT_INITIALIZED;
	if (!value) return CUDA_ERROR_INVALID_VALUE;
	if (dev != 0) return CUDA_ERROR_INVALID_DEVICE;
	switch (attr) {
	case 16: /* CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT */
		*value = 132;
		break;
	case 75: /* CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR */
		*value = 9;
		break;
	case 76: /* CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR */
		*value = 0;
		break;
	default:
		*value = 0;
	}
	return CUDA_SUCCESS;
}

API(cuDeviceTotalMem_v2, (size_t * bytes, CUdevice dev), (bytes, dev)) {
	if (!initialized) return CUDA_ERROR_NOT_INITIALIZED;
	if (!bytes) return CUDA_ERROR_INVALID_VALUE;
	if (dev != 0) return CUDA_ERROR_INVALID_DEVICE;
	*bytes = DEVICE_MEMORY;
	return CUDA_SUCCESS;
}

API(cuCtxCreate_v2, (CUcontext * pctx, unsigned int flags, CUdevice dev), (pctx, flags, dev)) {
	(void)flags;
	if (!initialized) return CUDA_ERROR_NOT_INITIALIZED;
	if (!pctx) return CUDA_ERROR_INVALID_VALUE;
	if (dev != 0) return CUDA_ERROR_INVALID_DEVICE;
	if (ctx_depth == STACK_DEPTH) return CUDA_ERROR_OUT_OF_MEMORY;
	struct fake_ctx *c = calloc(1, sizeof *c);
	if (!c) return CUDA_ERROR_OUT_OF_MEMORY;
	c->next_all = all_ctxs;
	all_ctxs = c;
	ctx_stack[ctx_depth++] = c;
	*pctx = c;
	return CUDA_SUCCESS;
}

API(cuCtxDestroy_v2, (CUcontext ctx), (ctx)) {
	if (!initialized) return CUDA_ERROR_NOT_INITIALIZED;
	if (!ctx || !ctx_known(ctx) || ctx->destroyed) return CUDA_ERROR_INVALID_CONTEXT;
	while (ctx->modules) {
		struct module *m = ctx->modules;
		ctx->modules = m->next;
		free_module(ctx, m);
	}
	free_allocs(ctx, match_all, NULL);
	free_objects(&ctx->streams);
	free_objects(&ctx->events);
	ctx->destroyed = 1;
	ctx->sticky = CUDA_SUCCESS;
	/* Popped from the calling thread's stack when current there; other
	 * threads that have it current get CUDA_ERROR_CONTEXT_IS_DESTROYED. */
	if (ctx_depth > 0 && ctx_stack[ctx_depth - 1] == ctx) ctx_depth--;
	return CUDA_SUCCESS;
}

API(cuCtxSetCurrent, (CUcontext ctx), (ctx)) {
	if (!initialized) return CUDA_ERROR_NOT_INITIALIZED;
	if (!ctx) {
		if (ctx_depth > 0) ctx_depth--;
		return CUDA_SUCCESS;
	}
	if (!ctx_known(ctx) || ctx->destroyed) return CUDA_ERROR_INVALID_CONTEXT;
	if (ctx_depth == 0) ctx_depth = 1;
	ctx_stack[ctx_depth - 1] = ctx;
	return CUDA_SUCCESS;
}

API(cuCtxPopCurrent_v2, (CUcontext * pctx), (pctx)) {
	if (!initialized) return CUDA_ERROR_NOT_INITIALIZED;
	if (ctx_depth == 0) return CUDA_ERROR_INVALID_CONTEXT;
	struct fake_ctx *c = ctx_stack[--ctx_depth];
	if (pctx) *pctx = c;
	return CUDA_SUCCESS;
}

API(cuCtxSynchronize, (void), ()) {
	struct fake_ctx *c;
	return current(&c);
}

/* ---- Modules. ---- */

/* put_log writes text into a log buffer of cap bytes, cut and
 * NUL-terminated, and returns the bytes written before the NUL. */
static size_t put_log(char *buf, size_t cap, const char *text) {
	if (!buf || cap == 0) return 0;
	size_t n = strlen(text);
	if (n > cap - 1) n = cap - 1;
	memcpy(buf, text, n);
	buf[n] = 0;
	return n;
}

/* jit options as cuModuleLoadDataEx received them. */
struct jit {
	char *info, *error;
	size_t info_cap, error_cap;
	int info_size_at, error_size_at, wall_at; /* indexes, or -1 */
};

/* finish_jit writes the logs and the outputs of the options back. */
static void finish_jit(struct jit *j, void **values, const char *info, const char *error) {
	size_t in = put_log(j->info, j->info_cap, info);
	size_t en = put_log(j->error, j->error_cap, error);
	if (j->info_size_at >= 0) values[j->info_size_at] = (void *)(uintptr_t)in;
	if (j->error_size_at >= 0) values[j->error_size_at] = (void *)(uintptr_t)en;
	if (j->wall_at >= 0) {
		float ms = 0.0f;
		memcpy(&values[j->wall_at], &ms, sizeof ms);
	}
}

/* A parsed PTX line: up to MAX_TOKENS whitespace-separated tokens of the
 * line with its // comment removed. */
#define MAX_TOKENS 16
#define MAX_LINE 1024
struct line {
	char buf[MAX_LINE];
	char *tok[MAX_TOKENS];
	int n;
};

static void tokenize(struct line *l, const char *p, size_t len) {
	if (len >= MAX_LINE) len = MAX_LINE - 1;
	memcpy(l->buf, p, len);
	l->buf[len] = 0;
	char *c = strstr(l->buf, "//");
	if (c) *c = 0;
	l->n = 0;
	char *save = NULL;
	for (char *s = strtok_r(l->buf, " \t\r", &save); s && l->n < MAX_TOKENS; s = strtok_r(NULL, " \t\r", &save))
		l->tok[l->n++] = s;
}

/* type_size returns the bytes of a PTX scalar type, or 0. */
static size_t type_size(const char *t) {
	static const struct {
		const char *t;
		size_t n;
	} types[] = {
		{".u8", 1}, {".s8", 1}, {".b8", 1}, {".u16", 2}, {".s16", 2}, {".b16", 2}, {".f16", 2},
		{".u32", 4}, {".s32", 4}, {".b32", 4}, {".f32", 4}, {".u64", 8}, {".s64", 8}, {".b64", 8}, {".f64", 8},
	};
	for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
		if (strcmp(t, types[i].t) == 0) return types[i].n;
	return 0;
}

/* copy_name copies a name up to the first '(', '[', ';', '{' or '=' into
 * out (of 128 bytes) and returns its length (0: none). */
static size_t copy_name(const char *s, char *out) {
	size_t n = strcspn(s, "([;{=");
	if (n == 0 || n >= 128) return 0;
	memcpy(out, s, n);
	out[n] = 0;
	return n;
}

/* parse_global reads ".visible .global [.align N] .TYPE NAME[[N]] [= V];"
 * into name, size and the little-endian initial bytes (zero when there is
 * no initializer; a scalar's value, or an array's {a, b, ...} elements).
 * It returns 1 for a global, 0 for any other line. */
static int parse_global(struct line *l, const char *raw, size_t rawlen, char *name, size_t *size, uint8_t **init) {
	int i = 0;
	while (i < l->n && (strcmp(l->tok[i], ".visible") == 0 || strcmp(l->tok[i], ".weak") == 0 ||
	                    strcmp(l->tok[i], ".common") == 0))
		i++;
	if (i >= l->n || strcmp(l->tok[i], ".global") != 0) return 0;
	i++;
	if (i < l->n && strcmp(l->tok[i], ".align") == 0) i += 2;
	if (i >= l->n) return 0;
	size_t elem = type_size(l->tok[i]);
	if (elem == 0 || ++i >= l->n) return 0;
	if (copy_name(l->tok[i], name) == 0) return 0;
	size_t count = 1;
	const char *br = strchr(l->tok[i], '[');
	if (br) count = strtoull(br + 1, NULL, 10);
	if (count == 0 || count > ((size_t)1 << 30) / elem) return 0;
	*size = elem * count;
	*init = calloc(1, *size);
	if (!*init) return 0;
	/* The initializer, from the raw line (tokens may split it). */
	const char *eq = memchr(raw, '=', rawlen);
	if (!eq) return 1;
	char text[MAX_LINE];
	size_t n = rawlen - (size_t)(eq + 1 - raw);
	if (n >= sizeof text) n = sizeof text - 1;
	memcpy(text, eq + 1, n);
	text[n] = 0;
	char *p = text;
	while (*p == ' ' || *p == '\t' || *p == '{') p++;
	for (size_t k = 0; k < count && *p && *p != ';' && *p != '}'; k++) {
		char *end;
		uint64_t v = strtoull(p, &end, 0);
		if (end == p) break;
		for (size_t b = 0; b < elem; b++) (*init)[k * elem + b] = (uint8_t)(v >> (8 * b));
		p = end;
		while (*p == ' ' || *p == '\t' || *p == ',') p++;
	}
	return 1;
}

static int entry_kind(const char *name) {
	if (strcmp(name, "hk_process") == 0) return ENTRY_PROCESS;
	if (strcmp(name, "hk_init") == 0) return ENTRY_INIT;
	if (strcmp(name, "hk_migrate") == 0) return ENTRY_MIGRATE;
	return ENTRY_OTHER;
}

/* load_ptx parses text into m, allocating the globals in c. It returns
 * CUDA_SUCCESS, or an error with a ptxas-style line in errbuf. */
static CUresult load_ptx(struct fake_ctx *c, struct module *m, const char *text, char *errbuf, size_t errcap) {
	int has_version = 0, lineno = 0;
	for (const char *p = text; *p;) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);
		lineno++;
		if (memmem(p, len, "hk_fake_jit_error", 17)) {
			snprintf(errbuf, errcap,
			         "ptxas application ptx input, line %d; error   : hk_fake_jit_error: the fake driver was asked to "
			         "fail this module\nptxas fatal   : Ptx assembly aborted due to errors\n",
			         lineno);
			return CUDA_ERROR_INVALID_PTX;
		}
		struct line l;
		tokenize(&l, p, len);
		if (l.n > 0 && strcmp(l.tok[0], ".version") == 0) has_version = 1;
		int ext = 0;
		for (int i = 0; i < l.n; i++) {
			if (strcmp(l.tok[i], ".extern") == 0) ext = 1;
			if (strcmp(l.tok[i], ".entry") == 0 && !ext) {
				char name[128];
				if (i + 1 < l.n && copy_name(l.tok[i + 1], name)) {
					struct function *f = realloc(m->funcs, (size_t)(m->nfuncs + 1) * sizeof *f);
					if (!f) return CUDA_ERROR_OUT_OF_MEMORY;
					m->funcs = f;
					f = &m->funcs[m->nfuncs++];
					f->id = new_id();
					strcpy(f->name, name);
					f->kind = entry_kind(name);
				}
				break;
			}
		}
		char name[128];
		size_t size;
		uint8_t *init = NULL;
		if (!ext && parse_global(&l, p, len, name, &size, &init)) {
			struct global *g = realloc(m->globals, (size_t)(m->nglobals + 1) * sizeof *g);
			struct alloc *a = g ? add_alloc(c, size, ALLOC_GLOBAL, m->id) : NULL;
			if (g) m->globals = g;
			if (!a) {
				free(init);
				return CUDA_ERROR_OUT_OF_MEMORY;
			}
			memcpy(a->base, init, size);
			free(init);
			g = &m->globals[m->nglobals++];
			strcpy(g->name, name);
			g->mem = a;
		}
		if (!nl) break;
		p = nl + 1;
	}
	if (!has_version) {
		snprintf(errbuf, errcap,
		         "ptxas application ptx input, line 1; error   : Missing .version directive at start of file\n"
		         "ptxas fatal   : Ptx assembly aborted due to errors\n");
		return CUDA_ERROR_INVALID_PTX;
	}
	return CUDA_SUCCESS;
}

API(cuModuleLoadDataEx,
    (CUmodule * module, const void *image, unsigned int n, CUjit_option *options, void **values),
    (module, image, n, options, values)) {
	struct fake_ctx *c;
	CUresult r = current(&c);
	if (r) return r;
	if (!module || !image || (n > 0 && (!options || !values))) return CUDA_ERROR_INVALID_VALUE;
	struct jit j = {NULL, NULL, 0, 0, -1, -1, -1};
	for (unsigned int i = 0; i < n; i++) {
		switch (options[i]) {
		case CU_JIT_WALL_TIME:
			j.wall_at = (int)i;
			break;
		case CU_JIT_INFO_LOG_BUFFER:
			j.info = values[i];
			break;
		case CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES:
			j.info_cap = (size_t)(uintptr_t)values[i];
			j.info_size_at = (int)i;
			break;
		case CU_JIT_ERROR_LOG_BUFFER:
			j.error = values[i];
			break;
		case CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES:
			j.error_cap = (size_t)(uintptr_t)values[i];
			j.error_size_at = (int)i;
			break;
		default:
			if (options[i] < 0) return CUDA_ERROR_INVALID_VALUE;
		}
	}
	const uint8_t *b = image;
	if ((b[0] == 0x7f && b[1] == 'E' && b[2] == 'L' && b[3] == 'F') ||
	    (b[0] == 0x50 && b[1] == 0xed && b[2] == 0x55 && b[3] == 0xba)) {
		finish_jit(&j, values, "",
		           "hotkernel fake libcuda: the image is a CUBIN or fatbinary; the fake runs PTX text only\n");
		return CUDA_ERROR_NO_BINARY_FOR_GPU;
	}
	struct module *m = calloc(1, sizeof *m);
	if (!m) return CUDA_ERROR_OUT_OF_MEMORY;
	m->id = new_id();
	char err[512] = "";
	r = load_ptx(c, m, image, err, sizeof err);
	if (r) {
		free_module(c, m);
		finish_jit(&j, values, "", err);
		return r;
	}
	m->impl = bound_impl(image, strlen(image));
	char info[512];
	snprintf(info, sizeof info,
	         "ptxas info    : hotkernel fake libcuda: %d entries, %d globals; %s%s\n", m->nfuncs, m->nglobals,
	         m->impl ? "runs host implementation " : "bound to no host implementation: launches fail",
	         m->impl ? m->impl->name : "");
	finish_jit(&j, values, info, "");
	m->next = c->modules;
	c->modules = m;
	*module = (CUmodule)m->id;
	return CUDA_SUCCESS;
}

API(cuModuleUnload, (CUmodule h), (h)) {
	struct fake_ctx *c;
	CUresult r = current(&c);
	if (r) return r;
	for (struct module **pm = &c->modules; *pm; pm = &(*pm)->next)
		if ((*pm)->id == (uintptr_t)h) {
			struct module *m = *pm;
			*pm = m->next;
			free_module(c, m);
			return CUDA_SUCCESS;
		}
	return CUDA_ERROR_INVALID_HANDLE;
}

API(cuModuleGetFunction, (CUfunction * fn, CUmodule h, const char *name), (fn, h, name)) {
	struct fake_ctx *c;
	CUresult r = current(&c);
	if (r) return r;
	if (!fn || !name) return CUDA_ERROR_INVALID_VALUE;
	struct module *m = find_module(c, h);
	if (!m) return CUDA_ERROR_INVALID_HANDLE;
	for (int i = 0; i < m->nfuncs; i++)
		if (strcmp(m->funcs[i].name, name) == 0) {
			*fn = (CUfunction)m->funcs[i].id;
			return CUDA_SUCCESS;
		}
	return CUDA_ERROR_NOT_FOUND;
}

API(cuModuleGetGlobal_v2, (CUdeviceptr * dptr, size_t *bytes, CUmodule h, const char *name),
    (dptr, bytes, h, name)) {
	struct fake_ctx *c;
	CUresult r = current(&c);
	if (r) return r;
	if (!name) return CUDA_ERROR_INVALID_VALUE;
	struct module *m = find_module(c, h);
	if (!m) return CUDA_ERROR_INVALID_HANDLE;
	for (int i = 0; i < m->nglobals; i++)
		if (strcmp(m->globals[i].name, name) == 0) {
			if (dptr) *dptr = (CUdeviceptr)(uintptr_t)m->globals[i].mem->base;
			if (bytes) *bytes = m->globals[i].mem->size;
			return CUDA_SUCCESS;
		}
	return CUDA_ERROR_NOT_FOUND;
}

/* ---- Memory. ---- */

API(cuMemAlloc_v2, (CUdeviceptr * dptr, size_t size), (dptr, size)) {
	struct fake_ctx *c;
	CUresult r = current(&c);
	if (r) return r;
	if (!dptr || size == 0) return CUDA_ERROR_INVALID_VALUE;
	struct alloc *a = add_alloc(c, size, ALLOC_DEVICE, 0);
	if (!a) return CUDA_ERROR_OUT_OF_MEMORY;
	*dptr = (CUdeviceptr)(uintptr_t)a->base;
	return CUDA_SUCCESS;
}

API(cuMemFree_v2, (CUdeviceptr p), (p)) {
	struct fake_ctx *c;
	CUresult r = current(&c);
	if (r) return r;
	struct alloc *a = find_alloc(c, (void *)(uintptr_t)p, ALLOC_DEVICE);
	if (!a) return CUDA_ERROR_INVALID_VALUE;
	free_allocs(c, match_ptr, a);
	return CUDA_SUCCESS;
}

API(cuMemAllocHost_v2, (void **pp, size_t size), (pp, size)) {
	struct fake_ctx *c;
	CUresult r = current(&c);
	if (r) return r;
	if (!pp || size == 0) return CUDA_ERROR_INVALID_VALUE;
	struct alloc *a = add_alloc(c, size, ALLOC_HOST, 0);
	if (!a) return CUDA_ERROR_OUT_OF_MEMORY;
	*pp = a->base;
	return CUDA_SUCCESS;
}

API(cuMemFreeHost, (void *p), (p)) {
	struct fake_ctx *c;
	CUresult r = current(&c);
	if (r) return r;
	struct alloc *a = find_alloc(c, p, ALLOC_HOST);
	if (!a) return CUDA_ERROR_INVALID_VALUE;
	free_allocs(c, match_ptr, a);
	return CUDA_SUCCESS;
}

API(cuMemHostRegister_v2, (void *p, size_t size, unsigned int flags), (p, size, flags)) {
	struct fake_ctx *c;
	CUresult r = current(&c);
	if (r) return r;
	if (!p || size == 0 || (flags & ~0xfu)) return CUDA_ERROR_INVALID_VALUE;
	uintptr_t lo = (uintptr_t)p, hi = lo + size;
	if (hi < lo) return CUDA_ERROR_INVALID_VALUE;
	for (struct alloc *a = c->allocs; a; a = a->next) {
		uintptr_t alo = (uintptr_t)a->base, ahi = alo + a->size;
		if (a->kind == ALLOC_REGISTERED && lo < ahi && alo < hi) return CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED;
	}
	struct alloc *a = calloc(1, sizeof *a);
	if (!a) return CUDA_ERROR_OUT_OF_MEMORY;
	a->base = p;
	a->size = size;
	a->kind = ALLOC_REGISTERED;
	a->next = c->allocs;
	c->allocs = a;
	return CUDA_SUCCESS;
}

API(cuMemHostUnregister, (void *p), (p)) {
	struct fake_ctx *c;
	CUresult r = current(&c);
	if (r) return r;
	struct alloc *a = find_alloc(c, p, ALLOC_REGISTERED);
	if (!a) return CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED;
	free_allocs(c, match_ptr, a);
	return CUDA_SUCCESS;
}

/* copy checks a copy of n bytes to dst from src, each a device address
 * when the flag says so, on stream s, and does it. */
static CUresult copy(uint64_t dst, int dst_dev, uint64_t src, int src_dev, size_t n, CUstream s) {
	struct fake_ctx *c;
	CUresult r = current(&c);
	if (r) return r;
	if (!stream_ok(c, s)) return CUDA_ERROR_INVALID_HANDLE;
	if (n == 0) return CUDA_SUCCESS;
	if (!dst || !src) return CUDA_ERROR_INVALID_VALUE;
	if ((dst_dev && !in_memory(c, dst, n)) || (src_dev && !in_memory(c, src, n))) return CUDA_ERROR_INVALID_VALUE;
	memmove((void *)(uintptr_t)dst, (const void *)(uintptr_t)src, n);
	return CUDA_SUCCESS;
}

API(cuMemcpyHtoD_v2, (CUdeviceptr dst, const void *src, size_t n), (dst, src, n)) {
	return copy(dst, 1, (uintptr_t)src, 0, n, NULL);
}

API(cuMemcpyDtoH_v2, (void *dst, CUdeviceptr src, size_t n), (dst, src, n)) {
	return copy((uintptr_t)dst, 0, src, 1, n, NULL);
}

API(cuMemcpyHtoDAsync_v2, (CUdeviceptr dst, const void *src, size_t n, CUstream s), (dst, src, n, s)) {
	return copy(dst, 1, (uintptr_t)src, 0, n, s);
}

API(cuMemcpyDtoHAsync_v2, (void *dst, CUdeviceptr src, size_t n, CUstream s), (dst, src, n, s)) {
	return copy((uintptr_t)dst, 0, src, 1, n, s);
}

API(cuMemcpyDtoDAsync_v2, (CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream s), (dst, src, n, s)) {
	return copy(dst, 1, src, 1, n, s);
}

API(cuMemsetD8Async, (CUdeviceptr dst, unsigned char v, size_t n, CUstream s), (dst, v, n, s)) {
	struct fake_ctx *c;
	CUresult r = current(&c);
	if (r) return r;
	if (!stream_ok(c, s)) return CUDA_ERROR_INVALID_HANDLE;
	if (!in_memory(c, dst, n)) return CUDA_ERROR_INVALID_VALUE;
	if (n) memset((void *)(uintptr_t)dst, v, n);
	return CUDA_SUCCESS;
}

API(cuMemsetD32Async, (CUdeviceptr dst, unsigned int v, size_t n, CUstream s), (dst, v, n, s)) {
	struct fake_ctx *c;
	CUresult r = current(&c);
	if (r) return r;
	if (!stream_ok(c, s)) return CUDA_ERROR_INVALID_HANDLE;
	if (dst % 4 != 0 || n > SIZE_MAX / 4 || !in_memory(c, dst, n * 4)) return CUDA_ERROR_INVALID_VALUE;
	uint32_t *p = (uint32_t *)(uintptr_t)dst;
	for (size_t i = 0; i < n; i++) p[i] = v;
	return CUDA_SUCCESS;
}

/* ---- Streams and events: the work is done at enqueue. ---- */

static CUresult new_object(struct object **list, uintptr_t *id) {
	struct object *o = calloc(1, sizeof *o);
	if (!o) return CUDA_ERROR_OUT_OF_MEMORY;
	o->id = new_id();
	o->next = *list;
	*list = o;
	*id = o->id;
	return CUDA_SUCCESS;
}

static CUresult destroy_object(struct object **list, uintptr_t id) {
	struct object **po = find_object(list, id);
	if (!po) return CUDA_ERROR_INVALID_HANDLE;
	struct object *o = *po;
	*po = o->next;
	free(o);
	return CUDA_SUCCESS;
}

API(cuStreamCreate, (CUstream * ph, unsigned int flags), (ph, flags)) {
	struct fake_ctx *c;
	CUresult r = current(&c);
	if (r) return r;
	if (!ph || (flags & ~1u)) return CUDA_ERROR_INVALID_VALUE;
	uintptr_t id;
	r = new_object(&c->streams, &id);
	if (!r) *ph = (CUstream)id;
	return r;
}

API(cuStreamDestroy_v2, (CUstream h), (h)) {
	struct fake_ctx *c;
	CUresult r = current(&c);
	if (r) return r;
	return destroy_object(&c->streams, (uintptr_t)h);
}

API(cuStreamSynchronize, (CUstream h), (h)) {
	struct fake_ctx *c;
	CUresult r = current(&c);
	if (r) return r;
	return stream_ok(c, h) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
}

API(cuStreamQuery, (CUstream h), (h)) {
	struct fake_ctx *c;
	CUresult r = current(&c);
	if (r) return r;
	return stream_ok(c, h) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
}

API(cuEventCreate, (CUevent * ph, unsigned int flags), (ph, flags)) {
	struct fake_ctx *c;
	CUresult r = current(&c);
	if (r) return r;
	if (!ph || (flags & ~0xfu)) return CUDA_ERROR_INVALID_VALUE;
	uintptr_t id;
	r = new_object(&c->events, &id);
	if (!r) *ph = (CUevent)id;
	return r;
}

API(cuEventRecord, (CUevent ev, CUstream s), (ev, s)) {
	struct fake_ctx *c;
	CUresult r = current(&c);
	if (r) return r;
	if (!find_object(&c->events, (uintptr_t)ev) || !stream_ok(c, s)) return CUDA_ERROR_INVALID_HANDLE;
	return CUDA_SUCCESS;
}

API(cuEventSynchronize, (CUevent ev), (ev)) {
	struct fake_ctx *c;
	CUresult r = current(&c);
	if (r) return r;
	return find_object(&c->events, (uintptr_t)ev) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
}

API(cuEventQuery, (CUevent ev), (ev)) {
	struct fake_ctx *c;
	CUresult r = current(&c);
	if (r) return r;
	return find_object(&c->events, (uintptr_t)ev) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
}

API(cuEventDestroy_v2, (CUevent ev), (ev)) {
	struct fake_ctx *c;
	CUresult r = current(&c);
	if (r) return r;
	return destroy_object(&c->events, (uintptr_t)ev);
}

/* ---- Launches. ---- */

/* arg reads kernel parameter i, of size n, from the launch's params. */
static void arg(void **params, int i, void *out, size_t n) { memcpy(out, params[i], n); }

/* args holds a launch's arguments, whichever entry it is. */
struct args {
	uint64_t state, state_len, in, off, res, out, old, old_len, old_version, status;
	uint32_t count, old_layout;
};

/* check_args reports (as a fault, returning 0) an argument range outside
 * the context's memory; the kernel would read or write there. */
static int check_args(struct fake_ctx *c, struct module *m, struct function *f, struct args *a) {
	const char *fn = f->name, *im = m->impl->name;
#define RANGE(p, n, what)                                                                                   \
	if (!in_memory(c, (p), (n))) {                                                                       \
		c->sticky = CUDA_ERROR_ILLEGAL_ADDRESS;                                                      \
		snprintf(last_fault, sizeof last_fault, "%s of %s: " what " [0x%llx, +%llu) is outside the " \
		         "context's memory", fn, im, (unsigned long long)(p), (unsigned long long)(n));      \
		return 0;                                                                                    \
	}
	RANGE(a->state, a->state_len, "state");
	if (f->kind == ENTRY_MIGRATE) {
		RANGE(a->old, a->old_len, "old state");
		RANGE(a->status, 4, "status");
		return 1;
	}
	if (f->kind != ENTRY_PROCESS) return 1;
	uint64_t count = a->count, max_output = 0;
	RANGE(a->off, (count + 1) * 4, "off");
	RANGE(a->res, count * 8, "res");
	for (int i = 0; i < m->nglobals; i++)
		if (strcmp(m->globals[i].name, "hk_max_output") == 0 && m->globals[i].mem->size == 4) {
			uint32_t v;
			memcpy(&v, m->globals[i].mem->base, 4);
			max_output = v;
		}
	RANGE(a->out, count * max_output, "out");
	const uint32_t *off = (const uint32_t *)(uintptr_t)a->off;
	uint64_t end = 0;
	for (uint64_t i = 0; i <= count; i++)
		if (off[i] > end) end = off[i];
	RANGE(a->in, end, "in");
	return 1;
#undef RANGE
}

/* run calls the entry for every block and thread, one after the other,
 * and returns 1 when the kernel faulted. */
static int run(struct function *f, const struct impl *im, struct args *a, unsigned grid[3], unsigned block[3]) {
	jmp_buf jb;
	if (setjmp(jb)) {
		fault_jmp = NULL;
		return 1;
	}
	fault_jmp = &jb;
	hk_fake_ntid_x = block[0];
	for (unsigned bz = 0; bz < grid[2]; bz++)
		for (unsigned by = 0; by < grid[1]; by++)
			for (unsigned bx = 0; bx < grid[0]; bx++)
				for (unsigned tz = 0; tz < block[2]; tz++)
					for (unsigned ty = 0; ty < block[1]; ty++)
						for (unsigned tx = 0; tx < block[0]; tx++) {
							hk_fake_ctaid_x = bx;
							hk_fake_tid_x = tx;
							uint8_t *state = (uint8_t *)(uintptr_t)a->state;
							switch (f->kind) {
							case ENTRY_PROCESS:
								im->process(state, a->state_len, (const uint8_t *)(uintptr_t)a->in,
								            (const uint32_t *)(uintptr_t)a->off, a->count,
								            (uint32_t *)(uintptr_t)a->res, (uint8_t *)(uintptr_t)a->out);
								break;
							case ENTRY_INIT:
								im->init(state, a->state_len);
								break;
							case ENTRY_MIGRATE:
								im->migrate(state, a->state_len, (const uint8_t *)(uintptr_t)a->old,
								            a->old_len, a->old_layout, a->old_version,
								            (uint32_t *)(uintptr_t)a->status);
								break;
							}
						}
	fault_jmp = NULL;
	return 0;
}

API(cuLaunchKernel,
    (CUfunction h, unsigned int gx, unsigned int gy, unsigned int gz, unsigned int bx, unsigned int by,
     unsigned int bz, unsigned int shared, CUstream s, void **params, void **extra),
    (h, gx, gy, gz, bx, by, bz, shared, s, params, extra)) {
	struct fake_ctx *c;
	CUresult r = current(&c);
	if (r) return r;
	struct module *m;
	struct function *f = find_function(c, h, &m);
	if (!f || !stream_ok(c, s)) return CUDA_ERROR_INVALID_HANDLE;
	if (gx == 0 || gy == 0 || gz == 0 || bx == 0 || by == 0 || bz == 0 || gx > 0x7fffffffu || gy > 65535 ||
	    gz > 65535 || (uint64_t)bx * by * bz > MAX_THREADS_PER_BLOCK || shared > MAX_SHARED_MEMORY)
		return CUDA_ERROR_INVALID_VALUE;
	if (extra) return CUDA_ERROR_NOT_SUPPORTED;
	const struct impl *im = m->impl;
	if (!im) return CUDA_ERROR_NOT_SUPPORTED;
	if ((f->kind == ENTRY_PROCESS && !im->process) || (f->kind == ENTRY_INIT && !im->init) ||
	    (f->kind == ENTRY_MIGRATE && !im->migrate) || f->kind == ENTRY_OTHER)
		return CUDA_ERROR_NOT_SUPPORTED;
	int nparams = f->kind == ENTRY_INIT ? 2 : 7;
	if (!params) return CUDA_ERROR_INVALID_VALUE;
	for (int i = 0; i < nparams; i++)
		if (!params[i]) return CUDA_ERROR_INVALID_VALUE;

	struct args a = {0};
	arg(params, 0, &a.state, 8);
	arg(params, 1, &a.state_len, 8);
	if (f->kind == ENTRY_PROCESS) {
		arg(params, 2, &a.in, 8);
		arg(params, 3, &a.off, 8);
		arg(params, 4, &a.count, 4);
		arg(params, 5, &a.res, 8);
		arg(params, 6, &a.out, 8);
	} else if (f->kind == ENTRY_MIGRATE) {
		arg(params, 2, &a.old, 8);
		arg(params, 3, &a.old_len, 8);
		arg(params, 4, &a.old_layout, 4);
		arg(params, 5, &a.old_version, 8);
		arg(params, 6, &a.status, 8);
	}
	/* A fault is reported the way a GPU reports it: the launch is
	 * accepted, and the context is poisoned for every later call. */
	if (!check_args(c, m, f, &a)) return CUDA_SUCCESS;
	unsigned grid[3] = {gx, gy, gz}, block[3] = {bx, by, bz};
	if (run(f, im, &a, grid, block)) {
		c->sticky = CUDA_ERROR_ILLEGAL_ADDRESS;
		snprintf(last_fault, sizeof last_fault, "%s of %s: the kernel made an illegal memory access (HK_FAULT)",
		         f->name, im->name);
	}
	return CUDA_SUCCESS;
}
