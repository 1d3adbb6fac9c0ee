#include "select_cuda.h"

#include <thrust/iterator/counting_iterator.h>
#include <thrust/iterator/tabulate_output_iterator.h>
#include <thrust/iterator/transform_iterator.h>

#include "../macros.h"
#include "moments_cuda.h"
#include "sample_cuda.h"

namespace distq::cuda {

namespace {

// select.cpp's keep(): nonzero and not closer to the centre than the threshold, in the compute
// type, so NaN and Inf are always kept.
template <typename C>
DISTQ_HOST_DEVICE inline bool keeps(C v, const double* center_threshold) {
  const C d = v - static_cast<C>(center_threshold[0]);
  return v != C(0) && !((d < C(0) ? -d : d) < static_cast<C>(center_threshold[1]));
}

template <typename T>
struct Beyond {
  const T* x;
  const double* center_threshold;
  const bool* condition;

  DISTQ_HOST_DEVICE bool operator()(int64_t i) const {
    if (condition != nullptr && !*condition) return false;
    return keeps(load(x + i), center_threshold);
  }
};

// Writes the j-th entry kept, source position i, where there is room for it.
template <typename T, typename Index>
struct WriteEntry {
  const T* source_values;
  const Index* source_indices;  // null: the position is the index
  Index* indices;
  T* values;
  int64_t capacity;

  DISTQ_HOST_DEVICE void operator()(std::ptrdiff_t j, int64_t i) const {
    if (j >= capacity) return;
    indices[j] = source_indices != nullptr ? source_indices[i] : static_cast<Index>(i);
    values[j] = source_values[i];
  }
};

// Entry j of a selection, still kept at center_threshold (and j below the selection's count). Passes
// over a selection run over its capacity, since only the device knows its count.
template <typename T>
struct StillKept {
  const T* values;
  const int64_t* count;
  const double* center_threshold;

  DISTQ_HOST_DEVICE bool operator()(int64_t j) const { return j < *count && keeps(load(values + j), center_threshold); }
  // |x - center| - threshold in double, as Selection::tail computes it.
  DISTQ_HOST_DEVICE double excess(int64_t j) const {
    return fabs(static_cast<double>(load(values + j)) - center_threshold[0]) - center_threshold[1];
  }
};

template <typename T, MomentSet kSet>
struct EntryExcessMoments {
  StillKept<T> kept;

  DISTQ_HOST_DEVICE ExcessMoments operator()(int64_t j) const {
    ExcessMoments result;
    if (!kept(j)) return result;
    result.kept = 1;
    result.moments = moments_of_value<kSet>(kept.excess(j), 0.0);
    return result;
  }
};

template <typename T, MomentSet kSet>
void excess_moments_as(const Device& device, const Entries& entries, const double* center_threshold,
                       ExcessMoments* out) {
  const StillKept<T> kept{static_cast<const T*>(entries.values), entries.count, center_threshold};
  const auto sums =
      thrust::make_transform_iterator(thrust::counting_iterator<int64_t>(0), EntryExcessMoments<T, kSet>{kept});
  device.reduce_into(sums, entries.capacity, out, ExcessMoments{}, AddExcessMoments{});
}

// The finite excesses of the entries still kept, in order (Selection::tail's excesses).
template <typename T>
struct FiniteExcess {
  StillKept<T> kept;
  DISTQ_HOST_DEVICE bool operator()(int64_t j) const { return kept(j) && is_finite(kept.excess(j)); }
};

template <typename T>
struct WriteExcess {
  StillKept<T> kept;
  double* excesses;
  DISTQ_HOST_DEVICE void operator()(std::ptrdiff_t j, int64_t i) const { excesses[j] = kept.excess(i); }
};

struct ReadDouble {
  const double* values;
  DISTQ_HOST_DEVICE double operator()(int64_t i) const { return values[i]; }
};

template <typename Fn>
void with_index_type(const Entries& entries, const Fn& fn) {
  if (entries.wide_indices) {
    fn(int64_t{});
  } else {
    fn(int32_t{});
  }
}

}  // namespace

void select_beyond(const Device& device, const void* x, int64_t n, DType dtype, const double* center_threshold,
                   const bool* condition, const Entries& out) {
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    const auto* data = static_cast<const T*>(x);
    with_index_type(out, [&](auto index_tag) {
      using Index = decltype(index_tag);
      const WriteEntry<T, Index> write{data, nullptr, static_cast<Index*>(out.indices), static_cast<T*>(out.values),
                                       out.capacity};
      device.select_into(thrust::counting_iterator<int64_t>(0), n, thrust::make_tabulate_output_iterator(write),
                         out.count, Beyond<T>{data, center_threshold, condition});
    });
  });
}

void excess_moments(const Device& device, const Entries& entries, DType dtype, const double* center_threshold,
                    MomentSet set, ExcessMoments* out) {
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    switch (set) {
      case MomentSet::kSecond: return excess_moments_as<T, MomentSet::kSecond>(device, entries, center_threshold, out);
      case MomentSet::kFourth: return excess_moments_as<T, MomentSet::kFourth>(device, entries, center_threshold, out);
      case MomentSet::kAbsolute:
        return excess_moments_as<T, MomentSet::kAbsolute>(device, entries, center_threshold, out);
      case MomentSet::kLogAbsolute:
        return excess_moments_as<T, MomentSet::kLogAbsolute>(device, entries, center_threshold, out);
    }
  });
}

void excess_median(const Device& device, const Entries& entries, DType dtype, const double* center_threshold,
                   int64_t sample_size, double* median) {
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    const StillKept<T> kept{static_cast<const T*>(entries.values), entries.count, center_threshold};
    Scratch<double> excesses(device, entries.capacity);
    Scratch<int64_t> count(device, 1);
    device.select_into(thrust::counting_iterator<int64_t>(0), entries.capacity,
                       thrust::make_tabulate_output_iterator(WriteExcess<T>{kept, excesses.data()}), count.data(),
                       FiniteExcess<T>{kept});
    OrderStatisticsOut out;
    out.median = median;
    const int64_t size = entries.capacity < sample_size ? entries.capacity : sample_size;
    sample_order_statistics(device, ReadDouble{excesses.data()}, 0, count.data(), size, out);
  });
}

void retain(const Device& device, const Entries& entries, DType dtype, const double* center_threshold,
            const Entries& out) {
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    with_index_type(out, [&](auto index_tag) {
      using Index = decltype(index_tag);
      const auto* values = static_cast<const T*>(entries.values);
      const WriteEntry<T, Index> write{values, static_cast<const Index*>(entries.indices),
                                       static_cast<Index*>(out.indices), static_cast<T*>(out.values), out.capacity};
      device.select_into(thrust::counting_iterator<int64_t>(0), entries.capacity,
                         thrust::make_tabulate_output_iterator(write), out.count,
                         StillKept<T>{values, entries.count, center_threshold});
    });
  });
}

}  // namespace distq::cuda
