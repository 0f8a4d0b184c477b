// One product, or many in one parallel region, over the thread pool: each product's inputs rounded or packed as its
// weights' format needs (groupdots.c, floatdots.c), its rows split over the threads, column panels taken in turn, an
// MLP's SwiGLU applied where its rows were computed, and the products' profile by shape.
#include "products.h"
#include "monotonic.h"
#include <stdlib.h>
#include <pthread.h>
#include <stdatomic.h>

size_t kern_format_row_bytes(int format, size_t cols) {
    switch (format) {
    case KERN_Q8: return cols + cols / 32 * 2;
    case KERN_Q4: case KERN_MX4: return cols / 2 + cols / 32 * 2;
    case KERN_Q4Z: return q4z_zero_bytes(cols / 32) + cols / 2 + cols / 32 * 2;
    case KERN_F16: case KERN_BF16: return cols * 2;
    default: return cols * 4;
    }
}

// ---- Profile of products by shape (moe-bench model --products) -----------------------------------------------------
// Off unless asked: one relaxed load per product. On, each product is timed whole (activation rounding and the
// pool's fork and join included), as the model pays it.

static atomic_int profiling = 0;
static pthread_mutex_t profile_lock = PTHREAD_MUTEX_INITIALIZER;
static kern_product_stat profile[KERN_PROFILE_SHAPES];
static int profile_count = 0;

void kern_products_profile(int on) {
    pthread_mutex_lock(&profile_lock);
    if (on) profile_count = 0;
    atomic_store(&profiling, on);
    pthread_mutex_unlock(&profile_lock);
}

int kern_products_profile_read(kern_product_stat *out, int max) {
    pthread_mutex_lock(&profile_lock);
    int n = profile_count < max ? profile_count : max;
    memcpy(out, profile, (size_t)n * sizeof(kern_product_stat));
    pthread_mutex_unlock(&profile_lock);
    return n;
}

static void profile_record(int format, size_t rows, size_t cols, size_t T, double seconds) {
    pthread_mutex_lock(&profile_lock);
    int i = 0;
    while (i < profile_count && !(profile[i].format == format && profile[i].rows == rows && profile[i].cols == cols && profile[i].T == T)) i++;
    if (i == profile_count && profile_count < KERN_PROFILE_SHAPES) {
        profile[i] = (kern_product_stat){format, rows, cols, T, 0, 0, 0};
        profile_count++;
    }
    if (i < profile_count) {
        profile[i].calls++;
        profile[i].seconds += seconds;
        profile[i].weight_bytes += (double)rows * (double)kern_format_row_bytes(format, cols);
    }
    pthread_mutex_unlock(&profile_lock);
}

// ---- one product -------------------------------------------------------------------------------------------------

// A product made ready to run over its rows: the activations rounded or packed as its format needs (the scratch it
// owns), and the task that computes any range of its rows (in `c`; for a matrix in panels, `inner` computes one
// panel's share of them from a copy of `c` moved to that panel).
typedef union { qq_ctx q; h_ctx h; bd_ctx b; } product_ctx;

typedef struct {
    kern_product args;                       // kern_gemm_w_mt's arguments
    kern_task_fn fn, inner;
    product_ctx c;
    enum { PRODUCT_QQ, PRODUCT_H, PRODUCT_BD } kind;
    size_t panels;                           // how many (1: rows contiguous)
    void *owned[3];
} prepared;

// Weights of a product: below FEW of them it runs on the calling thread alone.
static size_t work_of(const kern_product *d) { return d->rows * d->cols; }

// Scratch for a product's rounded activations, slot by slot. Up to SCRATCH_KEEP bytes a slot are kept by the calling
// thread from one product to the next (decode runs ~60 products a token, and an aligned_alloc and free each cost
// 0.3–0.8 µs of a product's fixed work); larger ones (prefill) are allocated per product and freed by finish.
#define SCRATCH_KEEP ((size_t)1 << 20)
typedef struct { void *p[3]; size_t cap[3]; } kept_scratch;
static pthread_key_t kept_key;
static pthread_once_t kept_once = PTHREAD_ONCE_INIT;
static void kept_free(void *k) {
    kept_scratch *s = (kept_scratch *)k;
    for (int i = 0; i < 3; i++) free(s->p[i]);
    free(s);
}
static void kept_init(void) { pthread_key_create(&kept_key, kept_free); }

