/* report.c: the report that ends a monitored run (train, generate): the footprint of the
 * run's energy, its per-token and per-step figures, what a guard judged wasted, and the
 * thermal and pacing figures, built once into one structure and written from it as a short
 * summary, the full text, the JSON file (atomically) and the CodeCarbon emissions.csv row. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "thermo/pipeline.h"

/* What one unit (a token, a step) or the wasted tokens cost. co2e and water are NaN without
 * factors; water_offsite_l is NaN when EWIF is unknown. */
typedef struct {
    int have;
    double count;
    double energy_j, co2e_g, water_onsite_l, water_offsite_l;
} unit_figure;

struct th_run_report {
    th_run_figures fig;
    int have_fp;            /* factors were given and the energy priced */
    th_eco_footprint fp;    /* the run's footprint, with the factors that applied */
    char command[64];
    int have_stop_reason;
    char stop_reason[352];
    char waste_what[256];
    unit_figure per_token, per_step, waste;
    int have_embodied;      /* th_run_report_add_embodied was called */
    th_eco_hardware hw;
    th_eco_embodied emb;
    th_eco_kept kept;
    th_eco_storage_charge store, store_month; /* over the run's held time; over 30 days kept */
    char replicas_how[96];
    th_eco_range total_g;   /* operational (one figure) + embodied + storage */
    th_eco_range share;     /* (embodied + storage) / total, low with low, high with high */
};

static int is_measured(const th_run_figures *fig) {
    return fig->origin == TH_ORIGIN_MEASURED && fig->energy.basis != TH_ECO_BASIS_MODELED;
}

/* What `k` of the run's `n` units cost: one unit's figures for k = 1, `count` says how many
 * units the figure stands for (n per unit, k for the wasted ones). */
static unit_figure unit_share(const th_run_report *r, double n, double k, double count) {
    unit_figure u = {0, 0, 0, NAN, NAN, NAN};
    if (!(n > 0) || !isfinite(n)) return u;
    double share = k / n;
    u.have = 1;
    u.count = count;
    u.energy_j = r->fig.energy.energy_j * share;
    if (r->have_fp) {
        u.co2e_g = r->fp.co2e_g * share;
        u.water_onsite_l = r->fp.water_onsite_l * share;
        u.water_offsite_l = r->fp.water_offsite_l * share;
    }
    return u;
}

th_status th_run_report_build(const th_run_figures *fig, const th_eco_factors *f, const th_run_units *u,
                              th_run_report **out) {
    if (!out) return th_fail(TH_ERR_INVALID, "run report: NULL output");
    *out = NULL;
    if (!fig) return th_fail(TH_ERR_INVALID, "run report: NULL figures");
    th_status st = TH_OK;
    th_run_report *r = th_calloc(1, sizeof *r);
    if (!r) return th_fail(TH_ERR_NOMEM, "run report: out of memory");
    r->fig = *fig;
    snprintf(r->command, sizeof r->command, "%s", u && u->command ? u->command : "run");
    if (u && u->stop_reason) {
        r->have_stop_reason = 1;
        snprintf(r->stop_reason, sizeof r->stop_reason, "%s", u->stop_reason);
    }
    snprintf(r->waste_what, sizeof r->waste_what, "%s", u && u->waste_what ? u->waste_what : "a guard");
    if (fig->have_energy && f) {
        if ((st = th_eco_footprint_compute(&fig->energy, f, &r->fp)) != TH_OK) goto done;
        r->have_fp = 1;
    }
    if (fig->have_energy && u) {
        r->per_token = unit_share(r, u->tokens, 1.0, u->tokens);
        r->per_step = unit_share(r, u->steps, 1.0, u->steps);
        if (u->wasted_tokens > 0) r->waste = unit_share(r, u->tokens, u->wasted_tokens, u->wasted_tokens);
    }
done:
    if (st != TH_OK) {
        th_free(r);
        return st;
    }
    *out = r;
    return TH_OK;
}

void th_run_report_free(th_run_report *r) { th_free(r); }

int th_run_report_has_energy(const th_run_report *r) { return r && r->fig.have_energy; }

/* ---------------------------------------------------------------------------------
 * embodied carbon and storage */

#define SECONDS_30_DAYS (30.0 * 86400.0)

