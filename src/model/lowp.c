/* lowp.c: low-precision inference weights. Conversions (f16 and bf16 rounding to nearest
 * even, ggml-compatible q8_0 blocks), packing at load, the naive kernels that are the
 * oracle of the AVX2 ones in lowp_avx2.c and the AVX-512 ones in lowp_avx512.c (a lane
 * count says whose order they follow), the run-time dispatch between them, and
 * th_gpt2_set_precision, which packs a model's matmul weights and gives back the pages of
 * their f32 copies so a quantized model does not carry both. */
#include "model/lowp.h"

#include <math.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "model/compute.h"
#include "model/gpt2_internal.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* ---------------------------------------------------------------------------------
 * dtype names */

const char *const th_dtype_names[] = {"f32", "bf16", "f16", "q8", NULL};

th_status th_dtype_parse(const char *s, th_dtype *out) {
    for (int i = 0; th_dtype_names[i]; i++)
        if (s && strcmp(s, th_dtype_names[i]) == 0) {
            *out = (th_dtype)i;
            return TH_OK;
        }
    return th_fail(TH_ERR_INVALID, "dtype '%s' is not one of f32, bf16, f16, q8", s ? s : "(null)");
}

const char *th_dtype_name(th_dtype d) {
    return d >= TH_DTYPE_F32 && d <= TH_DTYPE_Q8 ? th_dtype_names[d] : "?";
}

/* ---------------------------------------------------------------------------------
 * scalar conversions */

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t lowp_f32_to_bf16(float f) {
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float lowp_bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

uint16_t lowp_f32_to_f16(float f) {
    uint32_t u = f32_bits(f);
    uint32_t sign = (u >> 16) & 0x8000u;
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u); /* NaN */
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds to >= 65520: inf */
    if (a < 0x38800000u) {                                   /* below the smallest normal half */
        /* a subnormal half: the value in units of 2^-24, rounded to nearest even */
        float v = bits_f32(a) * 16777216.0f; /* exact: a power-of-two scaling */
        float r = rintf(v);                  /* default rounding mode: ties to even */
        return (uint16_t)(sign | (uint32_t)r);
    }
    uint32_t mant = a & 0x7fffffu, exp = (a >> 23) - 112; /* rebias 127 -> 15 */
    uint32_t h = (exp << 10) | (mant >> 13);
    uint32_t rest = mant & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) h++; /* carries into the exponent correctly */
    return (uint16_t)(sign | h);
}

float lowp_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
    if (exp == 0) {
        float v = (float)mant * (1.0f / 16777216.0f); /* subnormal or zero: mant · 2^-24, exact */
        return sign ? -v : v;
    }
    if (exp == 31) return bits_f32(sign | 0x7f800000u | (mant << 13));
    return bits_f32(sign | ((exp + 112) << 23) | (mant << 13));
}

/* ---------------------------------------------------------------------------------
 * packing */

size_t lowp_row_bytes(th_dtype d, int K) {
    switch (d) {
    case TH_DTYPE_BF16:
    case TH_DTYPE_F16: return (size_t)K * 2;
    case TH_DTYPE_Q8: return (size_t)(K / LOWP_QK) * sizeof(lowp_q8_block);
    default: return (size_t)K * 4;
    }
}

/* ggml's quantize_row_q8_0_ref: d = amax / 127 stored as a half, q = round(x / d). */
static void quantize_block(lowp_q8_block *b, const float *x) {
    float amax = 0.0f;
    for (int i = 0; i < LOWP_QK; i++) amax = fmaxf(amax, fabsf(x[i]));
    float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    b->d = lowp_f32_to_f16(d);
    for (int i = 0; i < LOWP_QK; i++) b->qs[i] = (int8_t)roundf(x[i] * id);
}

void lowp_quantize_q8(lowp_q8_block *out, const float *x, int K) {
    for (int b = 0; b < K / LOWP_QK; b++) quantize_block(out + b, x + (size_t)b * LOWP_QK);
}

