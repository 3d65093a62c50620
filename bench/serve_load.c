/* serve_load.c: the load benchmark of `thermo serve` (issue 15), loopback only and bounded
 * in count and time. Saves a random model of a preset with its tokenizer, starts
 * `thermo serve --port 0 --port-file F` on it (simulated plant, no governor), runs 1, 4, 8
 * and 16 concurrent streaming clients with a fixed number of requests each and prints
 * aggregate tokens/s, the ratio to 1 client, p50/p99 time to first token and inter-chunk
 * latency, joules per token from the responses' eco objects and the server's overhead per
 * token against a decode step (from /metrics). Then a hot phase: a fast-heating simulated
 * profile and a low limit under 16 clients looping for a fixed time, counting seconds above
 * the limit and requests lost (neither answered 200 with [DONE] nor refused with 503/429
 * carrying Retry-After).
 * Usage: serve_load [PRESET=small] [REQUESTS=3] [MAX_TOKENS=32] [HOT_S=20]; THERMO_BIN
 * names the thermo binary (default build/thermo). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "thermo/io.h"
#include "thermo/model.h"
#include "thermo/text.h"

#define MAX_CLIENTS 16
#define REQ_DEADLINE_S 300.0

static char dir[256], model_dir[300];
static int max_tokens = 32;

static double now_s(void) { return th_now_ns() / 1e9; }

static void sleep_s(double s) {
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

/* ---- the server as a child process */

static pid_t server_pid;
static int server_port;

static int start_server(const char *extra) {
    char pf[400], cmd[2000];
    snprintf(pf, sizeof pf, "%s/port", dir);
    unlink(pf);
    const char *bin = getenv("THERMO_BIN") ? getenv("THERMO_BIN") : "build/thermo";
    snprintf(cmd, sizeof cmd, "exec %s serve --model '%s' --port 0 --port-file '%s' --parallel 16 --queue 64 %s 2>> '%s/serve.log'",
             bin, model_dir, pf, extra, dir);
    server_pid = fork();
    if (server_pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    for (int t = 0; t < 1200; t++) {
        FILE *f = fopen(pf, "r");
        if (f) {
            int ok = fscanf(f, "%d", &server_port) == 1;
            fclose(f);
            if (ok) return 1;
        }
        if (waitpid(server_pid, NULL, WNOHANG) == server_pid) break;
        sleep_s(0.05);
    }
    fprintf(stderr, "serve_load: the server did not start (see %s/serve.log)\n", dir);
    return 0;
}

static void stop_server(void) {
    kill(server_pid, SIGTERM);
    for (int t = 0; t < 600; t++) {
        if (waitpid(server_pid, NULL, WNOHANG) == server_pid) return;
        sleep_s(0.05);
    }
    kill(server_pid, SIGKILL);
    waitpid(server_pid, NULL, 0);
}

/* ---- one HTTP/1.0 exchange (the server then ends the body by closing) */

typedef struct {
    int status, retry_after, done, tokens, n_events;
    double t_send, t_first, energy_j;
    double *gaps; /* inter-chunk gaps, seconds */
    int n_gaps;
} exchange;

static int connect_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)server_port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0) return fd;
    if (fd >= 0) close(fd);
    return -1;
}

/* GET path into a malloc'd body, or NULL. */
static char *http_get(const char *path) {
    int fd = connect_port();
    if (fd < 0) return NULL;
    char req[256];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    if (write(fd, req, (size_t)n) == n)
        for (;;) {
            if (len + 4096 > cap) buf = realloc(buf, cap *= 2);
            ssize_t r = read(fd, buf + len, cap - len - 1);
            if (r <= 0) break;
            len += (size_t)r;
        }
    close(fd);
    buf[len] = 0;
    char *body = strstr(buf, "\r\n\r\n");
    if (!body) {
        free(buf);
        return NULL;
    }
    memmove(buf, body + 4, strlen(body + 4) + 1);
    return buf;
}

static double metric(const char *text, const char *name) {
    size_t n = strlen(name);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (!strncmp(p, name, n) && p[n] == ' ') return atof(p + n + 1);
    return 0;
}

