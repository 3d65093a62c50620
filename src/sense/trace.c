/* trace.c: the "trace" backend, a recorded telemetry file (CSV or JSONL) played back as a
 * sensor by sample time: a read returns the latest recorded sample whose time (from the
 * first sample, scaled by trace_speed) has passed on the config's clock. Replayed samples
 * have origin replayed (whatever was recorded, nothing is being measured now) and keep the
 * recorded source with "(replay)". After the last sample plus one recorded interval the
 * sensor reads as vanished. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "sense/sense_internal.h"

typedef struct {
    th_telemetry_row *rows; /* sample rows only */
    size_t n, cursor;
    double end_s;
    double speed;
    uint64_t t0_ns;
    th_sense_clock clock;
    char path[512];
} trace_ctx;

static int trace_probe(const th_sense_config *cfg) { return cfg->trace_path ? 100 : 0; }

static th_status trace_open(const th_sense_config *cfg, void **out) {
    if (!cfg->trace_path) return th_fail(TH_ERR_UNSUPPORTED, "trace: no trace file given");
    if (cfg->trace_speed < 0 || !isfinite(cfg->trace_speed))
        return th_fail(TH_ERR_INVALID, "trace: speed must be > 0, got %g", cfg->trace_speed);
    th_telemetry_row *rows;
    size_t n;
    th_status st = th_telemetry_read(cfg->trace_path, &rows, &n);
    if (st != TH_OK) return st;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (rows[i].kind != TH_ROW_SAMPLE) continue;
        if (k > 0 && rows[i].t_s < rows[k - 1].t_s) {
            double t = rows[i].t_s, prev = rows[k - 1].t_s; // read before the rows are freed
            th_free(rows);
            return th_fail(TH_ERR_FORMAT, "%s: sample times go backwards (%.6f after %.6f s)", cfg->trace_path, t,
                           prev);
        }
        rows[k++] = rows[i];
    }
    if (k == 0) {
        th_free(rows);
        return th_fail(TH_ERR_FORMAT, "%s: no sample rows to replay", cfg->trace_path);
    }
    trace_ctx *c = th_calloc(1, sizeof *c);
    if (!c) {
        th_free(rows);
        return th_fail(TH_ERR_NOMEM, "trace: out of memory");
    }
    c->rows = rows;
    c->n = k;
    c->speed = cfg->trace_speed > 0 ? cfg->trace_speed : 1.0;
    double last_gap = k > 1 ? rows[k - 1].t_s - rows[k - 2].t_s : 1.0;
    c->end_s = rows[k - 1].t_s + (last_gap > 0 ? last_gap : 1.0);
    c->clock = th_sense_clock_of(cfg);
    c->t0_ns = th_sense_clock_now(c->clock);
    th_fmt(c->path, sizeof c->path, "%s", cfg->trace_path);
    *out = c;
    return TH_OK;
}

static th_status trace_read(void *ctx, th_sample *out) {
    trace_ctx *c = ctx;
    uint64_t now = th_sense_clock_now(c->clock);
    double t_rec = c->rows[0].t_s + (double)(now - c->t0_ns) / 1e9 * c->speed;
    while (c->cursor + 1 < c->n && c->rows[c->cursor + 1].t_s <= t_rec) c->cursor++;
    const th_telemetry_row *r = &c->rows[c->cursor];
    th_fmt(out->source, sizeof out->source, "%.80s (replay)", r->source[0] ? r->source : "trace");
    if (t_rec >= c->end_s) {
        out->fault = TH_HEALTH_VANISHED;
        return th_fail(TH_ERR_IO, "%s: trace ended at t=%.3f s", c->path, c->rows[c->n - 1].t_s);
    }
    out->t_ns = c->t0_ns + (uint64_t)llround((r->t_s - c->rows[0].t_s) / c->speed * 1e9);
    if (r->has & TH_COL_TEMP) {
        out->temp_mc = (int32_t)llround(r->temp_c * 1000.0);
        out->valid |= TH_SAMPLE_TEMP;
    }
    if (r->has & TH_COL_POWER) {
        out->power_uw = (int64_t)llround(r->power_w * 1e6);
        out->valid |= TH_SAMPLE_POWER;
    }
    if ((r->has & TH_COL_ENERGY) && r->energy_j >= 0) {
        out->energy_uj = (uint64_t)llround(r->energy_j * 1e6);
        out->valid |= TH_SAMPLE_ENERGY;
    }
    if (r->has & TH_COL_UTIL) {
        out->util = r->util;
        out->valid |= TH_SAMPLE_UTIL;
    }
    return TH_OK;
}

static void trace_close(void *ctx) {
    trace_ctx *c = ctx;
    th_free(c->rows);
    th_free(c);
}

const th_sensor_ops th_sense_trace_ops = {
    .name = "trace",
    .api_version = TH_SENSE_API_VERSION,
    .provides = TH_SAMPLE_TEMP | TH_SAMPLE_POWER | TH_SAMPLE_ENERGY | TH_SAMPLE_UTIL,
    .origin = TH_ORIGIN_REPLAYED,
    .probe = trace_probe,
    .open = trace_open,
    .read = trace_read,
    .close = trace_close,
};
