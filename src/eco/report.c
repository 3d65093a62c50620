/* report.c: the footprint as a text block, as a JSON object (jansson), and as one row of
 * a CodeCarbon-compatible emissions.csv, so dashboards built for CodeCarbon read our runs.
 * The CSV writer refuses to touch a file whose header is not ours and appends whole rows
 * in one write. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "thermo/eco.h"

/* ---------------------------------------------------------------------------------
 * text */

static void sb_opt(th_textbuf *b, const char *label, double v, const char *unit, const char *why) {
    if (isnan(v))
        th_textbuf_printf(b, "  %-26s unknown (%s)\n", label, why);
    else
        th_textbuf_printf(b, "  %-26s %.4g %s\n", label, v, unit);
}

void th_eco_fmt_si(char *buf, size_t cap, double value, const char *unit) {
    static const struct {
        double scale;
        const char *prefix;
    } si[] = {{1e9, "G"}, {1e6, "M"}, {1e3, "k"}, {1.0, ""}, {1e-3, "m"}, {1e-6, "\xc2\xb5"}, {1e-9, "n"}};
    if (!cap) return;
    if (!isfinite(value)) {
        snprintf(buf, cap, "unknown");
        return;
    }
    // engineering notation: the largest prefix that leaves at least 1 of it (2410 J -> 2.41 kJ)
    size_t k = 0, n = sizeof si / sizeof si[0];
    while (k + 1 < n && fabs(value) < si[k].scale) k++;
    if (value == 0.0) k = 3;
    const char *prefix = si[k].prefix;
    if (!strcmp(unit, "g") && si[k].scale >= 1e6) // tonnes, not megagrams
        prefix = si[k].scale == 1e6 ? "" : "k", unit = "t";
    snprintf(buf, cap, "%.3g %s%s", value / si[k].scale, prefix, unit);
}

void th_eco_source_short(const th_eco_factor *x, char *buf, size_t cap) {
    if (!cap) return;
    size_t n = strcspn(x->source, ",(;");
    while (n > 0 && x->source[n - 1] == ' ') n--;
    const size_t max = 32;
    if (n > max) { // cut at the last word that fits, and say so
        size_t cut = max;
        while (cut > 0 && x->source[cut] != ' ') cut--;
        n = cut ? cut : max;
        snprintf(buf, cap, "%.*s...", (int)n, x->source);
        return;
    }
    snprintf(buf, cap, "%.*s", (int)n, x->source);
}

/* The two summary lines: the energy and its basis; CO2e with the factor that dominates it,
 * water and pollutants. */
static void report_summary(th_textbuf *b, const th_eco_footprint *fp) {
    const th_eco_factor *F = fp->factors.f;
    char e[32], co2[32], water[32], src[48];
    th_eco_fmt_si(e, sizeof e, fp->energy_it_kwh * TH_J_PER_KWH, "J");
    th_textbuf_printf(b, "  energy %s IT over %.3g s, %s (%s)\n", e, fp->it.duration_s, th_eco_basis_name(fp->it.basis),
                      fp->it.source);
    th_eco_fmt_si(co2, sizeof co2, fp->co2e_g, "g");
    th_eco_source_short(&F[TH_ECO_F_GRID_CO2E], src, sizeof src);
    th_textbuf_printf(b, "  %s CO2e (%s %.4g g/kWh, %s %s; PUE %.3g %s%s)", co2, fp->factors.region,
                      F[TH_ECO_F_GRID_CO2E].value, src, F[TH_ECO_F_GRID_CO2E].year, F[TH_ECO_F_PUE].value,
                      fp->factors.preset, fp->factors.methane_enabled ? "; upstream methane on" : "");
    if (isfinite(fp->water_offsite_l)) {
        th_eco_fmt_si(water, sizeof water, fp->water_onsite_l + fp->water_offsite_l, "L");
        th_textbuf_printf(b, " \xc2\xb7 %s water", water);
    } else {
        th_eco_fmt_si(water, sizeof water, fp->water_onsite_l, "L");
        th_textbuf_printf(b, " \xc2\xb7 %s water on site (off-site unknown)", water);
    }
    const char *names[3] = {"NOx", "SO2", "PM2.5"};
    const double v[3] = {fp->nox_g, fp->so2_g, fp->pm25_g};
    if (isnan(v[0]) && isnan(v[1]) && isnan(v[2])) {
        th_textbuf_printf(b, " \xc2\xb7 NOx/SO2/PM2.5 unknown\n");
        return;
    }
    for (int i = 0; i < 3; i++) {
        char g[32];
        th_eco_fmt_si(g, sizeof g, v[i], "g");
        th_textbuf_printf(b, "%s %s %s", i ? "," : " \xc2\xb7", names[i], g);
    }
    th_textbuf_printf(b, "\n");
}

