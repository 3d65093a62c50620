/* test_serve_reload.c: training and serving apart. A server follows a learn state
 * (th_serve_opts.state_dir) while client threads keep sending completions, and the test
 * promotes models the way `thermo learn` does (DIR/model exported, then
 * DIR/learn/state.json replaced). Checks: no request fails; two sequences admitted before a
 * promotion and held in flight across it (the engine paused by the step hook) finish with
 * the old model's output token for token (logprobs too); requests sent once /health names
 * the new version get the new model's output; the bf16 precision applies to the reloaded
 * model; promotions of another shape, of a corrupt file and of non-finite weights are
 * refused with the reason on /health and the served model stays; a reload request (the
 * SIGHUP path) reloads; `thermo serve --model-from-state` follows a promotion and reloads
 * on SIGHUP. Simulated plant, tiny random models. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>

#include <jansson.h>

#include "test_util.h"
#include "thermo/io.h"
#include "thermo/serve.h"

static char state[512], model_dir[600], state_json[600], model_b[600];

static const char *const kind_body[2] = {
    "{\"prompt\":[1,2,3],\"max_tokens\":24,\"temperature\":0,\"logprobs\":1}",                /* greedy */
    "{\"prompt\":[4,5,6],\"max_tokens\":64,\"temperature\":1,\"seed\":%d,\"logprobs\":1}", /* long, sampled */
};

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---------------------------------------------------------------------------------
 * HTTP over a raw socket: send now, read the whole response later */

static int send_req(int port, const char *method, const char *path, const char *body) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        if (fd >= 0) close(fd);
        return -1;
    }
    char req[1024];
    size_t blen = body ? strlen(body) : 0;
    int n = snprintf(req, sizeof req,
                     "%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n%s", method, path, blen, body ? body : "");
    if (write(fd, req, (size_t)n) != n) {
        close(fd);
        return -1;
    }
    return fd;
}

/* The status (-1: no response in 30 s) and the body (malloc'd) into *out. */
static int read_resp(int fd, char **out) {
    *out = NULL;
    if (fd < 0) return -1;
    size_t cap = 1 << 16, got = 0;
    char *buf = malloc(cap);
    for (int waited_ms = 0; buf && waited_ms < 30000;) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 100) <= 0) {
            waited_ms += 100;
            continue;
        }
        if (got + 4096 > cap) buf = realloc(buf, cap *= 2);
        ssize_t r = buf ? read(fd, buf + got, cap - got - 1) : -1;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    if (!buf) return -1;
    buf[got] = 0;
    int code = -1;
    char *body = strstr(buf, "\r\n\r\n");
    if (body && sscanf(buf, "HTTP/1.%*d %d", &code) == 1) *out = strdup(body + 4);
    free(buf);
    return body ? code : -1;
}

static int http(int port, const char *method, const char *path, const char *body, char **out) {
    return read_resp(send_req(port, method, path, body), out);
}

