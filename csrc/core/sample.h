// A fixed strided sample of a tensor, for the statistics that need order (medians, quartiles):
// an exact median over 10^7 elements would cost a sort; a few thousand samples cost microseconds.
#pragma once

#include <cstdint>
#include <vector>

#include "dtype.h"

namespace distq {

// The finite values among x[floor(i * n / m)], i < m, where m = min(n, sample_size).
std::vector<double> strided_sample(const void* x, int64_t n, DType dtype, int64_t sample_size);

// The q-quantile of values by NumPy's default ("linear") rule; reorders values. NaN if empty.
double sample_quantile(std::vector<double>& values, double q);

double sample_mean(const std::vector<double>& values);

}  // namespace distq
