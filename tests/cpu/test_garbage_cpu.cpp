// Garbage caches on the cpu backend (issue 6, docs/safety.md).
//
// - Unselected slots and page padding filled with random bytes or NaN/inf patterns (scale bytes 0 and
//   255 included): out and lse bitwise equal the NaN-filled run.
// - Selected slots with scale bytes 0/255 (and random finite e4m3 codes in those groups): those groups
//   dequantize to 0; results match the float64 reference of the same bytes within the bf16-MMA rule of
//   spec section 8 (the cpu backend is that reference rounded once, so it sits far inside).
// - Selected slots with NaN e4m3 codes, bf16 NaN or +-inf rope values: every head of a NaN row has a
//   non-finite lse, the +inf-score head too, all other rows are bitwise unchanged, and nothing outside
//   out and lse is written (guard regions).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "common/garbage_fill.h"
#include "common/test_support.h"
#include "smla/codec.h"
#include "smla/decode.h"

namespace smla {
namespace {

// out and lse inside guard regions of known bytes, to catch writes outside them. 128-byte guards keep
// the 16-byte alignment run() requires of out.
struct GuardedOutputs {
  static constexpr size_t kGuardOut = 64, kGuardLse = 32;  // elements: 128 bytes each
  static constexpr uint16_t kGuardOutBits = 0x5a5a;
  static constexpr uint32_t kGuardLseBits = 0x5a5a5a5au;
  std::vector<uint16_t> out_storage;
  std::vector<float> lse_storage;
  size_t out_elements = 0, lse_elements = 0;

