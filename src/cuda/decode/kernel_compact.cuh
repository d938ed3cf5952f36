// The 99 KB-class sparse MLA decode kernel (spec sections 4-5): sm_80..sm_120 (mma.sync, ldmatrix,
// cp.async), at most 101,376 bytes of shared memory (CompactConfig, config_compact.h).
//
// One CTA of 8 warps = one (split, head block of 16 or 32 heads, query row), 32-token compute tiles. The
// portable kernel's layout (a CTA-wide gather and dequantization, Q in shared memory, warps split over
// tokens) leaves a latency-bound chain at 99 KB (docs/perf.md). Here warp w owns dims [64 w, 64 w + 64):
// scale group w for w < 7, the rope dims for w = 7. Per tile, each warp on its own:
//   gather                 its slice of the 32 rows, one tile ahead (compact_gather.cuh: 32-head blocks
//                          gather from a row table the rope warp writes, into registers on CTAs of many
//                          tiles and into a staging slice on the others; 16-head blocks find their own
//                          rows and copy them into a staging slice)
//   dequantize             those bytes -> K (= V) fragments in registers (v39: no bf16 K tile; each
//                          lane holds 4 tokens x 16 dims, KFragments)
//   S_w = Q K^T (partial)  all heads x 32 tokens over its dims (Q's A fragments held in registers, in the
//                          same dim order as K's)
// then, CTA-wide (two barriers per tile):
//   online softmax         thread t: kTokensPerThread tokens of one head; the 8 partials summed in warp
//                          order; fp32, base 2, lazy rescale, masked entries exactly 0
//   O += P V               warp w: all heads x its 64 dims (fp32 registers; V's fragments are K's,
//                          transposed in registers by movmatrix)
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

// The four 32-bit words of a 16-byte chunk, in order, at words[0..3] (a lane's bf16 pairs: two dims each).
__device__ __forceinline__ void unpack_chunk_words(const uint4& chunk, uint32_t* words) {
  words[0] = chunk.x;
  words[1] = chunk.y;
  words[2] = chunk.z;
  words[3] = chunk.w;
}

// This lane's K (= V) values of a tile, held as MMA fragments in registers (v39): for each 8-token block n,
// token 8 n + g (g = lane / 4) and dims 16 c .. 16 c + 15 of the warp's slice (c = lane % 4), as 8 bf16
// pairs, pair k = dims 16 c + 2 k, 16 c + 2 k + 1. Read from the warp's staging slice: e4m3 times the
// token's scale of group w, or the rope bytes as they are; zero-filled rows (invalid tokens, zero scale
// words) become zero.
struct KFragments {
  uint32_t pair[4][8];  // [token block][dim pair]
};

// KFragments from a lane's bytes of each token block n, wherever they are: fp8_chunk(n, raw, footer_word)
// gives a scale-group warp's 16 fp8 bytes and the footer word holding its scale byte, rope_chunks(n, low,
// high) the rope warp's 32 rope bytes. scale_group_warp: warp < kFp8SliceWarps (a constant where the loop
// runs one role).
template <class Config, class Fp8Chunk, class RopeChunks>
__device__ __forceinline__ void build_k_fragments(KFragments& k, bool scale_group_warp, int warp,
                                                  Fp8Chunk&& fp8_chunk, RopeChunks&& rope_chunks) {
  static_assert(Config::kTokenBlocks == 4 && Config::kSliceDims == 64, "4 token blocks x 16 dims per lane");
#pragma unroll
  for (int n = 0; n < Config::kTokenBlocks; ++n) {
    uint4 low, high;
    if (scale_group_warp) {
      uint4 raw;
      uint32_t footer_word;
      fp8_chunk(n, raw, footer_word);
      const uint32_t scale_byte = (footer_word >> (8 * (warp % 4))) & 0xffu;
      fp8::dequant_e4m3x16_to_bf16(raw, scale_byte, low, high);
    } else {
      rope_chunks(n, low, high);
    }
    unpack_chunk_words(low, &k.pair[n][0]);
    unpack_chunk_words(high, &k.pair[n][4]);
  }
}

