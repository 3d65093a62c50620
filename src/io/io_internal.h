/* io_internal.h: pieces shared by the io module's formats: overflow-checked sizes,
 * half-precision conversions, streaming XXH64, the hashing file writer and a positioned
 * reader that checks every span against the file's length. Not a public interface;
 * tests include it for the write-fault hook. */
#ifndef THERMO_IO_INTERNAL_H
#define THERMO_IO_INTERNAL_H

#include <stdint.h>
#include <stdio.h>

#include "thermo/io.h"

/* ---------------------------------------------------------------------------------
 * sizes: each returns 0 and leaves *r alone on overflow */

static inline int th_mul_u64(uint64_t a, uint64_t b, uint64_t *r) {
    if (a && b > UINT64_MAX / a) return 0;
    *r = a * b;
    return 1;
}
static inline int th_add_u64(uint64_t a, uint64_t b, uint64_t *r) {
    if (b > UINT64_MAX - a) return 0;
    *r = a + b;
    return 1;
}

/* ---------------------------------------------------------------------------------
 * number formats */

float th_f16_to_f32(uint16_t h);
float th_bf16_to_f32(uint16_t b);
uint16_t th_f32_to_bf16(float f); /* round to nearest even; NaN stays NaN */

static inline uint32_t th_le32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t th_le64(const unsigned char *p) {
    return (uint64_t)th_le32(p) | (uint64_t)th_le32(p + 4) << 32;
}
static inline void th_put32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static inline void th_put64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

/* ---------------------------------------------------------------------------------
 * XXH64, streaming */

typedef struct {
    uint64_t total;
    uint64_t v[4];
    unsigned char buf[32];
    unsigned buffered;
} th_xxh64_state;

void th_xxh64_init(th_xxh64_state *s);
void th_xxh64_update(th_xxh64_state *s, const void *data, size_t len);
uint64_t th_xxh64_digest(const th_xxh64_state *s);

/* ---------------------------------------------------------------------------------
 * the io formats' writer: core's th_atomic_file (temporary, fsync, rename, directory
 * fsync) with two additions, a running XXH64 of every byte written while hashing is on,
 * and the write-fault hook below. `status` mirrors the file's sticky error so long
 * writers can stop early. */

typedef struct {
    th_atomic_file *file;
    const char *path; /* the caller's, for messages; outlives the save */
    th_status status;
    int hashing;
    th_xxh64_state hash;
} th_afile;

th_status th_afile_open(th_afile *a, const char *path);
void th_afile_write(th_afile *a, const void *p, size_t n);
/* Writes n floats, as float32 little-endian (the only byte order we build for). */
void th_afile_write_f32(th_afile *a, const float *p, size_t n);
/* th_atomic_commit / abort / finish / publish on a->file; each leaves a released (abort
 * is then harmless). */
th_status th_afile_commit(th_afile *a);
void th_afile_abort(th_afile *a);
th_status th_afile_finish(th_afile *a);
th_status th_afile_publish(th_afile *a);

/* th_safetensors_write's body: writes the file into an opened afile without finishing it
 * (the caller finishes, publishes or aborts). */
th_status th_safetensors_write_to(th_afile *a, const th_st_source *tensors, int n,
                                  const char *const *metadata);

/* Test hook (SQLite style): the writer fails once `n` more bytes have been written
 * (n >= 1; 0 disarms), as a full disk would. The failure disarms the hook. */
void th_io_fail_write_after(long long n);

/* ---------------------------------------------------------------------------------
 * reading */

/* Opens path for reading and gets its size; TH_ERR_IO with a message on failure. */
th_status th_rfile_open(const char *path, FILE **f, uint64_t *size);
/* Reads exactly n bytes at offset off; TH_ERR_FORMAT naming path if the file ends first. */
th_status th_rfile_read(FILE *f, const char *path, uint64_t off, void *dst, size_t n);

/* th_gpt2_config_validate, with the message prefixed by `path` and the status turned
 * into TH_ERR_FORMAT: a config read from a file that the engine refuses is a bad file. */
th_status th_io_check_config(const char *path, const th_gpt2_config *cfg);

/* Whether tensors a and b of st hold the same values after conversion to float, bit for
 * bit; if not, *first_diff gets the first differing element. Both must be F32/F16/BF16
 * with the same element count. */
int th_safetensors_same_values(const th_safetensors *st, const th_st_tensor *a,
                               const th_st_tensor *b, uint64_t *first_diff);

/* Copies `src` into dst (capacity cap) as "dir/name"; 0 if it does not fit. */
int th_path_join(char *dst, size_t cap, const char *dir, const char *name);

#endif