/* A completion's choice (text, logprobs: what the model decided), as JSON text. */
static char *choice_of(const char *resp) {
    json_t *j = resp ? json_loads(resp, 0, NULL) : NULL;
    json_t *c = json_array_get(json_object_get(j, "choices"), 0);
    char *d = c ? json_dumps(c, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(j);
    return d;
}

static char *complete(int port, int kind, int seed) {
    char body[256], *out = NULL;
    snprintf(body, sizeof body, kind_body[kind], seed);
    int code = http(port, "POST", "/v1/completions", body, &out);
    char *c = code == 200 ? choice_of(out) : NULL;
    if (code != 200) fprintf(stderr, "completion: %d %s\n", code, out ? out : "");
    free(out);
    return c;
}

/* /health's model object: version, reloads, failures, dtype and error. */
typedef struct {
    long version, reloads, failures;
    char dtype[8], error[512];
} model_info;

static int health(int port, model_info *mi) {
    char *out = NULL;
    memset(mi, 0, sizeof *mi);
    int code = http(port, "GET", "/health", NULL, &out);
    json_t *j = out ? json_loads(out, 0, NULL) : NULL, *m = json_object_get(j, "model");
    free(out);
    if (code != 200 || !m) {
        json_decref(j);
        return 0;
    }
    mi->version = (long)json_integer_value(json_object_get(m, "version"));
    mi->reloads = (long)json_integer_value(json_object_get(m, "reloads"));
    mi->failures = (long)json_integer_value(json_object_get(m, "reload_failures"));
    snprintf(mi->dtype, sizeof mi->dtype, "%s", json_string_value(json_object_get(m, "dtype")) ? json_string_value(json_object_get(m, "dtype")) : "");
    snprintf(mi->error, sizeof mi->error, "%s", json_string_value(json_object_get(m, "reload_error")) ? json_string_value(json_object_get(m, "reload_error")) : "");
    json_decref(j);
    return 1;
}

/* Waits (10 s at most) until /health says pred; 1 when it did. */
static int wait_health(int port, long version, long failures, model_info *mi) {
    for (int i = 0; i < 500; i++) {
        if (health(port, mi) && mi->version == version && mi->failures == failures) return 1;
        sleep_ms(20);
    }
    return 0;
}

/* ---------------------------------------------------------------------------------
 * promotions, as learn makes them: the export first, then state.json replaced */

static th_gpt2 *make_model(int channels, uint64_t seed) {
    th_gpt2_config cfg = {256, 50257, 2, 2, channels, 1e-5f};
    th_gpt2 *m = NULL;
    if (th_gpt2_create(&cfg, &m) != TH_OK) {
        fprintf(stderr, "FAIL model: %s\n", th_last_error());
        exit(1);
    }
    th_gpt2_init_random(m, seed);
    return m;
}

static void write_state(long version) {
    char text[128];
    int n = snprintf(text, sizeof text, "{\"version\": %ld, \"previous_version\": %ld, \"model_dir\": \"model\"}\n",
                     version, version - 1);
    CHECK(th_atomic_write_file(state_json, text, (size_t)n) == TH_OK, "state.json v%ld: %s", version, th_last_error());
}

static void promote(th_gpt2 *m, long version) {
    CHECK(th_hf_save(m, model_dir) == TH_OK, "export v%ld: %s", version, th_last_error());
    write_state(version);
}

/* ---------------------------------------------------------------------------------
 * the engine's step hook: a gate the test opens a step at a time */

static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static int gate_tickets = -1; /* < 0: open */
static int gate_rows, gate_blocked;

static void on_step(int rows, void *user) {
    (void)user;
    pthread_mutex_lock(&gate_mu);
    gate_rows = rows;
    while (gate_tickets == 0) {
        gate_blocked = 1;
        pthread_cond_broadcast(&gate_cv);
        pthread_cond_wait(&gate_cv, &gate_mu);
    }
    gate_blocked = 0;
    if (gate_tickets > 0) gate_tickets--;
    pthread_mutex_unlock(&gate_mu);
}

static void gate_set(int tickets) {
    pthread_mutex_lock(&gate_mu);
    gate_tickets = tickets;
    gate_blocked = 0;
    pthread_cond_broadcast(&gate_cv);
    pthread_mutex_unlock(&gate_mu);
}

/* Waits until the engine is held at a step; its row count (-1 after 10 s). */
static int gate_wait_blocked(void) {
    pthread_mutex_lock(&gate_mu);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 10;
    int r = 0;
    while (!gate_blocked && r == 0) r = pthread_cond_timedwait(&gate_cv, &gate_mu, &ts);
    int rows = gate_blocked ? gate_rows : -1;
    pthread_mutex_unlock(&gate_mu);
    return rows;
}

/* ---------------------------------------------------------------------------------
 * client threads: greedy completions back to back, each tagged with the phase it was sent in */

#define MAX_RESULTS 4096
typedef struct {
    int phase;
    char *choice; /* NULL: the request failed */
} result;

static result results[MAX_RESULTS];
static int n_results, clients_stop, phase, client_port;
static pthread_mutex_t res_mu = PTHREAD_MUTEX_INITIALIZER;

static void *client_main(void *arg) {
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&res_mu);
        int stop = clients_stop || n_results >= MAX_RESULTS, ph = phase;
        pthread_mutex_unlock(&res_mu);
        if (stop) break;
        char *c = complete(client_port, 0, 0);
        pthread_mutex_lock(&res_mu);
        if (n_results < MAX_RESULTS) results[n_results++] = (result){ph, c};
        else free(c);
        pthread_mutex_unlock(&res_mu);
        sleep_ms(5);
    }
    return NULL;
}

static void set_phase(int p) {
    pthread_mutex_lock(&res_mu);
    phase = p;
    pthread_mutex_unlock(&res_mu);
}

/* Waits (20 s at most) until the clients have n results of phase p. */
static void wait_results(int p, int n) {
    int seen = 0;
    for (int i = 0; i < 1000 && seen < n; i++) {
        seen = 0;
        pthread_mutex_lock(&res_mu);
        for (int k = 0; k < n_results; k++) seen += results[k].phase == p;
        pthread_mutex_unlock(&res_mu);
        if (seen < n) sleep_ms(20);
    }
}

