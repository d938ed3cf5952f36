// Host codec (spec section 3): scalar conversions, the scale rule, encode/decode round trips and the
// append / dequantize entry points, including what must stay untouched.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "common/test_support.h"
#include "smla/cache.h"
#include "smla/codec.h"

namespace smla {
namespace {

// e4m3fn value of a code, written from the format definition (1-4-3, bias 7, no infinities,
// S.1111.111 = NaN), independently of the toolkit conversion under test.
float e4m3_spec_value(uint8_t code) {
  const float sign = (code & 0x80) ? -1.f : 1.f;
  const int exponent_field = (code >> 3) & 0xF;
  const int mantissa = code & 0x7;
  if (exponent_field == 15 && mantissa == 7) return std::numeric_limits<float>::quiet_NaN();
  if (exponent_field == 0) return sign * std::ldexp(static_cast<float>(mantissa), -9);  // subnormal
  return sign * std::ldexp(1.f + mantissa / 8.f, exponent_field - 7);
}

TEST(E4m3, AllCodesDecodeToSpecValues) {
  for (int code = 0; code < 256; ++code) {
    const float expected = e4m3_spec_value(static_cast<uint8_t>(code));
    const float actual = e4m3_bits_to_float(static_cast<uint8_t>(code));
    if (std::isnan(expected)) {
      EXPECT_TRUE(std::isnan(actual)) << "code 0x" << std::hex << code;
    } else {
      EXPECT_EQ(actual, expected) << "code 0x" << std::hex << code;
      EXPECT_EQ(std::signbit(actual), std::signbit(expected)) << "code 0x" << std::hex << code;
    }
  }
  EXPECT_EQ(e4m3_bits_to_float(0x7e), 448.f);
  EXPECT_EQ(e4m3_bits_to_float(0xfe), -448.f);
  EXPECT_TRUE(std::isnan(e4m3_bits_to_float(0x7f)));
  EXPECT_TRUE(std::isnan(e4m3_bits_to_float(0xff)));
}

TEST(E4m3, EveryRepresentableValueRoundTrips) {
  for (int code = 0; code < 256; ++code) {
    if ((code & 0x7f) == 0x7f) continue;  // NaN codes
    EXPECT_EQ(float_to_e4m3_bits(e4m3_spec_value(static_cast<uint8_t>(code))), code)
        << "code 0x" << std::hex << code;
  }
}

TEST(E4m3, RoundsToNearestWithTiesToEvenCode) {
  // Adjacent positive codes c, c+1 are adjacent values; their midpoint is exact in fp32.
  for (int code = 0; code < 0x7e; ++code) {
    const float low = e4m3_spec_value(static_cast<uint8_t>(code));
    const float high = e4m3_spec_value(static_cast<uint8_t>(code + 1));
    const float midpoint = (low + high) / 2;
    const int even = (code % 2 == 0) ? code : code + 1;
    EXPECT_EQ(float_to_e4m3_bits(midpoint), even) << "tie between codes " << code << " and " << code + 1;
    EXPECT_EQ(float_to_e4m3_bits(-midpoint), even | 0x80) << "negative tie at code " << code;
    EXPECT_EQ(float_to_e4m3_bits(std::nextafter(midpoint, 0.f)), code) << "just below tie, code " << code;
    EXPECT_EQ(float_to_e4m3_bits(std::nextafter(midpoint, 1000.f)), code + 1)
        << "just above tie, code " << code;
  }
}

TEST(E4m3, SubnormalsAreStepsOfTwoToTheMinusNine) {
  for (int k = 0; k < 8; ++k) {
    EXPECT_EQ(e4m3_bits_to_float(static_cast<uint8_t>(k)), k * 0x1p-9f);
    EXPECT_EQ(float_to_e4m3_bits(k * 0x1p-9f), k);
  }
  EXPECT_EQ(e4m3_bits_to_float(0x08), 0x1p-6f);   // smallest normal
  EXPECT_EQ(float_to_e4m3_bits(0x1p-10f), 0x00);  // tie between 0 and 2^-9: even code 0
  EXPECT_EQ(float_to_e4m3_bits(3 * 0x1p-10f), 0x02);
  EXPECT_EQ(float_to_e4m3_bits(0x1p-12f), 0x00);
  EXPECT_EQ(float_to_e4m3_bits(-0x1p-12f), 0x80);  // sign of zero kept
  EXPECT_EQ(float_to_e4m3_bits(-0.f), 0x80);
}

TEST(E4m3, SaturatesToPlusMinus448) {
  EXPECT_EQ(float_to_e4m3_bits(448.f), 0x7e);
  EXPECT_EQ(float_to_e4m3_bits(464.f), 0x7e);  // would round up to the NaN code without saturation
  EXPECT_EQ(float_to_e4m3_bits(500.f), 0x7e);
  EXPECT_EQ(float_to_e4m3_bits(1e30f), 0x7e);
  EXPECT_EQ(float_to_e4m3_bits(std::numeric_limits<float>::infinity()), 0x7e);
  EXPECT_EQ(float_to_e4m3_bits(-448.f), 0xfe);
  EXPECT_EQ(float_to_e4m3_bits(-1e30f), 0xfe);
  EXPECT_EQ(float_to_e4m3_bits(-std::numeric_limits<float>::infinity()), 0xfe);
  EXPECT_EQ(float_to_e4m3_bits(std::numeric_limits<float>::quiet_NaN()) & 0x7f, 0x7f);
}

TEST(Bf16, ConversionIsExactAndRoundsToNearestEven) {
  EXPECT_EQ(bf16_bits_to_float(0x3f80), 1.f);
  EXPECT_EQ(bf16_bits_to_float(0xc000), -2.f);
  EXPECT_EQ(float_to_bf16_bits(1.f), 0x3f80);
  EXPECT_EQ(float_to_bf16_bits(1.f + 0x1p-8f), 0x3f80);      // tie: even mantissa (1.0)
  EXPECT_EQ(float_to_bf16_bits(1.f + 3 * 0x1p-8f), 0x3f82);  // tie: even mantissa (1 + 2^-6)
  EXPECT_EQ(float_to_bf16_bits(std::nextafter(1.f + 0x1p-8f, 2.f)), 0x3f81);
  EXPECT_EQ(float_to_bf16_bits(-(1.f + 0x1p-8f)), 0xbf80);
  EXPECT_EQ(float_to_bf16_bits(-0.f), 0x8000);
  EXPECT_EQ(float_to_bf16_bits(std::numeric_limits<float>::infinity()), 0x7f80);
  EXPECT_TRUE(std::isnan(bf16_bits_to_float(float_to_bf16_bits(std::numeric_limits<float>::quiet_NaN()))));
  // Every bf16 code widens and narrows back to itself (NaNs excepted).
  for (uint32_t bits = 0; bits < 0x10000; ++bits) {
    const float value = bf16_bits_to_float(static_cast<uint16_t>(bits));
    if (std::isnan(value)) continue;
    ASSERT_EQ(float_to_bf16_bits(value), bits);
  }
}

// ---- the scale rule

struct Encoded {
  uint8_t row[kRowBytes];
  uint8_t footer[kScaleBytes];
};

Encoded encode(const std::vector<uint16_t>& token) {
  Encoded encoded;
  std::memset(&encoded, 0xAB, sizeof(encoded));
  encode_token(token.data(), encoded.row, encoded.footer);
  return encoded;
}

TEST(ScaleRule, ZeroGroupUsesTheClampedMagnitude) {
  const std::vector<uint16_t> zeros(kHeadDim, 0);
  const Encoded encoded = encode(zeros);
  // a = 1e-4, r = 1e-4 / 448 ~ 2.23e-7 = 2^-22.09, so the scale is 2^-22 and the byte 127 - 22.
  const int expected_exponent = static_cast<int>(std::ceil(std::log2(static_cast<double>(1e-4f / 448.f))));
  ASSERT_EQ(expected_exponent, -22);
  for (int g = 0; g < kNumScaleGroups; ++g) EXPECT_EQ(encoded.footer[g], 105) << "group " << g;
  EXPECT_EQ(encoded.footer[7], 0);
  for (int i = 0; i < kNopeDim; ++i) ASSERT_EQ(encoded.row[i], 0x00) << "dim " << i;
}

TEST(ScaleRule, ExactPowerOfTwoRatioIsNotRoundedUp) {
  for (int k = -20; k <= 20; ++k) {
    std::vector<uint16_t> token(kHeadDim, test::bf16_bits(0.5f * std::ldexp(1.f, k)));
    const int group = (k + 40) % kNumScaleGroups;
    const float group_max = std::ldexp(448.f, k);  // a / 448 = 2^k exactly
    token[group * kQuantGroup + 5] = test::bf16_bits(k % 2 ? -group_max : group_max);
    const Encoded encoded = encode(token);
    EXPECT_EQ(encoded.footer[group], 127 + k) << "k=" << k;
    EXPECT_EQ(encoded.row[group * kQuantGroup + 5], k % 2 ? 0xfe : 0x7e) << "k=" << k;

    // The next bf16 above needs the next power of two.
    const float just_above = test::bf16_value(static_cast<uint16_t>(test::bf16_bits(group_max) + 1));
    ASSERT_GT(just_above, group_max);
    token[group * kQuantGroup + 5] = test::bf16_bits(just_above);
    EXPECT_EQ(encode(token).footer[group], 127 + k + 1) << "k=" << k << " just above";
  }
}

TEST(ScaleRule, TinyGroupsClampToTheMinimumScale) {
  // max |x| below 1e-4: the scale is still the one of 1e-4, values quantize against it.
  std::vector<uint16_t> token(kHeadDim, test::bf16_bits(1e-6f));
  const Encoded encoded = encode(token);
  for (int g = 0; g < kNumScaleGroups; ++g) EXPECT_EQ(encoded.footer[g], 105);
}

TEST(ScaleRule, GroupsAreIndependent) {
  std::vector<uint16_t> token(kHeadDim, 0);
  for (int g = 0; g < kNumScaleGroups; ++g) {
    token[g * kQuantGroup] = test::bf16_bits(std::ldexp(448.f, 2 * g - 6));
  }
  const Encoded encoded = encode(token);
  for (int g = 0; g < kNumScaleGroups; ++g) EXPECT_EQ(encoded.footer[g], 127 + 2 * g - 6) << "group " << g;
}

// ---- round trip

TEST(Codec, RoundTripWithinE4m3ErrorAndRopeExact) {
  test::Rng rng = test::Rng::ForTest(1);
  for (float sigma : {1e-5f, 1e-3f, 0.1f, 1.f, 30.f, 1e4f}) {
    for (int trial = 0; trial < 20; ++trial) {
      std::vector<uint16_t> token(kHeadDim);
      for (auto& bits : token) bits = test::bf16_bits(rng.normal() * sigma);
      const Encoded encoded = encode(token);
      float decoded[kHeadDim];
      decode_token(encoded.row, encoded.footer, decoded);
      EXPECT_EQ(encoded.footer[7], 0) << "pad byte";
      for (int g = 0; g < kNumScaleGroups; ++g) {
        const float scale = scale_from_ue8m0(encoded.footer[g]);
        float group_max = 0;
        for (int i = 0; i < kQuantGroup; ++i) {
          group_max = std::max(group_max, std::fabs(test::bf16_value(token[g * kQuantGroup + i])));
        }
        // The scale is the smallest power of two with max|x| / scale <= 448.
        EXPECT_LE(std::max(group_max, 1e-4f) / scale, 448.f) << "sigma " << sigma << " group " << g;
        EXPECT_GT(std::max(group_max, 1e-4f) / scale, 224.f) << "sigma " << sigma << " group " << g;
        for (int i = 0; i < kQuantGroup; ++i) {
          const int dim = g * kQuantGroup + i;
          const float x = test::bf16_value(token[dim]);
          // e4m3 has 3 mantissa bits: relative error <= 2^-4 for normals; subnormals (below
          // 2^-6 * scale) are spaced 2^-9 * scale apart, so absolute error <= 2^-10 * scale.
          const float bound = std::max(std::fabs(x) * 0x1p-4f, 0x1p-10f * scale);
          ASSERT_LE(std::fabs(decoded[dim] - x), bound)
              << "sigma " << sigma << " dim " << dim << " x " << x << " decoded " << decoded[dim];
        }
      }
      for (int j = 0; j < kRopeDim; ++j) {
        uint16_t stored;
        std::memcpy(&stored, encoded.row + kNopeDim + 2 * j, sizeof(stored));  // little-endian host
        ASSERT_EQ(stored, token[kNopeDim + j]) << "rope " << j;
        ASSERT_EQ(test::bf16_bits(decoded[kNopeDim + j]), token[kNopeDim + j]) << "rope " << j;
      }
    }
  }
}

TEST(Codec, RopeBitsAreCopiedVerbatimIncludingSpecials) {
  std::vector<uint16_t> token(kHeadDim, test::bf16_bits(0.25f));
  const uint16_t specials[] = {0x8000, 0x7f80, 0xff80, 0x7fc1, 0x0001, 0x7f7f, 0xabcd};
  for (int j = 0; j < 7; ++j) token[kNopeDim + 9 * j] = specials[j];
  const Encoded encoded = encode(token);
  for (int j = 0; j < 7; ++j) {
    EXPECT_EQ(encoded.row[kNopeDim + 18 * j], specials[j] & 0xFF);
    EXPECT_EQ(encoded.row[kNopeDim + 18 * j + 1], specials[j] >> 8);
  }
}

// ---- append / dequantize over a cache

struct AppendCase {
  int64_t page_block_size;
  int64_t stride_pad_bytes;
};

class AppendTest : public ::testing::TestWithParam<AppendCase> {};

TEST_P(AppendTest, WritesOnlyTheRecordBytesOfSelectedSlots) {
  const AppendCase param = GetParam();
  test::Rng rng =
      test::Rng::ForTest(static_cast<uint64_t>(param.page_block_size * 1000 + param.stride_pad_bytes));
  const int64_t num_pages = 5;
  const int64_t stride = writer_page_stride_bytes(param.page_block_size) + param.stride_pad_bytes;
  test::HostCache cache = test::make_host_cache(param.page_block_size, num_pages, stride, 0xFF);
  const int64_t num_slots = cache_num_slots(cache.layout);

  const int64_t count = std::min<int64_t>(num_slots, 24);
  std::vector<int32_t> slots = test::random_distinct_slots(rng, num_slots, count);
  slots.insert(slots.begin() + count / 2, -1);  // skipped
  slots.push_back(-7);                          // any negative id means "no token"
  const int64_t token_stride = 600;             // rows not contiguous: the stride must be honoured
  std::vector<uint16_t> tokens(slots.size() * token_stride, 0xFFFF);
  for (size_t i = 0; i < slots.size(); ++i) {
    const std::vector<uint16_t> token = test::random_bf16(rng, kHeadDim, 0.3f);
    std::copy(token.begin(), token.end(), tokens.begin() + i * token_stride);
  }

  ASSERT_TRUE(append_tokens(cache.layout, tokens.data(), static_cast<int64_t>(slots.size()), token_stride,
                            slots.data())
                  .ok());

  // Expected pool: all 0xFF except the record bytes of each written slot.
  std::vector<uint8_t> expected(static_cast<size_t>(cache.pool_bytes()), 0xFF);
  for (size_t i = 0; i < slots.size(); ++i) {
    if (slots[i] < 0) continue;
    encode_token(tokens.data() + i * token_stride,
                 expected.data() + slot_row_offset(param.page_block_size, stride, slots[i]),
                 expected.data() + slot_scale_offset(param.page_block_size, stride, slots[i]));
  }
  const auto* pool = static_cast<const uint8_t*>(cache.layout.data);
  for (int64_t byte = 0; byte < cache.pool_bytes(); ++byte) {
    ASSERT_EQ(pool[byte], expected[byte])
        << "byte " << byte << " (page " << byte / stride << ", offset " << byte % stride << ")";
  }
  // The over-allocation around the pool is untouched as well.
  const auto* storage_end = cache.storage.data() + cache.storage.size();
  for (const uint8_t* p = cache.storage.data(); p < storage_end; ++p) {
    if (p >= pool && p < pool + cache.pool_bytes()) continue;
    ASSERT_EQ(*p, 0xFF);
  }

  // Dequantize agrees with decode_token on the written slots.
  for (size_t i = 0; i < slots.size(); ++i) {
    if (slots[i] < 0) continue;
    float from_cache[kHeadDim], direct[kHeadDim];
    ASSERT_TRUE(dequantize_slot(cache.layout, slots[i], from_cache).ok());
    Encoded encoded;
    encode_token(tokens.data() + i * token_stride, encoded.row, encoded.footer);
    decode_token(encoded.row, encoded.footer, direct);
    ASSERT_EQ(std::memcmp(from_cache, direct, sizeof(direct)), 0) << "slot " << slots[i];
  }
}

INSTANTIATE_TEST_SUITE_P(PageSizes, AppendTest,
                         ::testing::Values(AppendCase{1, 0}, AppendCase{1, 48}, AppendCase{2, 0},
                                           AppendCase{2, 16}, AppendCase{61, 0}, AppendCase{61, 160},
                                           AppendCase{64, 0}, AppendCase{64, 4096}, AppendCase{256, 0},
                                           AppendCase{256, 32}),
                         [](const ::testing::TestParamInfo<AppendCase>& info) {
                           return "P" + std::to_string(info.param.page_block_size) + "_pad" +
                                  std::to_string(info.param.stride_pad_bytes);
                         });

TEST(Append, OutOfRangeSlotIsRejectedBeforeAnyWrite) {
  test::Rng rng = test::Rng::ForTest(2);
  test::HostCache cache = test::make_host_cache(64, 2);
  const std::vector<uint8_t> before = cache.storage;
  const std::vector<uint16_t> tokens = test::random_bf16(rng, 3 * kHeadDim);
  const int32_t slots[] = {0, 5, 128};  // 2 pages of 64: valid ids are 0..127
  const Status status = append_tokens(cache.layout, tokens.data(), 3, kHeadDim, slots);
  EXPECT_EQ(status.code(), SMLA_STATUS_INVALID_ARGUMENT);
  EXPECT_NE(status.message().find("slots[2] = 128"), std::string::npos) << status.message();
  EXPECT_TRUE(cache.storage == before) << "a rejected append wrote to the cache";
}

TEST(Append, ValidatesScalarArgumentsAndPointers) {
  test::HostCache cache = test::make_host_cache(2, 2);
  const std::vector<uint16_t> tokens(kHeadDim, 0);
  const int32_t slot = 0;
  auto message = [](const Status& status) { return status.message(); };

  Status status = append_tokens(cache.layout, tokens.data(), -1, kHeadDim, &slot);
  EXPECT_FALSE(status.ok());
  EXPECT_NE(message(status).find("num_tokens"), std::string::npos) << message(status);

  status = append_tokens(cache.layout, tokens.data(), 1, 511, &slot);
  EXPECT_FALSE(status.ok());
  EXPECT_NE(message(status).find("token_stride"), std::string::npos) << message(status);

  status = append_tokens(cache.layout, nullptr, 1, kHeadDim, &slot);
  EXPECT_FALSE(status.ok());
  EXPECT_NE(message(status).find("tokens_bf16"), std::string::npos) << message(status);

  status = append_tokens(cache.layout, tokens.data(), 1, kHeadDim, nullptr);
  EXPECT_FALSE(status.ok());
  EXPECT_NE(message(status).find("slots"), std::string::npos) << message(status);

  CacheLayout bad = cache.layout;
  bad.page_stride_bytes += 8;
  status = append_tokens(bad, tokens.data(), 1, kHeadDim, &slot);
  EXPECT_FALSE(status.ok());
  EXPECT_NE(message(status).find("cache.page_stride_bytes"), std::string::npos) << message(status);

  // The CUDA path checks the same scalars before anything reaches the device.
  status = append_tokens(cache.layout, tokens.data(), -1, kHeadDim, &slot, MemorySpace::kCuda);
  EXPECT_NE(message(status).find("num_tokens"), std::string::npos) << message(status);
  status = append_tokens(bad, tokens.data(), 1, kHeadDim, &slot, MemorySpace::kCuda);
  EXPECT_NE(message(status).find("cache.page_stride_bytes"), std::string::npos) << message(status);

  status = append_tokens(cache.layout, tokens.data(), 4, std::numeric_limits<int64_t>::max() / 2, &slot);
  EXPECT_NE(message(status).find("token_stride overflows"), std::string::npos) << message(status);

  // Zero tokens is a valid no-op, even with null pointers.
  EXPECT_TRUE(append_tokens(cache.layout, nullptr, 0, kHeadDim, nullptr).ok());
}

// The written buffer shares memory with no other argument: tokens or slots inside the cache would be
// overwritten while they are read.
TEST(Append, RejectsTokensOrSlotsInsideTheCache) {
  test::HostCache cache = test::make_host_cache(64, 2, 0, 0);
  const std::vector<uint8_t> before = cache.storage;
  int32_t* slots_in_cache = static_cast<int32_t*>(cache.layout.data) + 4;  // slot ids 0 (the pool is zeroed)
  const uint16_t* tokens_in_cache = static_cast<const uint16_t*>(cache.layout.data);
  const std::vector<uint16_t> tokens(kHeadDim, 0);
  const int32_t slot = 3;
  Status status = append_tokens(cache.layout, tokens_in_cache, 1, kHeadDim, &slot);
  EXPECT_EQ(status.code(), SMLA_STATUS_INVALID_ARGUMENT);
  EXPECT_NE(status.message().find("cache.data ["), std::string::npos) << status.message();
  EXPECT_NE(status.message().find("overlaps tokens_bf16 ["), std::string::npos) << status.message();
  status = append_tokens(cache.layout, tokens.data(), 1, kHeadDim, slots_in_cache);
  EXPECT_NE(status.message().find("overlaps slots ["), std::string::npos) << status.message();
  EXPECT_TRUE(cache.storage == before) << "a rejected append wrote to the cache";
}

TEST(Dequantize, RejectsAnOutputInsideTheCacheOrTheSlots) {
  test::HostCache cache = test::make_host_cache(64, 2, 0, 0);
  const std::vector<uint8_t> before = cache.storage;
  std::vector<int32_t> slots = {0, 1};
  Status status = dequantize_gather(cache.layout, slots.data(), 2, static_cast<float*>(cache.layout.data));
  EXPECT_EQ(status.code(), SMLA_STATUS_INVALID_ARGUMENT);
  EXPECT_NE(status.message().find("out ["), std::string::npos) << status.message();
  EXPECT_NE(status.message().find("overlaps cache.data ["), std::string::npos) << status.message();
  std::vector<uint16_t> wide(4 * kHeadDim);
  std::memcpy(wide.data(), slots.data(), 8);
  status =
      dequantize_gather_bf16(cache.layout, reinterpret_cast<const int32_t*>(wide.data()), 2, wide.data());
  EXPECT_NE(status.message().find("out_bf16 ["), std::string::npos) << status.message();
  EXPECT_NE(status.message().find("overlaps slots ["), std::string::npos) << status.message();
  EXPECT_TRUE(cache.storage == before);
}

TEST(Dequantize, GatherHandlesNegativeSlotsAndMatchesBf16) {
  test::Rng rng = test::Rng::ForTest(3);
  test::HostCache cache = test::make_host_cache(3, 4);
  const std::vector<int32_t> written = {1, 4, 11};
  test::fill_random_tokens(cache, rng, written);
  const std::vector<int32_t> gather = {4, -1, 11, 1, 4};
  std::vector<float> out(gather.size() * kHeadDim, -5.f);
  std::vector<uint16_t> out_bf16(gather.size() * kHeadDim, 0xFFFF);
  ASSERT_TRUE(dequantize_gather(cache.layout, gather.data(), 5, out.data()).ok());
  ASSERT_TRUE(dequantize_gather_bf16(cache.layout, gather.data(), 5, out_bf16.data()).ok());
  for (size_t i = 0; i < gather.size(); ++i) {
    float expected[kHeadDim] = {};
    if (gather[i] >= 0) ASSERT_TRUE(dequantize_slot(cache.layout, gather[i], expected).ok());
    for (int d = 0; d < kHeadDim; ++d) {
      const float value = out[i * kHeadDim + d];
      ASSERT_EQ(value, expected[d]) << "row " << i << " dim " << d;
      ASSERT_TRUE(std::isfinite(value));
      // The dequantized values are bf16-representable, so the bf16 gather is exact.
      ASSERT_EQ(test::bf16_value(out_bf16[i * kHeadDim + d]), value) << "row " << i << " dim " << d;
    }
  }
}

TEST(Dequantize, RejectsBadArguments) {
  test::HostCache cache = test::make_host_cache(2, 2);
  float row[kHeadDim];
  EXPECT_NE(dequantize_slot(cache.layout, 4, row).message().find("slot = 4"), std::string::npos);
  EXPECT_FALSE(dequantize_slot(cache.layout, -1, row).ok());
  EXPECT_FALSE(dequantize_slot(cache.layout, 0, nullptr).ok());
  const int32_t slots[] = {0, 9};
  std::vector<float> out(2 * kHeadDim);
  const Status status = dequantize_gather(cache.layout, slots, 2, out.data());
  EXPECT_NE(status.message().find("slots[1] = 9"), std::string::npos) << status.message();
  EXPECT_FALSE(dequantize_gather(cache.layout, slots, -1, out.data()).ok());
  std::vector<uint16_t> out_bf16(2 * kHeadDim);
  EXPECT_FALSE(dequantize_gather_bf16(cache.layout, slots, 2, out_bf16.data()).ok());
  CacheLayout unaligned = cache.layout;
  unaligned.data = static_cast<uint8_t*>(unaligned.data) + 4;
  EXPECT_NE(dequantize_slot(unaligned, 0, row).message().find("cache.data"), std::string::npos);
}

TEST(Dequantize, ReservedScaleBytesNeverProduceInfOrNan) {
  // A garbage footer (bytes 0 and 255) with finite e4m3 codes stays finite: spec section 3.
  uint8_t row[kRowBytes];
  for (int i = 0; i < kNopeDim; ++i) row[i] = static_cast<uint8_t>(i % 0x7e);
  std::memset(row + kNopeDim, 0, kRopeDim * 2);
  const uint8_t footer[kScaleBytes] = {0, 255, 0, 255, 200, 1, 127, 0xEE};
  float out[kHeadDim];
  decode_token(row, footer, out);
  for (int d = 0; d < kHeadDim; ++d) ASSERT_TRUE(std::isfinite(out[d])) << "dim " << d;
  EXPECT_EQ(out[64 + 1], 0.f);  // byte 255 decodes as a zero scale
}

}  // namespace
}  // namespace smla
