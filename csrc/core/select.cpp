#include "select.h"

#include <cmath>
#include <cstring>

#include "parallel.h"

namespace distq {

namespace {

template <typename T>
void select_range(const T* x, int64_t begin, int64_t end, double center, double threshold,
                  std::vector<int64_t>& found) {
  using C = typename Compute<T>::type;
  const C c = static_cast<C>(center);
  const C t = static_cast<C>(threshold);
  for (int64_t i = begin; i < end; ++i) {
    const C v = load(x + i);
    if (v != C(0) && !(std::fabs(v - c) < t)) found.push_back(i);
  }
}

}  // namespace

Selection::Selection(const void* x, int64_t n, DType dtype, double center, double threshold)
    : x_(x), dtype_(dtype) {
  if (n <= 0) return;
  const int64_t chunks = chunk_count(n);
  chunk_indices_.resize(chunks);
  dispatch_dtype(dtype, [&](auto tag) {
    const auto* data = static_cast<const decltype(tag)*>(x);
    parallel_chunks(n, chunks, [&](int64_t i, int64_t begin, int64_t end) {
      select_range(data, begin, end, center, threshold, chunk_indices_[i]);
    });
  });
  for (const auto& found : chunk_indices_) size_ += static_cast<int64_t>(found.size());
}

template <typename Index>
void Selection::write_indices_as(Index* indices) const {
  for (const auto& found : chunk_indices_) {
    for (const int64_t i : found) *indices++ = static_cast<Index>(i);
  }
}

void Selection::write_indices(int32_t* indices) const { write_indices_as(indices); }
void Selection::write_indices(int64_t* indices) const { write_indices_as(indices); }

void Selection::write_values(void* values) const {
  const size_t bytes = element_size(dtype_);
  const auto* source = static_cast<const unsigned char*>(x_);
  auto* target = static_cast<unsigned char*>(values);
  for (const auto& found : chunk_indices_) {
    for (const int64_t i : found) {
      std::memcpy(target, source + i * bytes, bytes);
      target += bytes;
    }
  }
}

}  // namespace distq
