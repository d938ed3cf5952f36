// What every decode kernel of the tensor-core backend shares (the portable mma.sync kernel, kernel.cuh;
// the 99 KB-class kernel, kernel_compact.cuh; the sm_90a kernel, kernel_sm90.cuh) and the conventions the
// split combine (src/cuda/combine) follows: where a CTA is, which tiles it walks, where a slot's bytes are,
// the lazy online-softmax rescale, and the epilogue rules of spec section 4 (lse addressing, an empty row's
// lse and output, the sink denominator, a head's lse and O factor, the O accumulator's rescale factors and
// its store). One home per convention: a kernel includes this header, never another kernel's file.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "common/decode_params.h"
#include "common/split_grid.h"
#include "smla/cache.h"
#include "smla/decode.h"

namespace smla::detail::decode {

// A barrier of all the CTA's threads. SameCode: every warp reaches it from the same instruction
// (__syncthreads, bar.sync = barrier.sync.aligned); otherwise warps of different roles reach it from their
// own copy of a loop (v116), where PTX requires the barrier without .aligned.
template <bool SameCode>
__device__ __forceinline__ void cta_barrier() {
  if constexpr (SameCode)
    __syncthreads();
  else
    asm volatile("barrier.sync 0;" ::: "memory");
}

// Running maximum before any valid score (spec section 4: finite, so masked rows never produce NaN).
inline constexpr float kInitialRunningMax = -1e30f;

// Compute tiles per 64-entry list tile (1, or 2 for the 32-token tiles of the 99 KB-class kernel).
template <class Config>
inline constexpr int kTilesPerScheduleTile = smla::kTileTokens / Config::kTileTokens;

// ---- Epilogue rules (spec section 4) ------------------------------------------------------------------
// An empty row (no valid entry) has lse = +inf and out = 0; an empty split's partial lse is -inf, so the
// combine gives it zero weight and never reads its partial row.
__device__ __forceinline__ float empty_row_lse() { return __int_as_float(0x7f800000); }
__device__ __forceinline__ float empty_split_lse() { return __int_as_float(0xff800000); }

// Where (batch, seq, head)'s final lse goes (any strides: FlashMLA's transposed [b, h, s_q] view too).
__device__ __forceinline__ float* lse_address(const DecodeParams& params, int batch, int seq, int head) {
  return params.lse + batch * params.lse_stride_batch + seq * params.lse_stride_seq +
         head * params.lse_stride_head;
}

// The softmax denominator of an unsplit row in the base-2 scaled domain: l + exp2(sink_log2 - m). A +inf
// sink gives an infinite denominator (out = 0), a -inf sink (or none: pass -inf) plain softmax; the row's
// largest entry contributes >= 1 to l, so an overflow-free m keeps the sum finite for any finite sink.
__device__ __forceinline__ float sink_denominator(float row_sum, float sink_log2, float running_max) {
  return row_sum + exp2f(sink_log2 - running_max);
}

inline constexpr float kLog2e = 1.4426950408889634f;
inline constexpr float kLn2 = 0.6931471805599453f;
// Growth of a row's maximum (base-2 exponent) tolerated before O and l are rescaled; P stays <= 2^8.
inline constexpr float kLazyRescaleLog2 = 8.f;

// A score in the base-2 scaled domain: score * scale_log2, rounded on its own (__fmul_rn is never fused
// into a following add). The running max is such a product and P subtracts it from another, so the entry
// that set the max gets exactly exp2(0) = 1 and no entry more than 2^kLazyRescaleLog2, at any magnitude.
// With the product fused into the subtraction, its rounding error (half an ulp: 2^20 for scaled scores
// near 2^44) went straight into the exponent, and huge scores gave P = inf or 0 for the row's own max
// (NaN outputs, or a row reported empty; DecodeCuda.FarApartMagnitudesMatchReference).
__device__ __forceinline__ float scaled_score(float score, float scale_log2) {
  return __fmul_rn(score, scale_log2);
}

// 2^x on the special-function unit with a subnormal result flushed to zero (ex2.approx.ftz.f32: one
// MUFU.EX2; exp2f's subnormal-safe form adds a compare, a halving and a squaring on the softmax's chain,
// docs/perf.md v79). Its accuracy is exp2f's (the same MUFU.EX2). Only weights and rescale factors go
// through it: a row's largest entry has weight exactly 1 and every factor multiplies sums that include
// such an entry, so a weight below 2^-126 changes a result by less than 2^-126 of it.
__device__ __forceinline__ float exp2_flush_subnormal(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// One entry's softmax weight against the row's running max (base-2 scaled domain), for a valid entry.
__device__ __forceinline__ float softmax_weight(float score, float scale_log2, float running_max) {
  return exp2_flush_subnormal(scaled_score(score, scale_log2) - running_max);
}

// Lazy rescaling of one row's online softmax: the running max (base-2 scaled domain) moves only when the
// tile's scaled max exceeds it by more than kLazyRescaleLog2, so most tiles skip the O rescale; P then
// stays <= 2^kLazyRescaleLog2, harmless in bf16 and fp32 (the result is the same quotient O / l with a
// different common factor). `tile_max` is the tile's largest valid raw score (scale_log2 > 0, so its
// scaled value is the largest scaled one). Returns the factor O and l are multiplied by (1 when the max
// stays).
__device__ __forceinline__ float lazy_rescale(float tile_max, float scale_log2, float& running_max) {
  const float tile_max_scaled = scaled_score(tile_max, scale_log2);
  float rescale = 1.f;
  if (tile_max_scaled > running_max + kLazyRescaleLog2) {
    rescale = exp2_flush_subnormal(running_max - tile_max_scaled);
    running_max = tile_max_scaled;
  }
  return rescale;
}

__device__ __forceinline__ uint32_t pack_bf16x2(float low, float high) {
  const __nv_bfloat162 packed = __floats2bfloat162_rn(low, high);
  uint32_t bits;
  __builtin_memcpy(&bits, &packed, sizeof(bits));
  return bits;
}

// Where the CTA is: which row, which heads, which tiles.
struct CtaCoordinates {
  int batch, seq, query_row, split, head_base, heads_here;
  // A row's device errors (bad lengths, indices past the pool) are counted by its first head block only,
  // so that each is counted once per row, not once per head block.
  __device__ __forceinline__ bool counts_row_errors() const { return head_base == 0; }
};

// Row `block_row` of a CTA's head block in out (bf16 [b, s_q, h, 512], any strides).
__device__ __forceinline__ uint16_t* out_row_address(const DecodeParams& params, const CtaCoordinates& coords,
                                                     int block_row) {
  return params.out + coords.batch * params.out_stride_batch + coords.seq * params.out_stride_seq +
         (coords.head_base + block_row) * params.out_stride_head;
}

// Whether this CTA's row is split (it writes partials for the combine) rather than unsplit (it writes out
// and lse). From blockIdx and the parameters alone, so that the epilogue recomputes it instead of keeping
// a register live through the tile loop (common/split_grid.h).
template <class Config>
__device__ __forceinline__ bool cta_writes_partials(const DecodeParams& params) {
  return split_grid_cta_writes_partials(blockIdx.x, split_grid_of(params, Config::kHeadBlock));
}

template <class Config>
__device__ __forceinline__ CtaCoordinates cta_coordinates(const DecodeParams& params) {
  CtaCoordinates coords;
  // The grid's order, body and tail: common/split_grid.h. Rows go in x (no 65535 limit).
  const SplitGrid grid = split_grid_of(params, Config::kHeadBlock);
  const SplitGridPosition position = split_grid_cta_position(blockIdx.x, grid);
  const unsigned row_block = position.row_block;
  coords.split = static_cast<int>(position.split);
  if constexpr (Config::kHeadBlock == 32) {
    // mma99-h32 keeps the run-time divisions: with the divisors below its tile loop compiled 54
    // instructions longer (sm_90a; docs/perf.md, v78b), and its CTAs walk many tiles, so the prologue
    // matters less.
    const unsigned head_blocks = static_cast<unsigned>(grid.head_blocks);
    coords.query_row = static_cast<int>(row_block / head_blocks);
    coords.batch = coords.query_row / params.seq_q;
    coords.seq = coords.query_row % params.seq_q;
    coords.head_base = static_cast<int>(row_block % head_blocks) * Config::kHeadBlock;
  } else {
    // Divisions by the host's divisors (docs/perf.md, v78b): multiplies and shifts, not run-time division
    // chains, on the path of the small calls' CTAs to their first load.
    const SplitGridRow row = split_grid_row_of(row_block, params);
    coords.query_row = static_cast<int>(row.query_row);
    coords.batch = static_cast<int>(row.batch);
    coords.seq = static_cast<int>(row.seq);
    coords.head_base = static_cast<int>(row.head_block) * Config::kHeadBlock;
  }
  coords.heads_here = min(Config::kHeadBlock, params.num_heads - coords.head_base);
  return coords;
}

// A CTA's share of its query row: the valid prefixes of the two lists (read on the device, so graph
// replays see new lengths) and the CTA's tile range. Lengths outside [0, width] are clamped by
// list_length and counted once per (row, list) (docs/safety.md).
// tile_begin / tile_end count the kernel's compute tiles (Config::kTileTokens entries each): the lists
// are made of 64-token tiles (spec section 5), which a kernel with 32-token tiles walks in two steps; the
// split schedule counts 64-token tiles, or 32-token ones for a half-tile plan (schedule.cpp).
struct RowTiles {
  int32_t main_length, extra_length;
  int tile_begin, tile_end;
};

// The CTA's compute tiles [begin, end) of its row, from the split schedule alone (no list length needed).
struct TileRange {
  int begin, end;
};

template <class Config>
__device__ __forceinline__ TileRange split_tile_range(const DecodeParams& params,
                                                      const CtaCoordinates& coords) {
  // The body's CTAs walk body_tiles_per_split tiles, the tail's tiles_per_split (split_grid.h).
  const SplitTileRange schedule = split_grid_cta_tiles(blockIdx.x, static_cast<uint32_t>(coords.split),
                                                       split_grid_of(params, Config::kHeadBlock));
  // Compute tiles per schedule tile: 1 for the 64-entry kernels (whose plans always split in 64-entry
  // tiles); 2, or 1 for a half-tile schedule, for the 32-entry kernel.
  int compute_tiles_per_schedule_tile = 1;
  if constexpr (Config::kTileTokens < smla::kTileTokens)
    compute_tiles_per_schedule_tile = params.split_tile_tokens / Config::kTileTokens;
  return {schedule.begin * compute_tiles_per_schedule_tile, schedule.end * compute_tiles_per_schedule_tile};
}

template <class Config>
__device__ __forceinline__ RowTiles row_tiles(const DecodeParams& params, const CtaCoordinates& coords) {
  RowTiles row;
  // Both lengths are loaded before either is used, so their memory round trips overlap.
  const int32_t raw_main = raw_list_length(params.main, coords.batch, coords.seq, params.seq_q);
  const int32_t raw_extra = raw_list_length(params.extra, coords.batch, coords.seq, params.seq_q);
  row.main_length = clamp_list_length(params.main, raw_main);
  row.extra_length = clamp_list_length(params.extra, raw_extra);
  if (threadIdx.x == 0 && coords.counts_row_errors() && coords.split == 0 &&
      params.error_counter != nullptr) {
    const uint32_t bad_lengths = static_cast<uint32_t>(raw_list_length_out_of_range(params.main, raw_main)) +
                                 static_cast<uint32_t>(raw_list_length_out_of_range(params.extra, raw_extra));
    if (bad_lengths != 0) atomicAdd(params.error_counter, bad_lengths);
  }
  const TileRange range = split_tile_range<Config>(params, coords);
  row.tile_begin = range.begin;
  row.tile_end = range.end;
  return row;
}

// This (query row, split)'s partial_out rows of the CTA's heads, from head_base on (kHeadDim floats a row).
__device__ __forceinline__ float* partial_rows_address(const DecodeParams& params,
                                                       const CtaCoordinates& coords) {
  return params.partial_out +
         split_partial_index(params, coords.query_row, coords.split, coords.head_base) * kHeadDim;
}

// Split epilogue: the block's staged fp32 rows (stride StageStride floats) to this (query row, split)'s
// partial_out rows [head_base, head_base + heads_here), which are contiguous there: whole float4s, the
// vectors thread `first`, `first + step`, ... of the threads that share the copy.
template <int StageStride>
__device__ __forceinline__ void store_partial_rows(const DecodeParams& params, const CtaCoordinates& coords,
                                                   const float* stage, int first, int step) {
  float* partial_rows = partial_rows_address(params, coords);
  constexpr int kVectorsPerRow = kHeadDim / 4;
  for (int v = first; v < coords.heads_here * kVectorsPerRow; v += step) {
    const int row = v / kVectorsPerRow;
    const int column = v % kVectorsPerRow;
    reinterpret_cast<float4*>(partial_rows)[v] =
        *reinterpret_cast<const float4*>(stage + row * StageStride + column * 4);
  }
}

// The end of one head's online softmax (spec section 4), for the thread that holds the head's row sum l
// and running max m (base-2 scaled domain): writes the head's lse and publishes the factor that normalizes
// its O row in row_inverse[block_row]. Unsplit: out = O / (l + exp(sink - m)), so a +inf (or huge) sink
// gives an infinite denominator and out = 0, and -inf or no sink plain softmax. Split: the partial is O / l,
// un-sinked, with lse -inf when empty. The row's maximum entry contributes >= 1, so l == 0 means no valid
// entry.
__device__ __forceinline__ void finish_head_row(const DecodeParams& params, const CtaCoordinates& coords,
                                                int block_row, float row_sum, float running_max, bool split,
                                                float* row_inverse) {
  const int head = coords.head_base + block_row;
  const bool empty = row_sum == 0.f;
  const float lse = (running_max + log2f(row_sum)) * kLn2;
  if (!split) {
    const float sink_log2 = params.attn_sink != nullptr ? params.attn_sink[head] * kLog2e : -INFINITY;
    row_inverse[block_row] = empty ? 0.f : 1.f / sink_denominator(row_sum, sink_log2, running_max);
    *lse_address(params, coords.batch, coords.seq, head) = empty ? empty_row_lse() : lse;
  } else {
    row_inverse[block_row] = empty ? 0.f : 1.f / row_sum;
    params.partial_lse[split_partial_index(params, coords.query_row, coords.split, head)] =
        empty ? empty_split_lse() : lse;
  }
}

// The O accumulator of an mma.sync kernel: row block mb of a warp's fp32 C fragments holds block rows
// first_row + 16 mb + group_row (+ 8 for elements 2, 3), column block j dims dim_base + 8 j (dim_base
// includes the lane's quad offset).

// The lazy O rescale, for the rows a lane holds: factor[mb][r] = row_rescale of block row first_row + 16 mb
// + group_row + 8 r; returns whether any row of the warp moved its max (else every factor is exactly 1 and
// the warp skips the multiplies).
template <int RowBlocks>
__device__ __forceinline__ bool output_row_factors(float (&factor)[RowBlocks][2], const float* row_rescale,
                                                   int first_row, int group_row) {
  constexpr int kRowsPerBlock = 16;
  bool any_rescale = false;
#pragma unroll
  for (int mb = 0; mb < RowBlocks; ++mb) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      factor[mb][r] = row_rescale[first_row + mb * kRowsPerBlock + group_row + 8 * r];
      any_rescale |= factor[mb][r] != 1.f;
    }
  }
  return __any_sync(0xffffffffu, any_rescale);
}

