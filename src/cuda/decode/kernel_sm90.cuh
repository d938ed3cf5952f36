// Warp-specialized sparse MLA decode kernel for sm_90a (H100/H200): 64 heads per CTA, one CTA per SM.
//
// The portable kernel (kernel.cuh) runs gather, dequantization, S = Q K^T, softmax and O += P V one after
// another on the same warps, so the SM is never busy with more than one of them. Here the work is split
// by warpgroup and overlapped across tiles:
//   warpgroup 0 (producer): loads tile i+1's cache rows straight into registers (16-byte loads, a whole
//     tile in flight) while it dequantizes tile i into a free K buffer [64 tokens][512] bf16;
//   warpgroups 1, 2 (consumers): wait for a full K buffer, S = Q K^T (wgmma, 32 tokens each), one online
//     softmax (row maxima exchanged through shared memory), O += P V (wgmma, 256 dims each), then hand
//     the buffer back.
// Two K buffers with full/empty mbarriers connect them. Masked entries (past the valid prefix, negative
// or out-of-range slots) are zero rows in K and contribute exactly 0 to the softmax, as in kernel.cuh;
// the math, the lazy rescaling and the epilogue conventions are the same as there.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "common/decode_params.h"
#include "cuda/common/fp8_dequant.cuh"
#include "cuda/common/mma_sm80.cuh"
#include "cuda/common/programmatic_launch.cuh"
#include "cuda/common/sm90_sync.cuh"
#include "cuda/common/sm90_wgmma.cuh"
#include "cuda/decode/async_copy.cuh"
#include "cuda/decode/config_sm90.h"
#include "cuda/decode/tile_common.cuh"

