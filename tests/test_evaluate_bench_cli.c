/* test_evaluate_bench_cli.c: `thermo bench eco` end to end on the simulated plant.
 *
 * Writes four Hugging Face models with random weights and GPT-2's vocabulary (tokenizer:
 * the default one): "lean" (L=1, C=32), "big" (L=4, C=256, a 64-token context: 8x lean's
 * lm_head and far more per layer, so the order of their token times survives a busy
 * machine; at C=128 it flipped once under load), "nan" (lean with one NaN in the final LayerNorm: a faulty model) and
 * "v512" (a 512-token vocabulary, too small for the data's ids). Runs
 * `thermo bench eco --models ... --data FILE --sensor sim --threads 1 --json --html FILE` (one
 * thread: a preempted second thread would make token times noise on a shared machine) and checks:
 *   - every model has the documented keys; lean and big are rated, with finite figures;
 *   - big costs more energy per token (prefill and decode) and per query than lean: the
 *     simulated plant's power follows the work loop's duty, so energy per token follows
 *     the time a token takes, which grows with the model;
 *   - stars: lean 5 (the cheapest), big 1 (the costliest); random weights predict no better
 *     than the uniform baseline, so neither is on the Pareto front (the free baseline
 *     dominates them); each energy figure carries its spread over the 3 windows asked for;
 *     short names, the full path under "path", "precision" f32;
 *   - "nan" is "not rated" by the KV-cache check and "v512" by the vocabulary check,
 *     with rating null, and neither moves the bands;
 *   - energy figures are marked modeled, perplexity measured; the machine names the sensor;
 *   - the HTML report is self-contained (no src= or href=), holds the SVG scatter and the
 *     note that figures are modeled;
 *   - `--json FILE` writes the document to FILE, not stdout;
 *   - bad command lines exit 2. */
#include "thermo/io.h"
#include "thermo/model.h"

#include "test_util.h"

#include <jansson.h>
#include <sys/wait.h>

static const char *data_text =
    "A soft answer turneth away wrath: but grievous words stir up anger.\n"
    "The tongue of the wise useth knowledge aright: but the mouth of fools poureth out foolishness.\n"
    "Better is little with the fear of the LORD than great treasure and trouble therewith.\n"
    "Pride goeth before destruction, and an haughty spirit before a fall.\n"
    "In the beginning God created the heaven and the earth. And the earth was without form, and void; "
    "and darkness was upon the face of the deep. And the Spirit of God moved upon the face of the waters. "
    "And God said, Let there be light: and there was light. And God saw the light, that it was good: and "
    "God divided the light from the darkness.\n";

static int save_model(const char *dir, int L, int C, int H, int V, int nan) {
    th_gpt2_config cfg = {64, V, L, H, C, 1e-5f};
    th_gpt2 *m = NULL;
    if (th_gpt2_create(&cfg, &m) != TH_OK) return 0;
    th_gpt2_init_random(m, 11);
    if (nan) {
        th_tensor_info ti;
        th_gpt2_tensor_info(&cfg, TH_P_LNFW, &ti);
        th_gpt2_params(m)[ti.offset + 3] = NAN;
    }
    th_status st = th_hf_save(m, dir);
    th_gpt2_free(m);
    return st == TH_OK;
}

static int run(const char *cmd) {
    printf("running %s\n", cmd);
    fflush(stdout);
    int s = system(cmd);
    return WIFEXITED(s) ? WEXITSTATUS(s) : -1;
}