// The lazy O rescale itself: the accumulator's rows times their factors of output_row_factors, skipped by a
// warp none of whose rows moved its max.
template <int RowBlocks, int ColBlocks>
__device__ __forceinline__ void rescale_output_rows(float (&acc)[RowBlocks][ColBlocks][4],
                                                    const float* row_rescale, int first_row, int group_row) {
  float factor[RowBlocks][2];
  if (output_row_factors(factor, row_rescale, first_row, group_row)) {
#pragma unroll
    for (int mb = 0; mb < RowBlocks; ++mb) {
#pragma unroll
      for (int j = 0; j < ColBlocks; ++j) {
        acc[mb][j][0] *= factor[mb][0];
        acc[mb][j][1] *= factor[mb][0];
        acc[mb][j][2] *= factor[mb][1];
        acc[mb][j][3] *= factor[mb][1];
      }
    }
  }
}

// The epilogue of the O accumulator (C fragment layout: column block j at dims dim_base + 8 j): each row
// (rows >= heads_here skipped) times its row_inverse factor, bf16 straight to out (unsplit), or fp32 staged
// in shared memory (split; rows of StageStride floats over the kernel's free tiles) and then, after a CTA
// barrier, stored as whole 16-byte vectors of contiguous heads by all Threads threads (store_partial_rows).
// The 99 KB-class kernels, whose lanes hold contiguous dims, store per warp instead (kernel_compact.cuh).
template <int RowBlocks, int ColBlocks, int StageStride, int Threads>
__device__ __forceinline__ void store_output_rows(const DecodeParams& params, const CtaCoordinates& coords,
                                                  uint8_t* shared,
                                                  const float (&acc)[RowBlocks][ColBlocks][4], int first_row,
                                                  int group_row, int dim_base, const float* row_inverse,
                                                  bool split) {
  constexpr int kRowsPerBlock = 16;
  constexpr int kColBlockStride = 8;
  float* stage = reinterpret_cast<float*>(shared);
#pragma unroll
  for (int mb = 0; mb < RowBlocks; ++mb) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int block_row = first_row + mb * kRowsPerBlock + group_row + 8 * r;
      if (block_row >= coords.heads_here) continue;
      const float inverse = row_inverse[block_row];
      if (!split) {
        uint16_t* out_row = out_row_address(params, coords, block_row);
#pragma unroll
        for (int j = 0; j < ColBlocks; ++j) {
          *reinterpret_cast<uint32_t*>(out_row + dim_base + j * kColBlockStride) =
              pack_bf16x2(acc[mb][j][2 * r] * inverse, acc[mb][j][2 * r + 1] * inverse);
        }
      } else {
        float* stage_row = stage + block_row * StageStride;
#pragma unroll
        for (int j = 0; j < ColBlocks; ++j) {
          *reinterpret_cast<float2*>(stage_row + dim_base + j * kColBlockStride) =
              make_float2(acc[mb][j][2 * r] * inverse, acc[mb][j][2 * r + 1] * inverse);
        }
      }
    }
  }
  if (split) {
    __syncthreads();  // every row of the block is staged
    store_partial_rows<StageStride>(params, coords, stage, threadIdx.x, Threads);
  }
}

