// Garbage caches on the CUDA backends (issue 6, docs/safety.md), the same bytes as the cpu suite
// (tests/common/garbage_fill.h):
// - unselected slots and page padding with random bytes (cuda; cuda-ref has that case in
//   test_decode_cuda_ref) or NaN/inf patterns with scale bytes 0/255 (both): out and lse bitwise equal
//   the NaN-filled run;
// - selected slots with scale bytes 0/255: those groups are zero; results match the float64 reference
//   of the same bytes within the bf16-MMA rule of spec section 8 (per element abs 1e-3 or rel 2.01/128,
//   cosine difference <= 5e-6, lse abs 1e-6 or rel 8.01/65536);
// - selected NaN e4m3 codes, bf16 NaN and +-inf rope values: NaN rows get a non-finite lse in every
//   head, the +inf-score head too, other rows are bitwise unchanged.
// Every run checks the guard regions around out and lse and that the device error counter stays 0
// (no bad ids or lengths are passed here).
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "common/compact32_gather.h"
#include "common/device_buffers.h"
#include "common/garbage_fill.h"
#include "common/test_support.h"
#include "cuda/decode/config.h"
#include "smla/decode.h"

namespace smla {
namespace {

void expect_no_device_errors(const test::DevicePlan& device_plan) {
  uint64_t errors = 0;
  const Status status =
      read_device_errors(device_plan.plan, device_plan.workspace.as<void>(), &errors, /*stream=*/nullptr);
  ASSERT_TRUE(status.ok()) << status.message();
  EXPECT_EQ(errors, 0u) << "device error counter";
}

void run_checked(const test::DevicePlan& device_plan, const test::DeviceProblem& device,
                 test::HostOutputs* outputs) {
  ASSERT_EQ(test::run_and_download(device_plan, device, nullptr, outputs), "");
  EXPECT_EQ(test::guards_intact(device), "");
}

// Runs `problem` (unused slots NaN-filled by make_problem), checks it against the reference, fills its
// unselected slots and page padding with `fill`, runs again and expects every result bit unchanged.
// `label` names the kernel in the printed line.
void expect_unselected_fill_changes_nothing(const std::string& label, test::UnselectedFill fill,
                                            test::Rng& rng, test::DecodeProblem& problem,
                                            const test::DevicePlan& device_plan) {
  test::DeviceProblem device;
  ASSERT_EQ(test::upload_problem(problem, &device), "");
  test::HostOutputs nan_filled, garbage_filled;
  ASSERT_NO_FATAL_FAILURE(run_checked(device_plan, device, &nan_filled));
  const test::Comparison comparison = test::compare_to_reference(
      test::reference_decode(problem), nan_filled.out.data(), nan_filled.lse.data());
  ASSERT_TRUE(comparison.ok) << comparison.report;

  const int64_t unselected = test::fill_unselected_slots(rng, fill, &problem);
  ASSERT_EQ(test::reupload_pools(problem, device), "");
  ASSERT_NO_FATAL_FAILURE(run_checked(device_plan, device, &garbage_filled));
  const bool identical = nan_filled.bitwise_equal(garbage_filled);
  std::printf("%s garbage (%s, %lld unselected slots, %d splits): %s\n", label.c_str(),
              test::unselected_fill_name(fill), static_cast<long long>(unselected),
              device_plan.plan.num_splits(), identical ? "bitwise identical" : "DIFFERS");
  EXPECT_GT(unselected, 0);
  EXPECT_TRUE(identical);
  ASSERT_NO_FATAL_FAILURE(expect_no_device_errors(device_plan));
}

class GarbageCuda : public ::testing::TestWithParam<Backend> {};

TEST_P(GarbageCuda, UnselectedSlotsNeverChangeAResultBit) {
  SMLA_SKIP_WITHOUT_CUDA();
  const Backend backend = GetParam();
  std::vector<test::UnselectedFill> fills = {test::UnselectedFill::kNanPatterns};
  // cuda-ref's random-byte case lives in test_decode_cuda_ref.
  if (backend == SMLA_BACKEND_CUDA) fills.push_back(test::UnselectedFill::kRandomBytes);
  uint64_t case_id = 0;
  for (const bool per_query : {false, true}) {
    for (const test::UnselectedFill fill : fills) {
      const char* fill_name = test::unselected_fill_name(fill);
      SCOPED_TRACE(std::string(fill_name) + (per_query ? ", lengths [b, s_q]" : ", lengths [b]"));
      test::Rng rng = test::Rng::ForTest(100 + case_id++);
      test::DecodeProblem problem = test::make_problem(rng, test::garbage_config(per_query));
      test::DevicePlan device_plan;
      SMLA_DEVICE_PLAN_OR_SKIP(problem.shape, backend, &device_plan);
      ASSERT_NO_FATAL_FAILURE(
          expect_unselected_fill_changes_nothing(backend_name(backend), fill, rng, problem, device_plan));
    }
  }
}

TEST_P(GarbageCuda, ScaleBytesZeroAnd255InSelectedSlotsDecodeToZero) {
  SMLA_SKIP_WITHOUT_CUDA();
  const Backend backend = GetParam();
  test::Rng rng = test::Rng::ForTest(200);
  test::DecodeProblem problem = test::make_problem(rng, test::garbage_config(true));
  const int64_t groups = test::plant_zero_scale_groups_in_selected(rng, &problem);
  ASSERT_GT(groups, 0);
  test::DevicePlan device_plan;
  SMLA_DEVICE_PLAN_OR_SKIP(problem.shape, backend, &device_plan);
  test::DeviceProblem device;
  ASSERT_EQ(test::upload_problem(problem, &device), "");
  test::HostOutputs outputs;
  ASSERT_NO_FATAL_FAILURE(run_checked(device_plan, device, &outputs));
  const test::Comparison comparison =
      test::compare_to_reference(test::reference_decode(problem), outputs.out.data(), outputs.lse.data());
  std::printf(
      "%s selected scale 0/255 garbage (%lld groups): max_abs=%.3g cos_diff=%.3g max_lse_err=%.3g %s\n",
      backend_name(backend), static_cast<long long>(groups), comparison.max_abs_error,
      comparison.cosine_difference, comparison.max_lse_error, comparison.ok ? "ok" : "FAIL");
  EXPECT_TRUE(comparison.ok) << comparison.report;
  ASSERT_NO_FATAL_FAILURE(expect_no_device_errors(device_plan));
}

TEST_P(GarbageCuda, NonFiniteSelectedValuesStayInTheirRow) {
  SMLA_SKIP_WITHOUT_CUDA();
  const Backend backend = GetParam();
  test::Rng rng = test::Rng::ForTest(300);
  test::ProblemConfig config = test::garbage_config(false);
  config.full_lengths = true;  // every row has valid entries to plant into
  test::DecodeProblem problem = test::make_problem(rng, config);
  test::DevicePlan device_plan;
  SMLA_DEVICE_PLAN_OR_SKIP(problem.shape, backend, &device_plan);
  test::DeviceProblem device;
  ASSERT_EQ(test::upload_problem(problem, &device), "");
  test::HostOutputs clean, planted;
  ASSERT_NO_FATAL_FAILURE(run_checked(device_plan, device, &clean));

  const test::NonFinitePlan plan = test::plant_non_finite_values(&problem);
  ASSERT_EQ(test::reupload_pools(problem, device), "");
  ASSERT_NO_FATAL_FAILURE(run_checked(device_plan, device, &planted));
  const std::string violation =
      test::check_non_finite_outcome(problem, plan, clean.out, clean.lse, planted.out, planted.lse);
  std::printf("%s selected NaN/inf garbage (%s, %d splits): %s\n", backend_name(backend),
              plan.description.c_str(), device_plan.plan.num_splits(),
              violation.empty() ? "confined to its rows" : violation.c_str());
  EXPECT_EQ(violation, "");
  ASSERT_NO_FATAL_FAILURE(expect_no_device_errors(device_plan));
}

// The 32-head 99 KB-class kernel in each of its builds (the staging gather and the register gather, forced
// here whichever the schedule would pick; register_gather_pays): unselected slots and page padding full of
// NaN patterns or random bytes never change a result bit, since neither build reads a masked row. The
// 16-head shape above runs mma99-h16 under the cap.
TEST(GarbageCudaCompact32, UnselectedSlotsNeverChangeAResultBitInEitherBuild) {
  SMLA_SKIP_WITHOUT_CUDA();
  using detail::decode::Compact32Gather;
  uint64_t case_id = 0;
  for (const Compact32Gather gather : {Compact32Gather::kStaging, Compact32Gather::kRegisters}) {
    const test::ForcedCompact32Gather forced(gather);
    for (const bool per_query : {false, true}) {
      for (const test::UnselectedFill fill :
           {test::UnselectedFill::kNanPatterns, test::UnselectedFill::kRandomBytes}) {
        SCOPED_TRACE(std::string(test::compact32_gather_name(gather)) + ", " +
                     test::unselected_fill_name(fill) + (per_query ? ", lengths [b, s_q]" : ", lengths [b]"));
        test::Rng rng = test::Rng::ForTest(300 + case_id++);
        test::ProblemConfig config = test::garbage_config(per_query);
        config.batch = 16;  // 32 query rows of 32 heads: past the small-call rule that runs mma99-h16
        config.num_heads = 32;
        test::DecodeProblem problem = test::make_problem(rng, config);
        test::DevicePlan device_plan;
        ASSERT_EQ(test::make_device_plan(problem.shape, SMLA_BACKEND_CUDA, &device_plan,
                                         static_cast<int32_t>(detail::decode::kCompactSharedLimit)),
                  "");
        ASSERT_STREQ(device_plan.plan.kernel_name(), "mma99-h32");
        ASSERT_NO_FATAL_FAILURE(expect_unselected_fill_changes_nothing(
            std::string("mma99-h32 ") + test::compact32_gather_name(gather), fill, rng, problem,
            device_plan));
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, GarbageCuda, ::testing::Values(SMLA_BACKEND_CUDA, SMLA_BACKEND_CUDA_REF),
                         [](const ::testing::TestParamInfo<Backend>& info) {
                           return info.param == SMLA_BACKEND_CUDA ? std::string("cuda")
                                                                  : std::string("cuda_ref");
                         });

}  // namespace
}  // namespace smla