th_status th_run_report_add_embodied(th_run_report *r, const th_eco_hardware *hw, const th_eco_kept *kept) {
    if (!r || !hw) return th_fail(TH_ERR_INVALID, "run report: NULL embodied argument");
    if (!r->have_fp) return th_fail(TH_ERR_STATE, "run report: embodied lines need the run's footprint (energy and factors)");
    const th_eco_factor *F = r->fp.factors.f;
    double held = r->fig.seconds > 0 ? r->fig.seconds : r->fig.energy.duration_s;
    th_eco_kept none;
    memset(&none, 0, sizeof none);
    if (!kept) kept = &none;
    double replicas = hw->replicas;
    char how[96];
    if (isfinite(replicas))
        snprintf(how, sizeof how, "--hardware replicas");
    else if (!strcmp(r->fp.factors.preset, "datacenter"))
        replicas = 3, snprintf(how, sizeof how, "default for datacenter: 3 (e-footprint examples' replication factor)");
    else
        replicas = 1, snprintf(how, sizeof how, "default for own-machine: 1 copy, on this machine");
    th_eco_embodied emb;
    th_eco_storage_charge store, month;
    th_status st = th_eco_embodied_compute(hw, held, &emb);
    if (st == TH_OK)
        st = th_eco_storage_charge_compute(hw, kept->bytes, replicas, held, F[TH_ECO_F_PUE].value,
                                           F[TH_ECO_F_GRID_CO2E].value, &store);
    if (st == TH_OK)
        st = th_eco_storage_charge_compute(hw, kept->bytes, replicas, SECONDS_30_DAYS, F[TH_ECO_F_PUE].value,
                                           F[TH_ECO_F_GRID_CO2E].value, &month);
    if (st != TH_OK) return st;
    r->hw = *hw;
    r->emb = emb;
    r->kept = *kept;
    r->store = store;
    r->store_month = month;
    snprintf(r->replicas_how, sizeof r->replicas_how, "%s", how);
    th_eco_range ours = th_eco_range_add(emb.total_g, store.total_g);
    r->total_g = th_eco_range_add(th_eco_range_point(r->fp.co2e_g), ours);
    r->share = (th_eco_range){r->total_g.lo > 0 ? ours.lo / r->total_g.lo : 0, r->total_g.mid > 0 ? ours.mid / r->total_g.mid : 0,
                              r->total_g.hi > 0 ? ours.hi / r->total_g.hi : 0};
    r->have_embodied = 1;
    return TH_OK;
}

/* ---------------------------------------------------------------------------------
 * text: formatted twice, once to measure and once into the allocation */

static void tb_footprint(th_textbuf *b, const th_eco_footprint *fp, th_eco_text_style style) {
    size_t room = b->len < b->cap ? b->cap - b->len : 0, need = 0;
    (void)th_eco_report_text(fp, style, room ? b->buf + b->len : NULL, room, &need);
    b->len += need;
}

static double water_total_l(const unit_figure *u) {
    return u->water_onsite_l + (isnan(u->water_offsite_l) ? 0.0 : u->water_offsite_l);
}

/* The first line: where the figures come from (DESIGN.md invariant 4). */
static void text_header(th_textbuf *b, const th_run_report *r) {
    const th_run_figures *g = &r->fig;
    if (g->origin == TH_ORIGIN_MODELED)
        th_textbuf_printf(b, "eco: MODELED by the simulated plant (%s; no hardware sensor was read)\n", g->sensor);
    else if (g->origin != TH_ORIGIN_MEASURED)
        th_textbuf_printf(b, "eco: MODELED (%s is not a live measurement; no hardware sensor was read)\n", g->sensor);
    else if (g->have_energy && g->energy.basis == TH_ECO_BASIS_MODELED)
        th_textbuf_printf(b, "eco: energy MODELED (%s); readings measured by %s\n", g->energy.source, g->sensor);
    else
        th_textbuf_printf(b, "eco: MEASURED by %s\n", g->sensor);
}

static void text_no_energy(th_textbuf *b, const th_run_report *r) {
    th_textbuf_printf(b,
                      "no energy figure: the sensor %s gave neither an energy counter nor power (%llu samples, "
                      "%llu failed reads)\n",
                      r->fig.sensor, (unsigned long long)r->fig.samples, (unsigned long long)r->fig.failed_reads);
}

