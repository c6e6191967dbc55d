/* The steady clock and the core-clock estimate (a dependent chain of integer adds). */
#include "bench.h"

#if defined(_WIN32)
#include <windows.h>
double fqb_now_ns(void) {
    LARGE_INTEGER f, t;
    QueryPerformanceFrequency(&f);
    QueryPerformanceCounter(&t);
    return (double)t.QuadPart * 1e9 / (double)f.QuadPart;
}
#else
#include <time.h>
double fqb_now_ns(void) {
    struct timespec ts;
#if defined(CLOCK_MONOTONIC_RAW)
    clock_gettime(CLOCK_MONOTONIC_RAW, &ts);   /* not slewed by NTP */
#else
    clock_gettime(CLOCK_MONOTONIC, &ts);
#endif
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}
#endif

/* OPAQUE(x): the compiler must assume x changed here, so it can neither fold a chain into
 * a closed form (x + n*y) nor vectorize it; it emits no instruction. The "+r" constraint
 * also keeps x in a general-purpose register. */
#if defined(__GNUC__)
#define OPAQUE(x) __asm__ volatile("" : "+r"(x))
#else
#define OPAQUE(x) do { volatile int64_t v_ = (x); (x) = v_; } while (0)
#endif

#define ADD8(x, y) x += y; OPAQUE(x); x += y; OPAQUE(x); x += y; OPAQUE(x); x += y; OPAQUE(x); \
                   x += y; OPAQUE(x); x += y; OPAQUE(x); x += y; OPAQUE(x); x += y; OPAQUE(x);

double fqb_add_chain_ns(int64_t n) {
    /* y is a register operand unknown to the compiler (not an immediate: some cores fold
     * add-immediate chains at rename). 32 adds per iteration hide the loop counter. */
    int64_t x = 1, y = 3;
    OPAQUE(y);
    int64_t iters = n / 32 > 0 ? n / 32 : 1;
    double t0 = fqb_now_ns();
    for (int64_t i = 0; i < iters; i++) {
        ADD8(x, y) ADD8(x, y) ADD8(x, y) ADD8(x, y)
    }
    double t1 = fqb_now_ns();
    OPAQUE(x);   /* x is live: the chain cannot be dropped */
    return (t1 - t0) * (double)n / (double)(iters * 32);
}