/* One streaming completion; fills *x. Returns 0 when the exchange broke (lost). */
static int complete(const char *body, exchange *x) {
    memset(x, 0, sizeof *x);
    x->retry_after = -1;
    x->gaps = malloc(sizeof(double) * (size_t)(max_tokens + 8));
    int fd = connect_port();
    if (fd < 0) return 0;
    char req[1024];
    int n = snprintf(req, sizeof req,
                     "POST /v1/completions HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n%s", strlen(body), body);
    x->t_send = now_s();
    if (write(fd, req, (size_t)n) != n) {
        close(fd);
        return 0;
    }
    size_t cap = 1 << 16, len = 0, scan = 0;
    char *buf = malloc(cap);
    int headers = 0;
    double last = 0;
    while (now_s() - x->t_send < REQ_DEADLINE_S) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 1000) <= 0) continue;
        if (len + 4096 > cap) buf = realloc(buf, cap *= 2);
        ssize_t r = read(fd, buf + len, cap - len - 1);
        if (r <= 0) break;
        len += (size_t)r;
        buf[len] = 0;
        double t = now_s();
        if (!headers) {
            char *e = strstr(buf, "\r\n\r\n");
            if (!e) continue;
            headers = 1;
            x->status = atoi(buf + 9);
            char *ra = strcasestr(buf, "\r\nRetry-After:");
            if (ra && ra < e) x->retry_after = atoi(ra + 14);
            scan = (size_t)(e + 4 - buf);
        }
        if (x->status != 200) continue;
        for (char *ev; (ev = strstr(buf + scan, "\n\n"));) {
            *ev = 0;
            const char *d = buf + scan;
            scan = (size_t)(ev + 2 - buf);
            if (strncmp(d, "data: ", 6)) continue;
            d += 6;
            if (!strcmp(d, "[DONE]")) {
                x->done = 1;
                continue;
            }
            json_t *j = json_loads(d, 0, NULL);
            json_t *usage = json_object_get(j, "usage");
            if (usage) {
                x->tokens = (int)json_integer_value(json_object_get(usage, "completion_tokens"));
                x->energy_j = json_number_value(json_object_get(json_object_get(j, "eco"), "energy_j"));
            } else {
                if (!x->n_events) x->t_first = t;
                else if (x->n_gaps < max_tokens + 8) x->gaps[x->n_gaps++] = t - last;
                last = t;
                x->n_events++;
            }
            json_decref(j);
        }
    }
    close(fd);
    free(buf);
    if (x->status == 200) return x->done;
    return (x->status == 503 || x->status == 429) && x->retry_after >= 1;
}

/* ---- the concurrency phases */

typedef struct {
    int id, requests;
    double until; /* hot phase: loop until this time instead */
    double *ttft, *gaps;
    int n_ttft, n_gaps, tokens, ok, refused, lost;
    double energy_j;
} client;

