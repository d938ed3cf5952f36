// Split-KV schedule of the tensor-core backend (host heuristic, kept apart from device code).
//
// A CTA handles one (query row, head block); with few rows the grid leaves SMs idle, so the row's 64-token
// tiles are split across CTAs. The kernels run one CTA per SM and every CTA of a launch has the same
// number of tiles, so the launch takes waves * (tiles per split + fixed cost) tile times, where waves =
// ceil(CTAs / SMs) and the fixed cost (Q load, pipeline fill, epilogue) is about one tile. Splits are
// combined either by the combine kernel, which reads back fp32 partials (2 KiB + lse per row, head and
// split; charged in tile times from the DRAM an SM moves in one tile time, plus the second launch), or,
// on the sm_90a kernel with at most kMaxClusterSplits splits, inside the kernel's clusters (a small fixed
// cost, but clusters queued behind the resident ones cost more than their waves). We pick the (split count,
// combine) pair with the lowest cost (fewest splits, then clusters, on ties), never leaving a split
// statically empty.
//
// Small calls of the 99 KB-class kernels (32-entry compute tiles) may then split at half-tile grain: when
// the 64-entry schedule is one wave and half tiles give each split less work in one wave with at most 32
// splits, every split walks fewer 32-entry tiles. Such a call is a latency chain (lengths, indices, rows,
// then per compute tile the gather, dequantization, S, softmax and P V of one CTA), so a CTA's compute tiles
// are its critical path; the combine reads twice the (L2-resident) partials. DSv4-Flash at b = 1: an SWA
// layer's 8 CTAs of two half tiles become 16 of one, a C128 layer's 12 become 24.
//
// A call whose unsplit CTAs overflow whole waves (pro-c4 at 67 rows: 134 CTAs on 132 SMs) would run its
// last CTAs as a second wave of full length, or split every row to even the waves out; one whose split
// CTAs do (pro-c4 at 35 rows: 70 unsplit CTAs, 140 in 2 splits) likewise. The body and tail split runs
// the rows that fill whole waves in the fewer splits (often none) and splits only the rows after them
// more, whose short CTAs follow the full waves; the split parts go through the combine kernel
// (DecodeParams::body_rows, common/split_grid.h).
#include <algorithm>
#include <vector>

#include "common/backend_entry.h"
#include "cuda/combine/kernel.h"
#include "cuda/decode/config.h"
#include "cuda/decode/config_sm90.h"

