// Hash-based random values shared by the host fill and the device fill kernel, so the same seed gives
// the same cache on either side without a random-number state per thread.
#pragma once

#include <cstdint>

#include "smla/cache.h"  // SMLA_HOST_DEVICE

namespace smla_bench {

// splitmix64 finalizer: a cheap bijective mix with good avalanche.
SMLA_HOST_DEVICE inline uint64_t mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Value `index` of stream `seed`: N(0,1)/10 clipped to [-1, 1] (spec section 8). The sum of four uniform
// 16-bit draws (Irwin-Hall) is close enough to normal for cache contents and needs no transcendentals.
SMLA_HOST_DEVICE inline float normalish_value(uint64_t seed, uint64_t index) {
  const uint64_t bits = mix64(seed * 0xD1B54A32D192ED03ull ^ mix64(index));
  float sum = 0.f;
  for (int part = 0; part < 4; ++part)
    sum += static_cast<float>((bits >> (16 * part)) & 0xFFFFu) * (1.f / 65536.f);
  // Irwin-Hall(4): mean 2, variance 1/3.
  const float standard = (sum - 2.f) * 1.7320508f;
  const float value = standard * 0.1f;
  return value < -1.f ? -1.f : (value > 1.f ? 1.f : value);
}

// bf16 bits of a finite float, rounded to nearest even (what __float2bfloat16_rn does for finite input);
// inline so the host fill does not pay a library call per value.
SMLA_HOST_DEVICE inline uint16_t finite_float_to_bf16_bits(float value) {
  uint32_t bits;
  __builtin_memcpy(&bits, &value, sizeof(bits));
  bits += 0x7FFFu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

}  // namespace smla_bench
