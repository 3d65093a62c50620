/* bench.c: the governor benchmark. One governor drives the simulated plant (th_plant_step)
 * in simulated time through a scenario; the governor sees th_plant_read samples (lagged,
 * noisy, quantized) at the control rate, and the workload model turns its duty into work:
 *   rate = duty · demand · throttle factor,  work = ∫ rate dt  (full-speed seconds).
 * Two yardsticks: the oracle, the constant duty whose steady temperature is the limit
 * (piecewise when the plant changes mid-run), applied to the same demand; and the optimal
 * control bound, the most work any governor could do at or under the limit knowing the plant
 * exactly: for this first-order plant with leakage rising in temperature, full duty until
 * the limit, then the duty that holds it exactly (simulated with perfect knowledge, through
 * a mid-run change too). Beside it a causal bound for the scenarios with a mid-run change:
 * the same policy held as far under the limit as the die rises before the lagged, quantized
 * sensor can show the change (no causal governor holds 0 s above with less). Energy per unit of work is set against two ways of doing the same
 * work in the same time with perfect knowledge: race-to-idle (the optimal policy until the
 * work is done, then idle) and pace-to-cool (the lowest constant duty that finishes it). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "govern/govern_internal.h"

static const char *const scenario_names[TH_SCEN_COUNT] = {"steady",        "ambient_step", "cooling_degraded",
                                                          "bursty",        "long_training", "grad_spikes_planted"};
static const double scenario_duration_s[TH_SCEN_COUNT] = {600, 1200, 1200, 1200, 7200, 1200};

#define AMBIENT_STEP_C 8.0
#define COOLING_R_FACTOR 1.3

const char *th_scenario_name(th_scenario_kind k) {
    return (unsigned)k < TH_SCEN_COUNT ? scenario_names[k] : "unknown";
}

int th_scenario_parse(const char *name) {
    for (int i = 0; i < TH_SCEN_COUNT; i++)
        if (strcmp(name, scenario_names[i]) == 0) return i;
    return -1;
}

th_bench_gov_opts th_bench_gov_defaults(void) {
    th_bench_gov_opts o;
    memset(&o, 0, sizeof o);
    o.period_s = 0.1;
    o.seed = 1;
    o.trace_hz = 1.0;
    o.margin_c = NAN;
    return o;
}

double th_bench_oracle_duty(const th_thermal_profile *p, double limit_c) {
    double hi_t = th_plant_steady_temp_c(p, 1.0);
    if (isfinite(hi_t) && hi_t <= limit_c) return 1.0;
    double lo_t = th_plant_steady_temp_c(p, 0.0);
    if (!isfinite(lo_t) || lo_t >= limit_c) return 0.0;
    double lo = 0.0, hi = 1.0;
    for (int i = 0; i < 60; i++) {
        double mid = 0.5 * (lo + hi);
        double t = th_plant_steady_temp_c(p, mid);
        if (isfinite(t) && t <= limit_c)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

/* The plant keeps its profile for life, so a mid-run change (warmer room, slower fan)
 * becomes a new plant on the changed profile brought to the old one's temperature: from
 * its ambient it heats at the duty whose steady temperature is 0.5 °C above the target,
 * in steps of τ/500, so it arrives slowly (its lagged sensor is then within hundredths of
 * a degree of the die) and within ~0.001 °C. If the target is below the new ambient, the
 * new plant starts at its ambient. *warm_j is the energy that warm-up cost (not counted). */
