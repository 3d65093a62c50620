/* test_serve_api.c: the server over real HTTP on a free loopback port, in-process
 * (th_server_start) and as `thermo serve`: greedy completions equal `thermo generate
 * --temperature 0` token for token, seeded sampling is the same alone and with concurrent
 * requests (batch invariance), SSE framing, every bad input gets its status and an error
 * naming the field while the server keeps serving, the API key, thermal refusal (503 +
 * Retry-After), the bounded queue (429), a disconnect cancelling its sequence, /metrics,
 * and SIGTERM ending the CLI with its energy report. Simulated plant, tiny random model. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>

#include <jansson.h>

#include "test_util.h"
#include "thermo/io.h"
#include "thermo/serve.h"

static char dir[512], model[600];

static int make_model(int ctx) {
    th_gpt2_config cfg = {ctx, 50257, 2, 2, 32, 1e-5f};
    th_gpt2 *m = NULL;
    if (th_gpt2_create(&cfg, &m) != TH_OK) return 0;
    th_gpt2_init_random(m, 7);
    th_status st = th_hf_save(m, model);
    th_gpt2_free(m);
    return st == TH_OK;
}

static th_server *start(int parallel, int queue, double limit_c, double duty, const char *key) {
    th_serve_opts o = th_serve_defaults();
    o.model_path = model;
    o.port = 0;
    o.parallel = parallel;
    o.queue_max = queue;
    o.api_key = key;
    o.max_body_bytes = 4096;
    o.timeout_s = 1;
    o.run.sensor = "sim";
    o.run.governor = "none";
    o.run.temp_limit_c = limit_c;
    o.run.fixed_duty = duty;
    o.run.hz = 20;
    th_server *s = NULL;
    if (th_server_start(&o, &s) != TH_OK) {
        fprintf(stderr, "FAIL server start: %s\n", th_last_error());
        exit(1);
    }
    return s;
}

/* curl: status code; body into *out (malloc'd) and headers into *hdr (may be NULL) */
static int http(int port, const char *method, const char *path, const char *body, const char *extra, char **out,
                char **hdr) {
    SPATH(req, "req.bin");
    SPATH(resp, "resp.bin");
    SPATH(hd, "hdr.txt");
    if (body) test_write_text(req, body);
    char cmd[3000];
    snprintf(cmd, sizeof cmd, "curl -s -m 20 -X %s %s %s%s -D '%s' -o '%s' -w '%%{http_code}' 'http://127.0.0.1:%d%s' > '%s.code'",
             method, extra ? extra : "", body ? "--data-binary @" : "", body ? req : "", hd, resp, port, path, resp);
    int code = -1;
    if (system(cmd) == 0) {
        char *c = test_read_file(spath("resp.bin.code"), NULL);
        if (c) code = atoi(c);
        free(c);
    }
    if (out) *out = test_read_file(resp, NULL);
    if (hdr) *hdr = test_read_file(hd, NULL);
    return code;
}

static json_t *parse(const char *s) { return s ? json_loads(s, 0, NULL) : NULL; }

static const char *jpath_str(json_t *j, const char *a, const char *b) {
    json_t *x = json_object_get(j, a);
    if (b) x = json_object_get(x, b);
    return json_string_value(x) ? json_string_value(x) : "";
}

static const char *choice_text(json_t *j) {
    return json_string_value(json_object_get(json_array_get(json_object_get(j, "choices"), 0), "text"));
}