static void *scratch_alloc(prepared *p, int slot, size_t bytes) {
    bytes = (bytes + 63) & ~(size_t)63;
    pthread_once(&kept_once, kept_init);
    kept_scratch *k = (kept_scratch *)pthread_getspecific(kept_key);
    if (!k && bytes <= SCRATCH_KEEP && (k = (kept_scratch *)calloc(1, sizeof *k))) pthread_setspecific(kept_key, k);
    if (!k || bytes > SCRATCH_KEEP) return p->owned[slot] = aligned_alloc(64, bytes);   // owned: freed by finish
    if (k->cap[slot] < bytes) {
        free(k->p[slot]);
        k->p[slot] = aligned_alloc(64, bytes);
        k->cap[slot] = k->p[slot] ? bytes : 0;
    }
    return k->p[slot];
}

// Below this many values a product's inputs are rounded where they are needed (on the calling thread, or by each
// thread for itself, see gemm_one), and below this many weights a product runs on the calling thread alone.
#define FEW 65536

// Rounds or packs T inputs of `cols` values: on the calling thread when small, else over the pool.
static void per_input(size_t T, size_t cols, kern_task_fn fn, void *ctx) {
    if (T * cols < FEW) fn(ctx, 0, T);
    else kern_parallel_for(T, 1, fn, ctx);
}

// Bytes of n stored values (scales apart).
static size_t value_bytes(int format, size_t n) {
    switch (format) {
    case KERN_Q8: return n;
    case KERN_Q4: case KERN_MX4: return n / 2;
    case KERN_Q4Z: return q4z_zero_bytes(n / 32) + n / 2;       // zero points, then codes
    case KERN_F16: case KERN_BF16: return 2 * n;
    default: return 4 * n;
    }
}

// Panel k of a product in panels: its weights (row0's row of it), width and first column, and the same product's
// context moved there, adding to Y after the first panel. Each (row, input) pair then sums its panels in one order
// whatever T and the thread split, so batch invariance holds.
static void panels_of_rows(const prepared *p, size_t r0, size_t r1) {
    const kern_panels L = p->args.panels;
    const int format = p->args.format;
    for (size_t k = 0; k < p->panels; k++) {
        const size_t c0 = k * L.width, w = p->args.cols - c0 < L.width ? p->args.cols - c0 : L.width;
        const size_t wbytes = k * L.rows * value_bytes(format, L.width) + L.row0 * value_bytes(format, w);
        product_ctx c = p->c;
        switch (p->kind) {
        case PRODUCT_QQ:
            c.q.W += wbytes;
            c.q.ws += k * L.rows * (L.width / 32) + L.row0 * (w / 32);
            c.q.rowData = value_bytes(format, w);
            c.q.groups = w / 32;
            c.q.Xq = (const uint8_t *)c.q.Xq + (format == KERN_Q8 ? 2 : 1) * c0;
            c.q.Xs += c0 / 32;
            c.q.Xc += c0 / 32 * 8;
            c.q.acc = k > 0;
            break;
        // f16/bf16 rows (h_ctx, bd_ctx): the panel's rows, w values each, and its columns of the input.
#define TO_PANEL(ctx, X) ((ctx).W = (const char *)(ctx).W + wbytes, (ctx).ld = (ctx).cols = w, (ctx).X += c0, (ctx).acc = k > 0)
        case PRODUCT_H: TO_PANEL(c.h, X); break;
        case PRODUCT_BD: TO_PANEL(c.b, X2); break;
#undef TO_PANEL
        }
        p->inner(&c, r0, r1);
    }
}

