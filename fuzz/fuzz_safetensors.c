/* fuzz_safetensors.c: libFuzzer target for the safetensors reader. Parses the input in
 * memory and, if it opens, converts every float tensor (up to a size cap) and looks up
 * names and metadata, so any offset the validator let through gets dereferenced.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Iinclude -Isrc \
 *     fuzz/fuzz_safetensors.c $(find src/io src/model src/core -name '*.c') \
 *     -ljansson -lopenblas -lm -fopenmp -o fuzz_safetensors
 *   ./fuzz_safetensors -max_total_time=30 */
#include <stdlib.h>

#include "thermo/io.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    th_safetensors *st = NULL;
    if (th_safetensors_open_memory(data, size, "fuzz.safetensors", &st) != TH_OK) return 0;
    for (int i = 0; i < th_safetensors_count(st); i++) {
        const th_st_tensor *t = th_safetensors_tensor(st, i);
        if (th_safetensors_find(st, t->name) == NULL) abort(); /* every listed name is findable */
        if (t->count > (1u << 20)) continue;
        float *dst = malloc(t->count * sizeof(float) + 1);
        if (!dst) continue;
        th_safetensors_read_f32(st, t, dst, (size_t)t->count, 0);
        if (t->ndim == 2) th_safetensors_read_f32(st, t, dst, (size_t)t->count, 1);
        free(dst);
    }
    th_safetensors_metadata(st, "format");
    th_safetensors_close(st);
    return 0;
}
