// Compile-time shape of the warp-specialized sm_90a decode kernel (kernel_sm90.cuh): warpgroup roles,
// register split, and the shared-memory map. One CTA handles one (split, 64-head block, query row).
#pragma once

#include <cstddef>
#include <cstdint>

#include "smla/cache.h"
#include "smla/decode.h"

namespace smla::detail::decode {

// Whether the loaded binary of the sm_90a kernel runs its wgmma body (cudaFuncAttributes of that kernel):
// on a compute capability 9.0 device, an sm_90 binary (binaryVersion 90) compiled from compute_90a code
// (ptxVersion 90). An sm_80 cubin runs the trap body, and so does the sm_90 binary the driver JIT-compiles
// from a library built with an older target's PTX only (e.g. 80-virtual): its ptxVersion is that target's.
constexpr bool sm90_kernel_binary_usable(int cc_major, int cc_minor, int binary_version, int ptx_version) {
  return cc_major == 9 && cc_minor == 0 && binary_version == 90 && ptx_version == 90;
}

struct DecodeConfigSm90 {
  static constexpr int kHeadBlock = 64;
  static constexpr int kTileTokens = smla::kTileTokens;  // 64

  // Warpgroup 0 produces (gathers a tile's rows into registers, dequantizes them into a free K buffer);
  // warpgroups 1 and 2 consume (S = Q K^T for 32 tokens each, one softmax, O += P V for 256 dims each).
  // The consumers hold a 64 x 256 fp32 accumulator each; the producer holds a whole tile of 16-byte loads
  // in flight (with its store coordinates opaque it fits 136 registers without spills; below that it
  // spills and slows down, v93). setmaxnreg moves registers over, the consumers' 184 worth 1-2 % on every
  // sm90-h64 row against 176 (v94): 128 x 136 + 256 x 184 = 64512 = 384 x 168, the allocation at launch.
  static constexpr int kWarpgroupThreads = 128;
  static constexpr int kProducerWarpgroups = 1;
  static constexpr int kProducerThreads = kProducerWarpgroups * kWarpgroupThreads;
  static constexpr int kConsumerWarpgroups = 2;
  static constexpr int kConsumerThreads = kConsumerWarpgroups * kWarpgroupThreads;
  static constexpr int kThreads = kProducerThreads + kConsumerThreads;
  static constexpr int kLaunchRegisters = 168;
  static constexpr int kProducerRegisters = 136;
  static constexpr int kConsumerRegisters = 184;
  static_assert(kProducerThreads * kProducerRegisters + kConsumerThreads * kConsumerRegisters <=
                    kThreads * kLaunchRegisters,
                "setmaxnreg must not need more registers than the launch allocated");
  static_assert(kThreads * kLaunchRegisters <= 65536, "one CTA per SM");

  // K buffers (bf16 tiles): the producer fills one while the consumers read the other.
  static constexpr int kStages = 2;

  // Producer roles: 4 threads per token, 32 tokens per pass, 2 passes per tile. A token row is 9
  // segments of 4 16-byte chunks (segments 0..6: the fp8 dims of scale group s; 7..8: the bf16 rope), the
  // thread with quarter q loading chunk q of every segment.
  static constexpr int kThreadsPerToken = 4;
  static constexpr int kTokensPerPass = kProducerThreads / kThreadsPerToken;  // 32
  static constexpr int kPasses = kTileTokens / kTokensPerPass;                // 2
  static constexpr int kSegments = kRowBytes / (kThreadsPerToken * 16);       // 9
  static constexpr int kFp8Segments = kNumScaleGroups;                        // 7

  // Consumer roles: warpgroup g computes S for tokens [32g, 32g + 32) and O for dims [256g, 256g + 256).
  static constexpr int kScoreTokensPerGroup = kTileTokens / kConsumerWarpgroups;  // 32
  static constexpr int kOutDimsPerGroup = kHeadDim / kConsumerWarpgroups;         // 256

  // Shared-memory map (bytes). Q and K tiles are 8 column blocks of [64 rows][128 B] in the 128-byte
  // swizzle layout (sm90_wgmma.cuh); P is one such block ([64 heads][64 tokens] bf16).
  static constexpr size_t kOperandBytes = size_t(64) * kHeadDim * 2;  // 64 KB
  static constexpr size_t kQOffset = 0;
  static constexpr size_t kKOffset = kQOffset + kOperandBytes;  // stage s at kKOffset + s * kOperandBytes
  static constexpr size_t kPOffset = kKOffset + kStages * kOperandBytes;
  static constexpr size_t kPBytes = size_t(kHeadBlock) * kTileTokens * 2;
  static constexpr size_t kRowMaxOffset = kPOffset + kPBytes;  // float[2][64]
  static constexpr size_t kRowSumOffset =
      kRowMaxOffset + kConsumerWarpgroups * kHeadBlock * 4;  // float[2][64]
  // The block's sink logits (base-2 scaled, -inf without a sink), read while Q loads: float[64].
  static constexpr size_t kSinkOffset = kRowSumOffset + kConsumerWarpgroups * kHeadBlock * 4;
  static constexpr size_t kValidOffset = kSinkOffset + kHeadBlock * 4;  // u32[2][2]
  // One full barrier per (stage, producer pass): pass p stores tokens [32p, 32p + 32), the tokens of
  // consumer warpgroup p's S, which can start before the other pass is stored.
  static constexpr size_t kFullBarrierOffset = kValidOffset + kStages * (kTileTokens / 8);   // u64[2][2]
  static constexpr size_t kEmptyBarrierOffset = kFullBarrierOffset + kStages * kPasses * 8;  // u64[2]
  static constexpr size_t kSharedBytes = kEmptyBarrierOffset + kStages * 8;

  // In-cluster combine: normalized O rows staged as fp32 [64][kOutStageStride] over Q and the K buffers
  // (stage_scaled_rows); the other epilogues stage per warp over Q (store_rows_per_warp).
  static constexpr int kOutStageStride = kHeadDim + 8;

  static_assert(kQOffset % 1024 == 0 && kKOffset % 1024 == 0 && kPOffset % 1024 == 0,
                "wgmma operands start at 1024-byte swizzle atoms");
  static_assert(kFullBarrierOffset % 8 == 0, "mbarriers are 8-byte aligned");
  static_assert(size_t(kHeadBlock) * kOutStageStride * 4 <= kPOffset, "the O stage fits over Q and K");
  static_assert(kSharedBytes <= 227 * 1024, "one CTA must fit an SM");
  static_assert(kSegments * kThreadsPerToken * 16 == kRowBytes && kTokensPerPass % 8 == 0, "copy roles");
  static_assert(
      kPasses == kConsumerWarpgroups && kTokensPerPass == kScoreTokensPerGroup,
      "producer pass p stores exactly the tokens of consumer warpgroup p's S (one full barrier each)");
};

// Split calls of the sm_90a kernel with at most this many splits can run as thread-block clusters of
// `num_splits` CTAs that combine their splits in the kernel (kernel_sm90.cuh); the plan decides whether they
// do (SplitSchedule::cluster_combine: where the model charges it less than the combine kernel, schedule.cpp),
// else they write fp32 partials for the combine kernel. 8 is the portable cluster size (one CTA per SM, so 8
// SMs of a GPC).
inline constexpr int kMaxClusterSplits = 8;

constexpr bool sm90_combines_in_cluster(int num_splits) {
  return num_splits >= 2 && num_splits <= kMaxClusterSplits;
}

}  // namespace smla::detail::decode
