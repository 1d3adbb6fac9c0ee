// One pass that picks the entries beyond the threshold and keeps them: their indices and elements.
#pragma once

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "dtype.h"
#include "moments.h"

namespace distq {

// Leaves the elements a resize adds uninitialised: for buffers written right after they grow.
template <typename T>
struct UninitializedAllocator : std::allocator<T> {
  template <typename U>
  struct rebind {
    using other = UninitializedAllocator<U>;
  };
  template <typename U>
  void construct(U* p) noexcept {
    ::new (static_cast<void*>(p)) U;
  }
  template <typename U, typename... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
};

template <typename T>
using Buffer = std::vector<T, UninitializedAllocator<T>>;

// Excesses over a threshold: the data of a later peaks-over-threshold stage.
using Excesses = Buffer<double>;

// The entries x[i] with x[i] != 0 and !(|x[i] - center| < threshold), in index order.
// The comparison runs in the compute type (float, or double for float64 tensors), with center and
// threshold rounded to it. Written as "not below" so NaN and Inf are always kept, as dense
// averaging would carry them; zeros are never kept, since they add nothing to the sum.
class Selection {
 public:
  // expected_share: the share of the entries the caller expects kept, to size the buffers once.
  Selection(const void* x, int64_t n, DType dtype, double center, double threshold, double expected_share = 0);
  // Hands the chunk buffers to the next selection made (see select.cpp).
  ~Selection();
  Selection(Selection&&) = default;
  Selection& operator=(Selection&&) = default;
  Selection(const Selection&) = default;
  Selection& operator=(const Selection&) = default;

  int64_t size() const { return size_; }

  // Writes the flattened indices (int32 or int64) and the selected elements, bit for bit in the
  // tensor's dtype. indices and values must hold size() entries each.
  void write_indices(int32_t* indices) const;
  void write_indices(int64_t* indices) const;
  void write_values(void* values) const;

  // What a later peaks-over-threshold stage fits: the entries still selected at `threshold` (at
  // least the selection's; compared in the compute type, as retain() does), how many they are
  // (NaN and Inf included), and |x[i] - center| - threshold over the finite ones. tail() writes
  // the excesses out, for the families that need their order; tail_moments() only sums them.
  struct Tail {
    int64_t kept = 0;
    Excesses excesses;
  };
  Tail tail(double center, double threshold) const;
  ExcessMoments tail_moments(double center, double threshold, MomentSet set) const;
  // Drops the selected entries with |x[i] - center| < threshold (compared in the compute type);
  // with a higher threshold than the selection's, the result is the selection at that threshold.
  void retain(double center, double threshold);

  // What one chunk of the tensor kept, in index order: positions from the chunk's first index
  // (32 bits: a chunk holds at most 2^32 entries) and the elements' bytes (element_size(dtype)
  // each). The elements are copied while the pass has them in cache, so the later stages and the
  // output never read the tensor again.
  struct Chunk {
    int64_t begin = 0;
    Buffer<uint32_t> offsets;
    Buffer<unsigned char> values;
  };

 private:
  template <typename Index>
  void write_indices_as(Index* indices) const;
  // Runs fn(chunk, offset) over the chunks, offset being the number kept by the chunks before it.
  template <typename Fn>
  void for_each_chunk(const Fn& fn) const;

  DType dtype_;
  std::vector<Chunk> chunks_;  // one per chunk of the tensor, in order: one read, no full-size mask
  int64_t size_ = 0;
};

}  // namespace distq
