/* hwmon.c: the "hwmon" backend, <root>/sys/class/hwmon/hwmonN/{name, temp*_input,
 * temp*_label, temp*_max, temp*_crit, power*_input, power*_average, energy*_input}.
 * The sample's temperature is the hottest CPU package sensor (coretemp "Package id N",
 * k10temp Tctl/Tdie, ...; every package of a multi-socket server), or the configured
 * chip; power and energy come only from CPU chips (amd_energy), so a GPU's or a drive's
 * figures are listed but never mixed into the CPU's sample. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sense/sense_internal.h"

#define MAX_CHIPS 24
#define MAX_CHANNELS 40

typedef struct {
    char path[560];  /* the reading's file */
    char stem[24];   /* "temp1": <stem>_label, _max, _crit sit beside it */
    char label[64];
    int kind;        /* 0 temp, 1 power, 2 energy */
} channel;

typedef struct {
    char dir[512];
    char name[64];
    int cpu;
    int nch;
    channel ch[MAX_CHANNELS];
} chip;

typedef struct {
    chip c[MAX_CHIPS];
    int n;
    /* channels that make the sample */
    const channel *temps[MAX_CHIPS * 2];
    int ntemps;
    const channel *energies[MAX_CHIPS];
    int nenergies;
    const channel *powers[MAX_CHIPS];
    int npowers;
    uint64_t energy_base_uj;
    int have_energy_base;
    char source[96];
} hwmon_ctx;

static const char *cpu_chips[] = {"coretemp", "k10temp", "zenpower", "cpu_thermal", "cpu-thermal", "amd_energy"};

static int is_cpu_chip(const char *name) {
    for (size_t i = 0; i < sizeof cpu_chips / sizeof cpu_chips[0]; i++)
        if (strcmp(name, cpu_chips[i]) == 0) return 1;
    return 0;
}

static void add_channels(chip *k, const char *prefix, const char *suffix, int kind) {
    th_sense_name names[MAX_CHANNELS];
    size_t n = th_sense_list_dir(k->dir, prefix, names, MAX_CHANNELS);
    for (size_t i = 0; i < n && k->nch < MAX_CHANNELS; i++) {
        size_t ln = strlen(names[i]), ls = strlen(suffix);
        if (ln <= ls || strcmp(names[i] + ln - ls, suffix) != 0) continue;
        char stem[256];
        th_fmt(stem, sizeof stem, "%.*s", (int)(ln - ls), names[i]); /* "temp1" */
        char p[700];
        if (kind == 1 && strcmp(suffix, "_average") == 0) {
            /* power*_input wins over power*_average for the same index */
            th_fmt(p, sizeof p, "%s/%s_input", k->dir, stem);
            if (th_sense_exists(p)) continue;
        }
        channel *c = &k->ch[k->nch++];
        memset(c, 0, sizeof *c);
        th_fmt(c->path, sizeof c->path, "%s/%s", k->dir, names[i]);
        th_fmt(c->stem, sizeof c->stem, "%s", stem);
        c->kind = kind;
        th_fmt(p, sizeof p, "%s/%s_label", k->dir, stem);
        if (th_sense_read_text(p, c->label, sizeof c->label, NULL) != TH_OK) th_fmt(c->label, sizeof c->label, "%s", stem);
    }
}

static int add_chip(const char *dir, const char *name, void *user) {
    hwmon_ctx *h = user;
    char p[600];
    (void)name;
    chip *k = &h->c[h->n];
    memset(k, 0, sizeof *k);
    th_fmt(k->dir, sizeof k->dir, "%s", dir);
    th_fmt(p, sizeof p, "%s/name", k->dir);
    if (th_sense_read_text(p, k->name, sizeof k->name, NULL) != TH_OK) return 0;
    k->cpu = is_cpu_chip(k->name);
    add_channels(k, "temp", "_input", 0);
    add_channels(k, "power", "_input", 1);
    add_channels(k, "power", "_average", 1);
    add_channels(k, "energy", "_input", 2);
    if (k->nch == 0) return 0;
    h->n++;
    return 1;
}

static int scan(const char *root, hwmon_ctx *h) {
    h->n = 0;
    return th_sense_scan_class(root, "hwmon", "hwmon", MAX_CHIPS, add_chip, h);
}

/* Reads <stem>_<what> beside a temperature channel (max, crit), 0 if absent. */
static long long side_value(const channel *c, const char *what) {
    char p[700];
    long long v;
    const char *slash = strrchr(c->path, '/');
    th_fmt(p, sizeof p, "%.*s/%s_%s", (int)(slash - c->path), c->path, c->stem, what);
    return th_sense_read_ll(p, &v, NULL) == TH_OK && v > 0 ? v : 0;
}

