// FP8 E4M3 -> BF16 dequantization of cache rows (spec section 3) on the device.
//
// k = e4m3(q) * 2^(scale_byte - 127). Every e4m3 value is exact in fp16, fp32 and bf16, and the scale is
// a power of two, so the product is exact in bf16: the result is bit-identical to the host codec's
// dequantization. sm_89 and newer convert with their fp8 instruction; sm_80 / sm_86 place the bits
// (common/e4m3_bits.h).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <cstdint>

#include "common/e4m3_bits.h"

namespace smla::detail::fp8 {

// The general conversion, and the fast one on sm_89 and newer (fp8 conversion in hardware): 16 e4m3 bytes ->
// 16 bf16 values times the group's scale (two 16-byte chunks, lower elements in `low`): e4m3 -> fp16 -> fp32
// -> bf16 is exact (e4m3 has 3 mantissa bits), and the power-of-two scale is applied as one bf16 multiply per
// pair, exact inside the range as the fp32 product is (measured on the H100: 1-2.5 % faster decode than two
// fp32 multiplies and a pack). `scale_byte` is the UE8M0 byte: 1..254 -> 2^(byte - 127); 0 and 255 -> 0, as
// scale_from_ue8m0.
__device__ __forceinline__ void dequant_e4m3x16_to_bf16_converted(const uint4& raw, uint32_t scale_byte,
                                                                  uint4& low, uint4& high) {
  const uint16_t scale_bits = scale_byte == 255u ? uint16_t{0} : static_cast<uint16_t>(scale_byte << 7);
  __nv_bfloat162 scale;
  __builtin_memcpy(&scale.x, &scale_bits, sizeof(scale_bits));
  __builtin_memcpy(&scale.y, &scale_bits, sizeof(scale_bits));
  const uint32_t words[4] = {raw.x, raw.y, raw.z, raw.w};
  uint32_t out[8];
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const uint16_t packed = static_cast<uint16_t>(words[i / 2] >> (16 * (i % 2)));
    const __half2_raw halves_raw = __nv_cvt_fp8x2_to_halfraw2(packed, __NV_E4M3);
    const float2 values = __half22float2(__half2(halves_raw));
    const __nv_bfloat162 scaled = __hmul2(__floats2bfloat162_rn(values.x, values.y), scale);
    __builtin_memcpy(&out[i], &scaled, sizeof(uint32_t));
  }
  low = make_uint4(out[0], out[1], out[2], out[3]);
  high = make_uint4(out[4], out[5], out[6], out[7]);
}

// 16 e4m3 bytes -> 16 bf16 values times the group's scale (`low`: bytes 0..7). sm_89 and newer convert
// with their fp8 instruction; older GPUs place the bits (common/e4m3_bits.h): 3 integer operations and one
// or two bf16 multiplies per pair instead of the headers' per-value software conversion, and the general
// path only for a chunk holding a NaN code. Both give the host codec's bits.
__device__ __forceinline__ void dequant_e4m3x16_to_bf16(const uint4& raw, uint32_t scale_byte, uint4& low,
                                                        uint4& high) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 890
  const uint32_t words[4] = {raw.x, raw.y, raw.z, raw.w};
  if (!(has_e4m3_nan(words[0]) || has_e4m3_nan(words[1]) || has_e4m3_nan(words[2]) ||
        has_e4m3_nan(words[3]))) {
    const E4m3ScaleFactors factors = e4m3_scale_factors(scale_byte);
    __nv_bfloat162 first, second;
    __builtin_memcpy(&first.x, &factors.first, sizeof(factors.first));
    __builtin_memcpy(&first.y, &factors.first, sizeof(factors.first));
    __builtin_memcpy(&second.x, &factors.second, sizeof(factors.second));
    __builtin_memcpy(&second.y, &factors.second, sizeof(factors.second));
    uint32_t out[8];
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const uint32_t placed = e4m3x2_to_bf16x2_bits_times_2_pow_minus_120(words[i / 2], i % 2);
      __nv_bfloat162 value;
      __builtin_memcpy(&value, &placed, sizeof(placed));
      value = __hmul2(value, first);
      if (factors.two_steps) value = __hmul2(value, second);
      __builtin_memcpy(&out[i], &value, sizeof(uint32_t));
    }
    low = make_uint4(out[0], out[1], out[2], out[3]);
    high = make_uint4(out[4], out[5], out[6], out[7]);
    return;
  }
#endif
  dequant_e4m3x16_to_bf16_converted(raw, scale_byte, low, high);
}

}  // namespace smla::detail::fp8