th_status lowp_pack(lowp_weight *w, th_dtype d, const float *src, int rows, int K) {
    memset(w, 0, sizeof *w);
    if (d == TH_DTYPE_Q8 && K % LOWP_QK != 0)
        return th_fail(TH_ERR_INVALID, "q8: rows of %d weights are not whole blocks of %d", K, LOWP_QK);
    w->dtype = d;
    w->rows = rows;
    w->K = K;
    w->row_bytes = lowp_row_bytes(d, K);
    w->data = th_alloc(w->row_bytes * (size_t)rows);
    if (!w->data) return th_fail(TH_ERR_NOMEM, "%s: out of memory packing %d x %d weights", th_dtype_name(d), rows, K);
#pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; r++) {
        const float *x = src + (size_t)r * K;
        uint8_t *dst = w->data + (size_t)r * w->row_bytes;
        if (d == TH_DTYPE_Q8) {
            lowp_quantize_q8((lowp_q8_block *)dst, x, K);
        } else {
            uint16_t *h = (uint16_t *)dst;
            for (int k = 0; k < K; k++) h[k] = d == TH_DTYPE_BF16 ? lowp_f32_to_bf16(x[k]) : lowp_f32_to_f16(x[k]);
        }
    }
    return TH_OK;
}

void lowp_weight_free(lowp_weight *w) {
    th_free(w->data);
    w->data = NULL;
}

void lowp_dequant_q8(float *out, const lowp_q8_block *b, int K) {
    for (int j = 0; j < K / LOWP_QK; j++) {
        float d = lowp_f16_to_f32(b[j].d);
        for (int i = 0; i < LOWP_QK; i++) out[j * LOWP_QK + i] = d * (float)b[j].qs[i];
    }
}

void lowp_dequant_row(float *out, const lowp_weight *w, int r) {
    const uint8_t *src = w->data + (size_t)r * w->row_bytes;
    if (w->dtype == TH_DTYPE_Q8) {
        lowp_dequant_q8(out, (const lowp_q8_block *)src, w->K);
        return;
    }
    const uint16_t *h = (const uint16_t *)src;
    if (w->dtype == TH_DTYPE_F16) {
        th_f16_widen(out, h, w->K); /* F16C where the CPU has it: the scalar widening's branches do not vectorize */
        return;
    }
    for (int k = 0; k < w->K; k++) out[k] = w->dtype == TH_DTYPE_BF16 ? lowp_bf16_to_f32(h[k]) : lowp_f16_to_f32(h[k]);
}

/* ---------------------------------------------------------------------------------
 * the naive kernels: one row at a time, in the order of the vector kernels written plainly,
 * so that the two agree to the bit. A row's products go to `lanes` lanes, 8 (the AVX2
 * kernels) or 16 (the AVX-512 ones). bf16/f16: lane l takes weights k ≡ l mod lanes, each
 * added by one fused multiply-add; with 8 lanes only below K rounded down to 8, the tail
 * past it summed after in index order, with 16 all of them. q8: lane l of 8 takes bytes
 * 4l .. 4l+3 of every block, an exact int32 sum per block, times the block's scale product
 * by one fused multiply-add; with 16, block j goes to lanes 8 · (j mod 2) .. +7. Sixteen
 * lanes are first folded to eight (l + l+8), then eight are summed by the tree of hsum8. */

static float lanes_sum(const float a[8]) { return ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7])); }

static float weight16(const lowp_weight *w, const uint16_t *h, int k) {
    return w->dtype == TH_DTYPE_BF16 ? lowp_bf16_to_f32(h[k]) : lowp_f16_to_f32(h[k]);
}

/* Row n's sum (no bias) in the order of the `lanes`-lane kernels. */
static float row_ref(const lowp_weight *w, int row, const float *x, const lowp_q8_block *xq, int lanes) {
    int K = w->K, wide = lanes == 16;
    const uint8_t *src = w->data + (size_t)row * w->row_bytes;
    float lane[16] = {0}, tail = 0.0f;
    if (w->dtype == TH_DTYPE_Q8) {
        const lowp_q8_block *b = (const lowp_q8_block *)src;
        for (int j = 0; j < K / LOWP_QK; j++) {
            float d = lowp_f16_to_f32(b[j].d) * lowp_f16_to_f32(xq[j].d);
            float *lj = lane + (wide ? 8 * (j & 1) : 0);
            for (int l = 0; l < 8; l++) {
                int32_t s = 0;
                for (int i = 4 * l; i < 4 * l + 4; i++) s += (int32_t)b[j].qs[i] * xq[j].qs[i];
                lj[l] = fmaf(d, (float)s, lj[l]);
            }
        }
    } else {
        const uint16_t *h = (const uint16_t *)src;
        int Kv = wide ? K : K & ~7;
        for (int k = 0; k < Kv; k++) lane[k % lanes] = fmaf(weight16(w, h, k), x[k], lane[k % lanes]);
        for (int k = Kv; k < K; k++) tail += weight16(w, h, k) * x[k];
    }
    if (wide) {
        for (int l = 0; l < 8; l++) lane[l] += lane[l + 8];
        return lanes_sum(lane);
    }
    return lanes_sum(lane) + tail;
}