static void report_full(th_textbuf *b, const th_eco_footprint *fp) {
    const th_eco_factor *F = fp->factors.f;
    th_textbuf_printf(b, "energy (%s, %s)\n", th_eco_basis_name(fp->it.basis), fp->it.source);
    th_textbuf_printf(b, "  %-26s %.4g kWh over %.1f s\n", "IT", fp->energy_it_kwh, fp->it.duration_s);
    th_textbuf_printf(b, "  %-26s %.4g kWh (PUE %.3g)\n", "facility", fp->energy_facility_kwh, F[TH_ECO_F_PUE].value);
    if (fp->energy_generator_kwh > 0)
        th_textbuf_printf(b, "  %-26s %.4g kWh (share %.3g)\n", "from backup generators", fp->energy_generator_kwh,
                          F[TH_ECO_F_GEN_SHARE].value);
    th_textbuf_printf(b, "footprint (region %s, preset %s)\n", fp->factors.region, fp->factors.preset);
    th_textbuf_printf(b, "  %-26s %.6g kg", "CO2e", fp->co2e_g * 1e-3);
    if (fp->factors.methane_enabled)
        th_textbuf_printf(b, " (of which upstream methane %.4g kg)", fp->co2e_methane_g * 1e-3);
    th_textbuf_printf(b, "\n");
    th_textbuf_printf(b, "  %-26s %.4g L\n", "water on site", fp->water_onsite_l);
    sb_opt(b, "water off site", fp->water_offsite_l, "L", F[TH_ECO_F_EWIF].basis);
    sb_opt(b, "NOx", fp->nox_g, "g", F[TH_ECO_F_GRID_NOX].basis);
    sb_opt(b, "SO2", fp->so2_g, "g", F[TH_ECO_F_GRID_SO2].basis);
    sb_opt(b, "PM2.5", fp->pm25_g, "g", F[TH_ECO_F_GRID_PM25].basis);
    th_textbuf_printf(b, "equivalences (EPA)\n");
    th_textbuf_printf(b, "  %-26s %.4g\n", "car-years", fp->cars_year);
    th_textbuf_printf(b, "  %-26s %.4g\n", "acres of forest, 1 yr", fp->forest_acres);
    th_textbuf_printf(b, "  %-26s %.4g\n", "homes' energy, 1 yr", fp->homes_energy_year);
    th_textbuf_printf(b, "  %-26s %.4g\n", "homes' electricity, 1 yr", fp->homes_electricity_year);
    th_textbuf_printf(b, "factors\n");
    for (int i = 0; i < TH_ECO_F_COUNT; i++) {
        const th_eco_factor *x = &F[i];
        if (i == TH_ECO_F_METHANE && !fp->factors.methane_enabled) continue;
        if (x->available)
            th_textbuf_printf(b, "  %-28s %.4g %s  [%s, %s; %s]\n", th_eco_factor_name((th_eco_factor_id)i), x->value,
                              th_eco_factor_unit((th_eco_factor_id)i), x->source, x->year, x->basis);
        else
            th_textbuf_printf(b, "  %-28s n/a  [%s]\n", th_eco_factor_name((th_eco_factor_id)i), x->basis);
    }
}

