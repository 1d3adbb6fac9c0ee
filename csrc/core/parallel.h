// The core's one source of CPU parallelism. OpenMP keeps kernels free of any framework's thread
// pool, so the torch and TensorFlow bindings share them unchanged.
#pragma once

#include <algorithm>
#include <cstdint>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace distq {

// Below this many elements a kernel runs on the calling thread: waking a team costs more.
constexpr int64_t kParallelGrain = 1 << 15;

inline int max_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

// Number of contiguous chunks [i*n/chunks, (i+1)*n/chunks) a kernel splits n elements into.
inline int64_t chunk_count(int64_t n) {
  if (n < 2 * kParallelGrain) return 1;
  return std::min<int64_t>(n / kParallelGrain, 4 * static_cast<int64_t>(max_threads()));
}

inline int64_t chunk_begin(int64_t n, int64_t chunks, int64_t i) { return n / chunks * i + std::min(i, n % chunks); }

// Runs fn(chunk_index, begin, end) for every chunk, in parallel when there is more than one.
template <typename Fn>
void parallel_chunks(int64_t n, int64_t chunks, const Fn& fn) {
#pragma omp parallel for schedule(static) if (chunks > 1)
  for (int64_t i = 0; i < chunks; ++i) fn(i, chunk_begin(n, chunks, i), chunk_begin(n, chunks, i + 1));
}

// Runs fn(i) for every i in [0, count), in parallel when `parallel` holds (work worth a team).
template <typename Fn>
void parallel_for(int64_t count, bool parallel, const Fn& fn) {
#pragma omp parallel for schedule(static) if (parallel && count > 1)
  for (int64_t i = 0; i < count; ++i) fn(i);
}

}  // namespace distq
