// Cache geometry (spec section 2): writer strides, slot addressing and every validation error path.
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <string>

#include "smla/cache.h"
#include "smla/status.h"

namespace smla {
namespace {

TEST(CacheGeometry, WriterStridesMatchTheSpec) {
  EXPECT_EQ(writer_page_stride_bytes(2), 1728);
  EXPECT_EQ(writer_page_stride_bytes(64), 37440);
  EXPECT_EQ(writer_page_stride_bytes(256), 149760);
  EXPECT_EQ(writer_page_stride_bytes(1), 1152);  // 584 rounded up to a multiple of 576
  for (int64_t p : {1, 2, 3, 7, 61, 64, 100, 256, 1000}) {
    const int64_t stride = writer_page_stride_bytes(p);
    EXPECT_GE(stride, p * kRecordBytes) << "P=" << p;
    EXPECT_LT(stride - p * kRecordBytes, kRowBytes) << "P=" << p << ": not the smallest multiple";
    EXPECT_EQ(stride % kRowBytes, 0) << "P=" << p;
    EXPECT_EQ(stride % kPageAlignBytes, 0) << "P=" << p;  // 576 = 36 * 16
  }
}

TEST(CacheGeometry, SlotOffsetsFollowTheFooterLayout) {
  for (int64_t p : {1, 2, 3, 64, 256}) {
    for (int64_t pad : {0, 16, 4096}) {
      const int64_t stride = writer_page_stride_bytes(p) + pad;
      for (int64_t slot : {int64_t{0}, p - 1, p, 2 * p + p / 2, 5 * p + p - 1}) {
        const int64_t page = slot / p, r = slot % p;
        EXPECT_EQ(slot_row_offset(p, stride, slot), page * stride + r * 576) << "P=" << p << " slot " << slot;
        EXPECT_EQ(slot_scale_offset(p, stride, slot), page * stride + p * 576 + r * 8)
            << "P=" << p << " slot " << slot;
        // The record never spills into the next page.
        EXPECT_LE(slot_scale_offset(p, stride, slot) + kScaleBytes, (page + 1) * stride);
      }
    }
  }
  // Concrete numbers for the two engine page sizes.
  EXPECT_EQ(slot_row_offset(64, 37440, 130), 2 * 37440 + 2 * 576);
  EXPECT_EQ(slot_scale_offset(64, 37440, 130), 2 * 37440 + 36864 + 16);
  EXPECT_EQ(slot_scale_offset(2, 1728, 3), 1728 + 1152 + 8);
}

TEST(CacheGeometry, NumSlotsAndPoolBytes) {
  alignas(16) static uint8_t storage[16];
  const CacheLayout layout = make_cache_layout(storage, 64, 10);
  EXPECT_EQ(layout.page_stride_bytes, 37440);
  EXPECT_EQ(cache_num_slots(layout), 640);
  EXPECT_EQ(cache_pool_bytes(layout), 374400);
}

TEST(CacheGeometry, ScaleBytesDecodeToPowersOfTwo) {
  EXPECT_EQ(scale_from_ue8m0(127), 1.0f);
  EXPECT_EQ(scale_from_ue8m0(128), 2.0f);
  EXPECT_EQ(scale_from_ue8m0(100), 0x1p-27f);
  EXPECT_EQ(scale_from_ue8m0(254), 0x1p127f);
  EXPECT_EQ(scale_from_ue8m0(1), 0x1p-126f);
  // Reserved bytes must not produce Inf/NaN.
  EXPECT_EQ(scale_from_ue8m0(0), 0.0f);
  EXPECT_EQ(scale_from_ue8m0(255), 0.0f);
}

// ---- validate_cache_layout: one test per condition, each checking the message names the field.

alignas(16) uint8_t g_page_storage[64];

CacheLayout valid_layout() { return CacheLayout{g_page_storage, 64, 37440, 4}; }

void expect_invalid(const CacheLayout& layout, const std::string& field_in_message) {
  const Status status = validate_cache_layout(layout, "main_cache");
  EXPECT_EQ(status.code(), SMLA_STATUS_INVALID_ARGUMENT) << status.message();
  EXPECT_NE(status.message().find(field_in_message), std::string::npos)
      << "message \"" << status.message() << "\" does not name " << field_in_message;
}

TEST(ValidateCacheLayout, AcceptsValidLayouts) {
  EXPECT_TRUE(validate_cache_layout(valid_layout(), "main_cache").ok());
  // Any stride >= P*584 that is a multiple of 16 is legal, not only the writer's.
  CacheLayout tight = valid_layout();
  tight.page_stride_bytes = 64 * 584;  // 37376 = 2336 * 16
  EXPECT_TRUE(validate_cache_layout(tight, "main_cache").ok());
  CacheLayout p1 = CacheLayout{g_page_storage, 1, 592, 1};
  EXPECT_TRUE(validate_cache_layout(p1, "extra_cache").ok());
  // Exactly INT32_MAX + 1 slots would be too many; INT32_MAX itself fits (P=1).
  CacheLayout largest = CacheLayout{g_page_storage, 1, 592, std::numeric_limits<int32_t>::max()};
  EXPECT_TRUE(validate_cache_layout(largest, "main_cache").ok());
}

TEST(ValidateCacheLayout, RejectsNullData) {
  CacheLayout layout = valid_layout();
  layout.data = nullptr;
  expect_invalid(layout, "main_cache.data");
}

TEST(ValidateCacheLayout, RejectsMisalignedData) {
  CacheLayout layout = valid_layout();
  layout.data = g_page_storage + 8;
  expect_invalid(layout, "main_cache.data");
  expect_invalid(layout, "16-byte aligned");
}

TEST(ValidateCacheLayout, RejectsZeroOrNegativePageBlockSize) {
  CacheLayout layout = valid_layout();
  layout.page_block_size = 0;
  expect_invalid(layout, "main_cache.page_block_size");
  layout.page_block_size = -64;
  expect_invalid(layout, "main_cache.page_block_size");
}

TEST(ValidateCacheLayout, RejectsAbsurdPageBlockSizeWithoutOverflow) {
  CacheLayout layout = valid_layout();
  layout.page_block_size = std::numeric_limits<int64_t>::max() / 2;
  expect_invalid(layout, "main_cache.page_block_size");
}

TEST(ValidateCacheLayout, RejectsStrideSmallerThanRecords) {
  CacheLayout layout = valid_layout();
  layout.page_stride_bytes = 64 * 576;  // rows only, no room for the footer
  expect_invalid(layout, "main_cache.page_stride_bytes");
  expect_invalid(layout, "37376");  // the required minimum is stated
}

TEST(ValidateCacheLayout, RejectsStrideNotMultipleOf16) {
  CacheLayout layout = valid_layout();
  layout.page_stride_bytes = 37441;
  const Status status = validate_cache_layout(layout, "main_cache");
  EXPECT_EQ(status.code(), SMLA_STATUS_INVALID_ARGUMENT);
  EXPECT_EQ(status.message(), "main_cache.page_stride_bytes must be a multiple of 16 (got 37441)");
}

TEST(ValidateCacheLayout, RejectsZeroOrNegativeNumPages) {
  CacheLayout layout = valid_layout();
  layout.num_pages = 0;
  expect_invalid(layout, "main_cache.num_pages");
  layout.num_pages = -3;
  expect_invalid(layout, "main_cache.num_pages");
}

TEST(ValidateCacheLayout, RejectsPoolBytesOverflow) {
  CacheLayout layout = valid_layout();
  layout.num_pages = std::numeric_limits<int64_t>::max() / 37440 + 1;
  expect_invalid(layout, "main_cache.num_pages");
  expect_invalid(layout, "overflows int64");
}

TEST(ValidateCacheLayout, RejectsMoreSlotsThanInt32Ids) {
  CacheLayout layout = valid_layout();
  layout.num_pages = (int64_t{1} << 31) / 64;  // exactly 2^31 slots
  expect_invalid(layout, "main_cache.num_pages");
  expect_invalid(layout, "int32");
}

TEST(ValidateCacheLayout, UsesTheGivenName) {
  CacheLayout layout = valid_layout();
  layout.page_block_size = 0;
  const Status status = validate_cache_layout(layout, "extra_cache");
  EXPECT_EQ(status.message().rfind("extra_cache.page_block_size", 0), 0u) << status.message();
}

TEST(StatusNames, EveryCodeHasAName) {
  EXPECT_STREQ(status_code_name(SMLA_STATUS_OK), "ok");
  EXPECT_STREQ(status_code_name(SMLA_STATUS_INVALID_ARGUMENT), "invalid argument");
  EXPECT_STREQ(status_code_name(SMLA_STATUS_UNSUPPORTED), "unsupported");
  EXPECT_STREQ(status_code_name(SMLA_STATUS_NO_DEVICE), "no device");
  EXPECT_STREQ(status_code_name(SMLA_STATUS_CUDA_ERROR), "cuda error");
  EXPECT_STREQ(status_code_name(SMLA_STATUS_DEVICE_CHECK_FAILED), "device check failed");
  EXPECT_STREQ(status_code_name(SMLA_STATUS_INTERNAL), "internal error");
  EXPECT_STREQ(status_code_name(static_cast<smla_status_t>(42)), "unknown status");
}

}  // namespace
}  // namespace smla
