// Division of a non-negative 32-bit slot id by a page size fixed for the whole call, as one widening
// multiply and a shift (Granlund and Montgomery, "Division by invariant integers using multiplication",
// 1994). The decode kernels split every gathered slot into (page, row in page); a run-time integer
// division is a ~20-instruction sequence (64-bit: a call of ~60) on the gather's critical path, once per
// token and thread. The multiplier is computed on the host when the call's parameters are built.
#pragma once

#include <cstdint>

#include "smla/cache.h"  // SMLA_HOST_DEVICE

namespace smla::detail {

struct FastDivisor {
  uint32_t divisor = 1;     // min(d, 2^31): slots are < 2^31, so a larger d gives the same quotients
  uint32_t multiplier = 0;  // ceil(2^shift / divisor)
  uint32_t shift = 0;       // 31 + ceil(log2(divisor))

  // d >= 1 (validated page sizes). For l = ceil(log2 d), shift = 31 + l and m = ceil(2^shift / d) < 2^32,
  // the error e = m * d - 2^shift < d <= 2^l, so e * n < 2^shift for every n < 2^31 and
  // floor(m * n / 2^shift) = floor(n / d) exactly.
  static constexpr FastDivisor make(int64_t d) {
    FastDivisor f;
    f.divisor = d >= (int64_t{1} << 31) ? (uint32_t{1} << 31) : static_cast<uint32_t>(d < 1 ? 1 : d);
    uint32_t log2_ceil = 0;
    while ((uint64_t{1} << log2_ceil) < f.divisor) ++log2_ceil;
    f.shift = 31 + log2_ceil;
    f.multiplier = static_cast<uint32_t>(((uint64_t{1} << f.shift) + f.divisor - 1) / f.divisor);
    return f;
  }

  // n / divisor for 0 <= n < 2^31.
  SMLA_HOST_DEVICE constexpr uint32_t divide(uint32_t n) const {
    return static_cast<uint32_t>((static_cast<uint64_t>(n) * multiplier) >> shift);
  }
};

}  // namespace smla::detail
