// The device error counter and SMLA_DEBUG_CHECKS=1 on the CUDA backends (issue 6, docs/safety.md):
// - slot ids >= pages * P inside a valid prefix are masked (results equal the float64 reference, which
//   skips them) and counted once each, read with read_device_errors, cleared with reset_device_errors;
// - lengths outside [0, width] are clamped and counted once per (row, list) (cuda-ref);
// - reset_device_errors captured in a CUDA graph before the run clears the count on every replay;
// - with SMLA_DEBUG_CHECKS=1 a run that met bad ids fails with SMLA_STATUS_DEVICE_CHECK_FAILED, a clean
//   run succeeds, and a capturing stream skips the check instead of synchronizing.
// Tolerance of the reference checks: the bf16-MMA rule of spec section 8.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

#include "common/device_buffers.h"
#include "common/test_support.h"
#include "smla/decode.h"

namespace smla {
namespace {

test::ProblemConfig counter_config() {
  test::ProblemConfig config;
  config.batch = 3;
  config.seq_q = 2;
  config.num_heads = 24;  // 3 cuda-ref head blocks, 2 tensor-core head blocks: each bad entry counts once
  config.topk = 64;
  config.extra_topk = 128;
  config.extra_page_block_size = 2;
  config.lengths_per_query = true;
  config.full_lengths = true;
  return config;
}

// Out-of-range ids planted inside the valid prefixes (full lengths); returns how many.
uint64_t plant_bad_ids(test::DecodeProblem* problem) {
  const int64_t main_slots = cache_num_slots(problem->main_cache.layout);
  const int64_t extra_slots = cache_num_slots(problem->extra_cache.layout);
  uint64_t planted = 0;
  for (size_t i = 2; i < problem->indices.size(); i += 23, ++planted) {
    problem->indices[i] = static_cast<int32_t>(main_slots + static_cast<int64_t>(i % 3));
  }
  for (size_t i = 9; i < problem->extra_indices.size(); i += 41, ++planted) {
    problem->extra_indices[i] =
        i % 2 ? std::numeric_limits<int32_t>::max() : static_cast<int32_t>(extra_slots);
  }
  return planted;
}

uint64_t read_errors(const test::DevicePlan& device_plan, cudaStream_t stream) {
  uint64_t count = 0;
  const Status status =
      read_device_errors(device_plan.plan, device_plan.workspace.as<void>(), &count, stream);
  EXPECT_TRUE(status.ok()) << status.message();
  return count;
}

void expect_reference(const test::DecodeProblem& problem, const test::HostOutputs& outputs,
                      const char* what) {
  const test::Comparison comparison =
      test::compare_to_reference(test::reference_decode(problem), outputs.out.data(), outputs.lse.data());
  EXPECT_TRUE(comparison.ok) << what << "\n" << comparison.report;
}

class DeviceErrorsCuda : public ::testing::TestWithParam<Backend> {};

TEST_P(DeviceErrorsCuda, OutOfRangeIdsAreMaskedCountedAndReset) {
  SMLA_SKIP_WITHOUT_CUDA();
  unsetenv("SMLA_DEBUG_CHECKS");
  test::Rng rng = test::Rng::ForTest(800);
  test::DecodeProblem problem = test::make_problem(rng, counter_config());
  const uint64_t planted = plant_bad_ids(&problem);
  test::DevicePlan device_plan;
  SMLA_DEVICE_PLAN_OR_SKIP(problem.shape, GetParam(), &device_plan);
  test::DeviceProblem device;
  ASSERT_EQ(test::upload_problem(problem, &device), "");
  EXPECT_EQ(read_errors(device_plan, nullptr), 0u);  // zeroed once after allocation

  test::HostOutputs outputs;
  ASSERT_EQ(test::run_and_download(device_plan, device, nullptr, &outputs), "");
  EXPECT_EQ(test::guards_intact(device), "");
  expect_reference(problem, outputs, "masked out-of-range ids");
  EXPECT_EQ(read_errors(device_plan, nullptr), planted);
  ASSERT_EQ(test::run_and_download(device_plan, device, nullptr, &outputs), "");
  EXPECT_EQ(read_errors(device_plan, nullptr), 2 * planted);  // runs only add

  const Status reset = reset_device_errors(device_plan.plan, device_plan.workspace.as<void>(), nullptr);
  ASSERT_TRUE(reset.ok()) << reset.message();
  EXPECT_EQ(read_errors(device_plan, nullptr), 0u);
  std::printf("%s: %llu planted out-of-range ids counted once per run, reset to 0\n",
              backend_name(GetParam()), static_cast<unsigned long long>(planted));
}

TEST_P(DeviceErrorsCuda, ResetCapturedInAGraphClearsEveryReplay) {
  SMLA_SKIP_WITHOUT_CUDA();
  unsetenv("SMLA_DEBUG_CHECKS");
  test::Rng rng = test::Rng::ForTest(801);
  test::DecodeProblem problem = test::make_problem(rng, counter_config());
  const uint64_t planted = plant_bad_ids(&problem);
  test::DevicePlan device_plan;
  SMLA_DEVICE_PLAN_OR_SKIP(problem.shape, GetParam(), &device_plan);
  test::DeviceProblem device;
  ASSERT_EQ(test::upload_problem(problem, &device), "");
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);

