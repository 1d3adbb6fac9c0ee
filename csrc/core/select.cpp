#include "select.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>

#include "parallel.h"
#include "simd.h"

namespace distq {

namespace {

// A group of entries is first tested with a branch-free vector "is any entry kept?"; only groups
// with hits (about 6% of 64-entry groups at ratio 0.001) are turned into a bit mask of their kept entries.
constexpr int64_t kGroup = 64;

// The most entries a chunk may span: its kept positions are stored in 32 bits.
constexpr int64_t kMaxChunk = int64_t{1} << 32;

template <typename C>
DISTQ_ALWAYS_INLINE bool keep(C v, C center, C threshold) {
  return v != C(0) && !(std::fabs(v - center) < threshold);
}

// Appends a chunk's kept entries through raw pointers: room for a whole group is made at once, so
// each entry costs two stores and no capacity check.
template <typename T>
class Appender {
 public:
  explicit Appender(Selection::Chunk& kept) : kept_(kept) {}

  // Appends the entries of x[base..base+64) whose bits are set; x is the chunk's first element.
  DISTQ_ALWAYS_INLINE void add(const T* x, int64_t base, uint64_t bits) {
    if (kept_.offsets.size() < used_ + kGroup) grow();
    uint32_t* offset = kept_.offsets.data() + used_;
    unsigned char* value = kept_.values.data() + used_ * sizeof(T);
    used_ += static_cast<size_t>(__builtin_popcountll(bits));
    for (; bits != 0; bits &= bits - 1) {
      const int64_t i = base + __builtin_ctzll(bits);
      *offset++ = static_cast<uint32_t>(i);
      std::memcpy(value, x + i, sizeof(T));
      value += sizeof(T);
    }
  }

  // Trims the buffers to what was appended.
  void finish() {
    kept_.offsets.resize(used_);
    kept_.values.resize(used_ * sizeof(T));
  }

 private:
  void grow() {
    const size_t size = std::max({2 * kept_.offsets.size(), kept_.offsets.capacity(), used_ + kGroup});
    kept_.offsets.resize(size);
    kept_.values.resize(size * sizeof(T));
  }