/* The devices, short: "cpu AMD EPYC 7B13, dram 16.8 GB, 1 unknown". */
static void device_list(th_textbuf *b, const th_run_report *r) {
    size_t unknown = 0, shown = 0;
    for (size_t i = 0; i < r->hw.n; i++) {
        const th_eco_device *d = &r->hw.dev[i];
        if (!d->known) {
            unknown++;
            continue;
        }
        th_textbuf_printf(b, "%s%s", shown++ ? ", " : "", d->row.device);
        if (strcmp(d->row.unit, "GB") && strcmp(d->row.unit, "TB")) {
            if (d->count != 1) th_textbuf_printf(b, " x%g", d->count);
        } else {
            th_textbuf_printf(b, " %.3g %s", d->count, d->row.unit);
        }
    }
    if (unknown) th_textbuf_printf(b, "%s%zu unknown", shown ? "; " : "", unknown);
    if (!r->hw.n) th_textbuf_printf(b, "no devices");
    if (r->hw.share != 1) th_textbuf_printf(b, "; share %g", r->hw.share);
}

/* The compact report's one line: embodied and storage, and their share of the total. */
static void text_embodied_line(th_textbuf *b, const th_run_report *r) {
    char e[64], st[64], kept[32], sh[64];
    th_eco_fmt_range(e, sizeof e, r->emb.total_g, "g");
    th_eco_fmt_range(st, sizeof st, r->store.total_g, "g");
    th_eco_fmt_si(kept, sizeof kept, r->kept.bytes, "B");
    th_textbuf_printf(b, "  embodied %s%s CO2e, %.3g s held (", r->emb.n_unknown ? ">= " : "", e, r->emb.held_s);
    device_list(b, r);
    th_textbuf_printf(b, ") \xc2\xb7 storage %s kept x%g: %s", kept, r->store.replicas, st);
    if (th_eco_range_wide(r->share))
        snprintf(sh, sizeof sh, "%.0f %% (%.0f to %.0f %%)", 100 * r->share.mid, 100 * r->share.lo, 100 * r->share.hi);
    else
        snprintf(sh, sizeof sh, "%.0f %%", 100 * r->share.mid);
    th_textbuf_printf(b, " \xc2\xb7 %s of the run's CO2e\n", sh);
}

static void range_line(th_textbuf *b, const char *label, th_eco_range g) {
    if (isnan(g.mid))
        th_textbuf_printf(b, "  %-26s unknown\n", label);
    else
        th_textbuf_printf(b, "  %-26s %.4g g CO2e (low %.4g, high %.4g)\n", label, g.mid, g.lo, g.hi);
}

