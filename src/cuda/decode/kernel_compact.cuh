// The 99 KB-class sparse MLA decode kernel (spec sections 4-5): sm_80..sm_120 (mma.sync, ldmatrix,
// cp.async), at most 101,376 bytes of shared memory (CompactConfig, config_compact.h).
//
// One CTA of 8 warps = one (split, head block of 16 or 32 heads, query row), 32-token compute tiles. The
// portable kernel's layout (a CTA-wide gather and dequantization, Q in shared memory, warps split over
// tokens) leaves a latency-bound chain at 99 KB (docs/perf.md). Here warp w owns dims [64 w, 64 w + 64):
// scale group w for w < 7, the rope dims for w = 7. Per tile, each warp on its own:
//   gather                 its slice of the 32 rows (cp.async into its staging slice, one tile ahead;
//                          compact_gather.cuh: 32-head blocks copy from a row table the rope warp
//                          writes, 16-head blocks find their own rows)
//   dequantize             staging slice -> its slice of the bf16 K tile (K = V)
//   S_w = Q K^T (partial)  all heads x 32 tokens over its dims (Q's A fragments held in registers)
// then, CTA-wide (two barriers per tile):
//   online softmax         thread t: kTokensPerThread tokens of one head; the 8 partials summed in warp
//                          order; fp32, base 2, lazy rescale, masked entries exactly 0
//   O += P V               warp w: all heads x its 64 dims (fp32 registers; V is its own K slice)
// Unsplit calls write the final bf16 out and lse; split calls write fp32 partials for the combine kernel
// (src/cuda/combine), as every decode kernel does.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "common/decode_params.h"
#include "cuda/common/fp8_dequant.cuh"
#include "cuda/common/mma_sm80.cuh"
#include "cuda/common/programmatic_launch.cuh"
#include "cuda/decode/async_copy.cuh"
#include "cuda/decode/compact_gather.cuh"
#include "cuda/decode/config_compact.h"
#include "cuda/decode/operand_layout.cuh"
#include "cuda/decode/tile_common.cuh"
#include "smla/cache.h"

