// Compile-time shape of the tensor-core sparse decode kernel (sm_80+, mma.sync): tile sizes, warp roles
// and the shared-memory map. One CTA handles one (split, head block, query row).
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/decode_params.h"
#include "smla/cache.h"
#include "smla/decode.h"

namespace smla::detail::decode {

// MMA tile of mma.sync.m16n8k16: 16 rows (heads), 8 columns, 16-deep reduction.
inline constexpr int kMmaRows = 16;
inline constexpr int kMmaCols = 8;
inline constexpr int kMmaDepth = 16;

// Shared-memory rows are stored as 16-byte chunks (8 bf16) whose position is XOR-swizzled with the low
// three bits of the row, so the 8 row addresses of one ldmatrix land in 8 different bank groups.
inline constexpr int kChunkBytes = 16;
inline constexpr int kBf16PerChunk = kChunkBytes / 2;

// The sm_90a (H100/H200) kernel and the 99 KB-class kernel are different designs with their own
// configurations (config_sm90.h, config_compact.h).
template <int HeadBlock, int NumWarps>
struct DecodeConfig {
  static constexpr int kHeadBlock = HeadBlock;           // heads per CTA (heads >= h are masked in the tile)
  static constexpr int kTileTokens = smla::kTileTokens;  // KV entries per compute tile (spec section 5)
  static constexpr int kNumWarps = NumWarps;
  static constexpr int kThreads = kNumWarps * 32;
  // One CTA per SM (~120-180 KB of shared memory: Q, the bf16 K tile and the raw staging tile of the next
  // tile). 8 warps: 16 warps (128 registers, 64-register O slices) were measured slower for the 64-head
  // block: more warps re-read the same Q and V fragments, and shared-memory traffic grew by 22 %.
  static constexpr int kMinBlocksPerSm = 1;

  // Warp roles of S = Q K^T and the softmax: warps w and w + kHeadGroups share MMA row group
  // (w % kHeadGroups) and each takes a slice of the tile's tokens.
  static constexpr int kHeadGroups = kHeadBlock / kMmaRows;
  static constexpr int kWarpsPerHeadGroup = kNumWarps / kHeadGroups;
  static constexpr int kScoreTokensPerWarp = kTileTokens / kWarpsPerHeadGroup;
  static constexpr int kScoreColBlocks = kScoreTokensPerWarp / kMmaCols;  // S accumulator tiles
  // Warp roles of O += P V: warp w takes kPvRowBlocks row groups (32 heads in the 64-head block, so each V
  // fragment read from shared memory feeds two MMAs) starting at group (w % kPvRowGroups) * kPvRowBlocks,
  // and dims slice w / kPvRowGroups. Row factors (rescale, 1 / sum) reach it through shared memory.
  static constexpr int kPvRowBlocks = kHeadGroups >= 2 ? 2 : 1;
  static constexpr int kPvRowGroups = kHeadGroups / kPvRowBlocks;
  static constexpr int kPvDimSlices = kNumWarps / kPvRowGroups;
  static constexpr int kOutDimsPerWarp = kHeadDim / kPvDimSlices;
  static constexpr int kOutColBlocks = kOutDimsPerWarp / kMmaCols;  // O accumulator tiles per row block

  // Chunks per shared row: Q/K rows hold 512 bf16, P rows hold 64 bf16.
  static constexpr int kHeadDimChunks = kHeadDim / kBf16PerChunk;       // 64
  static constexpr int kTileTokenChunks = kTileTokens / kBf16PerChunk;  // 8

  // Gather of the next tile (cp.async, in flight while the current tile runs its MMAs) and its
  // dequantization. A token row is 9 segments of 4 16-byte chunks: segments 0..6 hold the fp8 dims of scale
  // group s (16 e4m3 values a chunk), segments 7..8 the bf16 rope dims. A token has 4 threads, one chunk of
  // every segment each.
  static constexpr int kFp8ChunksPerToken = kNopeDim / kChunkBytes;                       // 28
  static constexpr int kRopeChunksPerToken = kRopeDim * 2 / kChunkBytes;                  // 8
  static constexpr int kGatherChunksPerToken = kFp8ChunksPerToken + kRopeChunksPerToken;  // 36
  static constexpr int kThreadsPerToken = 4;
  static constexpr int kSegmentsPerToken = kGatherChunksPerToken / kThreadsPerToken;  // 9
  static constexpr int kFp8Segments = kFp8ChunksPerToken / kThreadsPerToken;          // 7 = scale groups

  // Shared-memory map (bytes).
  static constexpr size_t kQBytes = size_t(kHeadBlock) * kHeadDim * 2;
  static constexpr size_t kKBytes = size_t(kTileTokens) * kHeadDim * 2;
  static constexpr size_t kPBytes = size_t(kHeadBlock) * kTileTokens * 2;
  static constexpr size_t kRowExchangeBytes = size_t(kWarpsPerHeadGroup) * kHeadBlock * 4;
  static constexpr size_t kStagingBytes = size_t(kTileTokens) * kRowBytes;  // raw rows, unswizzled
  static constexpr size_t kQOffset = 0;
  static constexpr size_t kKOffset = kQOffset + kQBytes;
  static constexpr size_t kPOffset = kKOffset + kKBytes;
  static constexpr size_t kStagingOffset = kPOffset + kPBytes;
  static constexpr size_t kStagingScaleOffset = kStagingOffset + kStagingBytes;  // u8[64][8]
  static constexpr size_t kRowMaxOffset = kStagingScaleOffset + kTileTokens * kScaleBytes;
  static constexpr size_t kRowSumOffset = kRowMaxOffset + kRowExchangeBytes;  // float [warps/group][heads]
  // Valid-entry bits of the tile being computed and of the one in flight: u8[2][kTileTokens / 8].
  static constexpr size_t kValidMaskOffset = kRowSumOffset + kRowExchangeBytes;
  static constexpr size_t kRowRescaleOffset = kValidMaskOffset + 2 * kTileTokens / 8;      // float [heads]
  static constexpr size_t kRowInverseOffset = kRowRescaleOffset + size_t(kHeadBlock) * 4;  // float [heads]
  static constexpr size_t kSharedBytes = kRowInverseOffset + size_t(kHeadBlock) * 4;