th_status th_eco_report_text(const th_eco_footprint *fp, th_eco_text_style style, char *buf, size_t cap, size_t *len) {
    if (!fp || (!buf && cap)) return th_fail(TH_ERR_INVALID, "eco text report: NULL argument");
    if (style != TH_ECO_TEXT_SUMMARY && style != TH_ECO_TEXT_FULL)
        return th_fail(TH_ERR_INVALID, "eco text report: unknown style %d", (int)style);
    th_textbuf b = {buf, cap, 0};
    if (cap) buf[0] = '\0';
    if (style == TH_ECO_TEXT_SUMMARY)
        report_summary(&b, fp);
    else
        report_full(&b, fp);
    if (len) *len = b.len;
    if (!buf) return TH_OK; // only measured
    if (b.len >= cap) return th_fail(TH_ERR_INVALID, "eco text report: needs %zu bytes, buffer has %zu", b.len + 1, cap);
    return TH_OK;
}

/* ---------------------------------------------------------------------------------
 * JSON */

static int set_num(json_t *o, const char *k, double v) {
    return json_object_set_new(o, k, isfinite(v) ? json_real(v) : json_null());
}

th_status th_eco_report_json(const th_eco_footprint *fp, const char *basis_override, void **json_out) {
    if (!fp || !json_out) return th_fail(TH_ERR_INVALID, "eco JSON report: NULL argument");
    *json_out = NULL;
    json_t *o = json_object(), *fs = json_object();
    if (!o || !fs) goto nomem;
    int bad = 0;
    bad |= set_num(o, "energy_it_kwh", fp->energy_it_kwh);
    bad |= set_num(o, "energy_facility_kwh", fp->energy_facility_kwh);
    bad |= set_num(o, "energy_generator_kwh", fp->energy_generator_kwh);
    bad |= set_num(o, "co2e_kg", fp->co2e_g * 1e-3);
    bad |= set_num(o, "co2e_methane_kg", fp->co2e_methane_g * 1e-3);
    bad |= set_num(o, "water_onsite_l", fp->water_onsite_l);
    bad |= set_num(o, "water_offsite_l", fp->water_offsite_l);
    bad |= set_num(o, "nox_g", fp->nox_g);
    bad |= set_num(o, "so2_g", fp->so2_g);
    bad |= set_num(o, "pm25_g", fp->pm25_g);
    bad |= set_num(o, "cars_year", fp->cars_year);
    bad |= set_num(o, "forest_acres", fp->forest_acres);
    bad |= set_num(o, "homes_energy_year", fp->homes_energy_year);
    bad |= set_num(o, "homes_electricity_year", fp->homes_electricity_year);
    bad |= set_num(o, "duration_s", fp->it.duration_s);
    bad |= json_object_set_new(o, "basis", json_string(basis_override ? basis_override : th_eco_basis_name(fp->it.basis)));
    bad |= json_object_set_new(o, "energy_basis", json_string(th_eco_basis_name(fp->it.basis)));
    bad |= json_object_set_new(o, "energy_source", json_string(fp->it.source));
    bad |= json_object_set_new(o, "region", json_string(fp->factors.region));
    bad |= json_object_set_new(o, "region_name", json_string(fp->factors.region_name));
    bad |= json_object_set_new(o, "preset", json_string(fp->factors.preset));
    bad |= json_object_set_new(o, "methane_enabled", json_boolean(fp->factors.methane_enabled));
    for (int i = 0; i < TH_ECO_F_COUNT; i++) {
        const th_eco_factor *x = &fp->factors.f[i];
        json_t *e = json_object();
        if (!e) goto nomem;
        bad |= set_num(e, "value", x->available ? x->value : NAN);
        bad |= json_object_set_new(e, "unit", json_string(th_eco_factor_unit((th_eco_factor_id)i)));
        bad |= json_object_set_new(e, "source", json_string(x->source));
        bad |= json_object_set_new(e, "year", json_string(x->year));
        bad |= json_object_set_new(e, "basis", json_string(x->basis));
        bad |= json_object_set_new(e, "origin", json_string(x->origin));
        bad |= json_object_set_new(fs, th_eco_factor_name((th_eco_factor_id)i), e);
    }
    bad |= json_object_set_new(o, "factors", fs);
    fs = NULL;
    if (bad) goto nomem;
    *json_out = o;
    return TH_OK;
nomem:
    json_decref(fs);
    json_decref(o);
    return th_fail(TH_ERR_NOMEM, "eco JSON report: out of memory");
}