namespace smla::detail::decode::sm90_kernel {

using Config = DecodeConfigSm90;

// Byte offset of 16-byte chunk `chunk` (0..63) of row `row` (0..63) in a 128-byte-swizzle operand tile.
__device__ __forceinline__ uint32_t operand_chunk_offset(int row, int chunk) {
  return static_cast<uint32_t>((chunk / 8) * (64 * 128) + row * 128 + ((chunk % 8) ^ (row & 7)) * 16);
}

// The shared-memory pieces both roles use.
struct SharedMap {
  uint8_t* base;
  __device__ __forceinline__ uint32_t address(size_t offset) const {
    return mma::shared_address(base + offset);
  }
  __device__ __forceinline__ uint32_t k_tile(int stage) const {
    return address(Config::kKOffset + static_cast<size_t>(stage) * Config::kOperandBytes);
  }
  __device__ __forceinline__ uint32_t full_barrier(int stage, int pass) const {
    return address(Config::kFullBarrierOffset + 8 * (stage * Config::kPasses + pass));
  }
  __device__ __forceinline__ uint32_t empty_barrier(int stage) const {
    return address(Config::kEmptyBarrierOffset + 8 * stage);
  }
  __device__ __forceinline__ uint32_t* valid_words(int stage) const {  // bit t: token t of the tile
    return reinterpret_cast<uint32_t*>(base + Config::kValidOffset + stage * (Config::kTileTokens / 8));
  }
};

// ---- Producer --------------------------------------------------------------------------------------

// One pass's worth of a tile in a producer thread's registers: chunk `quarter` of each of the 9 segments
// of one token row, and the token's 8 scale bytes. Zero for masked entries.
struct PassRegisters {
  uint4 chunks[Config::kSegments];
  uint2 scales;
  bool valid;
};

__device__ __forceinline__ int producer_token(int pass) {
  return pass * Config::kTokensPerPass + static_cast<int>(threadIdx.x) / Config::kThreadsPerToken;
}

// The slot of this thread's token of `pass` in the tile; -1 past the valid prefix (masked, not an error).
__device__ __forceinline__ int32_t load_pass_slot(const TileSource& source, int pass) {
  const int32_t position = source.first_position + producer_token(pass);
  return position < source.length ? source.indices[position] : -1;
}

// Issues the loads of this thread's chunks of one pass. An index past the pool inside the valid prefix is
// counted once (head block 0, quarter 0) and masked; masked entries load nothing.
__device__ __forceinline__ void issue_pass_loads(const DecodeParams& params, const TileSource& source,
                                                 int pass, int32_t slot, PassRegisters& regs) {
  const int quarter = static_cast<int>(threadIdx.x) % Config::kThreadsPerToken;
  const bool in_prefix = source.first_position + producer_token(pass) < source.length;
  regs.valid = in_prefix && slot >= 0 && slot < source.num_slots;
  if (quarter == 0 && in_prefix && slot >= source.num_slots && source.counts_errors &&
      params.error_counter != nullptr) {
    atomicAdd(params.error_counter, 1u);
  }
  if (regs.valid) {
    const SlotAddress address = slot_address(source, slot);
    const uint8_t* row = address.row + quarter * 16;
#pragma unroll
    for (int s = 0; s < Config::kSegments; ++s) {
      regs.chunks[s] = sm90::load_global_stream_16(row + s * Config::kThreadsPerToken * 16);
    }
    regs.scales = sm90::load_global_stream_8(address.scales);
  } else {
#pragma unroll
    for (int s = 0; s < Config::kSegments; ++s) regs.chunks[s] = make_uint4(0, 0, 0, 0);
    regs.scales = make_uint2(0, 0);  // scale byte 0 decodes to 0
  }
}

// Registers of one pass -> the token's row of the K tile at shared address `k_tile`.
__device__ __forceinline__ void store_pass(const PassRegisters& regs, int pass, uint32_t k_tile) {
  int quarter = static_cast<int>(threadIdx.x) % Config::kThreadsPerToken;
  int token = producer_token(pass);
  // Opaque here: otherwise the compiler keeps every chunk's store offset (loop-invariant) in registers
  // across the tile loop, and the producer needs 152 registers where it has 136 (v94).
  asm volatile("" : "+r"(token), "+r"(quarter));
#pragma unroll
  for (int s = 0; s < Config::kSegments; ++s) {
    const int part = s * Config::kThreadsPerToken + quarter;  // 16-byte chunk of the raw row
    if (s < Config::kFp8Segments) {
      const uint32_t scale_word = s < 4 ? regs.scales.x : regs.scales.y;
      uint4 low, high;
      fp8::dequant_e4m3x16_to_bf16(regs.chunks[s], (scale_word >> (8 * (s % 4))) & 0xffu, low, high);
      const uint32_t low_address = k_tile + operand_chunk_offset(token, 2 * part);
      const uint32_t high_address = k_tile + operand_chunk_offset(token, 2 * part + 1);
      asm volatile("st.shared.v4.u32 [%0], {%1, %2, %3, %4};\n" ::"r"(low_address), "r"(low.x), "r"(low.y),
                   "r"(low.z), "r"(low.w)
                   : "memory");
      asm volatile("st.shared.v4.u32 [%0], {%1, %2, %3, %4};\n" ::"r"(high_address), "r"(high.x), "r"(high.y),
                   "r"(high.z), "r"(high.w)
                   : "memory");
    } else {
      const int chunk = kNopeDim / 8 + (part - kNopeDim / 16);  // bf16 rope: 8 dims per chunk
      const uint32_t address = k_tile + operand_chunk_offset(token, chunk);
      asm volatile("st.shared.v4.u32 [%0], {%1, %2, %3, %4};\n" ::"r"(address), "r"(regs.chunks[s].x),
                   "r"(regs.chunks[s].y), "r"(regs.chunks[s].z), "r"(regs.chunks[s].w)
                   : "memory");
    }
  }
}

// Valid-entry bits of one pass: lanes 4j of a warp hold its 8 tokens in order.
__device__ __forceinline__ void store_valid_bits(const PassRegisters& regs, int pass, uint32_t* valid_words) {
  const uint32_t lanes_valid = __ballot_sync(0xffffffffu, regs.valid);
  if (threadIdx.x % 32 == 0) {
    uint32_t token_bits = 0;
#pragma unroll
    for (int j = 0; j < 8; ++j) token_bits |= ((lanes_valid >> (j * Config::kThreadsPerToken)) & 1u) << j;
    reinterpret_cast<uint8_t*>(valid_words)[pass * (Config::kTokensPerPass / 8) + threadIdx.x / 32] =
        static_cast<uint8_t>(token_bits);
  }
}

__device__ __forceinline__ void produce(const DecodeParams& params, const CtaCoordinates& coords,
                                        const SharedMap& shared, int tile_begin, int tile_end,
                                        int32_t main_length, int32_t extra_length) {
  PassRegisters regs[Config::kPasses];
  int32_t next_slots[Config::kPasses];
#pragma unroll
  for (int pass = 0; pass < Config::kPasses; ++pass) next_slots[pass] = -1;

  int tile = next_active_tile<Config>(params, tile_begin, tile_end, main_length, extra_length);
  if (tile < tile_end) {
    const TileSource source = tile_source<Config>(params, coords, tile, main_length, extra_length);
#pragma unroll
    for (int pass = 0; pass < Config::kPasses; ++pass)
      issue_pass_loads(params, source, pass, load_pass_slot(source, pass), regs[pass]);
  }
  int next_tile = next_active_tile<Config>(params, tile + 1, tile_end, main_length, extra_length);
  if (next_tile < tile_end) {
    const TileSource source = tile_source<Config>(params, coords, next_tile, main_length, extra_length);
#pragma unroll
    for (int pass = 0; pass < Config::kPasses; ++pass) next_slots[pass] = load_pass_slot(source, pass);
  }

  for (int n = 0; tile < tile_end; ++n) {
    const int stage = n % Config::kStages;
    sm90::mbarrier_wait(shared.empty_barrier(stage), ((n / Config::kStages) & 1) ^ 1);
    const uint32_t k_tile = shared.k_tile(stage);
#pragma unroll
    for (int pass = 0; pass < Config::kPasses; ++pass)
      store_valid_bits(regs[pass], pass, shared.valid_words(stage));
    const bool has_next = next_tile < tile_end;
    const TileSource next_source =
        tile_source<Config>(params, coords, has_next ? next_tile : tile, main_length, extra_length);
#pragma unroll
    for (int pass = 0; pass < Config::kPasses; ++pass) {
      store_pass(regs[pass], pass, k_tile);
      wgmma::fence_shared_for_async_proxy();  // the pass's rows (generic stores) for the consumers' wgmma
      sm90::mbarrier_arrive(shared.full_barrier(stage, pass));
      // The registers are free again: the next tile's loads fly while this one is consumed.
      if (has_next) issue_pass_loads(params, next_source, pass, next_slots[pass], regs[pass]);
    }

    tile = next_tile;
    next_tile = next_active_tile<Config>(params, tile + 1, tile_end, main_length, extra_length);
    if (next_tile < tile_end) {
      const TileSource source = tile_source<Config>(params, coords, next_tile, main_length, extra_length);
#pragma unroll
      for (int pass = 0; pass < Config::kPasses; ++pass) next_slots[pass] = load_pass_slot(source, pass);
    }
  }
}

// ---- Split combine inside a thread-block cluster ----------------------------------------------------
//
// With 2..kMaxClusterSplits splits (config_sm90.h), the splits of one (query row, head block) are the CTAs of
// one cluster (blockIdx.x = row block * splits + split, cluster rank = split). Instead of fp32 partials in
// global memory and a second kernel, each CTA publishes its row statistics (running max m_c, sum l_c; base-2
// scaled domain) in shared memory, computes from all of them the same combination as the combine
// kernel (src/cuda/combine), stages its O rows scaled by its own weight 2^(m_c - M) / (L + sink term),
// and the cluster sums the staged rows over distributed shared memory, each CTA a 1/splits share of
// the (head, 4-dim) vectors, writing bf16 out. Three cluster barriers; every thread of the CTA
// (producer warps included) takes part in them and in the final sum.

// The cluster's final sum: out vectors [rank, rank + splits, ...) of the block's heads.
__device__ __forceinline__ void sum_cluster_rows(const DecodeParams& params, const CtaCoordinates& coords,
                                                 const SharedMap& shared) {
  const uint32_t rank = sm90::cluster_rank();
  const int splits = params.num_splits;
  const uint32_t stage_address = shared.address(0);
  constexpr int kVectorsPerRow = kHeadDim / 4;
  uint16_t* out_rows = out_row_address(params, coords, 0);
  // Every split's vector is loaded before any is summed (kMaxClusterSplits loads in flight, the absent
  // ones predicated off): a distributed shared-memory load costs a few hundred cycles, and a loop that
  // waits for each in turn made the combine cost more than a tile.
  for (int v = static_cast<int>(rank) * Config::kThreads + static_cast<int>(threadIdx.x);
       v < coords.heads_here * kVectorsPerRow; v += splits * Config::kThreads) {
    const int row = v / kVectorsPerRow;
    const int column = v % kVectorsPerRow;
    const uint32_t address =
        stage_address + static_cast<uint32_t>((row * Config::kOutStageStride + column * 4) * 4);
    float4 parts[kMaxClusterSplits];
#pragma unroll
    for (int c = 0; c < kMaxClusterSplits; ++c) {
      parts[c] = c < splits ? sm90::load_cluster_f32x4(sm90::map_to_rank(address, c))
                            : make_float4(0.f, 0.f, 0.f, 0.f);
    }
    float4 sum = parts[0];
#pragma unroll
    for (int c = 1; c < kMaxClusterSplits; ++c) {  // split order, as the combine kernel
      sum.x += parts[c].x;
      sum.y += parts[c].y;
      sum.z += parts[c].z;
      sum.w += parts[c].w;
    }
    uint2 packed;
    packed.x = pack_bf16x2(sum.x, sum.y);
    packed.y = pack_bf16x2(sum.z, sum.w);
    *reinterpret_cast<uint2*>(out_rows + row * params.out_stride_head + column * 4) = packed;
  }
}

// The producer warps' part of the cluster combine: the three barriers and their share of the sum.
__device__ __forceinline__ void producer_cluster_tail(const DecodeParams& params,
                                                      const CtaCoordinates& coords, const SharedMap& shared) {
  sm90::cluster_sync();  // statistics published
  sm90::cluster_sync();  // weighted rows staged
  sum_cluster_rows(params, coords, shared);
  sm90::cluster_sync();  // no CTA leaves while another still reads its shared memory
}

// O * scale[r] of this thread's two accumulator rows as fp32 rows [64][kOutStageStride] at the start of
// shared memory (over Q and K: every wgmma of the CTA is complete), for the in-cluster combine's reads
// (sum_cluster_rows). The other epilogues stage per warp (store_rows_per_warp).
__device__ __forceinline__ void stage_scaled_rows(const SharedMap& shared, const int (&rows)[2],
                                                  const float (&out_acc)[128], const float (&scale)[2],
                                                  int dim_base) {
  float* stage_rows = reinterpret_cast<float*>(shared.base);
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float* stage_row = stage_rows + rows[r] * Config::kOutStageStride;
#pragma unroll
    for (int j = 0; j < Config::kOutDimsPerGroup / 8; ++j) {
      *reinterpret_cast<float2*>(stage_row + dim_base + j * 8) =
          make_float2(out_acc[4 * j + 2 * r] * scale[r], out_acc[4 * j + 2 * r + 1] * scale[r]);
    }
  }
}

