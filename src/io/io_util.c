/* io_util.c: the io module's shared machinery (see io_internal.h): half-precision
 * conversions, XXH64, the atomic writer with its write-fault hook, and checked reads. */
#include "io/io_internal.h"

#include <errno.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the io module writes float32 with fwrite and assumes a little-endian host"
#endif

/* ---------------------------------------------------------------------------------
 * number formats */

float th_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    uint32_t bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13); /* inf, or NaN keeping its payload */
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (man << 13);
    } else if (man == 0) {
        bits = sign;
    } else {
        /* subnormal: shift the mantissa up until its leading 1 is the implicit bit */
        int e = 113;
        while (!(man & 0x400)) {
            man <<= 1;
            e--;
        }
        bits = sign | ((uint32_t)e << 23) | ((man & 0x3ff) << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

float th_bf16_to_f32(uint16_t b) {
    uint32_t bits = (uint32_t)b << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t th_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

/* ---------------------------------------------------------------------------------
 * XXH64 (Collet), seed 0 */

#define P1 0x9E3779B185EBCA87ull
#define P2 0xC2B2AE3D27D4EB4Full
#define P3 0x165667B19E3779F9ull
#define P4 0x85EBCA77C2B2AE63ull
#define P5 0x27D4EB2F165667C5ull

static uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
static uint64_t xxh_round(uint64_t acc, uint64_t in) {
    acc += in * P2;
    acc = rotl64(acc, 31);
    return acc * P1;
}
static uint64_t xxh_merge(uint64_t h, uint64_t v) {
    h ^= xxh_round(0, v);
    return h * P1 + P4;
}

void th_xxh64_init(th_xxh64_state *s) {
    memset(s, 0, sizeof *s);
    s->v[0] = P1 + P2;
    s->v[1] = P2;
    s->v[2] = 0;
    s->v[3] = 0 - P1;
}

void th_xxh64_update(th_xxh64_state *s, const void *data, size_t len) {
    const unsigned char *p = data;
    s->total += len;
    if (s->buffered + len < 32) {
        if (len) memcpy(s->buf + s->buffered, p, len);
        s->buffered += (unsigned)len;
        return;
    }
    if (s->buffered) {
        size_t fill = 32 - s->buffered;
        memcpy(s->buf + s->buffered, p, fill);
        for (int i = 0; i < 4; i++) s->v[i] = xxh_round(s->v[i], th_le64(s->buf + 8 * i));
        p += fill;
        len -= fill;
        s->buffered = 0;
    }
    while (len >= 32) {
        for (int i = 0; i < 4; i++) s->v[i] = xxh_round(s->v[i], th_le64(p + 8 * i));
        p += 32;
        len -= 32;
    }
    if (len) memcpy(s->buf, p, len);
    s->buffered = (unsigned)len;
}

uint64_t th_xxh64_digest(const th_xxh64_state *s) {
    uint64_t h;
    if (s->total >= 32) {
        h = rotl64(s->v[0], 1) + rotl64(s->v[1], 7) + rotl64(s->v[2], 12) + rotl64(s->v[3], 18);
        for (int i = 0; i < 4; i++) h = xxh_merge(h, s->v[i]);
    } else {
        h = P5;
    }
    h += s->total;
    const unsigned char *p = s->buf;
    unsigned n = s->buffered;
    while (n >= 8) {
        h ^= xxh_round(0, th_le64(p));
        h = rotl64(h, 27) * P1 + P4;
        p += 8;
        n -= 8;
    }
    if (n >= 4) {
        h ^= (uint64_t)th_le32(p) * P1;
        h = rotl64(h, 23) * P2 + P3;
        p += 4;
        n -= 4;
    }
    while (n--) {
        h ^= (*p++) * P5;
        h = rotl64(h, 11) * P1;
    }
    h ^= h >> 33;
    h *= P2;
    h ^= h >> 29;
    h *= P3;
    h ^= h >> 32;
    return h;
}

uint64_t th_xxh64(const void *data, size_t len) {
    th_xxh64_state s;
    th_xxh64_init(&s);
    th_xxh64_update(&s, data, len);
    return th_xxh64_digest(&s);
}

/* ---------------------------------------------------------------------------------
 * atomic writer */

static atomic_llong write_fault_countdown;

void th_io_fail_write_after(long long n) { atomic_store(&write_fault_countdown, n > 0 ? n : 0); }

/* Returns how many of the n bytes may be written before the injected fault (n if none). */
static size_t write_fault_allowance(size_t n) {
    long long left = atomic_load(&write_fault_countdown);
    if (left <= 0) return n;
    if ((unsigned long long)left > n) {
        atomic_store(&write_fault_countdown, left - (long long)n);
        return n;
    }
    atomic_store(&write_fault_countdown, 0);
    return (size_t)left - 1;
}

th_status th_afile_open(th_afile *a, const char *path) {
    memset(a, 0, sizeof *a);
    a->path = path;
    a->status = th_atomic_open(path, &a->file);
    return a->status;
}

void th_afile_write(th_afile *a, const void *p, size_t n) {
    if (a->status != TH_OK || n == 0) return;
    size_t allowed = write_fault_allowance(n);
    th_atomic_write(a->file, p, allowed);
    if (allowed != n)
        th_atomic_fail(a->file, th_fail(TH_ERR_IO, "%s.tmp: write failed: injected fault (no space left on device)",
                                        a->path));
    a->status = th_atomic_status(a->file);
    if (a->status == TH_OK && a->hashing) th_xxh64_update(&a->hash, p, n);
}

void th_afile_write_f32(th_afile *a, const float *p, size_t n) {
    th_afile_write(a, p, n * sizeof(float));
}

void th_afile_abort(th_afile *a) {
    th_atomic_abort(a->file);
    a->file = NULL;
}

th_status th_afile_finish(th_afile *a) {
    th_status st = th_atomic_finish(a->file);
    if (st != TH_OK) a->file = NULL; /* finish aborted it */
    return st;
}

th_status th_afile_publish(th_afile *a) {
    th_status st = th_atomic_publish(a->file);
    a->file = NULL;
    return st;
}

th_status th_afile_commit(th_afile *a) {
    th_status st = th_atomic_commit(a->file);
    a->file = NULL;
    return st;
}

/* ---------------------------------------------------------------------------------
 * reading */

th_status th_rfile_open(const char *path, FILE **f, uint64_t *size) {
    int fd;
    th_status st = th_open_regular(path, &fd, size);
    if (st != TH_OK) return st;
    FILE *fp = fdopen(fd, "rb");
    if (!fp) {
        int e = errno;
        close(fd);
        return th_fail(TH_ERR_IO, "%s: cannot open a stream: %s", path, strerror(e));
    }
    *f = fp;
    return TH_OK;
}

th_status th_rfile_read(FILE *f, const char *path, uint64_t off, void *dst, size_t n) {
    if (off > (uint64_t)INT64_MAX || fseeko(f, (off_t)off, SEEK_SET) != 0)
        return th_fail(TH_ERR_IO, "%s: cannot seek to byte %llu", path, (unsigned long long)off);
    if (fread(dst, 1, n, f) != n)
        return th_fail(TH_ERR_FORMAT, "%s: file ends before byte %llu (truncated?)", path,
                       (unsigned long long)(off + n));
    return TH_OK;
}

int th_path_join(char *dst, size_t cap, const char *dir, const char *name) {
    int n = snprintf(dst, cap, "%s/%s", dir, name);
    return n >= 0 && (size_t)n < cap;
}

th_status th_io_check_config(const char *path, const th_gpt2_config *cfg) {
    if (th_gpt2_config_validate(cfg) == TH_OK) return TH_OK;
    char msg[512];
    snprintf(msg, sizeof msg, "%s", th_last_error());
    return th_fail(TH_ERR_FORMAT, "%s: %s", path, msg);
}
