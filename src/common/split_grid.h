// The decode grid's CTA order and the split partials' layout, shared by the decode kernels
// (cuda/decode/tile_common.cuh), their launch (cuda/decode/launch_config.h) and the combine, and
// host-callable so that tests check them on the CPU.
//
// A CTA handles one head block of one query row, or one split of it. A call's rows come in two parts (the
// body and tail split of cuda/decode/schedule.cpp): the body, rows [0, body_rows), in body_splits splits of
// body_tiles_per_split tiles each (body_splits = 1: unsplit, one CTA a head block writing out and lse), and
// the tail, the rows after it, in `splits` splits of tiles_per_split tiles. body_rows = 0 is a uniform grid
// (every row in `splits` splits, 1 when the call is not split). CTA order: the body's CTAs first, then the
// tail's; within each, rows, then a row's head blocks, then its splits, so that the CTAs that read the same
// KV rows run at the same time (docs/perf.md, v51). A CTA writes partials for the combine kernel exactly
// when its part has more than one split. What a kernel decides per CTA from blockIdx.x and the parameters
// (its position, whether it is in the body, its tiles, whether it writes partials, its partial slots) is
// the split_grid_cta_* functions below over a SplitGrid read from DecodeParams (split_grid_of), which the
// kernels' wrappers (cuda/decode/tile_common.cuh) call as they are, so that CPU tests check the kernels'
// own rules. They are written so that the kernels compile to the code of v74's in-place forms (the form of
// these few lines moves mma99-h32's tile loop: docs/perf.md, v73).
//
// Partials: the body's rows first ([body_rows][body_splits], none when the body is unsplit), then the
// tail's ([rows - body_rows][splits], none when splits = 1), each partial row holding the call's heads.
#pragma once

#include <cstdint>

#include "common/decode_params.h"
#include "common/fast_divisor.h"
#include "smla/cache.h"  // SMLA_HOST_DEVICE

// Inlined into the kernels whatever the compiler's heuristics (a call in the epilogue changes the register
// allocation of the tile loop before it).
#if defined(__CUDACC__)
#define SMLA_SPLIT_GRID_INLINE SMLA_HOST_DEVICE __forceinline__
#else
#define SMLA_SPLIT_GRID_INLINE inline
#endif