// The consumers' part: rows[r], running_max[r] and row_sums[r] of this thread's two accumulator rows;
// `publishes` marks one thread per row (it writes the statistics and, in rank 0, lse); dim_base is the
// first O column of the thread.
__device__ __forceinline__ void combine_in_cluster(const DecodeParams& params, const CtaCoordinates& coords,
                                                   const SharedMap& shared, const int (&rows)[2],
                                                   const float (&running_max)[2], const float (&row_sums)[2],
                                                   const float (&out_acc)[128], bool publishes,
                                                   int dim_base) {
  float2* statistics = reinterpret_cast<float2*>(shared.base + Config::kRowMaxOffset);  // [64] (m, l)
  if (publishes) {
#pragma unroll
    for (int r = 0; r < 2; ++r) statistics[rows[r]] = make_float2(running_max[r], row_sums[r]);
  }
  sm90::cluster_sync();

  const uint32_t rank = sm90::cluster_rank();
  const uint32_t statistics_address = shared.address(Config::kRowMaxOffset);
  float weight[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const uint32_t row_address = statistics_address + rows[r] * 8;
    float2 split_stats[kMaxClusterSplits];  // (m, l) of every split, loaded together
#pragma unroll
    for (int c = 0; c < kMaxClusterSplits; ++c) {
      split_stats[c] = c < params.num_splits ? sm90::load_cluster_f32x2(sm90::map_to_rank(row_address, c))
                                             : make_float2(0.f, 0.f);
    }
    float max_all = -INFINITY;  // over the splits that saw a valid entry (l > 0)
#pragma unroll
    for (int c = 0; c < kMaxClusterSplits; ++c) {
      if (split_stats[c].y > 0.f) max_all = fmaxf(max_all, split_stats[c].x);
    }
    float sum_all = 0.f;
#pragma unroll
    for (int c = 0; c < kMaxClusterSplits; ++c) {
      if (split_stats[c].y > 0.f) sum_all += split_stats[c].y * exp2f(split_stats[c].x - max_all);
    }
    const bool empty = sum_all == 0.f;
    const bool head_present = rows[r] < coords.heads_here;
    const int head = coords.head_base + rows[r];
    // The sink term (0 without a sink or for absent heads: their logit is -inf; +inf sink: out = 0).
    const float sink_log2 = reinterpret_cast<const float*>(shared.base + Config::kSinkOffset)[rows[r]];
    const float denominator = empty ? sum_all : sink_denominator(sum_all, sink_log2, max_all);
    weight[r] = empty || row_sums[r] == 0.f ? 0.f : exp2f(running_max[r] - max_all) / denominator;
    if (publishes && rank == 0 && head_present) {
      *lse_address(params, coords.batch, coords.seq, head) =
          empty ? empty_row_lse() : (max_all + log2f(sum_all)) * kLn2;
    }
  }

  stage_scaled_rows(shared, rows, out_acc, weight, dim_base);
  sm90::cluster_sync();
  sum_cluster_rows(params, coords, shared);
  sm90::cluster_sync();
}