/* One bad request: its status, an error JSON whose param (or message) names the field. */
static void bad_case(int port, const char *body, const char *extra, int want, const char *field, const char *what) {
    char *out = NULL;
    int code = http(port, "POST", "/v1/completions", body, extra, &out, NULL);
    json_t *j = parse(out);
    const char *param = jpath_str(j, "error", "param"), *msg = jpath_str(j, "error", "message");
    CHECK(code == want, "%s: status %d, want %d (%s)", what, code, want, out ? out : "");
    CHECK(j && json_is_object(json_object_get(j, "error")) && jpath_str(j, "error", "type")[0],
          "%s: an OpenAI-shaped error: %s", what, out ? out : "");
    CHECK(!strcmp(param, field) || strstr(msg, field), "%s: error names '%s': %s", what, field, out ? out : "");
    json_decref(j);
    free(out);
    /* and the server keeps serving */
    CHECK(http(port, "GET", "/health", NULL, NULL, NULL, NULL) == 200, "%s: still serving", what);
}

static int connect_port(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Sends a streaming completion on a raw socket and, if wait, reads until the first data
 * chunk (-1 if none comes). */
static int open_stream(int port, const char *body, const char *auth, int wait) {
    int fd = connect_port(port);
    if (fd < 0) return -1;
    char req[2048];
    int n = snprintf(req, sizeof req,
                     "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n%s"
                     "Content-Length: %zu\r\n\r\n%s", auth ? auth : "", strlen(body), body);
    if (write(fd, req, (size_t)n) != n) return -1;
    if (!wait) return fd;
    char buf[4096];
    size_t got = 0;
    for (int tries = 0; tries < 100 && got < sizeof buf - 1; tries++) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 100) <= 0) continue;
        ssize_t r = read(fd, buf + got, sizeof buf - 1 - got);
        if (r <= 0) break;
        got += (size_t)r;
        buf[got] = 0;
        if (strstr(buf, "data: ")) return fd;
    }
    close(fd);
    return -1;
}

