/* A small pthread pool for parallel-for over independent tasks (tiles of the output).
 * Why not OpenMP: torch's wheel ships its own libgomp and only one loads per process, and
 * GNU libgomp's pool does not survive fork(). This pool is recreated lazily in a forked
 * child (pthread_atfork), and a second concurrent caller simply runs its loop inline.
 * Waking a sleeping thread costs tens of microseconds, so both sides spin for a short,
 * bounded time (FQ_SPIN_NS) before they sleep on the condition variables: back-to-back
 * calls (the layers of a model) find their workers awake. */
#include <pthread.h>
#include <sched.h>
#include <time.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>
#include "fastq.h"

#define FQ_MAX_THREADS 256
#define FQ_SPIN_NS 100000          /* 0.1 ms */

static struct {
    pthread_mutex_t busy;          /* held by the caller that owns the pool for one loop */
    pthread_mutex_t lock;
    pthread_cond_t wake, done;
    pthread_t threads[FQ_MAX_THREADS];
    uint64_t start_generation[FQ_MAX_THREADS];   /* generation before the worker's first loop */
    atomic_ullong assigned[FQ_MAX_THREADS];      /* the generation of the last loop worker i is in */
    int n_workers;                 /* started worker threads */
    atomic_ullong generation;      /* bumped (under lock) to start a loop */
    atomic_int running;            /* workers still inside the current loop */
    fq_task_fn fn;
    void *ctx;
    int64_t n_tasks;
    atomic_llong next_task;
} pool = {.busy = PTHREAD_MUTEX_INITIALIZER, .lock = PTHREAD_MUTEX_INITIALIZER,
          .wake = PTHREAD_COND_INITIALIZER, .done = PTHREAD_COND_INITIALIZER};

static atomic_int num_threads_setting = 0;   /* 0: not set, use the CPU count */

