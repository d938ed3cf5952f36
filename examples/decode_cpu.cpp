// The README's C++ example: quantize a few tokens into a paged cache, plan a decode, run it.
// Built and run as a test (`example_decode_cpu`), so the README cannot drift from the API.
#include <cmath>
#include <cstdio>
#include <vector>

#include "smla/codec.h"
#include "smla/decode.h"

int main() {
  // A main (sliding-window) cache of 2 pages of 64 tokens, with the writer's padded page stride.
  const int64_t page_block_size = 64, num_pages = 2;
  std::vector<uint8_t> pool(num_pages * smla::writer_page_stride_bytes(page_block_size) + 16);
  void* base = reinterpret_cast<void*>((reinterpret_cast<uintptr_t>(pool.data()) + 15) / 16 * 16);
  const smla::CacheLayout cache = smla::make_cache_layout(base, page_block_size, num_pages);

  // Append 100 bf16 tokens [100, 512] into slots 0..99 (slot = page * P + row).
  const int num_tokens = 100;
  std::vector<uint16_t> tokens(num_tokens * smla::kHeadDim);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = smla::float_to_bf16_bits(0.1f * std::sin(0.37f * i));
  std::vector<int32_t> slots(num_tokens);
  for (int i = 0; i < num_tokens; ++i) slots[i] = i;
  smla::Status status = smla::append_tokens(cache, tokens.data(), num_tokens, smla::kHeadDim, slots.data());
  if (!status.ok()) return std::printf("append: %s\n", status.message().c_str()), 1;

  // Plan once per shape: b=1, s_q=1, 16 heads, topk 128, no extra cache.
  const smla::DecodeShape shape{/*batch=*/1, /*seq_q=*/1, /*num_heads=*/16, /*topk=*/128, /*extra_topk=*/0};
  smla::PlanOptions options = smla::default_plan_options();
  options.backend = SMLA_BACKEND_CPU;  // host buffers here; AUTO picks cuda on a GPU
  smla::Plan plan;
  status = smla::make_plan(shape, options, &plan);
  if (!status.ok()) return std::printf("plan: %s\n", status.message().c_str()), 1;

  // Inputs: q [1, 1, 16, 512] bf16, indices [1, 1, 128] (the last 100 slots, then -1), length 100.
  std::vector<uint16_t> q(16 * smla::kHeadDim, smla::float_to_bf16_bits(0.05f));
  std::vector<int32_t> indices(128, -1), topk_length{100};
  for (int i = 0; i < num_tokens; ++i) indices[i] = i;
  std::vector<float> sink(16, 0.f);
  std::vector<uint16_t> out(16 * smla::kHeadDim);
  std::vector<float> lse(16);

  smla::DecodeArgs args{};
  args.q = q.data();
  args.main_cache = cache;
  args.indices = indices.data();
  args.topk_length = topk_length.data();
  args.topk_length_layout = SMLA_LENGTHS_PER_BATCH;
  args.attn_sink = sink.data();
  args.softmax_scale = 1.f / std::sqrt(512.f);
  args.out = out.data();
  args.lse = lse.data();
  smla::set_contiguous_strides(shape, &args);

  std::vector<uint8_t> workspace(plan.workspace_bytes() + 16);  // 0 bytes on the CPU backend
  status = smla::run(plan, args, workspace.data(), plan.workspace_bytes(), /*stream=*/nullptr);
  if (!status.ok()) return std::printf("run: %s\n", status.message().c_str()), 1;

  std::printf("backend %s: lse[0] = %.6f, out[0][0] = %.6f\n", smla::backend_name(plan.backend()), lse[0],
              smla::bf16_bits_to_float(out[0]));
  return std::isfinite(lse[0]) ? 0 : 1;
}