// ---- Consumers -------------------------------------------------------------------------------------

inline constexpr uint32_t kConsumerBarrier = 1;  // named barrier of the two consumer warpgroups

__device__ __forceinline__ void consumer_sync() {
  sm90::named_barrier_sync(kConsumerBarrier, Config::kConsumerThreads);
}

// This warpgroup's partial row sums (each over its 32-token slices, summed over the quad) into the
// exchange, for the other warpgroup to add.
__device__ __forceinline__ void publish_row_sums(const float (&partial_sum)[2], float* row_sum_exchange,
                                                 const int (&rows)[2], int group, int quad_lane) {
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float sum = partial_sum[r];
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    sum += __shfl_xor_sync(0xffffffffu, sum, 2);
    if (quad_lane == 0) row_sum_exchange[group * Config::kHeadBlock + rows[r]] = sum;
  }
}

// The epilogue's stores, per warp: rows 16 w .. 16 w + 15 of warpgroup `group`'s 256 dims, times the
// rows' factors, staged over the warp's 8 KB of the Q region and stored as whole rows: bf16 out rows (512
// bytes a warp instruction) or, split, fp32 partial rows in two passes of 8 rows (1 KB a row, two warp
// instructions). Chunk k of stage row r lies at k ^ (r & 7) (bf16) or k ^ 2 (r & 7) (fp32): for a fragment
// store (fixed column block, lanes (g, c) of rows g and g + 8) the 32 lanes then hit 32 distinct banks.
__device__ __forceinline__ void store_rows_per_warp(const DecodeParams& params, const CtaCoordinates& coords,
                                                    const SharedMap& shared, const float (&out_acc)[128],
                                                    const float (&inverse)[2], int group, int warp_in_group,
                                                    int lane, bool split) {
  constexpr int kWarpRows = 16;
  constexpr int kWarpStageBytes = 8192;
  static_assert(Config::kConsumerWarpgroups * 4 * kWarpStageBytes <= Config::kKOffset - Config::kQOffset,
                "the per-warp stages fit over Q");
  uint8_t* stage = shared.base + Config::kQOffset + (group * 4 + warp_in_group) * kWarpStageBytes;
  const int g = lane / 4;
  const int c = lane % 4;
  const int head_row = warp_in_group * kWarpRows;  // first block row of the warp
  const int dim_base = group * Config::kOutDimsPerGroup;
  if (!split) {
    constexpr int kRowBytes = Config::kOutDimsPerGroup * 2;  // 512
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int row = g + 8 * r;
#pragma unroll
      for (int j = 0; j < Config::kOutDimsPerGroup / 8; ++j) {  // chunk j: dims 8 j .. 8 j + 7
        *reinterpret_cast<uint32_t*>(stage + row * kRowBytes + ((j ^ (row & 7)) * 16) + c * 4) =
            pack_bf16x2(out_acc[4 * j + 2 * r] * inverse[r], out_acc[4 * j + 2 * r + 1] * inverse[r]);
      }
    }
    __syncwarp();
    uint16_t* out_rows = out_row_address(params, coords, 0);
#pragma unroll 4
    for (int row = 0; row < kWarpRows; ++row) {
      if (head_row + row < coords.heads_here) {
        *reinterpret_cast<uint4*>(out_rows + (head_row + row) * params.out_stride_head + dim_base +
                                  lane * 8) =
            *reinterpret_cast<const uint4*>(stage + row * kRowBytes + ((lane ^ (row & 7)) * 16));
      }
    }
    return;
  }
  constexpr int kRowBytes = Config::kOutDimsPerGroup * 4;  // 1 KB
  float* partial_rows = partial_rows_address(params, coords);