static th_status rebase_plant(th_plant *old, const th_thermal_profile *np, uint64_t seed, th_plant **out,
                              double *warm_j) {
    double target = th_plant_temp_c(old);
    th_plant *pl = NULL;
    th_status st = th_plant_create(np, seed, &pl);
    if (st != TH_OK) return st;
    *warm_j = 0;
    if (target > np->t_ambient_c) {
        double want = target + 0.5, lo = 0, hi = 1;
        double t1 = th_plant_steady_temp_c(np, 1.0);
        if (!(isfinite(t1) && t1 < want)) {
            for (int i = 0; i < 50; i++) {
                double mid = 0.5 * (lo + hi), t = th_plant_steady_temp_c(np, mid);
                if (isfinite(t) && t < want)
                    lo = mid;
                else
                    hi = mid;
            }
        } else {
            hi = 1.0;
        }
        double tau = np->r_k_per_w * np->c_j_per_k, h = tau / 500.0;
        for (long i = 0; i < 500L * 200 && th_plant_temp_c(pl) < target; i++)
            if ((st = th_plant_step(pl, h, hi)) != TH_OK) break;
        *warm_j = th_plant_energy_j(pl);
    }
    if (st != TH_OK) {
        th_plant_free(pl);
        return st;
    }
    *out = pl;
    return TH_OK;
}

/* Demand of the bursty scenario: on for 5..60 s, off for 5..30 s, seeded. */
typedef struct {
    th_rng rng;
    double next_switch_s;
    int on;
} bursts;

static double burst_demand(bursts *b, double t) {
    while (t >= b->next_switch_s) {
        b->on = !b->on;
        double lo = b->on ? 5.0 : 5.0, hi = b->on ? 60.0 : 30.0;
        b->next_switch_s += lo + (hi - lo) * (double)th_rng_float(&b->rng);
    }
    return b->on ? 1.0 : 0.0;
}

/* The planted scenario's gradient norm: about 1, with spikes to about 4 lasting 2..6 s every
 * 15..45 s, seeded. Two copies with one seed replay the same series: one read at t feeds the
 * governor, one read at t − TH_PLANTED_LAG_S gives the plant its planted extra power. */
typedef struct {
    th_rng rng;
    double next_switch_s;
    int on;
} spikes;

static void spikes_seed(spikes *g, uint64_t seed) {
    th_rng_seed(&g->rng, seed ^ 0x5bd1e995u);
    g->on = 0;
    g->next_switch_s = 15.0;
}

static int spike_on(spikes *g, double t) {
    while (t >= g->next_switch_s) {
        g->on = !g->on;
        g->next_switch_s += g->on ? 2.0 + 4.0 * (double)th_rng_float(&g->rng) : 15.0 + 30.0 * (double)th_rng_float(&g->rng);
    }
    return g->on;
}

/* The planted coupling: the plant runs this many times the governed duty (capped at 1). */
static double planted_mult(spikes *lagged, th_scenario_kind kind, double t) {
    if (kind != TH_SCEN_GRAD_SPIKES_PLANTED || t < TH_PLANTED_LAG_S) return 1.0;
    return spike_on(lagged, t - TH_PLANTED_LAG_S) ? 1.0 + TH_PLANTED_GAIN : 1.0;
}

/* Leakage of the simulated plant (th_plant's formula, DESIGN §4). */
static double leak_w(const th_thermal_profile *p, double t_c) {
    if (p->leak_w_at_ref <= 0) return 0.0;
    double x = fmin((t_c - p->leak_ref_c) / p->leak_doubling_c, 30.0);
    return p->leak_w_at_ref * exp2(x);
}

/* A noiseless plant known exactly, stepped like th_plant (exact exponential over sub-steps
 * of at most τ/50 with leakage held), under one of three policies:
 *   OPT_HOLD: full duty (times demand) while the next sub-step stays at or under the limit,
 *             else the duty that lands exactly on it (the optimal control bound);
 *   OPT_RACE: OPT_HOLD until `work_goal` is done, then idle (race-to-idle);
 *   OPT_PACE: the constant duty `pace_duty` (capped by the limit as OPT_HOLD is). */
enum { OPT_HOLD, OPT_RACE, OPT_PACE };
typedef struct {
    const th_thermal_profile *p;
    double t_c, work, energy_j;
} ideal_plant;

