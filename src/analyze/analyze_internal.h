/* analyze_internal.h: helpers shared by the analysis sources (not part of the API). */
#ifndef THERMO_ANALYZE_INTERNAL_H
#define THERMO_ANALYZE_INTERNAL_H

#include <stdarg.h>
#include <stdio.h>

#include "thermo/analyze.h"

/* snprintf that always terminates and never warns about truncation. */
void th_an_fmt(char *dst, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* The manual's readings. */
const char *th_an_interp_tau(double tau_s);
const char *th_an_interp_eta_p(double eta_p);
const char *th_an_interp_r(double r);

/* Ordinary least-squares slope of y against x over finite pairs (NaN if < 3 or degenerate). */
double th_an_slope(const double *x, const double *y, size_t n);

#endif
