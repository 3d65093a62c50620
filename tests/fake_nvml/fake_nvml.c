/* fake_nvml.c: a stand-in for libnvidia-ml.so.1 that test_sense_nvml builds with
 * `cc -shared -fPIC` and loads through THERMO_NVML_LIB. It exports the NVML functions the
 * nvml backend uses, with scripted values and error modes read from the environment:
 *   FAKE_NVML_COUNT  GPUs (default 1)        FAKE_NVML_TEMPS  comma list of °C, cycled per read
 *   FAKE_NVML_POWER_MW (default 250000)      FAKE_NVML_UTIL  percent (default 60)
 *   FAKE_NVML_REASONS  clocks-event bitmask  FAKE_NVML_ENERGY_STEP_MJ per energy read (default 25000)
 *   FAKE_NVML_MODE  ok | init_fail | uninit | lost | lost_after=N | not_supported
 *   FAKE_NVML_LOG  file that gets one line per setter call (there must be none)
 * Built with -DFAKE_NVML_OLD_DRIVER it exports nvmlDeviceGetCurrentClocksThrottleReasons
 * instead of ...EventsReasons, as drivers before 535 do. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int nvmlReturn_t;
typedef struct fake_dev *nvmlDevice_t;
typedef struct { unsigned int gpu, memory; } nvmlUtilization_t;
struct fake_dev { unsigned int index; };

static struct fake_dev devs[8];
static int initialized;
static unsigned long temp_reads;
static unsigned long long energy_mj = 1000000;

static const char *mode(void) {
    const char *m = getenv("FAKE_NVML_MODE");
    return m ? m : "ok";
}
static long env_long(const char *k, long d) {
    const char *v = getenv(k);
    return v && *v ? strtol(v, NULL, 0) : d;
}
static nvmlReturn_t dev_check(nvmlDevice_t d) {
    if (!initialized || strcmp(mode(), "uninit") == 0) return 1; /* NVML_ERROR_UNINITIALIZED */
    if (!d) return 2;                                            /* INVALID_ARGUMENT */
    if (strcmp(mode(), "lost") == 0) return 15;                  /* GPU_IS_LOST */
    if (strncmp(mode(), "lost_after=", 11) == 0 && temp_reads > (unsigned long)atol(mode() + 11)) return 15;
    return 0;
}
static void log_setter(const char *name) {
    const char *p = getenv("FAKE_NVML_LOG");
    FILE *f = p ? fopen(p, "a") : NULL;
    if (f) {
        fprintf(f, "%s\n", name);
        fclose(f);
    }
}

