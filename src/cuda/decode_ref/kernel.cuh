// The cuda-ref decode kernel: the whole contract of spec section 4 in the plainest form that runs on any
// sm_80+ GPU. It is the device oracle the tensor-core backend is checked against, so clarity beats speed.
//
// One CTA per (query row, block of 8 heads), 256 threads. Per attended entry, in list order (main, then
// extra): the CTA dequantizes the 512-dim token into shared memory as float (bytes of masked entries are
// never read), warp w computes head w's score with a warp reduction, and every thread folds the token
// into its 2 output dims of the 8 heads with an fp32 online softmax. P is never rounded to bf16.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "common/decode_params.h"
#include "cuda/decode_ref/config.h"
#include "smla/cache.h"

namespace smla::detail::decode_ref {

__device__ __forceinline__ float e4m3_to_float(uint8_t bits) {
  // e4m3 -> fp16 is exact, fp16 -> fp32 is exact: the same route as the host codec.
  const __half_raw half = __nv_cvt_fp8_to_halfraw(static_cast<__nv_fp8_storage_t>(bits), __NV_E4M3);
  return __half2float(__half(half));
}

// Thread `tid` writes dims 2*tid and 2*tid+1 of the dequantized token (spec section 3, read side).
__device__ __forceinline__ void dequantize_token_to_shared(const CacheParams& cache, int64_t slot,
                                                           float* token, int tid) {
  const uint8_t* row = cache.data + slot_row_offset(cache.page_block_size, cache.page_stride_bytes, slot);
  const int dim = kDimsPerThread * tid;
  if (dim < kNopeDim) {
    const uint8_t* footer =
        cache.data + slot_scale_offset(cache.page_block_size, cache.page_stride_bytes, slot);
    const float scale = scale_from_ue8m0(footer[dim / kQuantGroup]);
    // Rows start at multiples of 576 bytes from a 16-byte aligned page: a 2-byte load is aligned.
    const uint16_t pair = *reinterpret_cast<const uint16_t*>(row + dim);
    token[dim] = e4m3_to_float(static_cast<uint8_t>(pair & 0xFFu)) * scale;
    token[dim + 1] = e4m3_to_float(static_cast<uint8_t>(pair >> 8)) * scale;
  } else {
    // Rope element j = dim - 448 lives at bytes 448 + 2j (little-endian bf16); j is even, so 4-byte aligned.
    const uint32_t rope_pair = *reinterpret_cast<const uint32_t*>(row + kNopeDim + 2 * (dim - kNopeDim));
    token[dim] = __uint_as_float(rope_pair << 16);
    token[dim + 1] = __uint_as_float(rope_pair & 0xFFFF0000u);
  }
}

__global__ void __launch_bounds__(kThreads) decode_ref_kernel(const DecodeParams params) {
  __shared__ float q_heads[kHeadsPerBlock][kHeadDim];  // 16 KiB
  __shared__ float token[kHeadDim];                    // the current dequantized K = V row
  __shared__ float scores[kHeadsPerBlock];             // softmax_scale * q.K per head

  const int tid = threadIdx.x;
  const int lane = tid % kWarpSize;
  const int warp = tid / kWarpSize;
  const int head_blocks = head_block_count(params.num_heads, kHeadsPerBlock);
  const int64_t query_row = blockIdx.x / head_blocks;
  const int head_block = static_cast<int>(blockIdx.x % head_blocks);
  const int32_t b = static_cast<int32_t>(query_row / params.seq_q);
  const int32_t t = static_cast<int32_t>(query_row % params.seq_q);
  const int first_head = head_block * kHeadsPerBlock;
  const int heads_here = min(kHeadsPerBlock, params.num_heads - first_head);

  const uint16_t* q_row = params.q + b * params.q_stride_batch + t * params.q_stride_seq;
  for (int i = tid; i < kHeadsPerBlock * kHeadDim; i += kThreads) {
    const int head_offset = i / kHeadDim;
    const int dim = i % kHeadDim;
    q_heads[head_offset][dim] =
        head_offset < heads_here
            ? __uint_as_float(
                  static_cast<uint32_t>(q_row[(first_head + head_offset) * params.q_stride_head + dim]) << 16)
            : 0.f;
  }
  __syncthreads();

  float running_max[kHeadsPerBlock], running_sum[kHeadsPerBlock], acc[kHeadsPerBlock][kDimsPerThread];
#pragma unroll
  for (int h = 0; h < kHeadsPerBlock; ++h) {
    running_max[h] = kInitialRunningMax;
    running_sum[h] = 0.f;
    acc[h][0] = acc[h][1] = 0.f;
  }
  // Every head block sees the same entries; only the first one counts bad slots and lengths, so each bad
  // entry or length of a row is counted once.
  const bool count_bad_slots = head_block == 0 && tid == 0 && params.error_counter != nullptr;

  // Unrolled so `list` names a kernel parameter directly instead of a runtime-selected copy.
#pragma unroll
  for (int list_index = 0; list_index < 2; ++list_index) {
    const IndexListParams& list = list_index == 0 ? params.main : params.extra;
    const int32_t length = list_length(list, b, t, params.seq_q);
    // A length outside [0, width] is clamped (nothing past the row is read) and counted once per list.
    if (count_bad_slots && list_length_out_of_range(list, b, t, params.seq_q)) {
      atomicAdd(params.error_counter, 1u);
    }
    if (length == 0) continue;
    const int32_t* row_indices = list_row(list, b, t);
    for (int32_t j = 0; j < length; ++j) {
      const int32_t slot = row_indices[j];  // same address for every thread: one broadcast load
      if (slot < 0) continue;
      if (slot >= list.cache.num_slots) {
        if (count_bad_slots) atomicAdd(params.error_counter, 1u);
        continue;
      }
      dequantize_token_to_shared(list.cache, slot, token, tid);
      __syncthreads();
      const float my_value0 = token[kDimsPerThread * tid];
      const float my_value1 = token[kDimsPerThread * tid + 1];
      if (warp < heads_here) {
        float dot = 0.f;
#pragma unroll
        for (int k = 0; k < kDotDimsPerLane; ++k) {
          const int dim = lane + k * kWarpSize;  // consecutive lanes, consecutive banks
          dot = fmaf(q_heads[warp][dim], token[dim], dot);
        }
#pragma unroll
        for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
          dot += __shfl_xor_sync(0xFFFFFFFFu, dot, offset);
        }
        if (lane == 0) scores[warp] = dot * params.softmax_scale;
      }
      // After this barrier nobody reads `token` again in this iteration, so the next dequantize may
      // overwrite it; `scores` is rewritten only after the next iteration's first barrier.
      __syncthreads();
#pragma unroll
      for (int h = 0; h < kHeadsPerBlock; ++h) {
        if (h < heads_here) {
          const float score = scores[h];
          const float new_max = fmaxf(running_max[h], score);
          const float rescale = expf(running_max[h] - new_max);
          const float weight = expf(score - new_max);
          running_max[h] = new_max;
          running_sum[h] = running_sum[h] * rescale + weight;
          acc[h][0] = acc[h][0] * rescale + weight * my_value0;
          acc[h][1] = acc[h][1] * rescale + weight * my_value1;
        }
      }
    }
  }