/* Every result of phase p equals one of want[0..n) (none failed), and there were at least
 * min of them. */
static void check_phase(int p, char *const *want, int n, int min, const char *what) {
    int seen = 0, bad = 0;
    pthread_mutex_lock(&res_mu);
    for (int i = 0; i < n_results; i++) {
        if (results[i].phase != p) continue;
        seen++;
        int ok = 0;
        for (int k = 0; k < n && results[i].choice; k++) ok |= want[k] && !strcmp(results[i].choice, want[k]);
        if (!ok) bad++;
    }
    pthread_mutex_unlock(&res_mu);
    CHECK(seen >= min && bad == 0, "%s: %d of %d client requests failed or got another model's output", what, bad, seen);
}

static th_server *start(const char *from_state, const char *model_path, void (*hook)(int, void *)) {
    th_serve_opts o = th_serve_defaults();
    o.state_dir = from_state;
    o.model_path = model_path;
    o.port = 0;
    o.parallel = 4;
    o.watch_ms = 20;
    o.timeout_s = 30;
    o.precision.dtype = TH_DTYPE_BF16;
    o.run.sensor = "sim";
    o.run.governor = "none";
    o.run.hz = 20;
    o.on_step = hook;
    th_server *s = NULL;
    if (th_server_start(&o, &s) != TH_OK) {
        fprintf(stderr, "FAIL server start: %s\n", th_last_error());
        exit(1);
    }
    return s;
}

