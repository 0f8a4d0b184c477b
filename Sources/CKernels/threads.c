// A small persistent thread pool. Workers spin briefly after each job (decode issues ~100 parallel regions per
// token, so waking through the kernel each time would cost several percent), then sleep on a condition variable so
// that oversubscribed MPI ranks do not burn each other's cores.
#include "ckernels.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sched.h>
#if defined(__x86_64__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

#define MAX_THREADS 64
#define SPIN_ROUNDS 20000

typedef struct {
    kern_task_fn fn;
    void *ctx;
    size_t n, grain;
    int parts;
} job_t;

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;   // one job at a time
static pthread_mutex_t wake_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake_cond = PTHREAD_COND_INITIALIZER;
static pthread_t workers[MAX_THREADS];
static int nthreads = 1;
static job_t job;
static atomic_ulong generation = 0;
static atomic_int remaining = 0;
static atomic_int stop_gen = 0;           // workers with index >= active count exit
static unsigned long start_generation = 0;   // generation when the workers were created
static _Thread_local int in_pool = 0;

static void chunk(size_t n, size_t grain, int parts, int i, size_t *b, size_t *e) {
    size_t units = (n + grain - 1) / grain;
    size_t per = units / (size_t)parts, extra = units % (size_t)parts;
    size_t ub = (size_t)i * per + ((size_t)i < extra ? (size_t)i : extra);
    size_t ue = ub + per + ((size_t)i < extra ? 1 : 0);
    *b = ub * grain < n ? ub * grain : n;
    *e = ue * grain < n ? ue * grain : n;
}

static void *worker_main(void *arg) {
    int index = (int)(intptr_t)arg;
    in_pool = 1;
    // Not atomic_load(&generation): a job published before this thread first runs must not be missed.
    unsigned long seen = start_generation;
    for (;;) {
        unsigned long g;
        int spins = 0;
        while ((g = atomic_load_explicit(&generation, memory_order_acquire)) == seen) {
            if (++spins < SPIN_ROUNDS) { CPU_RELAX(); continue; }
            pthread_mutex_lock(&wake_lock);
            while ((g = atomic_load(&generation)) == seen) pthread_cond_wait(&wake_cond, &wake_lock);
            pthread_mutex_unlock(&wake_lock);
            break;
        }
        seen = g;
        if (index >= atomic_load(&stop_gen)) return NULL;
        if (index < job.parts) {
            size_t b, e;
            chunk(job.n, job.grain, job.parts, index, &b, &e);
            if (b < e) job.fn(job.ctx, b, e);
        }
        atomic_fetch_sub_explicit(&remaining, 1, memory_order_acq_rel);
    }
}

static void publish(void) {
    pthread_mutex_lock(&wake_lock);
    atomic_fetch_add_explicit(&generation, 1, memory_order_release);
    pthread_cond_broadcast(&wake_cond);
    pthread_mutex_unlock(&wake_lock);
}

void kern_threads_init(int n) {
    if (n < 1) n = 1;
    if (n > MAX_THREADS) n = MAX_THREADS;
    pthread_mutex_lock(&pool_lock);
    if (nthreads > 1) {                       // stop the old workers
        atomic_store(&stop_gen, 0);
        atomic_store(&remaining, nthreads - 1);
        publish();
        for (int i = 1; i < nthreads; i++) pthread_join(workers[i], NULL);
    }
    nthreads = n;
    atomic_store(&stop_gen, n);
    start_generation = atomic_load(&generation);
    for (int i = 1; i < n; i++) pthread_create(&workers[i], NULL, worker_main, (void *)(intptr_t)i);
    pthread_mutex_unlock(&pool_lock);
}

int kern_threads_count(void) { return nthreads; }

void kern_parallel_for(size_t n, size_t grain, kern_task_fn fn, void *ctx) {
    if (n == 0) return;
    if (grain == 0) grain = 1;
    size_t units = (n + grain - 1) / grain;
    if (nthreads <= 1 || units < 2 || in_pool || pthread_mutex_trylock(&pool_lock) != 0) {
        fn(ctx, 0, n);
        return;
    }
    int parts = nthreads < (int)units ? nthreads : (int)units;
    job.fn = fn; job.ctx = ctx; job.n = n; job.grain = grain; job.parts = parts;
    atomic_store(&remaining, nthreads - 1);
    publish();
    in_pool = 1;
    size_t b, e;
    chunk(n, grain, parts, 0, &b, &e);
    if (b < e) fn(ctx, b, e);
    in_pool = 0;
    int spins = 0;
    while (atomic_load_explicit(&remaining, memory_order_acquire) > 0) {
        if (++spins < SPIN_ROUNDS) CPU_RELAX(); else sched_yield();
    }
    pthread_mutex_unlock(&pool_lock);
}
