// Public page re-layout entry points (spec section 6): all validation happens here, once; the CUDA
// launcher (src/cuda/relayout) trusts what it receives.
#include "smla/relayout.h"

#include <cuda_runtime.h>

#include <cstdint>
#include <limits>
#include <string>

#include "common/backend_entry.h"
#include "common/byte_range.h"
#include "common/cuda_ops.h"

namespace smla {
namespace {

constexpr int64_t kRelayoutSourcePageBlockSize = 256;
constexpr int64_t kSubPagesPerSourcePage = kRelayoutSourcePageBlockSize / kRelayoutPageBlockSize;  // 4
std::string set_field(int set_index, const char* member) {
  return "index_sets[" + std::to_string(set_index) + "]." + member;
}

Status validate_geometry(const CacheLayout& source, const CacheLayout& destination) {
  SMLA_RETURN_IF_ERROR(validate_relayout_source(source));
  SMLA_RETURN_IF_ERROR(validate_cache_layout(destination, "destination"));
  if (destination.page_block_size != kRelayoutPageBlockSize) {
    return Status::InvalidArgument("destination.page_block_size must be 64 (got " +
                                   std::to_string(destination.page_block_size) + ")");
  }
  // validate_cache_layout already enforces stride >= 64*584 and a multiple of 16; repeated here so the
  // relayout contract is readable in one place.
  if (destination.page_stride_bytes < kRelayoutPageBlockSize * kRecordBytes ||
      destination.page_stride_bytes % kPageAlignBytes != 0) {
    return Status::InvalidArgument(
        "destination.page_stride_bytes must be >= 37376 and a multiple of 16 (got " +
        std::to_string(destination.page_stride_bytes) + ")");
  }
  if (source.num_pages > std::numeric_limits<int64_t>::max() / kSubPagesPerSourcePage ||
      destination.num_pages != source.num_pages * kSubPagesPerSourcePage) {
    return Status::InvalidArgument("destination.num_pages must be 4 * source.num_pages = " +
                                   std::to_string(source.num_pages * kSubPagesPerSourcePage) + " (got " +
                                   std::to_string(destination.num_pages) + ")");
  }
  // Overlapping pools (the copy reads the source while writing the destination) are refused with the other
  // aliasing checks, in validate_no_aliasing.
  return Status::Ok();
}

Status validate_index_sets(const RelayoutIndexSet* index_sets, int num_index_sets) {
  if (num_index_sets < 0 || num_index_sets > kMaxRelayoutIndexSets) {
    return Status::InvalidArgument("num_index_sets must be in [0, 8] (got " + std::to_string(num_index_sets) +
                                   ")");
  }
  if (num_index_sets > 0 && index_sets == nullptr) {
    return Status::InvalidArgument("index_sets must not be null when num_index_sets > 0");
  }
  for (int i = 0; i < num_index_sets; ++i) {
    const RelayoutIndexSet& set = index_sets[i];
    if (set.width < 0) {
      return Status::InvalidArgument(set_field(i, "width") + " must be >= 0 (got " +
                                     std::to_string(set.width) + ")");
    }
    if (set.row_stride < set.width) {
      return Status::InvalidArgument(set_field(i, "row_stride") +
                                     " must be >= width = " + std::to_string(set.width) + " (got " +
                                     std::to_string(set.row_stride) + ")");
    }
    if (set.num_rows < 0) {
      return Status::InvalidArgument(set_field(i, "num_rows") + " must be >= 0 (got " +
                                     std::to_string(set.num_rows) + ")");
    }
    if (set.num_rows > 0 && set.width > 0) {
      if (set.indices == nullptr) {
        return Status::InvalidArgument(set_field(i, "indices") +
                                       " must not be null when num_rows * width > 0");
      }
      // The last element read is (num_rows - 1) * row_stride + width - 1; its byte offset must fit int64.
      constexpr int64_t kMaxElements =
          std::numeric_limits<int64_t>::max() / static_cast<int64_t>(sizeof(int32_t));
      if ((set.num_rows - 1) > (kMaxElements - set.width) / set.row_stride) {
        return Status::InvalidArgument(set_field(i, "num_rows") +
                                       " * row_stride overflows the address range");
      }
    }
  }
  return Status::Ok();
}

// The copy writes the destination and (touched-pages mode) the workspace's marks while it reads the source
// and the index sets: no written buffer may share memory with another argument. Geometry and index sets
// are valid here (their byte offsets fit int64).
Status validate_no_aliasing(const CacheLayout& source, const CacheLayout& destination,
                            const RelayoutIndexSet* index_sets, int num_index_sets, const void* workspace) {
  static constexpr const char* kIndexSetNames[kMaxRelayoutIndexSets] = {
      "index_sets[0].indices", "index_sets[1].indices", "index_sets[2].indices", "index_sets[3].indices",
      "index_sets[4].indices", "index_sets[5].indices", "index_sets[6].indices", "index_sets[7].indices"};
  detail::ByteRange outputs[2], inputs[1 + kMaxRelayoutIndexSets];
  SMLA_RETURN_IF_ERROR(detail::sized_byte_range("destination.data", destination.data,
                                                cache_pool_bytes(destination), &outputs[0]));
  SMLA_RETURN_IF_ERROR(detail::sized_byte_range("workspace", num_index_sets > 0 ? workspace : nullptr,
                                                relayout_workspace_bytes(source), &outputs[1]));
  SMLA_RETURN_IF_ERROR(
      detail::sized_byte_range("source.data", source.data, cache_pool_bytes(source), &inputs[0]));
  for (int i = 0; i < num_index_sets; ++i) {
    const RelayoutIndexSet& set = index_sets[i];
    const bool empty = set.num_rows == 0 || set.width == 0;
    SMLA_RETURN_IF_ERROR(
        detail::strided_byte_range(kIndexSetNames[i], empty ? nullptr : set.indices,
                                   {{"row_stride", set.num_rows, set.row_stride}, {"width", set.width, 1}},
                                   sizeof(int32_t), &inputs[1 + i]));
  }
  return detail::check_outputs_disjoint(outputs, 2, inputs, 1 + static_cast<size_t>(num_index_sets));
}

// Device-memory checks come last: they need a CUDA device, the geometry checks above do not.
Status validate_memory_spaces(const CacheLayout& source, const CacheLayout& destination,
                              const RelayoutIndexSet* index_sets, int num_index_sets, const void* workspace) {
  int device = -1;
  if (cudaGetDevice(&device) != cudaSuccess) {
    cudaGetLastError();  // do not leave the failure behind for an unrelated check
    return Status::NoDevice("relayout_pages needs a CUDA device (cudaGetDevice failed)");
  }
  if (!detail::pointer_is_device_memory(source.data, device)) {
    return Status::InvalidArgument("source.data must be CUDA device memory on the current device");
  }
  if (!detail::pointer_is_device_memory(destination.data, device)) {
    return Status::InvalidArgument("destination.data must be CUDA device memory on the current device");
  }
  for (int i = 0; i < num_index_sets; ++i) {
    const RelayoutIndexSet& set = index_sets[i];
    if (set.num_rows > 0 && set.width > 0 && !detail::pointer_is_device_memory(set.indices, device)) {
      return Status::InvalidArgument(set_field(i, "indices") +
                                     " must be CUDA device memory on the current device");
    }
  }
  if (num_index_sets > 0 && !detail::pointer_is_device_memory(workspace, device)) {
    return Status::InvalidArgument("workspace must be CUDA device memory on the current device");
  }
  return Status::Ok();
}

}  // namespace

Status validate_relayout_source(const CacheLayout& source) {
  SMLA_RETURN_IF_ERROR(validate_cache_layout(source, "source"));
  if (source.page_block_size != kRelayoutSourcePageBlockSize) {
    return Status::InvalidArgument("source.page_block_size must be 256 (got " +
                                   std::to_string(source.page_block_size) + ")");
  }
  return Status::Ok();
}

int64_t relayout_workspace_bytes(const CacheLayout& source) {
  // One mark byte per destination (64-token) page, so only touched sub-pages are copied.
  if (source.num_pages <= 0 || source.num_pages > std::numeric_limits<int64_t>::max() / 4) return 0;
  return source.num_pages * kSubPagesPerSourcePage;
}

CacheLayout relayout_destination_layout(const CacheLayout& source, void* data) {
  return CacheLayout{data, kRelayoutPageBlockSize, writer_page_stride_bytes(kRelayoutPageBlockSize),
                     source.num_pages * kSubPagesPerSourcePage};
}

Status relayout_pages(const CacheLayout& source, const CacheLayout& destination,
                      const RelayoutIndexSet* index_sets, int num_index_sets, void* workspace,
                      int64_t workspace_bytes, void* stream) {
  SMLA_RETURN_IF_ERROR(validate_geometry(source, destination));
  SMLA_RETURN_IF_ERROR(validate_index_sets(index_sets, num_index_sets));
  if (num_index_sets > 0) {
    // All-pages mode (no index sets) needs no workspace; touched-pages mode keeps its marks there.
    const int64_t required = relayout_workspace_bytes(source);
    if (workspace == nullptr) {
      return Status::InvalidArgument("workspace must not be null when index sets are given (needs " +
                                     std::to_string(required) + " bytes)");
    }
    if (workspace_bytes < required) {
      return Status::InvalidArgument(
          "workspace_bytes must be >= relayout_workspace_bytes(source) = " + std::to_string(required) +
          " (got " + std::to_string(workspace_bytes) + ")");
    }
  }
  SMLA_RETURN_IF_ERROR(validate_no_aliasing(source, destination, index_sets, num_index_sets, workspace));
  SMLA_RETURN_IF_ERROR(validate_memory_spaces(source, destination, index_sets, num_index_sets, workspace));
  return detail::relayout_pages_cuda(source, destination, index_sets, num_index_sets, workspace, stream);
}

}  // namespace smla
