// Tensor-core sparse MLA decode kernel (spec sections 4-5), portable to sm_80+ (mma.sync + ldmatrix).
//
// One CTA = one (split, head block, query row). Q [kHeadBlock][512] bf16 stays in shared memory. The
// 64-entry tiles of the row's index lists are software-pipelined: while tile i runs its MMAs, the raw
// cache bytes of tile i+1 are copied (cp.async) into a staging tile and the slots of tile i+2 are loaded
// into registers. At the top of each iteration the staging tile is dequantized into a shared K tile
// [64][512] bf16 (K = V), then:
//   S = Q K^T            warp w: heads of group w % G, tokens of slice w / G
//   online softmax       fp32, base 2, masked entries contribute exactly 0
//   O += P V             warp w: heads of group w % G, dims of slice w / G (fp32 registers)
// Unsplit calls write the final bf16 out and lse; split calls write fp32 partials that the combine
// kernel (src/cuda/combine) merges and applies the sink to.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "common/decode_params.h"
#include "cuda/common/fp8_dequant.cuh"
#include "cuda/common/mma_sm80.cuh"
#include "cuda/common/programmatic_launch.cuh"
#include "cuda/decode/async_copy.cuh"
#include "cuda/decode/config.h"
#include "cuda/decode/operand_layout.cuh"
#include "cuda/decode/tile_common.cuh"
#include "smla/cache.h"

