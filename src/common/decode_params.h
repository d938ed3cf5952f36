// The one struct that carries every pointer, stride and size of a decode call into a backend
// (FlashMLA's params.h idea). Built once by dispatch.cpp from a validated smla_decode_args_t, so the
// backends trust it: pointers are non-null where required, strides and geometry are valid.
// Plain C++ with host/device inline helpers; no CUDA types, so the CPU backend uses it too.
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/fast_divisor.h"
#include "smla/cache.h"

namespace smla::detail {

struct CacheParams {
  const uint8_t* data = nullptr;
  int64_t page_block_size = 1;
  int64_t page_stride_bytes = 0;
  int64_t num_slots = 0;  // slot ids >= num_slots are out of range: masked and counted
  FastDivisor page_of_slot = FastDivisor::make(1);  // slot / page_block_size (slots are int32, < 2^31)
};

// One index list (main or extra) of the attended set.
struct IndexListParams {
  CacheParams cache;
  const int32_t* indices = nullptr;  // [b, s_q, width]
  int64_t stride_batch = 0, stride_seq = 0;
  int32_t width = 0;                 // topk or extra_topk; 0 = list absent
  const int32_t* lengths = nullptr;  // optional
  int32_t lengths_per_query = 0;     // 1: [b, s_q]; 0: [b]
};

struct DecodeParams {
  int32_t batch = 0, seq_q = 0, num_heads = 0;

  const uint16_t* q = nullptr;  // bf16 bits
  int64_t q_stride_batch = 0, q_stride_seq = 0, q_stride_head = 0;

  IndexListParams main;
  IndexListParams extra;

  const float* attn_sink = nullptr;
  float softmax_scale = 0.f;

  uint16_t* out = nullptr;  // bf16 bits
  int64_t out_stride_batch = 0, out_stride_seq = 0, out_stride_head = 0;
  float* lse = nullptr;
  int64_t lse_stride_batch = 0, lse_stride_seq = 0, lse_stride_head = 0;

  // Split-KV schedule (from the plan): main tiles first, then extra tiles. The list's tiles are 64 entries
  // (main_tiles); a split covers tiles_per_split schedule tiles of split_tile_tokens entries (64, or 32
  // for small calls of the 99 KB-class kernel, whose compute tiles are 32 entries).
  int32_t main_tiles = 0;   // ceil(main.width / 64)
  int32_t total_tiles = 0;  // schedule tiles: (main_tiles + ceil(extra.width / 64)) * 64 / split_tile_tokens
  int32_t num_splits = 1;
  int32_t tiles_per_split = 0;  // ceil(total_tiles / num_splits)
  int32_t split_tile_tokens = 64;
  // sm90-h64 with 2..kMaxClusterSplits splits: 1 when the plan's clusters combine the splits in the kernel
  // (SplitSchedule::cluster_combine), 0 when they write partials for the combine kernel.
  int32_t cluster_combine = 0;
  // The body and tail split (common/split_grid.h, SplitSchedule): query rows [0, body_rows) run
  // body_splits splits of body_tiles_per_split tiles (1 split of every tile: unsplit, writing out and lse),
  // the rows after them num_splits splits of tiles_per_split. body_rows = 0: every row has num_splits.
  int32_t body_rows = 0;
  int32_t body_splits = 1;
  int32_t body_tiles_per_split = 0;
  // The grid's placement divisors (common/split_grid.h, set_split_grid_divisors, at launch): body_splits,
  // num_splits, the launched kernel's head blocks a row, seq_q.
  FastDivisor body_split_divisor = FastDivisor::make(1);
  FastDivisor split_divisor = FastDivisor::make(1);
  FastDivisor head_block_divisor = FastDivisor::make(1);
  FastDivisor seq_q_divisor = FastDivisor::make(1);

