/* fuzz_gguf.c: libFuzzer target for the GGUF reader. Parses the input in memory and, if it
 * opens, reads every key (string array elements included) and converts every readable
 * tensor (up to a size cap), then tries the GPT-2 loader and the tokenizer on it, so any
 * offset or count the validator let through gets dereferenced.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Iinclude -Isrc \
 *     fuzz/fuzz_gguf.c $(find src/io src/model src/core src/text -name '*.c') \
 *     -ljansson -lopenblas -lm -fopenmp -o fuzz_gguf
 *   ./fuzz_gguf -max_total_time=30 */
#include <stdlib.h>

#include "thermo/io.h"
#include "thermo/text.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    th_gguf *g = NULL;
    if (th_gguf_open_memory(data, size, "fuzz.gguf", &g) != TH_OK) return 0;
    for (int i = 0; i < th_gguf_kv_count(g); i++) {
        const th_gguf_kv *kv = th_gguf_kv_at(g, i);
        if (th_gguf_find_kv(g, kv->key) != kv) abort(); /* keys are unique and findable */
        const char *s;
        uint64_t n;
        for (uint64_t j = 0; kv->type == TH_GGUF_ARRAY && kv->elem_type == TH_GGUF_STRING && j < kv->count; j++)
            if (th_gguf_array_string(g, kv, j, &s, &n) != TH_OK) abort();
    }
    for (int i = 0; i < th_gguf_tensor_count(g); i++) {
        const th_gguf_tensor *t = th_gguf_tensor_at(g, i);
        if (th_gguf_find_tensor(g, t->name) != t) abort();
        if (t->count > (1u << 20)) continue;
        float *dst = malloc(t->count * sizeof(float) + 1);
        if (!dst) continue;
        th_gguf_read_f32(g, t, dst, (size_t)t->count);
        free(dst);
    }
    th_gpt2 *m = NULL;
    th_model_info info;
    if (th_gguf_load_model(g, &m, &info) == TH_OK) th_gpt2_free(m);
    th_tokenizer *tok = NULL;
    if (th_gguf_load_tokenizer(g, &tok) == TH_OK) th_tokenizer_free(tok);
    th_gguf_close(g);
    return 0;
}
