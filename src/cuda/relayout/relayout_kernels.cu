// Page re-layout (spec section 6): a P=256 cache viewed as 64-token pages. Source page p, sub-page i
// becomes destination page 4p+i, so destination page d = slot / 64 for every slot it holds.
//
// Launch sequence, fixed for a given source layout and index-set shapes (CUDA-graph safe, no host
// sync):
//   all pages:     copy kernel (every destination page)
//   touched pages: memset(marks) -> mark kernel (one byte per destination page) -> copy kernel
// The copy kernel's grid does not depend on how many pages are marked; unmarked pages cost one byte read.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "common/cuda_ops.h"
#include "cuda/common/cuda_check.h"
#include "smla/cache.h"

namespace smla::detail {
namespace {

constexpr int kSourcePageBlockSize = 256;
constexpr int kDestPageBlockSize = 64;
constexpr int kSubPagesPerPage = kSourcePageBlockSize / kDestPageBlockSize;  // 4
constexpr int64_t kSubPageDataBytes = kDestPageBlockSize * kRowBytes;        // 36864
constexpr int64_t kSourceFooterOffset = kSourcePageBlockSize * kRowBytes;    // 147456
constexpr int64_t kSubPageFooterBytes = kDestPageBlockSize * kScaleBytes;    // 512
constexpr int kVectorBytes = 16;  // uint4 copies: every offset below is a multiple of 16
constexpr int kDataVectors = static_cast<int>(kSubPageDataBytes / kVectorBytes);      // 2304
constexpr int kFooterVectors = static_cast<int>(kSubPageFooterBytes / kVectorBytes);  // 32
constexpr int kRelayoutThreads = 256;
constexpr int kMaxCopyBlocks = 4096;
constexpr int kMaxMarkBlocks = 1024;
constexpr int kMaxIndexSets = 8;

static_assert(kSubPageDataBytes % kVectorBytes == 0 && kSourceFooterOffset % kVectorBytes == 0 &&
              kSubPageFooterBytes % kVectorBytes == 0);

struct IndexSetParams {
  const int32_t* indices;
  int64_t num_rows, width, row_stride;
};

struct MarkParams {
  IndexSetParams sets[kMaxIndexSets];
  int num_sets;
  int64_t num_slots;
  uint8_t* dest_page_marks;  // one byte per destination page
};

struct CopyParams {
  const uint8_t* source;
  int64_t source_stride_bytes;
  uint8_t* destination;
  int64_t dest_stride_bytes;
  int64_t num_dest_pages;
  const uint8_t* dest_page_marks;  // null: copy every page
};

// Marks the destination page of every valid entry (0 <= slot < num_slots). Concurrent writers
// store the same byte value, so plain stores suffice.
__global__ void __launch_bounds__(kRelayoutThreads) relayout_mark_kernel(const MarkParams params) {
  const int64_t threads_in_grid = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (int set_index = 0; set_index < params.num_sets; ++set_index) {
    const IndexSetParams set = params.sets[set_index];
    const int64_t entries = set.num_rows * set.width;
    for (int64_t entry = first; entry < entries; entry += threads_in_grid) {
      const int64_t row = entry / set.width;
      const int64_t column = entry - row * set.width;
      const int32_t slot = set.indices[row * set.row_stride + column];
      if (slot >= 0 && slot < params.num_slots) params.dest_page_marks[slot / kDestPageBlockSize] = 1;
    }
  }
}

// One CTA per destination page (grid-stride): 2304 data vectors + 32 footer vectors.
__global__ void __launch_bounds__(kRelayoutThreads) relayout_copy_kernel(const CopyParams params) {
  for (int64_t dest_page = blockIdx.x; dest_page < params.num_dest_pages; dest_page += gridDim.x) {
    if (params.dest_page_marks != nullptr && params.dest_page_marks[dest_page] == 0) continue;
    const int64_t source_page = dest_page / kSubPagesPerPage;
    const int64_t sub_page = dest_page % kSubPagesPerPage;
    const uint8_t* source_page_base = params.source + source_page * params.source_stride_bytes;
    const uint4* source_data =
        reinterpret_cast<const uint4*>(source_page_base + sub_page * kSubPageDataBytes);
    const uint4* source_footer = reinterpret_cast<const uint4*>(source_page_base + kSourceFooterOffset +
                                                                sub_page * kSubPageFooterBytes);
    uint8_t* dest_page_base = params.destination + dest_page * params.dest_stride_bytes;
    uint4* dest_data = reinterpret_cast<uint4*>(dest_page_base);
    uint4* dest_footer = reinterpret_cast<uint4*>(dest_page_base + kSubPageDataBytes);
    for (int v = threadIdx.x; v < kDataVectors + kFooterVectors; v += blockDim.x) {
      if (v < kDataVectors) {
        dest_data[v] = source_data[v];
      } else {
        dest_footer[v - kDataVectors] = source_footer[v - kDataVectors];
      }
    }
  }
}

}  // namespace

Status relayout_pages_cuda(const CacheLayout& source, const CacheLayout& destination,
                           const RelayoutIndexSet* index_sets, int num_index_sets, void* workspace,
                           void* stream) {
  const cudaStream_t cuda_stream = static_cast<cudaStream_t>(stream);
  const int64_t num_dest_pages = destination.num_pages;
  uint8_t* marks = nullptr;
  if (num_index_sets > 0) {
    marks = static_cast<uint8_t*>(workspace);
    SMLA_CUDA_CHECK(cudaMemsetAsync(marks, 0, static_cast<size_t>(num_dest_pages), cuda_stream));
    MarkParams mark_params{};
    mark_params.num_sets = num_index_sets;
    mark_params.num_slots = cache_num_slots(source);
    mark_params.dest_page_marks = marks;
    int64_t max_entries = 0;
    for (int i = 0; i < num_index_sets; ++i) {
      mark_params.sets[i] = IndexSetParams{index_sets[i].indices, index_sets[i].num_rows, index_sets[i].width,
                                           index_sets[i].row_stride};
      max_entries = std::max(max_entries, index_sets[i].num_rows * index_sets[i].width);
    }
    if (max_entries > 0) {
      const int64_t blocks_needed = (max_entries + kRelayoutThreads - 1) / kRelayoutThreads;
      const int blocks = static_cast<int>(std::min<int64_t>(blocks_needed, kMaxMarkBlocks));
      relayout_mark_kernel<<<blocks, kRelayoutThreads, 0, cuda_stream>>>(mark_params);
      SMLA_CUDA_CHECK_LAUNCH("relayout_mark_kernel");
    }
  }
  CopyParams copy_params{};
  copy_params.source = static_cast<const uint8_t*>(source.data);
  copy_params.source_stride_bytes = source.page_stride_bytes;
  copy_params.destination = static_cast<uint8_t*>(destination.data);
  copy_params.dest_stride_bytes = destination.page_stride_bytes;
  copy_params.num_dest_pages = num_dest_pages;
  copy_params.dest_page_marks = marks;
  const int blocks = static_cast<int>(std::min<int64_t>(num_dest_pages, kMaxCopyBlocks));
  relayout_copy_kernel<<<blocks, kRelayoutThreads, 0, cuda_stream>>>(copy_params);
  SMLA_CUDA_CHECK_LAUNCH("relayout_copy_kernel");
  return Status::Ok();
}

}  // namespace smla::detail