// With more input rows than one block takes, the panels go a chunk of PANEL_CHUNK rows at a time, so that the
// outputs each panel adds to (T × chunk floats) stay in L2: over a whole range they were T × range floats read and
// written again per panel (int8 prefill of rows of 14336 values, Mixtral-like model: 145–146 tok/s, 149–150 in
// chunks of 64 rows, 145–147 of 16, 153 of 256, against 157–160 in rows). With
// one block of inputs (decode, verification) each panel goes over the whole range, which is what keeps its input
// columns in L1 over many weight rows.
#define PANEL_CHUNK 64
static void panel_task(void *ctx, size_t r0, size_t r1) {
    const prepared *p = (const prepared *)ctx;
    if (p->args.T <= 4) { panels_of_rows(p, r0, r1); return; }
    for (size_t r = r0; r < r1; r += PANEL_CHUNK) panels_of_rows(p, r, r + PANEL_CHUNK < r1 ? r + PANEL_CHUNK : r1);
}

// The product's own fields, its task and the kind of activations it takes; they are rounded by round_inputs.
static void prepare(prepared *p, const kern_product *d) {
    const size_t T = d->T, cols = d->cols;
    p->args = *d;
    p->panels = d->panels.width && d->panels.width < cols ? (cols + d->panels.width - 1) / d->panels.width : 1;
    p->owned[0] = p->owned[1] = p->owned[2] = NULL;
    if (d->format == KERN_Q8 || d->format == KERN_Q4 || d->format == KERN_MX4 || d->format == KERN_Q4Z) {
        p->kind = PRODUCT_QQ;
        p->inner = kern_qq_task;
    } else if (d->format == KERN_BF16 && kern_bf16_dot_on()) {
        p->kind = PRODUCT_BD;
        p->inner = kern_bd_task;
    } else {
        p->c.h = (h_ctx){d->format, d->w, d->ld, cols, d->X, d->ldx, T, d->Y, d->ldy, 0};
        p->kind = PRODUCT_H;
        p->inner = kern_h_task;
    }
    p->fn = p->panels > 1 ? panel_task : p->inner;
}

// Rounds or packs the inputs as the product's kind needs, into scratch of the calling thread (or owned by p), and
// points p's context at them. f32/f16 products and bf16 ones with f32 activations read X as it is.
static void round_inputs(prepared *p) {
    const kern_product *d = &p->args;
    const size_t T = d->T, cols = d->cols;
    if (p->kind == PRODUCT_QQ) {
        size_t groups = cols / 32, xbytes = d->format == KERN_Q8 ? 2 : 1;
        void *Xq = scratch_alloc(p, 0, T * cols * xbytes);
        float *Xs = scratch_alloc(p, 1, T * groups * sizeof(float));
        int32_t *Xc = scratch_alloc(p, 2, T * groups * 8 * sizeof(int32_t));
        int path = kern_qq_path(d->format);
        act_ctx a = {d->format, path, d->X, d->ldx, cols, groups, p->panels > 1 ? d->panels.width : 0, Xq, Xs, Xc};
        per_input(T, cols, kern_act_task, &a);
        p->c.q = (qq_ctx){d->format, path, (const uint8_t *)d->w, d->scales, value_bytes(d->format, cols), groups,
                          Xq, Xs, Xc, cols, groups, T, d->Y, d->ldy, 0};
    } else if (p->kind == PRODUCT_BD) {
        size_t ldx2 = ((cols + 31) & ~(size_t)31) + 32;
        uint16_t *X2 = scratch_alloc(p, 0, T * ldx2 * 2);
        round_ctx r = {d->X, d->ldx, cols, X2, ldx2};
        per_input(T, cols, kern_round_bf16_task, &r);
        p->c.b = (bd_ctx){d->w, d->ld, cols, X2, ldx2, T, d->Y, d->ldy, 0};
    }
}

static void finish(prepared *p) { for (int i = 0; i < 3; i++) free(p->owned[i]); }

static void run_rows(const prepared *p, size_t r0, size_t r1) {
    if (p->panels > 1) panel_task((void *)p, r0, r1); else p->inner((void *)&p->c, r0, r1);
}

#define MANY_MAX 64      // products kern_gemm_w_many runs in one region

// Prepared products run as one range of rows: product i holds [start[i], start[i] + rows). For products with an
// activation (kern_product.act), the ranges of j each thread applied it to: covered[i][k] for k < ncovered[i].
#define ACT_PARTS 8
typedef struct { size_t lo, hi; } act_range;
typedef struct {
    prepared *p; size_t *start; int n;
    act_range (*covered)[ACT_PARTS];
    atomic_int *ncovered;
} many_ctx;