#pragma unroll
  for (int r = 0; r < 2; ++r) {  // pass r: rows g + 8 r of the warp
    if (r > 0) __syncwarp();     // the previous pass's rows were read
#pragma unroll
    for (int j = 0; j < Config::kOutDimsPerGroup / 8; ++j) {  // dims 8 j + 2 c, + 1: chunk 2 j + c / 2
      const int chunk = (2 * j + c / 2) ^ (2 * g);
      *reinterpret_cast<float2*>(stage + g * kRowBytes + chunk * 16 + (c % 2) * 8) =
          make_float2(out_acc[4 * j + 2 * r] * inverse[r], out_acc[4 * j + 2 * r + 1] * inverse[r]);
    }
    __syncwarp();
#pragma unroll
    for (int row = 0; row < 8; ++row) {
      const int block_row = head_row + row + 8 * r;
      if (block_row < coords.heads_here) {
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          const int chunk = 32 * half + lane;
          *reinterpret_cast<float4*>(partial_rows + block_row * kHeadDim + dim_base + chunk * 4) =
              *reinterpret_cast<const float4*>(stage + row * kRowBytes + ((chunk ^ (2 * row)) * 16));
        }
      }
    }
  }
}

template <bool ClusterCombine>
__device__ __forceinline__ void consume(const DecodeParams& params, const CtaCoordinates& coords,
                                        const SharedMap& shared, int tile_begin, int tile_end,
                                        int32_t main_length, int32_t extra_length) {
  const int consumer_thread = static_cast<int>(threadIdx.x) - Config::kProducerThreads;  // 0..255
  const int group = consumer_thread / Config::kWarpgroupThreads;                         // warpgroup 0 / 1
  const int warp_in_group = (consumer_thread / 32) % 4;
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const int quad_lane = lane % 4;
  // wgmma accumulator rows of this thread (the same for S and O): rows[r], r = register pair e / 2.
  const int rows[2] = {warp_in_group * 16 + lane / 4, warp_in_group * 16 + lane / 4 + 8};

  float* row_max_exchange = reinterpret_cast<float*>(shared.base + Config::kRowMaxOffset);  // [2][64]
  float* row_sum_exchange = reinterpret_cast<float*>(shared.base + Config::kRowSumOffset);  // [2][64]
  const uint32_t q_tile = shared.address(Config::kQOffset);
  const uint32_t p_tile = shared.address(Config::kPOffset);
  // wgmma descriptors of Q and P, built once; each k step advances them by a constant (advance_descriptor).
  const uint64_t q_descriptor = wgmma::make_descriptor(q_tile, 16, 1024);
  const uint64_t p_descriptor = wgmma::make_descriptor(p_tile, 16, 1024);

  // Q rows [head_base, head_base + 64) (heads >= h as zero rows), loaded by the consumers while the
  // producer's first loads are in flight.
  {
    const uint16_t* q_row = params.q + coords.batch * params.q_stride_batch +
                            coords.seq * params.q_stride_seq + coords.head_base * params.q_stride_head;
    constexpr int kChunksPerRow = kHeadDim / 8;
    for (int c = consumer_thread; c < Config::kHeadBlock * kChunksPerRow; c += Config::kConsumerThreads) {
      const int head = c / kChunksPerRow;
      const int chunk = c % kChunksPerRow;
      const bool present = head < coords.heads_here;
      const uint16_t* source = present ? q_row + head * params.q_stride_head + chunk * 8 : params.q;
      cp_async_16(q_tile + operand_chunk_offset(head, chunk), source, present);
    }
    cp_async_commit();
    // The sink logits of the block's heads, needed only by the epilogue: read now, while Q is in flight,
    // instead of as one more dependent memory round trip after the last tile.
    if (consumer_thread < Config::kHeadBlock) {
      const bool sinks = params.attn_sink != nullptr && consumer_thread < coords.heads_here;
      reinterpret_cast<float*>(shared.base + Config::kSinkOffset)[consumer_thread] =
          sinks ? params.attn_sink[coords.head_base + consumer_thread] * kLog2e : -INFINITY;
    }
    cp_async_wait_all();
    wgmma::fence_shared_for_async_proxy();
    consumer_sync();
  }

  const float scale_log2 = params.softmax_scale * kLog2e;
  float running_max[2] = {kInitialRunningMax, kInitialRunningMax};  // base-2 scaled domain
  float partial_sum[2] = {0.f, 0.f};                                // this warpgroup's token slice only
  float out_acc[128];
#pragma unroll
  for (int i = 0; i < 128; ++i) out_acc[i] = 0.f;

  int tile = next_active_tile<Config>(params, tile_begin, tile_end, main_length, extra_length);
  const bool any_tile = tile < tile_end;
  for (int n = 0; tile < tile_end; ++n) {
    const int stage = n % Config::kStages;
    // Known at the top where the last tile publishes its row sums (one register live through the
    // iteration; the cluster variant has none to spare and finds it at the bottom).
    int next_tile = tile_end;
    if constexpr (!ClusterCombine)
      next_tile = next_active_tile<Config>(params, tile + 1, tile_end, main_length, extra_length);
    // This warpgroup's S reads only the tokens of pass `group`; P V reads all of them (below).
    sm90::mbarrier_wait(shared.full_barrier(stage, group), (n / Config::kStages) & 1);
    const uint32_t k_tile = shared.k_tile(stage);

    // ---- S[64 heads][tokens 32g..32g+31] over 32 k steps; k step ks reads 32 bytes at (ks % 4) * 32 of
    // column block ks / 4 of Q (A) and of the K rows (B, K-major).
    float score[16];
#pragma unroll
    for (int i = 0; i < 16; ++i) score[i] = 0.f;
    const uint64_t k_descriptor =
        wgmma::make_descriptor(k_tile + group * Config::kScoreTokensPerGroup * 128, 16, 1024);
    wgmma::fence_operands();
#pragma unroll
    for (int k_step = 0; k_step < kHeadDim / 16; ++k_step) {
      const uint32_t step_offset = (k_step / 4) * (64 * 128) + (k_step % 4) * 32;
      wgmma::mma_m64n32k16_kk(score, wgmma::advance_descriptor(q_descriptor, step_offset),
                              wgmma::advance_descriptor(k_descriptor, step_offset));
    }
    wgmma::commit_group();
    // P V (below) reads the other pass's rows too: wait for them while S runs.
    sm90::mbarrier_wait(shared.full_barrier(stage, 1 - group), (n / Config::kStages) & 1);
    wgmma::wait_groups<0>();
    wgmma::fence_accumulators(score);

    // ---- Online softmax: row maxima over valid entries (quad, then the other warpgroup's tokens).
    const uint32_t my_valid = shared.valid_words(stage)[group];
    float tile_max[2] = {kInitialRunningMax, kInitialRunningMax};
#pragma unroll
    for (int i = 0; i < 16; ++i) {
      const int token_bit = (i / 4) * 8 + quad_lane * 2 + (i & 1);
      if ((my_valid >> token_bit) & 1u) tile_max[(i / 2) & 1] = fmaxf(tile_max[(i / 2) & 1], score[i]);
    }
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 1));
      tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 2));
      if (quad_lane == 0) row_max_exchange[group * Config::kHeadBlock + rows[r]] = tile_max[r];
    }
    consumer_sync();
    float rescale[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const float row_max = fmaxf(row_max_exchange[rows[r]], row_max_exchange[Config::kHeadBlock + rows[r]]);
      // Both warpgroups see the same maxima, so their running maxima agree.
      rescale[r] = lazy_rescale(row_max, scale_log2, running_max[r]);
      partial_sum[r] *= rescale[r];
    }
    // P = exp2(score * scale_log2 - max) (0 for masked entries) as bf16 into the P tile; the sum uses the
    // fp32 values (lse accuracy, see kernel.cuh).
    uint8_t* p_bytes = shared.base + Config::kPOffset;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      float p[4];
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int token_bit = j * 8 + quad_lane * 2 + (e & 1);
        const bool valid = (my_valid >> token_bit) & 1u;
        p[e] = valid ? softmax_weight(score[4 * j + e], scale_log2, running_max[e / 2]) : 0.f;
      }
      partial_sum[0] += p[0] + p[1];
      partial_sum[1] += p[2] + p[3];
      const int token = group * Config::kScoreTokensPerGroup + j * 8 + quad_lane * 2;
      const int within_chunk_bytes = (token % 8) * 2;
      *reinterpret_cast<uint32_t*>(p_bytes + operand_chunk_offset(rows[0], token / 8) + within_chunk_bytes) =
          pack_bf16x2(p[0], p[1]);
      *reinterpret_cast<uint32_t*>(p_bytes + operand_chunk_offset(rows[1], token / 8) + within_chunk_bytes) =
          pack_bf16x2(p[2], p[3]);
    }
    // After the last tile's P, this warpgroup's row sums are final: published with P (the epilogue of
    // the in-cluster combine keeps its own barrier, which also frees Q and K for its stage).
    if constexpr (!ClusterCombine) {
      if (next_tile >= tile_end) publish_row_sums(partial_sum, row_sum_exchange, rows, group, quad_lane);
    }
    wgmma::fence_shared_for_async_proxy();  // P for the wgmma reads
    consumer_sync();                        // P of both token slices (after the last tile: row sums) complete

    // ---- O rescale (skipped by a warp when none of its rows moved), then O[64][256g..] += P V.
    if (__any_sync(0xffffffffu, rescale[0] != 1.f || rescale[1] != 1.f)) {
#pragma unroll
      for (int i = 0; i < 128; ++i) out_acc[i] *= rescale[(i / 2) & 1];
    }
    const uint64_t v_descriptor = wgmma::make_descriptor(k_tile + group * 4 * (64 * 128), 64 * 128, 1024);
    wgmma::fence_operands();
