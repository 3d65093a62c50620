/* test_io_run_meta.c: the typed run metadata a checkpoint carries. Round trip of every
 * field, only the agreed keys are read, a wrong type or range names the field and leaves
 * the result empty, and a checkpoint written by training carries last_val_loss. */
#include "test_util.h"
#include "thermo/io.h"

int main(void) {
    th_run_meta m = th_run_meta_empty(), back;
    CHECK(m.has == 0 && isnan(m.last_val_loss) && !strcmp(m.tokenizer, "gpt2"), "empty metadata");
    m.has = TH_META_STEPS | TH_META_BATCH | TH_META_SEQ | TH_META_GRAD_ACCUM | TH_META_WARMUP | TH_META_SEED |
            TH_META_LR | TH_META_WEIGHT_DECAY | TH_META_GRAD_CLIP | TH_META_PRECISION;
    m.precision = 1; // bf16
    m.steps = 300, m.batch = 8, m.seq = 64, m.grad_accum = 2, m.warmup = 30, m.seed = 0x7fffffffffffffffULL;
    m.lr = 1e-3, m.weight_decay = 0.1, m.grad_clip = 1.0, m.last_val_loss = 5.4375;
    char json[TH_RUN_META_MAX];
    CHECK(th_run_meta_to_json(&m, json, sizeof json) == TH_OK, "to json: %s", th_last_error());
    CHECK(th_run_meta_parse(json, "t", &back) == TH_OK, "parse: %s", th_last_error());
    CHECK(back.has == m.has && back.steps == 300 && back.batch == 8 && back.seq == 64 && back.grad_accum == 2 &&
              back.warmup == 30 && back.seed == m.seed && back.lr == m.lr && back.weight_decay == m.weight_decay &&
              back.grad_clip == m.grad_clip && back.last_val_loss == 5.4375 && back.precision == 1 &&
              strstr(json, "\"precision\":\"bf16\""),
          "round trip: %s", json);

    // an unset field stays unset; no recorded loss stays NaN
    th_run_meta partial = th_run_meta_empty();
    partial.has = TH_META_STEPS;
    partial.steps = 10;
    CHECK(th_run_meta_to_json(&partial, json, sizeof json) == TH_OK && th_run_meta_parse(json, "t", &back) == TH_OK &&
              back.has == TH_META_STEPS && isnan(back.last_val_loss) && !strstr(json, "batch"),
          "partial: %s", json);

    // only the agreed keys, of the right type and range
    CHECK(th_run_meta_parse("{\"last_val_loss\": 2.5, \"val_loss\": 9}", "t", &back) == TH_OK &&
              back.last_val_loss == 2.5, "last_val_loss");
    CHECK(th_run_meta_parse("{\"val_loss\": 3.25}", "t", &back) == TH_OK && isnan(back.last_val_loss),
          "only the agreed key is read");
    CHECK_FAIL(th_run_meta_parse("{\"last_val_loss\": \"2.5\"}", "ck.bin", &back), TH_ERR_FORMAT, "last_val_loss", "last_val_loss");
    CHECK(isnan(back.last_val_loss) && back.has == 0, "a rejected parse leaves the metadata empty");
    CHECK_FAIL(th_run_meta_parse("{\"batch\": 0}", "ck.bin", &back), TH_ERR_FORMAT, "batch", "batch");
    CHECK_FAIL(th_run_meta_parse("{\"steps\": 1.5}", "ck.bin", &back), TH_ERR_FORMAT, "steps", "steps");
    CHECK_FAIL(th_run_meta_parse("{\"lr\": -1}", "ck.bin", &back), TH_ERR_FORMAT, "lr", "lr");
    CHECK_FAIL(th_run_meta_parse("{\"precision\": \"fp8\"}", "ck.bin", &back), TH_ERR_FORMAT, "precision", "precision");
    CHECK(th_run_meta_parse("{\"precision\": \"f32\"}", "t", &back) == TH_OK && back.precision == 0 &&
              (back.has & TH_META_PRECISION), "precision f32");
    CHECK_FAIL(th_run_meta_parse("not json", "ck.bin", &back), TH_ERR_FORMAT, "ck.bin", "ck.bin");
    CHECK_FAIL(th_run_meta_parse(NULL, "ck.bin", &back), TH_ERR_FORMAT, "absent", "absent");
    CHECK(th_run_meta_to_json(&m, json, 8) == TH_ERR_INVALID, "a buffer too small is refused");
    return test_summary();
}
