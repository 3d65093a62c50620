/* nvml.c: the "nvml" backend, NVIDIA GPUs through libnvidia-ml loaded with dlopen at run
 * time, so the build needs neither the NVML header nor CUDA. Reads temperature, power
 * (mW), total energy (mJ), utilization, clocks-event (throttle) reasons and temperature
 * thresholds per GPU. It only ever reads: no NVML setter is declared here (no clocks,
 * power limits, persistence or compute mode, no reset), and a test checks that.
 * A lost GPU (NVML_ERROR_GPU_IS_LOST) reads as vanished; a query the GPU does not
 * support leaves that field invalid. The library path comes from cfg->nvml_lib, then
 * $THERMO_NVML_LIB, then "libnvidia-ml.so.1". */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sense/sense_internal.h"

/* The few NVML types and constants we use (values from nvml.h). */
typedef int nvml_ret;
typedef void *nvml_dev;
typedef struct {
    unsigned int gpu, memory;
} nvml_util;

enum {
    NVML_SUCCESS = 0,
    NVML_ERROR_UNINITIALIZED = 1,
    NVML_ERROR_NOT_SUPPORTED = 3,
    NVML_ERROR_NO_PERMISSION = 4,
    NVML_ERROR_GPU_IS_LOST = 15,
};
enum { NVML_TEMPERATURE_GPU = 0 };
enum { NVML_TEMP_THRESH_SHUTDOWN = 0, NVML_TEMP_THRESH_SLOWDOWN = 1, NVML_TEMP_THRESH_MEM_MAX = 2,
       NVML_TEMP_THRESH_GPU_MAX = 3 };

typedef struct {
    void *lib;
    nvml_ret (*init)(void);
    nvml_ret (*shutdown)(void);
    nvml_ret (*count)(unsigned int *);
    nvml_ret (*handle)(unsigned int, nvml_dev *);
    nvml_ret (*name)(nvml_dev, char *, unsigned int);
    nvml_ret (*temp)(nvml_dev, int, unsigned int *);
    nvml_ret (*power)(nvml_dev, unsigned int *);
    nvml_ret (*energy)(nvml_dev, unsigned long long *);         /* optional (Volta+) */
    nvml_ret (*util)(nvml_dev, nvml_util *);                     /* optional */
    nvml_ret (*reasons)(nvml_dev, unsigned long long *);        /* optional: events, else throttle */
    nvml_ret (*threshold)(nvml_dev, int, unsigned int *);       /* optional */
    const char *(*error_string)(nvml_ret);                       /* optional */
} nvml_api;

typedef struct {
    nvml_api api;
    unsigned int index, count;
    nvml_dev dev;
    char gpu_name[64];
    unsigned long long energy0_mj;
    int have_energy0;
    char source[96];
} nvml_ctx;

static const char *nvml_err(const nvml_api *a, nvml_ret r) {
    const char *s = a->error_string ? a->error_string(r) : NULL;
    return s ? s : "unknown NVML error";
}

static void unload(nvml_api *a) {
    if (a->lib) dlclose(a->lib);
    memset(a, 0, sizeof *a);
}

