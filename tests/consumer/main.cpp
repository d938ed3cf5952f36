// A downstream project's view of smla: only the public headers and the exported CMake targets, reached
// through find_package(smla) on an install or through add_subdirectory (see CMakeLists.txt here). It
// quantizes three tokens into a host cache, runs one decode row on the CPU backend through the C API and
// checks what the spec (docs/dsv4-sparse-mla.md section 4) implies exactly for a single attended token:
// with a sink of -inf the output is the dequantized token itself and lse = softmax_scale * dot(q, K);
// with a sink of 0 the output is K * e^z / (e^z + 1).
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <vector>

#include "smla/smla.h"

namespace {

constexpr int kDim = 512;

// Values here are multiples of 1/64 in [-0.5, 0.5): exact in bf16, so truncating the float bits is exact.
uint16_t bf16_bits(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  return static_cast<uint16_t>(bits >> 16);
}

float bf16_value(uint16_t bits) {
  const uint32_t widened = static_cast<uint32_t>(bits) << 16;
  float value;
  std::memcpy(&value, &widened, sizeof(value));
  return value;
}

int fail(const char* what) {
  std::fprintf(stderr, "smla consumer: FAILED: %s (last error: '%s')\n", what, smla_last_error());
  return 1;
}

}  // namespace

int main() {
  // The header the consumer compiled against and the library it linked must agree.
  if (std::strcmp(smla_version(), SMLA_VERSION_STRING) != 0) return fail("library version != header version");
  if (smla_struct_size("smla_decode_args_t") != sizeof(smla_decode_args_t) ||
      smla_struct_size("smla_plan_options_t") != sizeof(smla_plan_options_t)) {
    return fail("struct sizes differ between the header and the library");
  }

  // One page of P = 4 tokens with the writer's stride, 16-byte aligned.
  const int64_t page_block_size = 4;
  const int64_t page_stride = smla_writer_page_stride_bytes(page_block_size);
  std::vector<uint8_t> pool(static_cast<size_t>(page_stride) + 16);
  void* base = reinterpret_cast<void*>((reinterpret_cast<uintptr_t>(pool.data()) + 15) / 16 * 16);
  const smla_cache_layout_t cache{base, page_block_size, page_stride, /*num_pages=*/1};

  const int num_tokens = 3;
  std::vector<uint16_t> tokens(num_tokens * kDim);
  for (int t = 0; t < num_tokens; ++t) {
    for (int d = 0; d < kDim; ++d) tokens[t * kDim + d] = bf16_bits(((t * 37 + d * 11) % 64 - 32) / 64.0f);
  }
  const int32_t slots[num_tokens] = {0, 1, 2};
  if (smla_append(&cache, tokens.data(), num_tokens, kDim, slots, /*memory_space=*/0, nullptr) !=
      SMLA_STATUS_OK) {
    return fail("smla_append");
  }
  std::vector<float> key(kDim);
  const int32_t attended_slot = 1;
  if (smla_dequantize_gather(&cache, &attended_slot, 1, key.data()) != SMLA_STATUS_OK) {
    return fail("smla_dequantize_gather");
  }

  // b = 1, s_q = 1, 2 heads, topk 4 of which only slot 1 is valid.
  const smla_decode_shape_t shape{/*batch=*/1, /*seq_q=*/1, /*num_heads=*/2, /*topk=*/4, /*extra_topk=*/0};
  smla_plan_options_t options;
  smla_default_plan_options(&options);
  options.backend = SMLA_BACKEND_CPU;
  smla_plan_t plan = nullptr;
  if (smla_plan_create(&shape, &options, &plan) != SMLA_STATUS_OK) return fail("smla_plan_create");

  std::vector<uint16_t> q(2 * kDim);
  for (int i = 0; i < 2 * kDim; ++i) q[i] = bf16_bits(((i * 5 + i / kDim * 3) % 16 - 8) / 64.0f);
  const int32_t indices[4] = {-1, attended_slot, -1, -1};
  const float sink[2] = {-std::numeric_limits<float>::infinity(), 0.0f};
  std::vector<uint16_t> out(2 * kDim);
  float lse[2] = {0, 0};

  smla_decode_args_t args;
  std::memset(&args, 0, sizeof(args));
  args.q = q.data();
  args.main_cache = cache;
  args.indices = indices;
  args.attn_sink = sink;
  args.softmax_scale = 1.0f / std::sqrt(512.0f);
  args.out = out.data();
  args.lse = lse;
  const bool ran = smla_set_contiguous_strides(plan, &args) == SMLA_STATUS_OK &&
                   smla_decode_run(plan, &args, nullptr, 0, nullptr) == SMLA_STATUS_OK;
  smla_plan_destroy(plan);
  if (!ran) return fail("smla_decode_run");

  for (int head = 0; head < 2; ++head) {
    double z = 0;
    for (int d = 0; d < kDim; ++d) z += static_cast<double>(bf16_value(q[head * kDim + d])) * key[d];
    z *= args.softmax_scale;
    if (std::fabs(lse[head] - z) > 1e-5 * (1 + std::fabs(z))) return fail("lse != softmax_scale * dot(q, K)");
    const double weight = head == 0 ? 1.0 : 1.0 / (1.0 + std::exp(-z));  // e^z / (e^z + e^0)
    for (int d = 0; d < kDim; ++d) {
      const double expected = weight * key[d], got = bf16_value(out[head * kDim + d]);
      // Head 0: exact (K is exact in bf16). Head 1: one bf16 rounding (relative 2^-8).
      const double tolerance = head == 0 ? 0.0 : std::fabs(expected) / 256 + 1e-7;
      if (std::fabs(got - expected) > tolerance) return fail("out differs from the single-token expectation");
    }
  }
  std::printf("smla consumer: smla %s, CPU decode of one token matches (lse %.6f, %.6f)\n", smla_version(),
              lse[0], lse[1]);
  return 0;
}
