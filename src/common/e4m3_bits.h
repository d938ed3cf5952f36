// Exact e4m3 -> bf16 dequantization by placing bits (spec section 3), for GPUs without an fp8 conversion
// instruction (sm_80 / sm_86: the CUDA headers convert each value in software there, with a loop for
// subnormal codes, about 45 instructions a value). Host and device code, so that the host tests check
// every code and scale byte against the codec.
//
// An e4m3 code s eeee mmm placed as bf16 bits s 0000eeee mmm0000 is its value times 2^-120, exactly, for
// every non-NaN code: normal codes 2^(e - 7) (1 + m/8) become 2^(e - 127) (1 + m/8), subnormal codes
// m 2^-9 become the bf16 subnormal m 2^-129, zeros stay zeros. The dequantized value e4m3 * 2^(S - 127)
// is then one bf16 multiply by 2^(S - 7) (one rounding, as the direct product), or, where 2^(S - 7) is not
// a bf16 (S > 134), by 2^120 (exact) and then by 2^(S - 127). The NaN codes 0x7f / 0xff would become finite
// values this way: callers detect them (has_e4m3_nan) and convert such words the general way.
#pragma once

#include <cstdint>

#include "smla/cache.h"

namespace smla::detail::fp8 {

// The bf16x2 bits of bytes 2 pair and 2 pair + 1 of `word` (lower byte in the low half), each sign-extended
// to 16 bits: prmt.b32 with sign replication on the device.
SMLA_HOST_DEVICE inline uint32_t sign_extended_byte_pair(uint32_t word, int pair) {
#ifdef __CUDA_ARCH__
  uint32_t out;
  asm("prmt.b32 %0, %1, 0, %2;" : "=r"(out) : "r"(word), "r"(pair == 0 ? 0x9180u : 0xB3A2u));
  return out;
#else
  const auto extend = [](uint32_t byte) {
    return static_cast<uint32_t>(static_cast<uint16_t>(static_cast<int16_t>(static_cast<int8_t>(byte))));
  };
  return extend((word >> (16 * pair)) & 0xffu) | (extend((word >> (16 * pair + 8)) & 0xffu) << 16);
#endif
}

// bf16x2 bits of e4m3 codes 2 pair and 2 pair + 1 of `word`, times 2^-120 (exact for non-NaN codes).
SMLA_HOST_DEVICE inline uint32_t e4m3x2_to_bf16x2_bits_times_2_pow_minus_120(uint32_t word, int pair) {
  return (sign_extended_byte_pair(word, pair) << 4) & 0x87f087f0u;
}

// Whether a byte of `word` is an e4m3 NaN code (0x7f or 0xff): its low 7 bits + 1 carry into bit 7.
SMLA_HOST_DEVICE inline bool has_e4m3_nan(uint32_t word) {
  return (((word & 0x7f7f7f7fu) + 0x01010101u) & 0x80808080u) != 0u;
}

// The bf16 factors that take (e4m3 * 2^-120) to e4m3 * 2^(scale_byte - 127): `first`, then `second` when
// two_steps. Scale bytes 0 and 255 decode to 0 (scale_from_ue8m0).
struct E4m3ScaleFactors {
  uint16_t first, second;
  bool two_steps;
};

SMLA_HOST_DEVICE inline E4m3ScaleFactors e4m3_scale_factors(uint32_t scale_byte) {
  constexpr uint32_t kBf16ExponentBias = 127;
  constexpr uint32_t kPlacementShift = 120;  // the placed bits are the value times 2^-120
  constexpr uint32_t kLargestOneStepByte = 254 - kPlacementShift;  // 2^(S - 7) is a normal bf16 up to S = 134
  if (scale_byte == 0u || scale_byte == 255u) return {0, 0, false};
  if (scale_byte <= kLargestOneStepByte)
    return {static_cast<uint16_t>((scale_byte + kPlacementShift) << 7), 0, false};
  return {static_cast<uint16_t>((kPlacementShift + kBf16ExponentBias) << 7),
          static_cast<uint16_t>(scale_byte << 7), true};
}

}  // namespace smla::detail::fp8