namespace smla::detail {

namespace {
int ceil_div(int64_t a, int64_t b) { return static_cast<int>((a + b - 1) / b); }

// CTAs of one split: a (query row, head block) each.
int64_t ctas_per_split_of(const DecodeShape& shape, int head_block) {
  return query_rows_of(shape) * head_block_count(shape.num_heads, head_block);
}

bool is_compact_kernel(const KernelChoice& kernel) {
  return kernel.kernel == DecodeKernel::kCompactHeads16 || kernel.kernel == DecodeKernel::kCompactHeads32;
}

// A CTA's fixed cost (Q load, pipeline fill, epilogue) in tile times.
constexpr double kFixedCostTiles = 1;

// Whether the sm_90a kernel's `splits` splits may combine inside its thread-block clusters.
bool cluster_combine_possible(const KernelChoice& kernel, int splits) {
  return kernel.kernel == DecodeKernel::kSm90Heads64 && decode::sm90_combines_in_cluster(splits);
}

// The combine kernel's share of a call, in 64-entry tile times: its launch and the partials of
// `query_rows` rows of `splits` splits, written and read back.
double kernel_combine_tiles(int64_t query_rows, int num_heads, const CudaDeviceInfo& device,
                            const KernelChoice& kernel, int splits) {
  // The call runs the warp-specialized kernel (else a serialized mma.sync kernel).
  const bool sm90_kernel = kernel.kernel == DecodeKernel::kSm90Heads64;
  // DRAM bytes an SM moves in one tile time (~22 GB/s per SM on an H100): the serialized kernels take
  // ~7 us a tile, the warp-specialized one ~2.5 us.
  const double partial_bytes_per_sm_tile = (sm90_kernel ? 56.0 : 160.0) * 1024;
  // The combine kernel's launch and drain in tile times, and the in-cluster combine (stage, three
  // cluster barriers, the distributed sum). On the sm_90a kernel partials that fit the L2 with room to
  // spare (<= 20 MB written) are read back from it: charged a tenth. Its combine launch is charged 1.1
  // tiles (v72 in docs/perf.md; 0.3 before): flash-c4 b = 20 in 5 splits took 21.7 us combined in clusters
  // and 24.8 through the combine kernel (H200, 2026-12-04), ~1.2 tiles more where the model said 0.25;
  // 1.0 would have sent flash-c4 b = 23 from 4-CTA clusters to 5 splits through the combine kernel (+6.8 %)
  // and pro-c4 b = 9 from 5-CTA clusters to 6 splits (+1.6 %). The 99 KB-class kernels' split
  // epilogue (fp32 rows, twice the bytes of bf16 out) and the combine behind it: 0.59 of their 64-entry
  // tile besides the bytes (v70 in docs/perf.md; H200, 2026-12-04, same-process A/Bs): flash-swa at 17..33
  // rows ran 2-8 % faster unsplit than in 2 splits (so > 0.586, from 17 rows), flash-c4-tp4 at 80..88 rows
  // 2-3 % faster unsplit than in 3 splits, while flash-c4-tp8 at 80..88 rows, half the partial bytes,
  // stayed 2-3 % faster in 3 splits (so < 0.599, from 88 rows). The window is narrow: the tile unit of
  // these short and long calls is not the same time, which this one-constant model does not see.
  const double combine_launch_tiles = sm90_kernel ? 1.1 : is_compact_kernel(kernel) ? 0.59 : 0.0;
  constexpr double kL2ResidentPartialBytes = 20.0 * 1024 * 1024;
  constexpr double kL2ResidentPartialFactor = 0.1;
  constexpr double kPartialBytesPerRowHeadSplit = 2.0 * (kHeadDim * 4 + 4);  // written + read back
  // A combine grid of at most one block per SM (rows x h <= SMs: pro-c128-1m at b = 1) is not a
  // throughput sum over the GPU but one block per (row, head) reading its splits' partial rows in turn:
  // each split adds a share of a tile to the call. Measured (H200, 2026-12-02, v46) at 130 tiles: 65
  // splits of 2 tiles 33.3 us, 44 of 3 30.2, 33 of 4 30.7, 22 of 6 34.6, where the model without this
  // term picked 65; 0.07 tile a split puts the minimum at 44.
  constexpr double kSerialCombineTilesPerSplit = 0.07;
  const double partial_bytes =
      static_cast<double>(query_rows) * num_heads * splits * kPartialBytesPerRowHeadSplit;
  const double l2_factor =
      sm90_kernel && partial_bytes / 2 <= kL2ResidentPartialBytes ? kL2ResidentPartialFactor : 1.0;
  double combine_tiles =
      combine_launch_tiles + l2_factor * partial_bytes / device.sm_count / partial_bytes_per_sm_tile;
  if (sm90_kernel && split_combine_blocks(query_rows, num_heads) <= device.sm_count)
    combine_tiles += kSerialCombineTilesPerSplit * splits;
  return combine_tiles;
}

// The cost model of the header comment, in 64-entry tile times: `splits` splits of `tiles_per_split` tiles
// (a fraction for half tiles) each, waves of one CTA per SM, plus the combine when splits > 1.
double split_cost(const DecodeShape& shape, const CudaDeviceInfo& device, const KernelChoice& kernel,
                  int splits, double tiles_per_split, bool cluster_combine) {
  constexpr double kClusterCombineTiles = 0.4;
  const int64_t query_rows = query_rows_of(shape);
  const int64_t ctas_per_split = ctas_per_split_of(shape, kernel.head_block);
  int64_t waves = ceil_div(ctas_per_split * splits, device.sm_count);
  double combine_tiles = 0.0;
  if (cluster_combine) {
    combine_tiles = kClusterCombineTiles;
    // One cluster per (row, head block); GPC boundaries leave fewer resident clusters than
    // sm_count / splits (e.g. 4-CTA clusters: a second wave at 128 CTAs on an H100). Clusters queued behind
    // resident ones measured slower than these waves by about 3 tiles a queued wave (v72b): pro-c4 at
    // b = 36 / 40 / 70 / 90 in 3- / 4- / 3- / 2-CTA clusters took 4.4 / 3.3 / 2.7 / 2.9 tiles a queued wave
    // more than modelled (from the unsplit call's time; H200, 2026-12-04, v72 in docs/perf.md), where v72's
    // 1.25x of every wave overcharged long calls (pro-c128-1m at 70 rows: 4-CTA clusters 1.8 % faster than
    // the 5 splits through the combine kernel it chose).
    constexpr double kQueuedClusterWaveTiles = 3.0;
    const int resident = device.max_active_clusters[splits];
    if (resident > 0 && ctas_per_split > resident) {
      const int64_t cluster_waves = ceil_div(ctas_per_split, resident);
      waves = std::max(waves, cluster_waves);
      combine_tiles += kQueuedClusterWaveTiles * static_cast<double>(cluster_waves - 1);
    }
  } else if (splits > 1) {
    combine_tiles = kernel_combine_tiles(query_rows, shape.num_heads, device, kernel, splits);
  }
  return static_cast<double>(waves) * (tiles_per_split + kFixedCostTiles) + combine_tiles;
}

// True when a list of `width` entries has no 32-entry half tile past its end inside its last 64-entry
// tile (width % 64 is 0 or above 32), so half-tile splits are never statically empty.
bool half_tiles_fill_the_list(int64_t width) { return width <= 0 || width % 64 == 0 || width % 64 > 32; }

// The half-tile rule of the header comment, applied to a finished 64-entry schedule whose model cost is
// `cost`: taken when the model charges it less than that schedule (it may add a combine to an unsplit call).
void split_small_compact_call_in_half_tiles(const DecodeShape& shape, const CudaDeviceInfo& device,
                                            const KernelChoice& kernel, double cost,
                                            SplitSchedule* schedule) {
  constexpr int kHalfTilesPerTile = 2;
  // At most the combine's one-batch limit (32 splits since its grouped kernel, v68 in docs/perf.md: the
  // DSv4-Flash C4 layer at b = 1 then gains from 20 splits of one half tile over 10 of one tile, 177.5 ->
  // 174.5 us for the 21 layers, where with the 128-thread combine it had lost, 9.9 -> 10.7 us a layer: v36).
  constexpr int64_t kMaxHalfTileSplits = kMaxOneBatchSplits;
  if (!is_compact_kernel(kernel) || device.sm_count <= 0 || !half_tiles_fill_the_list(shape.topk) ||
      !half_tiles_fill_the_list(shape.extra_topk))
    return;
  const int64_t ctas_per_split = ctas_per_split_of(shape, schedule->head_block);
  if (ctas_per_split * schedule->num_splits > device.sm_count) return;  // not one wave: keep it
  const int64_t most_splits = std::min<int64_t>(device.sm_count / ctas_per_split, kMaxHalfTileSplits);
  const int half_tiles = schedule->total_tiles * kHalfTilesPerTile;
  const int half_tiles_per_split =
      ceil_div(half_tiles, std::min<int64_t>(most_splits, static_cast<int64_t>(half_tiles)));
  if (half_tiles_per_split >= schedule->tiles_per_split * kHalfTilesPerTile) return;  // no shorter
  const int half_tile_splits = ceil_div(half_tiles, half_tiles_per_split);
  if (split_cost(shape, device, kernel, half_tile_splits,
                 static_cast<double>(half_tiles_per_split) / kHalfTilesPerTile,
                 /*cluster_combine=*/false) >= cost)
    return;
  schedule->tile_tokens = decode::DecodeConfigHeads64::kTileTokens / kHalfTilesPerTile;
  schedule->total_tiles = half_tiles;
  schedule->tiles_per_split = half_tiles_per_split;
  schedule->num_splits = half_tile_splits;
}

// The body and tail split of the header comment, applied to a finished 64-entry schedule of cost `cost`:
// the body, rows [0, body_rows), runs body_splits splits (1: unsplit) whose CTAs fill `waves` whole waves;
// the tail, the rows after it, runs more splits, whose short CTAs take the SMs the body leaves idle in its
// last wave and then follow it (pro-c4 at 67 rows on 132 SMs: 66 rows unsplit, the last row's 2 head
// blocks in 18 splits of one tile, where the uniform plans run 134 CTAs of 18 tiles in two waves or split
// every row; at 35 rows: 33 rows in 2 splits, the other 2 in 18). Each split part is combined by its own
// combine launch. Taken when the model charges it less, by at least kBodyTailMinimumSaving.
void split_body_and_tail(const DecodeShape& shape, const CudaDeviceInfo& device, const KernelChoice& kernel,
                         double cost, SplitSchedule* schedule) {
  if (device.sm_count <= 0 || schedule->tile_tokens != decode::DecodeConfigHeads64::kTileTokens) return;
  const int64_t rows = query_rows_of(shape);
  const int64_t head_blocks = head_block_count(shape.num_heads, kernel.head_block);
  const int total_tiles = std::max(schedule->total_tiles, 1);
  // Only where it saves a tenth of the call: near ties the model does not separate (its partial-traffic
  // term is coarse: a tail of many rows writes tens of MB of partials), so the measured plan stays.
  constexpr double kBodyTailMinimumSaving = 0.1;
  // The body fills its most whole waves or up to this many fewer (more rows in the tail's short CTAs).
  constexpr int64_t kBodyWaveChoices = 4;
  cost *= 1.0 - kBodyTailMinimumSaving;
  // The split counts that are not a smaller count's plan (the same tiles per split), ~2 sqrt(total_tiles).
  std::vector<int> counts;
  for (int splits = 1; splits <= total_tiles; ++splits)
    if (ceil_div(total_tiles, ceil_div(total_tiles, splits)) == splits) counts.push_back(splits);
  // A split body's CTAs walk at least this many tiles. Measured (v74, H200, 2026-12-05, docs/perf.md): with
  // bodies of 2-3 splits of 6-9 tiles, pro-c4 (18 tiles a row) at b = 34..43 ran 7-18 % slower than the
  // uniform plans the model charged 10-18 % more; with bodies of 2-6 splits of 22-65 tiles, pro-c128-1m
  // (130 tiles a row) ran 4-14 % faster. Short CTAs pay fixed costs (prologue, split epilogue, the second
  // combine launch behind the first) that kFixedCostTiles and the combine charge do not hold.
  constexpr int kSplitBodyMinimumTiles = 16;
  for (const int body_splits : counts) {
    const int body_tiles_per_split = ceil_div(total_tiles, body_splits);
    if (body_splits > 1 && body_tiles_per_split < kSplitBodyMinimumTiles) continue;
    const int64_t body_row_ctas = head_blocks * body_splits;
    const int64_t most_waves = rows * body_row_ctas / device.sm_count;
    for (int64_t waves = most_waves; waves >= 1 && waves > most_waves - kBodyWaveChoices; --waves) {
      const int64_t body_rows = waves * device.sm_count / body_row_ctas;
      if (body_rows <= 0 || body_rows >= rows) continue;
      // SMs the body's CTAs leave idle in its last wave take tail CTAs from the start.
      const int64_t idle_sms = waves * device.sm_count - body_rows * body_row_ctas;
      double body_cost = static_cast<double>(waves) * (body_tiles_per_split + kFixedCostTiles);
      if (body_splits > 1)
        body_cost += kernel_combine_tiles(body_rows, shape.num_heads, device, kernel, body_splits);
      if (body_cost >= cost) continue;  // the tail only adds
      for (const int splits : counts) {
        if (splits <= body_splits) continue;
        const int tiles_per_split = ceil_div(total_tiles, splits);
        const int64_t tail_ctas = (rows - body_rows) * head_blocks * splits;
        const int64_t tail_waves = ceil_div(std::max<int64_t>(tail_ctas - idle_sms, 0), device.sm_count);
        const double body_tail_cost =
            body_cost + static_cast<double>(tail_waves) * (tiles_per_split + kFixedCostTiles) +
            kernel_combine_tiles(rows - body_rows, shape.num_heads, device, kernel, splits);
        if (body_tail_cost < cost) {
          cost = body_tail_cost;
          schedule->num_splits = splits;
          schedule->tiles_per_split = tiles_per_split;
          schedule->cluster_combine = false;
          schedule->body_rows = static_cast<int>(body_rows);
          schedule->body_splits = body_splits;
          schedule->body_tiles_per_split = body_tiles_per_split;
        }
      }
    }
  }
}
}  // namespace

SplitSchedule plan_cuda_decode_splits(const DecodeShape& shape, const CudaDeviceInfo& device,
                                      const KernelChoice& kernel, int requested_splits) {
  SplitSchedule schedule;
  schedule.total_tiles = static_cast<int>(total_tiles_of(shape));
  schedule.head_block = kernel.head_block;
  const int total_tiles = std::max(schedule.total_tiles, 1);

  // The cheapest (split count, combine) pair; fewest splits, then the in-cluster combine, on ties.
  int num_splits = 1;
  bool cluster_combine = false;
  double best_cost = -1;
  const auto consider = [&](int splits) {
    const int tiles_per_split = ceil_div(total_tiles, splits);
    for (const bool cluster : {true, false}) {
      if (cluster && !cluster_combine_possible(kernel, splits)) continue;
      const double cost = split_cost(shape, device, kernel, splits, tiles_per_split, cluster);
      if (best_cost < 0 || cost < best_cost) {
        best_cost = cost;
        num_splits = splits;
        cluster_combine = cluster;
      }
    }
  };
  if (requested_splits > 0) {
    // The count that covers the tiles with the same tiles per split.
    const int splits =
        ceil_div(total_tiles, ceil_div(total_tiles, std::clamp(requested_splits, 1, total_tiles)));
    num_splits = splits;
    cluster_combine = cluster_combine_possible(kernel, splits);  // where no SM count prices the two
    if (device.sm_count > 0) consider(splits);
  } else if (device.sm_count > 0) {
    for (int splits = 1; splits <= total_tiles; ++splits) {
      const int tiles_per_split = ceil_div(total_tiles, splits);
      if (ceil_div(total_tiles, tiles_per_split) != splits) continue;  // same as a smaller count
      consider(splits);
    }
  }
  schedule.tiles_per_split = ceil_div(total_tiles, num_splits);
  schedule.num_splits = ceil_div(total_tiles, schedule.tiles_per_split);
  schedule.cluster_combine = cluster_combine;
  if (requested_splits <= 0) {
    split_small_compact_call_in_half_tiles(shape, device, kernel, best_cost, &schedule);
    split_body_and_tail(shape, device, kernel, best_cost, &schedule);
  }
  return schedule;
}

}  // namespace smla::detail
