// Quantile (inverse CDF) functions of the fitted families, as scalar host/device code:
// the threshold is computed where the statistics are, so the compress path never needs a
// round-trip to the host (or to SciPy) to turn a ratio into a threshold.
#pragma once

#include <cmath>

#include "macros.h"

namespace distq {

constexpr double kPi = 3.14159265358979323846;

// Standard normal upper tail Q(z) = P(Z > z).
DISTQ_HOST_DEVICE inline double normal_upper_tail(double z) { return 0.5 * erfc(z / 1.4142135623730951); }

// Standard normal quantile Phi^-1(p), 0 < p < 1. Acklam's rational approximation (relative error
// below 1.2e-9) refined by one Halley step on erfc, which brings it to double precision.
DISTQ_HOST_DEVICE inline double normal_quantile(double p) {
  if (!(p > 0.0)) return -INFINITY;
  if (!(p < 1.0)) return INFINITY;
  const double a[6] = {-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02,
                       1.383577518672690e+02,  -3.066479806614716e+01, 2.506628277459239e+00};
  const double b[5] = {-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
                       6.680131188771972e+01,  -1.328068155288572e+01};
  const double c[6] = {-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
                       -2.549732539343734e+00, 4.374664141464968e+00,  2.938163982698783e+00};
  const double d[4] = {7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
                       3.754408661907416e+00};
  const double p_low = 0.02425;
  double x;
  if (p < p_low) {
    const double q = sqrt(-2.0 * log(p));
    x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
        ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1.0);
  } else if (p <= 1.0 - p_low) {
    const double q = p - 0.5;
    const double r = q * q;
    x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
        (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1.0);
  } else {
    const double q = sqrt(-2.0 * log1p(-p));
    x = -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
        ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1.0);
  }
  // Halley refinement; the error term is taken from the smaller tail to keep its precision.
  const double e = x < 0 ? (normal_upper_tail(-x) - p) : ((1.0 - p) - normal_upper_tail(x));
  const double u = e * 2.5066282746310002 * exp(0.5 * x * x);
  return x - u / (1.0 + 0.5 * x * u);
}

// Regularized incomplete beta I_x(a, b) by its continued fraction (modified Lentz), using the
// symmetry I_x(a, b) = 1 - I_{1-x}(b, a) where the fraction converges slowly.
DISTQ_HOST_DEVICE inline double incomplete_beta_fraction(double a, double b, double x) {
  const double tiny = 1e-300;
  double c = 1.0;
  double d = 1.0 - (a + b) * x / (a + 1.0);
  if (fabs(d) < tiny) d = tiny;
  d = 1.0 / d;
  double result = d;
  for (int m = 1; m <= 300; ++m) {
    const double m2 = 2.0 * m;
    double coef = m * (b - m) * x / ((a + m2 - 1.0) * (a + m2));
    d = 1.0 + coef * d;
    if (fabs(d) < tiny) d = tiny;
    c = 1.0 + coef / c;
    if (fabs(c) < tiny) c = tiny;
    d = 1.0 / d;
    result *= d * c;
    coef = -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1.0));
    d = 1.0 + coef * d;
    if (fabs(d) < tiny) d = tiny;
    c = 1.0 + coef / c;
    if (fabs(c) < tiny) c = tiny;
    d = 1.0 / d;
    const double delta = d * c;
    result *= delta;
    if (fabs(delta - 1.0) < 1e-15) break;
  }
  return result;
}

DISTQ_HOST_DEVICE inline double incomplete_beta(double a, double b, double x) {
  if (x <= 0.0) return 0.0;
  if (x >= 1.0) return 1.0;
  const double log_front = lgamma(a + b) - lgamma(a) - lgamma(b) + a * log(x) + b * log1p(-x);
  if (x < (a + 1.0) / (a + b + 2.0)) return exp(log_front) * incomplete_beta_fraction(a, b, x) / a;
  return 1.0 - exp(log_front) * incomplete_beta_fraction(b, a, 1.0 - x) / b;
}

// Upper tail P(T > t) of Student's t with nu degrees of freedom, t >= 0.
DISTQ_HOST_DEVICE inline double student_t_upper_tail(double t, double nu) {
  return 0.5 * incomplete_beta(0.5 * nu, 0.5, nu / (nu + t * t));
}

DISTQ_HOST_DEVICE inline double student_t_density(double t, double nu) {
  const double log_norm = lgamma(0.5 * (nu + 1.0)) - lgamma(0.5 * nu) - 0.5 * log(nu * kPi);
  return exp(log_norm - 0.5 * (nu + 1.0) * log1p(t * t / nu));
}