  // Finalize: out = acc / (sum + e^sink), lse = ln(sum) (sink excluded); empty rows: out 0, lse +inf.
#pragma unroll
  for (int h = 0; h < kHeadsPerBlock; ++h) {
    if (h < heads_here) {
      const int head = first_head + h;
      const bool empty = running_sum[h] == 0.f;  // a valid entry adds weight 1 at the running max
      float out0 = 0.f, out1 = 0.f;
      if (!empty) {
        const float sink = params.attn_sink != nullptr ? params.attn_sink[head] : -INFINITY;
        // sink = -inf adds 0; sink = +inf makes the denominator inf and the output 0, as the formula says.
        const float denominator = running_sum[h] + expf(sink - running_max[h]);
        out0 = acc[h][0] / denominator;
        out1 = acc[h][1] / denominator;
      }
      uint16_t* out_head = params.out + b * params.out_stride_batch + t * params.out_stride_seq +
                           head * params.out_stride_head + kDimsPerThread * tid;
      out_head[0] = __bfloat16_as_ushort(__float2bfloat16_rn(out0));
      out_head[1] = __bfloat16_as_ushort(__float2bfloat16_rn(out1));
      if (tid == h && params.lse != nullptr) {
        params.lse[b * params.lse_stride_batch + t * params.lse_stride_seq + head * params.lse_stride_head] =
            empty ? INFINITY : running_max[h] + logf(running_sum[h]);
      }
    }
  }
}

}  // namespace smla::detail::decode_ref