// From the warp's staging slice ([token][slice bytes]) and its footer words (WarpRowGather).
template <class Config>
__device__ __forceinline__ void load_k_fragments(const uint8_t* staging_slice, const uint32_t* scale_words,
                                                 KFragments& k, int warp, int lane) {
  const int group_row = lane / 4;
  const int quad_lane = lane % 4;
  build_k_fragments<Config>(
      k, warp < Config::kFp8SliceWarps, warp,
      [&](int n, uint4& raw, uint32_t& footer_word) {
        const int token = n * kMmaCols + group_row;
        raw = *reinterpret_cast<const uint4*>(staging_slice + token * kQuantGroup + quad_lane * kChunkBytes);
        footer_word = scale_words[token];
      },
      [&](int n, uint4& low, uint4& high) {
        const int token = n * kMmaCols + group_row;
        const uint8_t* rope = staging_slice + token * kRopeDim * 2 + quad_lane * 2 * kChunkBytes;
        low = *reinterpret_cast<const uint4*>(rope);
        high = *reinterpret_cast<const uint4*>(rope + kChunkBytes);
      });
}

// From the lane's bytes in registers (RowTableGather, v114: LaneTileBytes holds for each token block n
// exactly the 16 bytes, or 32 rope bytes, that load_k_fragments reads from staging).
template <class Config>
__device__ __forceinline__ void k_fragments_from_lane_bytes(const LaneTileBytes& bytes, KFragments& k,
                                                            bool scale_group_warp, int warp) {
  build_k_fragments<Config>(
      k, scale_group_warp, warp,
      [&](int n, uint4& raw, uint32_t& footer_word) {
        raw = bytes.chunk[n];
        footer_word = bytes.footer_word(n);
      },
      [&](int n, uint4& low, uint4& high) {
        low = bytes.chunk[2 * n];
        high = bytes.chunk[2 * n + 1];
      });
}

// Q rows [head_base, head_base + kHeadBlock), this warp's 8 chunks of each, into the same place of the Q
// tile (cp.async); heads >= h become zero rows.
template <class Config>
__device__ __forceinline__ void load_q_slice_async(const DecodeParams& params, const CtaCoordinates& coords,
                                                   uint32_t q_base, int warp, int lane) {
  const uint16_t* q_row = params.q + coords.batch * params.q_stride_batch + coords.seq * params.q_stride_seq +
                          coords.head_base * params.q_stride_head;
#pragma unroll
  for (int c = lane; c < Config::kHeadBlock * Config::kSliceChunks; c += 32) {
    const int head = c / Config::kSliceChunks;
    const int chunk = warp * Config::kSliceChunks + c % Config::kSliceChunks;
    const bool present = head < coords.heads_here;
    const uint16_t* source = present ? q_row + head * params.q_stride_head + chunk * kBf16PerChunk : params.q;
    cp_async_16(q_base + operand_offset<Config>(head, chunk), source, present);
  }
}