static void ideal_step(ideal_plant *ip, double dt, double demand, double limit, int policy, double goal,
                       double pace_duty, double mult) {
    const th_thermal_profile *p = ip->p;
    double tau = p->r_k_per_w * p->c_j_per_k, left = dt;
    while (left > 1e-12) {
        double h = fmin(left, tau / 50.0), a = exp(-h / tau);
        /* u is the plant's duty; the work done is u / mult (a planted coupling heats more per unit) */
        double wcap = policy == OPT_PACE ? fmin(pace_duty, demand) : demand;
        if (policy == OPT_RACE && ip->work >= goal) wcap = 0;
        double cap = fmin(1.0, wcap * mult); /* the plant's duty at the work cap */
        double base = p->t_ambient_c + p->r_k_per_w * (p->p_idle_w + leak_w(p, ip->t_c));
        double slope = p->r_k_per_w * (p->p_max_w - p->p_idle_w);
        /* t_inf(u) = base + slope·u; the sub-step ends at t_inf + (T − t_inf)·a */
        double u = cap;
        if (base + slope * u + (ip->t_c - base - slope * u) * a > limit) {
            double t_inf = (limit - ip->t_c * a) / (1 - a);
            u = th_gov_clamp((t_inf - base) / slope, 0.0, cap);
        }
        if (policy == OPT_RACE && u / mult * h > goal - ip->work) u = fmax(0.0, (goal - ip->work) / h * mult);
        double t_inf = base + slope * u;
        ip->t_c = t_inf + (ip->t_c - t_inf) * a;
        ip->energy_j += (p->p_idle_w + (p->p_max_w - p->p_idle_w) * u + leak_w(p, ip->t_c)) * h;
        ip->work += (u >= cap ? wcap : u / mult) * h; /* at the plant's cap the governed duty may be wcap */
        left -= h;
    }
}

/* Runs one ideal policy through the scenario (same demand and mid-run change as the bench). */
static ideal_plant ideal_run(const th_thermal_profile *before, const th_thermal_profile *after, double change_at,
                             double duration, double dt, th_scenario_kind kind, uint64_t seed, double limit,
                             int policy, double goal, double pace_duty) {
    ideal_plant ip = {before, before->t_ambient_c, 0, 0};
    bursts b;
    th_rng_seed(&b.rng, seed ^ 0x9e3779b97f4a7c15ull);
    b.on = 0;
    b.next_switch_s = 0;
    spikes lagged;
    spikes_seed(&lagged, seed);
    long steps = (long)llround(duration / dt);
    for (long k = 0; k < steps; k++) {
        double t = k * dt;
        if (after && t >= change_at) ip.p = after;
        double demand = kind == TH_SCEN_BURSTY ? burst_demand(&b, t) : 1.0;
        ideal_step(&ip, dt, demand, limit, policy, goal, pace_duty, planted_mult(&lagged, kind, t));
    }
    return ip;
}

/* The causal bound's margin: the die's rise from the hold at the oracle duty, between the
 * change (before -> after) and the moment a noiseless first-order lagged sensor has moved
 * max(q/2, noise) away from where it would have been (the ramp r·t seen through the lag L:
 * r·(t − L·(1 − e^(−t/L)))). The rise is r·t at the initial rate r; 0 without a change. */
static double causal_margin_c(const th_thermal_profile *before, const th_thermal_profile *after, double limit) {
    if (!after) return 0.0;
    double u = th_bench_oracle_duty(before, limit);
    double t_hold = fmin(limit, th_plant_steady_temp_c(before, u));
    double tau = after->r_k_per_w * after->c_j_per_k;
    double pw = after->p_idle_w + (after->p_max_w - after->p_idle_w) * u + leak_w(after, t_hold);
    double rate = (after->t_ambient_c + after->r_k_per_w * pw - t_hold) / tau;
    if (!(rate > 0)) return 0.0;
    double delta = fmax(0.5 * after->sensor_quantum_c, after->sensor_noise_c), lag = after->sensor_lag_s;
    double t = 0;
    while (t < 600 && rate * (t - (lag > 0 ? lag * (1 - exp(-t / lag)) : 0)) < delta) t += 0.01;
    return rate * t;
}