static int is_package_label(const char *l) {
    return strncmp(l, "Package id", 10) == 0 || strcmp(l, "Tctl") == 0 || strcmp(l, "Tdie") == 0;
}

/* Chooses the sample's channels; returns 0 if there is no temperature to use. */
static int choose(hwmon_ctx *h, const char *want) {
    h->ntemps = h->nenergies = h->npowers = 0;
    for (int pass = 0; pass < 3 && h->ntemps == 0; pass++) {
        for (int i = 0; i < h->n; i++) {
            chip *k = &h->c[i];
            if (want ? strcmp(k->name, want) != 0 : (pass < 2 && !k->cpu)) continue;
            int got = 0;
            for (int j = 0; j < k->nch; j++) {
                const channel *c = &k->ch[j];
                if (c->kind != 0) continue;
                if (pass == 0 && !is_package_label(c->label)) continue; /* pass 0: packages only */
                if (pass >= 1 && got) break;                                 /* later: first temp per chip */
                h->temps[h->ntemps++] = c;
                got = 1;
                if (h->ntemps == (int)(sizeof h->temps / sizeof h->temps[0])) break;
            }
        }
    }
    for (int i = 0; i < h->n; i++) {
        chip *k = &h->c[i];
        if (want ? strcmp(k->name, want) != 0 : !k->cpu) continue;
        for (int j = 0; j < k->nch; j++) {
            if (k->ch[j].kind == 1 && h->npowers < MAX_CHIPS) h->powers[h->npowers++] = &k->ch[j];
            if (k->ch[j].kind == 2 && h->nenergies < MAX_CHIPS) h->energies[h->nenergies++] = &k->ch[j];
        }
    }
    if (h->ntemps == 0) return 0;
    const channel *t0 = h->temps[0];
    const char *chipname = "";
    for (int i = 0; i < h->n; i++)
        if (t0 >= h->c[i].ch && t0 < h->c[i].ch + MAX_CHANNELS) chipname = h->c[i].name;
    if (h->ntemps > 1)
        th_fmt(h->source, sizeof h->source, "hwmon:%s/%s (max of %d)", chipname, t0->label, h->ntemps);
    else
        th_fmt(h->source, sizeof h->source, "hwmon:%s/%s", chipname, t0->label);
    return 1;
}

static int hwmon_probe(const th_sense_config *cfg) {
    hwmon_ctx *h = th_calloc(1, sizeof *h);
    if (!h) return 0;
    int score = 0;
    if (scan(cfg->root, h) > 0 && choose(h, cfg->zone)) {
        score = 10;
        for (int i = 0; i < h->n; i++)
            if (h->c[i].cpu) score = 35;
    }
    th_free(h);
    return score;
}

static th_status hwmon_open(const th_sense_config *cfg, void **out) {
    hwmon_ctx *h = th_calloc(1, sizeof *h);
    if (!h) return th_fail(TH_ERR_NOMEM, "hwmon: out of memory");
    if (scan(cfg->root, h) == 0 || !choose(h, cfg->zone)) {
        th_free(h);
        if (cfg->zone) return th_fail(TH_ERR_UNSUPPORTED, "hwmon: no temperature on a chip named '%s'", cfg->zone);
        return th_fail(TH_ERR_UNSUPPORTED, "hwmon: no temperature sensors under %s/sys/class/hwmon",
                       cfg->root ? cfg->root : "");
    }
    *out = h;
    return TH_OK;
}