  // Split epilogue: the normalized O rows are staged as fp32 [kHeadBlock][kOutStageStride] over the Q, K
  // and P tiles; the 8-float pad puts the 8 rows of a fragment store in different bank groups.
  static constexpr int kOutStageStride = kHeadDim + 8;
  static_assert(size_t(kHeadBlock) * kOutStageStride * 4 <= kStagingOffset,
                "the O stage must fit over Q, K and P (the exchange buffers stay live)");

  static_assert(kHeadBlock % kMmaRows == 0 && kNumWarps % kHeadGroups == 0, "warp roles must tile heads");
  static_assert(kHeadGroups % kPvRowBlocks == 0 && kNumWarps % kPvRowGroups == 0, "PV roles must tile O");
  static_assert(kScoreColBlocks % 2 == 0, "S columns are loaded in pairs of 8-token blocks");
  static_assert(kOutDimsPerWarp % (8 * kBf16PerChunk) == 0,
                "a warp's dim slice starts at a whole 8-chunk swizzle group (PV addressing)");
  static_assert(32 % kScoreTokensPerWarp == 0, "a warp's token slice lies in one 32-bit valid-mask word");
  static_assert(kThreads == kTileTokens * kThreadsPerToken, "every thread copies one token's quarter");
  static_assert(kGatherChunksPerToken % kThreadsPerToken == 0 && kFp8Segments == kNumScaleGroups &&
                    kThreadsPerToken * kChunkBytes == kQuantGroup,
                "a segment is one scale group (or 64 rope bytes), one chunk per thread of the token");
  static_assert(32 / kThreadsPerToken == 8, "one warp copies 8 tokens (one byte of the valid mask)");
  static_assert(kSharedBytes <= 227 * 1024, "one CTA must fit an SM");
  static_assert(kTileTokenChunks >= 4, "P rows are swizzled over at least 4 chunks (swizzled_offset)");
};

// 64 heads per CTA (4 row groups x 2 warps each).
using DecodeConfigHeads64 = DecodeConfig<64, 8>;

// The two head blocks of the planner: the wide block (64 heads: the sm_90a kernel, this kernel; 32 on the
// 99 KB class) and the narrow one (16 heads, the 99 KB-class kernel on every device, config_compact.h): for
// h <= 16 (DSv4 at TP 4/8) a 64-head block would waste 3/4 of its MMA work on masked rows, and for a
// handful of query rows it splits the heads over 4x more CTAs, each with a quarter of the tile's MMA work,
// which shortens the latency of a call that cannot fill the GPU.
inline constexpr int kWideHeadBlock = 64;
inline constexpr int kNarrowHeadBlock = 16;

// The 99 KB class (sm_120 RTX PRO 6000 / RTX 5090, sm_89, sm_86): at most this many bytes of dynamic shared
// memory per block; its kernel's configuration is in config_compact.h.
inline constexpr size_t kCompactSharedLimit = 101376;

// Small calls: at most kSmallCallCtas 64-head CTAs per split, and at most kSmallCallTileWork 16-head CTA
// tiles in all (~2 per SM on an H100), so 4x more CTAs shorten the call instead of queueing up. 8 rows
// (was 4, v33): at b = 8 the 2- and 3-tile calls (flash-swa, the C128 layers) took 12.4-13 us on 8 sm_90a
// CTAs per split against ~8.5 us for one row's 16-head CTAs. 300 tile-work (was 256, v45): pro-c4 at b = 2
// (2 rows x 8 blocks x 18 tiles = 288) took 18.4 us on 16-head blocks against 20.0 on sm90-h64; at b = 3
// (432) the two were even and at b = 4 (576) the 16-head blocks lost 10 %. flash-c4 at b = 8 (320) stays
// on its 32-head blocks (v43).
inline constexpr int64_t kSmallCallCtas = 8;
inline constexpr int64_t kSmallCallTileWork = 300;

// Heads per CTA for a call with `num_heads` heads, `query_rows` = b * s_q query rows and `total_tiles`
// 64-entry tiles per row: the one rule shared by the planner and the launcher (both know all three).
// It holds for the sm_90a kernel too: at b = 1 its 64-head CTAs (one tile each + combine, or clusters of
// two tiles) measured 16.4-22 us against 14 us for 16-head blocks.
constexpr int head_block_for(int num_heads, int64_t query_rows, int64_t total_tiles) {
  const int64_t heads16 = head_block_count(num_heads, kNarrowHeadBlock);
  const int64_t heads64 = head_block_count(num_heads, kWideHeadBlock);
  const bool small_call =
      query_rows * heads64 <= kSmallCallCtas && query_rows * heads16 * total_tiles <= kSmallCallTileWork;
  return num_heads <= kNarrowHeadBlock || small_call ? kNarrowHeadBlock : kWideHeadBlock;
}

}  // namespace smla::detail::decode