/* The lowest constant duty (capped at the limit) that does `goal` work in the scenario. */
static double pace_to_cool_duty(const th_thermal_profile *before, const th_thermal_profile *after, double change_at,
                                double duration, double dt, th_scenario_kind kind, uint64_t seed, double limit,
                                double goal) {
    double lo = 0, hi = 1;
    for (int i = 0; i < 30; i++) {
        double mid = 0.5 * (lo + hi);
        ideal_plant ip = ideal_run(before, after, change_at, duration, dt, kind, seed, limit, OPT_PACE, 0, mid);
        if (ip.work >= goal)
            hi = mid;
        else
            lo = mid;
    }
    return hi;
}

th_status th_bench_governor(const th_thermal_profile *profile, th_scenario_kind kind, const char *governor,
                            const th_bench_gov_opts *opts_in, th_bench_gov_result *out) {
    th_bench_gov_opts o = opts_in ? *opts_in : th_bench_gov_defaults();
    if ((unsigned)kind >= TH_SCEN_COUNT) return th_fail(TH_ERR_INVALID, "bench governor: unknown scenario %d", kind);
    if (!(o.period_s > 0)) o.period_s = 0.1;
    if (!(o.trace_hz > 0)) o.trace_hz = 1.0;
    double duration = o.duration_s > 0 ? o.duration_s : scenario_duration_s[kind];
    th_status st = th_profile_validate(profile, "bench governor: profile");
    if (st != TH_OK) return st;
    double limit = o.limit_c != 0 ? o.limit_c : th_gov_default_limit_c(profile);
    if (!(limit < profile->t_shutdown_c))
        return th_fail(TH_ERR_INVALID, "bench governor: limit_c %g must be below the profile's t_shutdown_c %g",
                       limit, profile->t_shutdown_c);
    th_thermal_profile changed = *profile;
    int has_change = 0;
    if (kind == TH_SCEN_AMBIENT_STEP) {
        changed.t_ambient_c += AMBIENT_STEP_C;
        has_change = 1;
    } else if (kind == TH_SCEN_COOLING_DEGRADED) {
        changed.r_k_per_w *= COOLING_R_FACTOR;
        has_change = 1;
    }
    double change_at = 0.5 * duration;

    th_gov_config gc = th_gov_config_default(limit);
    gc.period_s = o.period_s;
    gc.objective = o.objective;
    gc.guard_c = o.guard_c;
    if (!isnan(o.margin_c)) gc.margin_c = o.margin_c;
    th_gov_config_set_plant(&gc, profile);
    int ff = o.feed_forward && kind == TH_SCEN_GRAD_SPIKES_PLANTED;
    if (ff) { /* the coupling this scenario planted, as a measurement would give it */
        th_gov_coupling planted = {.r_peak = 1.0, .t_lag_s = -TH_PLANTED_LAG_S};
        th_gov_config_set_coupling(&gc, &planted);
    }

    th_plant *pl = NULL;
    th_governor *g = NULL;
    th_atomic_file *trace_file = NULL;
    FILE *trace = NULL;
    if ((st = th_plant_create(profile, o.seed, &pl)) != TH_OK) return st;
    if ((st = th_governor_create(governor, &gc, &g)) != TH_OK) goto done;
    if (o.trace_path) {
        if ((st = th_atomic_open(o.trace_path, &trace_file)) != TH_OK) goto done;
        trace = th_atomic_stream(trace_file);
        fprintf(trace, "t_s,temp_c,sensor_c,duty,power_w,work\n");
    }

    memset(out, 0, sizeof *out);
    snprintf(out->scenario, sizeof out->scenario, "%s/%s", th_scenario_name(kind), profile->name);
    snprintf(out->governor, sizeof out->governor, "%s%s", governor, ff ? "+ff" : "");
    out->limit_c = limit;
    out->duration_s = duration;
    double oracle = th_bench_oracle_duty(profile, limit);
    double oracle_after = has_change ? th_bench_oracle_duty(&changed, limit) : oracle;
    out->oracle_duty = oracle;
    out->max_temp_c = th_plant_temp_c(pl);

    bursts b;
    th_rng_seed(&b.rng, o.seed ^ 0x9e3779b97f4a7c15ull);
    b.on = 0;
    b.next_switch_s = 0;
    spikes grads, lagged;
    spikes_seed(&grads, o.seed);
    spikes_seed(&lagged, o.seed);
    double prev_duty = 0.0;
    th_rng gn_noise;
    th_rng_seed(&gn_noise, o.seed ^ 0x2545f491u);

    long steps = (long)llround(duration / o.period_s);
    double dt = o.period_s, energy_done = 0, energy_base = 0, duty_sum = 0;
    uint64_t decide_ns = 0;
    int changed_yet = 0;
    long trace_every = (long)fmax(1.0, llround(1.0 / (o.trace_hz * dt)));
    th_sample s;
    for (long k = 0; k < steps; k++) {
        double t = k * dt;
        if (has_change && !changed_yet && t >= change_at) {
            th_plant *np = NULL;
            double warm_j = 0;
            if ((st = rebase_plant(pl, &changed, o.seed + 1, &np, &warm_j)) != TH_OK) goto done;
            energy_done += th_plant_energy_j(pl) - energy_base;
            th_plant_free(pl);
            pl = np;
            energy_base = warm_j;
            changed_yet = 1;
        }
        memset(&s, 0, sizeof s);
        uint64_t t_ns = (uint64_t)llround((t + 1.0) * 1e9); /* sample clock starts at 1 s, never 0 */
        th_status rst = th_plant_read(pl, t_ns, &s);
        if (kind == TH_SCEN_GRAD_SPIKES_PLANTED) /* the planted extra is power, not busy time */
            s.util = prev_duty;
        /* no th_sensor here: the plant is read every period, so the sample is always fresh */
        th_gov_input in = {.sample = &s, .read_status = rst, .health = TH_HEALTH_OK};
        if (kind == TH_SCEN_GRAD_SPIKES_PLANTED) /* a training loop publishes every step's norm */
            in.grad_norm = (spike_on(&grads, t) ? 4.0 : 1.0) * (0.95 + 0.1 * (double)th_rng_float(&gn_noise));
        th_gov_output d;
        uint64_t a = th_now_ns();
        th_governor_decide(g, &in, k == 0 ? 0.0 : dt, &d);
        decide_ns += th_now_ns() - a;
        double demand = kind == TH_SCEN_BURSTY ? burst_demand(&b, t) : 1.0;
        double u = d.duty * demand;
        double f = th_plant_throttle_factor(pl);
        double u_plant = fmin(1.0, u * planted_mult(&lagged, kind, t)); /* the planted coupling, if any */
        prev_duty = u;
        th_plant_set_duty(pl, u_plant);
        if ((st = th_plant_step(pl, dt, u_plant)) != TH_OK) goto done;
        out->work += u * f * dt;
        out->oracle_work += (changed_yet ? oracle_after : oracle) * demand * dt;
        duty_sum += d.duty;
        if (f < 1) out->throttled_s += dt;
        if (d.fail_safe) out->fail_safe_s += dt;
        double temp = th_plant_temp_c(pl);
        if (temp > limit) {
            out->above_limit_s += dt;
            if (temp - limit > out->max_overshoot_c) out->max_overshoot_c = temp - limit;
        }
        if (temp > out->max_temp_c) out->max_temp_c = temp;
        if ((s.valid & TH_SAMPLE_TEMP) && s.temp_mc / 1000.0 > limit) out->sensor_above_s += dt;
        if (trace && k % trace_every == 0)
            fprintf(trace, "%.1f,%.3f,%.3f,%.4f,%.2f,%.3f\n", t + dt, temp, (s.valid & TH_SAMPLE_TEMP) ? s.temp_mc / 1000.0 : NAN,
                    u, th_plant_power_w(pl), out->work);
    }
    energy_done += th_plant_energy_j(pl) - energy_base;
    out->decisions = steps;
    th_gov_model gm;
    out->margin_c = NAN;
    if (th_governor_model(g, &gm) == TH_OK) {
        out->margin_c = gm.margin_c;
        out->alarms = gm.alarms;
    }
    out->energy_j = energy_done;
    out->energy_per_work_j = out->work > 0 ? energy_done / out->work : INFINITY;
    out->work_fraction = out->oracle_work > 0 ? out->work / out->oracle_work : NAN;
    out->mean_duty = steps > 0 ? duty_sum / steps : 0;
    out->decision_us = steps > 0 ? (double)decide_ns / steps / 1e3 : 0;
    {
        const th_thermal_profile *after = has_change ? &changed : NULL;
        ideal_plant opt = ideal_run(profile, after, change_at, duration, dt, kind, o.seed, limit, OPT_HOLD, 0, 0);
        out->optimal_work = opt.work;
        out->work_vs_optimal = opt.work > 0 ? out->work / opt.work : NAN;
        out->optimal_energy_per_work_j = opt.work > 0 ? opt.energy_j / opt.work : INFINITY;
        out->causal_margin_c = causal_margin_c(profile, after, limit);
        ideal_plant cz = ideal_run(profile, after, change_at, duration, dt, kind, o.seed, limit - out->causal_margin_c,
                                   OPT_HOLD, 0, 0);
        out->causal_work = cz.work;
        out->work_vs_causal = cz.work > 0 ? out->work / cz.work : NAN;
        double goal = fmin(out->work, opt.work);
        ideal_plant race = ideal_run(profile, after, change_at, duration, dt, kind, o.seed, limit, OPT_RACE, goal, 0);
        double pd = pace_to_cool_duty(profile, after, change_at, duration, dt, kind, o.seed, limit, goal);
        ideal_plant pace = ideal_run(profile, after, change_at, duration, dt, kind, o.seed, limit, OPT_PACE, 0, pd);
        out->race_energy_per_work_j = race.work > 0 ? race.energy_j / race.work : INFINITY;
        out->pace_energy_per_work_j = pace.work > 0 ? pace.energy_j / pace.work : INFINITY;
        out->pace_duty = pd;
    }
done:
    if (trace_file && st == TH_OK)
        st = th_atomic_commit(trace_file);
    else
        th_atomic_abort(trace_file);
    th_governor_free(g);
    th_plant_free(pl);
    return st;
}

