/* generate.c: the generation loop, th_generate. Prefill as one unit of work, then one unit
 * per token: sample, judge with the loop guard, hand the token to the caller, check the
 * budget, decode the next position. The monitored run paces every unit and charges it its
 * energy, which becomes one telemetry record per token and the budget's charge. The
 * server, distillation and continual learning call this; `thermo generate` only prints. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "thermo/pipeline.h"

th_generate_opts th_generate_defaults(void) {
    th_generate_opts o;
    memset(&o, 0, sizeof o);
    o.max_tokens = 64;
    o.sampling.temperature = 0.8f;
    o.sampling.top_k = 40;
    o.sampling.top_p = 0.95f;
    o.seed = 1337;
    o.loop_guard = th_loop_guard_defaults();
    return o;
}

const char *th_gen_stop_name(th_gen_stop s) {
    switch (s) {
    case TH_GEN_STOP_MAX_TOKENS: return "max-tokens";
    case TH_GEN_STOP_END_OF_TEXT: return "end of text";
    case TH_GEN_STOP_CONTEXT_FULL: return "context full";
    case TH_GEN_STOP_LOOP: return "loop";
    case TH_GEN_STOP_BUDGET: return "budget";
    case TH_GEN_STOP_INTERRUPTED: return "interrupted";
    case TH_GEN_STOP_CALLER: return "caller";
    }
    return "?";
}

th_status th_generate_prompt(const th_tokenizer *tok, const th_gpt2_config *cfg, const char *prompt, int **ids,
                             size_t *n) {
    *ids = NULL;
    *n = 0;
    int *out = NULL;
    size_t len = 0;
    if (prompt && *prompt) {
        th_status st = th_tokenizer_encode(tok, prompt, strlen(prompt), 0, &out, &len);
        if (st != TH_OK) return st;
    } else {
        // no prompt: start as a new document does, after <|endoftext|>
        int eot = th_tokenizer_eot(tok);
        if (eot < 0) return th_fail(TH_ERR_INVALID, "prompt: an empty prompt needs a vocabulary with <|endoftext|>");
        if (!(out = th_alloc(sizeof(int)))) return th_fail(TH_ERR_NOMEM, "prompt: out of memory");
        out[0] = eot;
        len = 1;
    }
    th_status st = TH_OK;
    if (len >= (size_t)cfg->max_seq_len)
        st = th_fail(TH_ERR_INVALID, "prompt: %zu tokens, the model's context is %d", len, cfg->max_seq_len);
    for (size_t i = 0; i < len && st == TH_OK; i++)
        if (out[i] < 0 || out[i] >= cfg->vocab_size)
            st = th_fail(TH_ERR_FORMAT, "prompt: token %d is outside the model's vocabulary of %d", out[i],
                         cfg->vocab_size);
    if (st != TH_OK) {
        th_free(out);
        return st;
    }
    *ids = out;
    *n = len;
    return TH_OK;
}

/* One unit of work: begin, run the model over `n` tokens at the cache's end, end (paced),
 * record. The unit's status is the model's; an interruption during the wait is returned
 * through *interrupted. */
static th_status infer_unit(th_gpt2 *m, th_gpt2_kv *kv, const int *tokens, int n, float *logits, th_run *run,
                            long index, th_unit_cost *cost, int *interrupted) {
    uint64_t t0 = th_now_ns();
    th_run_unit_begin(run);
    th_status st = th_gpt2_infer(m, kv, tokens, n, logits, 0);
    uint64_t t1 = th_now_ns();
    th_status paced = th_run_unit_end(run, cost);
    *interrupted = paced == TH_ERR_INTERRUPTED;
    th_run_log_token(run, index, n, (t1 - t0) / 1e6, cost);
    return st;
}