// One index list's view for a tile: the list fields picked out of params (no address of the kernel
// parameter is taken, so params stay in the constant bank).
struct TileSource {
  const uint8_t* cache_data;
  int64_t page_block_size, page_stride_bytes, num_slots;
  FastDivisor page_of_slot;
  const int32_t* indices;  // the row's index list
  int32_t first_position;  // list position of the tile's entry 0
  int32_t length;          // valid prefix of the list
  bool counts_errors;      // CtaCoordinates::counts_row_errors: indices past the pool counted once per row
};

// `list` is params.main or params.extra named directly by the caller (a reference into the kernel
// parameter that inlining resolves to constant-bank loads; selecting between the two at run time would
// copy params to local memory).
__device__ __forceinline__ TileSource list_tile_source(const IndexListParams& list,
                                                       const CtaCoordinates& coords, int32_t first_position,
                                                       int32_t length) {
  return {list.cache.data,
          list.cache.page_block_size,
          list.cache.page_stride_bytes,
          list.cache.num_slots,
          list.cache.page_of_slot,
          list_row(list, coords.batch, coords.seq),
          first_position,
          length,
          coords.counts_row_errors()};
}

template <class Config>
__device__ __forceinline__ TileSource tile_source(const DecodeParams& params, const CtaCoordinates& coords,
                                                  int tile, int32_t main_length, int32_t extra_length) {
  const int main_tiles = params.main_tiles * kTilesPerScheduleTile<Config>;
  if (tile < main_tiles)
    return list_tile_source(params.main, coords, tile * Config::kTileTokens, main_length);
  return list_tile_source(params.extra, coords, (tile - main_tiles) * Config::kTileTokens, extra_length);
}