// The epilogue without a CTA barrier: each warp stages its 64-dim slice of the block's O rows (times
// row_inverse, 16 rows at a time) in its own part of the Q region and the exchange (both free after the last
// tile's barrier B; P, which other warps may still read, is not touched), then stores whole row slices:
// fp32 partial rows (split; 256 bytes a row slice, 16 lanes) or bf16 out rows (128 bytes, 8 lanes), so every
// store instruction fills its sectors (a lane's own 16 dims would half-fill them: +7-16 % on split calls).
// Stage rows are 80 floats apart and lane c's float4 j (dims 16 c + 4 j ..) goes to column 16 c +
// 4 ((j + c) & 3): the 8 lanes of a 16-byte store phase then hit distinct banks.
template <class Config>
__device__ __forceinline__ void store_rows_per_warp(
    const DecodeParams& params, const CtaCoordinates& coords, uint8_t* shared,
    const float (&acc)[Config::kRowBlocks][Config::kSliceColBlocks][4], const float* row_inverse, bool split,
    int warp, int lane) {
  constexpr int kPassRows = 16;
  constexpr int kStageRowFloats = 80;
  static_assert(size_t(Config::kNumWarps) * kPassRows * kStageRowFloats * 4 <= Config::kPOffset,
                "the per-warp stages fit over the Q region and the exchange");
  static_assert(Config::kSliceColBlocks == 8 && Config::kSliceDims == 64, "16 dims a lane, 64 a warp");
  float* stage = reinterpret_cast<float*>(shared) + warp * kPassRows * kStageRowFloats;
  const int group_row = lane / 4;
  const int quad_lane = lane % 4;
  const int slice_dim = warp * Config::kSliceDims;
  // Stage column of the float4 holding slice dims 4 m .. 4 m + 3.
  const auto stage_column = [](int m) { return 16 * (m / 4) + 4 * ((m + m / 4) & 3); };
#pragma unroll
  for (int mb = 0; mb < Config::kRowBlocks; ++mb) {
    if (mb > 0) __syncwarp();  // the previous pass's rows were read
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int row = group_row + 8 * r;
      const float inverse = row_inverse[mb * kPassRows + row];
#pragma unroll
      for (int j = 0; j < 4; ++j) {  // dims 16 c + 4 j .. + 3: accumulator blocks 2 j and 2 j + 1
        *reinterpret_cast<float4*>(stage + row * kStageRowFloats + stage_column(4 * quad_lane + j)) =
            make_float4(acc[mb][2 * j][2 * r] * inverse, acc[mb][2 * j][2 * r + 1] * inverse,
                        acc[mb][2 * j + 1][2 * r] * inverse, acc[mb][2 * j + 1][2 * r + 1] * inverse);
      }
    }
    __syncwarp();  // the pass's rows are staged
    if (split) {
      // Lanes 0-15 copy one row's 64 dims (float4 m = lane % 16), lanes 16-31 the next row's.
      float* partial_block = partial_rows_address(params, coords) + slice_dim;
      const int m = lane % 16;
#pragma unroll
      for (int pair = 0; pair < kPassRows / 2; ++pair) {
        const int row = 2 * pair + lane / 16;
        const int block_row = mb * kPassRows + row;
        if (block_row < coords.heads_here) {
          *reinterpret_cast<float4*>(partial_block + block_row * kHeadDim + 4 * m) =
              *reinterpret_cast<const float4*>(stage + row * kStageRowFloats + stage_column(m));
        }
      }
    } else {
      // Lanes 8 q .. 8 q + 7 pack one row's 64 dims to bf16 (8 dims a lane: float4s 2 e and 2 e + 1).
      const int e = lane % 8;
#pragma unroll
      for (int quad = 0; quad < kPassRows / 4; ++quad) {
        const int row = 4 * quad + lane / 8;
        const int block_row = mb * kPassRows + row;
        if (block_row < coords.heads_here) {
          const float4 low =
              *reinterpret_cast<const float4*>(stage + row * kStageRowFloats + stage_column(2 * e));
          const float4 high =
              *reinterpret_cast<const float4*>(stage + row * kStageRowFloats + stage_column(2 * e + 1));
          *reinterpret_cast<uint4*>(out_row_address(params, coords, block_row) + slice_dim + 8 * e) =
              make_uint4(pack_bf16x2(low.x, low.y), pack_bf16x2(low.z, low.w), pack_bf16x2(high.x, high.y),
                         pack_bf16x2(high.z, high.w));
        }
      }
    }
  }
}