  cudaGraph_t graph = nullptr;
  cudaGraphExec_t graph_exec = nullptr;
  ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  const Status reset_status = reset_device_errors(device_plan.plan, device_plan.workspace.as<void>(), stream);
  const Status run_status = run(device_plan.plan, device.args, device_plan.workspace.as<void>(),
                                device_plan.plan.workspace_bytes(), stream);
  ASSERT_EQ(cudaStreamEndCapture(stream, &graph), cudaSuccess);
  ASSERT_TRUE(reset_status.ok()) << reset_status.message();
  ASSERT_TRUE(run_status.ok()) << run_status.message();
  ASSERT_EQ(cudaGraphInstantiate(&graph_exec, graph, 0), cudaSuccess);
  for (int replay = 0; replay < 3; ++replay) {
    ASSERT_EQ(cudaGraphLaunch(graph_exec, stream), cudaSuccess);
    EXPECT_EQ(read_errors(device_plan, stream), planted) << "replay " << replay;
  }
  cudaGraphExecDestroy(graph_exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
}

TEST_P(DeviceErrorsCuda, DebugChecksFailLoudlyOnBadIdsOnly) {
  SMLA_SKIP_WITHOUT_CUDA();
  test::Rng rng = test::Rng::ForTest(802);
  test::DecodeProblem problem = test::make_problem(rng, counter_config());
  test::DevicePlan device_plan;
  SMLA_DEVICE_PLAN_OR_SKIP(problem.shape, GetParam(), &device_plan);
  test::DeviceProblem device;
  ASSERT_EQ(test::upload_problem(problem, &device), "");
  setenv("SMLA_DEBUG_CHECKS", "1", 1);
  const Status clean = run(device_plan.plan, device.args, device_plan.workspace.as<void>(),
                           device_plan.plan.workspace_bytes(), nullptr);
  EXPECT_TRUE(clean.ok()) << clean.message();

  const uint64_t planted = plant_bad_ids(&problem);
  ASSERT_EQ(test::upload_vector(problem.indices, &device.indices, "indices"), "");
  ASSERT_EQ(test::upload_vector(problem.extra_indices, &device.extra_indices, "extra_indices"), "");
  const Status failed = run(device_plan.plan, device.args, device_plan.workspace.as<void>(),
                            device_plan.plan.workspace_bytes(), nullptr);
  EXPECT_EQ(failed.code(), SMLA_STATUS_DEVICE_CHECK_FAILED) << failed.message();
  EXPECT_NE(failed.message().find(std::to_string(planted) + " invalid slot ids or lengths"),
            std::string::npos)
      << failed.message();
  EXPECT_NE(failed.message().find("docs/safety.md"), std::string::npos) << failed.message();
  std::printf("%s debug checks: %s\n", backend_name(GetParam()), failed.message().c_str());

  // A capturing stream cannot synchronize: the run is captured as usual and the check is skipped.
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  cudaGraph_t graph = nullptr;
  ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  const Status captured = run(device_plan.plan, device.args, device_plan.workspace.as<void>(),
                              device_plan.plan.workspace_bytes(), stream);
  ASSERT_EQ(cudaStreamEndCapture(stream, &graph), cudaSuccess);
  unsetenv("SMLA_DEBUG_CHECKS");
  EXPECT_TRUE(captured.ok()) << captured.message();
  cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
}

INSTANTIATE_TEST_SUITE_P(Backends, DeviceErrorsCuda,
                         ::testing::Values(SMLA_BACKEND_CUDA, SMLA_BACKEND_CUDA_REF),
                         [](const ::testing::TestParamInfo<Backend>& info) {
                           return info.param == SMLA_BACKEND_CUDA ? std::string("cuda")
                                                                  : std::string("cuda_ref");
                         });

// Lengths outside [0, width] are clamped (the reference clamps too) and counted once per (row, list),
// however many head blocks and splits read them.
class DeviceLengthErrors : public ::testing::TestWithParam<Backend> {};

TEST_P(DeviceLengthErrors, BadLengthsAreClampedAndCountedOncePerRowAndList) {
  SMLA_SKIP_WITHOUT_CUDA();
  unsetenv("SMLA_DEBUG_CHECKS");
  test::Rng rng = test::Rng::ForTest(803);
  test::DecodeProblem problem = test::make_problem(rng, counter_config());
  // Per-query lengths [b, s_q] = 6 entries per list: 3 bad main lengths, 2 bad extra lengths.
  problem.topk_length[0] = problem.shape.topk + 1;
  problem.topk_length[2] = -1;
  problem.topk_length[5] = std::numeric_limits<int32_t>::max();
  problem.extra_topk_length[1] = std::numeric_limits<int32_t>::min();
  problem.extra_topk_length[4] = problem.shape.extra_topk + 64;
  const uint64_t planted = 5;
  test::DevicePlan device_plan;
  ASSERT_EQ(test::make_device_plan(problem.shape, GetParam(), &device_plan), "");
  test::DeviceProblem device;
  ASSERT_EQ(test::upload_problem(problem, &device), "");
  test::HostOutputs outputs;
  ASSERT_EQ(test::run_and_download(device_plan, device, nullptr, &outputs), "");
  EXPECT_EQ(test::guards_intact(device), "");
  expect_reference(problem, outputs, "clamped lengths");
  EXPECT_EQ(read_errors(device_plan, nullptr), planted);

  setenv("SMLA_DEBUG_CHECKS", "1", 1);
  const Status failed = run(device_plan.plan, device.args, device_plan.workspace.as<void>(),
                            device_plan.plan.workspace_bytes(), nullptr);
  unsetenv("SMLA_DEBUG_CHECKS");
  EXPECT_EQ(failed.code(), SMLA_STATUS_DEVICE_CHECK_FAILED) << failed.message();
  EXPECT_NE(failed.message().find(std::to_string(planted) + " invalid"), std::string::npos)
      << failed.message();
}

INSTANTIATE_TEST_SUITE_P(Backends, DeviceLengthErrors,
                         ::testing::Values(SMLA_BACKEND_CUDA, SMLA_BACKEND_CUDA_REF),
                         [](const ::testing::TestParamInfo<Backend>& info) {
                           return info.param == SMLA_BACKEND_CUDA ? std::string("cuda")
                                                                  : std::string("cuda_ref");
                         });

}  // namespace
}  // namespace smla