int main(void) {
    const char *dir = scratch_make("serve_reload");
    snprintf(state, sizeof state, "%s/state", dir);
    snprintf(model_dir, sizeof model_dir, "%s/model", state);
    snprintf(state_json, sizeof state_json, "%s/learn/state.json", state);
    snprintf(model_b, sizeof model_b, "%s/model_b", dir);
    char learn_dir[600], ckpt[600];
    snprintf(learn_dir, sizeof learn_dir, "%s/learn", state);
    snprintf(ckpt, sizeof ckpt, "%s/checkpoint.bin", state);
    CHECK(th_mkdir_p(learn_dir) == TH_OK, "state directory");
    th_threads_set(2);
    CHECK(th_compute_select("naive") == TH_OK, "naive backend");

    /* the state as `thermo train --out` leaves it: checkpoint, export, no state.json yet (v0) */
    th_gpt2 *a = make_model(32, 7), *b = make_model(32, 8);
    CHECK(th_checkpoint_save(ckpt, a, NULL) == TH_OK && th_hf_save(a, model_dir) == TH_OK, "state v0");
    CHECK(th_hf_save(b, model_b) == TH_OK, "model B");

    /* the new model's outputs, from a server of its own */
    th_server *ref = start(NULL, model_b, NULL);
    char *want_b[2] = {complete(th_server_port(ref), 0, 0), complete(th_server_port(ref), 1, 11)};
    CHECK(th_server_stop(ref, 5, NULL) == TH_OK, "reference server stopped");

    th_server *s = start(state, NULL, on_step);
    int port = th_server_port(s);
    client_port = port;
    model_info mi;
    CHECK(health(port, &mi) && mi.version == 0 && mi.reloads == 0 && !strcmp(mi.dtype, "bf16"),
          "serving v0 at bf16 (version %ld, dtype %s)", mi.version, mi.dtype);
    char *want_a[2] = {complete(port, 0, 0), complete(port, 1, 11)};
    char *want_a2 = complete(port, 1, 12);
    CHECK(want_a[0] && want_a[1] && want_b[0] && want_b[1] && want_a2, "reference outputs");
    CHECK(want_a[0] && want_b[0] && strcmp(want_a[0], want_b[0]) && want_a[1] && want_b[1] && strcmp(want_a[1], want_b[1]),
          "the two models decide differently (else the test proves nothing)");

    /* ---- two sequences in flight on v0 across the promotion */
    gate_set(0);
    char body[256];
    snprintf(body, sizeof body, kind_body[1], 11);
    int fd1 = send_req(port, "POST", "/v1/completions", body);
    CHECK(gate_wait_blocked() == 1, "the first long request is decoding");
    snprintf(body, sizeof body, kind_body[1], 12);
    int fd2 = send_req(port, "POST", "/v1/completions", body);
    int rows = 1;
    for (int i = 0; i < 50 && rows == 1; i++) {
        gate_set(1); /* one step at a time until the second one is admitted beside it */
        rows = gate_wait_blocked();
    }
    CHECK(rows == 2, "both long requests decoding on v0 (%d rows)", rows);
    pthread_t clients[2];
    for (int k = 0; k < 2; k++) pthread_create(&clients[k], NULL, client_main, NULL);
    set_phase(1); /* from here the clients' requests may get either model */
    promote(b, 1);
    CHECK(wait_health(port, 1, 0, &mi), "v1 served while the engine holds two v0 sequences (version %ld: %s)",
          mi.version, mi.error);
    CHECK(!strcmp(mi.dtype, "bf16"), "the reloaded model is packed at bf16 too (%s)", mi.dtype);
    int fd3 = send_req(port, "POST", "/v1/completions", kind_body[0]);
    gate_set(-1);
    char *o1 = NULL, *o2 = NULL, *o3 = NULL;
    CHECK(read_resp(fd1, &o1) == 200 && read_resp(fd2, &o2) == 200 && read_resp(fd3, &o3) == 200,
          "the in-flight and the new request completed");
    char *c1 = choice_of(o1), *c2 = choice_of(o2), *c3 = choice_of(o3);
    CHECK(c1 && !strcmp(c1, want_a[1]), "in flight across the reload: the old model's output\n%.200s\n%.200s", c1,
          want_a[1]);
    CHECK(c2 && !strcmp(c2, want_a2), "the second in-flight one too\n%.200s\n%.200s", c2, want_a2);
    CHECK(c3 && !strcmp(c3, want_b[0]), "sent after the reload: the new model's output\n%.200s\n%.200s", c3, want_b[0]);
    free(o1), free(o2), free(o3), free(c1), free(c2), free(c3);
    set_phase(2); /* /health named v1 before this: only the new model */
    wait_results(2, 3);
    char *c = complete(port, 1, 11);
    CHECK(c && !strcmp(c, want_b[1]), "a long request after the reload decodes with v1");
    free(c);

    /* ---- back to v0's weights as v2, with requests flowing (the engine not held) */
    set_phase(3);
    promote(a, 2);
    CHECK(wait_health(port, 2, 0, &mi), "v2 served (version %ld)", mi.version);
    set_phase(4);
    wait_results(4, 3);

    /* ---- refused promotions: the served model stays */
    th_gpt2 *wide = make_model(64, 9);
    promote(wide, 3);
    CHECK(wait_health(port, 2, 1, &mi) && strstr(mi.error, "another shape"),
          "another shape refused, v2 still served: version %ld, error '%s'", mi.version, mi.error);
    set_phase(5);
    wait_results(5, 2);
    char st_path[700];
    snprintf(st_path, sizeof st_path, "%s/model.safetensors", model_dir);
    CHECK(th_atomic_write_file(st_path, "{\"truncated", 11) == TH_OK, "corrupt export");
    write_state(4);
    CHECK(wait_health(port, 2, 2, &mi) && strstr(mi.error, "model.safetensors"),
          "a corrupt file refused, v2 still served: version %ld, error '%s'", mi.version, mi.error);
    th_gpt2 *nan_model = make_model(32, 10);
    th_gpt2_params(nan_model)[th_gpt2_num_params(th_gpt2_get_config(nan_model)) - 1] = NAN; /* the last one */
    promote(nan_model, 5);
    CHECK(wait_health(port, 2, 3, &mi) && strstr(mi.error, "not finite"),
          "non-finite weights refused, v2 still served: version %ld, error '%s'", mi.version, mi.error);
    wait_results(5, 4);

    /* ---- a reload request (SIGHUP in `thermo serve`) after a good promotion */
    set_phase(7);
    promote(b, 6);
    CHECK(wait_health(port, 6, 3, &mi) && mi.error[0] == 0 && mi.reloads == 3, "v6 served after the refusals (%ld, %ld reloads)",
          mi.version, mi.reloads);
    set_phase(6);
    th_server_request_reload(s);
    int reloaded = 0;
    for (int i = 0; i < 500 && !reloaded; i++) {
        reloaded = health(port, &mi) && mi.reloads == 4;
        sleep_ms(20);
    }
    CHECK(reloaded && mi.version == 6, "a reload request reloads the current model (%ld reloads)", mi.reloads);
    long v = -1;
    CHECK(th_server_reload(s, &v) == TH_OK && v == 6, "th_server_reload: version %ld", v);
    wait_results(6, 3);

    pthread_mutex_lock(&res_mu);
    clients_stop = 1;
    pthread_mutex_unlock(&res_mu);
    for (int k = 0; k < 2; k++) pthread_join(clients[k], NULL);
    char *either[2] = {want_a[0], want_b[0]};
    check_phase(1, either, 2, 0, "during the first promotion");
    check_phase(2, &want_b[0], 1, 3, "after v1");
    check_phase(3, either, 2, 0, "during the second promotion");
    check_phase(4, &want_a[0], 1, 3, "after v2, through a refused shape");
    check_phase(5, &want_a[0], 1, 4, "through a corrupt file and non-finite weights");
    check_phase(7, either, 2, 0, "during the promotion after the refusals");
    check_phase(6, &want_b[0], 1, 3, "through reload requests");
    printf("%d client requests, none failed\n", n_results);

    th_serve_summary sum;
    CHECK(th_server_stop(s, 5, &sum) == TH_OK, "stop");
    CHECK(sum.model_version == 6 && sum.reloads == 5 && sum.reload_failures == 3 && sum.refused == 0,
          "summary: version %ld, %ld reloads, %ld refused reloads, %ld refused requests", sum.model_version, sum.reloads,
          sum.reload_failures, sum.refused);

    /* a server needs one source */
    th_serve_opts o = th_serve_defaults();
    th_server *none = NULL;
    o.state_dir = state;
    o.model_path = model_b;
    CHECK_FAIL(th_server_start(&o, &none), TH_ERR_INVALID, "one of them", "state and model both given");

    /* ---- the CLI: --model-from-state follows a promotion (polled each second), SIGHUP reloads */
    const char *bin = getenv("THERMO_BIN") ? getenv("THERMO_BIN") : "build/thermo";
    char cmd[3000];
    SPATH(pf, "port");
    SPATH(log, "serve.log");
    snprintf(cmd, sizeof cmd, "%s serve --model '%s' --model-from-state '%s' --sensor sim 2>/dev/null", bin, model_b, state);
    int rc = system(cmd);
    CHECK(WIFEXITED(rc) && WEXITSTATUS(rc) == 2, "--model with --model-from-state: usage error (%d)", rc);
    snprintf(cmd, sizeof cmd,
             "%s serve --model-from-state '%s' --port 0 --port-file '%s' --sensor sim --governor none --dtype bf16 --compute naive "
             "2> '%s' & echo $! > '%s.pid'", bin, state, pf, log, pf);
    CHECK(system(cmd) == 0, "thermo serve started");
    char *pt = NULL;
    for (int t = 0; t < 200 && !(pt = test_read_file(pf, NULL)); t++) sleep_ms(50);
    int cport = pt ? atoi(pt) : -1;
    free(pt);
    CHECK(wait_health(cport, 6, 0, &mi) && mi.reloads == 0, "CLI serves the state's v6 (%ld)", mi.version);
    c = complete(cport, 0, 0);
    CHECK(c && !strcmp(c, want_b[0]), "CLI: v6's output");
    free(c);
    char *pid = test_read_file(spath("port.pid"), NULL);
    int p = pid ? atoi(pid) : 0;
    free(pid);
    CHECK(p > 0 && kill(p, SIGHUP) == 0, "SIGHUP");
    reloaded = 0;
    for (int i = 0; i < 500 && !reloaded; i++) {
        reloaded = health(cport, &mi) && mi.reloads == 1;
        sleep_ms(20);
    }
    CHECK(reloaded && mi.version == 6, "SIGHUP reloaded (%ld reloads)", mi.reloads);
    promote(a, 7);
    CHECK(wait_health(cport, 7, 0, &mi), "CLI follows the promotion to v7 (%ld)", mi.version);
    c = complete(cport, 0, 0);
    CHECK(c && !strcmp(c, want_a[0]), "CLI: v7's output");
    free(c);
    CHECK(p > 0 && kill(p, SIGTERM) == 0, "SIGTERM");
    int gone = 0;
    for (int t = 0; t < 200 && !gone; t++) {
        sleep_ms(50);
        gone = kill(p, 0) != 0;
    }
    char *l = test_read_file(log, NULL);
    CHECK(gone && l && strstr(l, "now serving version 7") && strstr(l, "model: version 7 at the end (2 reloads, 0 refused)"),
          "CLI logged the reloads: %s", l ? l : "");
    free(l);

    for (int k = 0; k < n_results; k++) free(results[k].choice);
    for (int k = 0; k < 2; k++) free(want_a[k]), free(want_b[k]);
    free(want_a2);
    th_gpt2_free(a), th_gpt2_free(b), th_gpt2_free(wide), th_gpt2_free(nan_model);
    scratch_cleanup();
    return test_summary();
}