static const char *jstr(json_t *o, const char *k) {
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

static double num(json_t *o, const char *k) {
    json_t *x = json_object_get(o, k);
    return json_is_number(x) ? json_number_value(x) : NAN;
}

static json_t *find_model(json_t *arr, const char *suffix) {
    for (size_t i = 0; i < json_array_size(arr); i++) {
        const char *p = json_string_value(json_object_get(json_array_get(arr, i), "model"));
        size_t n = p ? strlen(p) : 0, k = strlen(suffix);
        if (n >= k && !strcmp(p + n - k, suffix)) return json_array_get(arr, i);
    }
    return NULL;
}

int main(void) {
    const char *bin = getenv("THERMO_BIN");
    if (!bin || !bin[0]) {
        fprintf(stderr, "THERMO_BIN is not set (run through CTest)\n");
        return 2;
    }
    char tmp[4096], p[4400], cmd[32768];
    snprintf(tmp, sizeof tmp, "%s", test_tmp_dir("evaluate_bench_cli"));
    const char *names[4] = {"lean", "big", "nan", "v512"};
    int shapes[4][5] = {{1, 32, 2, 50257, 0}, {4, 256, 4, 50257, 0}, {1, 32, 2, 50257, 1}, {1, 32, 2, 512, 0}};
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s/%s", tmp, names[i]);
        CHECK(save_model(p, shapes[i][0], shapes[i][1], shapes[i][2], shapes[i][3], shapes[i][4]), "save %s: %s",
              p, th_last_error());
    }
    snprintf(p, sizeof p, "%s/data.txt", tmp);
    FILE *f = fopen(p, "w");
    CHECK(f != NULL, "write %s", p);
    if (!f) return test_summary();
    fputs(data_text, f);
    fclose(f);

    snprintf(cmd, sizeof cmd,
             "'%s' bench eco --models '%s/lean' '%s/big' '%s/nan' '%s/v512' --data '%s/data.txt' --sensor sim "
             "--governor none --threads 1 --min-seconds 0.25 --repeats 3 --decode 16 --prompts 3 --json --html '%s/report.html' "
             "> '%s/out.json'",
             bin, tmp, tmp, tmp, tmp, tmp, tmp, tmp);
    int rc = run(cmd);
    CHECK(rc == 0, "bench eco exits 0, got %d", rc);
    snprintf(p, sizeof p, "%s/out.json", tmp);
    json_error_t jerr;
    json_t *root = json_load_file(p, 0, &jerr);
    CHECK(root != NULL, "%s parses: %s", p, jerr.text);
    json_t *arr = json_object_get(root, "models");
    CHECK(json_array_size(arr) == 4, "4 models");
    json_t *lean = find_model(arr, "/lean"), *big = find_model(arr, "/big"), *bad = find_model(arr, "/nan"),
           *v512 = find_model(arr, "/v512");
    CHECK(lean && big && bad && v512, "every model reported");
    if (lean && big && bad && v512) {
        static const char *const keys[] = {"perplexity", "bits_per_byte", "j_per_token_prefill",
                                           "j_per_token_decode", "wh_per_1k_queries", "co2e_g_per_1k_queries",
                                           "water_ml_per_1k_queries", "tokens_per_s", "temp_mean_c",
                                           "temp_peak_c", "above_limit_s", "duty_mean", NULL};
        static const char *const maybe_null[] = {"nox_mg_per_1k_queries", "so2_mg_per_1k_queries",
                                                 "pm25_mg_per_1k_queries", NULL};
        json_t *rated[2] = {lean, big};
        for (int r = 0; r < 2; r++) {
            for (int k = 0; keys[k]; k++)
                CHECK(isfinite(num(rated[r], keys[k])), "%s: %s = %g", names[r], keys[k], num(rated[r], keys[k]));
            for (int k = 0; maybe_null[k]; k++)
                CHECK(json_object_get(rated[r], maybe_null[k]) != NULL, "%s: %s present", names[r], maybe_null[k]);
            CHECK(json_is_null(json_object_get(rated[r], "not_rated")), "%s rated", names[r]);
            json_t *basis = json_object_get(rated[r], "basis");
            CHECK(!strcmp(jstr(basis, "wh_per_1k_queries"), "modeled") && !strcmp(jstr(basis, "temp_peak_c"), "modeled") &&
                      !strcmp(jstr(basis, "perplexity"), "measured"),
                  "%s: basis marks", names[r]);
            CHECK(num(rated[r], "perplexity") > 1 && num(rated[r], "wh_per_1k_queries") > 0, "%s: positive",
                  names[r]);
        }
        printf("lean: %.4g J/tok prefill, %.4g J/tok decode, %.4g Wh/1kq; big: %.4g, %.4g, %.4g\n",
               num(lean, "j_per_token_prefill"), num(lean, "j_per_token_decode"), num(lean, "wh_per_1k_queries"),
               num(big, "j_per_token_prefill"), num(big, "j_per_token_decode"), num(big, "wh_per_1k_queries"));
        CHECK(num(big, "j_per_token_decode") > num(lean, "j_per_token_decode"), "big costs more per decoded token");
        CHECK(num(big, "j_per_token_prefill") > num(lean, "j_per_token_prefill"), "big costs more per scored token");
        CHECK(num(big, "wh_per_1k_queries") > num(lean, "wh_per_1k_queries"), "big costs more per query");
        CHECK(num(lean, "rating") == 5 && num(big, "rating") == 1, "stars: lean %g, big %g", num(lean, "rating"),
              num(big, "rating"));
        CHECK(json_is_false(json_object_get(lean, "pareto")) && num(lean, "bits_per_byte_saved") <= 0.01,
              "lean (random weights) saves no bits over the uniform baseline: not on the front (saved %g)",
              num(lean, "bits_per_byte_saved"));
        json_t *sp = json_object_get(lean, "wh_per_1k_queries_spread");
        CHECK(json_integer_value(json_object_get(sp, "n")) == 3 && num(sp, "min") <= num(sp, "median") &&
                  num(sp, "median") <= num(sp, "max") &&
                  fabs(num(sp, "median") - num(lean, "wh_per_1k_queries")) <= 1e-9 * num(sp, "median"),
              "lean: Wh/1kq is the median of 3 windows, within its range");
        CHECK(!strcmp(jstr(lean, "name"), "lean") && strstr(jstr(lean, "path"), "/lean"), "lean: name and path");
        const char *why = json_string_value(json_object_get(bad, "not_rated"));
        CHECK(why && strstr(why, "KV-cache"), "nan: not rated by the KV check: %s", why ? why : "(null)");
        CHECK(json_is_null(json_object_get(bad, "rating")) && json_is_false(json_object_get(bad, "pareto")),
              "nan: no rating");
        why = json_string_value(json_object_get(v512, "not_rated"));
        CHECK(why && strstr(why, "vocabulary"), "v512: not rated: %s", why ? why : "(null)");
        CHECK(json_is_null(json_object_get(v512, "rating")), "v512: no rating");
    }
    CHECK(!strcmp(jstr(root, "precision"), "f32"), "precision f32");
    json_t *mach = json_object_get(root, "machine");
    CHECK(json_integer_value(json_object_get(mach, "threads")) >= 1 && json_object_get(mach, "cpu") &&
              strstr(jstr(mach, "sensor_basis"), "modeled"),
          "machine block");
    json_t *fac = json_object_get(root, "factors");
    CHECK(json_is_object(json_object_get(fac, "grid_g_per_kwh")) || json_object_size(fac) > 3, "factors block");
    json_decref(root);

    snprintf(p, sizeof p, "%s/report.html", tmp);
    f = fopen(p, "r");
    CHECK(f != NULL, "%s written", p);
    if (f) {
        static char html[1 << 20];
        size_t n = fread(html, 1, sizeof html - 1, f);
        html[n] = '\0';
        fclose(f);
        CHECK(strstr(html, "<svg") && strstr(html, "<circle") && strstr(html, "modeled") && strstr(html, "not rated"),
              "report holds the scatter, the modeled note and the unrated models");
        CHECK(!strstr(html, "src=") && !strstr(html, "href=") && !strstr(html, "<link"), "no external assets");
    }

    snprintf(cmd, sizeof cmd,
             "'%s' bench eco --models '%s/lean' --data '%s/data.txt' --sensor sim --min-seconds 0.05 --decode 4 "
             "--prompts 1 --json '%s/file.json' > '%s/stdout.txt'",
             bin, tmp, tmp, tmp, tmp);
    CHECK(run(cmd) == 0, "--json FILE exits 0");
    snprintf(p, sizeof p, "%s/file.json", tmp);
    root = json_load_file(p, 0, &jerr);
    CHECK(root && json_array_size(json_object_get(root, "models")) == 1, "--json FILE: %s", jerr.text);
    json_decref(root);
    snprintf(p, sizeof p, "%s/stdout.txt", tmp);
    f = fopen(p, "r");
    CHECK(f && fgetc(f) == EOF, "--json FILE: nothing on stdout");
    if (f) fclose(f);

    snprintf(cmd, sizeof cmd, "'%s' bench eco --data '%s/data.txt' 2>/dev/null", bin, tmp);
    CHECK(run(cmd) == 2, "no --models: exit 2");
    snprintf(cmd, sizeof cmd, "'%s' bench eco --models '%s/lean' --data '%s/data.txt' --decode 0 2>/dev/null", bin,
             tmp, tmp);
    CHECK(run(cmd) == 2, "--decode 0: exit 2");
    snprintf(cmd, sizeof cmd, "'%s' bench eco --models '%s/lean' --data '%s/missing.txt' 2>/dev/null", bin, tmp,
             tmp);
    CHECK(run(cmd) != 0, "missing data: fails");
    return test_summary();
}
