// The cuda-ref backend against the float64 CPU reference (spec sections 4 and 8).
//
// Tolerance: the bf16-MMA rule of spec section 8 (per element abs 1e-3 or rel 2.01/128, cosine
// difference <= 5e-6, lse abs 1e-6 or rel 8.01/65536, identical +-inf/NaN positions). cuda-ref
// accumulates in fp32 and never rounds P to bf16, so it sits well inside the rule; its only rounding
// of note is the final bf16 of out.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include "common/device_buffers.h"
#include "common/garbage_fill.h"
#include "common/test_support.h"
#include "smla/cache.h"
#include "smla/decode.h"

namespace smla {
namespace {

#define ASSERT_STATUS_OK(expr)                                                     \
  do {                                                                             \
    const ::smla::Status assert_status_ = (expr);                                  \
    ASSERT_TRUE(assert_status_.ok()) << #expr << ": " << assert_status_.message(); \
  } while (0)

using test::DeviceBuffer;
using test::DevicePlan;
using test::DeviceProblem;
using test::HostOutputs;

// A problem on the device (outputs guarded and poisoned) and a cuda-ref plan with its zeroed workspace
// (the first 4 bytes are the device error counter).
void upload_with_ref_plan(const test::DecodeProblem& problem, DeviceProblem* device, DevicePlan* ref_plan) {
  ASSERT_EQ(test::upload_problem(problem, device), "");
  ASSERT_EQ(test::make_device_plan(problem.shape, SMLA_BACKEND_CUDA_REF, ref_plan), "");
}

// Poisons the outputs, runs eagerly on `stream` and downloads the outputs.
void run_eager(const DevicePlan& ref_plan, const DeviceProblem& device, cudaStream_t stream,
               HostOutputs* outputs) {
  ASSERT_EQ(test::run_and_download(ref_plan, device, stream, outputs), "");
}

uint32_t read_error_counter(const DevicePlan& ref_plan) {
  uint32_t counter = 0;
  if (ref_plan.plan.workspace_bytes() >= sizeof(counter)) {
    EXPECT_EQ(cudaMemcpy(&counter, ref_plan.workspace.as<void>(), sizeof(counter), cudaMemcpyDeviceToHost),
              cudaSuccess);
  }
  return counter;
}

std::string describe(const test::ProblemConfig& c) {
  char text[256];
  std::snprintf(
      text, sizeof(text),
      "b=%-2d s_q=%d h=%-3d topk=%-3d extra=%-4d P=%lld/%lld pad=%lld/%lld lengths=%s%s sink=%s", c.batch,
      c.seq_q, c.num_heads, c.topk, c.extra_topk, static_cast<long long>(c.main_page_block_size),
      static_cast<long long>(c.extra_page_block_size), static_cast<long long>(c.main_stride_pad_bytes),
      static_cast<long long>(c.extra_stride_pad_bytes),
      !c.lengths ? "none" : (c.lengths_per_query ? "[b,s_q]" : "[b]"),
      c.lengths && c.full_lengths ? ",full" : "", c.sink ? "yes" : "no");
  return text;
}

void expect_matches_reference(const test::Reference& reference, const HostOutputs& outputs,
                              const std::string& label) {
  const test::Comparison comparison =
      test::compare_to_reference(reference, outputs.out.data(), outputs.lse.data());
  std::printf("cuda-ref %s: max_abs=%.3g cos_diff=%.3g max_lse_err=%.3g %s\n", label.c_str(),
              comparison.max_abs_error, comparison.cosine_difference, comparison.max_lse_error,
              comparison.ok ? "ok" : "FAIL");
  EXPECT_TRUE(comparison.ok) << label << "\n" << comparison.report;
}

void run_reference_case(const test::ProblemConfig& config, uint64_t stream_id) {
  test::Rng rng = test::Rng::ForTest(stream_id);
  const test::DecodeProblem problem = test::make_problem(rng, config);
  const test::Reference reference = test::reference_decode(problem);
  DeviceProblem device;
  DevicePlan ref_plan;
  ASSERT_NO_FATAL_FAILURE(upload_with_ref_plan(problem, &device, &ref_plan));
  HostOutputs outputs;
  const auto start = std::chrono::steady_clock::now();
  ASSERT_NO_FATAL_FAILURE(run_eager(ref_plan, device, nullptr, &outputs));
  const double elapsed_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  char timing[64];
  std::snprintf(timing, sizeof(timing), " (%.2f ms incl. sync)", elapsed_ms);
  expect_matches_reference(reference, outputs, describe(config) + timing);
  // make_problem keeps out-of-range ids out of the valid prefixes, so nothing may be counted.
  EXPECT_EQ(read_error_counter(ref_plan), 0u) << describe(config);
  EXPECT_EQ(test::guards_intact(device), "") << describe(config);
}

// A sampled grid that covers every value of: h {1, 8, 16, 32, 64, 128}, s_q {1, 3}, main P {64, 256, 61},
// extra P {2, 64}, topk {64, 128, 576}, extra_topk {0, 512, 1024}, lengths [b] / [b, s_q] / none,
// random and full lengths, sinks with +-inf (and none), b {1, 4, 74}; plus odd sizes and empty rows.
std::vector<test::ProblemConfig> reference_grid() {
  std::vector<test::ProblemConfig> grid;
  auto add = [&](test::ProblemConfig config) { grid.push_back(config); };
  add(test::problem_config(1, 1, 1, 64, 0, 64, 64));
  {
    auto c = test::problem_config(4, 3, 8, 128, 512, 256, 64);
    c.lengths_per_query = true;
    add(c);
  }
  {
    auto c = test::problem_config(4, 1, 16, 576, 1024, 61, 2);
    c.full_lengths = true;
    add(c);
  }
  {
    auto c = test::problem_config(1, 3, 32, 64, 512, 64, 2);
    c.lengths_per_query = true;
    c.full_lengths = true;
    c.main_stride_pad_bytes = 32;
    c.extra_stride_pad_bytes = 16;
    add(c);
  }
  add(test::problem_config(4, 1, 64, 128, 1024, 256, 64));
  {
    auto c = test::problem_config(2, 1, 128, 128, 512, 64, 64);
    c.lengths_per_query = true;
    add(c);
  }
  add(test::problem_config(74, 1, 1, 128, 512, 256, 64));
  {
    auto c = test::problem_config(74, 3, 8, 64, 0, 61, 64);
    c.lengths_per_query = true;
    add(c);
  }
  {
    auto c = test::problem_config(1, 1, 128, 576, 1024, 61, 2);
    c.lengths = false;
    add(c);
  }
  {
    auto c = test::problem_config(4, 3, 16, 64, 0, 256, 64);
    c.sink = false;
    c.duplicate_fraction = 0.3;
    add(c);
  }
  {
    auto c =
        test::problem_config(2, 2, 5, 100, 70, 61, 2);  // h not a multiple of 8, widths not multiples of 64
    c.lengths_per_query = true;
    c.duplicate_fraction = 0.2;
    add(c);
  }
  {
    auto c = test::problem_config(4, 3, 128, 128, 1024, 64, 2);
    c.lengths_per_query = true;
    add(c);
  }
  {
    auto c =
        test::problem_config(2, 2, 8, 64, 64, 64, 2);  // every entry invalid: empty rows, out = 0, lse = +inf
    c.invalid_index_fraction = 1.0;
    add(c);
  }
  {
    auto c = test::problem_config(2, 3, 16, 128, 512, 256, 64);  // every sink is +inf or -inf
    c.sink_inf_fraction = 1.0;
    add(c);
  }
  add(test::problem_config(74, 1, 8, 128, 1024, 256, 2));
  return grid;
}

TEST(DecodeCudaRef, MatchesFloat64Reference) {
  SMLA_SKIP_WITHOUT_CUDA();
  // Under SMLA_TEST_QUICK=1 (racecheck slows this kernel ~50x) every third case, first and last kept.
  const std::vector<test::ProblemConfig> grid = reference_grid();
  const size_t step = test::quick_mode() ? 3 : 1;
  uint64_t stream_id = 0;
  for (size_t i = 0; i < grid.size(); ++i, ++stream_id) {
    if (i % step != 0 && i + 1 != grid.size()) continue;
    SCOPED_TRACE(describe(grid[i]));
    run_reference_case(grid[i], stream_id);
    if (::testing::Test::HasFatalFailure()) return;
  }
}

// Out-of-range ids inside the valid prefix are masked (the reference skips them too) and each one is
// counted exactly once in the device error counter, however many head blocks read it.
TEST(DecodeCudaRef, OutOfRangeIndicesAreMaskedAndCounted) {
  SMLA_SKIP_WITHOUT_CUDA();
  test::Rng rng = test::Rng::ForTest(1000);
  auto config = test::problem_config(2, 2, 24, 64, 128, 64, 2);  // 3 head blocks
  config.full_lengths = true;
  test::DecodeProblem problem = test::make_problem(rng, config);
  const int64_t main_slots = cache_num_slots(problem.main_cache.layout);
  const int64_t extra_slots = cache_num_slots(problem.extra_cache.layout);
  uint32_t planted = 0;
  for (size_t i = 3; i < problem.indices.size(); i += 17, ++planted) {
    problem.indices[i] = static_cast<int32_t>(main_slots + static_cast<int64_t>(i % 5));
  }
  for (size_t i = 5; i < problem.extra_indices.size(); i += 29, ++planted) {
    problem.extra_indices[i] =
        i % 2 ? std::numeric_limits<int32_t>::max() : static_cast<int32_t>(extra_slots);
  }
  const test::Reference reference = test::reference_decode(problem);
  DeviceProblem device;
  DevicePlan ref_plan;
  ASSERT_NO_FATAL_FAILURE(upload_with_ref_plan(problem, &device, &ref_plan));
  HostOutputs outputs;
  ASSERT_NO_FATAL_FAILURE(run_eager(ref_plan, device, nullptr, &outputs));
  expect_matches_reference(reference, outputs, describe(config) + " with out-of-range ids");
  const uint32_t counted = read_error_counter(ref_plan);
  std::printf("cuda-ref error counter: %u out-of-range entries counted, %u planted\n", counted, planted);
  EXPECT_EQ(counted, planted);
}

// Non-contiguous q, indices, out and lse: every stride comes from the args.
TEST(DecodeCudaRef, HonoursStrides) {
  SMLA_SKIP_WITHOUT_CUDA();
  test::Rng rng = test::Rng::ForTest(2000);
  auto config = test::problem_config(3, 2, 12, 128, 512, 256, 64);
  config.lengths_per_query = true;
  const test::DecodeProblem problem = test::make_problem(rng, config);
  const test::Reference reference = test::reference_decode(problem);
  DeviceProblem device;
  ASSERT_EQ(test::upload_problem(problem, &device), "");  // caches, lengths, sink; strided copies below
  const int b = config.batch, s = config.seq_q, h = config.num_heads;

  // Padded layouts: q and out heads 576 apart, rows padded; lse with head stride 2; indices rows padded.
  const int64_t head_stride = 576, seq_stride = h * head_stride + 64, batch_stride = s * seq_stride + 128;
  const int64_t lse_head = 2, lse_seq = h * lse_head + 1, lse_batch = s * lse_seq + 3;
  const int64_t index_seq = config.topk + 16, index_batch = s * index_seq + 8;
  const int64_t extra_seq = config.extra_topk + 8, extra_batch = s * extra_seq;
  std::vector<uint16_t> q_strided(static_cast<size_t>(b * batch_stride), test::kPoisonBf16);
  std::vector<int32_t> indices_strided(static_cast<size_t>(b * index_batch), -1);
  std::vector<int32_t> extra_strided(static_cast<size_t>(b * extra_batch), -1);
  for (int bi = 0; bi < b; ++bi) {
    for (int t = 0; t < s; ++t) {
      const int64_t row = static_cast<int64_t>(bi) * s + t;
      for (int hi = 0; hi < h; ++hi) {
        std::copy_n(problem.q.begin() + (row * h + hi) * kHeadDim, kHeadDim,
                    q_strided.begin() + bi * batch_stride + t * seq_stride + hi * head_stride);
      }
      std::copy_n(problem.indices.begin() + row * config.topk, config.topk,
                  indices_strided.begin() + bi * index_batch + t * index_seq);
      std::copy_n(problem.extra_indices.begin() + row * config.extra_topk, config.extra_topk,
                  extra_strided.begin() + bi * extra_batch + t * extra_seq);
    }
  }
  DeviceBuffer q_device, indices_device, extra_device, out_device, lse_device;
  ASSERT_EQ(test::upload_vector(q_strided, &q_device, "strided q"), "");
  ASSERT_EQ(test::upload_vector(indices_strided, &indices_device, "strided indices"), "");
  ASSERT_EQ(test::upload_vector(extra_strided, &extra_device, "strided extra_indices"), "");
  const size_t out_elements = static_cast<size_t>(b * batch_stride),
               lse_elements = static_cast<size_t>(b * lse_batch);
  ASSERT_EQ(out_device.allocate(out_elements * sizeof(uint16_t)), "");
  ASSERT_EQ(lse_device.allocate(lse_elements * sizeof(float)), "");
  ASSERT_CUDA_OK(cudaMemset(out_device.as<void>(), 0xFF, out_elements * sizeof(uint16_t)));
  ASSERT_CUDA_OK(cudaMemset(lse_device.as<void>(), 0xFF, lse_elements * sizeof(float)));

  DecodeArgs args = device.args;
  args.q = q_device.as<void>();
  args.q_stride_batch = batch_stride;
  args.q_stride_seq = seq_stride;
  args.q_stride_head = head_stride;
  args.indices = indices_device.as<int32_t>();
  args.indices_stride_batch = index_batch;
  args.indices_stride_seq = index_seq;
  args.extra_indices = extra_device.as<int32_t>();
  args.extra_indices_stride_batch = extra_batch;
  args.extra_indices_stride_seq = extra_seq;
  args.out = out_device.as<void>();
  args.out_stride_batch = batch_stride;
  args.out_stride_seq = seq_stride;
  args.out_stride_head = head_stride;
  args.lse = lse_device.as<float>();
  args.lse_stride_batch = lse_batch;
  args.lse_stride_seq = lse_seq;
  args.lse_stride_head = lse_head;

  DevicePlan ref_plan;
  ASSERT_EQ(test::make_device_plan(problem.shape, SMLA_BACKEND_CUDA_REF, &ref_plan), "");
  ASSERT_STATUS_OK(
      run(ref_plan.plan, args, ref_plan.workspace.as<void>(), ref_plan.plan.workspace_bytes(), nullptr));
  ASSERT_CUDA_OK(cudaDeviceSynchronize());
  std::vector<uint16_t> out_strided(out_elements);
  std::vector<float> lse_strided(lse_elements);
  ASSERT_CUDA_OK(
      cudaMemcpy(out_strided.data(), args.out, out_elements * sizeof(uint16_t), cudaMemcpyDeviceToHost));
  ASSERT_CUDA_OK(
      cudaMemcpy(lse_strided.data(), args.lse, lse_elements * sizeof(float), cudaMemcpyDeviceToHost));

  HostOutputs outputs;
  outputs.out.resize(static_cast<size_t>(b) * s * h * kHeadDim);
  outputs.lse.resize(static_cast<size_t>(b) * s * h);
  int64_t padding_written = 0;
  std::vector<bool> is_output(out_elements, false);
  for (int bi = 0; bi < b; ++bi) {
    for (int t = 0; t < s; ++t) {
      for (int hi = 0; hi < h; ++hi) {
        const int64_t row_head = (static_cast<int64_t>(bi) * s + t) * h + hi;
        const int64_t base = bi * batch_stride + t * seq_stride + hi * head_stride;
        std::copy_n(out_strided.begin() + base, kHeadDim, outputs.out.begin() + row_head * kHeadDim);
        std::fill_n(is_output.begin() + base, kHeadDim, true);
        outputs.lse[static_cast<size_t>(row_head)] =
            lse_strided[static_cast<size_t>(bi * lse_batch + t * lse_seq + hi * lse_head)];
      }
    }
  }
  for (size_t i = 0; i < out_elements; ++i) {
    if (!is_output[i] && out_strided[i] != 0xFFFF) ++padding_written;
  }
  expect_matches_reference(reference, outputs, describe(config) + " padded strides");
  EXPECT_EQ(padding_written, 0) << "elements between heads/rows of out were written";
}

// Regenerates indices and lengths of one list in place: new random lengths, valid prefixes drawn from
// the slots that hold tokens (duplicates allowed), garbage past the lengths.
void regenerate_list(test::Rng& rng, int width, int64_t rows, int seq_q, bool per_query, int64_t num_slots,
                     std::vector<int32_t>* indices, std::vector<int32_t>* lengths) {
  auto row_length = [&](int64_t row) {
    const int32_t raw = (*lengths)[static_cast<size_t>(per_query ? row : row / seq_q)];
    return std::clamp<int32_t>(raw, 0, width);
  };
  std::vector<int32_t> filled_slots;
  for (int64_t row = 0; row < rows; ++row) {
    for (int32_t j = 0; j < row_length(row); ++j) {
      const int32_t slot = (*indices)[static_cast<size_t>(row * width + j)];
      if (slot >= 0 && slot < num_slots) filled_slots.push_back(slot);
    }
  }
  for (auto& length : *lengths) length = static_cast<int32_t>(rng.uniform_int(0, width));
  for (int64_t row = 0; row < rows; ++row) {
    for (int32_t j = 0; j < width; ++j) {
      int32_t& index = (*indices)[static_cast<size_t>(row * width + j)];
      if (j < row_length(row)) {
        index = filled_slots.empty() || rng.uniform01() < 0.1
                    ? -1
                    : filled_slots[static_cast<size_t>(
                          rng.uniform_int(0, static_cast<int64_t>(filled_slots.size()) - 1))];
      } else {
        const int64_t choice = rng.uniform_int(0, 2);
        index = choice == 0 ? -1
                            : (choice == 1 ? std::numeric_limits<int32_t>::max()
                                           : static_cast<int32_t>(num_slots + rng.uniform_int(0, 999)));
      }
    }
  }
}

// CUDA-graph capture of smla::run, replayed after indices and lengths change on the device, equals the
// eager run bit for bit and the reference within tolerance.
TEST(DecodeCudaRef, GraphReplayMatchesEager) {
  SMLA_SKIP_WITHOUT_CUDA();
  cudaStream_t stream = nullptr;
  ASSERT_CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  // Under SMLA_TEST_QUICK=1 (racecheck runs) the smallest and largest batch only.
  const std::vector<int> batches =
      test::quick_mode() ? std::vector<int>{1, 16} : std::vector<int>{1, 2, 4, 8, 12, 16};
  for (const int batch : batches) {
    SCOPED_TRACE(::testing::Message() << "b=" << batch);
    test::Rng rng = test::Rng::ForTest(3000 + batch);
    auto config = test::problem_config(batch, 2, 16, 128, 512, 64, 64);
    config.lengths_per_query = batch % 4 != 0;
    test::DecodeProblem problem = test::make_problem(rng, config);
    DeviceProblem device;
    DevicePlan ref_plan;
    ASSERT_NO_FATAL_FAILURE(upload_with_ref_plan(problem, &device, &ref_plan));

    cudaGraph_t graph = nullptr;
    cudaGraphExec_t graph_exec = nullptr;
    ASSERT_CUDA_OK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
    const Status capture_status = run(ref_plan.plan, device.args, ref_plan.workspace.as<void>(),
                                      ref_plan.plan.workspace_bytes(), stream);
    ASSERT_CUDA_OK(cudaStreamEndCapture(stream, &graph));
    ASSERT_TRUE(capture_status.ok()) << capture_status.message();
    ASSERT_CUDA_OK(cudaGraphInstantiate(&graph_exec, graph, 0));

    for (int round = 0; round < 2; ++round) {
      if (round == 1) {
        // Same buffers, new contents: the graph must read them at replay time.
        const int64_t rows = static_cast<int64_t>(batch) * config.seq_q;
        regenerate_list(rng, config.topk, rows, config.seq_q, config.lengths_per_query,
                        cache_num_slots(problem.main_cache.layout), &problem.indices, &problem.topk_length);
        regenerate_list(rng, config.extra_topk, rows, config.seq_q, config.lengths_per_query,
                        cache_num_slots(problem.extra_cache.layout), &problem.extra_indices,
                        &problem.extra_topk_length);
        ASSERT_EQ(test::upload_vector_in_place(problem.indices, device.indices, "indices"), "");
        ASSERT_EQ(test::upload_vector_in_place(problem.topk_length, device.topk_length, "topk_length"), "");
        ASSERT_EQ(test::upload_vector_in_place(problem.extra_indices, device.extra_indices, "extra_indices"),
                  "");
        ASSERT_EQ(test::upload_vector_in_place(problem.extra_topk_length, device.extra_topk_length,
                                               "extra_topk_length"),
                  "");
      }
      HostOutputs replayed, eager;
      ASSERT_EQ(test::poison_outputs(device, stream), "");
      ASSERT_CUDA_OK(cudaGraphLaunch(graph_exec, stream));
      ASSERT_CUDA_OK(cudaStreamSynchronize(stream));
      ASSERT_EQ(test::download_outputs(device, &replayed), "");
      ASSERT_NO_FATAL_FAILURE(run_eager(ref_plan, device, stream, &eager));
      const bool identical = replayed.bitwise_equal(eager);
      std::printf("cuda-ref graph b=%-2d round %d: replay %s eager\n", batch, round,
                  identical ? "bitwise equals" : "DIFFERS from");
      EXPECT_TRUE(identical) << "round " << round;
      expect_matches_reference(test::reference_decode(problem), replayed,
                               describe(config) + " graph round " + std::to_string(round));
    }
    cudaGraphExecDestroy(graph_exec);
    cudaGraphDestroy(graph);
  }
  cudaStreamDestroy(stream);
}

// Unselected slots must never influence a result: NaN-filled and garbage-filled pools give bitwise
// identical out and lse.
TEST(DecodeCudaRef, GarbageInUnselectedSlotsIsIgnored) {
  SMLA_SKIP_WITHOUT_CUDA();
  test::Rng rng = test::Rng::ForTest(4000);
  for (const bool per_query : {false, true}) {
    auto config = test::problem_config(4, 2, 16, 128, 512, 256, 2);
    config.lengths_per_query = per_query;
    config.main_stride_pad_bytes = 48;
    test::DecodeProblem problem = test::make_problem(rng, config);
    DeviceProblem device;
    DevicePlan ref_plan;
    ASSERT_NO_FATAL_FAILURE(upload_with_ref_plan(problem, &device, &ref_plan));
    HostOutputs nan_filled, garbage_filled;
    ASSERT_NO_FATAL_FAILURE(run_eager(ref_plan, device, nullptr, &nan_filled));
    expect_matches_reference(test::reference_decode(problem), nan_filled,
                             describe(config) + " NaN-filled pool");

    // Random bytes in every unselected slot (rows, footers with scale bytes 0 and 255, page padding).
    const int64_t unselected = test::fill_unselected_slots(rng, test::UnselectedFill::kRandomBytes, &problem);
    ASSERT_EQ(test::reupload_pools(problem, device), "");
    ASSERT_NO_FATAL_FAILURE(run_eager(ref_plan, device, nullptr, &garbage_filled));
    const bool identical = nan_filled.bitwise_equal(garbage_filled);
    std::printf("cuda-ref garbage cache (%lld unselected slots randomised): %s\n",
                static_cast<long long>(unselected),
                identical ? "bitwise identical to the NaN-filled run" : "DIFFERS");
    EXPECT_GT(unselected, 0);
    EXPECT_TRUE(identical);
  }
}

}  // namespace
}  // namespace smla