  explicit GuardedOutputs(const DecodeShape& shape) {
    lse_elements = static_cast<size_t>(shape.batch) * shape.seq_q * shape.num_heads;
    out_elements = lse_elements * kHeadDim;
    out_storage.assign(out_elements + 2 * kGuardOut, kGuardOutBits);
    float guard_lse;
    std::memcpy(&guard_lse, &kGuardLseBits, sizeof(guard_lse));
    lse_storage.assign(lse_elements + 2 * kGuardLse, guard_lse);
    std::fill_n(out_storage.begin() + kGuardOut, out_elements, test::kPoisonBf16);
    std::fill_n(lse_storage.begin() + kGuardLse, lse_elements, std::nanf(""));
  }
  uint16_t* out() { return out_storage.data() + kGuardOut; }
  float* lse() { return lse_storage.data() + kGuardLse; }
  std::vector<uint16_t> out_copy() const {
    return {out_storage.begin() + kGuardOut, out_storage.begin() + kGuardOut + out_elements};
  }
  std::vector<float> lse_copy() const {
    return {lse_storage.begin() + kGuardLse, lse_storage.begin() + kGuardLse + lse_elements};
  }
  // Empty when every guard element still holds its pattern.
  std::string guard_violation() const {
    for (size_t i = 0; i < out_storage.size(); ++i) {
      const bool guard = i < kGuardOut || i >= kGuardOut + out_elements;
      if (guard && out_storage[i] != kGuardOutBits)
        return "out guard element " + std::to_string(i) + " written";
    }
    for (size_t i = 0; i < lse_storage.size(); ++i) {
      uint32_t bits;
      std::memcpy(&bits, &lse_storage[i], sizeof(bits));
      const bool guard = i < kGuardLse || i >= kGuardLse + lse_elements;
      if (guard && bits != kGuardLseBits) return "lse guard element " + std::to_string(i) + " written";
    }
    return {};
  }
};

bool lse_bitwise_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// Runs the problem on a cpu plan into guarded outputs.
void run_cpu(const test::DecodeProblem& problem, GuardedOutputs* outputs) {
  PlanOptions options = default_plan_options();
  options.backend = SMLA_BACKEND_CPU;
  Plan plan;
  const Status plan_status = make_plan(problem.shape, options, &plan);
  ASSERT_TRUE(plan_status.ok()) << plan_status.message();
  const DecodeArgs args = problem.host_args(outputs->out(), outputs->lse());
  const Status status = run(plan, args, nullptr, 0, nullptr);
  ASSERT_TRUE(status.ok()) << status.message();
  EXPECT_EQ(outputs->guard_violation(), "");
}

TEST(GarbageCpu, UnselectedSlotsNeverChangeAResultBit) {
  uint64_t case_id = 0;
  for (const bool per_query : {false, true}) {
    for (const auto fill : {test::UnselectedFill::kRandomBytes, test::UnselectedFill::kNanPatterns}) {
      SCOPED_TRACE(std::string(test::unselected_fill_name(fill)) +
                   (per_query ? ", lengths [b, s_q]" : ", lengths [b]"));
      test::Rng rng = test::Rng::ForTest(100 + case_id++);
      test::DecodeProblem problem = test::make_problem(rng, test::garbage_config(per_query));
      GuardedOutputs nan_filled(problem.shape);
      ASSERT_NO_FATAL_FAILURE(run_cpu(problem, &nan_filled));
      const test::Comparison comparison =
          test::compare_to_reference(test::reference_decode(problem), nan_filled.out(), nan_filled.lse());
      ASSERT_TRUE(comparison.ok) << comparison.report;

      const int64_t unselected = test::fill_unselected_slots(rng, fill, &problem);
      GuardedOutputs garbage_filled(problem.shape);
      ASSERT_NO_FATAL_FAILURE(run_cpu(problem, &garbage_filled));
      const bool identical = nan_filled.out_copy() == garbage_filled.out_copy() &&
                             lse_bitwise_equal(nan_filled.lse_copy(), garbage_filled.lse_copy());
      std::printf("cpu garbage (%s, %lld unselected slots): %s\n", test::unselected_fill_name(fill),
                  static_cast<long long>(unselected), identical ? "bitwise identical" : "DIFFERS");
      EXPECT_GT(unselected, 0);
      EXPECT_TRUE(identical);
    }
  }
}

TEST(GarbageCpu, ScaleBytesZeroAnd255InSelectedSlotsDecodeToZero) {
  test::Rng rng = test::Rng::ForTest(200);
  test::DecodeProblem problem = test::make_problem(rng, test::garbage_config(true));
  const int64_t groups = test::plant_zero_scale_groups_in_selected(rng, &problem);
  ASSERT_GT(groups, 0);
  const test::SelectedSlots selected = test::selected_slots(problem);  // planting changes no index

  // The codec itself: a group under scale byte 0 or 255 dequantizes to exact zeros.
  int64_t zero_groups_seen = 0;
  for (const int64_t slot : selected.main) {
    std::vector<float> token(kHeadDim);
    ASSERT_TRUE(dequantize_slot(problem.main_cache.layout, slot, token.data()).ok());
    const uint8_t* footer = static_cast<const uint8_t*>(problem.main_cache.layout.data) +
                            slot_scale_offset(problem.main_cache.layout.page_block_size,
                                              problem.main_cache.layout.page_stride_bytes, slot);
    for (int group = 0; group < kNumScaleGroups; ++group) {
      if (footer[group] != 0 && footer[group] != 255) continue;
      ++zero_groups_seen;
      for (int i = 0; i < kQuantGroup; ++i) {
        ASSERT_EQ(token[group * kQuantGroup + i], 0.f) << "slot " << slot << " group " << group;
      }
    }
  }
  EXPECT_GT(zero_groups_seen, 0);

  GuardedOutputs outputs(problem.shape);
  ASSERT_NO_FATAL_FAILURE(run_cpu(problem, &outputs));
  const test::Comparison comparison =
      test::compare_to_reference(test::reference_decode(problem), outputs.out(), outputs.lse());
  std::printf("cpu selected scale 0/255 garbage (%lld groups): max_abs=%.3g cos_diff=%.3g %s\n",
              static_cast<long long>(groups), comparison.max_abs_error, comparison.cosine_difference,
              comparison.ok ? "ok" : "FAIL");
  EXPECT_TRUE(comparison.ok) << comparison.report;
  for (size_t i = 0; i < outputs.lse_elements; ++i) {
    // Rows are empty (+inf) or finite: garbage scales inject no NaN.
    EXPECT_FALSE(std::isnan(outputs.lse()[i])) << "lse " << i;
  }
}

TEST(GarbageCpu, NonFiniteSelectedValuesStayInTheirRow) {
  test::Rng rng = test::Rng::ForTest(300);
  test::ProblemConfig config = test::garbage_config(false);
  config.full_lengths = true;  // every row has valid entries to plant into
  test::DecodeProblem problem = test::make_problem(rng, config);
  GuardedOutputs clean(problem.shape);
  ASSERT_NO_FATAL_FAILURE(run_cpu(problem, &clean));

  const test::NonFinitePlan plan = test::plant_non_finite_values(&problem);
  GuardedOutputs planted(problem.shape);
  ASSERT_NO_FATAL_FAILURE(run_cpu(problem, &planted));
  const std::string violation = test::check_non_finite_outcome(
      problem, plan, clean.out_copy(), clean.lse_copy(), planted.out_copy(), planted.lse_copy());
  std::printf("cpu selected NaN/inf garbage (%s): %s\n", plan.description.c_str(),
              violation.empty() ? "confined to its rows" : violation.c_str());
  EXPECT_EQ(violation, "");
}

}  // namespace
}  // namespace smla
