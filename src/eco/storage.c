/* storage.c: the ledger's storage and memory systems: the files a run keeps (checkpoints,
 * token shards, teacher caches, replay reservoirs), sorted by kind from their names, and the
 * charge of keeping bytes: energy per TB-year x replicas x PUE priced at the grid factor,
 * plus the storage's manufacturing spread over its life (Cloud Carbon Footprint's and
 * e-footprint's method; factors in data/factors/storage_energy.csv and embodied.csv). */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "thermo/eco.h"

#define SECONDS_PER_YEAR (365.25 * 86400.0)
#define SCAN_MAX_DEPTH 8

th_status th_eco_kept_add(th_eco_kept *k, const char *what, double bytes) {
    if (!k || !what) return th_fail(TH_ERR_INVALID, "kept files: NULL argument");
    if (!isfinite(bytes) || bytes < 0) return th_fail(TH_ERR_INVALID, "kept files: %s: size %g bytes is negative or not a number", what, bytes);
    size_t i = 0;
    while (i < k->n && strcmp(k->item[i].what, what)) i++;
    if (i == k->n) {
        if (k->n == TH_ECO_KEPT_MAX) {
            what = "other";
            for (i = 0; i < k->n && strcmp(k->item[i].what, what);) i++;
            if (i == k->n) i = k->n - 1; // the last kind absorbs the rest
        } else {
            snprintf(k->item[k->n].what, sizeof k->item[k->n].what, "%s", what);
            k->item[k->n++].bytes = 0;
        }
    }
    k->item[i].bytes += bytes;
    k->bytes += bytes;
    return TH_OK;
}

/* The kind of a kept file from its path relative to the scanned directory. */
static const char *kind_of(const char *rel) {
    const char *base = strrchr(rel, '/');
    base = base ? base + 1 : rel;
    size_t n = strlen(base);
    if (strstr(rel, "replay")) return "replay reservoirs";
    if (strstr(rel, "teacher") || strstr(rel, "cache")) return "teacher caches";
    if (!strncmp(base, "checkpoint", 10) || (n > 5 && !strcmp(base + n - 5, ".ckpt"))) return "checkpoints";
    if (n > 4 && !strcmp(base + n - 4, ".bin") &&
        (!strncmp(rel, "data/", 5) || strstr(rel, "/data/") || !strncmp(base, "train", 5) || !strncmp(base, "val", 3)))
        return "token shards";
    if (!strncmp(rel, "model/", 6) || strstr(rel, "/model/") || (n > 12 && !strcmp(base + n - 12, ".safetensors")))
        return "model";
    return "other";
}

static th_status scan(th_eco_kept *k, const char *root, const char *rel, int depth) {
    char path[4096];
    snprintf(path, sizeof path, "%s%s%s", root, *rel ? "/" : "", rel);
    DIR *d = opendir(path);
    if (!d) {
        if (errno == ENOENT && depth == 0) return TH_OK;
        return th_fail(TH_ERR_IO, "kept files: cannot read %s: %s", path, strerror(errno));
    }
    th_status st = TH_OK;
    struct dirent *e;
    while (st == TH_OK && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char sub[4096], full[8200];
        snprintf(sub, sizeof sub, "%s%s%s", rel, *rel ? "/" : "", e->d_name);
        snprintf(full, sizeof full, "%s/%s", root, sub);
        struct stat sb;
        if (lstat(full, &sb) != 0) continue; // gone while we looked
        if (S_ISDIR(sb.st_mode) && depth < SCAN_MAX_DEPTH)
            st = scan(k, root, sub, depth + 1);
        else if (S_ISREG(sb.st_mode))
            st = th_eco_kept_add(k, kind_of(sub), (double)sb.st_size);
    }
    closedir(d);
    return st;
}

th_status th_eco_kept_scan(th_eco_kept *k, const char *dir) {
    if (!k || !dir) return th_fail(TH_ERR_INVALID, "kept files: NULL argument");
    return scan(k, dir, "", 0);
}

th_status th_eco_storage_charge_compute(const th_eco_hardware *hw, double bytes, double replicas, double held_s,
                                        double pue, double grid_g_per_kwh, th_eco_storage_charge *out) {
    if (!hw || !out) return th_fail(TH_ERR_INVALID, "storage: NULL argument");
    if (!isfinite(bytes) || bytes < 0) return th_fail(TH_ERR_INVALID, "storage: size %g bytes is negative", bytes);
    if (!isfinite(held_s) || held_s < 0) return th_fail(TH_ERR_INVALID, "storage: time held %g s is negative", held_s);
    if (!isfinite(replicas) || replicas < 1) return th_fail(TH_ERR_INVALID, "storage: replicas %g is below 1", replicas);
    if (!isfinite(pue) || pue < 1) return th_fail(TH_ERR_INVALID, "storage: PUE %g is below 1", pue);
    if (!isfinite(grid_g_per_kwh) || grid_g_per_kwh < 0)
        return th_fail(TH_ERR_INVALID, "storage: grid intensity %g g/kWh is negative", grid_g_per_kwh);
    memset(out, 0, sizeof *out);
    out->bytes = bytes;
    out->replicas = replicas;
    out->held_s = held_s;
    double tb_years = bytes / 1e12 * held_s / SECONDS_PER_YEAR;
    out->energy_kwh = th_eco_range_scale(hw->medium_energy.kwh_per_tb_year, tb_years * replicas * pue);
    out->co2e_g = th_eco_range_scale(out->energy_kwh, grid_g_per_kwh);
    // a drive named in the hardware already carries the first copy in its own embodied line
    out->copies_embodied = hw->drive_named ? replicas - 1 : replicas;
    double life_y = hw->medium_embodied.life_y;
    double per_tb = !strcmp(hw->medium_embodied.unit, "GB") ? 1000.0 : 1.0; // DRAM rows are per GB
    out->embodied_g = th_eco_range_scale(hw->medium_embodied.kg_co2e, per_tb * 1000.0 * bytes / 1e12 *
                                                                          out->copies_embodied * held_s /
                                                                          (life_y * SECONDS_PER_YEAR));
    out->total_g = th_eco_range_add(out->co2e_g, out->embodied_g);
    return TH_OK;
}