th_status th_generate(th_gpt2 *m, const th_tokenizer *tok, const int *prompt, size_t n_prompt,
                      const th_generate_opts *o, th_generate_result *out) {
    memset(out, 0, sizeof *out);
    const th_gpt2_config *cfg = th_gpt2_get_config(m);
    if (n_prompt == 0 || n_prompt >= (size_t)cfg->max_seq_len)
        return th_fail(TH_ERR_INVALID, "generate: the prompt is %zu tokens; it must be 1 to %d", n_prompt,
                       cfg->max_seq_len - 1);
    if (o->max_tokens < 0) return th_fail(TH_ERR_INVALID, "generate: max_tokens %ld is negative", o->max_tokens);
    float *logits = th_alloc(sizeof(float) * (size_t)cfg->vocab_size);
    th_gpt2_kv *kv = NULL;
    th_sampler *sampler = NULL;
    th_loop_guard *lg = NULL;
    th_budget budget;
    th_status st = TH_OK;
    if (!logits) {
        st = th_fail(TH_ERR_NOMEM, "generate: out of memory");
        goto done;
    }
    if ((st = th_sampler_create(cfg->vocab_size, &o->sampling, o->seed, &sampler)) != TH_OK ||
        (st = th_gpt2_kv_create(m, cfg->max_seq_len, &kv)) != TH_OK ||
        (st = th_loop_guard_create(&o->loop_guard, &lg)) != TH_OK || (st = th_budget_init(&budget, &o->budget)) != TH_OK)
        goto done;
    out->prompt_tokens = (long)n_prompt;
    out->stop = TH_GEN_STOP_MAX_TOKENS;
    int eot = th_tokenizer_eot(tok), interrupted = 0;
    uint64_t t0 = th_now_ns();
    st = infer_unit(m, kv, prompt, (int)n_prompt, logits, o->run, 0, &out->prefill_cost, &interrupted);
    uint64_t t1 = th_now_ns();
    out->prefill_s = (t1 - t0) / 1e9;
    if (interrupted) out->stop = TH_GEN_STOP_INTERRUPTED;
    while (st == TH_OK && !interrupted && out->generated < o->max_tokens) {
        int next = th_sampler_next(sampler, logits);
        if (next == eot) {
            out->stop = TH_GEN_STOP_END_OF_TEXT;
            break;
        }
        // the loop guard judges the output itself, before the token is handed out
        th_guard_action la = th_loop_guard_feed(lg, next, &out->loop);
        if (la == TH_GUARD_WARNED && o->on_warning) o->on_warning(out->loop.reason, o->user);
        if (la == TH_GUARD_HALT) {
            out->stop = TH_GEN_STOP_LOOP;
            snprintf(out->stop_detail, sizeof out->stop_detail, "%s", out->loop.reason);
            break;
        }
        size_t len = 0;
        const char *bytes = th_tokenizer_token_bytes(tok, next, &len);
        out->generated++;
        if (o->on_token && o->on_token(next, bytes, len, o->user) != 0) {
            out->stop = TH_GEN_STOP_CALLER;
            break;
        }
        if (th_gpt2_kv_len(kv) >= cfg->max_seq_len) {
            out->stop = TH_GEN_STOP_CONTEXT_FULL;
            break;
        }
        if (out->generated >= o->max_tokens) break;
        if (!th_budget_allow(&budget, NULL)) {
            out->stop = TH_GEN_STOP_BUDGET;
            th_budget_describe(&budget, out->stop_detail, sizeof out->stop_detail);
            break;
        }
        th_unit_cost c;
        st = infer_unit(m, kv, &next, 1, logits, o->run, out->generated, &c, &interrupted);
        th_unit_cost_add(&out->decode_cost, &c);
        th_guard_cost gc = {c.energy_j, c.co2e_g, c.water_ml, c.busy_s + c.idle_s};
        th_budget_charge(&budget, &gc);
        if (interrupted) out->stop = TH_GEN_STOP_INTERRUPTED;
    }
    out->decode_s = (th_now_ns() - t1) / 1e9;
    out->prefill_tok_s = out->prefill_s > 0 ? n_prompt / out->prefill_s : 0.0;
    // tokens after the first are the ones decoding produced (the first comes from the prefill)
    out->decode_tok_s = out->generated > 1 && out->decode_s > 0 ? (out->generated - 1) / out->decode_s : 0.0;
    th_loop_guard_verdict(lg, &out->loop);
done:
    th_loop_guard_free(lg);
    th_sampler_free(sampler);
    th_gpt2_kv_free(kv);
    th_free(logits);
    return st;
}
