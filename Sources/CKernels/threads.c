// A small persistent thread pool. Workers spin briefly after each job (decode issues ~100 parallel regions per
// token, so waking through the kernel each time would cost several percent), then sleep on a condition variable so
// that oversubscribed MPI ranks do not burn each other's cores.
#include "ckernels.h"
#include "monotonic.h"
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

// What one worker is to run, on a cache line of its own that only the calling thread writes, and what it reports
// back, on a line only the worker writes. A product's hand-over is then one line each way: the worker spinning on
// `job` gets the range with the job number, and the caller spinning on `done` gets the time with it. (A shared
// generation, a job struct and a shared counter were ~5 dependent line transfers a product; when the two vCPUs sit
// on different core complexes a transfer costs ~170 ns, see PERFORMANCE.md.) The caller publishes with plain
// release stores: a locked instruction would hold it until the worker's copy of the line was invalidated.
typedef struct {
    _Alignas(64) atomic_ulong job;           // job number; fn, ctx, begin, end below are its
    kern_task_fn fn;                         // NULL: exit
    void *ctx;
    size_t begin, end;
} mailbox_t;
typedef struct {
    _Alignas(64) atomic_ulong done;          // the last job number finished
    unsigned long long ticks;                // how long its part took (TSC ticks)
} report_t;

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;   // one job at a time
static pthread_mutex_t wake_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake_cond = PTHREAD_COND_INITIALIZER;
static pthread_t workers[MAX_THREADS];
static int nthreads = 1;
static mailbox_t mailbox[MAX_THREADS];
static report_t report[MAX_THREADS];
static unsigned long job_number = 0;      // written by the caller holding pool_lock
static unsigned long start_number = 0;    // job_number when the workers were created
static _Alignas(64) atomic_int sleepers = 0;   // workers in (or going into) pthread_cond_wait
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

// After a job: each thread's items per tick against the mean, folded into its speed (a tenth at a time). A vCPU
// that shares its core with a busy neighbour can run its half of every product at half speed for seconds at a
// time (traced: the worker's halves of int8 products took 1.5–1.8× the coordinator's), which fixed halves turn
// into the other thread idling; jobs under ~8 µs (20000 ticks of a 2.6 GHz TSC), or with an empty part, teach
// nothing.
#define SPEED_MIN_TICKS 20000
static void learn_speeds(int parts, const size_t *bounds, const unsigned long long *ticks) {
    double rate[MAX_THREADS], mean = 0;
    for (int i = 0; i < parts; i++) {
        size_t items = bounds[i + 1] - bounds[i];
        if (items == 0 || ticks[i] < SPEED_MIN_TICKS) return;
        rate[i] = (double)items / (double)ticks[i];
        mean += rate[i] / parts;
    }
    for (int i = 0; i < parts; i++) {
        double r = speed[i] * 0.9 + 0.1 * (rate[i] / mean);
        speed[i] = r < 0.25 ? 0.25 : (r > 4 ? 4 : r);
    }
}

// Spins, then sleeps until the caller posts a job after `seen`. A worker announces that it sleeps (sleepers) before
// it checks the job number under wake_lock; the caller broadcasts when it sees a sleeper, and when a join has spun
// long without an answer (the store of the job number and the load of `sleepers` may pass each other, so a worker
// that went to sleep just as the job came may be missed once; the join then wakes it).
static unsigned long wait_job(int index, unsigned long seen) {
    unsigned long g;
    for (int spins = 0; spins < SPIN_ROUNDS; spins++) {
        if ((g = atomic_load_explicit(&mailbox[index].job, memory_order_acquire)) != seen) return g;
        CPU_RELAX();
    }
    pthread_mutex_lock(&wake_lock);
    atomic_fetch_add(&sleepers, 1);
    while ((g = atomic_load(&mailbox[index].job)) == seen) pthread_cond_wait(&wake_cond, &wake_lock);
    atomic_fetch_sub(&sleepers, 1);
    pthread_mutex_unlock(&wake_lock);
    return g;
}

static void wake_all(void) {
    pthread_mutex_lock(&wake_lock);
    pthread_cond_broadcast(&wake_cond);
    pthread_mutex_unlock(&wake_lock);
}

static void *worker_main(void *arg) {
    int index = (int)(intptr_t)arg;
    in_pool = 1;
    // Not the mailbox's current number: a job posted before this thread first runs must not be missed.
    unsigned long seen = start_number;
    for (;;) {
        seen = wait_job(index, seen);
        mailbox_t *m = &mailbox[index];
        kern_task_fn fn = m->fn;
        if (!fn) return NULL;
        void *ctx = m->ctx;
        size_t b = m->begin, e = m->end;
        unsigned long long t0 = ticks_now();
        if (b < e) fn(ctx, b, e);
        report[index].ticks = ticks_now() - t0;
        atomic_store_explicit(&report[index].done, seen, memory_order_release);
    }
}

// Posts job `number` to workers 1..<parts, part i of bounds to worker i (fn NULL: exit).
static void post(int parts, const size_t *bounds, kern_task_fn fn, void *ctx, unsigned long number) {
    for (int i = 1; i < parts; i++) {
        mailbox_t *m = &mailbox[i];
        m->fn = fn; m->ctx = ctx;
        if (bounds) { m->begin = bounds[i]; m->end = bounds[i + 1]; }
        atomic_store_explicit(&m->job, number, memory_order_release);
    }
    if (atomic_load_explicit(&sleepers, memory_order_relaxed) > 0) wake_all();
}

