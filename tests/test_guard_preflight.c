/* test_guard_preflight.c: preflight checks, each with its planted failure: empty, short
 * and out-of-range token data; a broken initialization caught by the loss at init; the
 * memory estimate against the bytes the engine really allocates (mallinfo2) and against a
 * fake /proc/meminfo; the checkpoint round trip and a one-bit difference it must catch. */
#include <malloc.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test_util.h"
#include "thermo/guard.h"

static void test_tokens(void) {
    int tok[100];
    for (int i = 0; i < 100; i++) tok[i] = i * 5;
    th_preflight_data_report r;
    CHECK(th_preflight_tokens("train.bin", tok, 100, 512, 32, &r) == TH_OK && r.windows == 3 && r.out_of_range == 0,
          "good data: %s", th_last_error());
    CHECK(th_preflight_tokens("train.bin", tok, 0, 512, 32, &r) == TH_ERR_INVALID && strstr(th_last_error(), "no tokens"),
          "%s", th_last_error());
    CHECK(th_preflight_tokens("train.bin", tok, 32, 512, 32, &r) == TH_ERR_INVALID &&
              strstr(th_last_error(), "shorter than one training window"),
          "%s", th_last_error());
    tok[17] = 512;
    tok[60] = -3;
    CHECK(th_preflight_tokens("train.bin", tok, 100, 512, 32, &r) == TH_ERR_INVALID && r.out_of_range == 2 &&
              r.first_bad_index == 17 && r.first_bad_value == 512 && strstr(th_last_error(), "train.bin: 2 token ids"),
          "%s", th_last_error());
}

static void test_init_loss(void) {
    CHECK(th_preflight_check_init_loss(10.9, 50257, 0) == TH_OK, "10.9 is within 0.3 of ln 50257 = 10.82");
    CHECK(th_preflight_check_init_loss(11.3, 50257, 0) == TH_ERR_INVALID && strstr(th_last_error(), "10.82"), "%s",
          th_last_error());
    CHECK(th_preflight_check_init_loss(NAN, 50257, 0) == TH_ERR_INVALID, "NaN fails");

    th_gpt2_config cfg = {64, 512, 2, 4, 64, 1e-5f};
    th_gpt2 *m;
    CHECK(th_gpt2_create(&cfg, &m) == TH_OK, "%s", th_last_error());
    th_gpt2_init_random(m, 7);
    int tok[4 * 32 + 1];
    uint64_t s = 3;
    for (int i = 0; i < 4 * 32 + 1; i++) {
        s = s * 6364136223846793005ULL + 1;
        tok[i] = (int)(s >> 33) % 512;
    }
    double loss = 0;
    CHECK(th_preflight_init_loss(m, tok, 129, 4, 32, 0, &loss) == TH_OK, "GPT-2 init: loss %g vs ln 512 = %g: %s", loss,
          log(512.0), th_last_error());
    // planted bug: embeddings 50x too large (a wrong init scale) -> confident wrong logits
    th_tensor_info wte;
    th_gpt2_tensor_info(&cfg, TH_P_WTE, &wte);
    float *p = th_gpt2_params(m);
    for (size_t i = 0; i < wte.count; i++) p[wte.offset + i] *= 50.0f;
    CHECK(th_preflight_init_loss(m, tok, 129, 4, 32, 0, &loss) == TH_ERR_INVALID && loss > log(512.0) + 0.3,
          "bad init: loss %g: %s", loss, th_last_error());
    CHECK(th_preflight_init_loss(m, tok, 100, 4, 32, 0, NULL) == TH_ERR_INVALID, "too few tokens");
    th_gpt2_free(m);
}