th_status th_gov_necessary_idle(const th_thermal_profile *p, double limit_c, double start_c, double busy_s,
                                double other_s, double *idle_s) {
    *idle_s = NAN;
    th_status st = th_profile_validate(p, "necessary pacing: profile");
    if (st != TH_OK) return st;
    if (!(busy_s >= 0 && other_s >= 0 && isfinite(limit_c) && isfinite(start_c)))
        return th_fail(TH_ERR_INVALID, "necessary pacing: busy_s %g, other_s %g, limit_c %g, start_c %g", busy_s,
                       other_s, limit_c, start_c);
    if (busy_s == 0) {
        *idle_s = 0;
        return TH_OK;
    }
    /* the duty the work loop reaches unpaced, with the run's time outside units spread evenly */
    double demand = busy_s / (busy_s + other_s), tau = p->r_k_per_w * p->c_j_per_k;
    double dt = fmin(0.05, tau / 50.0), t = 0, give_up = 100.0 * (busy_s + other_s) + 20.0 * tau;
    ideal_plant ip = {p, start_c, 0, 0};
    while (ip.work < busy_s) {
        double before = ip.work;
        ideal_step(&ip, dt, demand, limit_c, OPT_HOLD, 0, 0, 1.0);
        if (ip.work >= busy_s) { /* the last step only as far as the work needs */
            t += dt * (busy_s - before) / (ip.work - before);
            break;
        }
        t += dt;
        if (t > give_up)
            return th_fail(TH_ERR_INVALID, "necessary pacing: the plant cannot work under %g °C (idle holds it above)",
                           limit_c);
    }
    double idle = t - busy_s - other_s;
    *idle_s = idle > 1e-6 * (busy_s + other_s) ? idle : 0.0; /* below that: the sum of the steps' rounding */
    return TH_OK;
}
