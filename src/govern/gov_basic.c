/* gov_basic.c: the governors without a model. "none" (full speed: the hardware's own
 * slowdown is the only protection), "bang_bang" (Linux gov_bang_bang.c: two-point with
 * hysteresis) and "step_wise" (Linux gov_step_wise.c: one cooling state per poll, by trend). */
#include <math.h>

#include "govern/govern_internal.h"

/* ---------------------------------------------------------------------------------
 * none */

static void none_decide(void *state, const th_gov_config *cfg, const th_sample *s, double dt_s, th_gov_output *out) {
    out->duty = 1.0;
}

const th_governor_ops th_gov_none_ops = {
    .name = "none",
    .api_version = TH_GOV_API_VERSION,
    .source = "baseline: full speed always; the hardware's own thermal slowdown is the only protection",
    .state_size = 0,
    .fail_safe = 0,
    .decide = none_decide,
};

/* ---------------------------------------------------------------------------------
 * bang_bang: the cooling device (our idle injection) switches on when the temperature
 * reaches the trip (the limit) and off only once it is below trip − hysteresis. "On"
 * means the lowest duty. */

typedef struct {
    int on;
} bang_state;

static void bang_decide(void *state, const th_gov_config *cfg, const th_sample *s, double dt_s, th_gov_output *out) {
    bang_state *b = state;
    double t = th_gov_temp_c(s);
    if (!b->on && t >= cfg->limit_c) b->on = 1;
    if (b->on && t < cfg->limit_c - cfg->hysteresis_c) b->on = 0;
    out->duty = b->on ? cfg->min_duty : 1.0;
}

static void bang_describe(const void *state, const th_gov_config *cfg, char *buf, size_t len) {
    const bang_state *b = state;
    snprintf(buf, len, "bang_bang: cooling %s (trip %.1f °C, hysteresis %.1f °C)", b->on ? "on" : "off",
             cfg->limit_c, cfg->hysteresis_c);
}

const th_governor_ops th_gov_bang_bang_ops = {
    .name = "bang_bang",
    .api_version = TH_GOV_API_VERSION,
    .source = "Linux drivers/thermal/gov_bang_bang.c: on when the trip is crossed upwards, off below trip - hyst",
    .state_size = sizeof(bang_state),
    .fail_safe = 1,
    .decide = bang_decide,
    .describe = bang_describe,
};

/* ---------------------------------------------------------------------------------
 * step_wise: cooling states 0..TH_STEP_STATES map linearly onto duty 1..min_duty. Per
 * poll, with throttle = (T >= trip, or T >= trip − hyst once the trip was crossed) and
 * trend = sign of the change since the last poll (the kernel's get_tz_trend fallback):
 *   throttle and rising → state + 1;  throttle and dropping → state − 1, kept >= 1
 *   (the kernel keeps an instance above its lower state while throttling);
 *   not throttling and dropping → state − 1 (deactivated at 0); otherwise hold.
 * The step down by one below the trip is the pre-6.x kernel rule quoted in
 * references/thermal.md (newer kernels drop straight to the lower state). */

#define TH_STEP_STATES 10

typedef struct {
    int state;
    int crossed;
    int have_last, initialized;
    int32_t last_mc;
} step_state;

static double step_duty(const th_gov_config *cfg, int state) {
    return 1.0 - (1.0 - cfg->min_duty) * (double)state / TH_STEP_STATES;
}

static void step_decide(void *state, const th_gov_config *cfg, const th_sample *s, double dt_s, th_gov_output *out) {
    step_state *st = state;
    double t = th_gov_temp_c(s);
    int trend = 0; /* +1 raising, -1 dropping */
    if (st->have_last) trend = s->temp_mc > st->last_mc ? 1 : s->temp_mc < st->last_mc ? -1 : 0;
    st->last_mc = s->temp_mc;
    st->have_last = 1;
    double threshold = st->crossed ? cfg->limit_c - cfg->hysteresis_c : cfg->limit_c;
    int throttle = t >= threshold;
    st->crossed = throttle;
    if (throttle) {
        if (trend > 0 || !st->initialized) /* the kernel steps up on its first evaluation too */
            st->state = st->state < TH_STEP_STATES ? st->state + 1 : TH_STEP_STATES;
        else if (trend < 0)
            st->state = st->state > 1 ? st->state - 1 : 1;
    } else if (trend < 0 && st->state > 0) {
        st->state--;
    }
    st->initialized = 1;
    out->duty = step_duty(cfg, st->state);
}

static void step_describe(const void *state, const th_gov_config *cfg, char *buf, size_t len) {
    const step_state *st = state;
    snprintf(buf, len, "step_wise: cooling state %d/%d (duty %.3f), trip %.1f °C", st->state, TH_STEP_STATES,
             step_duty(cfg, st->state), cfg->limit_c);
}

const th_governor_ops th_gov_step_wise_ops = {
    .name = "step_wise",
    .api_version = TH_GOV_API_VERSION,
    .source = "Linux drivers/thermal/gov_step_wise.c: trend-based, one cooling state per poll; 10 states "
              "mapped linearly onto duty 1..min_duty",
    .state_size = sizeof(step_state),
    .fail_safe = 1,
    .decide = step_decide,
    .describe = step_describe,
};