// The cache addresses of a slot's data row and footer scale entry (spec section 2), for a valid slot:
// 0 <= slot < num_slots, and slots are int32, so the page split is 32-bit and a host-computed
// multiply-shift instead of a 64-bit division on the gather's critical path.
struct SlotAddress {
  const uint8_t* row;
  const uint8_t* scales;
};

__device__ __forceinline__ SlotAddress slot_address(const TileSource& source, int32_t slot) {
  const uint32_t page = source.page_of_slot.divide(static_cast<uint32_t>(slot));
  const uint32_t in_page = static_cast<uint32_t>(slot) - page * source.page_of_slot.divisor;
  const uint8_t* page_base = source.cache_data + static_cast<int64_t>(page) * source.page_stride_bytes;
  return {
      page_base + static_cast<int64_t>(in_page) * kRowBytes,
      page_base + page_footer_offset(source.page_block_size) + static_cast<int64_t>(in_page) * kScaleBytes};
}

// First tile in [tile, tile_end) with at least one list position inside its list's valid prefix, else
// tile_end. Uniform across the CTA.
template <class Config>
__device__ __forceinline__ int next_active_tile(const DecodeParams& params, int tile, int tile_end,
                                                int32_t main_length, int32_t extra_length) {
  const int main_tiles = params.main_tiles * kTilesPerScheduleTile<Config>;
  for (; tile < tile_end; ++tile) {
    const bool is_main = tile < main_tiles;
    const int32_t first_position = (is_main ? tile : tile - main_tiles) * Config::kTileTokens;
    if (first_position < (is_main ? main_length : extra_length)) return tile;
  }
  return tile_end;
}

}  // namespace smla::detail::decode