// SwiGLU of a stacked gate|up product's T rows for j in [lo, hi) (see kern_product.act).
static void activate_range(const kern_product *d, size_t lo, size_t hi) {
    const size_t I = d->rows / 2;
    for (size_t t = 0; t < d->T; t++) kern_swiglu_f32(d->Y + t * d->ldy + lo, d->Y + t * d->ldy + I + lo, d->act + t * I + lo, hi - lo);
}

// After a product's rows [r0, r1) are done on this thread: the activation of the j whose gate and up rows both lie
// there ([r0, r1 − I) within [0, I)), noted in the region's list for the calling thread to complete.
static void activate_own(const many_ctx *m, int i, size_t r0, size_t r1) {
    const kern_product *d = &m->p[i].args;
    const size_t I = d->rows / 2, hi = r1 > I ? r1 - I : 0;     // r1 ≤ 2I, so hi ≤ I
    if (!d->act || r0 >= hi) return;
    const int k = atomic_fetch_add_explicit(&m->ncovered[i], 1, memory_order_relaxed);
    if (k >= ACT_PARTS) return;                  // not noted: the calling thread will do it again, the same way
    activate_range(d, r0, hi);
    m->covered[i][k] = (act_range){r0, hi};
}

// The activation of every j of product i that no thread applied (in order of lo; ranges never overlap).
static void activate_rest(const many_ctx *m, int i) {
    const kern_product *d = &m->p[i].args;
    if (!d->act) return;
    const size_t I = d->rows / 2;
    int n = atomic_load_explicit(&m->ncovered[i], memory_order_relaxed);
    if (n > ACT_PARTS) n = 0;                    // some part not noted: all again (identical values)
    act_range r[ACT_PARTS];
    for (int k = 0; k < n; k++) r[k] = m->covered[i][k];
    for (int a = 1; a < n; a++)
        for (int b = a; b > 0 && r[b].lo < r[b - 1].lo; b--) { act_range x = r[b]; r[b] = r[b - 1]; r[b - 1] = x; }
    size_t at = 0;
    for (int k = 0; k < n; k++) {
        if (r[k].lo > at) activate_range(d, at, r[k].lo);
        at = r[k].hi;
    }
    if (at < I) activate_range(d, at, I);
}

// Whether two prepared products round the same inputs the same way (a layer's experts' gate|up all take the
// layer's hidden state): then the second can use what the first rounded.
static int same_inputs(const prepared *a, const prepared *b) {
    const kern_product *x = &a->args, *y = &b->args;
    return a->kind == b->kind && a->kind != PRODUCT_H && x->format == y->format && x->X == y->X && x->ldx == y->ldx &&
           x->T == y->T && x->cols == y->cols && a->panels == b->panels && (a->panels == 1 || x->panels.width == y->panels.width);
}

// p's own context, pointed at the inputs `rounded` holds (rounded by round_inputs for a product of the same inputs).
static void use_rounded(prepared *p, const prepared *rounded) {
    const kern_product *d = &p->args;
    p->c = rounded->c;
    if (p->kind == PRODUCT_QQ) {
        p->c.q.W = (const uint8_t *)d->w;
        p->c.q.ws = d->scales;
        p->c.q.Y = d->Y;
        p->c.q.ldy = d->ldy;
    } else {
        p->c.b.W = d->w;
        p->c.b.ld = d->ld;
        p->c.b.Y = d->Y;
        p->c.b.ldy = d->ldy;
    }
}

// A thread's part of the joined range: the rows of each product it overlaps, each product's inputs rounded by this
// thread for itself, once for products that share them (with top-8 of 2 threads, each rounded the hidden state for
// each of the ~4 experts' gate|up it touched).
static void many_task(void *ctx, size_t b, size_t e) {
    const many_ctx *m = (const many_ctx *)ctx;
    prepared rounded;
    int have = 0;
    for (int i = 0; i < m->n; i++) {
        const size_t s0 = m->start[i], s1 = s0 + m->p[i].args.rows;
        if (s1 <= b || s0 >= e) continue;
        const size_t r0 = (b > s0 ? b : s0) - s0, r1 = (e < s1 ? e : s1) - s0;
        if (have && same_inputs(&rounded, &m->p[i])) {
            prepared mine = m->p[i];
            use_rounded(&mine, &rounded);
            run_rows(&mine, r0, r1);
        } else {
            if (have) finish(&rounded);
            rounded = m->p[i];
            round_inputs(&rounded);
            have = rounded.kind != PRODUCT_H;
            run_rows(&rounded, r0, r1);
            if (!have) finish(&rounded);
        }
        activate_own(m, i, r0, r1);
    }
    if (have) finish(&rounded);
}

