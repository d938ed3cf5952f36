// Compile-time shape of the 99 KB-class decode kernel (kernel_compact.cuh): sm_80..sm_120, mma.sync, at
// most 101,376 bytes of shared memory. One CTA of 8 warps handles one (split, head block, query row) with
// 32-token compute tiles, and every warp owns one 64-dim slice of the 512: warp w < 7 scale group w (fp8
// bytes 64 w..64 w + 63 of a row), warp 7 the 64 rope dims. A warp gathers and dequantizes its slice of each
// tile's K (= V) rows itself into registers, holds Q's A fragments of its slice in registers, computes a
// partial S over its dims and O for its dims. Only the partial-S exchange and the softmax are CTA-wide: two
// barriers per tile.
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/backend_entry.h"
#include "common/split_grid.h"
#include "cuda/decode/config.h"
#include "smla/cache.h"
#include "smla/decode.h"

namespace smla::detail::decode {

template <int HeadBlock>
struct CompactConfig {
  static constexpr int kHeadBlock = HeadBlock;  // heads per CTA (heads >= h are masked rows)
  static constexpr int kTileTokens = 32;
  static constexpr int kNumWarps = 8;
  static constexpr int kThreads = kNumWarps * 32;
  static constexpr int kMinBlocksPerSm = 1;

  // Dim slices of S = Q K^T and of O = P V: one per warp.
  static constexpr int kRowBlocks = kHeadBlock / kMmaRows;              // 16-head MMA row blocks
  static constexpr int kSliceDims = kHeadDim / kNumWarps;               // 64
  static constexpr int kSliceKSteps = kSliceDims / kMmaDepth;           // 4 k steps of S per warp
  static constexpr int kSliceChunks = kSliceDims / kBf16PerChunk;       // 8 chunks of a K row
  static constexpr int kSliceColBlocks = kSliceDims / kMmaCols;         // 8 O column blocks per row block
  static constexpr int kTokenBlocks = kTileTokens / kMmaCols;           // 4 S column blocks
  static constexpr int kPvKSteps = kTileTokens / kMmaDepth;             // 2 k steps of P V
  static constexpr int kTileTokenChunks = kTileTokens / kBf16PerChunk;  // 4 chunks of a P row
  static constexpr int kHeadDimChunks = kHeadDim / kBf16PerChunk;       // 64 chunks of a Q / K row

  // Softmax roles: thread t reduces kTokensPerThread consecutive tokens of head t / kThreadsPerHead (the
  // eight partial S values of each, from the exchange buffer), so a head's threads are kThreadsPerHead
  // adjacent lanes of one warp and its row max and sum are shuffle reductions.
  static constexpr int kTokensPerThread = kHeadBlock * kTileTokens / kThreads;  // 4 (32 heads) or 2 (16)
  static constexpr int kThreadsPerHead = kTileTokens / kTokensPerThread;        // 8 or 16

  // Per-warp staging slices of the raw rows of the next tile: 32 tokens x 64 fp8 bytes for a scale-group
  // warp, 32 tokens x 128 rope bytes for the rope warp; and each scale-group warp's 4-byte footer words.
  // The 32-head block's register-gather kernel does not use them (register_gather_pays).
  static constexpr int kFp8SliceWarps = kNumScaleGroups;  // warps 0..6; warp 7 holds the rope dims
  static constexpr size_t kFp8StagingSliceBytes = size_t(kTileTokens) * kQuantGroup;    // 2048
  static constexpr size_t kRopeStagingSliceBytes = size_t(kTileTokens) * kRopeDim * 2;  // 4096