  Selection::Chunk& kept_;
  size_t used_ = 0;
};

// Calls on_group(base, bits) for each group x[base..base+64) (the last one shorter) with kept
// entries, bit j of bits standing for x[base + j].
template <int kBytes, typename T, typename OnGroup>
DISTQ_ALWAYS_INLINE void for_each_kept_group(const T* x, int64_t n, double center, double threshold,
                                             const OnGroup& on_group) {
  using C = typename Compute<T>::type;
  using V = typename Vec<C, kBytes>::type;
  using Mask = typename Vec<C, kBytes>::mask;
  constexpr int64_t kLanes = Vec<C, kBytes>::kLanes;
  const C c = static_cast<C>(center);
  const C t = static_cast<C>(threshold);
  const V cv = V{} + c;
  const V tv = V{} + t;
  int64_t i = 0;
  for (; i + kGroup <= n; i += kGroup) {
    Mask any{};
    for (int64_t j = 0; j < kGroup; j += kLanes) {
      const V v = load_vec<kBytes>(x + i + j);
      any |= (v != 0) & ~(abs_vec(v - cv) < tv);
    }
    if (lane_bits(any) == 0) continue;
    // A group with hits: its kept entries as the set bits of one 64-bit word, no branch per entry.
    uint64_t bits = 0;
    for (int64_t j = 0; j < kGroup; j += kLanes) {
      const V v = load_vec<kBytes>(x + i + j);
      bits |= static_cast<uint64_t>(lane_bits((v != 0) & ~(abs_vec(v - cv) < tv))) << j;
    }
    on_group(i, bits);
  }
  uint64_t bits = 0;
  for (int64_t j = 0; i + j < n; ++j) bits |= static_cast<uint64_t>(keep(load(x + i + j), c, t)) << j;
  if (bits != 0) on_group(i, bits);
}

// Selects among x[0..n), one chunk of the tensor.
template <int kBytes, typename T>
DISTQ_ALWAYS_INLINE void select_body(const T* x, int64_t n, double center, double threshold, Selection::Chunk& kept) {
  Appender<T> appender(kept);
  for_each_kept_group<kBytes>(x, n, center, threshold,
                              [&](int64_t base, uint64_t bits) { appender.add(x, base, bits); });
  appender.finish();
}

// Keeps the chunk's entries still kept at `threshold`, moving each down in place.
template <int kBytes, typename T>
DISTQ_ALWAYS_INLINE void retain_body(Selection::Chunk& kept, double center, double threshold) {
  const auto* values = reinterpret_cast<const T*>(kept.values.data());
  uint32_t* offsets = kept.offsets.data();
  unsigned char* target = kept.values.data();
  size_t left = 0;
  for_each_kept_group<kBytes>(values, static_cast<int64_t>(kept.offsets.size()), center, threshold,
                              [&](int64_t base, uint64_t bits) {
                                for (; bits != 0; bits &= bits - 1) {
                                  const int64_t k = base + __builtin_ctzll(bits);
                                  offsets[left] = offsets[k];
                                  std::memmove(target + left * sizeof(T), values + k, sizeof(T));
                                  ++left;
                                }
                              });
  kept.offsets.resize(left);
  kept.values.resize(left * sizeof(T));
}

template <typename T>
void select_portable(const T* x, int64_t n, double center, double threshold, Selection::Chunk& kept) {
  select_body<kPortableBytes>(x, n, center, threshold, kept);
}

template <typename T>
DISTQ_TARGET_X86_64_V3 void select_x86_64_v3(const T* x, int64_t n, double center, double threshold,
                                              Selection::Chunk& kept) {
  select_body<kX86_64_V3Bytes>(x, n, center, threshold, kept);
}

template <typename T>
void retain_portable(Selection::Chunk& kept, double center, double threshold) {
  retain_body<kPortableBytes, T>(kept, center, threshold);
}

template <typename T>
DISTQ_TARGET_X86_64_V3 void retain_x86_64_v3(Selection::Chunk& kept, double center, double threshold) {
  retain_body<kX86_64_V3Bytes, T>(kept, center, threshold);
}

// The stored element k of a chunk, widened to the compute type.
template <typename T>
DISTQ_ALWAYS_INLINE auto stored(const Selection::Chunk& kept, size_t k) {
  T element;
  std::memcpy(&element, kept.values.data() + k * sizeof(T), sizeof(T));
  return load(&element);
}

// The chunks' excesses, concatenated in chunk order (the order a sequential pass yields, so the
// later fits sum them alike however many threads found them).
Excesses concatenate(const std::vector<Excesses>& parts) {
  std::vector<int64_t> offsets(parts.size() + 1, 0);
  for (size_t i = 0; i < parts.size(); ++i) offsets[i + 1] = offsets[i] + static_cast<int64_t>(parts[i].size());
  Excesses result(static_cast<size_t>(offsets.back()));
  parallel_for(static_cast<int64_t>(parts.size()), offsets.back() >= kParallelGrain, [&](int64_t i) {
    std::copy(parts[i].begin(), parts[i].end(), result.begin() + offsets[i]);
  });
  return result;
}

// The chunk buffers of the last selection destroyed, reused by the next one made: at ratio 0.01
// they hold a few MiB, which glibc hands back to the kernel on every free, and faulting them in
// again cost as much as a third of the selection pass. One set per process (not per thread: the
// TensorFlow op runs on any of its pool's threads), as large as the largest selection it held.
class SpareChunks {
 public:
  std::vector<Selection::Chunk> take() {
    std::lock_guard<std::mutex> lock(mutex_);
    return std::move(chunks_);
  }
  void give(std::vector<Selection::Chunk>& chunks) {
    for (Selection::Chunk& kept : chunks) {
      kept.offsets.clear();
      kept.values.clear();
    }
    std::lock_guard<std::mutex> lock(mutex_);
    if (chunks_.empty()) chunks_ = std::move(chunks);
  }

 private:
  std::mutex mutex_;
  std::vector<Selection::Chunk> chunks_;
};

SpareChunks& spare_chunks() {
  static SpareChunks spare;
  return spare;
}

}  // namespace

Selection::~Selection() {
  if (!chunks_.empty()) spare_chunks().give(chunks_);
}

Selection::Selection(const void* x, int64_t n, DType dtype, double center, double threshold, double expected_share)
    : dtype_(dtype) {
  if (n <= 0) return;
  // Enough chunks that each one's positions fit in 32 bits.
  const int64_t chunks = std::max(chunk_count(n), (n - 1) / kMaxChunk + 1);
  chunks_ = spare_chunks().take();
  chunks_.resize(chunks);
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    const auto* data = static_cast<const T*>(x);
    const bool v3 = cpu_has_x86_64_v3();
    parallel_chunks(n, chunks, [&](int64_t i, int64_t begin, int64_t end) {
      Chunk& kept = chunks_[i];
      kept.begin = begin;
      // A quarter more than expected, so a usual overshoot does not copy the buffers as they grow.
      const auto expected = static_cast<size_t>(1.25 * expected_share * static_cast<double>(end - begin)) + kGroup;
      kept.offsets.reserve(expected);
      kept.values.reserve(expected * sizeof(T));
      if (v3) {
        select_x86_64_v3(data + begin, end - begin, center, threshold, kept);
      } else {
        select_portable(data + begin, end - begin, center, threshold, kept);
      }
    });
  });
  for (const Chunk& kept : chunks_) size_ += static_cast<int64_t>(kept.offsets.size());
}

