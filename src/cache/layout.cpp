// Validation of a paged cache description (spec section 2). Every entry point that reads or writes
// a cache calls this once at the boundary; kernels then trust the geometry.
#include <cstdint>
#include <limits>
#include <string>

#include "smla/cache.h"

namespace smla {
namespace {

std::string field(const char* name, const char* member) {
  return std::string(name ? name : "cache") + "." + member;
}

}  // namespace

Status validate_cache_layout(const CacheLayout& layout, const char* name) {
  if (layout.data == nullptr) {
    return Status::InvalidArgument(field(name, "data") + " must not be null");
  }
  if (reinterpret_cast<uintptr_t>(layout.data) % kPageAlignBytes != 0) {
    return Status::InvalidArgument(field(name, "data") + " must be 16-byte aligned (got address " +
                                   std::to_string(reinterpret_cast<uintptr_t>(layout.data)) + ")");
  }
  const int64_t page_block_size = layout.page_block_size;
  if (page_block_size < 1) {
    return Status::InvalidArgument(field(name, "page_block_size") + " must be >= 1 (got " +
                                   std::to_string(page_block_size) + ")");
  }
  constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();
  // P*584 itself may overflow for absurd P; such a P can never satisfy the stride check anyway.
  if (page_block_size > kInt64Max / kRecordBytes) {
    return Status::InvalidArgument(field(name, "page_block_size") + " is too large (got " +
                                   std::to_string(page_block_size) + ")");
  }
  const int64_t min_stride = page_block_size * kRecordBytes;
  if (layout.page_stride_bytes < min_stride) {
    return Status::InvalidArgument(field(name, "page_stride_bytes") +
                                   " must be >= page_block_size * 584 = " + std::to_string(min_stride) +
                                   " (got " + std::to_string(layout.page_stride_bytes) + ")");
  }
  if (layout.page_stride_bytes % kPageAlignBytes != 0) {
    return Status::InvalidArgument(field(name, "page_stride_bytes") + " must be a multiple of 16 (got " +
                                   std::to_string(layout.page_stride_bytes) + ")");
  }
  if (layout.num_pages < 1) {
    return Status::InvalidArgument(field(name, "num_pages") + " must be >= 1 (got " +
                                   std::to_string(layout.num_pages) + ")");
  }
  if (layout.num_pages > kInt64Max / layout.page_stride_bytes) {
    return Status::InvalidArgument(field(name, "num_pages") + " * page_stride_bytes overflows int64 (" +
                                   std::to_string(layout.num_pages) + " * " +
                                   std::to_string(layout.page_stride_bytes) + ")");
  }
  if (static_cast<uint64_t>(layout.num_pages * layout.page_stride_bytes) >
      std::numeric_limits<uintptr_t>::max() - reinterpret_cast<uintptr_t>(layout.data)) {
    return Status::InvalidArgument(field(name, "num_pages") + " * page_stride_bytes from " +
                                   field(name, "data") + " runs past the end of the address range");
  }
  // num_pages * P < num_pages * stride here, so it cannot overflow; slot ids are int32, so the
  // pool must not hold more slots than an int32 can name.
  const int64_t num_slots = layout.num_pages * page_block_size;
  if (num_slots > std::numeric_limits<int32_t>::max()) {
    return Status::InvalidArgument(field(name, "num_pages") +
                                   " * page_block_size = " + std::to_string(num_slots) +
                                   " exceeds the int32 slot id range (2147483647)");
  }
  return Status::Ok();
}

}  // namespace smla