static size_t heap_in_use(void) {
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

static void test_memory(void) {
    // GPT-2 124M: 16 bytes per parameter before activations (waste.md §5: ~2.0 GB)
    th_gpt2_config g;
    th_gpt2_config_preset("gpt2", &g);
    th_preflight_memory est;
    CHECK(th_preflight_train_memory(&g, 4, 64, &est) == TH_OK, "%s", th_last_error());
    size_t P = th_gpt2_num_params(&g);
    CHECK(est.params_bytes + est.grads_bytes + est.adam_bytes == 16 * P && fabs(16.0 * P / 1e9 - 1.99) < 0.01,
          "16 B/param = %.3f GB", 16.0 * P / 1e9);

    // against what the engine allocates for a whole training step
    th_gpt2_config cfg = {128, 512, 2, 4, 64, 1e-5f};
    int B = 4, T = 128;
    int *tok = malloc(sizeof(int) * (B * T + 1));
    for (int i = 0; i <= B * T; i++) tok[i] = (i * 37) % 512;
    th_gpt2 *warm;
    th_gpt2_create(&cfg, &warm); // let OpenMP and BLAS allocate what they keep first
    th_gpt2_init_random(warm, 1);
    float loss;
    th_gpt2_forward(warm, tok, tok + 1, 2, 16, &loss);
    th_gpt2_free(warm);
    size_t before = heap_in_use();
    th_gpt2 *m;
    th_adamw_config oc = th_adamw_defaults();
    CHECK(th_gpt2_create(&cfg, &m) == TH_OK, "%s", th_last_error());
    th_gpt2_init_random(m, 1);
    CHECK(th_gpt2_zero_grad(m) == TH_OK && th_gpt2_forward(m, tok, tok + 1, B, T, &loss) == TH_OK &&
              th_gpt2_backward(m, 1.0f) == TH_OK && th_gpt2_adamw_step(m, &oc, 1e-3f, th_gpt2_grad_norm(m)) == TH_OK,
          "%s", th_last_error());
    size_t used = heap_in_use() - before;
    CHECK(th_preflight_train_memory(&cfg, B, T, &est) == TH_OK, "%s", th_last_error());
    double rel = fabs((double)used - (double)est.total_bytes) / (double)est.total_bytes;
    printf("memory: estimate %zu bytes, allocated %zu bytes (%.2f%%)\n", est.total_bytes, used, rel * 100);
#ifdef __SANITIZE_ADDRESS__
    printf("skip: AddressSanitizer's allocator is invisible to mallinfo2; estimate not measured\n");
    rel = 0;
#endif
    CHECK(rel < 0.01, "estimate %zu vs allocated %zu bytes (%.2f%% off)", est.total_bytes, used, rel * 100);
    th_gpt2_free(m);
    free(tok);

    // against a fake /proc/meminfo
    const char *root = test_tmp_dir("guard_preflight_root");
    char path[4300];
    snprintf(path, sizeof path, "%s/proc", root);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/proc/meminfo", root);
    FILE *f = fopen(path, "w");
    fprintf(f, "MemTotal:        4000000 kB\nMemFree:          100000 kB\nMemAvailable:    3000000 kB\n");
    fclose(f);
    size_t avail = 0;
    CHECK(th_preflight_mem_available(root, &avail) == TH_OK && avail == 3000000ULL * 1024, "%zu", avail);
    CHECK(th_preflight_memory_check(&g, 4, 64, root, SIZE_MAX, &est) == TH_ERR_NOMEM && est.margin_bytes == 1u << 30 &&
              strstr(th_last_error(), "MemAvailable"),
          "gpt2 in 3 GB minus 1 GiB: %s", th_last_error());
    CHECK(th_preflight_memory_check(&g, 4, 64, root, 0, &est) == TH_OK, "gpt2 in 3 GB without a margin: %s",
          th_last_error());
    f = fopen(path, "w");
    fprintf(f, "MemTotal: 4000000 kB\n");
    fclose(f);
    CHECK(th_preflight_mem_available(root, &avail) == TH_ERR_FORMAT, "no MemAvailable line");
    CHECK(th_preflight_mem_available("/nonexistent-root", &avail) == TH_ERR_IO, "no file");
    CHECK(th_preflight_mem_available(NULL, &avail) == TH_OK && avail > 0, "this machine: %s", th_last_error());

    const char *bin = getenv("THERMO_BIN");
    if (bin && *bin) {
        f = fopen(path, "w");
        fprintf(f, "MemAvailable:    3000000 kB\n");
        fclose(f);
        char cmd[9000];
        snprintf(cmd, sizeof cmd, "'%s' guard memory --config gpt2 --root '%s' >/dev/null 2>&1", bin, root);
        int rc = system(cmd);
        CHECK(WIFEXITED(rc) && WEXITSTATUS(rc) == 4, "CLI: gpt2 does not fit in 3 GB minus 1 GiB (rc %d)", rc);
        snprintf(cmd, sizeof cmd, "'%s' guard memory --config tiny --root '%s' >/dev/null 2>&1", bin, root);
        rc = system(cmd);
        CHECK(WIFEXITED(rc) && WEXITSTATUS(rc) == 0, "CLI: tiny fits (rc %d)", rc);
    }
}

static void test_checkpoint(void) {
    th_gpt2_config cfg = {64, 512, 2, 4, 64, 1e-5f};
    th_gpt2 *m;
    th_gpt2_create(&cfg, &m);
    th_gpt2_init_random(m, 5);
    int tok[2 * 16 + 1];
    for (int i = 0; i < 33; i++) tok[i] = (i * 11) % 512;
    float loss;
    th_adamw_config oc = th_adamw_defaults();
    th_gpt2_zero_grad(m);
    th_gpt2_forward(m, tok, tok + 1, 2, 16, &loss);
    th_gpt2_backward(m, 1.0f);
    th_gpt2_adamw_step(m, &oc, 1e-3f, th_gpt2_grad_norm(m));
    th_train_state *st = calloc(1, sizeof *st);
    st->step = 1;
    th_rng_seed(&st->rng, 9);
    st->data_cursor[1] = 32;
    strcpy(st->run_meta, "{\"seed\": 9}");
    const char *dir = test_tmp_dir("guard_preflight");
    char path[4300];
    snprintf(path, sizeof path, "%s/roundtrip.ckpt", dir);
    CHECK(th_preflight_checkpoint_roundtrip(m, st, path) == TH_OK, "%s", th_last_error());
    CHECK(access(path, F_OK) != 0, "the temporary checkpoint is removed");
    snprintf(path, sizeof path, "%s/no/such/dir/x.ckpt", dir);
    CHECK(th_preflight_checkpoint_roundtrip(m, st, path) != TH_OK && strstr(th_last_error(), "checkpoint round trip"),
          "unwritable path: %s", th_last_error());

    // the comparison catches one flipped bit in one tensor
    snprintf(path, sizeof path, "%s/copy.ckpt", dir);
    th_gpt2 *copy = NULL;
    CHECK(th_checkpoint_save(path, m, st) == TH_OK && th_checkpoint_load(path, &copy, NULL) == TH_OK, "%s",
          th_last_error());
    CHECK(th_preflight_compare_models(m, copy) == TH_OK, "identical: %s", th_last_error());
    th_tensor_info fc;
    th_gpt2_tensor_info(&cfg, TH_P_FCW, &fc);
    unsigned char *b = (unsigned char *)(th_gpt2_params(copy) + fc.offset + 1234);
    b[0] ^= 1;
    CHECK(th_preflight_compare_models(m, copy) == TH_ERR_FORMAT && strstr(th_last_error(), "fcw") &&
              strstr(th_last_error(), "index 1234"),
          "%s", th_last_error());
    b[0] ^= 1;
    th_gpt2_adam_m(copy)[7] += 1.0f;
    CHECK(th_preflight_compare_models(m, copy) == TH_ERR_FORMAT && strstr(th_last_error(), "first moments"), "%s",
          th_last_error());
    th_gpt2_free(copy);
    unlink(path);
    free(st);
    th_gpt2_free(m);
}

int main(void) {
    test_tokens();
    test_init_loss();
    test_memory();
    test_checkpoint();
    return test_summary();
}