/* ---------------------------------------------------------------------------------
 * emissions.csv */

static const char *const cc_columns[] = {
    "timestamp", "project_name", "run_id", "experiment_id", "duration", "emissions", "emissions_rate",
    "cpu_utilization_percent", "ram_utilization_percent", "ram_used_gb", "cpu_power", "gpu_power", "ram_power",
    "cpu_energy", "gpu_energy", "ram_energy", "energy_consumed", "water_consumed", "country_name",
    "country_iso_code", "region", "cloud_provider", "cloud_region", "os", "python_version", "codecarbon_version",
    "cpu_count", "cpu_model", "gpu_count", "gpu_model", "longitude", "latitude", "ram_total_size", "tracking_mode",
    "on_cloud", "pue", "wue",
};
#define CC_NCOLS (sizeof cc_columns / sizeof cc_columns[0])

/* Ours, after CodeCarbon's, so tools reading its columns by name or position still work. */
static const char *const extra_columns[] = {
    "embodied_kg_low", "embodied_kg", "embodied_kg_high", "storage_kg_low", "storage_kg", "storage_kg_high",
    "adp_kg_sb_eq", "hardware_held_s",
};
#define EXTRA_NCOLS (sizeof extra_columns / sizeof extra_columns[0])

/* CodeCarbon's header alone (with_extra 0) or followed by ours. */
static const char *header_text(int with_extra) {
    static char header[2][1400];
    char *h = header[with_extra];
    if (!h[0]) {
        size_t used = 0;
        for (size_t i = 0; i < CC_NCOLS; i++)
            used += (size_t)snprintf(h + used, sizeof header[0] - used, "%s%s", i ? "," : "", cc_columns[i]);
        for (size_t i = 0; with_extra && i < EXTRA_NCOLS; i++)
            used += (size_t)snprintf(h + used, sizeof header[0] - used, ",%s", extra_columns[i]);
    }
    return h;
}

const char *th_eco_emissions_csv_header(void) { return header_text(1); }

void th_eco_emissions_row_init(th_eco_emissions_row *row) {
    if (!row) return;
    memset(row, 0, sizeof *row);
    double *nums[] = {&row->cpu_power_w, &row->gpu_power_w, &row->ram_power_w, &row->cpu_energy_kwh,
                      &row->gpu_energy_kwh, &row->ram_energy_kwh, &row->cpu_utilization_percent,
                      &row->ram_utilization_percent, &row->ram_used_gb, &row->cpu_count, &row->gpu_count,
                      &row->longitude, &row->latitude, &row->ram_total_size_gb, &row->embodied_kg_low,
                      &row->embodied_kg, &row->embodied_kg_high, &row->storage_kg_low, &row->storage_kg,
                      &row->storage_kg_high, &row->adp_kg_sb_eq, &row->hardware_held_s};
    for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++) *nums[i] = NAN;
    row->on_cloud = 0;
}

static void csv_str(th_textbuf *b, const char *s, int first) {
    if (!first) th_textbuf_printf(b, ",");
    if (!s) return;
    if (strpbrk(s, ",\"\r\n")) {
        th_textbuf_printf(b, "\"");
        for (const char *p = s; *p; p++) {
            if (*p == '"')
                th_textbuf_printf(b, "\"\"");
            else
                th_textbuf_printf(b, "%c", *p);
        }
        th_textbuf_printf(b, "\"");
    } else {
        th_textbuf_printf(b, "%s", s);
    }
}

static void csv_num(th_textbuf *b, double v) {
    if (isfinite(v))
        th_textbuf_printf(b, ",%.17g", v);
    else
        th_textbuf_printf(b, ",");
}