/* The full report's embodied and storage section, every factor with its source. */
static void text_embodied_full(th_textbuf *b, const th_run_report *r) {
    const th_eco_embodied *m = &r->emb;
    th_textbuf_printf(b, "embodied (hardware held %.1f s: wall time, pacing waits included; kg x count x share x held / life)\n",
                      m->held_s);
    th_textbuf_printf(b, "  hardware: %s%s\n", r->hw.spec, strcmp(r->hw.spec, "host") ? " (--hardware)" : " (what the host reports)");
    for (size_t i = 0; i < r->hw.n; i++) {
        const th_eco_device *d = &r->hw.dev[i];
        if (!d->known) {
            th_textbuf_printf(b, "  %-10s %s (%s): unknown: no row of embodied.csv maps it (name it with --hardware)\n",
                              d->cls, d->name, d->how);
            continue;
        }
        th_textbuf_printf(b, "  %-10s %s (%s) -> row %s: %g %s x %.4g kg (low %.4g, high %.4g) / %.3g y (%s): %.4g g "
                             "(low %.4g, high %.4g)",
                          d->cls, d->name, d->how, d->row.device, d->count, d->row.unit, d->row.kg_co2e.mid,
                          d->row.kg_co2e.lo, d->row.kg_co2e.hi, d->life_y, d->life_how, m->dev_g[i].mid, m->dev_g[i].lo,
                          m->dev_g[i].hi);
        if (isfinite(m->dev_adp_g[i])) th_textbuf_printf(b, ", %.3g mg Sb-eq", m->dev_adp_g[i] * 1e3);
        th_textbuf_printf(b, "\n             [%s, %s; %s; %s]\n", d->row.source, d->row.year, d->row.basis, d->row.origin);
    }
    range_line(b, m->n_unknown ? "embodied (known devices)" : "embodied", m->total_g);
    th_textbuf_printf(b, "  %-26s %.4g mg Sb-eq%s\n", "abiotic depletion", m->adp_g * 1e3,
                      m->n_no_adp ? " (devices without an ADP source left out)" : "");
    const th_eco_storage_charge *s = &r->store;
    th_textbuf_printf(b, "storage (kept files x replicas x kWh/TB-year x PUE x grid, + embodied on %s)\n", r->hw.medium);
    th_textbuf_printf(b, "  kept %.6g MB:", r->kept.bytes / 1e6);
    for (size_t i = 0; i < r->kept.n; i++)
        th_textbuf_printf(b, "%s %s %.4g MB", i ? "," : "", r->kept.item[i].what, r->kept.item[i].bytes / 1e6);
    th_textbuf_printf(b, "%s; replicas %g (%s)\n", r->kept.n ? "" : " none", s->replicas, r->replicas_how);
    th_textbuf_printf(b, "  %-26s %.4g kWh (low %.4g, high %.4g)  [%s, %s; %s]\n", "energy (facility)", s->energy_kwh.mid,
                      s->energy_kwh.lo, s->energy_kwh.hi, r->hw.medium_energy.source, r->hw.medium_energy.year,
                      r->hw.medium_energy.basis);
    range_line(b, "storage operational", s->co2e_g);
    range_line(b, "storage embodied", s->embodied_g);
    th_textbuf_printf(b, "  %-26s copies %g%s  [%s, %s]\n", "", s->copies_embodied,
                      r->hw.drive_named ? " (the named drive carries the first)" : "", r->hw.medium_embodied.source,
                      r->hw.medium_embodied.year);
    range_line(b, "per 30 days kept", r->store_month.total_g);
    th_textbuf_printf(b, "totals (operational is one figure, %s; embodied and storage are ranges)\n",
                      th_eco_basis_name(r->fp.it.basis));
    th_textbuf_printf(b, "  %-26s %.4g g CO2e\n", "operational", r->fp.co2e_g);
    range_line(b, "total", r->total_g);
    th_textbuf_printf(b, "  %-26s %.3g %% (low %.3g, high %.3g)\n", "embodied + storage share", 100 * r->share.mid,
                      100 * r->share.lo, 100 * r->share.hi);
    double units[2] = {r->per_token.have ? r->per_token.count : 0, r->per_step.have ? r->per_step.count : 0};
    const char *names[2] = {"token", "step"};
    for (int k = 0; k < 2; k++)
        if (units[k] > 0) {
            th_eco_range g = th_eco_range_scale(m->total_g, 1.0 / units[k]);
            th_textbuf_printf(b, "  embodied per %-13s %.4g mg CO2e (low %.4g, high %.4g)\n", names[k], g.mid * 1e3,
                              g.lo * 1e3, g.hi * 1e3);
        }
}

static void text_summary(th_textbuf *b, const th_run_report *r) {
    const th_run_figures *g = &r->fig;
    text_header(b, r);
    if (!g->have_energy) {
        th_textbuf_printf(b, "  ");
        text_no_energy(b, r);
    } else if (r->have_fp) {
        tb_footprint(b, &r->fp, TH_ECO_TEXT_SUMMARY);
    } else {
        char e[32];
        th_eco_fmt_si(e, sizeof e, g->energy.energy_j, "J");
        th_textbuf_printf(b, "  energy %s IT over %.3g s, %s (%s); no factors: CO2e and water not priced\n", e,
                          g->energy.duration_s, th_eco_basis_name(g->energy.basis), g->energy.source);
    }
    const char *sep = "  ";
    const unit_figure *u = r->per_token.have ? &r->per_token : r->per_step.have ? &r->per_step : NULL;
    if (u) {
        char e[32], c[32];
        th_eco_fmt_si(e, sizeof e, u->energy_j, "J");
        th_textbuf_printf(b, "%sper %s %s", sep, u == &r->per_token ? "token" : "step", e);
        if (r->have_fp) {
            th_eco_fmt_si(c, sizeof c, u->co2e_g, "g");
            th_textbuf_printf(b, ", %s CO2e", c);
        }
        sep = " \xc2\xb7 ";
    }
    if (!isnan(g->temp_max_c)) {
        th_textbuf_printf(b, "%speak %.1f \xc2\xb0""C %s (limit %.1f, %.1f s above)", sep, g->temp_max_c,
                          g->origin == TH_ORIGIN_MEASURED ? "measured" : "modeled", g->limit_c, g->above_limit_s);
        sep = " \xc2\xb7 ";
    }
    double paced = g->busy_s + g->idle_s;
    th_textbuf_printf(b, "%spacing %.0f %% idle (%s)", sep, paced > 0 ? 100.0 * g->idle_s / paced : 0.0, g->governor);
    if (isfinite(g->necessary_idle_s) && g->busy_s > 0)
        th_textbuf_printf(b, ", %.0f %% necessary", 100.0 * g->necessary_idle_s / (g->busy_s + g->necessary_idle_s));
    if (g->fail_safe_decisions)
        th_textbuf_printf(b, " \xc2\xb7 %llu fail-safe decisions", (unsigned long long)g->fail_safe_decisions);
    th_textbuf_printf(b, "\n");
    if (r->waste.have) {
        char e[32];
        th_eco_fmt_si(e, sizeof e, r->waste.energy_j, "J");
        th_textbuf_printf(b, "  wasted by %s: %.0f tokens, %s", r->waste_what, r->waste.count, e);
        if (r->have_fp) {
            char c[32];
            th_eco_fmt_si(c, sizeof c, r->waste.co2e_g, "g");
            th_textbuf_printf(b, ", %s CO2e", c);
        }
        th_textbuf_printf(b, "\n");
    }
    if (r->have_embodied) text_embodied_line(b, r);
    if (r->have_fp) {
        int n = 0; // the factor rows of the full text
        for (int i = 0; i < TH_ECO_F_COUNT; i++) n += i != TH_ECO_F_METHANE || r->fp.factors.methane_enabled;
        th_textbuf_printf(b,
                          "  all %d factors with their sources, and the EPA equivalences: --report full, or "
                          "--report-json FILE\n",
                          n);
    }
}