/* dlopens the library, resolves the symbols, calls nvmlInit_v2. */
static th_status load(const th_sense_config *cfg, nvml_api *a) {
    memset(a, 0, sizeof *a);
    const char *path = cfg->nvml_lib;
    if (!path || !*path) path = getenv("THERMO_NVML_LIB");
    if (!path || !*path) path = "libnvidia-ml.so.1";
    a->lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!a->lib)
        return th_fail(TH_ERR_UNSUPPORTED, "nvml: cannot load %s (%s): no NVIDIA driver on this machine", path,
                       dlerror());
    struct {
        const char *sym;
        void **dst;
        int required;
    } syms[] = {
        {"nvmlInit_v2", (void **)&a->init, 1},
        {"nvmlShutdown", (void **)&a->shutdown, 1},
        {"nvmlDeviceGetCount_v2", (void **)&a->count, 1},
        {"nvmlDeviceGetHandleByIndex_v2", (void **)&a->handle, 1},
        {"nvmlDeviceGetName", (void **)&a->name, 1},
        {"nvmlDeviceGetTemperature", (void **)&a->temp, 1},
        {"nvmlDeviceGetPowerUsage", (void **)&a->power, 1},
        {"nvmlDeviceGetTotalEnergyConsumption", (void **)&a->energy, 0},
        {"nvmlDeviceGetUtilizationRates", (void **)&a->util, 0},
        {"nvmlDeviceGetCurrentClocksEventReasons", (void **)&a->reasons, 0},
        {"nvmlDeviceGetTemperatureThreshold", (void **)&a->threshold, 0},
        {"nvmlErrorString", (void **)&a->error_string, 0},
    };
    for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
        *syms[i].dst = dlsym(a->lib, syms[i].sym);
        if (!*syms[i].dst && syms[i].required) {
            th_status st = th_fail(TH_ERR_UNSUPPORTED, "nvml: %s lacks %s (driver too old?)", path, syms[i].sym);
            unload(a);
            return st;
        }
    }
    if (!a->reasons) /* drivers before 535 name it "throttle reasons" */
        *(void **)&a->reasons = dlsym(a->lib, "nvmlDeviceGetCurrentClocksThrottleReasons");
    nvml_ret r = a->init();
    if (r != NVML_SUCCESS) {
        th_status st = th_fail(TH_ERR_UNSUPPORTED, "nvml: nvmlInit_v2 failed: %s (error %d)", nvml_err(a, r), r);
        unload(a);
        return st;
    }
    return TH_OK;
}

static int nvml_probe(const th_sense_config *cfg) {
    nvml_api a;
    if (load(cfg, &a) != TH_OK) return 0;
    unsigned int n = 0;
    int ok = a.count(&n) == NVML_SUCCESS && n > 0;
    a.shutdown();
    unload(&a);
    return ok ? 50 : 0;
}

static void nvml_close(void *ctx) {
    nvml_ctx *c = ctx;
    c->api.shutdown();
    unload(&c->api);
    th_free(c);
}

static th_status nvml_open(const th_sense_config *cfg, void **out) {
    nvml_ctx *c = th_calloc(1, sizeof *c);
    if (!c) return th_fail(TH_ERR_NOMEM, "nvml: out of memory");
    th_status st = load(cfg, &c->api);
    if (st != TH_OK) {
        th_free(c);
        return st;
    }
    nvml_api *a = &c->api;
    nvml_ret r = a->count(&c->count);
    if (r != NVML_SUCCESS || c->count == 0) {
        st = r != NVML_SUCCESS ? th_fail(TH_ERR_UNSUPPORTED, "nvml: nvmlDeviceGetCount_v2: %s", nvml_err(a, r))
                               : th_fail(TH_ERR_UNSUPPORTED, "nvml: no NVIDIA GPU found");
        nvml_close(c);
        return st;
    }
    if (cfg->device < 0 || (unsigned)cfg->device >= c->count) {
        st = th_fail(TH_ERR_INVALID, "nvml: GPU index %d out of range (%u GPUs)", cfg->device, c->count);
        nvml_close(c);
        return st;
    }
    c->index = (unsigned)cfg->device;
    if ((r = a->handle(c->index, &c->dev)) != NVML_SUCCESS) {
        st = th_fail(r == NVML_ERROR_GPU_IS_LOST ? TH_ERR_IO : TH_ERR_UNSUPPORTED, "nvml: GPU %u: %s", c->index,
                     nvml_err(a, r));
        nvml_close(c);
        return st;
    }
    if (a->name(c->dev, c->gpu_name, sizeof c->gpu_name) != NVML_SUCCESS)
        th_fmt(c->gpu_name, sizeof c->gpu_name, "GPU");
    c->gpu_name[sizeof c->gpu_name - 1] = '\0';
    th_fmt(c->source, sizeof c->source, "nvml:%u:%s", c->index, c->gpu_name);
    *out = c;
    return TH_OK;
}