void lowp_gemv_ref(float *out, const lowp_weight *w, int row0, const float *x, const lowp_q8_block *xq,
                   const float *bias, int N, int lanes) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) out[n] = (bias ? bias[n] : 0.0f) + row_ref(w, row0 + n, x, xq, lanes);
}

void lowp_gemv_naive(float *out, const lowp_weight *w, int row0, const float *x, const lowp_q8_block *xq,
                     const float *bias, int N) {
    lowp_gemv_ref(out, w, row0, x, xq, bias, N, 8);
}

/* ---------------------------------------------------------------------------------
 * dispatch: per format, the widest kernel this CPU runs (q8's AVX-512 one needs VNNI) */

static int force_naive;

void lowp_force_naive(int on) { force_naive = on; }

static const lowp_kernel kernel_avx512 = {"avx512", 16, lowp_gemv_avx512, lowp_quantize_q8_avx512};
static const lowp_kernel kernel_avx2 = {"avx2", 8, lowp_gemv_avx2, lowp_quantize_q8_avx2};
static const lowp_kernel kernel_naive = {"naive", 8, lowp_gemv_naive, lowp_quantize_q8};

const lowp_kernel *lowp_kernel_by_name(const char *name, th_dtype d) {
    if (strcmp(name, "avx512") == 0) return lowp_avx512_usable() && (d != TH_DTYPE_Q8 || lowp_avx512_vnni_usable()) ? &kernel_avx512 : NULL;
    if (strcmp(name, "avx2") == 0) return lowp_avx2_usable() ? &kernel_avx2 : NULL;
    return strcmp(name, "naive") == 0 ? &kernel_naive : NULL;
}

const lowp_kernel *lowp_kernel_fast(th_dtype d) {
    const lowp_kernel *k = lowp_kernel_by_name("avx512", d);
    if (!k) k = lowp_kernel_by_name("avx2", d);
    return k ? k : &kernel_naive;
}

const char *lowp_kernel_name(th_dtype d) { return force_naive ? "naive" : lowp_kernel_fast(d)->name; }

const char *th_lowp_kernel(void) {
    const char *a = lowp_kernel_name(TH_DTYPE_BF16), *q = lowp_kernel_name(TH_DTYPE_Q8);
    if (a == q) return a;
    return lowp_avx512_usable() ? "avx512 (q8: avx2, no VNNI)" : a;
}

size_t lowp_mm_scratch_floats(int M, int K) {
    return M > 1 ? (size_t)LOWP_PANEL_ROWS * K + (size_t)M * LOWP_PANEL_ROWS : 0;
}

void lowp_mm(float *out, const float *inp, const lowp_weight *w, int row0, const float *bias, int M, int N,
             float *scratch, lowp_q8_block *xq) {
    int K = w->K;
    if (M == 1) {
        const lowp_kernel *k = lowp_kernel_fast(w->dtype);
        if (w->dtype == TH_DTYPE_Q8) (force_naive ? lowp_quantize_q8 : k->quantize)(xq, inp, K);
        if (force_naive)
            lowp_gemv_ref(out, w, row0, inp, xq, bias, N, k->lanes);
        else
            k->gemv(out, w, row0, inp, xq, bias, N);
        return;
    }
    float *panel = scratch, *tmp = scratch + (size_t)LOWP_PANEL_ROWS * K;
    for (int n0 = 0; n0 < N; n0 += LOWP_PANEL_ROWS) {
        int rows = N - n0 < LOWP_PANEL_ROWS ? N - n0 : LOWP_PANEL_ROWS;
#pragma omp parallel for schedule(static)
        for (int r = 0; r < rows; r++) lowp_dequant_row(panel + (size_t)r * K, w, row0 + n0 + r);
        th_mm_forward(tmp, inp, panel, bias ? bias + n0 : NULL, M, rows, K);
        for (int m = 0; m < M; m++)
            memcpy(out + (size_t)m * N + n0, tmp + (size_t)m * rows, sizeof(float) * rows);
    }
}