nvmlReturn_t nvmlInit_v2(void) {
    if (strcmp(mode(), "init_fail") == 0) return 9; /* DRIVER_NOT_LOADED */
    if (initialized++ == 0) temp_reads = 0; /* lost_after=N counts reads since the first init */
    return 0;
}
nvmlReturn_t nvmlShutdown(void) {
    if (!initialized) return 1;
    initialized--;
    return 0;
}
const char *nvmlErrorString(nvmlReturn_t r) {
    switch (r) {
    case 0: return "Success";
    case 1: return "Uninitialized";
    case 2: return "Invalid Argument";
    case 3: return "Not Supported";
    case 9: return "Driver Not Loaded";
    case 15: return "GPU is lost";
    default: return "Unknown Error";
    }
}
nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *n) {
    if (!initialized) return 1;
    *n = (unsigned int)env_long("FAKE_NVML_COUNT", 1);
    return 0;
}
nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int i, nvmlDevice_t *d) {
    if (!initialized) return 1;
    if (i >= (unsigned)env_long("FAKE_NVML_COUNT", 1) || i >= 8) return 2;
    devs[i].index = i;
    *d = &devs[i];
    return 0;
}
nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t d, char *name, unsigned int len) {
    nvmlReturn_t r = dev_check(d);
    if (r) return r;
    snprintf(name, len, "NVIDIA H100 80GB HBM3");
    return 0;
}
nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t d, int sensor, unsigned int *t) {
    temp_reads++; /* a read starts here: lost_after=N loses the GPU in read N + 1 */
    nvmlReturn_t r = dev_check(d);
    if (r) return r;
    if (sensor != 0) return 2;
    const char *list = getenv("FAKE_NVML_TEMPS");
    if (!list || !*list) list = "45";
    unsigned long n = 1;
    for (const char *p = list; *p; p++) n += *p == ',';
    unsigned long k = (temp_reads - 1) % n;
    const char *p = list;
    while (k--) p = strchr(p, ',') + 1;
    *t = (unsigned int)strtoul(p, NULL, 10) + d->index;
    return 0;
}
nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t d, unsigned int *mw) {
    nvmlReturn_t r = dev_check(d);
    if (r) return r;
    if (strcmp(mode(), "not_supported") == 0) return 3;
    *mw = (unsigned int)env_long("FAKE_NVML_POWER_MW", 250000);
    return 0;
}
nvmlReturn_t nvmlDeviceGetTotalEnergyConsumption(nvmlDevice_t d, unsigned long long *mj) {
    nvmlReturn_t r = dev_check(d);
    if (r) return r;
    if (strcmp(mode(), "not_supported") == 0) return 3;
    energy_mj += (unsigned long long)env_long("FAKE_NVML_ENERGY_STEP_MJ", 25000);
    *mj = energy_mj;
    return 0;
}
nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t d, nvmlUtilization_t *u) {
    nvmlReturn_t r = dev_check(d);
    if (r) return r;
    if (strcmp(mode(), "not_supported") == 0) return 3;
    u->gpu = (unsigned int)env_long("FAKE_NVML_UTIL", 60);
    u->memory = 30;
    return 0;
}
static nvmlReturn_t reasons(nvmlDevice_t d, unsigned long long *bits) {
    nvmlReturn_t r = dev_check(d);
    if (r) return r;
    if (strcmp(mode(), "not_supported") == 0) return 3;
    *bits = (unsigned long long)env_long("FAKE_NVML_REASONS", 0);
    return 0;
}
#ifdef FAKE_NVML_OLD_DRIVER
nvmlReturn_t nvmlDeviceGetCurrentClocksThrottleReasons(nvmlDevice_t d, unsigned long long *b) { return reasons(d, b); }
#else
nvmlReturn_t nvmlDeviceGetCurrentClocksEventReasons(nvmlDevice_t d, unsigned long long *b) { return reasons(d, b); }
#endif
nvmlReturn_t nvmlDeviceGetTemperatureThreshold(nvmlDevice_t d, int type, unsigned int *t) {
    nvmlReturn_t r = dev_check(d);
    if (r) return r;
    if (strcmp(mode(), "not_supported") == 0) return 3;
    static const unsigned int v[] = {92, 89, 95, 87}; /* H100 SXM: shutdown, slowdown, mem max, gpu max */
    if (type < 0 || type > 3) return 2;
    *t = v[type];
    return 0;
}

/* Setters a sensor must never call: each one leaves a line in FAKE_NVML_LOG. */
#define UNUSED __attribute__((unused))
nvmlReturn_t nvmlDeviceSetPowerManagementLimit(UNUSED nvmlDevice_t d, UNUSED unsigned int mw) {
    log_setter(__func__);
    return 0;
}
nvmlReturn_t nvmlDeviceSetGpuLockedClocks(UNUSED nvmlDevice_t d, UNUSED unsigned int a, UNUSED unsigned int b) {
    log_setter(__func__);
    return 0;
}
nvmlReturn_t nvmlDeviceSetApplicationsClocks(UNUSED nvmlDevice_t d, UNUSED unsigned int a, UNUSED unsigned int b) {
    log_setter(__func__);
    return 0;
}
nvmlReturn_t nvmlDeviceSetPersistenceMode(UNUSED nvmlDevice_t d, UNUSED int m) {
    log_setter(__func__);
    return 0;
}
nvmlReturn_t nvmlDeviceSetComputeMode(UNUSED nvmlDevice_t d, UNUSED int m) {
    log_setter(__func__);
    return 0;
}
nvmlReturn_t nvmlDeviceResetGpuLockedClocks(UNUSED nvmlDevice_t d) {
    log_setter(__func__);
    return 0;
}