// RegisterGather (32-head block only): the tile loop gathers each lane's bytes into registers, one copy of
// the loop per warp role (v116), instead of copying them into staging. The plan picks that kernel for calls
// whose CTAs walk many tiles (register_gather_pays, config_compact.h; v117, docs/perf.md): its loads issue
// faster, but carrying a tile's bytes over the loop costs a CTA of few tiles more, and one kernel holding
// both loops measured +2-3 % on those (v115, v116).
template <class Config, bool RegisterGather = false>
__global__ void __launch_bounds__(Config::kThreads, Config::kMinBlocksPerSm)
    sparse_mla_decode_compact_kernel(const DecodeParams params) {
  static_assert(!RegisterGather || Config::kRowTable, "the register gather reads the row table");
  using namespace smla::detail::mma;
  constexpr int kRowBlocks = Config::kRowBlocks;
  constexpr int kTokensPerThread = Config::kTokensPerThread;
  constexpr int kThreadsPerHead = Config::kThreadsPerHead;
  constexpr int kWarpExchangeFloats = Config::kHeadBlock * Config::kTileTokens;

  extern __shared__ __align__(128) uint8_t shared[];
  const uint8_t* q_tile = shared + Config::kQOffset;
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
  using SlotReader =
      std::conditional_t<Config::kRowTable, RowTableGather<Config, false>, WarpRowGather<Config>>;
  FirstTileSlot first_tile_slot;
  if (SlotReader::loads_slots(warp)) first_tile_slot = load_first_tile_slot<Config>(params, coords, lane);
  const RowTiles row = row_tiles<Config>(params, coords);

  // Everything from here on, for one gather (compact_gather.cuh): the staging form, or with RegisterGather
  // the register form, one instantiation per warp role.
  const auto decode_tiles = [&]<class Gather>() {
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

    // ldmatrix lane roles for the A fragments of P (mma_sm80.cuh).
    const int a_row_in_group = (lane & 7) + ((lane >> 3) & 1) * 8;
    const int a_chunk_offset = lane >> 4;
    const uint32_t p_base = shared_address(p_tile);

    // This warp's staging slice and footer words (scale-group warps).
    const int staging_slice_offset =
        static_cast<int>(Config::kStagingOffset + warp * Config::kFp8StagingSliceBytes);
    const uint8_t* staging_slice = shared + staging_slice_offset;
    const uint32_t staging_slice_base = shared_address(staging_slice);
    const uint32_t* scale_words = reinterpret_cast<const uint32_t*>(shared + Config::kScaleWordOffset) +
                                  (warp % Config::kFp8SliceWarps) * Config::kTileTokens;
    const uint32_t scale_word_base = shared_address(scale_words);

    // Prologue (per warp): its Q slice into the Q tile, its slice of the first active tile's rows into
    // staging (after the row table's one barrier, where there is a table); then its Q fragments into
    // registers.
    Gather gather(params, coords, row, shared, staging_slice_base, scale_word_base, warp, lane);
    gather.start(first_tile_slot);
    load_q_slice_async<Config>(params, coords, shared_address(q_tile), warp, lane);
    cp_async_commit();
    gather.issue_first();
    cp_async_wait_all_but_newest();
    __syncwarp();  // the warp's Q slice landed
    // Dim order of S (v39). MMA k step j of the warp's slice takes from lane (g, c) the dims 16 c + 4 j ..
    // 16 c + 4 j + 3 as its logical dims 2 c, 2 c + 1, 8 + 2 c, 9 + 2 c, in Q (A) and K (B) alike, so S is
    // the same sum; a lane's 16 dims are then contiguous in the staging rows (KFragments), and K pairs
    // 2 j, 2 j + 1 are k step j's B fragment as they are.
    uint32_t q_frag[kRowBlocks][Config::kSliceKSteps][4];
#pragma unroll
    for (int mb = 0; mb < kRowBlocks; ++mb) {
      uint32_t q_pair[2][8];  // rows mb * 16 + group_row (+ 8): dims 16 c + 2 k, + 1 of the slice
#pragma unroll
      for (int r = 0; r < 2; ++r) {
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          const uint4 chunk = *reinterpret_cast<const uint4*>(
              q_tile + operand_offset<Config>(mb * kMmaRows + group_row + 8 * r,
                                              warp * Config::kSliceChunks + 2 * quad_lane + half));
          unpack_chunk_words(chunk, &q_pair[r][4 * half]);
        }
      }
#pragma unroll
      for (int j = 0; j < Config::kSliceKSteps; ++j) {
        q_frag[mb][j][0] = q_pair[0][2 * j];
        q_frag[mb][j][1] = q_pair[1][2 * j];
        q_frag[mb][j][2] = q_pair[0][2 * j + 1];
        q_frag[mb][j][3] = q_pair[1][2 * j + 1];
      }
    }

    // ---- Per head (its first softmax thread): lse and the factor that normalizes O (spec section 4, the
    // rules of tile_common.cuh), from the head's running max and its threads' row sums. The head's largest
    // entry contributes >= 1, so l == 0 means no valid entry.
    const bool split = cta_writes_partials<Config>(params);
    const auto finish_rows = [&](float thread_row_sum, float head_max) {
      float head_sum = thread_row_sum;
#pragma unroll
      for (int offset = 1; offset < kThreadsPerHead; offset *= 2)
        head_sum += __shfl_xor_sync(0xffffffffu, head_sum, offset);
      if (softmax_token == 0 && softmax_head < coords.heads_here)
        finish_head_row(params, coords, softmax_head, head_sum, head_max, split, row_inverse);
    };

    const bool any_tile = gather.has_tile();
    while (gather.has_tile()) {
      KFragments k_frag;
      if constexpr (Gather::kIntoRegisters) {
        k_fragments_from_lane_bytes<Config>(gather.lane_bytes(), k_frag, gather.scale_group_warp(), warp);
      } else {
        cp_async_wait_all();
        __syncwarp();  // the warp's staging slice landed
        load_k_fragments<Config>(staging_slice, scale_words, k_frag, warp, lane);
        __syncwarp();  // every lane read its staging bytes; the slice is free for the next tile's copies
      }
      const uint32_t valid_word = gather.issue_next();
      const bool last_tile = !gather.has_tile();  // uniform over the CTA

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
          for (int n = 0; n < Config::kTokenBlocks; ++n) {
#pragma unroll
            for (int mb = 0; mb < kRowBlocks; ++mb)
              mma_bf16_m16n8k16(score[mb][n], q_frag[mb][j], k_frag.pair[n][2 * j],
                                k_frag.pair[n][2 * j + 1]);
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
              *reinterpret_cast<float2*>(warp_exchange +
                                         exchange_offset(head, n * kMmaCols + 2 * quad_lane)) =
                  make_float2(score[mb][n][2 * r], score[mb][n][2 * r + 1]);
            }
          }
        }
      }
      cta_barrier<!Gather::kRoleSplit>();  // every warp's partial S is in the exchange buffer

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
        // A head moves its running max (lazy_rescale) only when one of its threads' own maxima would, since
        // scale > 0 gives max(score) * scale == max(score * scale). When no head of the warp moves (most
        // tiles after a CTA's first), the head's tile max is not needed and its shuffles stay off the chain
        // to P. The result is the same bits either way (rescale 1, running_max kept), because the vote's test
        // is lazy_rescale's own compare written out (a helper shared by both changed the SASS of every
        // mma.sync kernel). Only the 32-head block votes: its CTAs walk many tiles, where the vote saves
        // 0.4-1.8 % (v84c, docs/perf.md); a 16-head CTA walks one or two, its max moves in most of them, and
        // there the vote measured +1.5-2 % (v84).
        constexpr bool kVoteOnMaxMoves = Config::kHeadBlock == 32;
        float rescale = 1.f;
        if (!kVoteOnMaxMoves ||
            __any_sync(0xffffffffu, scaled_score(tile_max, scale_log2) > running_max + kLazyRescaleLog2)) {
#pragma unroll
          for (int offset = 1; offset < kThreadsPerHead; offset *= 2)
            tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, offset));
          // The sentinel stays hugely negative.
          rescale = lazy_rescale(tile_max, scale_log2, running_max);
          row_sum *= rescale;
        }
        // P = exp2(score * scale_log2 - max) for valid entries, exactly 0 for masked ones; the sum uses the
        // fp32 values (lse accuracy, spec section 8), the MMA the bf16 ones.
        uint32_t packed[kTokensPerThread / 2];
