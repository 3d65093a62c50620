/* test_core_faults.c: SQLite-style allocation fault loops over the parsers and writers that
 * use th_alloc: for N = 1, 2, 3, ... the Nth allocation fails; each run must return
 * TH_ERR_NOMEM (never crash, never report success with a fault hit, never leak), until a
 * run finishes without hitting the fault and returns TH_OK. Covered: the eco factor tables
 * (data/factors), the guard's session state file (load and save; jansson's allocator is
 * pointed at th_alloc here, so its allocations fail too), and th_analyze_path on
 * tests/fixtures/analyze/small. Leaks show as heap growth over the whole loop.
 * One allowance: jansson 2.14's parser reports some of its own allocation failures as
 * syntax errors, and ignores a failed allocation while lexing a string (the string then
 * silently loses a byte), so a fault that lands inside jansson may come back as
 * TH_ERR_FORMAT or even TH_OK; a fault in our own code must always be TH_ERR_NOMEM. */
#include "thermo/analyze.h"
#include "thermo/core.h"
#include "thermo/eco.h"
#include "thermo/guard.h"

#include "test_util.h"

#include <jansson.h>
#include <malloc.h>

typedef th_status (*run_fn)(void *user);

static int jansson_faulted; /* a fault landed in one of jansson's allocations */

static void *jansson_alloc(size_t n) {
    void *p = th_alloc(n);
    if (!p) jansson_faulted = 1;
    return p;
}

/* Runs fn under every fault position; returns the number of faults hit. */
static long fault_loop(const char *what, run_fn fn, void *user, long max_n) {
    size_t heap_before = 0;
    long hits = 0, nomem = 0;
    for (long n = 1; n <= max_n; n++) {
        if (n == 2) heap_before = mallinfo2().uordblks; /* after the first run warmed stdio up */
        jansson_faulted = 0;
        th_alloc_fail_nth(n);
        th_status st = fn(user);
        long hit = th_alloc_fail_nth(0);
        if (!hit) {
            CHECK(st == TH_OK, "%s: a run without a fault failed: %s", what, th_last_error());
            size_t heap_after = mallinfo2().uordblks;
            CHECK(heap_after <= heap_before + 16384, "%s: heap grew by %zu bytes over %ld fault runs", what,
                  heap_after - heap_before, n);
            printf("%s: %ld allocation faults, %ld of them TH_ERR_NOMEM (others inside jansson)\n", what, hits, nomem);
            return hits;
        }
        hits++;
        nomem += st == TH_ERR_NOMEM;
        CHECK(st == TH_ERR_NOMEM || jansson_faulted,
              "%s: allocation %ld failed but the run returned %s", what, n, th_status_name(st));
    }
    CHECK(0, "%s: still hitting faults after %ld allocations", what, max_n);
    return hits;
}

/* ---------------------------------------------------------------------------------
 * the runs */

static char factors_dir[4200];

static th_status run_eco_load(void *user) {
    th_eco_tables *t = NULL;
    th_status st = th_eco_tables_load(&t, factors_dir);
    if (st == TH_OK) {
        th_eco_factors f;
        st = th_eco_factors_resolve(t, "DE", NULL, &f);
    }
    th_eco_tables_free(t);
    return st;
}

static char state_path[4200];

static th_status run_session_load(void *user) {
    th_session_guard g;
    th_status st = th_session_guard_load(&g, state_path);
    if (st == TH_OK && (g.calls != 5 || g.n != 5)) st = th_fail(TH_ERR_FORMAT, "loaded %ld calls", g.calls);
    return st;
}

static th_status run_session_save(void *user) {
    const th_session_guard *g = user;
    char before[64], *old = test_read_file(state_path, NULL);
    snprintf(before, sizeof before, "%s", old ? old : "");
    th_status st = th_session_guard_save(g, state_path);
    if (st != TH_OK) {
        char *now = test_read_file(state_path, NULL);
        int same = old && now && strcmp(old, now) == 0;
        CHECK(same, "a failed save changed the state file");
        free(now);
    }
    free(old);
    return st;
}

static char fixture[4200];

static th_status run_analyze(void *user) {
    th_analyze_opts o = th_analyze_defaults();
    th_analysis *a = NULL;
    th_status st = th_analyze_path(fixture, &o, &a);
    if (st == TH_OK && a->n_grid == 0) st = th_fail(TH_ERR_FORMAT, "empty analysis");
    th_analysis_free(a);
    return st;
}

int main(void) {
    const char *src = test_source_dir();
    snprintf(factors_dir, sizeof factors_dir, "%s/data/factors", src);
    CHECK(fault_loop("eco tables", run_eco_load, NULL, 1000) >= 10, "eco tables: too few allocations to test");

    json_set_alloc_funcs(jansson_alloc, th_free);
    snprintf(state_path, sizeof state_path, "%s/state.json", test_tmp_dir("core_faults"));
    th_session_guard g;
    CHECK(th_session_guard_init(&g, "faults", NULL) == TH_OK, "init");
    for (int i = 0; i < 5; i++) {
        th_session_event e = {0x1111111111111111ull * (uint64_t)(i + 1), 0x2222222222222222ull, 0, 1.5};
        th_session_guard_record(&g, &e, NULL);
    }
    CHECK(th_session_guard_save(&g, state_path) == TH_OK, "save: %s", th_last_error());
    CHECK(fault_loop("session load", run_session_load, NULL, 10000) >= 10, "session load: too few allocations");
    CHECK(fault_loop("session save", run_session_save, &g, 10000) >= 10, "session save: too few allocations");
    CHECK(run_session_load(NULL) == TH_OK, "state after the save loop: %s", th_last_error());

    snprintf(fixture, sizeof fixture, "%s/tests/fixtures/analyze/small", src);
    CHECK(fault_loop("analyze", run_analyze, NULL, 10000) >= 5, "analyze: too few allocations");
    return test_summary();
}