static void *client_main(void *arg) {
    client *c = arg;
    for (int k = 0; c->until > 0 ? now_s() < c->until : k < c->requests; k++) {
        char body[512];
        snprintf(body, sizeof body,
                 "{\"prompt\":[%d,%d,%d,%d,%d,%d,%d,%d],\"max_tokens\":%d,\"temperature\":1,\"seed\":%d,\"stream\":true}",
                 100 + c->id, 200 + k, 300, 400, 500 + c->id, 600, 700 + k, 800, max_tokens, 1000 * c->id + k);
        exchange x;
        int ok = complete(body, &x);
        if (!ok) c->lost++;
        else if (x.status != 200) {
            c->refused++;
            sleep_s(0.25);
        } else {
            c->ok++;
            c->tokens += x.tokens;
            c->energy_j += x.energy_j;
            if (x.n_events) c->ttft[c->n_ttft++] = x.t_first - x.t_send;
            for (int i = 0; i < x.n_gaps; i++) c->gaps[c->n_gaps++] = x.gaps[i];
        }
        free(x.gaps);
    }
    return NULL;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pct(double *v, int n, double p) {
    if (!n) return 0;
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    int i = (int)(p * (n - 1) + 0.5);
    return v[i];
}

typedef struct {
    int ok, refused, lost, tokens;
    double wall_s, energy_j, ttft50, ttft99, itl50, itl99;
} phase;

static phase run_phase(int n, int requests, double seconds) {
    client cl[MAX_CLIENTS];
    pthread_t th[MAX_CLIENTS];
    int per = seconds > 0 ? 4096 : requests;
    double t0 = now_s();
    for (int i = 0; i < n; i++) {
        cl[i] = (client){.id = i, .requests = requests, .until = seconds > 0 ? t0 + seconds : 0};
        cl[i].ttft = malloc(sizeof(double) * (size_t)per);
        cl[i].gaps = malloc(sizeof(double) * (size_t)per * (size_t)(max_tokens + 8));
        pthread_create(&th[i], NULL, client_main, &cl[i]);
    }
    phase p = {0};
    int cap = n * per;
    double *ttft = malloc(sizeof(double) * (size_t)cap), *gaps = malloc(sizeof(double) * (size_t)cap * (size_t)(max_tokens + 8));
    int nt = 0, ng = 0;
    for (int i = 0; i < n; i++) {
        pthread_join(th[i], NULL);
        p.ok += cl[i].ok;
        p.refused += cl[i].refused;
        p.lost += cl[i].lost;
        p.tokens += cl[i].tokens;
        p.energy_j += cl[i].energy_j;
        memcpy(ttft + nt, cl[i].ttft, sizeof(double) * (size_t)cl[i].n_ttft);
        nt += cl[i].n_ttft;
        memcpy(gaps + ng, cl[i].gaps, sizeof(double) * (size_t)cl[i].n_gaps);
        ng += cl[i].n_gaps;
        free(cl[i].ttft);
        free(cl[i].gaps);
    }
    p.wall_s = now_s() - t0;
    p.ttft50 = pct(ttft, nt, 0.5);
    p.ttft99 = pct(ttft, nt, 0.99);
    p.itl50 = pct(gaps, ng, 0.5);
    p.itl99 = pct(gaps, ng, 0.99);
    free(ttft);
    free(gaps);
    return p;
}

static int make_model(const char *preset) {
    th_gpt2_config cfg;
    th_gpt2 *m = NULL;
    th_tokenizer *tok = NULL;
    int ok = th_gpt2_config_preset(preset, &cfg) == TH_OK && cfg.vocab_size == 50257 && th_gpt2_create(&cfg, &m) == TH_OK;
    if (ok) th_gpt2_init_random(m, 1);
    ok = ok && th_hf_save(m, model_dir) == TH_OK && th_tokenizer_load_default(&tok) == TH_OK &&
         th_tokenizer_save_dir(tok, model_dir) == TH_OK;
    if (!ok) fprintf(stderr, "serve_load: model %s: %s (a GPT-2-vocabulary preset is needed)\n", preset, th_last_error());
    th_tokenizer_free(tok);
    th_gpt2_free(m);
    return ok;
}

int main(int argc, char **argv) {
    const char *preset = argc > 1 ? argv[1] : "small";
    int requests = argc > 2 ? atoi(argv[2]) : 3;
    max_tokens = argc > 3 ? atoi(argv[3]) : 32;
    double hot_s = argc > 4 ? atof(argv[4]) : 20;
    if (requests < 1 || requests > 64 || max_tokens < 1 || max_tokens > 256 || hot_s < 0 || hot_s > 600) {
        fprintf(stderr, "usage: serve_load [PRESET] [REQUESTS 1-64] [MAX_TOKENS 1-256] [HOT_S 0-600]\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    snprintf(dir, sizeof dir, "/tmp/serve_load.XXXXXX");
    if (!mkdtemp(dir)) return 1;
    snprintf(model_dir, sizeof model_dir, "%s/model", dir);
    if (!make_model(preset)) return 1;
    if (!start_server("--sensor sim --governor none")) return 1;
    printf("model: random %s, %d requests per client, max_tokens %d, streaming, loopback port %d\n", preset, requests,
           max_tokens, server_port);
    printf("%7s %9s %6s %9s %9s %9s %9s %9s %10s %6s\n", "clients", "tok/s", "x1", "ttft p50", "ttft p99", "itl p50",
           "itl p99", "J/token", "overhead", "lost");
    const int counts[] = {1, 4, 8, 16};
    double base = 0;
    int lost = 0;
    for (int c = 0; c < 4; c++) {
        char *m0 = http_get("/metrics");
        phase p = run_phase(counts[c], requests, 0);
        char *m1 = http_get("/metrics");
        double steps = 0, step_s = 0, over_s = 0, toks = 0;
        if (m0 && m1) {
            steps = metric(m1, "thermo_decode_steps_total") - metric(m0, "thermo_decode_steps_total");
            step_s = metric(m1, "thermo_decode_step_seconds_total") - metric(m0, "thermo_decode_step_seconds_total");
            over_s = metric(m1, "thermo_serve_overhead_seconds_total") - metric(m0, "thermo_serve_overhead_seconds_total");
            toks = metric(m1, "thermo_generation_tokens_total") - metric(m0, "thermo_generation_tokens_total");
        }
        free(m0);
        free(m1);
        double tps = p.tokens / p.wall_s;
        if (c == 0) base = tps;
        /* serving time per token against one decode step's forward-pass time */
        double overhead = steps > 0 && toks > 0 ? (over_s / toks) / (step_s / steps) : 0;
        printf("%7d %9.1f %6.2f %8.3fs %8.3fs %8.3fs %8.3fs %9.4f %9.3f%% %6d\n", counts[c], tps, tps / base, p.ttft50,
               p.ttft99, p.itl50, p.itl99, p.tokens ? p.energy_j / p.tokens : 0, 100 * overhead, p.lost);
        lost += p.lost;
    }
    stop_server();

    if (hot_s > 0) {
        char prof[400];
        snprintf(prof, sizeof prof, "%s/hot.json", dir);
        FILE *f = fopen(prof, "w");
        if (!f) return 1;
        /* laptop-cpu with an eighth of its heat capacity: tau = R C = 2.5 s */
        fprintf(f, "{\"name\":\"hot\",\"r_k_per_w\":2.5,\"c_j_per_k\":1.0,\"p_idle_w\":2.0,\"p_max_w\":25.0,"
                   "\"t_ambient_c\":25.0,\"t_max_operating_c\":95.0,\"t_slowdown_c\":100.0,\"t_shutdown_c\":105.0,"
                   "\"leak_w_at_ref\":2.0,\"leak_ref_c\":85.0,\"leak_doubling_c\":19.0,\"sensor_quantum_c\":1.0,"
                   "\"sensor_noise_c\":0.5,\"sensor_lag_s\":0.5,\"source\":\"serve_load: a fast-heating test plant\"}\n");
        fclose(f);
        char extra[700];
        snprintf(extra, sizeof extra, "--sensor sim --profile '%s' --temp-limit 45 --governor predictive", prof);
        if (!start_server(extra)) return 1;
        phase p = run_phase(16, 0, hot_s);
        char *m = http_get("/metrics");
        printf("hot: profile c_j_per_k 1 (tau 2.5 s, full load settles near 87 C), --temp-limit 45, predictive, 16 clients "
               "for %.0f s:\n  %d answered (%d tokens), %d refused with Retry-After, %d lost; above the limit %.3f s; "
               "limit %.1f C; refused by the server: thermal %.0f, overloaded %.0f\n",
               hot_s, p.ok, p.tokens, p.refused, p.lost, m ? metric(m, "thermo_above_limit_seconds_total") : -1,
               m ? metric(m, "thermo_temperature_limit_celsius") : -1,
               m ? metric(m, "thermo_refused_total{reason=\"thermal\"}") : -1,
               m ? metric(m, "thermo_refused_total{reason=\"overloaded\"}") : -1);
        free(m);
        lost += p.lost;
        stop_server();
    }
    printf("server log: %s/serve.log\n", dir);
    return lost ? 1 : 0;
}
