// The bit-placement e4m3 -> bf16 dequantization of GPUs without an fp8 conversion instruction
// (src/common/e4m3_bits.h, used by cuda/common/fp8_dequant.cuh on sm_80 / sm_86): for every e4m3 code in
// either position of either pair of a word and every scale byte, placing the bits and applying the scale
// factors with IEEE bf16 multiplies (emulated here: an exact float product rounded to nearest even) gives
// the bits of the host codec's value, bf16(e4m3_bits_to_float(code) * scale_from_ue8m0(scale)); the NaN
// codes are detected instead. What the device's bf16 multiply does with the subnormal operands is checked
// by the GPU decode tests.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>

#include "common/e4m3_bits.h"
#include "smla/cache.h"
#include "smla/codec.h"

namespace smla::detail::fp8 {
namespace {

float bf16_bits_to_float(uint16_t bits) {
  const uint32_t wide = uint32_t{bits} << 16;
  float value;
  std::memcpy(&value, &wide, sizeof(value));
  return value;
}

// Round to nearest even (finite values).
uint16_t float_to_bf16_bits(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  return static_cast<uint16_t>((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

// One IEEE bf16 multiply: the product of two bf16 values is exact in float here (<= 16 significant bits,
// exponents within float's range), so rounding it once is the bf16 result.
uint16_t bf16_multiply(uint16_t a, uint16_t b) {
  return float_to_bf16_bits(bf16_bits_to_float(a) * bf16_bits_to_float(b));
}

uint16_t dequantize_placed(uint16_t placed, uint32_t scale_byte) {
  const E4m3ScaleFactors factors = e4m3_scale_factors(scale_byte);
  uint16_t value = bf16_multiply(placed, factors.first);
  if (factors.two_steps) value = bf16_multiply(value, factors.second);
  return value;
}

bool is_nan_code(uint32_t code) { return (code & 0x7fu) == 0x7fu; }

TEST(E4m3Bits, PlacementIsTheValueTimes2PowMinus120ForEveryCode) {
  for (uint32_t code = 0; code < 256; ++code) {
    if (is_nan_code(code)) continue;
    for (int pair = 0; pair < 2; ++pair) {
      for (int position = 0; position < 2; ++position) {
        const uint32_t word =
            (0x5aa53cc3u & ~(0xffu << (8 * (2 * pair + position)))) | (code << (8 * (2 * pair + position)));
        const uint32_t placed = e4m3x2_to_bf16x2_bits_times_2_pow_minus_120(word, pair);
        const uint16_t half = static_cast<uint16_t>(placed >> (16 * position));
        const double expected =
            std::ldexp(static_cast<double>(e4m3_bits_to_float(static_cast<uint8_t>(code))), -120);
        ASSERT_EQ(static_cast<double>(bf16_bits_to_float(half)), expected) << "code 0x" << std::hex << code;
        ASSERT_EQ(std::signbit(bf16_bits_to_float(half)), (code & 0x80u) != 0)
            << "code 0x" << std::hex << code;
      }
    }
  }
}

TEST(E4m3Bits, DequantizationMatchesTheCodecForEveryCodeAndScaleByte) {
  int64_t checked = 0;
  for (uint32_t scale_byte = 0; scale_byte < 256; ++scale_byte) {
    for (uint32_t code = 0; code < 256; ++code) {
      if (is_nan_code(code)) continue;
      const uint32_t placed = e4m3x2_to_bf16x2_bits_times_2_pow_minus_120(code | (code << 8), 0);
      const uint16_t got = dequantize_placed(static_cast<uint16_t>(placed), scale_byte);
      const float reference =
          e4m3_bits_to_float(static_cast<uint8_t>(code)) * scale_from_ue8m0(static_cast<uint8_t>(scale_byte));
      ASSERT_EQ(got, float_to_bf16_bits(reference))
          << "code 0x" << std::hex << code << " scale byte " << std::dec << scale_byte;
      ++checked;
    }
  }
  EXPECT_EQ(checked, 254 * 256);
}

TEST(E4m3Bits, NanCodesAreDetectedInEveryByte) {
  for (int byte = 0; byte < 4; ++byte) {
    for (uint32_t nan_code : {0x7fu, 0xffu}) {
      EXPECT_TRUE(has_e4m3_nan(0x11223344u & ~(0xffu << (8 * byte)) | (nan_code << (8 * byte))));
    }
  }
  for (uint32_t code = 0; code < 256; ++code) {
    const uint32_t word = code | (code << 8) | (code << 16) | (code << 24);
    EXPECT_EQ(has_e4m3_nan(word), is_nan_code(code)) << "code 0x" << std::hex << code;
  }
  // No false positive from carries between bytes: 0x7e next to 0x80 / 0xfe, and so on.
  EXPECT_FALSE(has_e4m3_nan(0x7e80fe7eu));
  EXPECT_FALSE(has_e4m3_nan(0x00000000u));
  EXPECT_FALSE(has_e4m3_nan(0xfefefefeu));
}

TEST(E4m3Bits, ScaleFactorsCoverTheWholeByteRange) {
  EXPECT_EQ(e4m3_scale_factors(0).first, 0);
  EXPECT_EQ(e4m3_scale_factors(255).first, 0);
  EXPECT_FALSE(e4m3_scale_factors(134).two_steps);
  EXPECT_TRUE(e4m3_scale_factors(135).two_steps);
  EXPECT_EQ(bf16_bits_to_float(e4m3_scale_factors(127).first), std::ldexp(1.0f, 120));
  EXPECT_EQ(bf16_bits_to_float(e4m3_scale_factors(1).first), std::ldexp(1.0f, -6));
  const E4m3ScaleFactors large = e4m3_scale_factors(254);
  EXPECT_EQ(bf16_bits_to_float(large.first), std::ldexp(1.0f, 120));
  EXPECT_EQ(bf16_bits_to_float(large.second), std::ldexp(1.0f, 127));
}

}  // namespace
}  // namespace smla::detail::fp8