namespace smla::detail::decode {

// Q rows [head_base, head_base + kHeadBlock) into the swizzled Q tile (cp.async, committed with the first
// tile's copies); heads >= h become zero rows.
template <class Config>
__device__ __forceinline__ void load_q_block_async(const DecodeParams& params, const CtaCoordinates& coords,
                                                   uint8_t* q_tile) {
  const uint16_t* q_row = params.q + coords.batch * params.q_stride_batch + coords.seq * params.q_stride_seq +
                          coords.head_base * params.q_stride_head;
  const uint32_t q_base = mma::shared_address(q_tile);
  for (int c = threadIdx.x; c < Config::kHeadBlock * Config::kHeadDimChunks; c += Config::kThreads) {
    const int head = c / Config::kHeadDimChunks;
    const int chunk = c % Config::kHeadDimChunks;
    const bool present = head < coords.heads_here;
    const uint16_t* source = present ? q_row + head * params.q_stride_head + chunk * kBf16PerChunk : params.q;
    cp_async_16(q_base + operand_offset<Config>(head, chunk), source, present);
  }
}

// Thread roles of the copy and dequantization (see DecodeConfig): this thread's token and its chunk within
// each segment.
template <class Config>
struct CopyRole {
  int token, quarter;
  __device__ __forceinline__ CopyRole()
      : token(static_cast<int>(threadIdx.x) / Config::kThreadsPerToken),
        quarter(static_cast<int>(threadIdx.x) % Config::kThreadsPerToken) {}
};

// The slot of this thread's token in the tile; -1 (masked, not an error) past the valid prefix. Loaded one
// tile ahead of its use so the load latency is hidden.
template <class Config>
__device__ __forceinline__ int32_t load_token_slot(const TileSource& source) {
  const int32_t position = source.first_position + CopyRole<Config>().token;
  return position < source.length ? source.indices[position] : -1;
}

// What a thread gathers for its token of a tile: whether the entry is valid, and where its chunks and
// scale footer are. An entry is valid iff its position is in the valid prefix, index >= 0 and index <
// num_slots; an index past the pool inside the prefix is counted once (head block 0, quarter 0) and
// masked. Invalid entries are never read: their staging rows are zero-filled.
struct TokenGather {
  bool valid, leader;           // leader: one thread per token (quarter 0)
  const uint8_t* source_chunk;  // this thread's first 16-byte chunk of the row (cache base when invalid)
  const uint8_t* scales;
};

template <class Config>
__device__ __forceinline__ TokenGather token_gather(const DecodeParams& params, const TileSource& source,
                                                    int32_t slot) {
  const CopyRole<Config> role;
  const bool in_prefix = source.first_position + role.token < source.length;
  TokenGather gather;
  gather.valid = in_prefix && slot >= 0 && slot < source.num_slots;
  gather.leader = role.quarter == 0;
  if (gather.leader && in_prefix && slot >= source.num_slots && source.counts_errors &&
      params.error_counter != nullptr) {
    atomicAdd(params.error_counter, 1u);
  }
  gather.source_chunk = source.cache_data;
  gather.scales = source.cache_data;
  if (gather.valid) {
    const SlotAddress address = slot_address(source, slot);
    gather.source_chunk = address.row + role.quarter * kChunkBytes;
    gather.scales = address.scales;
  }
  return gather;
}

// Records the tile's valid-entry bits (lanes 4j of a warp hold its 8 tokens in order; their bits become
// one byte per warp).
template <class Config>
__device__ __forceinline__ void publish_valid_bits(bool valid, uint8_t* valid_bytes) {
  const uint32_t lanes_valid = __ballot_sync(0xffffffffu, valid);
  if (threadIdx.x % 32 == 0) {
    uint32_t token_bits = 0;
#pragma unroll
    for (int j = 0; j < 32 / Config::kThreadsPerToken; ++j)
      token_bits |= ((lanes_valid >> (j * Config::kThreadsPerToken)) & 1u) << j;
    valid_bytes[threadIdx.x / 32] = static_cast<uint8_t>(token_bits);
  }
}

// Starts the copy of the tile's raw rows and scale footers into the staging tile (all threads; a token's 4
// threads copy interleaved 16-byte chunks of its row, so a warp reads 8 rows in 64-byte runs) and records
// the tile's valid-entry bits.
template <class Config>
__device__ __forceinline__ void issue_tile_copy(const DecodeParams& params, const TileSource& source,
                                                int32_t slot, uint32_t staging_base,
                                                uint32_t staging_scale_base, uint8_t* valid_bytes) {
  const CopyRole<Config> role;
  const TokenGather gather = token_gather<Config>(params, source, slot);
  const uint32_t staging_chunk = staging_base + role.token * kRowBytes + role.quarter * kChunkBytes;
  constexpr int kSegmentBytes = Config::kThreadsPerToken * kChunkBytes;
#pragma unroll
  for (int segment = 0; segment < Config::kSegmentsPerToken; ++segment) {
    cp_async_16(staging_chunk + segment * kSegmentBytes,
                gather.source_chunk + (gather.valid ? segment * kSegmentBytes : 0), gather.valid);
  }
  if (gather.leader) cp_async_8(staging_scale_base + role.token * kScaleBytes, gather.scales, gather.valid);
  publish_valid_bits<Config>(gather.valid, valid_bytes);
}

// Staging tile -> swizzled K tile [64][512] bf16 (all threads, same roles as the copy). Segment s < 7 is
// scale group s, so every index is known at compile time; a warp covers 8 tokens and the swizzle spreads
// their K-tile stores over all bank groups. Zero-filled rows of invalid entries dequantize to zero whatever
// their (zero) scale bytes.
template <class Config>
__device__ __forceinline__ void dequantize_staging(const uint8_t* staging, const uint8_t* staging_scales,
                                                   uint8_t* k_tile) {
  const CopyRole<Config> role;
  const uint8_t* staging_chunk = staging + role.token * kRowBytes + role.quarter * kChunkBytes;
  const uint2 scale_bytes = *reinterpret_cast<const uint2*>(staging_scales + role.token * kScaleBytes);
#pragma unroll
  for (int segment = 0; segment < Config::kSegmentsPerToken; ++segment) {
    const int part = segment * Config::kThreadsPerToken + role.quarter;  // chunk of the raw row
    const uint4 raw =
        *reinterpret_cast<const uint4*>(staging_chunk + segment * Config::kThreadsPerToken * kChunkBytes);
    if (segment < Config::kFp8Segments) {
      const uint32_t scale_word = segment < 4 ? scale_bytes.x : scale_bytes.y;
      uint4 low, high;
      fp8::dequant_e4m3x16_to_bf16(raw, (scale_word >> (8 * (segment % 4))) & 0xffu, low, high);
      *reinterpret_cast<uint4*>(k_tile + operand_offset<Config>(role.token, 2 * part)) = low;
      *reinterpret_cast<uint4*>(k_tile + operand_offset<Config>(role.token, 2 * part + 1)) = high;
    } else {
      const int chunk = kNopeDim / kBf16PerChunk + (part - Config::kFp8ChunksPerToken);
      *reinterpret_cast<uint4*>(k_tile + operand_offset<Config>(role.token, chunk)) = raw;
    }
  }
}

// Swizzled byte offsets of a lane's ldmatrix rows along a 512-wide row, for the four 16-deep k steps
// 4m + j (j = 0..3): offset(k) = base[k % 4] + 128 * (k / 4). Row r's chunk 2k + c (c = 0/1) sits at
// ((2k + c) ^ (r & 7)) * 16 = (32k) ^ (16 ((c ^ r) & 7)), and the 128m part of 32k does not overlap the
// XOR-ed bits 4..6, so the unrolled MMA loops address with immediates only.
__device__ __forceinline__ void k_step_row_offsets(int row, int chunk_in_pair, uint32_t (&base)[4]) {
  const uint32_t lane_bits = static_cast<uint32_t>((chunk_in_pair ^ row) & 7) * kChunkBytes;
#pragma unroll
  for (int j = 0; j < 4; ++j) base[j] = static_cast<uint32_t>(row) * kHeadDim * 2 + ((32u * j) ^ lane_bits);
}

template <class Config>
__global__ void __launch_bounds__(Config::kThreads, Config::kMinBlocksPerSm)
    sparse_mla_decode_kernel(const DecodeParams params) {
  using namespace smla::detail::mma;
  extern __shared__ __align__(128) uint8_t shared[];
  uint8_t* q_tile = shared + Config::kQOffset;
  uint8_t* k_tile = shared + Config::kKOffset;
  uint8_t* p_tile = shared + Config::kPOffset;
  const uint8_t* staging = shared + Config::kStagingOffset;
  const uint8_t* staging_scales = shared + Config::kStagingScaleOffset;
  float* row_max_exchange = reinterpret_cast<float*>(shared + Config::kRowMaxOffset);
  float* row_sum_exchange = reinterpret_cast<float*>(shared + Config::kRowSumOffset);
  uint8_t* valid_bytes = shared + Config::kValidMaskOffset;  // [2 stages][kTileTokens / 8]
  float* row_rescale = reinterpret_cast<float*>(shared + Config::kRowRescaleOffset);
  float* row_inverse = reinterpret_cast<float*>(shared + Config::kRowInverseOffset);

  const CtaCoordinates coords = cta_coordinates<Config>(params);
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int head_group = warp % Config::kHeadGroups;  // MMA rows: heads 16*head_group..+15 of the block
  const int warp_slice = warp / Config::kHeadGroups;  // token slice for S, dim slice for O
  const int group_row = lane / 4;                     // C fragment rows group_row and group_row + 8
  const int quad_lane = lane % 4;
  const int block_row0 = head_group * kMmaRows + group_row;  // head (within the block) of rows 0 / 1
  const int block_row1 = block_row0 + 8;
  // O += P V roles: row groups pv_row_group * kPvRowBlocks + mb, dims slice pv_dim_slice.
  const int pv_row_group = warp % Config::kPvRowGroups;
  const int pv_dim_slice = warp / Config::kPvRowGroups;
  const int pv_first_row = pv_row_group * Config::kPvRowBlocks * kMmaRows;

  // Launched as a programmatic dependent of the previous kernel (sm_90+): everything below reads what
  // that kernel may have written (lengths, indices, Q, the caches) or writes what it may still read.
  wait_for_prerequisite_grids();
  const RowTiles row = row_tiles<Config>(params, coords);
  const int32_t main_length = row.main_length;
  const int32_t extra_length = row.extra_length;
  const int tile_begin = row.tile_begin;
  const int tile_end = row.tile_end;

  const float scale_log2 = params.softmax_scale * kLog2e;
  float running_max[2] = {kInitialRunningMax, kInitialRunningMax};  // base-2 scaled domain
  float partial_sum[2] = {0.f, 0.f};  // this warp's token slice only; summed across slices at the end
  float out_acc[Config::kPvRowBlocks][Config::kOutColBlocks][4];
#pragma unroll
  for (int mb = 0; mb < Config::kPvRowBlocks; ++mb) {
#pragma unroll
    for (int j = 0; j < Config::kOutColBlocks; ++j) {
      out_acc[mb][j][0] = out_acc[mb][j][1] = out_acc[mb][j][2] = out_acc[mb][j][3] = 0.f;
    }
  }

  // ldmatrix lane roles (see mma_sm80.cuh): A operand rows and the 8-row sub-matrix each lane addresses.
  const int a_row_in_group = (lane & 7) + ((lane >> 3) & 1) * 8;
  const int a_chunk_offset = lane >> 4;
  const int b_token_in_pair = (lane & 7) + (lane >> 4) * 8;  // S: two 8-token blocks per x4 load
  const int b_chunk_offset = (lane >> 3) & 1;
  const int v_token_in_step = (lane & 7) + ((lane >> 3) & 1) * 8;  // PV: 16 tokens per k step
  const int v_chunk_offset = lane >> 4;                            // two 8-dim blocks per x4 load
  const uint32_t q_base = shared_address(q_tile);
  const uint32_t k_base = shared_address(k_tile);
  const uint32_t p_base = shared_address(p_tile);
  // Per-lane ldmatrix bases of S = Q K^T (see k_step_row_offsets).
  uint32_t q_row_base[4], k_row_base[4];
  k_step_row_offsets(head_group * kMmaRows + a_row_in_group, a_chunk_offset, q_row_base);
  k_step_row_offsets(warp_slice * Config::kScoreTokensPerWarp + b_token_in_pair, b_chunk_offset, k_row_base);
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    q_row_base[j] += q_base;
    k_row_base[j] += k_base;
  }
  // O += P V: B = V rows (token & 7 == lane & 7) at dims of this warp's slice. Chunk 2p + c of the slice
  // (p = 4n + j) sits at 8n + ((2j ^ c ^ lane) & 7) chunks past the slice start, so pair p's address is
  // v_row_base[p % 4] + 128 n + (16 k_step tokens) * 1024.
  uint32_t v_row_base[4];
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    v_row_base[j] = k_base + static_cast<uint32_t>(v_token_in_step) * kHeadDim * 2 +
                    pv_dim_slice * Config::kOutDimsPerWarp * 2 +
                    static_cast<uint32_t>(((2 * j) ^ v_chunk_offset ^ lane) & 7) * kChunkBytes;
  }

  const uint32_t staging_base = shared_address(staging);
  const uint32_t staging_scale_base = shared_address(staging_scales);
  constexpr int kValidBytesPerStage = Config::kTileTokens / 8;

  // Pipeline prologue: Q and the first active tile's rows in flight, the second one's slots loading.
  int tile = next_active_tile<Config>(params, tile_begin, tile_end, main_length, extra_length);
  load_q_block_async<Config>(params, coords, q_tile);
  if (tile < tile_end) {
    const TileSource source = tile_source<Config>(params, coords, tile, main_length, extra_length);
    issue_tile_copy<Config>(params, source, load_token_slot<Config>(source), staging_base, staging_scale_base,
                            valid_bytes);
  }
  cp_async_commit();
  int next_tile = next_active_tile<Config>(params, tile + 1, tile_end, main_length, extra_length);
  int32_t next_slot = -1;
  if (next_tile < tile_end) {
    next_slot =
        load_token_slot<Config>(tile_source<Config>(params, coords, next_tile, main_length, extra_length));
  }

  for (int stage = 0; tile < tile_end; stage ^= 1) {
    cp_async_wait_all();
    __syncthreads();  // staging (and Q) landed for every thread; the previous P V is done with K and P
    dequantize_staging<Config>(staging, staging_scales, k_tile);
    __syncthreads();  // K tile complete; staging free for the next tile

    int tile_after_next = tile_end;
    if (next_tile < tile_end) {
      const TileSource source = tile_source<Config>(params, coords, next_tile, main_length, extra_length);
      issue_tile_copy<Config>(params, source, next_slot, staging_base, staging_scale_base,
                              valid_bytes + (stage ^ 1) * kValidBytesPerStage);
      cp_async_commit();
      tile_after_next = next_active_tile<Config>(params, next_tile + 1, tile_end, main_length, extra_length);
      if (tile_after_next < tile_end) {
        next_slot = load_token_slot<Config>(
            tile_source<Config>(params, coords, tile_after_next, main_length, extra_length));
      }
    }
    tile = next_tile;
    next_tile = tile_after_next;
    const uint32_t* valid_mask = reinterpret_cast<const uint32_t*>(valid_bytes + stage * kValidBytesPerStage);

    // ---- S = Q K^T for heads of this warp's group and tokens of its slice.
    float score[Config::kScoreColBlocks][4];
#pragma unroll
    for (int j = 0; j < Config::kScoreColBlocks; ++j)
      score[j][0] = score[j][1] = score[j][2] = score[j][3] = 0.f;
      // One x4 load = B of two 8-token blocks for one 16-deep k step.
#pragma unroll
    for (int k_step = 0; k_step < kHeadDim / kMmaDepth; ++k_step) {
      const uint32_t step_offset = 128u * (k_step / 4);
      uint32_t a[4];
      ldmatrix_x4(a, q_row_base[k_step % 4] + step_offset);
#pragma unroll
      for (int pair = 0; pair < Config::kScoreColBlocks / 2; ++pair) {
        uint32_t b[4];
        ldmatrix_x4(b, k_row_base[k_step % 4] + step_offset + pair * 2 * kMmaCols * kHeadDim * 2);
        mma_bf16_m16n8k16(score[2 * pair], a, b[0], b[1]);
        mma_bf16_m16n8k16(score[2 * pair + 1], a, b[2], b[3]);
      }
    }

    // ---- Online softmax. Row maxima over valid entries, reduced in the quad, then across the warps that
    // share the head group through shared memory.
    const int score_token_base = warp_slice * Config::kScoreTokensPerWarp;
    const uint32_t my_valid = valid_mask[score_token_base / 32] >> (score_token_base % 32);
    float tile_max[2] = {kInitialRunningMax, kInitialRunningMax};
#pragma unroll
    for (int j = 0; j < Config::kScoreColBlocks; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int token_bit = j * kMmaCols + quad_lane * 2 + (e & 1);
        if ((my_valid >> token_bit) & 1u) tile_max[e / 2] = fmaxf(tile_max[e / 2], score[j][e]);
      }
    }
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 1));
      tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 2));
    }
    if (quad_lane == 0) {
      row_max_exchange[warp_slice * Config::kHeadBlock + block_row0] = tile_max[0];
      row_max_exchange[warp_slice * Config::kHeadBlock + block_row1] = tile_max[1];
    }
    __syncthreads();
    float rescale[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int block_row = r == 0 ? block_row0 : block_row1;
      float row_max = kInitialRunningMax;
#pragma unroll
      for (int s = 0; s < Config::kWarpsPerHeadGroup; ++s) {
        row_max = fmaxf(row_max, row_max_exchange[s * Config::kHeadBlock + block_row]);
      }
      // scale > 0, so max(score) * scale == max(score * scale); the sentinel stays hugely negative.
      rescale[r] = lazy_rescale(row_max, scale_log2, running_max[r]);
      partial_sum[r] *= rescale[r];
    }
    if (warp_slice == 0 && quad_lane == 0) {
      row_rescale[block_row0] = rescale[0];
      row_rescale[block_row1] = rescale[1];
    }
    // P = exp2(score * scale_log2 - max) for valid entries, exactly 0 for masked ones, rounded to bf16
    // for the MMA. The sum uses the fp32 values: lse must stay accurate to fp32 (spec section 8 allows
    // ~1.2e-4 relative), which per-entry bf16 rounding (2^-9) would not guarantee for short rows.