  // Shared-memory map (bytes). The Q tile: each warp reads its slice of Q into registers from it before the
  // first tile (K and V live in registers since v39, KFragments). Its region keeps the 32 KB of the bf16 K
  // tile that held Q before v39, so the budget, the occupancy and the split schedules stay those measured
  // with it (the freed bytes are spare: docs/perf.md). The epilogue stages each warp's O rows over this
  // region and the exchange (kernel_compact.cuh, store_rows_per_warp).
  static constexpr size_t kQBytes = size_t(kHeadBlock) * kHeadDim * 2;  // bf16, swizzled rows
  static constexpr size_t kQRegionBytes = size_t(kTileTokens) * kHeadDim * 2;
  static constexpr size_t kExchangeBytes = size_t(kNumWarps) * kHeadBlock * kTileTokens * 4;  // fp32 S parts
  static constexpr size_t kPBytes = size_t(kHeadBlock) * kTileTokens * 2;  // bf16, swizzled rows
  static constexpr size_t kStagingBytes = kFp8SliceWarps * kFp8StagingSliceBytes + kRopeStagingSliceBytes;
  static constexpr size_t kScaleWordBytes = size_t(kFp8SliceWarps) * kTileTokens * 4;
  static constexpr size_t kQOffset = 0;
  static constexpr size_t kExchangeOffset = kQOffset + kQRegionBytes;
  static constexpr size_t kPOffset = kExchangeOffset + kExchangeBytes;
  static constexpr size_t kStagingOffset = kPOffset + kPBytes;
  static constexpr size_t kScaleWordOffset = kStagingOffset + kStagingBytes;       // u32 [7 warps][32 tokens]
  static constexpr size_t kRowRescaleOffset = kScaleWordOffset + kScaleWordBytes;  // float [heads]
  static constexpr size_t kRowInverseOffset = kRowRescaleOffset + size_t(kHeadBlock) * 4;  // float [heads]
  // The row table (compact_gather.cuh, RowTableGather): in the 32-head block the rope warp writes each
  // tile's row and footer addresses (8 bytes each per token) and its valid and present words, and every warp
  // copies from it. Three stages: the fewest that the prologue barrier and each iteration's barrier A order
  // (the argument is beside RowTableGather). The 16-head block has none: its calls have one or two tiles per
  // CTA, and the table's prologue (two stages, then a barrier) would stand before their first copy.
  static constexpr bool kRowTable = kHeadBlock == 32;
  static constexpr int kRowTableStages = 3;
  static constexpr size_t kRowTableStageBytes = size_t(kTileTokens) * 8 * 2 + 16;  // 528
  static constexpr size_t kRowTableOffset = kRowInverseOffset + size_t(kHeadBlock) * 4;
  static constexpr size_t kRowTableBytes = kRowTable ? kRowTableStages * kRowTableStageBytes : 0;
  static constexpr size_t kSharedBytes = kRowTableOffset + kRowTableBytes;

  static_assert(kQBytes <= kQRegionBytes, "Q fits its region");
  static_assert(kHeadBlock == 16 || kHeadBlock == 32, "16- or 32-head blocks");
  static_assert(
      kSliceKSteps == 4 && kSliceChunks == 8,
      "a warp's dim slice: 4 k steps, 8 chunks (16 dims per lane in KFragments, one swizzle group of Q)");
  static_assert(kSliceDims == kQuantGroup && kFp8SliceWarps + 1 == kNumWarps && kRopeDim == kSliceDims,
                "warp w < 7 owns scale group w, warp 7 the rope dims");
  static_assert(kThreadsPerHead <= 32 && 32 % kThreadsPerHead == 0, "a head's softmax threads share a warp");
  static_assert(kTileTokens == 32, "one 32-bit valid word per tile");
  static_assert(kRowTableOffset % 16 == 0, "the row table's 8-byte addresses are aligned");
  static_assert(kSharedBytes <= kCompactSharedLimit, "the CTA fits the 99 KB class");
};

using CompactConfigHeads32 = CompactConfig<32>;
using CompactConfigHeads16 = CompactConfig<16>;

// Whether a call of the 32-head block runs its register-gather kernel (kernel_compact.cuh, RegisterGather):
// when the longest CTA of the call's split schedule (the body's when the call has one) walks at least
// kRegisterGatherMinTiles compute tiles, or kRegisterGatherMinSplitTiles in a split call. Measured on an H100
// (docs/perf.md, v117 and v118): the register form -7 to -9 % on CTAs of 10-20 tiles, -3 to -4 % on split
// CTAs of 5 (flash-c4 b = 16, pro-c4 b = 4) and -1 to -2 % on split CTAs of 3 (flash-c4 b = 8); on unsplit
// CTAs of 4 (flash-swa b = 32 / 64) +0.2 to +1.4 % and on split CTAs of 1 (flash-swa b = 16) +5.5 %, so those
// stay on the staging form. This rule (v119) measured -1.6 to -4.6 % on the rows it moves (flash-c4 b = 8 /
// 12 / 16, pro-c4 b = 4, capped or not) and within +-0.7 % elsewhere. Host code: the planner records the
// choice in the plan (Plan::register_gather, dispatch.cpp) and run.cu launches the build the plan names.
inline constexpr int kRegisterGatherMinTiles = 5;
inline constexpr int kRegisterGatherMinSplitTiles = 3;
inline bool register_gather_pays(const SplitSchedule& schedule) {
  const int64_t longest_cta_compute_tiles =
      int64_t{
          longest_cta_tiles(schedule.tiles_per_split, schedule.body_rows, schedule.body_tiles_per_split)} *
      schedule.tile_tokens / CompactConfigHeads32::kTileTokens;
  const bool split = call_has_split_part(schedule.body_rows, schedule.body_splits, schedule.num_splits);
  return longest_cta_compute_tiles >= (split ? kRegisterGatherMinSplitTiles : kRegisterGatherMinTiles);
}

}  // namespace smla::detail::decode