#pragma unroll
    for (int k_step = 0; k_step < Config::kTileTokens / 16; ++k_step) {
      // Two m64n128 halves (column blocks 4g, 4g+1 and 4g+2, 4g+3), ~70 registers per instruction
      // instead of ~135 for one m64n256 (which would not assemble under a 128-register launch cap).
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        wgmma::mma_m64n128k16_kt(
            reinterpret_cast<float(&)[64]>(out_acc[64 * half]),
            wgmma::advance_descriptor(p_descriptor, k_step * 32),
            wgmma::advance_descriptor(v_descriptor, half * 2 * (64 * 128) + k_step * 16 * 128));
      }
    }
    wgmma::commit_and_wait_all();
    sm90::mbarrier_arrive(shared.empty_barrier(stage));  // this thread is done with K[stage]

    if constexpr (ClusterCombine)
      next_tile = next_active_tile<Config>(params, tile + 1, tile_end, main_length, extra_length);
    tile = next_tile;
  }

  allow_dependent_launch();  // the combine (or the next call) may take SMs this grid leaves free

  // ---- Row sums (quad, then both token slices) and the epilogue (conventions of kernel.cuh). Without a
  // cluster they were published by the last tile's P barrier; a CTA with no active tile publishes zeros.
  if (ClusterCombine || !any_tile) {
    publish_row_sums(partial_sum, row_sum_exchange, rows, group, quad_lane);
    consumer_sync();  // also: both warpgroups are past their last wgmma, so Q and K may be overwritten
  }

  if constexpr (ClusterCombine) {
    float row_sums[2];
#pragma unroll
    for (int r = 0; r < 2; ++r)
      row_sums[r] = row_sum_exchange[rows[r]] + row_sum_exchange[Config::kHeadBlock + rows[r]];
    combine_in_cluster(params, coords, shared, rows, running_max, row_sums, out_acc,
                       group == 0 && quad_lane == 0, group * Config::kOutDimsPerGroup + quad_lane * 2);
    return;
  }

  const bool split = cta_writes_partials<Config>(params);
  float inverse[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int head = coords.head_base + rows[r];
    const float row_sum = row_sum_exchange[rows[r]] + row_sum_exchange[Config::kHeadBlock + rows[r]];
    const bool empty = row_sum == 0.f;
    const float lse = (running_max[r] + log2f(row_sum)) * kLn2;
    const bool writes_lse = group == 0 && quad_lane == 0 && rows[r] < coords.heads_here;
    if (!split) {
      const float sink_log2 = reinterpret_cast<const float*>(shared.base + Config::kSinkOffset)[rows[r]];
      inverse[r] = empty ? 0.f : 1.f / sink_denominator(row_sum, sink_log2, running_max[r]);
      if (writes_lse) *lse_address(params, coords.batch, coords.seq, head) = empty ? empty_row_lse() : lse;
    } else {
      inverse[r] = empty ? 0.f : 1.f / row_sum;
      if (writes_lse) {
        params.partial_lse[split_partial_index(params, coords.query_row, coords.split, head)] =
            empty ? empty_split_lse() : lse;
      }
    }
  }

  // Each warp stages its own rows (16 heads x this warpgroup's 256 dims) in its part of the Q region, free
  // once both warpgroups are past their last S (the last tile's P barrier), and stores them as whole rows of
  // contiguous dims; no barrier across the warpgroups (the other may still be in its last P V, which reads
  // only K and P). 16-byte chunks are XOR-swizzled by row, so the fragments' 4- or 8-byte writes of 8 rows
  // and the row-wide reads are free of bank conflicts.
  store_rows_per_warp(params, coords, shared, out_acc, inverse, group, warp_in_group, lane, split);
}

}  // namespace smla::detail::decode::sm90_kernel

