// GPU quantize-and-append (spec section 3), bit-identical to the host codec (src/cache/codec_host.cpp).
//
// One warp per token: lane l owns dims 2l and 2l+1 of every 64-dim group, so a group's absolute
// maximum is one warp reduction, and the rope half (64 bf16 = 128 bytes) is one 4-byte store per lane.
// The scale rule is the host's integer rule (exact ceil(log2(amax / 448)) from the fp32 bits), never
// log2f/ceilf, whose last-ulp behaviour may differ between libm and CUDA.
#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "common/cuda_ops.h"
#include "cuda/common/cuda_check.h"
#include "smla/cache.h"

namespace smla::detail {
namespace {

constexpr int kWarpSize = 32;
constexpr int kAppendWarpsPerBlock = 8;  // 256 threads: 8 tokens per CTA
constexpr int kAppendThreads = kAppendWarpsPerBlock * kWarpSize;
constexpr int kAppendMaxBlocks = 65535;  // grid-stride loop beyond this
constexpr float kMinGroupAmax = 1e-4f;   // spec section 3 step 1
constexpr float kE4m3Max = 448.f;
constexpr int kScaleExponentBias = 127;  // UE8M0
constexpr int kMaxScaleExponent = 127;   // byte 254; 255 is reserved (never written)

struct AppendParams {
  uint8_t* cache = nullptr;
  int64_t page_block_size = 1;
  int64_t page_stride_bytes = 0;
  int64_t num_slots = 0;
  const uint16_t* tokens = nullptr;  // bf16 bits, [num_tokens, token_stride]
  int64_t num_tokens = 0;
  int64_t token_stride = 0;
  const int32_t* slots = nullptr;
  uint32_t* bad_slot_counter = nullptr;  // may be null
};

__device__ __forceinline__ float bf16_bits_to_float_device(uint16_t bits) {
  return __uint_as_float(static_cast<uint32_t>(bits) << 16);
}

// Exponent e with 2^e = 2^ceil(log2(amax / 448)); the device twin of the host's group_scale_exponent.
// frexp's contract written on the fp32 bits: ratio = m * 2^E with m in [0.5, 1); a power of two (m ==
// 0.5) has ceil(log2) = E - 1, anything else E. ratio >= 1e-4 / 448 is a normal fp32, so the biased
// exponent field gives E directly.
__device__ __forceinline__ int group_scale_exponent_device(float group_amax) {
  const float amax = fmaxf(group_amax, kMinGroupAmax);
  if (isinf(amax)) return kMaxScaleExponent;  // NaN cannot reach here: fmaxf drops NaN operands
  const float ratio = __fdiv_rn(amax, kE4m3Max);
  const uint32_t bits = __float_as_uint(ratio);
  const int frexp_exponent = static_cast<int>((bits >> 23) & 0xFFu) - 126;  // m in [0.5, 1)
  const bool is_power_of_two = (bits & 0x7FFFFFu) == 0u;
  const int scale_exponent = is_power_of_two ? frexp_exponent - 1 : frexp_exponent;
  return scale_exponent > kMaxScaleExponent ? kMaxScaleExponent : scale_exponent;
}

__device__ __forceinline__ uint8_t float_to_e4m3_device(float value) {
  return static_cast<uint8_t>(__nv_cvt_float_to_fp8(value, __NV_SATFINITE, __NV_E4M3));
}

__global__ void __launch_bounds__(kAppendThreads) append_tokens_kernel(const AppendParams params) {
  const int lane = threadIdx.x % kWarpSize;
  const int64_t warps_in_grid = static_cast<int64_t>(gridDim.x) * kAppendWarpsPerBlock;
  for (int64_t token = static_cast<int64_t>(blockIdx.x) * kAppendWarpsPerBlock + threadIdx.x / kWarpSize;
       token < params.num_tokens; token += warps_in_grid) {
    const int32_t slot = params.slots[token];
    if (slot < 0) continue;  // "no token" (warp-uniform)
    if (slot >= params.num_slots) {
      if (lane == 0 && params.bad_slot_counter != nullptr) atomicAdd(params.bad_slot_counter, 1u);
      continue;
    }
    const uint16_t* token_bf16 = params.tokens + token * params.token_stride;
    uint8_t* row = params.cache + slot_row_offset(params.page_block_size, params.page_stride_bytes, slot);
    uint8_t* footer =
        params.cache + slot_scale_offset(params.page_block_size, params.page_stride_bytes, slot);

    uint64_t footer_bytes = 0;  // 7 scale bytes, pad byte 0 (only lane 0's copy is stored)
#pragma unroll
    for (int group = 0; group < kNumScaleGroups; ++group) {
      const int dim = group * kQuantGroup + 2 * lane;
      const float x0 = bf16_bits_to_float_device(token_bf16[dim]);
      const float x1 = bf16_bits_to_float_device(token_bf16[dim + 1]);
      // fmaxf ignores NaN operands, like the host's std::fmax, so the order of the reduction
      // cannot change the result.
      float group_amax = fmaxf(fmaxf(0.f, fabsf(x0)), fabsf(x1));
#pragma unroll
      for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
        group_amax = fmaxf(group_amax, __shfl_xor_sync(0xFFFFFFFFu, group_amax, offset));
      }
      const int scale_exponent = group_scale_exponent_device(group_amax);
      // ldexpf is exact; for e = 127 the factor is the subnormal 2^-127, as on the host (no FTZ here).
      const float inverse_scale = ldexpf(1.0f, -scale_exponent);
      const uint16_t pair = static_cast<uint16_t>(float_to_e4m3_device(__fmul_rn(x0, inverse_scale))) |
                            static_cast<uint16_t>(float_to_e4m3_device(__fmul_rn(x1, inverse_scale)) << 8);
      // Row bases are multiples of 576 bytes from a 16-byte aligned page, so 2-byte stores are aligned.
      *reinterpret_cast<uint16_t*>(row + dim) = pair;
      footer_bytes |= static_cast<uint64_t>(scale_exponent + kScaleExponentBias) << (8 * group);
    }
    // Rope dims 448..511: raw bf16 bits, 2 per lane, little-endian (4-byte aligned: 448 + 4*lane).
    const uint32_t rope_pair = static_cast<uint32_t>(token_bf16[kNopeDim + 2 * lane]) |
                               (static_cast<uint32_t>(token_bf16[kNopeDim + 2 * lane + 1]) << 16);
    *reinterpret_cast<uint32_t*>(row + kNopeDim + 4 * lane) = rope_pair;
    // The footer starts at P*576 (a multiple of 8) and entries are 8 bytes: one aligned 8-byte store.
    if (lane == 0) *reinterpret_cast<uint64_t*>(footer) = footer_bytes;
  }
}

}  // namespace

Status append_tokens_cuda(const CacheLayout& cache, const uint16_t* tokens_bf16, int64_t num_tokens,
                          int64_t token_stride, const int32_t* slots, uint32_t* bad_slot_counter,
                          void* stream) {
  if (num_tokens <= 0) return Status::Ok();
  AppendParams params;
  params.cache = static_cast<uint8_t*>(cache.data);
  params.page_block_size = cache.page_block_size;
  params.page_stride_bytes = cache.page_stride_bytes;
  params.num_slots = cache_num_slots(cache);
  params.tokens = tokens_bf16;
  params.num_tokens = num_tokens;
  params.token_stride = token_stride;
  params.slots = slots;
  params.bad_slot_counter = bad_slot_counter;
  const int64_t blocks_needed = (num_tokens + kAppendWarpsPerBlock - 1) / kAppendWarpsPerBlock;
  const int blocks = static_cast<int>(std::min<int64_t>(blocks_needed, kAppendMaxBlocks));
  append_tokens_kernel<<<blocks, kAppendThreads, 0, static_cast<cudaStream_t>(stream)>>>(params);
  SMLA_CUDA_CHECK_LAUNCH("append_tokens_kernel");
  return Status::Ok();
}

}  // namespace smla::detail