static th_status hwmon_read(void *ctx, th_sample *out) {
    hwmon_ctx *h = ctx;
    th_status first = TH_OK;
    th_sense_health fault = TH_HEALTH_OK;
    char msg[512] = "";
    th_fmt(out->source, sizeof out->source, "%s", h->source);
    out->origin = TH_ORIGIN_MEASURED;
    /* Every channel of the sample is read even after a failure, so what still works stays valid. */
#define NOTE_FAIL(st_, f_)                                                   \
    do {                                                                     \
        if (first == TH_OK) {                                                \
            first = (st_);                                                   \
            fault = (f_);                                                    \
            th_fmt(msg, sizeof msg, "%s", th_last_error());                \
        }                                                                    \
    } while (0)
    long long best = 0;
    int have = 0;
    for (int i = 0; i < h->ntemps; i++) {
        long long v;
        th_sense_health f;
        th_status st = th_sense_read_ll(h->temps[i]->path, &v, &f);
        if (st != TH_OK) {
            NOTE_FAIL(st, f);
            continue;
        }
        if (!have || v > best) best = v;
        have = 1;
    }
    /* a package that cannot be read makes the max meaningless: report the failure */
    if (have && first == TH_OK) {
        out->temp_mc = (int32_t)(best < INT32_MIN ? INT32_MIN : best > INT32_MAX ? INT32_MAX : best);
        out->valid |= TH_SAMPLE_TEMP;
    }
    if (h->npowers) {
        long long sum = 0;
        int ok = 1;
        for (int i = 0; i < h->npowers; i++) {
            long long v;
            th_sense_health f;
            th_status st = th_sense_read_ll(h->powers[i]->path, &v, &f);
            if (st != TH_OK) {
                NOTE_FAIL(st, f);
                ok = 0;
                continue;
            }
            sum += v;
        }
        if (ok) {
            out->power_uw = sum;
            out->valid |= TH_SAMPLE_POWER;
        }
    }
    if (h->nenergies) {
        long long sum = 0;
        int ok = 1;
        for (int i = 0; i < h->nenergies; i++) {
            long long v;
            th_sense_health f;
            th_status st = th_sense_read_ll(h->energies[i]->path, &v, &f);
            if (st != TH_OK) {
                NOTE_FAIL(st, f);
                ok = 0;
                continue;
            }
            sum += v;
        }
        if (ok && sum >= 0) {
            if (!h->have_energy_base) {
                h->energy_base_uj = (uint64_t)sum;
                h->have_energy_base = 1;
            }
            if ((uint64_t)sum < h->energy_base_uj) {
                NOTE_FAIL(th_fail(TH_ERR_FORMAT, "%s: energy counter went backwards", h->energies[0]->path),
                          TH_HEALTH_NONSENSE);
            } else {
                out->energy_uj = (uint64_t)sum - h->energy_base_uj;
                out->valid |= TH_SAMPLE_ENERGY;
            }
        }
    }
#undef NOTE_FAIL
    out->fault = fault;
    if (first != TH_OK) return th_fail(first, "%s", msg);
    return TH_OK;
}

static void hwmon_close(void *ctx) { th_free(ctx); }

static th_status hwmon_limits(void *ctx, th_sense_limits *out) {
    hwmon_ctx *h = ctx;
    memset(out, 0, sizeof *out);
    /* the lowest limit over the packages governs */
    for (int i = 0; i < h->ntemps; i++) {
        long long v = side_value(h->temps[i], "max");
        if (v && (!out->max_operating_mc || v < out->max_operating_mc)) out->max_operating_mc = (int32_t)v;
        v = side_value(h->temps[i], "crit");
        if (v && (!out->shutdown_mc || v < out->shutdown_mc)) out->shutdown_mc = (int32_t)v;
    }
    return TH_OK;
}

static void hwmon_list(void *ctx, double interval_s, th_reading_list *l) {
    (void)interval_s; /* instantaneous readings */
    hwmon_ctx *h = ctx;
    static const th_reading_kind kinds[] = {TH_KIND_TEMP, TH_KIND_POWER, TH_KIND_ENERGY};
    static const double scale[] = {1e-3, 1e-6, 1e-6}; /* m°C, µW, µJ */
    for (int i = 0; i < h->n; i++) {
        const chip *k = &h->c[i];
        for (int j = 0; j < k->nch; j++) {
            const channel *c = &k->ch[j];
            char name[96], src[64];
            long long v = 0;
            th_status st = th_sense_read_ll(c->path, &v, NULL);
            th_fmt(name, sizeof name, "%s/%s", k->name, c->label);
            th_fmt(src, sizeof src, "hwmon:%s/%s", strrchr(k->dir, '/') + 1, strrchr(c->path, '/') + 1);
            th_reading_add(l, name, kinds[c->kind], src, (double)v * scale[c->kind], 1, st, th_last_error());
            for (int m = 0; c->kind == 0 && m < 2; m++) {
                const char *what = m ? "crit" : "max";
                if ((v = side_value(c, what)) == 0) continue;
                th_fmt(name, sizeof name, "%s/%s %s", k->name, c->label, what);
                th_reading_add(l, name, TH_KIND_LIMIT, src, (double)v / 1000.0, 1, TH_OK, NULL);
            }
        }
    }
}

const th_sensor_ops th_sense_hwmon_ops = {
    .name = "hwmon",
    .api_version = TH_SENSE_API_VERSION,
    .provides = TH_SAMPLE_TEMP | TH_SAMPLE_POWER | TH_SAMPLE_ENERGY,
    .probe = hwmon_probe,
    .open = hwmon_open,
    .read = hwmon_read,
    .close = hwmon_close,
    .limits = hwmon_limits,
    .list = hwmon_list,
};
