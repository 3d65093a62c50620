/* kv_quality.c: the quality gate of the KV cache's element type on real text, the measurement
 * behind TH_KV_AUTO's choice (issue 16). A model against its f32 original (f32 weights, f32
 * KV) on the tokens of a shard: perplexity ratio, mean KL divergence and top-1 agreement
 * (th_precision_quality), for every weight format with each KV dtype, so the KV's own share
 * of the loss shows beside the weights'. `thermo bench model` scores random tokens; this
 * scores text, where a trained model's distributions are peaked and small errors show.
 *
 * usage: kv_quality MODEL SHARD [TOKENS, default 4096] [WINDOW, default the model's context]
 * MODEL: a Hugging Face GPT-2 directory, or a preset name (random weights, seed 1); SHARD: a
 * token shard (e.g. a run's data/val.bin). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "thermo/io.h"
#include "thermo/pipeline.h"
#include "thermo/text.h"

/* The first n tokens of the shard at path (fewer if it is shorter); NULL on failure. */
static int *read_shard(const char *path, int *n, int vocab) {
    th_shard_info info;
    if (th_shard_read_info(path, &info) != TH_OK) return NULL;
    if ((uint64_t)*n > info.token_count) *n = (int)info.token_count;
    FILE *f = fopen(path, "rb");
    int *tok = malloc(sizeof(int) * (size_t)*n);
    if (!f || !tok || fseek(f, TH_SHARD_HEADER_BYTES, SEEK_SET) != 0) goto fail;
    for (int i = 0; i < *n; i++) {
        uint32_t t = 0;
        if (fread(&t, info.token_bytes, 1, f) != 1) goto fail; // little-endian host
        if (t >= (uint32_t)vocab) {
            fprintf(stderr, "kv_quality: %s: token %u at %d is outside the model's vocabulary %d\n", path, t, i, vocab);
            goto fail;
        }
        tok[i] = (int)t;
    }
    fclose(f);
    return tok;
fail:
    if (f) fclose(f);
    free(tok);
    return NULL;
}

static th_status load(const char *what, th_gpt2 **out) {
    th_gpt2_config cfg;
    if (th_gpt2_config_preset(what, &cfg) == TH_OK) {
        th_status st = th_gpt2_create(&cfg, out);
        if (st == TH_OK) th_gpt2_init_random(*out, 1);
        return st;
    }
    th_model_info info;
    return th_hf_load(what, out, &info);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: kv_quality MODEL SHARD [TOKENS] [WINDOW]\n");
        return 2;
    }
    int n = argc > 3 ? atoi(argv[3]) : 4096, window = argc > 4 ? atoi(argv[4]) : 0;
    th_gpt2 *ref = NULL;
    if (load(argv[1], &ref) != TH_OK) {
        fprintf(stderr, "kv_quality: %s\n", th_last_error());
        return 1;
    }
    const th_gpt2_config *cfg = th_gpt2_get_config(ref);
    int *tok = read_shard(argv[2], &n, cfg->vocab_size);
    if (!tok) {
        fprintf(stderr, "kv_quality: %s: %s\n", argv[2], th_last_error());
        return 1;
    }
    printf("%s on %d tokens of %s (window %d), against f32 weights with f32 KV:\n", argv[1], n, argv[2],
           window > 1 ? window : cfg->max_seq_len);
    printf("weights  KV    ppl ratio    mean KL nats   top-1\n");
    const th_dtype weights[] = {TH_DTYPE_F32, TH_DTYPE_BF16, TH_DTYPE_F16, TH_DTYPE_Q8};
    const th_kv_dtype kvs[] = {TH_KV_F16, TH_KV_Q8};
    for (int w = 0; w < 4; w++)
        for (int k = 0; k < 2; k++) {
            th_gpt2 *m = NULL;
            th_precision_quality_result q;
            th_infer_precision p = {weights[w], 0, kvs[k]};
            if (th_gpt2_create(cfg, &m) != TH_OK) return 1;
            memcpy(th_gpt2_params(m), th_gpt2_params(ref), th_gpt2_num_params(cfg) * sizeof(float));
            if (th_gpt2_set_precision(m, &p) != TH_OK || th_precision_quality(ref, m, tok, n, window, &q) != TH_OK) {
                fprintf(stderr, "kv_quality: %s\n", th_last_error());
                return 1;
            }
            printf("%-7s  %-4s  %10.6f  %13.4e  %6.4f   (ppl %.3f vs %.3f)\n", th_dtype_name(weights[w]),
                   th_kv_dtype_name(kvs[k]), q.ppl_ratio, q.mean_kl, q.top1_agreement, q.ppl, q.ppl_f32);
            th_gpt2_free(m);
        }
    free(tok);
    th_gpt2_free(ref);
    return 0;
}