#pragma unroll
    for (int j = 0; j < Config::kScoreColBlocks; ++j) {
      float p[4];
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int token_bit = j * kMmaCols + quad_lane * 2 + (e & 1);
        const bool valid = (my_valid >> token_bit) & 1u;
        p[e] = valid ? softmax_weight(score[j][e], scale_log2, running_max[e / 2]) : 0.f;
      }
      const uint32_t p01 = pack_bf16x2(p[0], p[1]);
      const uint32_t p23 = pack_bf16x2(p[2], p[3]);
      partial_sum[0] += p[0] + p[1];
      partial_sum[1] += p[2] + p[3];
      const int token = warp_slice * Config::kScoreTokensPerWarp + j * kMmaCols + quad_lane * 2;
      const int chunk = token / kBf16PerChunk;
      const int within_chunk_bytes = (token % kBf16PerChunk) * 2;
      *reinterpret_cast<uint32_t*>(p_tile + swizzled_offset<Config::kTileTokenChunks>(block_row0, chunk) +
                                   within_chunk_bytes) = p01;
      *reinterpret_cast<uint32_t*>(p_tile + swizzled_offset<Config::kTileTokenChunks>(block_row1, chunk) +
                                   within_chunk_bytes) = p23;
    }
    __syncthreads();  // P of both token slices is in shared memory

    // ---- O rescale (lazy: a warp skips it when none of its rows' maxima moved), then O += P V (V = the
    // K tile) for this warp's row groups and dim slice.
    rescale_output_rows(out_acc, row_rescale, pv_first_row, group_row);
    {
#pragma unroll
      for (int k_step = 0; k_step < Config::kTileTokens / kMmaDepth; ++k_step) {
        uint32_t a[Config::kPvRowBlocks][4];
#pragma unroll
        for (int mb = 0; mb < Config::kPvRowBlocks; ++mb) {
          ldmatrix_x4(a[mb], p_base + swizzled_offset<Config::kTileTokenChunks>(
                                          pv_first_row + mb * kMmaRows + a_row_in_group,
                                          2 * k_step + a_chunk_offset));
        }
#pragma unroll
        for (int pair = 0; pair < Config::kOutColBlocks / 2; ++pair) {
          uint32_t b[4];
          ldmatrix_x4_trans(b, v_row_base[pair % 4] + 128u * (pair / 4) + k_step * kMmaDepth * kHeadDim * 2);
#pragma unroll
          for (int mb = 0; mb < Config::kPvRowBlocks; ++mb) {
            mma_bf16_m16n8k16(out_acc[mb][2 * pair], a[mb], b[0], b[1]);
            mma_bf16_m16n8k16(out_acc[mb][2 * pair + 1], a[mb], b[2], b[3]);
          }
        }
      }
    }  // mma.sync P V
  }

  cp_async_wait_all();       // no copy may outlive the CTA (Q is still pending when no tile was active)
  allow_dependent_launch();  // the combine (or the next call) may take SMs this grid leaves free

  // ---- Row sums: quad, then the warps of the head group (each summed only its token slice).
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    partial_sum[r] += __shfl_xor_sync(0xffffffffu, partial_sum[r], 1);
    partial_sum[r] += __shfl_xor_sync(0xffffffffu, partial_sum[r], 2);
  }
  if (quad_lane == 0) {
    row_sum_exchange[warp_slice * Config::kHeadBlock + block_row0] = partial_sum[0];
    row_sum_exchange[warp_slice * Config::kHeadBlock + block_row1] = partial_sum[1];
  }
  __syncthreads();

  // Per row (S roles, one thread per row): lse and the factor that normalizes O. Unsplit: out = O / (l +
  // exp(sink - m)) with everything in the base-2 scaled domain, so a +inf (or huge) sink gives an infinite
  // denominator and out = 0, and -inf or no sink plain softmax. Split: the partial is O / l, un-sinked, with
  // lse -inf when empty. The row's maximum entry contributes >= 1, so l == 0 means no valid entry.
  const bool split = cta_writes_partials<Config>(params);
  if (warp_slice == 0 && quad_lane == 0) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int block_row = r == 0 ? block_row0 : block_row1;
      if (block_row >= coords.heads_here) continue;
      float row_sum = 0.f;
#pragma unroll
      for (int s = 0; s < Config::kWarpsPerHeadGroup; ++s)
        row_sum += row_sum_exchange[s * Config::kHeadBlock + block_row];
      finish_head_row(params, coords, block_row, row_sum, running_max[r], split, row_inverse);
    }
  }
  __syncthreads();  // row factors published; every warp is past its last P V

  // O rows (PV roles; Q, K and P are free now for the split stage).
  store_output_rows<Config::kPvRowBlocks, Config::kOutColBlocks, Config::kOutStageStride, Config::kThreads>(
      params, coords, shared, out_acc, pv_first_row, group_row,
      pv_dim_slice * Config::kOutDimsPerWarp + quad_lane * 2, row_inverse, split);
}

}  // namespace smla::detail::decode