static double metric(int port, const char *name) {
    char *out = NULL;
    http(port, "GET", "/metrics", NULL, NULL, &out, NULL);
    double v = NAN;
    const char *p = out ? strstr(out, name) : NULL;
    while (p && p > out && p[-1] != '\n') p = strstr(p + 1, name);
    if (p) v = atof(p + strlen(name));
    free(out);
    return v;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

int main(void) {
    snprintf(dir, sizeof dir, "%s", scratch_make("serve"));
    snprintf(model, sizeof model, "%s/model", dir);
    CHECK(make_model(256), "model");
    th_threads_set(2);
    CHECK(th_compute_select("naive") == TH_OK, "naive backend");

    /* ---- the API on one server */
    th_server *s = start(4, 8, NAN, NAN, "sekret");
    int port = th_server_port(s);
    const char *auth = "-H 'Authorization: Bearer sekret'";
    char *out = NULL, *hdr = NULL;
    CHECK(http(port, "GET", "/health", NULL, NULL, &out, NULL) == 200 && strstr(out, "\"thermal\""), "health: %s", out);
    free(out);

    /* greedy equals thermo generate --temperature 0 */
    const char *bin = getenv("THERMO_BIN") ? getenv("THERMO_BIN") : "build/thermo";
    char cmd[4600];
    SPATH(gen_out, "gen.txt");
    snprintf(cmd, sizeof cmd,
             "%s generate --model '%s' --prompt 'And God said' --max-tokens 24 --temperature 0 --compute naive "
             "--loop-guard off --sensor sim --governor none > '%s' 2>/dev/null", bin, model, gen_out);
    CHECK(system(cmd) == 0, "thermo generate ran");
    char *want = test_read_file(gen_out, NULL);
    if (want && *want) want[strlen(want) - 1] = 0; /* its closing newline */
    int code = http(port, "POST", "/v1/completions",
                    "{\"model\":\"x\",\"prompt\":\"And God said\",\"max_tokens\":24,\"temperature\":0,"
                    "\"unknown_field\":{\"a\":1},\"user\":\"u\"}", auth, &out, &hdr);
    json_t *j = parse(out);
    CHECK(code == 200 && j, "greedy completion: %d %s", code, out);
    CHECK(want && choice_text(j) && !strcmp(choice_text(j), want), "greedy: server '%s' vs generate '%s'",
          choice_text(j) ? choice_text(j) : "(none)", want ? want : "(none)");
    json_t *eco = json_object_get(j, "eco"), *usage = json_object_get(j, "usage");
    CHECK(json_integer_value(json_object_get(usage, "completion_tokens")) == 24 &&
              json_integer_value(json_object_get(usage, "prompt_tokens")) == 3,
          "usage: %s", out);
    CHECK(json_number_value(json_object_get(eco, "energy_j")) > 0 && json_object_get(eco, "co2e_g") &&
              json_object_get(eco, "water_ml") && json_object_get(eco, "prefill_j") && json_object_get(eco, "decode_j") &&
              strstr(jpath_str(j, "eco", "basis"), "modeled"),
          "eco object: %s", out);
    CHECK(!strcmp(jpath_str(json_array_get(json_object_get(j, "choices"), 0), "finish_reason", NULL), "length"),
          "finish length");
    CHECK(hdr && strstr(hdr, "X-Eco-Energy-J:") && strstr(hdr, "X-Eco-Basis: modeled"), "eco headers: %s", hdr);
    json_decref(j);
    free(out);
    free(hdr);

    /* SSE: data chunks, a last chunk with usage and eco, then [DONE]; the same text */
    code = http(port, "POST", "/v1/completions",
                "{\"prompt\":\"And God said\",\"max_tokens\":24,\"temperature\":0,\"stream\":true}", auth, &out, &hdr);
    CHECK(code == 200 && hdr && strstr(hdr, "text/event-stream"), "stream: %d", code);
    char text[4096] = "";
    int chunks = 0, final_ok = 0, done = 0;
    for (char *line = out ? strtok(out, "\n") : NULL; line; line = strtok(NULL, "\n")) {
        CHECK(!strncmp(line, "data: ", 6), "SSE line: %s", line);
        if (!strcmp(line, "data: [DONE]")) {
            done = 1;
            continue;
        }
        CHECK(!done, "nothing after [DONE]");
        json_t *c = parse(line + 6);
        if (choice_text(c)) strncat(text, choice_text(c), sizeof text - strlen(text) - 1);
        if (json_object_get(c, "usage") && json_object_get(c, "eco")) final_ok = 1;
        chunks++;
        json_decref(c);
    }
    CHECK(done && final_ok && chunks >= 2, "stream: %d chunks, final usage+eco %d, [DONE] %d", chunks, final_ok, done);
    CHECK(want && !strcmp(text, want), "stream text '%s' vs '%s'", text, want ? want : "");
    free(out);
    free(hdr);
    free(want);

    /* batch invariance: seeded sampling with logprobs, alone and with 3 others at once */
    const char *sampled = "{\"prompt\":[1,2,3],\"max_tokens\":40,\"temperature\":0.9,\"top_k\":50,\"seed\":%d,\"logprobs\":1}";
    char alone[4][4096];
    for (int k = 0; k < 4; k++) {
        char b[256];
        snprintf(b, sizeof b, sampled, 10 + k);
        http(port, "POST", "/v1/completions", b, auth, &out, NULL);
        snprintf(alone[k], sizeof alone[k], "%s", out ? out : "");
        free(out);
    }
    snprintf(cmd, sizeof cmd, "cd '%s' && for k in 0 1 2 3; do printf '" "{\"prompt\":[1,2,3],\"max_tokens\":40,"
             "\"temperature\":0.9,\"top_k\":50,\"seed\":1%%d,\"logprobs\":1}' $k > b$k.json; done; for k in 0 1 2 3; do "
             "curl -s -m 20 -H 'Authorization: Bearer sekret' --data-binary @b$k.json "
             "http://127.0.0.1:%d/v1/completions -o r$k & done; wait", dir, port);
    CHECK(system(cmd) == 0, "concurrent requests");
    for (int k = 0; k < 4; k++) {
        char name[16];
        snprintf(name, sizeof name, "r%d", k);
        char *r = test_read_file(spath(name), NULL);
        json_t *a = parse(alone[k]), *b = parse(r);
        json_t *la = json_object_get(json_array_get(json_object_get(a, "choices"), 0), "logprobs");
        json_t *lb = json_object_get(json_array_get(json_object_get(b, "choices"), 0), "logprobs");
        CHECK(a && b && choice_text(a) && choice_text(b) && !strcmp(choice_text(a), choice_text(b)) && la && lb &&
                  json_equal(la, lb),
              "request %d: tokens and logprobs differ alone and batched:\n%.300s\n%.300s", k, alone[k], r ? r : "");
        json_decref(a);
        json_decref(b);
        free(r);
    }
    printf("largest decode batch so far: %g rows\n", metric(port, "thermo_decode_batch_rows_max "));

    /* bad input: status and an error naming the field; the server keeps serving */
    bad_case(port, "{\"prompt\": \"x\", ", auth, 400, "body", "malformed JSON");
    bad_case(port, "[1,2]", auth, 400, "body", "not an object");
    bad_case(port, "{\"prompt\":\"x\",\"max_tokens\":\"ten\"}", auth, 400, "max_tokens", "wrong type");
    bad_case(port, "{\"prompt\":\"x\",\"max_tokens\":-1}", auth, 400, "max_tokens", "negative max_tokens");
    bad_case(port, "{\"prompt\":\"x\",\"max_tokens\":100000000}", auth, 400, "max_tokens", "huge max_tokens");
    bad_case(port, "{\"prompt\":\"x\",\"temperature\":\"hot\"}", auth, 400, "temperature", "temperature type");
    bad_case(port, "{\"prompt\":\"x\",\"stream\":1}", auth, 400, "stream", "stream type");
    bad_case(port, "{\"prompt\":\"x\",\"n\":2}", auth, 400, "n", "n = 2");
    bad_case(port, "{\"max_tokens\":3}", auth, 400, "prompt", "no prompt");
    bad_case(port, "{\"prompt\":[1,50257]}", auth, 400, "prompt", "token id out of range");
    bad_case(port, "{\"prompt\":[1,\"a\"]}", auth, 400, "prompt", "token id of the wrong type");
    bad_case(port, "{\"prompt\":\"\xff\xfe bad\"}", auth, 400, "body", "invalid UTF-8");
    {
        char *big = malloc(3000);
        strcpy(big, "{\"prompt\":\"");
        for (int i = 0; i < 300; i++) strcat(big, " a b");
        strcat(big, "\"}");
        bad_case(port, big, auth, 400, "prompt", "prompt longer than the context");
        char *huge = malloc(9000);
        strcpy(huge, "{\"prompt\":\"");
        for (int i = 0; i < 8500; i++) strcat(huge, "a");
        strcat(huge, "\"}");
        bad_case(port, huge, auth, 413, "body", "oversize body");
        free(big);
        free(huge);
    }
    bad_case(port, "{\"prompt\":\"x\"}", "-H 'Authorization: Bearer wrong'", 401, "API key", "wrong API key");
    bad_case(port, "{\"prompt\":\"x\"}", NULL, 401, "API key", "no API key");
    code = http(port, "GET", "/nowhere", NULL, auth, &out, NULL);
    CHECK(code == 404 && out && strstr(out, "not_found_error"), "404: %d %s", code, out);
    free(out);
    /* a client that sends nothing: the others are served, and it is dropped after the timeout */
    int idle = connect_port(port);
    CHECK(idle >= 0 && http(port, "GET", "/health", NULL, NULL, NULL, NULL) == 200, "served beside a silent client");
    struct pollfd pf = {idle, POLLIN, 0};
    char c1;
    CHECK(poll(&pf, 1, 8000) == 1 && read(idle, &c1, 1) <= 0, "the silent client was disconnected");
    close(idle);

    /* tokenize / detokenize / models / dashboard / metrics */
    code = http(port, "POST", "/tokenize", "{\"content\":\"And God said\"}", auth, &out, NULL);
    CHECK(code == 200 && out && strstr(out, "\"tokens\":["), "tokenize: %s", out);
    free(out);
    code = http(port, "POST", "/detokenize", "{\"tokens\":[1870,1793,531]}", auth, &out, NULL);
    CHECK(code == 200 && out && strstr(out, "\"content\":\"And God said\""), "detokenize: %s", out);
    free(out);
    code = http(port, "POST", "/detokenize", "{\"tokens\":[99999999]}", auth, &out, NULL);
    CHECK(code == 400 && out && strstr(out, "tokens"), "detokenize out of range: %s", out);
    free(out);
    code = http(port, "GET", "/v1/models", NULL, auth, &out, NULL);
    CHECK(code == 200 && out && strstr(out, "\"object\":\"list\"") && strstr(out, "\"id\":\"model\""), "models: %s", out);
    free(out);
    code = http(port, "GET", "/", NULL, NULL, &out, NULL);
    CHECK(code == 200 && out && strstr(out, "<canvas") && !strstr(out, "http://") && !strstr(out, "https://"),
          "dashboard: self-contained");
    free(out);
    code = http(port, "GET", "/metrics", NULL, NULL, &out, NULL);
    CHECK(code == 200 && out, "metrics open without a key");
    static const char *const names[] = {"thermo_requests_total{code=\"400\"}", "thermo_request_finish_total{reason=\"length\"}",
                                        "thermo_time_to_first_token_seconds_bucket{le=\"+Inf\"}",
                                        "thermo_inter_token_latency_seconds_count", "thermo_e2e_request_latency_seconds_sum",
                                        "thermo_requests_waiting", "thermo_requests_running",
                                        "thermo_temperature_celsius{origin=\"modeled\"", "thermo_governor_duty_ratio",
                                        "thermo_energy_joules_total", "thermo_co2e_grams_total", "thermo_joules_per_token",
                                        "thermo_prompt_tokens_total", "thermo_generation_tokens_total",
                                        "thermo_decode_steps_total", "thermo_decode_step_seconds_total",
                                        "thermo_serve_overhead_seconds_total"};
    for (size_t k = 0; k < sizeof names / sizeof *names; k++) CHECK(out && strstr(out, names[k]), "metric %s", names[k]);
    int colon = 0;
    for (char *line = out ? strtok(out, "\n") : NULL; line; line = strtok(NULL, "\n")) {
        if (line[0] == '#') continue;
        char *end = strpbrk(line, "{ ");
        for (char *p = line; end && p < end; p++) colon |= *p == ':';
    }
    CHECK(!colon, "no colons in metric names");
    free(out);
    CHECK(metric(port, "thermo_requests_total{code=\"401\"} ") == 2, "401s counted");
    CHECK(metric(port, "thermo_decode_steps_total ") > 0 && metric(port, "thermo_decode_step_seconds_total ") > 0 &&
              metric(port, "thermo_serve_overhead_seconds_total ") > 0,
          "decode step time and serving overhead counted");

    /* a client that disconnects mid-stream cancels its sequence */
    int fd = open_stream(port, "{\"prompt\":[5],\"max_tokens\":250,\"temperature\":0,\"stream\":true}",
                         "Authorization: Bearer sekret\r\n", 1);
    CHECK(fd >= 0, "stream opened");
    close(fd);
    double cancelled = 0;
    for (int t = 0; t < 100 && !(cancelled >= 1); t++) {
        sleep_ms(50);
        cancelled = metric(port, "thermo_request_finish_total{reason=\"cancelled\"} ");
    }
    CHECK(cancelled == 1, "disconnect cancelled the sequence (%g)", cancelled);
    th_serve_summary sum;
    CHECK(th_server_stop(s, 1, &sum) == TH_OK && sum.fig.have_energy && sum.completion_tokens > 0, "stop");

    /* ---- hot: one sequence at once and no queue: 503 with Retry-After */
    s = start(2, 4, -40, 0.05, NULL);
    port = th_server_port(s);
    fd = open_stream(port, "{\"prompt\":[5],\"max_tokens\":250,\"temperature\":0,\"stream\":true}", NULL, 1);
    CHECK(fd >= 0, "hot: first stream admitted");
    code = http(port, "POST", "/v1/completions", "{\"prompt\":[7],\"max_tokens\":4}", NULL, &out, &hdr);
    CHECK(code == 503 && out && strstr(out, "thermal_unavailable") && hdr && strstr(hdr, "Retry-After:"),
          "hot: 503 thermal_unavailable with Retry-After: %d %s", code, out);
    free(out);
    free(hdr);
    code = http(port, "GET", "/health", NULL, NULL, &out, NULL);
    CHECK(code == 200 && out && strstr(out, "\"thermal\":\"hot\""), "health says hot: %s", out);
    free(out);
    close(fd);
    CHECK(th_server_stop(s, 0, NULL) == TH_OK, "stop hot");

    /* ---- overloaded: one running, one queued, the next gets 429 with Retry-After */
    s = start(1, 1, NAN, 0.05, NULL);
    port = th_server_port(s);
    fd = open_stream(port, "{\"prompt\":[5],\"max_tokens\":250,\"temperature\":0,\"stream\":true}", NULL, 1);
    int fd2 = open_stream(port, "{\"prompt\":[6],\"max_tokens\":2,\"temperature\":0,\"stream\":true}", NULL, 0);
    for (int t = 0; t < 100 && metric(port, "thermo_requests_waiting ") != 1; t++) sleep_ms(20);
    code = http(port, "POST", "/v1/completions", "{\"prompt\":[7],\"max_tokens\":4}", NULL, &out, &hdr);
    CHECK(code == 429 && out && strstr(out, "overloaded") && hdr && strstr(hdr, "Retry-After:"),
          "full queue: 429 with Retry-After: %d %s", code, out);
    free(out);
    free(hdr);
    if (fd >= 0) close(fd);
    if (fd2 >= 0) close(fd2);
    CHECK(th_server_stop(s, 0, NULL) == TH_OK, "stop overloaded");

    /* ---- the CLI: --port-file, SIGTERM ends it with its energy report */
    SPATH(pf_path, "port");
    SPATH(log, "serve.log");
    snprintf(cmd, sizeof cmd, "%s serve --model '%s' --port 0 --port-file '%s' --sensor sim --governor none 2> '%s' & echo $! > '%s.pid'",
             bin, model, pf_path, log, pf_path);
    CHECK(system(cmd) == 0, "thermo serve started");
    char *pt = NULL;
    for (int t = 0; t < 200 && !(pt = test_read_file(pf_path, NULL)); t++) sleep_ms(50);
    int cport = pt ? atoi(pt) : -1;
    free(pt);
    code = http(cport, "POST", "/v1/completions", "{\"prompt\":\"Hello\",\"max_tokens\":5}", NULL, &out, NULL);
    CHECK(code == 200 && out && strstr(out, "\"eco\""), "CLI server answers: %d", code);
    free(out);
    char *pid = test_read_file(spath("port.pid"), NULL);
    int p = pid ? atoi(pid) : 0;
    free(pid);
    CHECK(p > 0 && kill(p, SIGTERM) == 0, "SIGTERM");
    int gone = 0;
    for (int t = 0; t < 200 && !gone; t++) {
        sleep_ms(50);
        gone = kill(p, 0) != 0;
    }
    char *l = test_read_file(log, NULL);
    CHECK(gone && l && strstr(l, "served 1 requests") && strstr(l, "energy"), "CLI stopped with its report: %s", l);
    free(l);
    scratch_cleanup();
    return test_summary();
}
