// Byte ranges of strided arguments (src/common/byte_range.h): exact extents, overflow caught and named, and
// the rule that an output shares memory with no other argument.
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <string>

#include "common/byte_range.h"

namespace smla::detail {
namespace {

const void* address(uintptr_t value) { return reinterpret_cast<const void*>(value); }

void expect_invalid_naming(const Status& status, const std::string& needle) {
  EXPECT_EQ(status.code(), SMLA_STATUS_INVALID_ARGUMENT) << status.message();
  EXPECT_NE(status.message().find(needle), std::string::npos) << status.message();
}

TEST(ByteRange, StridedRangeEndsOnePastTheLastElement) {
  ByteRange range;
  // [2, 3, 4] floats at strides (40, 12, 1): last element 40 + 24 + 3 = 67, so 68 floats = 272 bytes.
  ASSERT_TRUE(
      strided_byte_range("t", address(0x1000), {{"b", 2, 40}, {"s", 3, 12}, {"d", 4, 1}}, 4, &range).ok());
  EXPECT_EQ(range.begin, 0x1000u);
  EXPECT_EQ(range.end, 0x1000u + 272);
  // Extents of 1 add nothing whatever their stride; stride 0 (a broadcast) adds nothing.
  ASSERT_TRUE(strided_byte_range("t", address(0x1000),
                                 {{"b", 1, std::numeric_limits<int64_t>::max()}, {"s", 5, 0}}, 2, &range)
                  .ok());
  EXPECT_EQ(range.end - range.begin, 2u);
}

TEST(ByteRange, NullDataIsAnEmptyRangeThatOverlapsNothing) {
  ByteRange absent, buffer;
  ASSERT_TRUE(strided_byte_range("absent", nullptr, {{"b", 8, 1 << 20}}, 4, &absent).ok());
  EXPECT_TRUE(absent.empty());
  ASSERT_TRUE(sized_byte_range("buffer", address(0), 0, &buffer).ok());
  EXPECT_TRUE(buffer.empty());
  ASSERT_TRUE(sized_byte_range("buffer", address(0x1000), 64, &buffer).ok());
  EXPECT_FALSE(absent.overlaps(buffer));
  EXPECT_FALSE(buffer.overlaps(absent));
}

TEST(ByteRange, OverflowingStridesAreNamed) {
  ByteRange range;
  // The element offset itself overflows int64.
  expect_invalid_naming(
      strided_byte_range("args.out", address(0x1000),
                         {{"args.out_stride_batch", 2, 8},
                          {"args.out_stride_head", 2, std::numeric_limits<int64_t>::max() - 7}},
                         2, &range),
      "args.out_stride_head = 9223372036854775800 (extent 2) puts args.out's elements past the end");
  // The offset fits, its bytes do not.
  expect_invalid_naming(strided_byte_range("args.lse", address(0x1000),
                                           {{"args.lse_stride_head", 4, (int64_t{1} << 62) - 1}}, 4, &range),
                        "args.lse_stride_head");
  // The sum of two fitting terms overflows: the second term's stride is named.
  expect_invalid_naming(strided_byte_range("args.indices", address(0x1000),
                                           {{"args.indices_stride_batch", 2, int64_t{1} << 60},
                                            {"args.indices_stride_seq", 2, int64_t{1} << 60}},
                                           4, &range),
                        "args.indices_stride_seq");
}

TEST(ByteRange, RangesThatWrapTheAddressSpaceAreRejected) {
  ByteRange range;
  const uintptr_t near_top = std::numeric_limits<uintptr_t>::max() - 15;
  ASSERT_TRUE(sized_byte_range("x", address(near_top), 15, &range).ok());
  expect_invalid_naming(sized_byte_range("x", address(near_top), 17, &range), "x's elements past the end");
  expect_invalid_naming(strided_byte_range("y", address(near_top), {{"y_stride", 5, 4}}, 1, &range),
                        "y_stride");
}

TEST(ByteRange, OutputsMayNotOverlapAnythingInputsMay) {
  const ByteRange out{"args.out", 100, 200}, lse{"args.lse", 200, 240}, q{"args.q", 0, 100},
      indices{"args.indices", 50, 150}, cache{"args.main_cache.data", 300, 400};
  EXPECT_TRUE(check_outputs_disjoint({out, lse}, {q, cache}).ok());      // touching is not overlapping
  EXPECT_TRUE(check_outputs_disjoint({lse}, {q, indices, cache}).ok());  // q and indices overlap: both read
  expect_invalid_naming(check_outputs_disjoint({out, lse}, {q, indices, cache}),
                        "args.out [0x64, 0xc8) overlaps args.indices [0x32, 0x96)");
  const ByteRange inner_lse{"args.lse", 120, 130};
  expect_invalid_naming(check_outputs_disjoint({out, inner_lse}, {}),
                        "args.out [0x64, 0xc8) overlaps args.lse");
  const ByteRange workspace{"workspace", 390, 500};
  expect_invalid_naming(check_outputs_disjoint({out, lse, workspace}, {q, cache}),
                        "workspace [0x186, 0x1f4) overlaps args.main_cache.data");
}

}  // namespace
}  // namespace smla::detail