namespace smla::detail::decode {

// Float offset of (head, token) in one warp's partial-S block [kHeadBlock][32] of the exchange buffer. The
// 8-token groups of a row are XOR-ed with the head's low two bits, so the float2 stores of a C fragment (8
// heads x 8 tokens per half warp) and the vector loads of the softmax threads are both conflict-free.
__device__ __forceinline__ int exchange_offset(int head, int token) {
  return head * 32 + (((token / 8) ^ (head & 3)) * 8) + token % 8;
}

// The warp's staging slice -> its slice (chunks 8 w .. 8 w + 7) of the swizzled bf16 K tile: e4m3 times the
// token's scale of group w, or the rope bytes as they are. Zero-filled rows (invalid tokens, zero scale
// words) become zero.
template <class Config>
__device__ __forceinline__ void dequantize_warp_slice(const uint8_t* staging_slice,
                                                      const uint32_t* scale_words, uint8_t* k_tile, int warp,
                                                      int lane) {
  if (warp < Config::kFp8SliceWarps) {
    for_each_slice_chunk<Config::kTileTokens, kFp8SliceChunks>(lane, [&](int token, int part) {
      // 16 fp8 bytes -> two bf16 chunks
      const uint4 raw =
          *reinterpret_cast<const uint4*>(staging_slice + token * kQuantGroup + part * kChunkBytes);
      const uint32_t scale_byte = (scale_words[token] >> (8 * (warp % 4))) & 0xffu;
      uint4 low, high;
      fp8::dequant_e4m3x16_to_bf16(raw, scale_byte, low, high);
      const int chunk = warp * Config::kSliceChunks + 2 * part;
      *reinterpret_cast<uint4*>(k_tile + operand_offset<Config>(token, chunk)) = low;
      *reinterpret_cast<uint4*>(k_tile + operand_offset<Config>(token, chunk + 1)) = high;
    });
  } else {
    for_each_slice_chunk<Config::kTileTokens, kRopeSliceChunks>(lane, [&](int token, int chunk) {
      const uint4 raw =
          *reinterpret_cast<const uint4*>(staging_slice + token * kRopeDim * 2 + chunk * kChunkBytes);
      *reinterpret_cast<uint4*>(k_tile + operand_offset<Config>(token, kNopeDim / kBf16PerChunk + chunk)) =
          raw;
    });
  }
}

// Q rows [head_base, head_base + kHeadBlock), this warp's 8 chunks of each, into the same place of the K
// tile (cp.async); heads >= h become zero rows.
template <class Config>
__device__ __forceinline__ void load_q_slice_async(const DecodeParams& params, const CtaCoordinates& coords,
                                                   uint32_t k_base, int warp, int lane) {
  const uint16_t* q_row = params.q + coords.batch * params.q_stride_batch + coords.seq * params.q_stride_seq +
                          coords.head_base * params.q_stride_head;
#pragma unroll
  for (int c = lane; c < Config::kHeadBlock * Config::kSliceChunks; c += 32) {
    const int head = c / Config::kSliceChunks;
    const int chunk = warp * Config::kSliceChunks + c % Config::kSliceChunks;
    const bool present = head < coords.heads_here;
    const uint16_t* source = present ? q_row + head * params.q_stride_head + chunk * kBf16PerChunk : params.q;
    cp_async_16(k_base + operand_offset<Config>(head, chunk), source, present);
  }
}

template <class Config>
__global__ void __launch_bounds__(Config::kThreads, Config::kMinBlocksPerSm)
    sparse_mla_decode_compact_kernel(const DecodeParams params) {
  using namespace smla::detail::mma;
  constexpr int kRowBlocks = Config::kRowBlocks;
  constexpr int kTokensPerThread = Config::kTokensPerThread;
  constexpr int kThreadsPerHead = Config::kThreadsPerHead;
  constexpr int kWarpExchangeFloats = Config::kHeadBlock * Config::kTileTokens;
  constexpr uint32_t kOperandRowBytes = kHeadDim * 2;

  extern __shared__ __align__(128) uint8_t shared[];
  uint8_t* k_tile = shared + Config::kKOffset;
  float* exchange = reinterpret_cast<float*>(shared + Config::kExchangeOffset);
  uint8_t* p_tile = shared + Config::kPOffset;
  float* row_rescale = reinterpret_cast<float*>(shared + Config::kRowRescaleOffset);
  float* row_inverse = reinterpret_cast<float*>(shared + Config::kRowInverseOffset);

  const CtaCoordinates coords = cta_coordinates<Config>(params);
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int group_row = lane / 4;  // C fragment rows group_row and group_row + 8 of each row block
  const int quad_lane = lane % 4;
  // Softmax roles.
  const int softmax_head = static_cast<int>(threadIdx.x) / kThreadsPerHead;
  const int softmax_token = static_cast<int>(threadIdx.x) % kThreadsPerHead * kTokensPerThread;

  // Launched as a programmatic dependent of the previous kernel (sm_90+): everything below reads what
  // that kernel may have written (lengths, indices, Q, the caches) or writes what it may still read.
  wait_for_prerequisite_grids();
  // The warps that read slots load their lane's slot of the CTA's first tile beside the list lengths
  // (compact_gather.cuh, FirstTileSlot), so the first gather waits for one memory round trip, not three.
  using Gather = std::conditional_t<Config::kRowTable, RowTableGather<Config>, WarpRowGather<Config>>;
  FirstTileSlot first_tile_slot;
  if (Gather::loads_slots(warp)) first_tile_slot = load_first_tile_slot<Config>(params, coords, lane);
  const RowTiles row = row_tiles<Config>(params, coords);

  const float scale_log2 = params.softmax_scale * kLog2e;
  float running_max = kInitialRunningMax;  // of softmax_head, base-2 scaled domain (same in its threads)
  float row_sum = 0.f;                     // this thread's tokens only; summed over the head's threads
  float out_acc[kRowBlocks][Config::kSliceColBlocks][4];
#pragma unroll
  for (int mb = 0; mb < kRowBlocks; ++mb) {
#pragma unroll
    for (int j = 0; j < Config::kSliceColBlocks; ++j)
      out_acc[mb][j][0] = out_acc[mb][j][1] = out_acc[mb][j][2] = out_acc[mb][j][3] = 0.f;
  }

  // ldmatrix lane roles (mma_sm80.cuh). A K row's chunk 8 w + i of this warp's slice sits at chunk
  // 8 w + (i ^ (row & 7)) (operand_offset), and every row a lane addresses has row & 7 == lane & 7, so the
  // per-lane bases below plus immediate row offsets address every fragment of the tile.
  const int a_row_in_group = (lane & 7) + ((lane >> 3) & 1) * 8;
  const int a_chunk_offset = lane >> 4;
  const int b_token_in_pair = (lane & 7) + (lane >> 4) * 8;  // S: two 8-token blocks per x4 load
  const int b_chunk_offset = (lane >> 3) & 1;
  const int v_token_in_step = (lane & 7) + ((lane >> 3) & 1) * 8;  // P V: 16 tokens per k step
  const int v_chunk_offset = lane >> 4;                            // two 8-dim blocks per x4 load
  const uint32_t k_base = shared_address(k_tile);
  const uint32_t p_base = shared_address(p_tile);
  const uint32_t slice_bytes = static_cast<uint32_t>(warp * Config::kSliceChunks * kChunkBytes);
  uint32_t k_step_base[Config::kSliceKSteps];  // S: B of k step j of the slice, tokens 0..15
  uint32_t v_pair_base[Config::kSliceKSteps];  // P V: B of dim blocks 2p, 2p + 1 of the slice, tokens 0..15
#pragma unroll
  for (int j = 0; j < Config::kSliceKSteps; ++j) {
    k_step_base[j] = k_base + static_cast<uint32_t>(b_token_in_pair) * kOperandRowBytes + slice_bytes +
                     static_cast<uint32_t>(((2 * j + b_chunk_offset) ^ lane) & 7) * kChunkBytes;
    v_pair_base[j] = k_base + static_cast<uint32_t>(v_token_in_step) * kOperandRowBytes + slice_bytes +
                     static_cast<uint32_t>(((2 * j + v_chunk_offset) ^ lane) & 7) * kChunkBytes;
  }

  // This warp's staging slice and footer words (scale-group warps).
  const int staging_slice_offset =
      static_cast<int>(Config::kStagingOffset + warp * Config::kFp8StagingSliceBytes);
  const uint8_t* staging_slice = shared + staging_slice_offset;
  const uint32_t staging_slice_base = shared_address(staging_slice);
  const uint32_t* scale_words = reinterpret_cast<const uint32_t*>(shared + Config::kScaleWordOffset) +
                                (warp % Config::kFp8SliceWarps) * Config::kTileTokens;
  const uint32_t scale_word_base = shared_address(scale_words);

  // Prologue (per warp): its Q slice into the K tile, its slice of the first active tile's rows into
  // staging (after the row table's one barrier, where there is a table); then its Q fragments into
  // registers.
  Gather gather(params, coords, row, shared, staging_slice_base, scale_word_base, warp, lane);
  gather.start(first_tile_slot);
  load_q_slice_async<Config>(params, coords, k_base, warp, lane);
  cp_async_commit();
  gather.issue_first();
  cp_async_wait_all_but_newest();
  __syncwarp();  // the warp's Q slice landed
  uint32_t q_frag[kRowBlocks][Config::kSliceKSteps][4];
#pragma unroll
  for (int mb = 0; mb < kRowBlocks; ++mb) {
#pragma unroll
    for (int j = 0; j < Config::kSliceKSteps; ++j) {
      ldmatrix_x4(q_frag[mb][j],
                  k_base + operand_offset<Config>(mb * kMmaRows + a_row_in_group,
                                                  2 * (warp * Config::kSliceKSteps + j) + a_chunk_offset));
    }
  }

  while (gather.has_tile()) {
    cp_async_wait_all();
    __syncwarp();  // the warp's staging slice landed; its previous P V (or Q reads) is done with its K slice
    dequantize_warp_slice<Config>(staging_slice, scale_words, k_tile, warp, lane);
    __syncwarp();  // the warp's K slice is written; its staging slice is free for the next tile
    const uint32_t valid_word = gather.issue_next();

    // ---- Partial S over this warp's 64 dims, every head and token of the tile (each B fragment feeds
    // every row block; kRowBlocks x 4 independent accumulators, 4 k steps deep).
    {
      float score[kRowBlocks][Config::kTokenBlocks][4];
#pragma unroll
      for (int mb = 0; mb < kRowBlocks; ++mb) {
#pragma unroll
        for (int n = 0; n < Config::kTokenBlocks; ++n)
          score[mb][n][0] = score[mb][n][1] = score[mb][n][2] = score[mb][n][3] = 0.f;
      }
#pragma unroll
      for (int j = 0; j < Config::kSliceKSteps; ++j) {
#pragma unroll
        for (int pair = 0; pair < Config::kTokenBlocks / 2; ++pair) {
          uint32_t b[4];
          ldmatrix_x4(b, k_step_base[j] + pair * 2 * kMmaCols * kOperandRowBytes);
#pragma unroll
          for (int mb = 0; mb < kRowBlocks; ++mb) {
            mma_bf16_m16n8k16(score[mb][2 * pair], q_frag[mb][j], b[0], b[1]);
            mma_bf16_m16n8k16(score[mb][2 * pair + 1], q_frag[mb][j], b[2], b[3]);
          }
        }
      }
      float* warp_exchange = exchange + warp * kWarpExchangeFloats;
#pragma unroll
      for (int mb = 0; mb < kRowBlocks; ++mb) {
#pragma unroll
        for (int n = 0; n < Config::kTokenBlocks; ++n) {
#pragma unroll
          for (int r = 0; r < 2; ++r) {
            const int head = mb * kMmaRows + group_row + 8 * r;
            *reinterpret_cast<float2*>(warp_exchange + exchange_offset(head, n * kMmaCols + 2 * quad_lane)) =
                make_float2(score[mb][n][2 * r], score[mb][n][2 * r + 1]);
          }
        }
      }
    }
    __syncthreads();  // every warp's partial S is in the exchange buffer

    // ---- Online softmax of (softmax_head, softmax_token..+kTokensPerThread): the 8 partials summed in
    // warp order, the tile max over the head's threads, then P (bf16, for the MMA) and the row factor.
    {
      float score[kTokensPerThread];
      const float* column = exchange + exchange_offset(softmax_head, softmax_token);
#pragma unroll
      for (int e = 0; e < kTokensPerThread; ++e) score[e] = 0.f;
#pragma unroll
      for (int w = 0; w < Config::kNumWarps; ++w) {
        if constexpr (kTokensPerThread == 4) {
          const float4 part = *reinterpret_cast<const float4*>(column + w * kWarpExchangeFloats);
          score[0] += part.x;
          score[1] += part.y;
          score[2] += part.z;
          score[3] += part.w;
        } else {
          const float2 part = *reinterpret_cast<const float2*>(column + w * kWarpExchangeFloats);
          score[0] += part.x;
          score[1] += part.y;
        }
      }
      const uint32_t my_valid = valid_word >> softmax_token;
      float tile_max = kInitialRunningMax;
#pragma unroll
      for (int e = 0; e < kTokensPerThread; ++e) {
        if ((my_valid >> e) & 1u) tile_max = fmaxf(tile_max, score[e]);
      }
#pragma unroll
      for (int offset = 1; offset < kThreadsPerHead; offset *= 2)
        tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, offset));
      // scale > 0, so max(score) * scale == max(score * scale); the sentinel stays hugely negative.
      const float rescale = lazy_rescale(tile_max * scale_log2, running_max);
      row_sum *= rescale;
      // P = exp2(score * scale_log2 - max) for valid entries, exactly 0 for masked ones; the sum uses the
      // fp32 values (lse accuracy, spec section 8), the MMA the bf16 ones.
      uint32_t packed[kTokensPerThread / 2];
#pragma unroll
      for (int e = 0; e < kTokensPerThread; e += 2) {
        const float p0 = (my_valid >> e) & 1u ? exp2f(fmaf(score[e], scale_log2, -running_max)) : 0.f;
        const float p1 =
            (my_valid >> (e + 1)) & 1u ? exp2f(fmaf(score[e + 1], scale_log2, -running_max)) : 0.f;
        row_sum += p0 + p1;
        packed[e / 2] = pack_bf16x2(p0, p1);
      }
      uint8_t* p_address =
          p_tile + swizzled_offset<Config::kTileTokenChunks>(softmax_head, softmax_token / kBf16PerChunk) +
          (softmax_token % kBf16PerChunk) * 2;
      if constexpr (kTokensPerThread == 4) {
        *reinterpret_cast<uint2*>(p_address) = make_uint2(packed[0], packed[1]);
      } else {
        *reinterpret_cast<uint32_t*>(p_address) = packed[0];
      }
      if (softmax_token == 0) row_rescale[softmax_head] = rescale;
    }
    __syncthreads();  // P and the row factors are in shared memory

