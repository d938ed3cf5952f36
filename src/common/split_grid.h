// The decode grid's CTA order and the split partials' layout, shared by the decode kernels
// (cuda/decode/tile_common.cuh), their launch (cuda/decode/launch_config.h) and the combine, and
// host-callable so that tests check them on the CPU.
//
// A CTA handles one head block of one query row, or one split of it. Rows [0, unsplit_rows) run unsplit
// (one CTA a head block, writing out and lse); the rows after them run `splits` splits each and write
// partials for the combine kernel (the tail split of cuda/decode/schedule.cpp; unsplit_rows = 0 when every
// row is split, or when none is: splits = 1). CTA order: the unsplit CTAs first, then the split rows' CTAs;
// within each, rows, then a row's head blocks, then its splits, so that the CTAs that read the same KV rows
// run at the same time (docs/perf.md, v51). So a CTA writes partials exactly when splits > 1 and
// cta >= unsplit_rows * head_blocks (the kernels' cta_writes_partials, which computes it in place: through a
// helper taking the product as an argument, mma99-h32's compiled tile loop grew by 18 instructions).
#pragma once

#include <cstdint>

#include "smla/cache.h"  // SMLA_HOST_DEVICE

// Inlined into the kernels whatever the compiler's heuristics (a call in the epilogue changes the register
// allocation of the tile loop before it).
#if defined(__CUDACC__)
#define SMLA_SPLIT_GRID_INLINE SMLA_HOST_DEVICE __forceinline__
#else
#define SMLA_SPLIT_GRID_INLINE inline
#endif

namespace smla::detail {

// CTAs of a decode launch.
SMLA_SPLIT_GRID_INLINE int64_t decode_grid_ctas(int64_t query_rows, int64_t head_blocks, int64_t unsplit_rows,
                                                int64_t splits) {
  return (unsplit_rows + (query_rows - unsplit_rows) * splits) * head_blocks;
}

// Where CTA `cta` of the grid is: its row block (query_row * head_blocks + head block) and its split.
struct SplitGridPosition {
  uint32_t row_block;
  uint32_t split;
};

// `unsplit_ctas` = unsplit_rows * head_blocks. Without a branch and with one division, as a grid of
// uniform splits (an unsplit CTA has first = cta and rest = 0): a branch here grew mma99-h32's tile loop
// by 20 instructions (docs/perf.md, v73).
SMLA_SPLIT_GRID_INLINE SplitGridPosition split_grid_position(uint32_t cta, uint32_t unsplit_ctas,
                                                             uint32_t splits) {
  const uint32_t first = cta < unsplit_ctas ? cta : unsplit_ctas;
  const uint32_t rest = cta - first;
  return {first + rest / splits, rest % splits};
}

// The schedule tiles [begin, end) of a CTA: an unsplit row's CTA walks them all, a split row's CTA
// `split` its share of tiles_per_split (the last one may be shorter).
struct SplitTileRange {
  int32_t begin, end;
};
SMLA_SPLIT_GRID_INLINE SplitTileRange split_grid_tiles(uint32_t split, bool writes_partials,
                                                       int32_t tiles_per_split, int32_t total_tiles) {
  const int32_t tiles = writes_partials ? tiles_per_split : total_tiles;
  const int32_t begin = static_cast<int32_t>(split) * tiles;
  const int32_t end = begin + tiles;
  return {begin, end < total_tiles ? end : total_tiles};
}

// The partial row of (query row, split) among the split rows' [rows - unsplit_rows][splits] (times the
// head count, plus the head, for partial_lse; times kHeadDim more for partial_out).
SMLA_SPLIT_GRID_INLINE int64_t split_partial_row(int64_t query_row, int32_t split, int64_t unsplit_rows,
                                                 int32_t splits) {
  return (query_row - unsplit_rows) * splits + split;
}

}  // namespace smla::detail
