// Split-KV combine kernel. For one (query row, head) with split results (o_s, L_s):
//   lse = log(sum_s exp(L_s))                    (natural log, sink excluded; +inf when all empty)
//   out = sum_s exp(L_s - M) o_s / (sum_s exp(L_s - M) + exp(sink - M)),  M = max(max_s L_s, finite sink)
// Empty splits (L_s = -inf) are skipped without reading o_s. Shifting by M keeps every exponent <= 0 and
// the denominator >= 1, so no finite sink can overflow it; a +inf sink gives out = 0.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "cuda/combine/kernel.h"
#include "cuda/common/cuda_check.h"
#include "cuda/common/programmatic_launch.cuh"
#include "cuda/common/programmatic_launch.h"
#include "cuda/decode/tile_common.cuh"
#include "smla/cache.h"

namespace smla::detail {
namespace {

constexpr int kCombineThreads = kHeadDim / 4;  // one float4 of the 512 dims per thread

constexpr int ceil_div(int a, int b) { return (a + b - 1) / b; }
constexpr int grouped_combine_threads(int groups) { return groups * kCombineThreads; }

// LoadsInFlight: split lse / partial loads each thread keeps in flight. Few splits use a small count with
// a register cap for 16 (8) blocks per SM: at 2 splits flash-c4 b=64 has 4096 blocks and occupancy decides
// (8 loads in flight at 92 registers, ~5 blocks per SM, measured 55 us against 49.6 for the serial v6
// loop at 32 registers); many splits with few blocks use 8 or 16.
// OneBatch (num_splits <= LoadsInFlight, the launcher's promise; up to 4 splits, except 3-4 over 257..512
// blocks, which like larger counts of few blocks go to split_combine_groups_kernel): every split's lse and
// partial vector are loaded together, one memory round trip after the wait; otherwise the lse pass comes
// first and a split of zero weight is never read, two round trips per LoadsInFlight splits.
// Resident threads per SM of the architecture being compiled: sm_86, sm_87, sm_89 and sm_120 hold 1536,
// the others 2048. The occupancy hint asks for no more blocks than fit (else ptxas drops it with a warning).
#if defined(__CUDA_ARCH__) && \
    (__CUDA_ARCH__ == 860 || __CUDA_ARCH__ == 870 || __CUDA_ARCH__ == 890 || __CUDA_ARCH__ >= 1200)
constexpr int kMaxThreadsPerSm = 1536;
#else
constexpr int kMaxThreadsPerSm = 2048;
#endif
constexpr int combine_min_blocks(int wanted) {
  return wanted * kCombineThreads <= kMaxThreadsPerSm ? wanted : kMaxThreadsPerSm / kCombineThreads;
}

// A (query row, head)'s sums over its splits, for a thread's 4 dims: sum_s w_s o_s with w_s = exp(L_s -
// shift), sum_s exp(L_s - max_lse) (>= 1 when a split is not empty; gives lse) and sum_s w_s.
struct CombineSums {
  float4 accumulated = make_float4(0.f, 0.f, 0.f, 0.f);
  float weight_sum = 0.f;
  float shifted_weight_sum = 0.f;
};

// The shift of every exponent: the largest split lse, or a larger finite sink (the rule at the top).
__device__ __forceinline__ float combine_shift(float sink, float max_lse) {
  return (isfinite(sink) && sink > max_lse) ? sink : max_lse;
}

// The sink of `head`, loaded unconditionally (a valid address stands in when there are no sinks), so that
// no branch join waits for it before the split loads behind it are issued (v40).
__device__ __forceinline__ float load_sink_unconditionally(const DecodeParams& params, int head,
                                                           const float* stand_in) {
  const float loaded = *(params.attn_sink != nullptr ? params.attn_sink + head : stand_in);
  return params.attn_sink != nullptr ? loaded : -INFINITY;
}

// Loads splits first, first + stride, ... (Slots of them) of a (query row, head): each lse (-inf past
// num_splits) and this thread's partial vector. Every load is unconditional, its split clamped into
// [0, num_splits) (a slot past it re-reads the last split's lines): a load under `split < num_splits`
// compiles to a branch around it, and a register copy where the paths join can wait for it before the next
// load issues (10 splits: 3,320 cycles from the sink's arrival to the last partial's with the branches,
// 2,825 without; one L2 round trip: ~630; v40, docs/perf.md). Returns the largest lse.
template <int Slots, class Column>
__device__ __forceinline__ float load_split_batch(const float* split_lse, const float4* partial_rows,
                                                  int64_t split_step, int64_t partial_row_step, int first,
                                                  int stride, int num_splits, Column column,
                                                  float (&lse)[Slots], float4 (&partial)[Slots]) {
  const auto clamped_split = [&](int k) {
    const int split = first + stride * k;
    return split < num_splits ? split : num_splits - 1;
  };
#pragma unroll
  for (int k = 0; k < Slots; ++k) {
    lse[k] = split_lse[clamped_split(k) * split_step];
    partial[k] = partial_rows[clamped_split(k) * partial_row_step + column];
  }
  float max_lse = -INFINITY;
#pragma unroll
  for (int k = 0; k < Slots; ++k) {
    if (first + stride * k >= num_splits) lse[k] = -INFINITY;
    max_lse = fmaxf(max_lse, lse[k]);
  }
  return max_lse;
}

// Adds loaded splits to `sums` in slot order (slots past num_splits hold lse -inf). A split of zero weight
// (empty, or underflowed against the sink) adds nothing, whatever its partial holds.
template <int Slots>
__device__ __forceinline__ void add_loaded_splits(const float (&lse)[Slots], const float4 (&partial)[Slots],
                                                  float max_lse, float shift, CombineSums& sums) {
#pragma unroll
  for (int k = 0; k < Slots; ++k) {
    const float weight = lse[k] == -INFINITY ? 0.f : expf(lse[k] - shift);
    sums.weight_sum += lse[k] == -INFINITY ? 0.f : expf(lse[k] - max_lse);
    sums.shifted_weight_sum += weight;
    if (weight != 0.f) {
      sums.accumulated.x += weight * partial[k].x;
      sums.accumulated.y += weight * partial[k].y;
      sums.accumulated.z += weight * partial[k].z;
      sums.accumulated.w += weight * partial[k].w;
    }
  }
}

// The row's out (this thread's 4 dims, bf16) and, from thread `column` 0, its lse.
__device__ __forceinline__ void store_combined_row(const DecodeParams& params, int batch, int seq, int head,
                                                   unsigned column, const CombineSums& sums, float max_lse,
                                                   float shift, float sink) {
  const bool empty = max_lse == -INFINITY;
  float inverse = 0.f;
  if (!empty && sink != INFINITY) {
    const float sink_weight = isfinite(sink) ? expf(sink - shift) : 0.f;
    inverse = 1.f / (sums.shifted_weight_sum + sink_weight);
  }
  const float4& accumulated = sums.accumulated;
  const uint2 packed = make_uint2(decode::pack_bf16x2(accumulated.x * inverse, accumulated.y * inverse),
                                  decode::pack_bf16x2(accumulated.z * inverse, accumulated.w * inverse));
  uint16_t* out_row = params.out + batch * params.out_stride_batch + seq * params.out_stride_seq +
                      head * params.out_stride_head;
  reinterpret_cast<uint2*>(out_row)[column] = packed;
  if (column == 0) {
    *decode::lse_address(params, batch, seq, head) =
        empty ? decode::empty_row_lse() : max_lse + logf(sums.weight_sum);
  }
}

template <int LoadsInFlight, int MinBlocksPerSm, bool OneBatch>
__global__ void __launch_bounds__(kCombineThreads, combine_min_blocks(MinBlocksPerSm))
    split_combine_kernel(const DecodeParams params, const SplitCombineRows range) {
  // Launched as a programmatic dependent of the decode kernel: the blocks may start while its last CTAs
  // run; wait_for_prerequisite_grids() waits until that grid has completed and its partials are visible. No
  // early trigger for the next call's decode kernel: letting it become resident during the combine measured
  // 11-24 % slower for the DSv4-Flash C4 layers at b = 8 (docs/perf.md, v32b); its CTAs launch when these
  // blocks exit.
  // The block's (query row, head): blockIdx.x = (query_row - range.first_row) * num_heads + head. The
  // one-batch variants, which serve the small calls, work it and the addresses out before the wait (they
  // depend on no memory) and in 32 bits (blockIdx.x is a 32-bit index): after the wait, the 64-bit divisions
  // stood on each block's critical path (v40, docs/perf.md). The multi-batch variants keep the code they had
  // (the same change made pro-c128-1m b = 1, 65 splits, 13 % slower there; not understood).
  int head, batch, seq;
  int64_t range_row;  // the row within the range
  if constexpr (OneBatch) {
    const unsigned row_head = blockIdx.x;
    head = static_cast<int>(row_head % static_cast<unsigned>(params.num_heads));
    const int row_in_range = static_cast<int>(row_head / static_cast<unsigned>(params.num_heads));
    const int row = range.first_row + row_in_range;
    range_row = row_in_range;
    batch = row / params.seq_q;
    seq = row % params.seq_q;
  } else {
    wait_for_prerequisite_grids();
    const int64_t row_head = blockIdx.x;
    head = static_cast<int>(row_head % params.num_heads);
    range_row = row_head / params.num_heads;
    const int64_t query_row = range.first_row + range_row;
    batch = static_cast<int>(query_row / params.seq_q);
    seq = static_cast<int>(query_row % params.seq_q);
  }
  const int num_splits = range.splits;
  const int64_t first_partial = split_combine_partial_index(range, range_row, params.num_heads, head);
  const int64_t split_step = params.num_heads;
  const float* split_lse = params.partial_lse + first_partial;
  const float4* partial_rows = reinterpret_cast<const float4*>(params.partial_out + first_partial * kHeadDim);
  const int64_t partial_row_step = split_step * (kHeadDim / 4);  // float4 per split
  if constexpr (OneBatch) wait_for_prerequisite_grids();
  float sink;
  if constexpr (OneBatch) {
    sink = load_sink_unconditionally(params, head, split_lse);
  } else {
    sink = params.attn_sink != nullptr ? params.attn_sink[head] : -INFINITY;
  }

  // Every thread reads the split lse itself (the 128 threads of a block load the same addresses: one
  // broadcast request per warp, L1 hits on the second pass), kLoadsInFlight independent loads at a time, so
  // a call pays a memory latency per kLoadsInFlight splits instead of one per split (v6: 9.5 us at 10
  // splits). No shared memory and no barrier: at 2 splits and 4096 blocks (flash-c4 b=64) a staged version
  // measured ~2 us slower.
  constexpr int kLoadsInFlight = LoadsInFlight;
  float max_lse = -INFINITY;
  bool empty = true;
  float shift = 0.f;
  float4 accumulated = make_float4(0.f, 0.f, 0.f, 0.f);
  float weight_sum = 0.f;  // sum_s exp(L_s - max_lse), >= 1 when not empty
  float shifted_weight_sum = 0.f;
  if constexpr (OneBatch) {
    // Every split's loads at once (load_split_batch); slots past num_splits get weight 0.
    float lse[kLoadsInFlight];
    float4 partial[kLoadsInFlight];
    max_lse = load_split_batch(split_lse, partial_rows, split_step, partial_row_step, 0, 1, num_splits,
                               threadIdx.x, lse, partial);
    empty = max_lse == -INFINITY;
    shift = combine_shift(sink, max_lse);
    CombineSums sums;
    add_loaded_splits(lse, partial, max_lse, shift, sums);
    accumulated = sums.accumulated;
    weight_sum = sums.weight_sum;
    shifted_weight_sum = sums.shifted_weight_sum;
  } else {
    for (int first_split = 0; first_split < num_splits; first_split += kLoadsInFlight) {
      float lse[kLoadsInFlight];
#pragma unroll
      for (int k = 0; k < kLoadsInFlight; ++k)
        lse[k] = first_split + k < num_splits ? split_lse[(first_split + k) * split_step] : -INFINITY;
#pragma unroll
      for (int k = 0; k < kLoadsInFlight; ++k) max_lse = fmaxf(max_lse, lse[k]);
    }
    empty = max_lse == -INFINITY;
    shift = combine_shift(sink, max_lse);
    // The weighted sum of the partials, in split order, kLoadsInFlight partial vectors in flight per thread.
    // A split of zero weight (empty, or underflowed against the sink) is not read.
    for (int first_split = 0; first_split < num_splits && !empty; first_split += kLoadsInFlight) {
      float weight[kLoadsInFlight];
      float4 partial[kLoadsInFlight];
#pragma unroll
      for (int k = 0; k < kLoadsInFlight; ++k) {
        const float lse =
            first_split + k < num_splits ? split_lse[(first_split + k) * split_step] : -INFINITY;
        weight[k] = lse == -INFINITY ? 0.f : expf(lse - shift);
        weight_sum += lse == -INFINITY ? 0.f : expf(lse - max_lse);
        partial[k] = make_float4(0.f, 0.f, 0.f, 0.f);
        if (weight[k] != 0.f) partial[k] = partial_rows[(first_split + k) * partial_row_step + threadIdx.x];
      }
#pragma unroll
      for (int k = 0; k < kLoadsInFlight; ++k) {
        shifted_weight_sum += weight[k];
        accumulated.x += weight[k] * partial[k].x;
        accumulated.y += weight[k] * partial[k].y;
        accumulated.z += weight[k] * partial[k].z;
        accumulated.w += weight[k] * partial[k].w;
      }
    }
  }
  // The row's store, spelled out rather than through store_combined_row: with that call the multi-batch
  // variants compile to different machine code, and theirs is kept as measured (the note above).
  float inverse = 0.f;
  if (!empty && sink != INFINITY) {
    const float sink_weight = isfinite(sink) ? expf(sink - shift) : 0.f;
    inverse = 1.f / (shifted_weight_sum + sink_weight);
  }
  const __nv_bfloat162 low = __floats2bfloat162_rn(accumulated.x * inverse, accumulated.y * inverse);
  const __nv_bfloat162 high = __floats2bfloat162_rn(accumulated.z * inverse, accumulated.w * inverse);
  uint2 packed;
  __builtin_memcpy(&packed.x, &low, 4);
  __builtin_memcpy(&packed.y, &high, 4);
  uint16_t* out_row = params.out + batch * params.out_stride_batch + seq * params.out_stride_seq +
                      head * params.out_stride_head;
  reinterpret_cast<uint2*>(out_row)[threadIdx.x] = packed;
  if (threadIdx.x == 0) {
    *decode::lse_address(params, batch, seq, head) =
        empty ? decode::empty_row_lse() : max_lse + logf(weight_sum);
  }
}

// The one-batch combine with the splits dealt to Groups groups of 128 threads: group g loads splits g,
// g + Groups, ... (at most Slots each), so a thread waits for 1 / Groups of the requests of the 128-thread
// kernel (its load time scales with the requests a thread waits for, not the bytes: docs/perf.md,
// fresh_partials_read). The groups swap their lse maxima through shared memory, weight their splits by the
// same rule as split_combine_kernel, and hand their sums to group 0, which adds them in group order and
// writes the row.
template <int Groups, int Slots>
__global__ void __launch_bounds__(grouped_combine_threads(Groups), 1)
    split_combine_groups_kernel(const DecodeParams params, const SplitCombineRows range) {
  const unsigned row_head = blockIdx.x;
  const int head = static_cast<int>(row_head % static_cast<unsigned>(params.num_heads));
  const int row_in_range = static_cast<int>(row_head / static_cast<unsigned>(params.num_heads));
  const int row = range.first_row + row_in_range;
  const int batch = row / params.seq_q;
  const int seq = row % params.seq_q;
  const int group = static_cast<int>(threadIdx.x) / kCombineThreads;
  const int column = static_cast<int>(threadIdx.x) % kCombineThreads;
  const int num_splits = range.splits;
  const int64_t first_partial = split_combine_partial_index(range, row_in_range, params.num_heads, head);
  const int64_t split_step = params.num_heads;
  const float* split_lse = params.partial_lse + first_partial;
  const float4* partial_rows = reinterpret_cast<const float4*>(params.partial_out + first_partial * kHeadDim);
  const int64_t partial_row_step = split_step * (kHeadDim / 4);
  static_assert(Groups >= 2, "one group is split_combine_kernel's one-batch variant");
  __shared__ float group_maxima[Groups];
  __shared__ float4 handed_sums[Groups - 1][kCombineThreads];
  __shared__ float handed_weights[Groups - 1][2];  // weight_sum, shifted_weight_sum
  wait_for_prerequisite_grids();
  const float sink = load_sink_unconditionally(params, head, split_lse);
  float lse[Slots];
  float4 partial[Slots];
  const float group_max = load_split_batch(split_lse, partial_rows, split_step, partial_row_step, group,
                                           Groups, num_splits, column, lse, partial);
  if (column == 0) group_maxima[group] = group_max;
  __syncthreads();  // every group's maximum is published
  float max_lse = group_maxima[0];
#pragma unroll
  for (int g = 1; g < Groups; ++g) max_lse = fmaxf(max_lse, group_maxima[g]);
  const float shift = combine_shift(sink, max_lse);
  CombineSums sums;
  add_loaded_splits(lse, partial, max_lse, shift, sums);
  if (group > 0) {
    handed_sums[group - 1][column] = sums.accumulated;
    if (column == 0) {
      handed_weights[group - 1][0] = sums.weight_sum;
      handed_weights[group - 1][1] = sums.shifted_weight_sum;
    }
  }
  __syncthreads();  // groups 1.. handed their sums over
  if (group > 0) return;
#pragma unroll
  for (int g = 0; g < Groups - 1; ++g) {
    const float4 other = handed_sums[g][column];
    sums.accumulated.x += other.x;
    sums.accumulated.y += other.y;
    sums.accumulated.z += other.z;
    sums.accumulated.w += other.w;
    sums.weight_sum += handed_weights[g][0];
    sums.shifted_weight_sum += handed_weights[g][1];
  }
  store_combined_row(params, batch, seq, head, static_cast<unsigned>(column), sums, max_lse, shift, sink);
}

// The grouped kernel of Groups groups with the first compiled slot count of Slots... that holds `slots`
// (ceil(num_splits / Groups); the launcher keeps num_splits <= kMaxOneBatchSplits, which the last holds).
template <int Groups, int Slots, int... MoreSlots>
Status launch_grouped_combine(cudaLaunchConfig_t config, const DecodeParams& params,
                              const SplitCombineRows& range, int slots) {
  if constexpr (sizeof...(MoreSlots) > 0) {
    if (slots > Slots) return launch_grouped_combine<Groups, MoreSlots...>(config, params, range, slots);
  } else {
    if (slots > Slots) return Status::Internal("grouped combine: more splits than its slots hold");
  }
  config.blockDim = dim3(grouped_combine_threads(Groups));
  SMLA_CUDA_CHECK(cudaLaunchKernelEx(&config, split_combine_groups_kernel<Groups, Slots>, params, range));
  return Status::Ok();
}

// One combine launch: the rows of `range`.
Status launch_split_combine_rows(const DecodeParams& params, const SplitCombineRows& range, int device,
                                 cudaStream_t stream) {
  const int64_t blocks = split_combine_blocks(range.rows, params.num_heads);
  // Programmatic dependent launch (sm_90+): the combine's launch overlaps the decode kernel's tail instead
  // of waiting for it to drain. Captured into CUDA graphs as a programmatic edge.
  cudaLaunchConfig_t config = {};
  config.gridDim = dim3(static_cast<unsigned>(blocks));
  config.blockDim = dim3(kCombineThreads);
  config.dynamicSmemBytes = 0;
  config.stream = stream;
  cudaLaunchAttribute attribute = programmatic_launch_attribute();
  config.attrs = &attribute;
  config.numAttrs = device_has_programmatic_launch(device) ? 1 : 0;
  // Blocks = rows x h. Up to 2 splits: 32 registers, 16 blocks per SM (thousands of blocks); more splits
  // with many blocks (flash-c4-mtp b=8: 5 splits, 1024 blocks): 4 loads in flight at 8 blocks per SM (8 in
  // flight at 5 blocks per SM measured 1-2 us slower there); a few hundred blocks: 8 in flight.
  // Few blocks: every split's loads in flight at once, dealt to the groups of the grouped kernel, 2 groups
  // from 3 splits over 257..512 blocks, 4 groups from 5 splits up to 256 (flash-c4 b = 1, 10 splits, 64
  // blocks: 4 groups -5.9 % against 2 groups' -4.5 % for the C4 layers; flash-c4 b = 8, 512 blocks: 2 groups
  // -5.5 %, 4 groups -4.8 %; docs/perf.md, v68; flash-swa b = 8, 4 splits over 512 blocks: -2.6 to -3.9 %,
  // v68c, where 3-4 splits over 128 and 256 blocks lost 2-3 % in 2 groups and keep the 128-thread kernel),
  // each in the fewest compiled slots that hold its share (slots past num_splits re-read the last split: v42
  // measured what redundant loads cost).
  constexpr int64_t kFewBlocks = 512;
  constexpr int64_t kFourGroupBlocks = 256;
  static_assert(kMaxOneBatchSplits <= 4 * 8 && kMaxOneBatchSplits <= 2 * 16,
                "the last slot counts hold them");
  const int splits = range.splits;
  if (splits <= 2) {
    SMLA_CUDA_CHECK(cudaLaunchKernelEx(&config, split_combine_kernel<2, 16, true>, params, range));
  } else if (blocks > kFourGroupBlocks && blocks <= kFewBlocks && splits <= kMaxOneBatchSplits) {
    return launch_grouped_combine<2, 2, 3, 4, 5, 6, 8, 12, 16>(config, params, range, ceil_div(splits, 2));
  } else if (splits <= 4) {
    SMLA_CUDA_CHECK(cudaLaunchKernelEx(&config, split_combine_kernel<4, 8, true>, params, range));
  } else if (blocks > kFewBlocks) {
    SMLA_CUDA_CHECK(cudaLaunchKernelEx(&config, split_combine_kernel<4, 8, false>, params, range));
  } else if (splits <= kMaxOneBatchSplits) {
    return launch_grouped_combine<4, 2, 3, 4, 5, 6, 8>(config, params, range, ceil_div(splits, 4));
  } else {
    SMLA_CUDA_CHECK(cudaLaunchKernelEx(&config, split_combine_kernel<8, 1, false>, params, range));
  }
  return Status::Ok();
}

}  // namespace

Status launch_split_combine(const DecodeParams& params, int device, cudaStream_t stream) {
  // The body's split rows, then the tail's (common/split_grid.h): one launch each, the second a programmatic
  // dependent of the first (so it reads the decode kernel's partials after both have completed).
  SplitCombineRows ranges[2];
  const int count = split_combine_rows(params.batch * params.seq_q, params.body_rows, params.body_splits,
                                       params.num_splits, ranges);
  for (int i = 0; i < count; ++i)
    SMLA_RETURN_IF_ERROR(launch_split_combine_rows(params, ranges[i], device, stream));
  return Status::Ok();
}

}  // namespace smla::detail