static void text_unit_line(th_textbuf *b, const char *name, const unit_figure *u) {
    th_textbuf_printf(b, "per %-5s %.4g J IT", name, u->energy_j);
    if (!isnan(u->co2e_g))
        th_textbuf_printf(b, ", %.4g mg CO2e, %.4g mL water", u->co2e_g * 1e3, water_total_l(u) * 1e3);
    th_textbuf_printf(b, " (%g %ss)\n", u->count, name);
}

/* The full text: the run's lines as the CLI printed them before, then the footprint's. */
static void text_full(th_textbuf *b, const th_run_report *r) {
    const th_run_figures *g = &r->fig;
    th_textbuf_printf(b, "\n== eco report: %s ==\n", r->command);
    if (!g->have_energy) {
        text_no_energy(b, r);
        return;
    }
    if (g->origin == TH_ORIGIN_MODELED)
        th_textbuf_printf(b,
                          "NOTE: no hardware sensor was read; energy and temperature are MODELED by the simulated "
                          "plant (%s), not measured.\n",
                          g->sensor);
    else if (g->origin != TH_ORIGIN_MEASURED)
        th_textbuf_printf(b,
                          "NOTE: %s is not a live measurement; energy and temperature are MODELED, not measured "
                          "now.\n",
                          g->sensor);
    else if (g->energy.basis == TH_ECO_BASIS_MODELED)
        th_textbuf_printf(b, "NOTE: energy is MODELED (%s); readings measured by %s\n", g->energy.source, g->sensor);
    else
        th_textbuf_printf(b, "energy measured by %s (%s)\n", g->energy.source, th_eco_basis_name(g->energy.basis));
    if (!isnan(g->temp_max_c))
        th_textbuf_printf(b, "temperature: last %.1f C, peak %.1f C (%s); limit %.1f C, %.1f s above it\n", g->temp_c,
                          g->temp_max_c, g->origin == TH_ORIGIN_MEASURED ? "measured" : "modeled", g->limit_c,
                          g->above_limit_s);
    double paced = g->busy_s + g->idle_s;
    th_textbuf_printf(b, "pacing (%s): %.1f s of idle injected over %.1f s of work, throughput cost %.1f%%%s\n",
                      g->governor, g->idle_s, g->busy_s, paced > 0 ? 100.0 * g->idle_s / paced : 0.0,
                      g->fail_safe_decisions ? "; fail-safe decisions: yes" : "");
    if (isfinite(g->necessary_idle_s) && g->busy_s > 0)
        th_textbuf_printf(b,
                          "pacing necessary: %.1f s (%.1f%%): what the optimal policy would have injected for the same "
                          "work on this modeled plant, knowing it exactly; the rest (%.1f s) was the governor's caution\n",
                          g->necessary_idle_s, 100.0 * g->necessary_idle_s / (g->busy_s + g->necessary_idle_s),
                          fmax(0.0, g->idle_s - g->necessary_idle_s));
    if (g->governor_status[0]) th_textbuf_printf(b, "governor: %s\n", g->governor_status);
    if (g->feed_forward[0]) th_textbuf_printf(b, "gradient-norm %s\n", g->feed_forward);
    if (r->have_fp)
        tb_footprint(b, &r->fp, TH_ECO_TEXT_FULL);
    else
        th_textbuf_printf(b, "energy (%s, %s)\n  %-26s %.4g J over %.1f s\n  no factors: CO2e and water not priced\n",
                          th_eco_basis_name(g->energy.basis), g->energy.source, "IT", g->energy.energy_j,
                          g->energy.duration_s);
    if (r->per_token.have) text_unit_line(b, "token", &r->per_token);
    if (r->per_step.have) text_unit_line(b, "step", &r->per_step);
    if (r->waste.have) {
        th_textbuf_printf(b, "wasted by %s: %.0f tokens, %.4g J", r->waste_what, r->waste.count, r->waste.energy_j);
        if (r->have_fp)
            th_textbuf_printf(b, ", %.4g g CO2e, %.4g mL water", r->waste.co2e_g, water_total_l(&r->waste) * 1e3);
        th_textbuf_printf(b, "\n");
    }
    if (r->have_embodied) text_embodied_full(b, r);
}