// Waits for workers 1..<parts to report job `number`.
static void join(int parts, unsigned long number) {
    for (int i = 1; i < parts; i++) {
        int spins = 0;
        while (atomic_load_explicit(&report[i].done, memory_order_acquire) != number) {
            if (spins < SPIN_ROUNDS) { spins++; CPU_RELAX(); continue; }
            if (spins == SPIN_ROUNDS) { spins++; wake_all(); }
            sched_yield();
        }
    }
}

void kern_threads_init(int n) {
    if (n < 1) n = 1;
    if (n > MAX_THREADS) n = MAX_THREADS;
    pthread_mutex_lock(&pool_lock);
    if (nthreads > 1) {                       // stop the old workers
        post(nthreads, NULL, NULL, NULL, ++job_number);
        wake_all();
        for (int i = 1; i < nthreads; i++) pthread_join(workers[i], NULL);
    }
    nthreads = n;
    for (int i = 0; i < MAX_THREADS; i++) {
        speed[i] = 1;
        atomic_store(&mailbox[i].job, job_number);
        atomic_store(&report[i].done, job_number);
    }
    start_number = job_number;
    for (int i = 1; i < n; i++) pthread_create(&workers[i], NULL, worker_main, (void *)(intptr_t)i);
    pthread_mutex_unlock(&pool_lock);
}

int kern_threads_count(void) { return nthreads; }

// kern_parallel_for; `learn` 0 for a job whose parts' times say nothing of the threads' speeds.
static void run_job(size_t n, size_t grain, kern_task_fn fn, void *ctx, int learn) {
    if (n == 0) return;
    if (grain == 0) grain = 1;
    size_t units = (n + grain - 1) / grain;
    if (nthreads <= 1 || units < 2 || in_pool || pthread_mutex_trylock(&pool_lock) != 0) {
        fn(ctx, 0, n);
        return;
    }
    int parts = nthreads < (int)units ? nthreads : (int)units;
    size_t bounds[MAX_THREADS + 1];
    unsigned long long ticks[MAX_THREADS];
    kern_split(n, grain, parts, speed, bounds);
    unsigned long number = ++job_number;
    post(parts, bounds, fn, ctx, number);
    in_pool = 1;
    unsigned long long t0 = ticks_now();
    if (bounds[0] < bounds[1]) fn(ctx, bounds[0], bounds[1]);
    ticks[0] = ticks_now() - t0;
    in_pool = 0;
    join(parts, number);
    for (int i = 1; i < parts; i++) ticks[i] = report[i].ticks;
    if (learn) learn_speeds(parts, bounds, ticks);
    pthread_mutex_unlock(&pool_lock);
}

void kern_parallel_for(size_t n, size_t grain, kern_task_fn fn, void *ctx) { run_job(n, grain, fn, ctx, 1); }

// A cache line bounced between the calling thread and a pool worker inside one job: the cost of every line that
// passes between two threads (a product's hand-over, its inputs and outputs). On this VM it reads ~60 ns while the
// two vCPUs share a core complex and ~330 ns while they sit on different ones (PERFORMANCE.md), which is what
// separates its slow and fast bandwidth minutes. Each side gives up 50 ms (plus 2 µs a round) after it starts (a
// worker not running at the same time, e.g. on an oversubscribed core), and then the result is negative.
typedef struct {
    _Alignas(64) atomic_long ball;
    _Alignas(64) atomic_int quit;
    atomic_int answering;                    // a worker has taken the answering side (with 3+ threads, only one may)
    long rounds;
    double ns;
} pingpong_t;

// Waits until the ball reads `want`; 0 when the other side gave up or the deadline passed.
static int catch_ball(pingpong_t *p, long want, double deadline) {
    for (unsigned spins = 1; atomic_load_explicit(&p->ball, memory_order_acquire) != want; spins++) {
        CPU_RELAX();
        if (spins % 1024 == 0 && (atomic_load(&p->quit) || kern_monotonic_seconds() > deadline)) {
            atomic_store(&p->quit, 1);
            return 0;
        }
    }
    return 1;
}

// The job's items: the caller's part starts at 0 and serves; the worker's (a learnt share of them, never empty:
// speeds stay within 16× of each other) answers.
#define PINGPONG_ITEMS 1000
static void pingpong_task(void *ctx, size_t b, size_t e) {
    pingpong_t *p = (pingpong_t *)ctx;
    if (b == 0 && e == PINGPONG_ITEMS) { p->ns = -1; return; }   // one thread got both sides (a busy pool)
    const double deadline = kern_monotonic_seconds() + 0.05 + 2e-6 * (double)p->rounds;
    if (b == 0) {
        const double t0 = kern_monotonic_seconds();
        for (long i = 0; i < p->rounds; i++) {
            atomic_store_explicit(&p->ball, 2 * i + 1, memory_order_release);
            if (!catch_ball(p, 2 * i + 2, deadline)) { p->ns = -1; return; }
        }
        p->ns = (kern_monotonic_seconds() - t0) / (double)p->rounds * 1e9;
    } else {
        if (atomic_exchange(&p->answering, 1)) return;
        for (long i = 0; i < p->rounds; i++) {
            if (!catch_ball(p, 2 * i + 1, deadline)) return;
            atomic_store_explicit(&p->ball, 2 * i + 2, memory_order_release);
        }
    }
}

double kern_thread_round_trip_ns(int rounds) {
    if (nthreads < 2 || rounds < 1) return -1;
    pingpong_t p;
    atomic_init(&p.ball, 0);
    atomic_init(&p.quit, 0);
    atomic_init(&p.answering, 0);
    p.rounds = rounds;
    p.ns = -1;
    run_job(PINGPONG_ITEMS, 1, pingpong_task, &p, 0);
    return p.ns;
}