namespace smla::detail {

// Schedule tiles the longest CTA of a call walks: with a body and tail split the body's CTAs (fewer, longer
// splits), not the tail's short ones; every CTA's tiles_per_split otherwise. The kernel choice's rules
// compare a call's critical path by it (kernel_choice.cpp), and mma99-h32's build is picked by it
// (register_gather_pays, cuda/decode/config_compact.h).
SMLA_SPLIT_GRID_INLINE int32_t longest_cta_tiles(int32_t tiles_per_split, int32_t body_rows,
                                                 int32_t body_tiles_per_split) {
  return body_rows > 0 && body_tiles_per_split > tiles_per_split ? body_tiles_per_split : tiles_per_split;
}

// CTAs of a decode launch.
SMLA_SPLIT_GRID_INLINE int64_t decode_grid_ctas(int64_t query_rows, int64_t head_blocks, int64_t body_rows,
                                                int64_t body_splits, int64_t splits) {
  return (body_rows * body_splits + (query_rows - body_rows) * splits) * head_blocks;
}

// Where CTA `cta` of the grid is: its row block (query_row * head_blocks + head block) and its split.
struct SplitGridPosition {
  uint32_t row_block;
  uint32_t split;
};

// `body_ctas` = body_rows * head_blocks * body_splits. Without a branch, as two uniform grids one after the
// other (a body CTA has rest = 0, a tail CTA first = body_ctas, a multiple of body_splits): a branch here
// grew mma99-h32's tile loop by 20 instructions (docs/perf.md, v73). The split counts come as divisors
// made on the host (docs/perf.md, v78): a run-time division is a ~15-instruction chain on every CTA's path to
// its first load.
SMLA_SPLIT_GRID_INLINE SplitGridPosition split_grid_position(uint32_t cta, uint32_t body_ctas,
                                                             const FastDivisor& body_splits,
                                                             const FastDivisor& splits) {
  const uint32_t first = cta < body_ctas ? cta : body_ctas;
  const uint32_t rest = cta - first;
  const uint32_t first_rows = body_splits.divide(first);
  const uint32_t rest_rows = splits.divide(rest);
  return {first_rows + rest_rows,
          (first - first_rows * body_splits.divisor) + (rest - rest_rows * splits.divisor)};
}

// The schedule tiles [begin, end) of split `split` of a part whose splits walk `tiles_per_split` tiles of
// the row's `total_tiles` (the last split may walk fewer; an unsplit part has tiles_per_split >=
// total_tiles).
struct SplitTileRange {
  int32_t begin, end;
};
SMLA_SPLIT_GRID_INLINE SplitTileRange split_grid_tiles(uint32_t split, int32_t tiles_per_split,
                                                       int32_t total_tiles) {
  const int32_t begin = static_cast<int32_t>(split) * tiles_per_split;
  const int32_t end = begin + tiles_per_split;
  return {begin, end < total_tiles ? end : total_tiles};
}

// A call's grid in the integers of DecodeParams that place a CTA: the body (rows [0, body_rows) in
// body_splits splits of body_tiles_per_split tiles) and the tail (the other rows in `splits` splits of
// tiles_per_split tiles; every row when body_rows = 0), head_blocks CTAs a row and split.
struct SplitGrid {
  int32_t head_blocks;
  int32_t body_rows, body_splits, body_tiles_per_split;
  int32_t splits, tiles_per_split;
  int32_t total_tiles;
  FastDivisor body_split_divisor, split_divisor;  // of body_splits and splits (set_split_grid_divisors)
};

// The split_grid_cta_* functions take the CTA index by reference: taken by value, the compiler turned
// `cta < body CTAs` into `body CTAs > cta` before inlining, and mma99-h16's sm_90a kernel grew by 8
// instructions; by reference the kernels compile to the same code as the comparison written in place.

// The grid of a call whose kernel runs `head_block` heads a CTA.
SMLA_SPLIT_GRID_INLINE SplitGrid split_grid_of(const DecodeParams& params, int32_t head_block) {
  return {head_block_count(params.num_heads, head_block),
          params.body_rows,
          params.body_splits,
          params.body_tiles_per_split,
          params.num_splits,
          params.tiles_per_split,
          params.total_tiles,
          params.body_split_divisor,
          params.split_divisor};
}

// The divisors a launch of a kernel of `head_block` heads a CTA places its CTAs with (DecodeParams): set
// on the host after the schedule fields, once the kernel is known.
inline void set_split_grid_divisors(DecodeParams& params, int32_t head_block) {
  params.body_split_divisor = FastDivisor::make(params.body_splits);
  params.split_divisor = FastDivisor::make(params.num_splits);
  params.head_block_divisor = FastDivisor::make(head_block_count(params.num_heads, head_block));
  params.seq_q_divisor = FastDivisor::make(params.seq_q);
}

// Where a row block (query_row * head_blocks + head block) lies: its query row, head block, batch and
// position in the row (query_row = batch * seq_q + seq), by the launch's divisors (set_split_grid_divisors).
struct SplitGridRow {
  uint32_t query_row, head_block, batch, seq;
};
SMLA_SPLIT_GRID_INLINE SplitGridRow split_grid_row_of(uint32_t row_block, const DecodeParams& params) {
  const uint32_t query_row = params.head_block_divisor.divide(row_block);
  const uint32_t batch = params.seq_q_divisor.divide(query_row);
  return {query_row, row_block - query_row * params.head_block_divisor.divisor, batch,
          query_row - batch * params.seq_q_divisor.divisor};
}

// The body's CTAs, the first of the grid: body_rows * head_blocks * body_splits.
SMLA_SPLIT_GRID_INLINE uint32_t split_grid_body_ctas(const SplitGrid& grid) {
  return static_cast<uint32_t>(grid.body_rows) * static_cast<uint32_t>(grid.head_blocks) *
         static_cast<uint32_t>(grid.body_splits);
}

// Whether CTA `cta` is one of the body's.
SMLA_SPLIT_GRID_INLINE bool split_grid_cta_in_body(const uint32_t& cta, const SplitGrid& grid) {
  return cta < split_grid_body_ctas(grid);
}

// Where CTA `cta` is (split_grid_position over the grid's two parts).
SMLA_SPLIT_GRID_INLINE SplitGridPosition split_grid_cta_position(const uint32_t& cta, const SplitGrid& grid) {
  return split_grid_position(cta, split_grid_body_ctas(grid), grid.body_split_divisor, grid.split_divisor);
}

// Whether CTA `cta` writes partials for the combine kernel (its part has more than one split) rather than
// out and lse.
SMLA_SPLIT_GRID_INLINE bool split_grid_cta_writes_partials(const uint32_t& cta, const SplitGrid& grid) {
  return (split_grid_cta_in_body(cta, grid) ? grid.body_splits : grid.splits) > 1;
}

// The schedule tiles of CTA `cta`, split `split` of its row: its part's tiles per split.
SMLA_SPLIT_GRID_INLINE SplitTileRange split_grid_cta_tiles(const uint32_t& cta, uint32_t split,
                                                           const SplitGrid& grid) {
  return split_grid_tiles(
      split, split_grid_cta_in_body(cta, grid) ? grid.body_tiles_per_split : grid.tiles_per_split,
      grid.total_tiles);
}

// Partial rows of the body (0 when it is unsplit).
SMLA_SPLIT_GRID_INLINE int64_t body_partial_rows(int64_t body_rows, int64_t body_splits) {
  return body_splits > 1 ? body_rows * body_splits : 0;
}

// Whether a call has a split part, whose CTAs write partials for the combine kernel: the tail's rows (splits
// > 1) or a body's (body_splits > 1).
SMLA_SPLIT_GRID_INLINE bool call_has_split_part(int64_t body_rows, int64_t body_splits, int64_t splits) {
  return splits > 1 || (body_rows > 0 && body_splits > 1);
}

// Partial rows of a call (the workspace's [rows][h] of partial_lse, kHeadDim floats each in partial_out).
SMLA_SPLIT_GRID_INLINE int64_t split_partial_rows(int64_t query_rows, int64_t body_rows, int64_t body_splits,
                                                  int64_t splits) {
  return body_partial_rows(body_rows, body_splits) + (splits > 1 ? (query_rows - body_rows) * splits : 0);
}

// The partial row of (query row, split), for a row of a part with more than one split (times the head
// count, plus the head, for partial_lse; times kHeadDim more for partial_out).
SMLA_SPLIT_GRID_INLINE int64_t split_partial_row(int64_t query_row, int32_t split, int64_t body_rows,
                                                 int32_t body_splits, int32_t splits) {
  return query_row < body_rows
             ? query_row * body_splits + split
             : body_partial_rows(body_rows, body_splits) + (query_row - body_rows) * splits + split;
}

// Index of (query row, split, head) in a call's partial_lse (times kHeadDim in partial_out), for a row of a
// part with more than one split: its partial row's heads are contiguous.
SMLA_SPLIT_GRID_INLINE int64_t split_partial_index(const DecodeParams& params, int64_t query_row,
                                                   int32_t split, int32_t head) {
  return split_partial_row(query_row, split, params.body_rows, params.body_splits, params.num_splits) *
             params.num_heads +
         head;
}

// The rows one combine launch reduces: rows [first_row, first_row + rows), each of `splits` splits, whose
// partial rows start at first_partial_row (the body's, then the tail's: two launches when both are split).
struct SplitCombineRows {
  int32_t first_row = 0;
  int32_t rows = 0;
  int32_t splits = 1;
  int64_t first_partial_row = 0;
};

// The combine launches of a call: the body's (when it is split) and the tail's (when it is split). Returns
// how many of `ranges` it filled (0..2).
SMLA_SPLIT_GRID_INLINE int split_combine_rows(int32_t query_rows, int32_t body_rows, int32_t body_splits,
                                              int32_t splits, SplitCombineRows (&ranges)[2]) {
  int count = 0;
  if (body_rows > 0 && body_splits > 1) ranges[count++] = {0, body_rows, body_splits, 0};
  if (splits > 1 && query_rows > body_rows) {
    ranges[count++] = {body_rows, query_rows - body_rows, splits, body_partial_rows(body_rows, body_splits)};
  }
  return count;
}

// Index of (row `row_in_range` of `range`, split 0, head) in partial_lse (times kHeadDim in partial_out):
// the same index as split_partial_index of that query row, taken from the range alone. Split s lies
// s * num_heads further on.
SMLA_SPLIT_GRID_INLINE int64_t split_combine_partial_index(const SplitCombineRows& range,
                                                           int64_t row_in_range, int32_t num_heads,
                                                           int32_t head) {
  return (range.first_partial_row + row_in_range * range.splits) * num_heads + head;
}

}  // namespace smla::detail
