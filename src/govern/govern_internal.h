/* govern_internal.h: the governor plug-in interface (an ops struct per governor, listed in
 * the registry in governor.c) and helpers the governors share. */
#ifndef THERMO_GOVERN_INTERNAL_H
#define THERMO_GOVERN_INTERNAL_H

#include <stdio.h>

#include "thermo/govern.h"

/* One governor. decide() is pure: it reads the sample, updates its own state and fills
 * out->duty (and predicted_c); it never sleeps or does I/O. The wrapper in governor.c has
 * already checked the sample (fail-safe), clamps the duty to [min_duty, 1] and sets the
 * thread cap. State is state_size bytes, zeroed before init. */
typedef struct {
    const char *name;
    int api_version;           /* TH_GOV_API_VERSION */
    const char *source;        /* where the rules come from */
    size_t state_size;
    int fail_safe;             /* 1: the wrapper applies the fail-safe (every governor but none) */
    th_status (*init)(void *state, const th_gov_config *cfg);
    void (*decide)(void *state, const th_gov_config *cfg, const th_sample *s, double dt_s, th_gov_output *out);
    void (*reset)(void *state, const th_gov_config *cfg); /* NULL: zero the state and init again */
    /* optional: one line on the last decision */
    void (*describe)(const void *state, const th_gov_config *cfg, char *buf, size_t len);
    /* optional: a training step's gradient norm at t_s (the wrapper passes a published one
     * before the decision on the same sample); pure, like decide */
    void (*feed)(void *state, const th_gov_config *cfg, double t_s, double grad_norm);
    /* optional: the identified model */
    th_status (*model)(const void *state, th_gov_model *out);
    /* optional: the busy seconds of the work's last unit (> 0), passed before the decision on
     * the same sample; pure, like decide */
    void (*unit)(void *state, double unit_s);
} th_governor_ops;

extern const th_governor_ops th_gov_none_ops, th_gov_bang_bang_ops, th_gov_step_wise_ops, th_gov_pid_ops,
    th_gov_predictive_ops;

/* Creates a governor from an ops struct not (necessarily) in the registry; fails with
 * TH_ERR_UNSUPPORTED when its api_version is not TH_GOV_API_VERSION, else as
 * th_governor_create. For tests and out-of-tree governors. */
th_status th_governor_create_ops(const th_governor_ops *ops, const th_gov_config *cfg, th_governor **out);
/* The governor's own state (state_size bytes, NULL if 0), read-only: for tests. */
const void *th_governor_state(const th_governor *g);
/* pid: Σerr, the integral of its state (tests read it here instead of parsing the status). */
double th_gov_pid_integral(const void *pid_state);

/* predictive: the steady-state σ (°C) of its Kalman filter's die estimate for cfg's sensor
 * (lag, noise, quantum, period) and a plant time constant tau_s (0: 30 s); the margin rule's
 * input, exposed for tests. */
double th_gov_predictive_die_sd_c(const th_gov_config *cfg, double tau_s);

static inline double th_gov_temp_c(const th_sample *s) { return s->temp_mc / 1000.0; }
static inline double th_gov_clamp(double x, double lo, double hi) { return x < lo ? lo : x > hi ? hi : x; }

#endif
