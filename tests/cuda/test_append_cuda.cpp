// GPU quantize-and-append (spec section 3) against the host codec: the whole pool must come back
// byte-identical, which checks the written records and that every other byte is left untouched.
// Tolerance: none (bit-exact), because the device replicates the host's scale rule and conversions.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <vector>

#include "common/cuda_ops.h"
#include "common/device_buffers.h"
#include "common/test_support.h"
#include "smla/cache.h"
#include "smla/codec.h"

namespace smla {
namespace {

using test::DeviceBuffer;

// Edge-case tokens of the scale rule: zero groups, exact power-of-two ratios and their neighbours,
// values below the 1e-4 amax floor, bf16 extremes, infinities, subnormals and negative zero.
std::vector<uint16_t> edge_case_token(test::Rng& rng, int kind) {
  std::vector<uint16_t> token = test::random_bf16(rng, kHeadDim);
  auto fill_group = [&](int group, float value_scale, uint16_t special, int special_count) {
    for (int i = 0; i < kQuantGroup; ++i) {
      token[group * kQuantGroup + i] = test::bf16_bits(value_scale * (rng.normal() * 0.3f));
    }
    for (int i = 0; i < special_count; ++i) {
      token[group * kQuantGroup + static_cast<int>(rng.uniform_int(0, kQuantGroup - 1))] = special;
    }
  };
  switch (kind) {
    case 0:  // all zeros, rope included
      std::fill(token.begin(), token.end(), uint16_t{0});
      break;
    case 1:  // amax exactly 448 * 2^-6 = 7: ratio is a power of two (frexp mantissa 0.5)
      fill_group(0, 1.f, test::bf16_bits(7.f), 1);
      fill_group(1, 1.f, test::bf16_bits(-7.f), 1);
      fill_group(2, 1.f, test::bf16_bits(7.0625f), 1);  // next bf16 above 7
      fill_group(3, 1.f, test::bf16_bits(6.9375f), 1);  // previous bf16 below 7
      fill_group(4, 1.f, test::bf16_bits(448.f), 1);    // ratio exactly 1: scale byte 127
      fill_group(5, 1.f, test::bf16_bits(0.4375f), 1);  // 448 * 2^-10
      break;
    case 2:  // tiny groups: amax below the 1e-4 floor, subnormal bf16, negative zero
      fill_group(0, 1e-6f, 0x0001, 2);
      fill_group(1, 1e-5f, 0x8000, 5);
      fill_group(2, 0.f, 0x8000, 64);
      fill_group(3, 1e-4f, test::bf16_bits(1e-4f), 1);
      break;
    case 3:  // huge values: bf16 max and infinities saturate to +-448 at the largest scale
      fill_group(0, 1.f, 0x7F7F, 1);     // bf16 max
      fill_group(1, 1.f, 0xFF7F, 3);     // -bf16 max
      fill_group(2, 1.f, 0x7F80, 1);     // +inf
      fill_group(3, 1.f, 0xFF80, 2);     // -inf
      fill_group(4, 1e30f, 0x7F00, 1);   // large finite
      fill_group(6, 1e-30f, 0x0080, 1);  // smallest normal bf16
      break;
    default: {  // wide dynamic range inside each group: many rounding ties and subnormal e4m3 codes
      for (int group = 0; group < kNumScaleGroups; ++group) {
        const float magnitude = std::ldexp(1.f, static_cast<int>(rng.uniform_int(-20, 20)));
        fill_group(group, magnitude, test::bf16_bits(magnitude), 1);
      }
      break;
    }
  }
  return token;
}

// The whole pool (so untouched bytes can be checked), the tokens and the slot ids, on the device.
void upload_append_inputs(const test::HostCache& host_cache, const std::vector<uint16_t>& tokens,
                          const std::vector<int32_t>& slots, DeviceBuffer* device_pool,
                          DeviceBuffer* device_tokens, DeviceBuffer* device_slots) {
  ASSERT_EQ(test::upload_pool(host_cache, device_pool, "pool"), "");
  ASSERT_EQ(test::upload_vector(tokens, device_tokens, "tokens"), "");
  ASSERT_EQ(test::upload_vector(slots, device_slots, "slots"), "");
}

struct AppendCase {
  int64_t page_block_size;
  int64_t stride_pad_bytes;
  int64_t token_stride;  // elements between tokens (>= 512)
};

void run_append_case(const AppendCase& config, uint64_t stream_id) {
  test::Rng rng = test::Rng::ForTest(stream_id);
  const int64_t num_pages = 3 + 200 / config.page_block_size;
  const int64_t stride = writer_page_stride_bytes(config.page_block_size) + config.stride_pad_bytes;
  // Start from random bytes, so "untouched" is checked against a pattern the kernel cannot guess.
  test::HostCache host_cache = test::make_host_cache(config.page_block_size, num_pages, stride, 0);
  for (auto& byte : host_cache.storage) byte = static_cast<uint8_t>(rng.engine()());
  const int64_t num_slots = cache_num_slots(host_cache.layout);
  const size_t pool_bytes = static_cast<size_t>(host_cache.pool_bytes());

  // About half of the slots get a token; a few entries are negative (skipped) or out of range
  // (skipped and counted on the device).
  const int64_t valid_tokens = num_slots / 2 + 1;
  std::vector<int32_t> slots = test::random_distinct_slots(rng, num_slots, valid_tokens);
  const int kEdgeKinds = 5;
  const int64_t num_skipped = 4, num_out_of_range = 3;
  for (int64_t i = 0; i < num_skipped; ++i) slots.push_back(i % 2 ? -1 : -7);
  slots.push_back(static_cast<int32_t>(num_slots));
  slots.push_back(static_cast<int32_t>(num_slots + 12345));
  slots.push_back(std::numeric_limits<int32_t>::max());
  std::shuffle(slots.begin(), slots.end(), rng.engine());
  const int64_t num_tokens = static_cast<int64_t>(slots.size());

  std::vector<uint16_t> tokens(static_cast<size_t>(num_tokens * config.token_stride), test::kPoisonBf16);
  for (int64_t i = 0; i < num_tokens; ++i) {
    const std::vector<uint16_t> token = i < 3 * kEdgeKinds
                                            ? edge_case_token(rng, static_cast<int>(i % kEdgeKinds))
                                            : test::random_bf16(rng, kHeadDim);
    std::copy(token.begin(), token.end(), tokens.begin() + i * config.token_stride);
  }

  // Device run first, from the same initial bytes.
  DeviceBuffer device_pool, device_tokens, device_slots, device_counter;
  ASSERT_NO_FATAL_FAILURE(
      upload_append_inputs(host_cache, tokens, slots, &device_pool, &device_tokens, &device_slots));
  ASSERT_EQ(device_counter.allocate(sizeof(uint32_t)), "");
  ASSERT_CUDA_OK(cudaMemset(device_counter.as<void>(), 0, sizeof(uint32_t)));
  CacheLayout device_layout = host_cache.layout;
  device_layout.data = device_pool.as<void>();
  const Status status =
      detail::append_tokens_cuda(device_layout, device_tokens.as<uint16_t>(), num_tokens, config.token_stride,
                                 device_slots.as<int32_t>(), device_counter.as<uint32_t>(), nullptr);
  ASSERT_TRUE(status.ok()) << status.message();
  ASSERT_CUDA_OK(cudaDeviceSynchronize());
  std::vector<uint8_t> device_result(pool_bytes);
  uint32_t bad_slots = 0;
  ASSERT_CUDA_OK(
      cudaMemcpy(device_result.data(), device_pool.as<void>(), pool_bytes, cudaMemcpyDeviceToHost));
  ASSERT_CUDA_OK(
      cudaMemcpy(&bad_slots, device_counter.as<void>(), sizeof(bad_slots), cudaMemcpyDeviceToHost));

  // Host codec on the same tokens; it rejects out-of-range slots, so those become "no token" here.
  std::vector<int32_t> host_slots = slots;
  for (auto& slot : host_slots) {
    if (slot >= num_slots) slot = -1;
  }
  const Status host_status = append_tokens(host_cache.layout, tokens.data(), num_tokens, config.token_stride,
                                           host_slots.data(), MemorySpace::kHost);
  ASSERT_TRUE(host_status.ok()) << host_status.message();
  const uint8_t* expected = static_cast<const uint8_t*>(host_cache.layout.data);

  int64_t mismatches = 0;
  size_t first_mismatch = 0;
  for (size_t i = 0; i < pool_bytes; ++i) {
    if (device_result[i] != expected[i]) {
      if (mismatches++ == 0) first_mismatch = i;
    }
  }
  std::printf(
      "append P=%-3lld stride=%-6lld token_stride=%-4lld tokens=%-4lld pool=%zu bytes: %lld mismatched "
      "bytes, bad slots counted %u (expected %lld)\n",
      static_cast<long long>(config.page_block_size), static_cast<long long>(stride),
      static_cast<long long>(config.token_stride), static_cast<long long>(num_tokens), pool_bytes,
      static_cast<long long>(mismatches), bad_slots, static_cast<long long>(num_out_of_range));
  EXPECT_EQ(mismatches, 0) << "first mismatch at byte " << first_mismatch << " (page "
                           << first_mismatch / stride << ", offset " << first_mismatch % stride
                           << "): device " << int{device_result[first_mismatch]} << ", host "
                           << int{expected[first_mismatch]};
  EXPECT_EQ(bad_slots, static_cast<uint32_t>(num_out_of_range));
}

TEST(AppendCuda, MatchesHostCodecByteForByte) {
  SMLA_SKIP_WITHOUT_CUDA();
  const AppendCase cases[] = {
      {1, 0, 512},   {1, 48, 520}, {2, 0, 512},   {2, 16, 640},  {61, 0, 512},
      {61, 32, 513}, {64, 0, 512}, {64, 64, 528}, {256, 0, 512}, {256, 16, 1024},
  };
  uint64_t stream_id = 0;
  for (const AppendCase& config : cases) {
    SCOPED_TRACE(::testing::Message() << "P=" << config.page_block_size << " pad=" << config.stride_pad_bytes
                                      << " token_stride=" << config.token_stride);
    run_append_case(config, stream_id++);
    if (::testing::Test::HasFatalFailure()) return;
  }
}

// The public entry point with MemorySpace::kCuda: same bytes as the host path, bad slots skipped.
TEST(AppendCuda, PublicEntryPointOnDevice) {
  SMLA_SKIP_WITHOUT_CUDA();
  test::Rng rng = test::Rng::ForTest(100);
  test::HostCache host_cache = test::make_host_cache(64, 4, 0, 0xFF);
  const int64_t num_slots = cache_num_slots(host_cache.layout);
  const size_t pool_bytes = static_cast<size_t>(host_cache.pool_bytes());
  std::vector<int32_t> slots = test::random_distinct_slots(rng, num_slots, 100);
  slots[7] = -1;
  slots[11] = static_cast<int32_t>(num_slots + 3);  // skipped on the device, no counter given
  const std::vector<uint16_t> tokens = test::random_bf16(rng, slots.size() * kHeadDim);

  DeviceBuffer device_pool, device_tokens, device_slots;
  ASSERT_NO_FATAL_FAILURE(
      upload_append_inputs(host_cache, tokens, slots, &device_pool, &device_tokens, &device_slots));
  CacheLayout device_layout = host_cache.layout;
  device_layout.data = device_pool.as<void>();
  const Status status =
      append_tokens(device_layout, device_tokens.as<void>(), static_cast<int64_t>(slots.size()), kHeadDim,
                    device_slots.as<int32_t>(), MemorySpace::kCuda, nullptr);
  ASSERT_TRUE(status.ok()) << status.message();
  ASSERT_CUDA_OK(cudaDeviceSynchronize());
  std::vector<uint8_t> device_result(pool_bytes);
  ASSERT_CUDA_OK(
      cudaMemcpy(device_result.data(), device_pool.as<void>(), pool_bytes, cudaMemcpyDeviceToHost));

  slots[11] = -1;
  ASSERT_TRUE(append_tokens(host_cache.layout, tokens.data(), static_cast<int64_t>(slots.size()), kHeadDim,
                            slots.data())
                  .ok());
  const bool identical = std::memcmp(device_result.data(), host_cache.layout.data, pool_bytes) == 0;
  std::printf("append via smla::append_tokens(kCuda), P=64, %zu tokens: %s\n", slots.size(),
              identical ? "identical to host" : "DIFFERS from host");
  EXPECT_TRUE(identical);
}

// Each memory space gets the pointers it can dereference, or an error naming the argument: host code
// dereferencing device memory would crash the process, a kernel reading host memory would fault.
TEST(AppendCuda, EachMemorySpaceRejectsTheOthersPointers) {
  SMLA_SKIP_WITHOUT_CUDA();
  test::HostCache host_cache = test::make_host_cache(2, 2, 0, 0xFF);
  const std::vector<uint16_t> tokens(kHeadDim, 0);
  const std::vector<int32_t> slots = {1};
  DeviceBuffer device_pool, device_tokens, device_slots;
  ASSERT_NO_FATAL_FAILURE(
      upload_append_inputs(host_cache, tokens, slots, &device_pool, &device_tokens, &device_slots));
  CacheLayout device_layout = host_cache.layout;
  device_layout.data = device_pool.as<void>();
  const auto expect_invalid = [](const Status& status, const char* needle) {
    EXPECT_EQ(status.code(), SMLA_STATUS_INVALID_ARGUMENT) << status.message();
    EXPECT_NE(status.message().find(needle), std::string::npos) << status.message();
  };
  // Host mode, a device pointer in each argument.
  expect_invalid(append_tokens(device_layout, tokens.data(), 1, kHeadDim, slots.data()),
                 "cache.data is CUDA device memory");
  expect_invalid(append_tokens(host_cache.layout, device_tokens.as<void>(), 1, kHeadDim, slots.data()),
                 "tokens_bf16 is CUDA device memory");
  expect_invalid(append_tokens(host_cache.layout, tokens.data(), 1, kHeadDim, device_slots.as<int32_t>()),
                 "slots is CUDA device memory");
  std::vector<float> row(kHeadDim);
  expect_invalid(dequantize_gather(device_layout, slots.data(), 1, row.data()),
                 "cache.data is CUDA device memory");
  expect_invalid(dequantize_slot(device_layout, 1, row.data()), "cache.data is CUDA device memory");
  // CUDA mode, a host pointer in each argument.
  expect_invalid(append_tokens(host_cache.layout, device_tokens.as<void>(), 1, kHeadDim,
                               device_slots.as<int32_t>(), MemorySpace::kCuda, nullptr),
                 "cache.data must be CUDA device or managed memory");
  expect_invalid(append_tokens(device_layout, tokens.data(), 1, kHeadDim, device_slots.as<int32_t>(),
                               MemorySpace::kCuda, nullptr),
                 "tokens_bf16 must be CUDA device or managed memory");
  expect_invalid(append_tokens(device_layout, device_tokens.as<void>(), 1, kHeadDim, slots.data(),
                               MemorySpace::kCuda, nullptr),
                 "slots must be CUDA device or managed memory");
  // Nothing reached the device pool: it still holds the NaN fill.
  std::vector<uint8_t> pool(static_cast<size_t>(host_cache.pool_bytes()));
  ASSERT_CUDA_OK(cudaMemcpy(pool.data(), device_pool.as<void>(), pool.size(), cudaMemcpyDeviceToHost));
  EXPECT_TRUE(std::all_of(pool.begin(), pool.end(), [](uint8_t byte) { return byte == 0xFF; }));
}

}  // namespace
}  // namespace smla