static void run_tasks(fq_task_fn fn, void *ctx, int64_t n_tasks) {
    for (;;) {
        int64_t t = atomic_fetch_add(&pool.next_task, 1);
        if (t >= n_tasks) break;
        fn(ctx, t);
    }
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* spin until *value != unwanted (returns 1) or the spin time is over (returns 0) */
static int spin_while_ull(atomic_ullong *value, unsigned long long unwanted) {
    int64_t end = now_ns() + FQ_SPIN_NS;
    for (;;) {
        for (int i = 0; i < 64; i++) {
            if (atomic_load_explicit(value, memory_order_acquire) != unwanted) return 1;
            cpu_relax();
        }
        if (now_ns() > end) return 0;
        sched_yield();   /* oversubscribed cores: let the thread we wait for run */
    }
}

static int spin_while_positive(atomic_int *value) {
    int64_t end = now_ns() + FQ_SPIN_NS;
    for (;;) {
        for (int i = 0; i < 64; i++) {
            if (atomic_load_explicit(value, memory_order_acquire) <= 0) return 1;
            cpu_relax();
        }
        if (now_ns() > end) return 0;
        sched_yield();   /* oversubscribed cores: let the thread we wait for run */
    }
}

static void *worker_main(void *arg) {
    int index = (int)(intptr_t)arg;
    pthread_mutex_lock(&pool.lock);
    /* not pool.generation: the creator bumps it for the first loop before this thread runs */
    unsigned long long seen = pool.start_generation[index];
    pthread_mutex_unlock(&pool.lock);
    for (;;) {
        if (!spin_while_ull(&pool.generation, seen)) {
            pthread_mutex_lock(&pool.lock);
            while (atomic_load(&pool.generation) == seen) pthread_cond_wait(&pool.wake, &pool.lock);
            pthread_mutex_unlock(&pool.lock);
        }
        seen = atomic_load_explicit(&pool.generation, memory_order_acquire);
        /* Join loop `seen` only when the caller assigned this worker to it. Deciding by
         * pool.n_active instead let a worker that sat out loop g read the n_active of loop
         * g + 1 (the next caller writes it before bumping the generation), take part "in g",
         * count down g + 1's running, then join g + 1 again: running reached 0 while another
         * worker still ran tasks on the returned caller's stack context.
         * Why a worker now joins each loop at most once, and every loop it is counted in:
         *  - it joins loop g only if assigned[index] == g == seen, and seen strictly grows
         *    between two joins (it is re-read only after generation != seen);
         *  - the caller of g sets assigned[i] = g for exactly the `running` workers it
         *    counts, before bumping the generation to g (release; read here with acquire),
         *    and returns only when all of them counted down, so loop g + 1 (which alone could
         *    overwrite assigned, fn, ctx, n_tasks) starts after every worker of g finished;
         *  - a worker counted in g cannot miss it: generation cannot pass g before g ends, so
         *    the first generation != seen it reads is g. */
        if (atomic_load_explicit(&pool.assigned[index], memory_order_acquire) != seen) continue;
        run_tasks(pool.fn, pool.ctx, pool.n_tasks);
        if (atomic_fetch_sub(&pool.running, 1) == 1) {
            pthread_mutex_lock(&pool.lock);
            pthread_cond_signal(&pool.done);
            pthread_mutex_unlock(&pool.lock);
        }
    }
    return NULL;
}

static void reset_after_fork(void) {
    /* The child has only the forking thread: forget the workers, re-init the primitives. */
    pthread_mutex_init(&pool.busy, NULL);
    pthread_mutex_init(&pool.lock, NULL);
    pthread_cond_init(&pool.wake, NULL);
    pthread_cond_init(&pool.done, NULL);
    pool.n_workers = 0;
    atomic_store(&pool.running, 0);
}

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static void install_atfork(void) { pthread_atfork(NULL, NULL, reset_after_fork); }

static atomic_int default_num_threads = 0;   /* FASTQ_NUM_THREADS or the CPU count, read once */

int fq_get_num_threads(void) {
    int n = atomic_load(&num_threads_setting);
    if (n > 0) return n;
    n = atomic_load(&default_num_threads);
    if (n > 0) return n;
    /* sysconf reads /sys on every call (microseconds): look it up once */
    const char *env = getenv("FASTQ_NUM_THREADS");
    if (env && atoi(env) > 0) {
        n = atoi(env) > FQ_MAX_THREADS ? FQ_MAX_THREADS : atoi(env);
    } else {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        n = cpus < 1 ? 1 : (cpus > FQ_MAX_THREADS ? FQ_MAX_THREADS : (int)cpus);
    }
    atomic_store(&default_num_threads, n);
    return n;
}

void fq_set_num_threads(int n) {
    atomic_store(&num_threads_setting, n <= 0 ? 0 : (n > FQ_MAX_THREADS ? FQ_MAX_THREADS : n));
}

void fq_parallel_for(int64_t n_tasks, fq_task_fn fn, void *ctx, int num_threads) {
    if (num_threads <= 0) num_threads = fq_get_num_threads();
    if (num_threads > n_tasks) num_threads = (int)n_tasks;
    if (num_threads <= 1 || pthread_mutex_trylock(&pool.busy) != 0) {
        for (int64_t t = 0; t < n_tasks; t++) fn(ctx, t);
        return;
    }
    pthread_once(&atfork_once, install_atfork);
    int helpers = num_threads - 1;
    pthread_mutex_lock(&pool.lock);
    while (pool.n_workers < helpers) {
        pool.start_generation[pool.n_workers] = pool.generation;
        if (pthread_create(&pool.threads[pool.n_workers], NULL, worker_main,
                           (void *)(intptr_t)pool.n_workers) != 0) break;
        pthread_detach(pool.threads[pool.n_workers]);
        pool.n_workers++;
    }
    if (helpers > pool.n_workers) helpers = pool.n_workers;
    pool.fn = fn;
    pool.ctx = ctx;
    pool.n_tasks = n_tasks;
    atomic_store(&pool.next_task, 0);
    unsigned long long next = atomic_load(&pool.generation) + 1;
    for (int i = 0; i < helpers; i++) atomic_store_explicit(&pool.assigned[i], next, memory_order_relaxed);
    atomic_store(&pool.running, helpers);
    atomic_store_explicit(&pool.generation, next, memory_order_release);
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);

    run_tasks(fn, ctx, n_tasks);

    if (!spin_while_positive(&pool.running)) {
        pthread_mutex_lock(&pool.lock);
        while (atomic_load(&pool.running) > 0) pthread_cond_wait(&pool.done, &pool.lock);
        pthread_mutex_unlock(&pool.lock);
    }
    pthread_mutex_unlock(&pool.busy);
}
