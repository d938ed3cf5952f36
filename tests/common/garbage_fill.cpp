#include "common/garbage_fill.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "smla/cache.h"

namespace smla::test {
namespace {

int32_t row_length(const std::vector<int32_t>& lengths, int width, int64_t row, int seq_q, bool per_query) {
  if (lengths.empty()) return width;
  return std::clamp<int32_t>(lengths[static_cast<size_t>(per_query ? row : row / seq_q)], 0, width);
}

void add_selected(const std::vector<int32_t>& indices, const std::vector<int32_t>& lengths, int width,
                  const DecodeProblem& problem, const HostCache& cache, std::set<int64_t>* slots) {
  const int64_t rows = static_cast<int64_t>(problem.shape.batch) * problem.shape.seq_q;
  const int64_t num_slots = cache_num_slots(cache.layout);
  for (int64_t row = 0; row < rows; ++row) {
    const int32_t length =
        row_length(lengths, width, row, problem.shape.seq_q, problem.config.lengths_per_query);
    for (int32_t j = 0; j < length; ++j) {
      const int32_t slot = indices[static_cast<size_t>(row * width + j)];
      if (slot >= 0 && slot < num_slots) slots->insert(slot);
    }
  }
}

// First valid slot of a row's list, or -1.
int64_t first_valid_slot(const std::vector<int32_t>& indices, const std::vector<int32_t>& lengths, int width,
                         const DecodeProblem& problem, const HostCache& cache, int64_t row) {
  if (width == 0) return -1;
  const int32_t length =
      row_length(lengths, width, row, problem.shape.seq_q, problem.config.lengths_per_query);
  for (int32_t j = 0; j < length; ++j) {
    const int32_t slot = indices[static_cast<size_t>(row * width + j)];
    if (slot >= 0 && slot < cache_num_slots(cache.layout)) return slot;
  }
  return -1;
}

uint8_t* pool_base(HostCache* cache) { return static_cast<uint8_t*>(cache->layout.data); }

int64_t row_offset(const HostCache& cache, int64_t slot) {
  return slot_row_offset(cache.layout.page_block_size, cache.layout.page_stride_bytes, slot);
}
int64_t footer_offset(const HostCache& cache, int64_t slot) {
  return slot_scale_offset(cache.layout.page_block_size, cache.layout.page_stride_bytes, slot);
}

void write_rope(HostCache* cache, int64_t slot, int rope_index, uint16_t bits) {
  uint8_t* rope = pool_base(cache) + row_offset(*cache, slot) + kNopeDim + 2 * rope_index;
  rope[0] = static_cast<uint8_t>(bits & 0xFFu);  // little-endian bf16
  rope[1] = static_cast<uint8_t>(bits >> 8);
}

bool is_e4m3_nan(uint8_t code) { return (code & 0x7Fu) == 0x7Fu; }

}  // namespace

ProblemConfig garbage_config(bool per_query) {
  ProblemConfig config;
  config.batch = 4;
  config.seq_q = 2;
  config.num_heads = 16;
  config.topk = 128;
  config.extra_topk = 256;
  config.main_page_block_size = 64;
  config.extra_page_block_size = 2;
  config.main_stride_pad_bytes = 48;  // page padding that the garbage fills too
  config.lengths_per_query = per_query;
  return config;
}

const char* unselected_fill_name(UnselectedFill fill) {
  return fill == UnselectedFill::kRandomBytes ? "random bytes" : "NaN/inf patterns";
}

SelectedSlots selected_slots(const DecodeProblem& problem) {
  SelectedSlots selected;
  add_selected(problem.indices, problem.topk_length, problem.shape.topk, problem, problem.main_cache,
               &selected.main);
  if (problem.shape.extra_topk > 0) {
    add_selected(problem.extra_indices, problem.extra_topk_length, problem.shape.extra_topk, problem,
                 problem.extra_cache, &selected.extra);
  }
  return selected;
}

int64_t fill_unselected(Rng& rng, const std::set<int64_t>& selected, UnselectedFill fill, HostCache* cache) {
  uint8_t* base = pool_base(cache);
  const int64_t pool_bytes = cache->pool_bytes();
  const std::vector<uint8_t> original(base, base + pool_bytes);
  // e4m3 NaN codes, -0, bf16 (little-endian pairs) NaN 0xff7f, +inf 0x7f80, -inf 0xff80, scale bytes 0
  // and 255. Rows and footers start at multiples of 8 bytes from a page, so every slot sees each role.
  constexpr uint8_t kNanPattern[8] = {0x7F, 0xFF, 0x80, 0x7F, 0x80, 0xFF, 0x00, 0xFF};
  for (int64_t i = 0; i < pool_bytes; ++i) {
    base[i] =
        fill == UnselectedFill::kRandomBytes ? static_cast<uint8_t>(rng.engine()()) : kNanPattern[i % 8];
  }
  int64_t unselected = 0;
  for (int64_t slot = 0; slot < cache_num_slots(cache->layout); ++slot) {
    const int64_t row = row_offset(*cache, slot);
    const int64_t footer = footer_offset(*cache, slot);
    if (selected.count(slot) != 0) {
      std::memcpy(base + row, original.data() + row, kRowBytes);
      std::memcpy(base + footer, original.data() + footer, kScaleBytes);
      continue;
    }
    ++unselected;
    if (fill != UnselectedFill::kRandomBytes) continue;
    for (int group = 0; group < kNumScaleGroups; ++group) {
      const int64_t choice = rng.uniform_int(0, 2);  // 0: byte 0, 1: byte 255, 2: keep the random byte
      if (choice < 2) base[footer + group] = choice == 0 ? 0 : 255;
    }
  }
  return unselected;
}

int64_t fill_unselected_slots(Rng& rng, UnselectedFill fill, DecodeProblem* problem) {
  const SelectedSlots selected = selected_slots(*problem);
  const int64_t main_unselected = fill_unselected(rng, selected.main, fill, &problem->main_cache);
  return main_unselected + fill_unselected(rng, selected.extra, fill, &problem->extra_cache);
}

int64_t plant_zero_scale_groups(Rng& rng, const std::set<int64_t>& selected, HostCache* cache) {
  uint8_t* base = pool_base(cache);
  int64_t changed = 0;
  for (const int64_t slot : selected) {
    const int64_t row = row_offset(*cache, slot);
    const int64_t footer = footer_offset(*cache, slot);
    base[footer + kNumScaleGroups] = static_cast<uint8_t>(rng.engine()());  // pad byte: readers ignore it
    for (int group = 0; group < kNumScaleGroups; ++group) {
      if (rng.uniform01() >= 0.3) continue;
      base[footer + group] = rng.uniform_int(0, 1) ? 255 : 0;
      for (int i = 0; i < kQuantGroup; ++i) {
        uint8_t code = static_cast<uint8_t>(rng.engine()());
        if (is_e4m3_nan(code)) code &= 0xFEu;  // 0x7e / 0xfe: +-448, finite
        base[row + group * kQuantGroup + i] = code;
      }
      ++changed;
    }
  }
  return changed;
}

int64_t plant_zero_scale_groups_in_selected(Rng& rng, DecodeProblem* problem) {
  const SelectedSlots selected = selected_slots(*problem);
  const int64_t main_groups = plant_zero_scale_groups(rng, selected.main, &problem->main_cache);
  return main_groups + plant_zero_scale_groups(rng, selected.extra, &problem->extra_cache);
}

NonFinitePlan plant_non_finite_values(DecodeProblem* problem) {
  const DecodeShape& shape = problem->shape;
  const int64_t rows = static_cast<int64_t>(shape.batch) * shape.seq_q;
  std::vector<int64_t> candidates;  // rows with a valid main entry
  for (int64_t row = 0; row < rows; ++row) {
    if (first_valid_slot(problem->indices, problem->topk_length, shape.topk, *problem, problem->main_cache,
                         row) >= 0) {
      candidates.push_back(row);
    }
  }
  constexpr size_t kPlantedRows = 4;
  if (candidates.size() < kPlantedRows + 1) {
    throw std::runtime_error(
        "plant_non_finite_values: needs 5 rows with a valid main entry, the problem has " +
        std::to_string(candidates.size()));
  }
  NonFinitePlan plan;
  auto main_slot = [&](int64_t row) {
    return first_valid_slot(problem->indices, problem->topk_length, shape.topk, *problem, problem->main_cache,
                            row);
  };
  uint8_t* main_base = pool_base(&problem->main_cache);

  // Row A: e4m3 NaN code 0x7f at dim 3 of its first main token.
  const int64_t row_a = candidates[0];
  main_base[row_offset(problem->main_cache, main_slot(row_a)) + 3] = 0x7F;
  plan.nan_rows.push_back(row_a);

  // Row B: e4m3 NaN code 0xff at dim 200, in its first extra token when it has one, else in main.
  const int64_t row_b = candidates[1];
  const int64_t extra_slot = first_valid_slot(problem->extra_indices, problem->extra_topk_length,
                                              shape.extra_topk, *problem, problem->extra_cache, row_b);
  if (extra_slot >= 0) {
    pool_base(&problem->extra_cache)[row_offset(problem->extra_cache, extra_slot) + 200] = 0xFF;
  } else {
    main_base[row_offset(problem->main_cache, main_slot(row_b)) + 200] = 0xFF;
  }
  plan.nan_rows.push_back(row_b);

  // Row C: bf16 NaN in rope value 5.
  const int64_t row_c = candidates[2];
  write_rope(&problem->main_cache, main_slot(row_c), 5, 0x7FC0);
  plan.nan_rows.push_back(row_c);

  // Row D: one rope value +-inf, signed like head 0's q there, so head 0's score is +inf.
  const int64_t row_d = candidates[3];
  const size_t q_head0 = static_cast<size_t>(row_d) * shape.num_heads * kHeadDim;
  int rope_index = 0;
  while (rope_index < kRopeDim && (problem->q[q_head0 + kNopeDim + rope_index] & 0x7FFFu) == 0) ++rope_index;
  if (rope_index == kRopeDim)
    throw std::runtime_error("plant_non_finite_values: q rope of head 0 is all zero");
  const bool q_negative = (problem->q[q_head0 + kNopeDim + rope_index] & 0x8000u) != 0;
  write_rope(&problem->main_cache, main_slot(row_d), rope_index, q_negative ? 0xFF80 : 0x7F80);
  plan.inf_row = row_d;

  plan.description = "NaN rows " + std::to_string(row_a) + " (e4m3 0x7f), " + std::to_string(row_b) +
                     (extra_slot >= 0 ? " (extra e4m3 0xff), " : " (e4m3 0xff), ") + std::to_string(row_c) +
                     " (bf16 NaN rope); inf row " + std::to_string(row_d) + " (rope " +
                     std::to_string(rope_index) + ")";
  return plan;
}

std::string check_non_finite_outcome(const DecodeProblem& problem, const NonFinitePlan& plan,
                                     const std::vector<uint16_t>& clean_out,
                                     const std::vector<float>& clean_lse, const std::vector<uint16_t>& out,
                                     const std::vector<float>& lse) {
  const DecodeShape& shape = problem.shape;
  const int64_t rows = static_cast<int64_t>(shape.batch) * shape.seq_q;
  const size_t heads = static_cast<size_t>(shape.num_heads);
  for (int64_t row = 0; row < rows; ++row) {
    const bool nan_row = std::count(plan.nan_rows.begin(), plan.nan_rows.end(), row) != 0;
    const size_t first_head = static_cast<size_t>(row) * heads;
    if (nan_row) {
      for (size_t h = 0; h < heads; ++h) {
        if (std::isfinite(lse[first_head + h])) {
          return "row " + std::to_string(row) + " head " + std::to_string(h) +
                 ": a selected NaN left lse finite (" + std::to_string(lse[first_head + h]) + ")";
        }
      }
    } else if (row == plan.inf_row) {
      if (std::isfinite(lse[first_head])) {
        return "row " + std::to_string(row) + " head 0: a +inf score left lse finite (" +
               std::to_string(lse[first_head]) + ")";
      }
    } else {
      const bool out_same = std::equal(clean_out.begin() + first_head * kHeadDim,
                                       clean_out.begin() + (first_head + heads) * kHeadDim,
                                       out.begin() + first_head * kHeadDim);
      const bool lse_same =
          std::memcmp(clean_lse.data() + first_head, lse.data() + first_head, heads * sizeof(float)) == 0;
      if (!out_same || !lse_same) {
        return "row " + std::to_string(row) + " (no garbage) changed: " + (out_same ? "lse" : "out") +
               " differs from the clean run";
      }
    }
  }
  return {};
}

}  // namespace smla::test