    // ---- O rescale (lazy: skipped when no row of the warp moved its max), then O += P V for every head
    // and this warp's 64 dims (V = the K tile).
    float pv_rescale[kRowBlocks][2];
    if (output_row_factors(pv_rescale, row_rescale, 0, group_row)) {
#pragma unroll
      for (int mb = 0; mb < kRowBlocks; ++mb) {
#pragma unroll
        for (int j = 0; j < Config::kSliceColBlocks; ++j) {
          out_acc[mb][j][0] *= pv_rescale[mb][0];
          out_acc[mb][j][1] *= pv_rescale[mb][0];
          out_acc[mb][j][2] *= pv_rescale[mb][1];
          out_acc[mb][j][3] *= pv_rescale[mb][1];
        }
      }
    }
#pragma unroll
    for (int k_step = 0; k_step < Config::kPvKSteps; ++k_step) {
      uint32_t a[kRowBlocks][4];
#pragma unroll
      for (int mb = 0; mb < kRowBlocks; ++mb) {
        ldmatrix_x4(a[mb], p_base + swizzled_offset<Config::kTileTokenChunks>(mb * kMmaRows + a_row_in_group,
                                                                              2 * k_step + a_chunk_offset));
      }
#pragma unroll
      for (int pair = 0; pair < Config::kSliceColBlocks / 2; ++pair) {
        uint32_t b[4];
        ldmatrix_x4_trans(b, v_pair_base[pair] + k_step * kMmaDepth * kOperandRowBytes);
#pragma unroll
        for (int mb = 0; mb < kRowBlocks; ++mb) {
          mma_bf16_m16n8k16(out_acc[mb][2 * pair], a[mb], b[0], b[1]);
          mma_bf16_m16n8k16(out_acc[mb][2 * pair + 1], a[mb], b[2], b[3]);
        }
      }
    }
  }

  cp_async_wait_all();       // no copy may outlive the CTA (Q is still pending when no tile was active)
  allow_dependent_launch();  // the combine (or the next call) may take SMs this grid leaves free

  // ---- Per head (its first softmax thread): lse and the factor that normalizes O (spec section 4, the
  // rules of tile_common.cuh). The head's largest entry contributes >= 1, so l == 0 means no valid entry.
#pragma unroll
  for (int offset = 1; offset < kThreadsPerHead; offset *= 2)
    row_sum += __shfl_xor_sync(0xffffffffu, row_sum, offset);
  const bool split = params.num_splits > 1;
  if (softmax_token == 0 && softmax_head < coords.heads_here)
    finish_head_row(params, coords, softmax_head, row_sum, running_max, split, row_inverse);
  __syncthreads();  // row factors published; every warp is past its last P V

  // O rows (K, the exchange and P are free now for the split stage).
  store_output_rows<kRowBlocks, Config::kSliceColBlocks, Config::kOutStageStride, Config::kThreads>(
      params, coords, shared, out_acc, 0, group_row, warp * Config::kSliceDims + quad_lane * 2, row_inverse,
      split);
}

}  // namespace smla::detail::decode