/* Maps a failed required query to a status and a health diagnosis. */
static th_status query_fail(nvml_ctx *c, th_sample *out, const char *what, nvml_ret r) {
    const char *e = nvml_err(&c->api, r);
    switch (r) {
    case NVML_ERROR_GPU_IS_LOST:
        out->fault = TH_HEALTH_VANISHED;
        return th_fail(TH_ERR_IO, "nvml: GPU %u (%s) is lost (%s): it fell off the bus; check `nvidia-smi` and dmesg",
                       c->index, c->gpu_name, e);
    case NVML_ERROR_UNINITIALIZED:
        out->fault = TH_HEALTH_VANISHED;
        return th_fail(TH_ERR_STATE, "nvml: %s on GPU %u: NVML is not initialized (%s)", what, c->index, e);
    case NVML_ERROR_NOT_SUPPORTED:
        out->fault = TH_HEALTH_NONSENSE;
        return th_fail(TH_ERR_UNSUPPORTED, "nvml: %s is not supported on GPU %u (%s)", what, c->index, e);
    case NVML_ERROR_NO_PERMISSION:
        out->fault = TH_HEALTH_VANISHED;
        return th_fail(TH_ERR_IO, "nvml: %s on GPU %u: no permission (%s)", what, c->index, e);
    default:
        out->fault = TH_HEALTH_STALE;
        return th_fail(TH_ERR_IO, "nvml: %s on GPU %u failed: %s (error %d)", what, c->index, e, r);
    }
}

static th_status nvml_read(void *ctx, th_sample *out) {
    nvml_ctx *c = ctx;
    nvml_api *a = &c->api;
    th_fmt(out->source, sizeof out->source, "%s", c->source);
    out->origin = TH_ORIGIN_MEASURED;
    unsigned int v;
    nvml_ret r = a->temp(c->dev, NVML_TEMPERATURE_GPU, &v);
    if (r != NVML_SUCCESS) return query_fail(c, out, "temperature", r);
    out->temp_mc = (int32_t)(v > 1000 ? 1000000 : v * 1000);
    out->valid |= TH_SAMPLE_TEMP;
    /* the optional queries: NOT_SUPPORTED leaves the field out; a lost GPU fails the read */
    if ((r = a->power(c->dev, &v)) == NVML_SUCCESS) {
        out->power_uw = (int64_t)v * 1000;
        out->valid |= TH_SAMPLE_POWER;
    } else if (r != NVML_ERROR_NOT_SUPPORTED) {
        return query_fail(c, out, "power", r);
    }
    unsigned long long e;
    if (a->energy && (r = a->energy(c->dev, &e)) == NVML_SUCCESS) {
        if (!c->have_energy0) {
            c->energy0_mj = e;
            c->have_energy0 = 1;
        }
        if (e < c->energy0_mj) {
            out->fault = TH_HEALTH_NONSENSE;
            return th_fail(TH_ERR_FORMAT, "nvml: GPU %u total energy went backwards (%llu -> %llu mJ): driver reloaded?",
                           c->index, c->energy0_mj, e);
        }
        out->energy_uj = (uint64_t)(e - c->energy0_mj) * 1000;
        out->valid |= TH_SAMPLE_ENERGY;
    } else if (a->energy && r != NVML_ERROR_NOT_SUPPORTED) {
        return query_fail(c, out, "total energy", r);
    }
    nvml_util u;
    if (a->util && (r = a->util(c->dev, &u)) == NVML_SUCCESS) {
        out->util = u.gpu / 100.0;
        out->valid |= TH_SAMPLE_UTIL;
    } else if (a->util && r != NVML_ERROR_NOT_SUPPORTED) {
        return query_fail(c, out, "utilization", r);
    }
    if (a->reasons && (r = a->reasons(c->dev, &e)) == NVML_SUCCESS) {
        out->throttle_reasons = (uint32_t)e;
        out->valid |= TH_SAMPLE_THROTTLE;
    } else if (a->reasons && r != NVML_ERROR_NOT_SUPPORTED) {
        return query_fail(c, out, "clocks event reasons", r);
    }
    return TH_OK;
}

