// The decode grid's layout (common/split_grid.h), checked on the CPU over every small geometry: each
// (row, head block) gets one unsplit CTA or all its splits exactly once, in the documented order; the
// splits' tile ranges cover the row's tiles without overlap; the split rows' partial slots are distinct and
// fit the workspace the plan sizes (WorkspaceLayout of the split rows only).
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/decode_params.h"
#include "common/split_grid.h"

namespace smla::detail {
namespace {

struct Geometry {
  int64_t rows, head_blocks, unsplit_rows;
  int32_t splits, total_tiles, tiles_per_split;
  std::string label() const {
    return "rows=" + std::to_string(rows) + " head_blocks=" + std::to_string(head_blocks) +
           " unsplit_rows=" + std::to_string(unsplit_rows) + " splits=" + std::to_string(splits) +
           " tiles=" + std::to_string(total_tiles) + " tiles_per_split=" + std::to_string(tiles_per_split);
  }
};

// Every geometry the planner can make: splits of ceil(total / splits) tiles with no statically empty split
// (schedule.cpp), and 0 <= unsplit_rows < rows when splits > 1 (none when the call is not split).
std::vector<Geometry> geometries() {
  std::vector<Geometry> all;
  for (int64_t rows : {1, 2, 3, 5, 8, 13})
    for (int64_t head_blocks : {1, 2, 4, 8})
      for (int32_t total_tiles : {1, 2, 3, 7, 18})
        for (int32_t wanted : {1, 2, 3, 5, 18}) {
          if (wanted > total_tiles) continue;
          const int32_t tiles_per_split = (total_tiles + wanted - 1) / wanted;
          const int32_t splits = (total_tiles + tiles_per_split - 1) / tiles_per_split;
          for (int64_t unsplit_rows = 0; unsplit_rows < (splits > 1 ? rows : 1); ++unsplit_rows)
            all.push_back({rows, head_blocks, unsplit_rows, splits, total_tiles, tiles_per_split});
        }
  return all;
}

TEST(SplitGrid, EveryRowBlockGetsItsCtasOnceInOrder) {
  for (const Geometry& g : geometries()) {
    const int64_t ctas = decode_grid_ctas(g.rows, g.head_blocks, g.unsplit_rows, g.splits);
    const uint32_t unsplit_ctas = static_cast<uint32_t>(g.unsplit_rows * g.head_blocks);
    std::vector<int> seen(static_cast<size_t>(g.rows * g.head_blocks * g.splits), 0);
    int64_t previous_row_block = -1;
    for (uint32_t cta = 0; cta < ctas; ++cta) {
      const SplitGridPosition position =
          split_grid_position(cta, unsplit_ctas, static_cast<uint32_t>(g.splits));
      ASSERT_LT(position.row_block, g.rows * g.head_blocks) << g.label() << " cta " << cta;
      const int64_t row = position.row_block / g.head_blocks;
      const bool split_row = g.splits > 1 && row >= g.unsplit_rows;
      // The kernels' cta_writes_partials: splits > 1 and cta >= unsplit_rows * head_blocks.
      EXPECT_EQ(g.splits > 1 && cta >= unsplit_ctas, split_row) << g.label() << " cta " << cta;
      EXPECT_LT(position.split, split_row ? static_cast<uint32_t>(g.splits) : 1u)
          << g.label() << " cta " << cta;
      // Rows, then a row's head blocks, then its splits: the row block never goes back.
      EXPECT_GE(static_cast<int64_t>(position.row_block), previous_row_block) << g.label() << " cta " << cta;
      previous_row_block = position.row_block;
      ++seen[static_cast<size_t>(position.row_block * g.splits + position.split)];
    }
    for (int64_t row_block = 0; row_block < g.rows * g.head_blocks; ++row_block) {
      const bool split_row = g.splits > 1 && row_block / g.head_blocks >= g.unsplit_rows;
      for (int32_t split = 0; split < g.splits; ++split) {
        EXPECT_EQ(seen[static_cast<size_t>(row_block * g.splits + split)], split_row || split == 0 ? 1 : 0)
            << g.label() << " row block " << row_block << " split " << split;
      }
    }
  }
}

TEST(SplitGrid, SplitsCoverTheRowsTilesOnce) {
  for (const Geometry& g : geometries()) {
    for (const bool split_row : {false, true}) {
      if (split_row && g.splits == 1) continue;
      std::vector<int> walked(static_cast<size_t>(g.total_tiles), 0);
      for (int32_t split = 0; split < (split_row ? g.splits : 1); ++split) {
        const SplitTileRange range =
            split_grid_tiles(static_cast<uint32_t>(split), split_row, g.tiles_per_split, g.total_tiles);
        EXPECT_LT(range.begin, range.end) << g.label() << " split " << split << ": a statically empty split";
        for (int32_t tile = range.begin; tile < range.end; ++tile) ++walked[static_cast<size_t>(tile)];
      }
      for (int32_t tile = 0; tile < g.total_tiles; ++tile)
        EXPECT_EQ(walked[static_cast<size_t>(tile)], 1)
            << g.label() << " tile " << tile << " split_row " << split_row;
    }
  }
}

TEST(SplitGrid, SplitRowsPartialSlotsAreDistinctAndFitTheWorkspace) {
  for (const Geometry& g : geometries()) {
    if (g.splits == 1) continue;
    const int64_t split_rows = g.rows - g.unsplit_rows;
    const int64_t heads = 3;
    const WorkspaceLayout layout = WorkspaceLayout::make(split_rows, heads, g.splits);
    const int64_t lse_slots =
        static_cast<int64_t>((layout.partial_out_offset - layout.partial_lse_offset) / sizeof(float));
    std::vector<int> used(static_cast<size_t>(split_rows * g.splits), 0);
    for (int64_t row = g.unsplit_rows; row < g.rows; ++row) {
      for (int32_t split = 0; split < g.splits; ++split) {
        const int64_t slot = split_partial_row(row, split, g.unsplit_rows, g.splits);
        ASSERT_GE(slot, 0) << g.label();
        ASSERT_LT(slot, split_rows * g.splits) << g.label();
        EXPECT_LE((slot + 1) * heads, lse_slots) << g.label() << ": past the workspace's partial_lse";
        ++used[static_cast<size_t>(slot)];
      }
    }
    for (const int count : used) EXPECT_EQ(count, 1) << g.label();
  }
}

}  // namespace
}  // namespace smla::detail