/* First line of the file at fd (up to cap-1 bytes), and whether the file ends in '\n'. */
static th_status read_head_tail(const char *path, int fd, off_t size, char *head, size_t cap, int *ends_nl) {
    ssize_t n = pread(fd, head, cap - 1, 0);
    if (n < 0) return th_fail(TH_ERR_IO, "%s: read failed: %s", path, strerror(errno));
    head[n] = '\0';
    char *nl = strchr(head, '\n');
    if (!nl) return th_fail(TH_ERR_FORMAT, "%s: first line is not a complete emissions.csv header", path);
    *nl = '\0';
    if (nl > head && nl[-1] == '\r') nl[-1] = '\0';
    char last;
    if (pread(fd, &last, 1, size - 1) != 1) return th_fail(TH_ERR_IO, "%s: read failed: %s", path, strerror(errno));
    *ends_nl = last == '\n';
    return TH_OK;
}

/* Names the first column where `have` differs from our header. */
static th_status header_mismatch(const char *path, const char *have) {
    const char *p = have;
    for (size_t i = 0; i < CC_NCOLS; i++) {
        size_t n = strcspn(p, ",");
        if (n != strlen(cc_columns[i]) || strncmp(p, cc_columns[i], n) != 0)
            return th_fail(TH_ERR_FORMAT, "%s: header column %zu is '%.*s', expected '%s' (CodeCarbon v3 layout); "
                                          "not appending", path, i + 1, (int)n, p, cc_columns[i]);
        p += n;
        if (*p == ',') p++;
        else if (i + 1 < CC_NCOLS)
            return th_fail(TH_ERR_FORMAT, "%s: header ends after column %zu ('%s'), expected '%s' next; not appending",
                           path, i + 1, cc_columns[i], cc_columns[i + 1]);
    }
    for (size_t i = 0; i < EXTRA_NCOLS; i++) {
        size_t n = strcspn(p, ",");
        if (n != strlen(extra_columns[i]) || strncmp(p, extra_columns[i], n) != 0)
            return th_fail(TH_ERR_FORMAT, "%s: header column %zu is '%.*s', expected '%s' (or nothing after '%s'); "
                                          "not appending", path, CC_NCOLS + i + 1, (int)n, p, extra_columns[i],
                           cc_columns[CC_NCOLS - 1]);
        p += n;
        if (*p == ',') p++;
    }
    return th_fail(TH_ERR_FORMAT, "%s: header has columns after '%s'; not appending", path, extra_columns[EXTRA_NCOLS - 1]);
}

