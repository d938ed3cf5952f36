// FastDivisor (src/common/fast_divisor.h): the decode kernels' slot -> page split. It must equal integer
// division for every slot the kernels see (0 <= slot < 2^31) and every valid page size, including page
// sizes past 2^31 (clamped) and the sizes the tests and engines use (1, 2, 61, 64, 256).
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <vector>

#include "common/decode_params.h"
#include "common/fast_divisor.h"

namespace smla::detail {
namespace {

constexpr uint32_t kMaxSlot = 0x7fffffffu;  // slots are non-negative int32

// Quotient and remainder as the kernels use them (remainder = n - q * divisor).
void expect_exact(int64_t d, uint32_t n) {
  const FastDivisor f = FastDivisor::make(d);
  const uint32_t q = f.divide(n);
  ASSERT_EQ(int64_t{q}, int64_t{n} / d) << "d=" << d << " n=" << n;
  ASSERT_EQ(int64_t{n} - int64_t{q} * f.divisor, int64_t{n} % d) << "d=" << d << " n=" << n;
}

TEST(FastDivisor, SmallDivisorsExhaustiveOverLowSlots) {
  for (int64_t d = 1; d <= 300; ++d) {
    for (uint32_t n = 0; n < 5000; ++n) expect_exact(d, n);
  }
}

TEST(FastDivisor, EdgesOfTheSlotRangeForManyDivisors) {
  std::vector<int64_t> divisors = {1, 2, 3, 7, 61, 64, 255, 256, 257, 1000, 4095, 65535, 65536, 65537};
  for (int bit = 2; bit <= 31; ++bit) {
    const int64_t p = int64_t{1} << bit;
    divisors.insert(divisors.end(), {p - 1, p, p + 1});
  }
  divisors.insert(divisors.end(), {int64_t{1} << 32, (int64_t{1} << 40) + 3, int64_t{1} << 62});
  for (int64_t d : divisors) {
    for (uint32_t n : {0u, 1u, kMaxSlot, kMaxSlot - 1, kMaxSlot / 2, 0x40000000u}) expect_exact(d, n);
    // Around every multiple of d near the top of the range, where a multiplier error would show first.
    if (d <= kMaxSlot) {
      const uint32_t top = static_cast<uint32_t>((kMaxSlot / d) * d);
      for (int64_t k = 0; k < 4 && int64_t{top} - k * d >= 0; ++k) {
        const uint32_t m = static_cast<uint32_t>(int64_t{top} - k * d);
        expect_exact(d, m);
        if (m > 0) expect_exact(d, m - 1);
        if (m < kMaxSlot) expect_exact(d, m + 1);
      }
    }
  }
}

TEST(FastDivisor, RandomDivisorsAndSlots) {
  std::mt19937_64 rng(20261126);
  std::uniform_int_distribution<uint32_t> slot(0, kMaxSlot);
  for (int i = 0; i < 200000; ++i) {
    const int64_t d = 1 + static_cast<int64_t>(rng() % (i % 2 == 0 ? 512 : kMaxSlot));
    expect_exact(d, slot(rng));
  }
}

TEST(FastDivisor, CacheParamsDefaultIsDivisionByOne) {
  const CacheParams cache;
  EXPECT_EQ(cache.page_of_slot.divisor, 1u);
  EXPECT_EQ(cache.page_of_slot.divide(kMaxSlot), kMaxSlot);
}

}  // namespace
}  // namespace smla::detail
