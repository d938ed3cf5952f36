// Cache geometry: the one source of truth for record bytes, the footer offset and slot addressing
// (docs/dsv4-sparse-mla.md sections 1-2; "spec section N" in comments means that document). Used by
// the CPU codec, every kernel and the tests. The inline helpers are plain arithmetic, callable from host
// and device code.
#pragma once

#include <cstdint>

#include "smla/status.h"
#include "smla/types.h"

#if defined(__CUDACC__)
#define SMLA_HOST_DEVICE __host__ __device__
#else
#define SMLA_HOST_DEVICE
#endif

namespace smla {

using CacheLayout = smla_cache_layout_t;

inline constexpr int kHeadDim = 512;       // D: dims of q, K and V
inline constexpr int kNopeDim = 448;       // FP8 E4M3 part
inline constexpr int kRopeDim = 64;        // raw BF16 part (dims 448..511)
inline constexpr int kQuantGroup = 64;     // dims per UE8M0 scale
inline constexpr int kNumScaleGroups = 7;  // kNopeDim / kQuantGroup
inline constexpr int kRowBytes = 576;      // 448 fp8 bytes + 64 bf16 values
inline constexpr int kScaleBytes = 8;      // 7 scale bytes + 1 pad byte per token
inline constexpr int kRecordBytes = 584;   // logical size of one token
inline constexpr int kMaxHeads = 128;
inline constexpr int kPageAlignBytes = 16;  // base alignment and stride granularity
// Re-layout target (spec section 6): 64-token pages.
inline constexpr int64_t kRelayoutPageBlockSize = 64;

// Page stride a writer uses: the smallest multiple of 576 that holds P records (P=2: 1728,
// P=64: 37440, P=256: 149760). Readers accept any valid stride.
SMLA_HOST_DEVICE constexpr int64_t writer_page_stride_bytes(int64_t page_block_size) {
  return (page_block_size * kRecordBytes + kRowBytes - 1) / kRowBytes * kRowBytes;
}

SMLA_HOST_DEVICE constexpr int64_t cache_num_slots(const CacheLayout& layout) {
  return layout.num_pages * layout.page_block_size;
}

// Byte offset from the cache base of slot s's 576-byte data row (fp8 part, then bf16 rope).
SMLA_HOST_DEVICE constexpr int64_t slot_row_offset(int64_t page_block_size, int64_t page_stride_bytes,
                                                   int64_t slot) {
  return (slot / page_block_size) * page_stride_bytes + (slot % page_block_size) * kRowBytes;
}

// Byte offset within a page of its scale footer: after the page's P data rows.
SMLA_HOST_DEVICE constexpr int64_t page_footer_offset(int64_t page_block_size) {
  return page_block_size * kRowBytes;
}

// Byte offset from the cache base of slot s's 8-byte footer entry (7 scale bytes, 1 pad byte).
SMLA_HOST_DEVICE constexpr int64_t slot_scale_offset(int64_t page_block_size, int64_t page_stride_bytes,
                                                     int64_t slot) {
  return (slot / page_block_size) * page_stride_bytes + page_footer_offset(page_block_size) +
         (slot % page_block_size) * kScaleBytes;
}

// Dequantization multiplier for a UE8M0 scale byte: 2^(byte-127). Bytes 0 and 255 are never
// written; they decode to 0 so a garbage footer cannot inject Inf/NaN (spec section 3). Building
// the float from its bits makes host and device agree exactly.
SMLA_HOST_DEVICE inline float scale_from_ue8m0(uint8_t byte) {
  const uint32_t bits = (byte == 255u) ? 0u : (static_cast<uint32_t>(byte) << 23);
  float value;
  __builtin_memcpy(&value, &bits, sizeof(value));
  return value;
}

// Checks P >= 1, stride >= P*584 and a multiple of 16, 16-byte aligned non-null base,
// num_pages >= 1 and no int64 overflow of the pool size. `name` is used in the message.
Status validate_cache_layout(const CacheLayout& layout, const char* name);

// A layout with the writer's stride for `num_pages` pages of P tokens over `data`.
inline CacheLayout make_cache_layout(void* data, int64_t page_block_size, int64_t num_pages) {
  return CacheLayout{data, page_block_size, writer_page_stride_bytes(page_block_size), num_pages};
}

// Bytes a pool of `num_pages` pages needs at a given stride.
inline int64_t cache_pool_bytes(const CacheLayout& layout) {
  return layout.num_pages * layout.page_stride_bytes;
}

}  // namespace smla
