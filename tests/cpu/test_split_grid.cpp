// The decode grid's layout (common/split_grid.h), checked on the CPU over every small geometry: each
// (row, head block) gets one unsplit CTA or all its part's splits exactly once, in the documented order;
// each part's splits cover the row's tiles without overlap; the split rows' partial slots are distinct and
// fit the workspace the plan sizes; the combine launches cover exactly the split rows, each with its
// part's split count and partial rows; the kernels' per-CTA rules, read from the parameters, place every
// CTA where that order says.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "common/decode_params.h"
#include "common/split_grid.h"

namespace smla::detail {
namespace {

struct Geometry {
  int64_t rows, head_blocks, body_rows;
  int32_t body_splits, body_tiles_per_split;
  int32_t splits, total_tiles, tiles_per_split;
  std::string label() const {
    return "rows=" + std::to_string(rows) + " head_blocks=" + std::to_string(head_blocks) +
           " body_rows=" + std::to_string(body_rows) + " body_splits=" + std::to_string(body_splits) + "x" +
           std::to_string(body_tiles_per_split) + " splits=" + std::to_string(splits) + "x" +
           std::to_string(tiles_per_split) + " tiles=" + std::to_string(total_tiles);
  }
  int32_t splits_of_row(int64_t row) const { return row < body_rows ? body_splits : splits; }
  bool row_writes_partials(int64_t row) const { return splits_of_row(row) > 1; }
};

// The split counts the planner can make of `total_tiles`: splits of ceil(total / splits) tiles with no
// statically empty split (schedule.cpp).
std::vector<int32_t> split_counts(int32_t total_tiles) {
  std::vector<int32_t> counts;
  for (int32_t wanted : {1, 2, 3, 5, 18}) {
    if (wanted > total_tiles) continue;
    const int32_t tiles_per_split = (total_tiles + wanted - 1) / wanted;
    counts.push_back((total_tiles + tiles_per_split - 1) / tiles_per_split);
  }
  return counts;
}

int32_t tiles_per_split_of(int32_t total_tiles, int32_t splits) {
  return (total_tiles + splits - 1) / splits;
}

// Every geometry the planner can make: a uniform grid (body_rows = 0), or a body of body_splits >= 1
// splits and a tail of more splits (0 < body_rows < rows, the tail split: dispatch.cpp checks the same).
std::vector<Geometry> geometries() {
  std::vector<Geometry> all;
  for (int64_t rows : {1, 2, 3, 5, 8, 13})
    for (int64_t head_blocks : {1, 2, 4, 8})
      for (int32_t total_tiles : {1, 2, 3, 7, 18})
        for (int32_t splits : split_counts(total_tiles)) {
          const int32_t tiles_per_split = tiles_per_split_of(total_tiles, splits);
          all.push_back({rows, head_blocks, 0, 1, total_tiles, splits, total_tiles, tiles_per_split});
          if (splits == 1) continue;
          for (int32_t body_splits : split_counts(total_tiles)) {
            if (body_splits >= splits) continue;
            for (int64_t body_rows = 1; body_rows < rows; ++body_rows)
              all.push_back({rows, head_blocks, body_rows, body_splits,
                             tiles_per_split_of(total_tiles, body_splits), splits, total_tiles,
                             tiles_per_split});
          }
        }
  return all;
}

TEST(SplitGrid, EveryRowBlockGetsItsCtasOnceInOrder) {
  for (const Geometry& g : geometries()) {
    const int64_t ctas = decode_grid_ctas(g.rows, g.head_blocks, g.body_rows, g.body_splits, g.splits);
    const uint32_t body_ctas = static_cast<uint32_t>(g.body_rows * g.head_blocks * g.body_splits);
    const int32_t most_splits = g.splits > g.body_splits ? g.splits : g.body_splits;
    std::vector<int> seen(static_cast<size_t>(g.rows * g.head_blocks * most_splits), 0);
    int64_t previous_row_block = -1;
    for (uint32_t cta = 0; cta < ctas; ++cta) {
      const SplitGridPosition position =
          split_grid_position(cta, body_ctas, FastDivisor::make(g.body_splits), FastDivisor::make(g.splits));
      ASSERT_LT(position.row_block, g.rows * g.head_blocks) << g.label() << " cta " << cta;
      const int64_t row = position.row_block / g.head_blocks;
      // The kernels' test (cta_writes_partials, split_tile_range): the body's CTAs come first.
      EXPECT_EQ(cta < body_ctas, row < g.body_rows) << g.label() << " cta " << cta;
      EXPECT_LT(position.split, static_cast<uint32_t>(g.splits_of_row(row))) << g.label() << " cta " << cta;
      // Rows, then a row's head blocks, then its splits: the row block never goes back.
      EXPECT_GE(static_cast<int64_t>(position.row_block), previous_row_block) << g.label() << " cta " << cta;
      previous_row_block = position.row_block;
      ++seen[static_cast<size_t>(position.row_block * most_splits + position.split)];
    }
    for (int64_t row_block = 0; row_block < g.rows * g.head_blocks; ++row_block) {
      const int32_t row_splits = g.splits_of_row(row_block / g.head_blocks);
      for (int32_t split = 0; split < most_splits; ++split) {
        EXPECT_EQ(seen[static_cast<size_t>(row_block * most_splits + split)], split < row_splits ? 1 : 0)
            << g.label() << " row block " << row_block << " split " << split;
      }
    }
  }
}

TEST(SplitGrid, SplitsCoverTheRowsTilesOnce) {
  for (const Geometry& g : geometries()) {
    for (const bool body : {false, true}) {
      if (body && g.body_rows == 0) continue;
      const int32_t splits = body ? g.body_splits : g.splits;
      const int32_t tiles_per_split = body ? g.body_tiles_per_split : g.tiles_per_split;
      std::vector<int> walked(static_cast<size_t>(g.total_tiles), 0);
      for (int32_t split = 0; split < splits; ++split) {
        const SplitTileRange range =
            split_grid_tiles(static_cast<uint32_t>(split), tiles_per_split, g.total_tiles);
        EXPECT_LT(range.begin, range.end) << g.label() << " split " << split << ": a statically empty split";
        for (int32_t tile = range.begin; tile < range.end; ++tile) ++walked[static_cast<size_t>(tile)];
      }
      for (int32_t tile = 0; tile < g.total_tiles; ++tile)
        EXPECT_EQ(walked[static_cast<size_t>(tile)], 1) << g.label() << " tile " << tile << " body " << body;
    }
  }
}

TEST(SplitGrid, SplitRowsPartialSlotsAreDistinctAndFitTheWorkspace) {
  for (const Geometry& g : geometries()) {
    const int64_t partial_rows = split_partial_rows(g.rows, g.body_rows, g.body_splits, g.splits);
    int64_t expected_rows = 0;
    for (int64_t row = 0; row < g.rows; ++row)
      if (g.row_writes_partials(row)) expected_rows += g.splits_of_row(row);
    EXPECT_EQ(partial_rows, expected_rows) << g.label();
    // The run path launches the combine, and mma99-h32 picks its split rule, by this (run.cu,
    // config_compact.h): a call has a split part exactly when some row writes partials.
    EXPECT_EQ(call_has_split_part(g.body_rows, g.body_splits, g.splits), partial_rows > 0) << g.label();
    const int64_t heads = 3;
    const WorkspaceLayout layout = WorkspaceLayout::for_partial_rows(partial_rows, heads);
    const int64_t lse_slots =
        static_cast<int64_t>((layout.partial_out_offset - layout.partial_lse_offset) / sizeof(float));
    const int64_t out_floats =
        static_cast<int64_t>((layout.total_bytes - layout.partial_out_offset) / sizeof(float));
    EXPECT_GE(lse_slots, partial_rows * heads) << g.label();
    EXPECT_GE(out_floats, partial_rows * heads * kHeadDim) << g.label();
    std::vector<int> used(static_cast<size_t>(partial_rows), 0);
    for (int64_t row = 0; row < g.rows; ++row) {
      if (!g.row_writes_partials(row)) continue;
      for (int32_t split = 0; split < g.splits_of_row(row); ++split) {
        const int64_t slot = split_partial_row(row, split, g.body_rows, g.body_splits, g.splits);
        ASSERT_GE(slot, 0) << g.label();
        ASSERT_LT(slot, partial_rows) << g.label();
        ++used[static_cast<size_t>(slot)];
      }
    }
    for (const int count : used) EXPECT_EQ(count, 1) << g.label();
  }
}

// The same rule on parts the planner does not make today (its bodies always have a tail of more splits):
// a split body alone makes a call split, a body of no rows does not.
TEST(SplitGrid, ACallHasASplitPartWhereEitherPartSplits) {
  EXPECT_FALSE(call_has_split_part(/*body_rows=*/0, /*body_splits=*/1, /*splits=*/1));
  EXPECT_TRUE(call_has_split_part(0, 1, 2));
  EXPECT_TRUE(call_has_split_part(4, 2, 1));
  EXPECT_FALSE(call_has_split_part(4, 1, 1));
  EXPECT_FALSE(call_has_split_part(0, 2, 1));
}

// The kernels' own per-CTA rules (cuda/decode/tile_common.cuh calls these as they are, from blockIdx.x and
// the DecodeParams a plan gives them): the grid read from the parameters, whether a CTA is in the body, its
// (row block, split), its part's tiles, whether it writes partials and its partial slots, against the grid
// enumerated here in its documented order (the body's rows, head blocks and splits, then the tail's) with
// the partial rows numbered in that order.
TEST(SplitGrid, KernelRulesPlaceEveryCtaFromTheParameters) {
  struct ExpectedCta {
    int64_t row, head_block;
    int32_t split;
    bool in_body;
  };
  for (const Geometry& g : geometries()) {
    for (const int32_t head_block : {16, 32, 64}) {
      // A partial last head block: the kernels count head blocks with head_block_count.
      const int32_t num_heads = static_cast<int32_t>(g.head_blocks) * head_block - (head_block > 16 ? 3 : 0);
      // The parameters as dispatch.cpp builds them (body_splits 1 and the tail's tiles without a body).
      DecodeParams params;
      params.num_heads = num_heads;
      params.body_rows = static_cast<int32_t>(g.body_rows);
      params.body_splits = g.body_rows > 0 ? g.body_splits : 1;
      params.body_tiles_per_split = g.body_rows > 0 ? g.body_tiles_per_split : g.tiles_per_split;
      params.num_splits = g.splits;
      params.tiles_per_split = g.tiles_per_split;
      params.total_tiles = g.total_tiles;
      params.seq_q = g.rows % 3 == 0 ? 3 : 1;
      set_split_grid_divisors(params, head_block);  // as the launch does
      const std::string label = g.label() + " head_block=" + std::to_string(head_block);
      const SplitGrid grid = split_grid_of(params, head_block);
      ASSERT_EQ(grid.head_blocks, g.head_blocks) << label;

      std::vector<ExpectedCta> expected;
      for (int64_t row = 0; row < g.rows; ++row)
        for (int64_t block = 0; block < g.head_blocks; ++block)
          for (int32_t split = 0; split < g.splits_of_row(row); ++split)
            expected.push_back({row, block, split, row < g.body_rows});
      ASSERT_EQ(static_cast<int64_t>(expected.size()),
                decode_grid_ctas(g.rows, g.head_blocks, g.body_rows, params.body_splits, g.splits))
          << label;
      // Partial rows in the order of the layout: the body's split rows, then the tail's, (row, split) each.
      std::vector<int64_t> partial_row_of(static_cast<size_t>(g.rows * 64), -1);
      int64_t next_partial_row = 0;
      for (int64_t row = 0; row < g.rows; ++row)
        if (g.row_writes_partials(row))
          for (int32_t split = 0; split < g.splits_of_row(row); ++split)
            partial_row_of[static_cast<size_t>(row * 64 + split)] = next_partial_row++;

      uint32_t body_ctas = 0;
      for (const ExpectedCta& cta : expected) body_ctas += cta.in_body ? 1 : 0;
      EXPECT_EQ(split_grid_body_ctas(grid), body_ctas) << label;
      for (uint32_t cta = 0; cta < expected.size(); ++cta) {
        const ExpectedCta& want = expected[cta];
        const std::string where = label + " cta " + std::to_string(cta);
        EXPECT_EQ(split_grid_cta_in_body(cta, grid), want.in_body) << where;
        const SplitGridPosition position = split_grid_cta_position(cta, grid);
        EXPECT_EQ(position.row_block, want.row * g.head_blocks + want.head_block) << where;
        EXPECT_EQ(position.split, static_cast<uint32_t>(want.split)) << where;
        // cta_coordinates' query row, head block, batch and position in the row by the launch's divisors.
        const SplitGridRow row_of = split_grid_row_of(position.row_block, params);
        EXPECT_EQ(row_of.query_row, want.row) << where;
        EXPECT_EQ(row_of.head_block, want.head_block) << where;
        EXPECT_EQ(row_of.batch, want.row / params.seq_q) << where;
        EXPECT_EQ(row_of.seq, want.row % params.seq_q) << where;
        const int32_t part_splits = want.in_body ? g.body_splits : g.splits;
        const int32_t part_tiles_per_split = want.in_body ? g.body_tiles_per_split : g.tiles_per_split;
        EXPECT_EQ(split_grid_cta_writes_partials(cta, grid), part_splits > 1) << where;
        const SplitTileRange tiles = split_grid_cta_tiles(cta, static_cast<uint32_t>(want.split), grid);
        EXPECT_EQ(tiles.begin, want.split * part_tiles_per_split) << where;
        EXPECT_EQ(tiles.end, std::min((want.split + 1) * part_tiles_per_split, g.total_tiles)) << where;
        if (part_splits > 1) {
          const int64_t partial_row = partial_row_of[static_cast<size_t>(want.row * 64 + want.split)];
          const int32_t first_head = static_cast<int32_t>(want.head_block) * head_block;
          const int32_t last_head = std::min(first_head + head_block, num_heads) - 1;
          for (const int32_t head : {first_head, last_head})
            EXPECT_EQ(split_partial_index(params, want.row, want.split, head), partial_row * num_heads + head)
                << where << " head " << head;
        }
      }
    }
  }
}

// A head count that is no head block's multiple, for the combine's partial indices.
constexpr int32_t kHeadsOfTheIndexCheck = 61;

// The combine launches (split_combine_rows) reduce every split row once, with its part's split count, and
// read the partial rows the decode kernels wrote for it.
TEST(SplitGrid, CombineLaunchesCoverTheSplitRowsOnce) {
  for (const Geometry& g : geometries()) {
    DecodeParams params;  // the partial-index fields as dispatch.cpp sets them (body_splits 1 without a body)
    params.num_heads = kHeadsOfTheIndexCheck;
    params.body_rows = static_cast<int32_t>(g.body_rows);
    params.body_splits = g.body_rows > 0 ? g.body_splits : 1;
    params.num_splits = g.splits;
    SplitCombineRows ranges[2];
    const int count = split_combine_rows(static_cast<int32_t>(g.rows), static_cast<int32_t>(g.body_rows),
                                         g.body_splits, g.splits, ranges);
    std::vector<int> combined(static_cast<size_t>(g.rows), 0);
    for (int i = 0; i < count; ++i) {
      const SplitCombineRows& range = ranges[i];
      EXPECT_GT(range.rows, 0) << g.label() << " launch " << i;
      EXPECT_GT(range.splits, 1) << g.label() << " launch " << i;
      for (int32_t r = 0; r < range.rows; ++r) {
        const int64_t row = range.first_row + r;
        ASSERT_LT(row, g.rows) << g.label() << " launch " << i;
        ++combined[static_cast<size_t>(row)];
        EXPECT_EQ(range.splits, g.splits_of_row(row)) << g.label() << " row " << row;
        // The combine's partial row of (row, split s) is first_partial_row + r * splits + s, and the index
        // the combine kernels read from is the decode kernels' split_partial_index.
        for (int32_t split = 0; split < range.splits; ++split) {
          EXPECT_EQ(range.first_partial_row + static_cast<int64_t>(r) * range.splits + split,
                    split_partial_row(row, split, g.body_rows, g.body_splits, g.splits))
              << g.label() << " row " << row << " split " << split;
          for (int32_t head : {0, kHeadsOfTheIndexCheck - 1}) {
            EXPECT_EQ(split_combine_partial_index(range, r, params.num_heads, head) +
                          static_cast<int64_t>(split) * params.num_heads,
                      split_partial_index(params, row, split, head))
                << g.label() << " row " << row << " split " << split << " head " << head;
          }
        }
      }
    }
    for (int64_t row = 0; row < g.rows; ++row)
      EXPECT_EQ(combined[static_cast<size_t>(row)], g.row_writes_partials(row) ? 1 : 0)
          << g.label() << " row " << row;
  }
}

}  // namespace
}  // namespace smla::detail