th_status th_eco_emissions_csv_append(const char *path, const th_eco_footprint *fp, const th_eco_emissions_row *row) {
    if (!path || !fp || !row) return th_fail(TH_ERR_INVALID, "emissions.csv: NULL argument");
    char ts[40];
    const char *timestamp = row->timestamp;
    if (!timestamp) {
        time_t now = time(NULL);
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
        timestamp = ts;
    }
    double duration = fp->it.duration_s;
    double emissions_kg = fp->co2e_g * 1e-3;
    double rate = duration > 0 ? emissions_kg / duration : 0.0;
    const th_eco_factor *F = fp->factors.f;

    size_t cap = 8192;
    char *line = th_alloc(cap);
    if (!line) return th_fail(TH_ERR_NOMEM, "emissions.csv: out of memory");
    th_textbuf b = {line, cap, 0};
    csv_str(&b, timestamp, 1);
    csv_str(&b, row->project_name, 0);
    csv_str(&b, row->run_id, 0);
    csv_str(&b, row->experiment_id, 0);
    csv_num(&b, duration);
    csv_num(&b, emissions_kg);
    csv_num(&b, rate);
    csv_num(&b, row->cpu_utilization_percent);
    csv_num(&b, row->ram_utilization_percent);
    csv_num(&b, row->ram_used_gb);
    csv_num(&b, row->cpu_power_w);
    csv_num(&b, row->gpu_power_w);
    csv_num(&b, row->ram_power_w);
    csv_num(&b, row->cpu_energy_kwh);
    csv_num(&b, row->gpu_energy_kwh);
    csv_num(&b, row->ram_energy_kwh);
    csv_num(&b, fp->energy_facility_kwh);
    csv_num(&b, fp->water_onsite_l);
    csv_str(&b, row->country_name, 0);
    csv_str(&b, row->country_iso_code, 0);
    csv_str(&b, row->region, 0);
    csv_str(&b, row->cloud_provider, 0);
    csv_str(&b, row->cloud_region, 0);
    csv_str(&b, row->os, 0);
    csv_str(&b, row->python_version, 0);
    csv_str(&b, row->codecarbon_version, 0);
    csv_num(&b, row->cpu_count);
    csv_str(&b, row->cpu_model, 0);
    csv_num(&b, row->gpu_count);
    csv_str(&b, row->gpu_model, 0);
    csv_num(&b, row->longitude);
    csv_num(&b, row->latitude);
    csv_num(&b, row->ram_total_size_gb);
    csv_str(&b, row->tracking_mode, 0);
    csv_str(&b, row->on_cloud ? "Y" : "N", 0);
    csv_num(&b, F[TH_ECO_F_PUE].value);
    csv_num(&b, F[TH_ECO_F_WUE_SITE].value);
    size_t cc_len = b.len; // the row as CodeCarbon's columns alone end here
    const double extra[EXTRA_NCOLS] = {row->embodied_kg_low, row->embodied_kg, row->embodied_kg_high,
                                       row->storage_kg_low, row->storage_kg, row->storage_kg_high,
                                       row->adp_kg_sb_eq, row->hardware_held_s};
    for (size_t i = 0; i < EXTRA_NCOLS; i++) csv_num(&b, extra[i]);
    th_textbuf_printf(&b, "\n");
    if (b.len >= cap) {
        th_free(line);
        return th_fail(TH_ERR_INVALID, "emissions.csv: row longer than %zu bytes (a metadata string is too long)", cap);
    }

    th_status st = TH_OK;
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        st = th_fail(TH_ERR_IO, "%s: cannot open for appending: %s", path, strerror(errno));
        goto out;
    }
    int rfd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    if (rfd < 0 || fstat(rfd, &sb) != 0) {
        st = th_fail(TH_ERR_IO, "%s: cannot read back: %s", path, strerror(errno));
        if (rfd >= 0) close(rfd);
        close(fd);
        goto out;
    }
    const char *header = th_eco_emissions_csv_header();
    char *out_buf = line;
    size_t out_len = b.len;
    char *with_header = NULL;
    if (sb.st_size == 0) {
        size_t hl = strlen(header);
        with_header = th_alloc(hl + 1 + b.len);
        if (!with_header) {
            st = th_fail(TH_ERR_NOMEM, "emissions.csv: out of memory");
        } else {
            memcpy(with_header, header, hl);
            with_header[hl] = '\n';
            memcpy(with_header + hl + 1, line, b.len);
            out_buf = with_header;
            out_len = hl + 1 + b.len;
        }
    } else {
        char head[2048];
        int ends_nl = 0;
        st = read_head_tail(path, rfd, sb.st_size, head, sizeof head, &ends_nl);
        if (st == TH_OK && !strcmp(head, header_text(0))) { // a CodeCarbon file: its columns only
            line[cc_len] = '\n';
            out_len = cc_len + 1;
        } else if (st == TH_OK && strcmp(head, header) != 0) {
            st = header_mismatch(path, head);
        }
        if (st == TH_OK && !ends_nl)
            st = th_fail(TH_ERR_FORMAT, "%s: does not end with a newline (an incomplete last row?); not appending", path);
    }
    close(rfd);
    if (st == TH_OK) {
        ssize_t w = write(fd, out_buf, out_len);
        if (w < 0 || (size_t)w != out_len)
            st = th_fail(TH_ERR_IO, "%s: short write (%zd of %zu bytes): %s", path, w, out_len, w < 0 ? strerror(errno) : "disk full?");
    }
    if (close(fd) != 0 && st == TH_OK) st = th_fail(TH_ERR_IO, "%s: close failed: %s", path, strerror(errno));
    th_free(with_header);
out:
    th_free(line);
    return st;
}