/* ---------------------------------------------------------------------------------
 * the model's packed state */

void gpt2_lowp_free(gpt2_lowp *lp) {
    if (!lp) return;
    for (int i = 0; i < LOWP_NUM; i++) lowp_weight_free(&lp->w[i]);
    th_free(lp);
}

/* Gives the whole pages inside [p, p + bytes) back to the kernel; reading them later gives
 * zeros. Best effort: where madvise fails the pages just stay resident. */
static void release_pages(void *p, size_t bytes) {
    long page = sysconf(_SC_PAGESIZE);
    if (page <= 0) return;
    uintptr_t a = ((uintptr_t)p + (uintptr_t)page - 1) & ~((uintptr_t)page - 1);
    uintptr_t b = ((uintptr_t)p + bytes) & ~((uintptr_t)page - 1);
    if (b > a) (void)madvise((void *)a, b - a, MADV_DONTNEED);
}

th_status th_gpt2_set_precision(th_gpt2 *m, const th_infer_precision *p) {
    if (p->dtype < TH_DTYPE_F32 || p->dtype > TH_DTYPE_Q8)
        return th_fail(TH_ERR_INVALID, "precision: dtype %d is not a th_dtype", (int)p->dtype);
    th_gpt2_set_kv_dtype(m, p->kv_dtype); // the caches created from now on
    if (m->lowp) {
        if (m->lowp->dtype == p->dtype && m->lowp->embed_f32 == (p->embed_f32 != 0)) return TH_OK;
        return th_fail(TH_ERR_STATE, "precision: the model is already packed as %s; its f32 weights are gone",
                       th_dtype_name(m->lowp->dtype));
    }
    if (p->dtype == TH_DTYPE_F32) return TH_OK;
    const th_gpt2_config *cfg = &m->cfg;
    int L = cfg->num_layers, C = cfg->channels, V = cfg->vocab_size;
    if (p->dtype == TH_DTYPE_Q8 && C % LOWP_QK != 0)
        return th_fail(TH_ERR_INVALID, "precision: q8 needs channels divisible by %d, the model has %d", LOWP_QK, C);
    gpt2_lowp *lp = th_calloc(1, sizeof *lp);
    if (!lp) return th_fail(TH_ERR_NOMEM, "precision: out of memory");
    lp->dtype = p->dtype;
    lp->embed_f32 = p->embed_f32 != 0;
    static const int tensor[LOWP_NUM] = {TH_P_QKVW, TH_P_ATTPROJW, TH_P_FCW, TH_P_FCPROJW, TH_P_WTE};
    const int rows[LOWP_NUM] = {L * 3 * C, L * C, L * 4 * C, L * C, V};
    const int ks[LOWP_NUM] = {C, C, C, 4 * C, C};
    th_status st = TH_OK;
    int n = lp->embed_f32 ? LOWP_WTE : LOWP_NUM;
    for (int i = 0; i < n && st == TH_OK; i++) st = lowp_pack(&lp->w[i], p->dtype, m->p.t[tensor[i]], rows[i], ks[i]);
    if (st != TH_OK) {
        gpt2_lowp_free(lp);
        return st;
    }
    for (int i = 0; i < n; i++) release_pages(m->p.t[tensor[i]], (size_t)rows[i] * ks[i] * sizeof(float));
    m->lowp = lp;
    return TH_OK;
}

th_dtype th_gpt2_precision(const th_gpt2 *m, int *embed_f32) {
    if (embed_f32) *embed_f32 = m->lowp ? m->lowp->embed_f32 : 1;
    return m->lowp ? m->lowp->dtype : TH_DTYPE_F32;
}

double th_gpt2_decode_weight_bytes(const th_gpt2 *m) {
    const th_gpt2_config *cfg = &m->cfg;
    double C = cfg->channels, L = cfg->num_layers, V = cfg->vocab_size;
    double mat = L * 12.0 * C * C, wte = V * C;
    double small = th_gpt2_num_params(cfg) - mat - wte - (double)cfg->max_seq_len * C + C; /* wpe: one row */
    th_dtype d = th_gpt2_precision(m, NULL);
    double per = d == TH_DTYPE_F32 ? 4.0 : (double)lowp_row_bytes(d, 3072) / 3072.0;
    double wte_per = m->lowp && !m->lowp->embed_f32 ? per : 4.0;
    return 4.0 * small + per * mat + wte_per * wte;
}