namespace smla::detail::decode {

// ClusterCombine: launched with clusters of params.num_splits CTAs (2..kMaxClusterSplits, config_sm90.h) that
// combine their splits in the kernel (no partials, no combine launch); else split calls write partials.
template <bool ClusterCombine>
__global__ void __launch_bounds__(DecodeConfigSm90::kThreads, 1)
    sparse_mla_decode_sm90_kernel(const DecodeParams params) {
#if SMLA_WGMMA_ENABLED
  using Config = DecodeConfigSm90;
  extern __shared__ __align__(1024) uint8_t shared_bytes[];
  const sm90_kernel::SharedMap shared{shared_bytes};
  const CtaCoordinates coords = cta_coordinates<Config>(params);

  if (threadIdx.x == 0) {
    for (int stage = 0; stage < Config::kStages; ++stage) {
      for (int pass = 0; pass < Config::kPasses; ++pass)
        sm90::mbarrier_init(shared.full_barrier(stage, pass), Config::kProducerThreads);
      sm90::mbarrier_init(shared.empty_barrier(stage), Config::kConsumerThreads);
    }
  }
  // Launched as a programmatic dependent of the previous kernel: the barriers are set up while it drains;
  // everything below reads what it may have written (lengths, indices, Q, the caches, the sinks) or
  // writes what it may still read (out, lse, partials).
  wait_for_prerequisite_grids();
  __syncthreads();  // barriers initialized before any arrive or wait

  const RowTiles row = row_tiles<Config>(params, coords);
  const int32_t main_length = row.main_length;
  const int32_t extra_length = row.extra_length;
  const int tile_begin = row.tile_begin;
  const int tile_end = row.tile_end;

  if (threadIdx.x < Config::kProducerThreads) {
    sm90::release_registers<Config::kProducerRegisters>();
    sm90_kernel::produce(params, coords, shared, tile_begin, tile_end, main_length, extra_length);
    if constexpr (ClusterCombine) sm90_kernel::producer_cluster_tail(params, coords, shared);
  } else {
    sm90::claim_registers<Config::kConsumerRegisters>();
    sm90_kernel::consume<ClusterCombine>(params, coords, shared, tile_begin, tile_end, main_length,
                                         extra_length);
  }
#else
  __trap();
#endif
}

}  // namespace smla::detail::decode
