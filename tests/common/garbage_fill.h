// Hostile cache contents for the garbage-cache tests (issue 6, docs/safety.md), shared by the CPU and
// CUDA suites so every backend faces the same bytes.
//
// Unselected slots (and page padding) may hold anything and must never change a result bit. Selected
// slots with garbage have a documented outcome:
// - a scale byte 0 or 255 dequantizes its whole group to 0 (finite e4m3 bytes there contribute zero);
// - a NaN (e4m3 code 0x7f/0xff or a bf16 NaN rope value) in a selected token makes every head of that
//   query row report a non-finite lse; other rows are unaffected;
// - a +-inf rope value makes the row's result non-finite where the score becomes +inf (checked on the
//   head whose q makes it +inf); other rows are unaffected.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "common/test_support.h"

namespace smla::test {

// The garbage suites' problem: 4 x 2 queries, 16 heads, both lists (extra with 2-token pages), and page
// padding in the main cache for the garbage to fill too.
ProblemConfig garbage_config(bool per_query);

// Slots in range that the valid prefixes of a problem select, per list.
struct SelectedSlots {
  std::set<int64_t> main, extra;
};
SelectedSlots selected_slots(const DecodeProblem& problem);

enum class UnselectedFill {
  kRandomBytes,  // uniform random bytes; every scale byte forced to 0 or 255 in a third of the cases
  kNanPatterns,  // e4m3 NaN codes 0x7f/0xff, bf16 NaN and +-inf, scale bytes 0 and 255, in a cycle
};

const char* unselected_fill_name(UnselectedFill fill);

// Overwrites every byte of the pool except the rows and footer entries of `selected` (so page padding
// and pad bytes of selected tokens change too). Returns the number of unselected slots.
int64_t fill_unselected(Rng& rng, const std::set<int64_t>& selected, UnselectedFill fill, HostCache* cache);

// fill_unselected on both caches of `problem` (main first), around the slots its valid prefixes select.
// Returns the number of unselected slots of both.
int64_t fill_unselected_slots(Rng& rng, UnselectedFill fill, DecodeProblem* problem);

// Selected slots with scale bytes 0/255: in about 30% of the groups of each selected token, the scale
// byte becomes 0 or 255 and the group's e4m3 bytes random finite codes (never 0x7f/0xff). The float64
// reference dequantizes the same bytes (scale 0/255 -> 0), so results must match it within tolerance.
// Returns the number of groups changed.
int64_t plant_zero_scale_groups(Rng& rng, const std::set<int64_t>& selected, HostCache* cache);

// plant_zero_scale_groups on both caches of `problem` (main first), in the slots its valid prefixes
// select. Returns the number of groups changed in both.
int64_t plant_zero_scale_groups_in_selected(Rng& rng, DecodeProblem* problem);

// Non-finite values planted in selected tokens of a few query rows (row = b * seq_q + t).
struct NonFinitePlan {
  std::vector<int64_t> nan_rows;  // rows with one NaN (e4m3 0x7f, e4m3 0xff or bf16 NaN rope)
  int64_t inf_row = -1;           // row with one bf16 +-inf rope value, +inf score for head 0
  std::string description;
};
// Needs rows with at least one valid main entry; leaves at least one row clean. Changes each planted
// slot in place (make_problem gives every valid entry its own slot, so no other row sees it).
NonFinitePlan plant_non_finite_values(DecodeProblem* problem);

// Checks the outcome above: rows outside the plan bitwise equal `clean` (out bf16 bits and lse bits),
// every head of a NaN row has a non-finite lse, head 0 of the inf row has a non-finite lse. Empty on
// success, else the first violation.
std::string check_non_finite_outcome(const DecodeProblem& problem, const NonFinitePlan& plan,
                                     const std::vector<uint16_t>& clean_out,
                                     const std::vector<float>& clean_lse, const std::vector<uint16_t>& out,
                                     const std::vector<float>& lse);

}  // namespace smla::test