static th_status nvml_limits(void *ctx, th_sense_limits *out) {
    nvml_ctx *c = ctx;
    memset(out, 0, sizeof *out);
    if (!c->api.threshold) return TH_OK;
    unsigned int v;
    if (c->api.threshold(c->dev, NVML_TEMP_THRESH_SHUTDOWN, &v) == NVML_SUCCESS) out->shutdown_mc = (int32_t)v * 1000;
    if (c->api.threshold(c->dev, NVML_TEMP_THRESH_SLOWDOWN, &v) == NVML_SUCCESS) out->slowdown_mc = (int32_t)v * 1000;
    if (c->api.threshold(c->dev, NVML_TEMP_THRESH_GPU_MAX, &v) == NVML_SUCCESS)
        out->max_operating_mc = (int32_t)v * 1000;
    return TH_OK;
}

static void nvml_list(void *ctx, double interval_s, th_reading_list *l) {
    (void)interval_s; /* NVML power is already an average */
    nvml_ctx *c = ctx;
    nvml_api *a = &c->api;
    for (unsigned i = 0; i < c->count; i++) {
        nvml_ctx g = *c; /* same library, another device */
        g.index = i;
        g.have_energy0 = 0;
        char name[160], src[64];
        nvml_ret r = a->handle(i, &g.dev);
        if (r == NVML_SUCCESS && a->name(g.dev, g.gpu_name, sizeof g.gpu_name) != NVML_SUCCESS)
            th_fmt(g.gpu_name, sizeof g.gpu_name, "GPU");
        g.gpu_name[sizeof g.gpu_name - 1] = '\0';
        th_fmt(src, sizeof src, "nvml:%u", i);
        th_sample s;
        memset(&s, 0, sizeof s);
        th_status st = r == NVML_SUCCESS ? nvml_read(&g, &s) : query_fail(&g, &s, "device handle", r);
        char msg[160];
        th_fmt(msg, sizeof msg, "%s", st == TH_OK ? "" : th_last_error());
        /* the counter since driver load, not since our open */
        unsigned long long e_mj = 0;
        int have_e = st == TH_OK && a->energy && a->energy(g.dev, &e_mj) == NVML_SUCCESS;
        const struct {
            const char *what;
            th_reading_kind kind;
            int ok;
            double v;
        } rows[] = {
            {"temperature", TH_KIND_TEMP, (s.valid & TH_SAMPLE_TEMP) != 0, s.temp_mc / 1000.0},
            {"power", TH_KIND_POWER, (s.valid & TH_SAMPLE_POWER) != 0, (double)s.power_uw / 1e6},
            {"energy since driver load", TH_KIND_ENERGY, have_e, (double)e_mj / 1e3},
            {"utilization", TH_KIND_UTIL, (s.valid & TH_SAMPLE_UTIL) != 0, s.util},
        };
        for (size_t k = 0; k < sizeof rows / sizeof rows[0]; k++) {
            th_fmt(name, sizeof name, "GPU %u %s %s", i, g.gpu_name, rows[k].what);
            th_status rs = st != TH_OK ? st : rows[k].ok ? TH_OK : TH_ERR_UNSUPPORTED;
            th_reading_add(l, name, rows[k].kind, src, rows[k].v, 1, rs, st != TH_OK ? msg : "not supported on this GPU");
        }
        th_sense_limits lim;
        if (st == TH_OK && nvml_limits(&g, &lim) == TH_OK) {
            const char *ln[] = {"max operating", "slowdown", "shutdown"};
            int32_t lv[] = {lim.max_operating_mc, lim.slowdown_mc, lim.shutdown_mc};
            for (int k = 0; k < 3; k++) {
                if (!lv[k]) continue;
                th_fmt(name, sizeof name, "GPU %u %s %s", i, g.gpu_name, ln[k]);
                th_reading_add(l, name, TH_KIND_LIMIT, src, lv[k] / 1000.0, 1, TH_OK, NULL);
            }
        }
    }
}

const th_sensor_ops th_sense_nvml_ops = {
    .name = "nvml",
    .api_version = TH_SENSE_API_VERSION,
    .provides = TH_SAMPLE_TEMP | TH_SAMPLE_POWER | TH_SAMPLE_ENERGY | TH_SAMPLE_UTIL | TH_SAMPLE_THROTTLE,
    .probe = nvml_probe,
    .open = nvml_open,
    .read = nvml_read,
    .close = nvml_close,
    .limits = nvml_limits,
    .list = nvml_list,
};