template <typename Fn>
void Selection::for_each_chunk(const Fn& fn) const {
  std::vector<int64_t> offsets(chunks_.size(), 0);
  for (size_t i = 1; i < chunks_.size(); ++i) {
    offsets[i] = offsets[i - 1] + static_cast<int64_t>(chunks_[i - 1].offsets.size());
  }
  parallel_for(static_cast<int64_t>(chunks_.size()), size_ >= kParallelGrain,
               [&](int64_t i) { fn(chunks_[i], offsets[i]); });
}

template <typename Index>
void Selection::write_indices_as(Index* indices) const {
  for_each_chunk([&](const Chunk& kept, int64_t offset) {
    std::transform(kept.offsets.begin(), kept.offsets.end(), indices + offset,
                   [begin = kept.begin](uint32_t i) { return static_cast<Index>(begin + i); });
  });
}

void Selection::write_indices(int32_t* indices) const { write_indices_as(indices); }
void Selection::write_indices(int64_t* indices) const { write_indices_as(indices); }

void Selection::write_values(void* values) const {
  auto* target = static_cast<unsigned char*>(values);
  const size_t bytes = element_size(dtype_);
  for_each_chunk([&](const Chunk& kept, int64_t offset) {
    std::copy(kept.values.begin(), kept.values.end(), target + offset * bytes);
  });
}

Selection::Tail Selection::tail(double center, double threshold) const {
  std::vector<Excesses> parts(chunks_.size());
  std::vector<int64_t> kept_per_chunk(chunks_.size(), 0);
  dispatch_dtype(dtype_, [&](auto tag) {
    using T = decltype(tag);
    using C = typename Compute<T>::type;
    const C c = static_cast<C>(center);
    const C t = static_cast<C>(threshold);
    parallel_for(static_cast<int64_t>(chunks_.size()), size_ >= kParallelGrain, [&](int64_t i) {
      const Chunk& kept = chunks_[i];
      Excesses& excess = parts[i];
      excess.resize(kept.offsets.size());
      // No branch per entry: each excess is written at the next free slot, which advances only for
      // the kept finite ones (a stage keeps about a third: a branch would mispredict often).
      size_t stays = 0;
      size_t found = 0;
      for (size_t k = 0; k < kept.offsets.size(); ++k) {
        const auto value = stored<T>(kept, k);
        const bool keeps = keep(value, c, t);
        const double over = std::fabs(static_cast<double>(value) - center) - threshold;
        excess[found] = over;
        found += keeps & std::isfinite(over);
        stays += keeps;
      }
      excess.resize(found);
      kept_per_chunk[i] = static_cast<int64_t>(stays);
    });
  });
  Tail result;
  for (const int64_t kept : kept_per_chunk) result.kept += kept;
  result.excesses = concatenate(parts);
  return result;
}

ExcessMoments Selection::tail_moments(double center, double threshold, MomentSet set) const {
  std::vector<ExcessMoments> parts(chunks_.size());
  parallel_for(static_cast<int64_t>(chunks_.size()), size_ >= kParallelGrain, [&](int64_t i) {
    const Chunk& kept = chunks_[i];
    parts[i] = compute_excess_moments(kept.values.data(), static_cast<int64_t>(kept.offsets.size()), dtype_, center,
                                      threshold, set);
  });
  ExcessMoments total;
  for (const ExcessMoments& part : parts) {
    total.moments += part.moments;
    total.kept += part.kept;
  }
  return total;
}

void Selection::retain(double center, double threshold) {
  dispatch_dtype(dtype_, [&](auto tag) {
    using T = decltype(tag);
    const bool v3 = cpu_has_x86_64_v3();
    parallel_for(static_cast<int64_t>(chunks_.size()), size_ >= kParallelGrain, [&](int64_t i) {
      if (v3) {
        retain_x86_64_v3<T>(chunks_[i], center, threshold);
      } else {
        retain_portable<T>(chunks_[i], center, threshold);
      }
    });
  });
  size_ = 0;
  for (const Chunk& kept : chunks_) size_ += static_cast<int64_t>(kept.offsets.size());
}

}  // namespace distq