  // Workspace pieces (CUDA backends). See WorkspaceLayout.
  float* partial_out = nullptr;       // [split_partial_rows][h][512] (common/split_grid.h)
  float* partial_lse = nullptr;       // [split_partial_rows][h], natural log, -inf when the split is empty
  uint32_t* error_counter = nullptr;  // bad indices/lengths seen on the device (issue 6 policy)
  int32_t debug_checks = 0;           // SMLA_DEBUG_CHECKS=1
};

// The length given for query row (b, t) as stored: lengths[b] or lengths[b, t], the whole width when no
// lengths tensor is given, 0 for an absent list. Unclamped.
SMLA_HOST_DEVICE inline int32_t raw_list_length(const IndexListParams& list, int32_t b, int32_t t,
                                                int32_t seq_q) {
  if (list.width == 0) return 0;
  if (list.lengths == nullptr) return list.width;
  return list.lengths[list.lengths_per_query ? (int64_t)b * seq_q + t : b];
}

// Valid prefix of an index list from its raw length: clamped to [0, width] (spec section 4).
SMLA_HOST_DEVICE inline int32_t clamp_list_length(const IndexListParams& list, int32_t raw) {
  return raw < 0 ? 0 : (raw > list.width ? list.width : raw);
}

// True when a raw length lies outside [0, width]. Such a length is clamped (so nothing past the list is
// read) and counted as a device error (issue 6 policy): the caller passed a length its index tensor cannot
// hold. Without a lengths tensor the raw length is the width itself.
SMLA_HOST_DEVICE inline bool raw_list_length_out_of_range(const IndexListParams& list, int32_t raw) {
  return raw < 0 || raw > list.width;
}

// Valid prefix of an index list for query row (b, t): the given length clamped to [0, width], or the
// whole width when no lengths tensor is given (spec section 4).
SMLA_HOST_DEVICE inline int32_t list_length(const IndexListParams& list, int32_t b, int32_t t,
                                            int32_t seq_q) {
  return clamp_list_length(list, raw_list_length(list, b, t, seq_q));
}

SMLA_HOST_DEVICE inline bool list_length_out_of_range(const IndexListParams& list, int32_t b, int32_t t,
                                                      int32_t seq_q) {
  return raw_list_length_out_of_range(list, raw_list_length(list, b, t, seq_q));
}

SMLA_HOST_DEVICE inline const int32_t* list_row(const IndexListParams& list, int32_t b, int32_t t) {
  return list.indices + (int64_t)b * list.stride_batch + (int64_t)t * list.stride_seq;
}

// Head blocks of a query row: the launcher sizes the grid with it and the kernels decode blockIdx.x with
// it (launch_config.h, tile_common.cuh), so both must use this one definition; the planner counts CTAs
// with it too (head_block_for in config.h).
SMLA_HOST_DEVICE constexpr int32_t head_block_count(int32_t num_heads, int32_t head_block) {
  return (num_heads + head_block - 1) / head_block;
}

// Workspace of the CUDA backends: [error counters | partial lse | partial out], each piece 256-byte
// aligned. Computed identically by the planner and the launchers.
struct WorkspaceLayout {
  static constexpr size_t kAlign = 256;
  static constexpr size_t kErrorCounterBytes = 256;
  size_t partial_lse_offset = 0;
  size_t partial_out_offset = 0;
  size_t total_bytes = 0;

  static constexpr size_t align_up(size_t x) { return (x + kAlign - 1) / kAlign * kAlign; }

  // `partial_rows` partial rows of num_heads heads (common/split_grid.h: split_partial_rows).
  static WorkspaceLayout for_partial_rows(int64_t partial_rows, int64_t num_heads) {
    WorkspaceLayout layout;
    layout.partial_lse_offset = kErrorCounterBytes;
    const size_t lse_bytes = static_cast<size_t>(partial_rows * num_heads) * 4;
    layout.partial_out_offset = align_up(layout.partial_lse_offset + lse_bytes);
    const size_t out_bytes = static_cast<size_t>(partial_rows * num_heads) * kHeadDim * 4;
    layout.total_bytes = align_up(layout.partial_out_offset + out_bytes);
    return layout;
  }
};

}  // namespace smla::detail
