/* session.c: a coupling-analysis session (the field manual's procedure): a monitored
 * fine-tuning job bounded by steps and a wall-clock deadline, logging telemetry at the
 * session's rate, then session.json from the run's own figures and the data sheet. No
 * signals and no re-reading of the log for what the run already knows. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "thermo/pipeline.h"

th_session_opts th_session_defaults(void) {
    th_session_opts o;
    memset(&o, 0, sizeof o);
    o.duration_s = 90;
    o.hz = 1;
    o.ambient_c = NAN;
    return o;
}

static void fill_meta(const th_train_job *job, const th_session_opts *o, const th_train_job_result *jr,
                      uint64_t t_start, th_session_meta *meta) {
    th_session_meta_init(meta);
    time_t now = time(NULL);
    struct tm tmv;
    gmtime_r(&now, &tmv);
    strftime(meta->date, sizeof meta->date, "%Y-%m-%dT%H:%M:%SZ", &tmv);
    char stamp[32];
    strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%S", &tmv);
    snprintf(meta->id, sizeof meta->id, "%s-%d", stamp, (int)getpid());
    snprintf(meta->model, sizeof meta->model, "%s", job->model ? job->model : "small");
    meta->steps = jr->settings.steps;
    meta->hz = o->hz;
    meta->duration_s = (th_now_ns() - t_start) / 1e9;
    const th_run_figures *f = &jr->figures;
    if (!jr->have_figures) return;
    snprintf(meta->sensor, sizeof meta->sensor, "%s", f->sensor);
    meta->modeled = f->origin == TH_ORIGIN_MEASURED ? 0 : 1;
    if (isfinite(o->ambient_c)) {
        meta->ambient_c = o->ambient_c;
        snprintf(meta->ambient_how, sizeof meta->ambient_how, "--ambient");
    } else if (f->profile[0] && isfinite(f->ambient_c)) {
        // the simulated plant's ambient is known; a real sensor's first reading is not the
        // ambient (a session may start warm): the analysis fits it instead
        meta->ambient_c = f->ambient_c;
        snprintf(meta->ambient_how, sizeof meta->ambient_how, "%s", f->ambient_how);
    }
    if (meta->modeled && f->profile[0]) {
        snprintf(meta->profile, sizeof meta->profile, "%s", f->profile);
        th_thermal_profile p;
        if (th_profile_find(job->run.sense.profile ? job->run.sense.profile : f->profile, &p) == TH_OK) {
            meta->p_idle_w = p.p_idle_w, meta->p_max_w = p.p_max_w;
            meta->r_k_per_w = p.r_k_per_w, meta->c_j_per_k = p.c_j_per_k;
        }
    }
}

th_status th_session_run(const th_train_job *job_in, const th_session_opts *o, th_session_result *out) {
    memset(out, 0, sizeof *out);
    if (!o->out_dir) return th_fail(TH_ERR_INVALID, "session: an output directory is required");
    if (!(o->duration_s > 0) || !(o->hz > 0))
        return th_fail(TH_ERR_INVALID, "session: duration %g s and rate %g Hz must be positive", o->duration_s, o->hz);
    snprintf(out->telemetry_path, sizeof out->telemetry_path, "%s/telemetry.csv", o->out_dir);
    snprintf(out->meta_path, sizeof out->meta_path, "%s/session.json", o->out_dir);
    char run_dir[4200];
    snprintf(run_dir, sizeof run_dir, "%s/run", o->out_dir);
    th_train_job job = *job_in;
    job.out_dir = run_dir;
    job.deadline_s = o->duration_s;
    job.run.hz = o->hz;
    job.run.telemetry_path = out->telemetry_path;
    uint64_t t_start = th_now_ns();
    th_status st = th_train_job_run(&job, &out->job);
    if (st == TH_ERR_INTERRUPTED && out->job.deadline_hit) st = TH_OK; // the bound, not a failure
    fill_meta(&job, o, &out->job, t_start, &out->meta);
    snprintf(out->meta.stopped_by, sizeof out->meta.stopped_by, "%s",
             st != TH_OK ? "error" : out->job.deadline_hit ? "duration" : "steps");
    th_status ms = th_session_meta_write(out->meta_path, &out->meta);
    if (st != TH_OK) return st;
    if (ms != TH_OK) return ms;
    th_analyze_opts ao = th_analyze_defaults();
    if ((st = th_analyze_path(o->out_dir, &ao, &out->analysis)) == TH_OK) st = th_analysis_write(out->analysis, o->out_dir);
    if (st != TH_OK) {
        th_analysis_free(out->analysis);
        out->analysis = NULL;
    }
    return st;
}