th_status th_run_report_text(const th_run_report *r, th_report_style style, char **text) {
    if (!text) return th_fail(TH_ERR_INVALID, "run report text: NULL output");
    *text = NULL;
    if (!r) return th_fail(TH_ERR_INVALID, "run report text: NULL report");
    if (style != TH_REPORT_SUMMARY && style != TH_REPORT_FULL)
        return th_fail(TH_ERR_INVALID, "run report text: unknown style %d", (int)style);
    th_textbuf b = {NULL, 0, 0};
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) {
            b.cap = b.len + 1;
            b.len = 0;
            if (!(b.buf = th_alloc(b.cap))) return th_fail(TH_ERR_NOMEM, "run report text: out of memory");
            b.buf[0] = '\0';
        }
        if (style == TH_REPORT_SUMMARY)
            text_summary(&b, r);
        else
            text_full(&b, r);
    }
    *text = b.buf;
    return TH_OK;
}

/* ---------------------------------------------------------------------------------
 * JSON */

static int set_real(json_t *o, const char *key, double v) {
    return json_object_set_new(o, key, isfinite(v) ? json_real(v) : json_null());
}

static json_t *unit_json(const unit_figure *u) {
    json_t *o = json_object();
    if (!o) return NULL;
    int bad = set_real(o, "energy_it_j", u->energy_j);
    bad |= set_real(o, "co2e_g", u->co2e_g);
    bad |= set_real(o, "water_onsite_l", u->water_onsite_l);
    bad |= set_real(o, "count", u->count);
    if (isfinite(u->water_offsite_l)) bad |= set_real(o, "water_offsite_l", u->water_offsite_l);
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* The energy keys of th_eco_report_json, for a run with no factors to price it. */
static json_t *energy_json(const th_energy_figure *e) {
    json_t *o = json_object();
    if (!o) return NULL;
    int bad = set_real(o, "energy_it_kwh", e->energy_j / TH_J_PER_KWH);
    bad |= set_real(o, "duration_s", e->duration_s);
    bad |= json_object_set_new(o, "basis", json_string(th_eco_basis_name(e->basis)));
    bad |= json_object_set_new(o, "energy_basis", json_string(th_eco_basis_name(e->basis)));
    bad |= json_object_set_new(o, "energy_source", json_string(e->source));
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *range_json(th_eco_range g) {
    json_t *o = json_object();
    if (o && (set_real(o, "low", g.lo) | set_real(o, "central", g.mid) | set_real(o, "high", g.hi))) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* The embodied and storage keys (th_run_report_add_embodied). Returns 0 on success. */
static int embodied_json(const th_run_report *r, json_t *j) {
    const th_eco_embodied *m = &r->emb;
    json_t *e = json_object(), *devs = json_array(), *st = json_object(), *items = json_object();
    int bad = !e || !devs || !st || !items;
    for (size_t i = 0; !bad && i < r->hw.n; i++) {
        const th_eco_device *d = &r->hw.dev[i];
        json_t *o = json_pack("{s:s, s:s, s:s, s:b, s:f}", "name", d->name, "class", d->cls, "how", d->how, "known",
                              d->known, "count", d->count);
        bad |= !o;
        if (!bad && d->known) {
            bad |= json_object_set_new(o, "row", json_string(d->row.device));
            bad |= json_object_set_new(o, "unit", json_string(d->row.unit));
            bad |= json_object_set_new(o, "kg_co2e_per_unit", range_json(d->row.kg_co2e));
            bad |= set_real(o, "life_years", d->life_y);
            bad |= json_object_set_new(o, "life_how", json_string(d->life_how));
            bad |= json_object_set_new(o, "co2e_g", range_json(m->dev_g[i]));
            bad |= set_real(o, "adp_g_sb_eq", m->dev_adp_g[i]);
            bad |= json_object_set_new(o, "source", json_string(d->row.source));
            bad |= json_object_set_new(o, "year", json_string(d->row.year));
            bad |= json_object_set_new(o, "basis", json_string(d->row.basis));
            bad |= json_object_set_new(o, "origin", json_string(d->row.origin));
        } else if (!bad) {
            bad |= json_object_set_new(o, "co2e_g", json_null());
        }
        bad |= json_array_append_new(devs, o);
    }
    if (!bad) {
        bad |= set_real(e, "held_s", m->held_s);
        bad |= json_object_set_new(e, "allocation", json_string("kg x count x share x held wall time / service life"));
        bad |= json_object_set_new(e, "hardware", json_string(r->hw.spec));
        bad |= set_real(e, "share", r->hw.share);
        bad |= json_object_set_new(e, "co2e_g", range_json(m->total_g));
        bad |= set_real(e, "adp_g_sb_eq", m->adp_g);
        bad |= json_object_set_new(e, "unknown_devices", json_integer((json_int_t)m->n_unknown));
        if (r->per_token.have && r->per_token.count > 0)
            bad |= json_object_set_new(e, "per_token_g", range_json(th_eco_range_scale(m->total_g, 1.0 / r->per_token.count)));
        if (r->per_step.have && r->per_step.count > 0)
            bad |= json_object_set_new(e, "per_step_g", range_json(th_eco_range_scale(m->total_g, 1.0 / r->per_step.count)));
        bad |= json_object_set_new(e, "devices", devs);
        devs = NULL;
        for (size_t i = 0; i < r->kept.n; i++) bad |= set_real(items, r->kept.item[i].what, r->kept.item[i].bytes);
        bad |= set_real(st, "bytes", r->kept.bytes);
        bad |= json_object_set_new(st, "kept", items);
        items = NULL;
        bad |= json_object_set_new(st, "medium", json_string(r->hw.medium));
        bad |= set_real(st, "replicas", r->store.replicas);
        bad |= json_object_set_new(st, "replicas_how", json_string(r->replicas_how));
        bad |= set_real(st, "held_s", r->store.held_s);
        bad |= json_object_set_new(st, "energy_facility_kwh", range_json(r->store.energy_kwh));
        bad |= json_object_set_new(st, "co2e_g", range_json(r->store.co2e_g));
        bad |= json_object_set_new(st, "embodied_g", range_json(r->store.embodied_g));
        bad |= json_object_set_new(st, "total_g", range_json(r->store.total_g));
        bad |= json_object_set_new(st, "per_30_days_g", range_json(r->store_month.total_g));
        bad |= json_object_set_new(st, "energy_source", json_string(r->hw.medium_energy.source));
        bad |= json_object_set_new(st, "embodied_source", json_string(r->hw.medium_embodied.source));
        bad |= json_object_set_new(j, "embodied", e);
        e = NULL;
        bad |= json_object_set_new(j, "storage", st);
        st = NULL;
        bad |= json_object_set_new(j, "co2e_total_g", range_json(r->total_g));
        bad |= json_object_set_new(j, "embodied_storage_share", range_json(r->share));
    }
    json_decref(e);
    json_decref(devs);
    json_decref(st);
    json_decref(items);
    return bad;
}

static th_status report_json(const th_run_report *r, json_t **out) {
    *out = NULL;
    const th_run_figures *g = &r->fig;
    json_t *j = NULL, *per = NULL;
    th_status st = TH_OK;
    if (r->have_fp) {
        void *v = NULL;
        if ((st = th_eco_report_json(&r->fp, NULL, &v)) != TH_OK) goto done;
        j = v;
    } else if (!(j = energy_json(&g->energy))) {
        st = th_fail(TH_ERR_NOMEM, "run report JSON: out of memory");
        goto done;
    }
    int bad = !(per = json_object());
    if (!bad && r->per_token.have) bad |= json_object_set_new(per, "token", unit_json(&r->per_token));
    if (!bad && r->per_step.have) bad |= json_object_set_new(per, "step", unit_json(&r->per_step));
    bad |= json_object_set_new(j, "per_unit", per);
    per = NULL; // owned by j now, even when the set failed
    bad |= json_object_set_new(j, "command", json_string(r->command));
    if (r->have_stop_reason) bad |= json_object_set_new(j, "stop_reason", json_string(r->stop_reason));
    if (r->waste.have)
        bad |= json_object_set_new(j, "wasted",
                                   json_pack("{s:s, s:f, s:f, s:o, s:o}", "by", r->waste_what, "tokens", r->waste.count,
                                             "energy_it_j", r->waste.energy_j, "co2e_g",
                                             isfinite(r->waste.co2e_g) ? json_real(r->waste.co2e_g) : json_null(),
                                             "water_onsite_l",
                                             isfinite(r->waste.water_onsite_l) ? json_real(r->waste.water_onsite_l)
                                                                               : json_null()));
    bad |= json_object_set_new(j, "measured", json_boolean(is_measured(g)));
    if (isfinite(g->temp_max_c)) bad |= set_real(j, "temp_peak_c", g->temp_max_c);
    if (isfinite(g->temp_c)) bad |= set_real(j, "temp_last_c", g->temp_c);
    bad |= json_object_set_new(j, "thermal",
                               json_pack("{s:s, s:f, s:f, s:f, s:f, s:I}", "governor", g->governor, "limit_c",
                                         g->limit_c, "above_limit_s", g->above_limit_s, "busy_s", g->busy_s, "idle_s",
                                         g->idle_s, "fail_safe_decisions", (json_int_t)g->fail_safe_decisions));
    if (isfinite(g->necessary_idle_s))
        bad |= set_real(json_object_get(j, "thermal"), "necessary_idle_s", g->necessary_idle_s);
    bad |= json_object_set_new(j, "report_version", json_integer(TH_RUN_REPORT_VERSION));
    if (r->have_embodied) bad |= embodied_json(r, j);
    if (bad) st = th_fail(TH_ERR_NOMEM, "run report JSON: out of memory");
done:
    json_decref(per);
    if (st != TH_OK) {
        json_decref(j);
        return st;
    }
    *out = j;
    return TH_OK;
}

th_status th_run_report_write_json(const th_run_report *r, const char *path) {
    if (!r || !path) return th_fail(TH_ERR_INVALID, "run report JSON: NULL argument");
    if (!r->fig.have_energy) return th_fail(TH_ERR_STATE, "run report JSON %s: the run has no energy figure", path);
    json_t *j = NULL;
    th_atomic_file *af = NULL;
    th_status st = report_json(r, &j);
    if (st != TH_OK) goto done;
    if ((st = th_atomic_open(path, &af)) != TH_OK) goto done;
    if (json_dumpf(j, th_atomic_stream(af), JSON_INDENT(2) | JSON_REAL_PRECISION(10)) != 0 ||
        fputc('\n', th_atomic_stream(af)) == EOF)
        th_atomic_fail(af, th_fail(TH_ERR_IO, "run report JSON: cannot write %s", path));
    st = th_atomic_commit(af);
    af = NULL;
done:
    th_atomic_abort(af);
    json_decref(j);
    return st;
}

th_status th_run_report_append_emissions(const th_run_report *r, const char *path) {
    if (!r || !path) return th_fail(TH_ERR_INVALID, "emissions row: NULL argument");
    if (!r->have_fp)
        return th_fail(TH_ERR_STATE, "emissions row %s: the run has %s", path,
                       r->fig.have_energy ? "no factors to price its energy" : "no energy figure");
    th_eco_emissions_row row;
    th_eco_emissions_row_init(&row);
    row.project_name = "thermo-adaptive-pipeline";
    row.experiment_id = r->command;
    row.tracking_mode = "process";
    row.cpu_energy_kwh = r->fp.energy_it_kwh;
    const th_energy_figure *e = &r->fig.energy;
    row.cpu_power_w = e->duration_s > 0 ? e->energy_j / e->duration_s : NAN;
    if (r->have_embodied) {
        row.embodied_kg_low = r->emb.total_g.lo * 1e-3;
        row.embodied_kg = r->emb.total_g.mid * 1e-3;
        row.embodied_kg_high = r->emb.total_g.hi * 1e-3;
        row.storage_kg_low = r->store.total_g.lo * 1e-3;
        row.storage_kg = r->store.total_g.mid * 1e-3;
        row.storage_kg_high = r->store.total_g.hi * 1e-3;
        row.adp_kg_sb_eq = r->emb.adp_g * 1e-3;
        row.hardware_held_s = r->emb.held_s;
    }
    return th_eco_emissions_csv_append(path, &r->fp, &row);
}