#pragma unroll
        for (int e = 0; e < kTokensPerThread; e += 2) {
          const float p0 = (my_valid >> e) & 1u ? softmax_weight(score[e], scale_log2, running_max) : 0.f;
          const float p1 =
              (my_valid >> (e + 1)) & 1u ? softmax_weight(score[e + 1], scale_log2, running_max) : 0.f;
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
        // The last tile's softmax also ends the head's row (lse, and the factor that normalizes O), so that
        // barrier B publishes it and the epilogue needs no barrier of its own.
        if (last_tile) finish_rows(row_sum, running_max);
      }
      cta_barrier<!Gather::kRoleSplit>();  // P and the row factors (after the last tile: row_inverse too) are
                                           // in shared memory

      // ---- O rescale (lazy: skipped when no row of the warp moved its max), then O += P V for every head
      // and this warp's 64 dims (V = K, from the fragments in registers).
      rescale_output_rows(out_acc, row_rescale, 0, group_row);
#pragma unroll
      for (int k_step = 0; k_step < Config::kPvKSteps; ++k_step) {
        uint32_t a[kRowBlocks][4];
#pragma unroll
        for (int mb = 0; mb < kRowBlocks; ++mb) {
          ldmatrix_x4(a[mb], p_base + swizzled_offset<Config::kTileTokenChunks>(
                                          mb * kMmaRows + a_row_in_group, 2 * k_step + a_chunk_offset));
        }
        // V's B fragment of dim block b: K pair b of token blocks 2 k_step and 2 k_step + 1, transposed (lane
        // (g, c) then holds tokens 2 c, 2 c + 1 of dim 16 (g / 2) + 2 b + g % 2), so O block b of lane (g, c)
        // holds dims 16 c + 2 b, + 1 of the slice.
#pragma unroll
        for (int b = 0; b < Config::kSliceColBlocks; ++b) {
          const uint32_t v0 = movmatrix_trans(k_frag.pair[2 * k_step][b]);
          const uint32_t v1 = movmatrix_trans(k_frag.pair[2 * k_step + 1][b]);
#pragma unroll
          for (int mb = 0; mb < kRowBlocks; ++mb) mma_bf16_m16n8k16(out_acc[mb][b], a[mb], v0, v1);
        }
      }
    }

    cp_async_wait_all();       // no copy may outlive the CTA (Q is still pending when no tile was active)
    allow_dependent_launch();  // the combine (or the next call) may take SMs this grid leaves free
    if (!any_tile) {
      finish_rows(0.f, running_max);       // every head of the block empty
      cta_barrier<!Gather::kRoleSplit>();  // row factors published
    }
    // O rows: each warp its own 64 dims (store_rows_per_warp), with no barrier after barrier B.
    store_rows_per_warp<Config>(params, coords, shared, out_acc, row_inverse, split, warp, lane);
  };

  if constexpr (RegisterGather) {
    // One copy of the loop per warp role (v116): each role's tests fold, and the scale-group warps do not
    // carry (and move) the rope warp's 32 registers of lane bytes over the loop.
    if (warp < Config::kFp8SliceWarps)
      decode_tiles.template operator()<RowTableGather<Config, true, GatherRole::kScaleGroupWarps>>();
    else
      decode_tiles.template operator()<RowTableGather<Config, true, GatherRole::kRopeWarp>>();
  } else if constexpr (Config::kRowTable) {
    decode_tiles.template operator()<RowTableGather<Config, false>>();
  } else {
    decode_tiles.template operator()<WarpRowGather<Config>>();
  }
}

}  // namespace smla::detail::decode