// The x >= 0 with law.tail(x) = q: Newton's method on log tail(x), which is nearly linear in x far
// out in the tail, from `start`, kept inside a shrinking bracket (bisection when a step leaves it).
template <typename Law>
DISTQ_HOST_DEVICE inline double solve_upper_tail(const Law& law, double q, double start) {
  double x = start;
  double lo = 0.0;
  double hi = INFINITY;
  const double log_q = log(q);
  for (int i = 0; i < 200; ++i) {
    const double tail = law.tail(x);
    if (tail > q) lo = x; else hi = x;
    double next = x + (log(tail) - log_q) * tail / law.density(x);
    if (!(next > lo && next < hi)) next = hi == INFINITY ? 2.0 * x + 1.0 : 0.5 * (lo + hi);
    if (fabs(next - x) <= 1e-13 * x) return next;
    x = next;
  }
  return x;
}

struct StudentTLaw {
  double nu;
  DISTQ_HOST_DEVICE double tail(double t) const { return student_t_upper_tail(t, nu); }
  DISTQ_HOST_DEVICE double density(double t) const { return student_t_density(t, nu); }
};

// Student-t quantile of the upper tail: the t >= 0 with P(T > t) = q, 0 < q <= 0.5, started from
// the Cornish-Fisher expansion around the normal quantile.
DISTQ_HOST_DEVICE inline double student_t_upper_quantile(double q, double nu) {
  if (!(q < 0.5)) return 0.0;
  if (!(q > 0.0)) return INFINITY;
  const double z = -normal_quantile(q);
  if (nu > 1e7) return z;
  const double z2 = z * z;
  const double start = z + z * (z2 + 1.0) / (4.0 * nu) + z * ((5.0 * z2 + 16.0) * z2 + 3.0) / (96.0 * nu * nu);
  return solve_upper_tail(StudentTLaw{nu}, q, start);
}

// Regularized lower incomplete gamma P(a, x) by its power series; converges fast for x < a + 1.
DISTQ_HOST_DEVICE inline double incomplete_gamma_series(double a, double x) {
  double term = 1.0 / a;
  double total = term;
  for (int n = 1; n < 1000; ++n) {
    term *= x / (a + n);
    total += term;
    if (fabs(term) < fabs(total) * 1e-16) break;
  }
  return total * exp(-x + a * log(x) - lgamma(a));
}

// Regularized upper incomplete gamma Q(a, x) by its continued fraction (modified Lentz); for x >= a + 1.
DISTQ_HOST_DEVICE inline double incomplete_gamma_fraction(double a, double x) {
  const double tiny = 1e-300;
  double b = x + 1.0 - a;
  double c = 1.0 / tiny;
  double d = 1.0 / b;
  double result = d;
  for (int i = 1; i < 1000; ++i) {
    const double an = -i * (i - a);
    b += 2.0;
    d = an * d + b;
    if (fabs(d) < tiny) d = tiny;
    c = b + an / c;
    if (fabs(c) < tiny) c = tiny;
    d = 1.0 / d;
    const double delta = d * c;
    result *= delta;
    if (fabs(delta - 1.0) < 1e-15) break;
  }
  return result * exp(-x + a * log(x) - lgamma(a));
}

// Q(a, x) = P(X > x) for X ~ Gamma(shape a, scale 1).
DISTQ_HOST_DEVICE inline double gamma_upper_tail(double a, double x) {
  if (x <= 0.0) return 1.0;
  return x < a + 1.0 ? 1.0 - incomplete_gamma_series(a, x) : incomplete_gamma_fraction(a, x);
}

DISTQ_HOST_DEVICE inline double gamma_density(double a, double x) {
  return exp((a - 1.0) * log(x) - x - lgamma(a));
}

struct GammaLaw {
  double a;
  DISTQ_HOST_DEVICE double tail(double x) const { return gamma_upper_tail(a, x); }
  DISTQ_HOST_DEVICE double density(double x) const { return gamma_density(a, x); }
};

// The x with Q(a, x) = q, 0 < q < 1, started from the Wilson-Hilferty approximation.
DISTQ_HOST_DEVICE inline double gamma_upper_quantile(double q, double a) {
  if (!(q > 0.0)) return INFINITY;
  if (!(q < 1.0)) return 0.0;
  const double z = -normal_quantile(q);
  const double w = 1.0 / (9.0 * a);
  return solve_upper_tail(GammaLaw{a}, q, a * pow(fmax(1.0 - w + z * sqrt(w), 0.1), 3.0));
}

}  // namespace distq