// Products whose inputs are few (decode, verification: under FEW values each) run in one parallel region with
// each thread rounding the inputs of the products it touches for itself, after the fork: the rounding (0.6–0.7 µs
// a product at 1024 values, 1.7 at 3584, more in this VM's fast-bandwidth minutes) is then not time in which the
// other thread waits, and several products (a layer's experts) pay one fork and join. Both threads round the same
// values the same way.
static int few_inputs(const kern_product *d) { return d->T * d->cols < FEW; }

static void run_together(prepared *p, int n) {
    size_t start[MANY_MAX], total = 0, work = 0;
    act_range covered[MANY_MAX][ACT_PARTS];
    atomic_int ncovered[MANY_MAX];
    for (int i = 0; i < n; i++) {
        start[i] = total;
        total += p[i].args.rows;
        work += work_of(&p[i].args);
        atomic_init(&ncovered[i], 0);
    }
    many_ctx m = {p, start, n, covered, ncovered};
    if (work < FEW) many_task(&m, 0, total);
    else kern_parallel_for(total, 16, many_task, &m);
    for (int i = 0; i < n; i++) activate_rest(&m, i);
}

static void gemm_one(const kern_product *d) {
    prepared p;
    prepare(&p, d);
    if (p.kind != PRODUCT_H && few_inputs(d)) { run_together(&p, 1); return; }
    round_inputs(&p);
    if (work_of(d) < FEW) run_rows(&p, 0, d->rows);
    else kern_parallel_for(d->rows, 16, p.fn, p.panels > 1 ? (void *)&p : (void *)&p.c);
    finish(&p);
    if (d->act) activate_range(d, 0, d->rows / 2);
}

// One product, timed into the profile while profiling.
static void product(const kern_product *d) {
    if (!atomic_load_explicit(&profiling, memory_order_relaxed)) { gemm_one(d); return; }
    const double t0 = kern_monotonic_seconds();
    gemm_one(d);
    profile_record(d->format, d->rows, d->cols, d->T, kern_monotonic_seconds() - t0);
}

void kern_gemm_w_many(const kern_product *ps, int n) {
    int joined = n > 1 && n <= MANY_MAX;
    for (int i = 0; i < n && joined; i++) joined = few_inputs(&ps[i]);
    if (!joined) {
        for (int i = 0; i < n; i++) product(&ps[i]);
        return;
    }
    prepared p[MANY_MAX];
    for (int i = 0; i < n; i++) prepare(&p[i], &ps[i]);
    const int profiled = atomic_load_explicit(&profiling, memory_order_relaxed);
    const double t0 = profiled ? kern_monotonic_seconds() : 0;
    run_together(p, n);
    if (!profiled) return;
    // The region's time, shared among its products in proportion to their weight bytes.
    double seconds = kern_monotonic_seconds() - t0, bytes[MANY_MAX], total = 0;
    for (int i = 0; i < n; i++) total += bytes[i] = (double)ps[i].rows * (double)kern_format_row_bytes(ps[i].format, ps[i].cols);
    for (int i = 0; i < n; i++) profile_record(ps[i].format, ps[i].rows, ps[i].cols, ps[i].T, seconds * bytes[i] / total);
}

void kern_gemm_w_mt(int format, const void *w, size_t ld, const uint16_t *scales, kern_panels panels, const float *X,
                    size_t ldx, size_t T, size_t cols, float *Y, size_t ldy, size_t rows) {
    const kern_product d = {format, w, ld, scales, panels, X, ldx, T, cols, Y, ldy, rows, NULL};
    product(&d);
}
