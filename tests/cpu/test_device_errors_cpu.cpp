// The device error counter API on hosts without a GPU and on cpu plans (docs/safety.md): cpu plans
// report 0 and reset is a no-op; bad arguments are refused with a message naming them, in C++ and C;
// SMLA_DEBUG_CHECKS=1 leaves cpu runs unchanged (the cpu backend rejects bad ids up front instead).
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "common/test_support.h"
#include "smla/decode.h"
#include "smla/smla.h"

namespace smla {
namespace {

Plan cpu_plan(const DecodeShape& shape) {
  PlanOptions options = default_plan_options();
  options.backend = SMLA_BACKEND_CPU;
  Plan plan;
  const Status status = make_plan(shape, options, &plan);
  EXPECT_TRUE(status.ok()) << status.message();
  return plan;
}

TEST(DeviceErrorsCpu, CpuPlanReportsZeroAndResetIsANoOp) {
  const Plan plan = cpu_plan(DecodeShape{2, 1, 8, 64, 0});
  uint64_t count = 12345;
  const Status read = read_device_errors(plan, nullptr, &count, nullptr);
  ASSERT_TRUE(read.ok()) << read.message();
  EXPECT_EQ(count, 0u);
  const Status reset = reset_device_errors(plan, nullptr, nullptr);
  EXPECT_TRUE(reset.ok()) << reset.message();
}

TEST(DeviceErrorsCpu, BadArgumentsAreNamed) {
  const Plan plan = cpu_plan(DecodeShape{2, 1, 8, 64, 0});
  const Status no_count = read_device_errors(plan, nullptr, nullptr, nullptr);
  EXPECT_EQ(no_count.code(), SMLA_STATUS_INVALID_ARGUMENT);
  EXPECT_NE(no_count.message().find("error_count"), std::string::npos) << no_count.message();

  const Plan invalid;
  uint64_t count = 7;
  const Status invalid_read = read_device_errors(invalid, nullptr, &count, nullptr);
  EXPECT_EQ(invalid_read.code(), SMLA_STATUS_INVALID_ARGUMENT);
  EXPECT_NE(invalid_read.message().find("plan"), std::string::npos) << invalid_read.message();
  EXPECT_EQ(count, 0u);  // never left stale
  EXPECT_EQ(reset_device_errors(invalid, nullptr, nullptr).code(), SMLA_STATUS_INVALID_ARGUMENT);
}

TEST(DeviceErrorsCpu, CApiChecksAndForwards) {
  uint64_t count = 99;
  EXPECT_EQ(smla_plan_check_errors(nullptr, nullptr, nullptr, &count), SMLA_STATUS_INVALID_ARGUMENT);
  EXPECT_NE(std::string(smla_last_error()).find("plan"), std::string::npos) << smla_last_error();
  EXPECT_EQ(smla_plan_reset_errors(nullptr, nullptr, nullptr), SMLA_STATUS_INVALID_ARGUMENT);

  smla_decode_shape_t shape{1, 1, 4, 64, 0};
  smla_plan_options_t options;
  smla_default_plan_options(&options);
  options.backend = SMLA_BACKEND_CPU;
  smla_plan_t plan = nullptr;
  ASSERT_EQ(smla_plan_create(&shape, &options, &plan), SMLA_STATUS_OK) << smla_last_error();
  EXPECT_EQ(smla_plan_check_errors(plan, nullptr, nullptr, nullptr), SMLA_STATUS_INVALID_ARGUMENT);
  EXPECT_NE(std::string(smla_last_error()).find("count"), std::string::npos) << smla_last_error();
  EXPECT_EQ(smla_plan_check_errors(plan, nullptr, nullptr, &count), SMLA_STATUS_OK) << smla_last_error();
  EXPECT_EQ(count, 0u);
  EXPECT_EQ(smla_plan_reset_errors(plan, nullptr, nullptr), SMLA_STATUS_OK) << smla_last_error();
  smla_plan_destroy(plan);
}

// Debug mode changes nothing for the cpu backend: same bits, and out-of-range ids are still refused by
// the host check (with the argument named), not by a device check.
TEST(DeviceErrorsCpu, DebugChecksLeaveCpuRunsUnchanged) {
  test::Rng rng = test::Rng::ForTest(600);
  test::ProblemConfig config;
  config.batch = 2;
  config.num_heads = 8;
  config.topk = 64;
  config.extra_topk = 64;
  config.extra_page_block_size = 2;
  config.full_lengths = true;
  test::DecodeProblem problem = test::make_problem(rng, config);
  const Plan plan = cpu_plan(problem.shape);
  const size_t lse_elements = static_cast<size_t>(problem.shape.batch) * problem.shape.num_heads;
  std::vector<uint16_t> out_plain(lse_elements * kHeadDim), out_debug(lse_elements * kHeadDim);
  std::vector<float> lse_plain(lse_elements), lse_debug(lse_elements);

  unsetenv("SMLA_DEBUG_CHECKS");
  ASSERT_TRUE(run(plan, problem.host_args(out_plain.data(), lse_plain.data()), nullptr, 0, nullptr).ok());
  setenv("SMLA_DEBUG_CHECKS", "1", 1);
  const Status debug_status =
      run(plan, problem.host_args(out_debug.data(), lse_debug.data()), nullptr, 0, nullptr);
  EXPECT_TRUE(debug_status.ok()) << debug_status.message();
  EXPECT_EQ(out_plain, out_debug);
  EXPECT_EQ(std::memcmp(lse_plain.data(), lse_debug.data(), lse_elements * sizeof(float)), 0);

  problem.extra_indices[5] = static_cast<int32_t>(cache_num_slots(problem.extra_cache.layout));
  const Status refused =
      run(plan, problem.host_args(out_debug.data(), lse_debug.data()), nullptr, 0, nullptr);
  unsetenv("SMLA_DEBUG_CHECKS");
  EXPECT_EQ(refused.code(), SMLA_STATUS_INVALID_ARGUMENT);
  EXPECT_NE(refused.message().find("args.extra_indices"), std::string::npos) << refused.message();
}

}  // namespace
}  // namespace smla
