/* fuzz_checkpoint.c: libFuzzer target for the binary model loaders: the input is written
 * to a temporary file and handed to th_checkpoint_load, th_llmc_load and
 * th_model_load_any. The first byte picks a prefix (our magic, llm.c's header, or none)
 * so the fuzzer reaches past the magic checks without having to guess them.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Iinclude -Isrc \
 *     fuzz/fuzz_checkpoint.c $(find src/io src/model src/core -name '*.c') \
 *     -ljansson -lopenblas -lm -fopenmp -o fuzz_checkpoint
 *   ./fuzz_checkpoint -max_total_time=30 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "thermo/io.h"

static char path[64];

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    if (!path[0]) {
        snprintf(path, sizeof path, "/tmp/fuzz_checkpoint_%d.bin", (int)getpid());
    }
    if (size == 0) return 0;
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    static const unsigned char ours[] = "THRMCKPT\1\0\0\0";
    /* llm.c: magic 20240326 = 0x0134D7C6, little-endian, then version 3 */
    static const unsigned char llmc[] = {0xc6, 0xd7, 0x34, 0x01, 3, 0, 0, 0};
    switch (data[0] % 3) {
    case 0: fwrite(ours, 1, 12, f); break;
    case 1: fwrite(llmc, 1, 8, f); break;
    default: break;
    }
    fwrite(data + 1, 1, size - 1, f);
    fclose(f);

    th_gpt2 *m = NULL;
    th_train_state st;
    if (th_checkpoint_load(path, &m, &st) == TH_OK) th_gpt2_free(m);
    m = NULL;
    if (th_llmc_load(path, &m, NULL) == TH_OK) th_gpt2_free(m);
    m = NULL;
    th_model_info info;
    if (th_model_load_any(path, &m, &info) == TH_OK) th_gpt2_free(m);
    unlink(path);
    return 0;
}
