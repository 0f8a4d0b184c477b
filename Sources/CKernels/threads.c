// A small persistent thread pool. Workers spin briefly after each job (decode issues ~100 parallel regions per
// token, so waking through the kernel each time would cost several percent), then sleep on a condition variable so
// that oversubscribed MPI ranks do not burn each other's cores.
#include "ckernels.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sched.h>
#include <time.h>
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
    int parts;
    size_t bounds[MAX_THREADS + 1];      // thread i runs [bounds[i], bounds[i + 1])
    unsigned long long ticks[MAX_THREADS];   // how long each took (TSC ticks)
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

// Each thread's relative speed, learnt from the jobs it ran (see learn_speeds); a job's items are split in
// proportion to it.
static double speed[MAX_THREADS];

void kern_split(size_t n, size_t grain, int parts, const double *speeds, size_t *bounds) {
    size_t units = (n + grain - 1) / grain;
    double total = 0;
    for (int i = 0; i < parts; i++) total += speeds[i];
    double acc = 0;
    bounds[0] = 0;
    for (int i = 1; i < parts; i++) {
        acc += speeds[i - 1];
        size_t u = (size_t)(units * (acc / total) + 0.5);   // non-decreasing in i: speeds are positive
        if (u > units) u = units;
        bounds[i] = u * grain < n ? u * grain : n;
    }
    bounds[parts] = n;
}

static inline unsigned long long ticks_now(void) {
#if defined(__x86_64__)
    return __rdtsc();
#else
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (unsigned long long)t.tv_sec * 1000000000ull + (unsigned long long)t.tv_nsec;
#endif
}

static void run_part(int i) {
    size_t b = job.bounds[i], e = job.bounds[i + 1];
    unsigned long long t0 = ticks_now();
    if (b < e) job.fn(job.ctx, b, e);
    job.ticks[i] = ticks_now() - t0;
}

// After a job: each thread's items per tick against the mean, folded into its speed (a tenth at a time). A vCPU
// that shares its core with a busy neighbour can run its half of every product at half speed for seconds at a
// time (traced: the worker's halves of int8 products took 1.5–1.8× the coordinator's), which fixed halves turn
// into the other thread idling; jobs under ~8 µs (20000 ticks of a 2.6 GHz TSC), or with an empty part, teach
// nothing.
#define SPEED_MIN_TICKS 20000
static void learn_speeds(void) {
    double rate[MAX_THREADS], mean = 0;
    for (int i = 0; i < job.parts; i++) {
        size_t items = job.bounds[i + 1] - job.bounds[i];
        if (items == 0 || job.ticks[i] < SPEED_MIN_TICKS) return;
        rate[i] = (double)items / (double)job.ticks[i];
        mean += rate[i] / job.parts;
    }
    for (int i = 0; i < job.parts; i++) {
        double r = speed[i] * 0.9 + 0.1 * (rate[i] / mean);
        speed[i] = r < 0.25 ? 0.25 : (r > 4 ? 4 : r);
    }
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
        if (index < job.parts) run_part(index);
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
    for (int i = 0; i < MAX_THREADS; i++) speed[i] = 1;
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
    job.fn = fn; job.ctx = ctx; job.parts = parts;
    kern_split(n, grain, parts, speed, job.bounds);
    atomic_store(&remaining, nthreads - 1);
    publish();
    in_pool = 1;
    run_part(0);
    in_pool = 0;
    int spins = 0;
    while (atomic_load_explicit(&remaining, memory_order_acquire) > 0) {
        if (++spins < SPIN_ROUNDS) CPU_RELAX(); else sched_yield();
    }
    learn_speeds();
    pthread_mutex_unlock(&pool_lock);
}
