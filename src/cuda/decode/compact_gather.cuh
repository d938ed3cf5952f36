// The gather of the 99 KB-class decode kernel (kernel_compact.cuh): how each warp's slice of a tile's rows
// reaches the warp one tile ahead of its dequantization. Two strategies behind one interface, picked by
// CompactConfig::kRowTable:
//   WarpRowGather   every warp reads the tile's slots, computes its own row addresses and copies its slice
//                   into its staging slice (cp.async; 16-head block: its calls have one or two tiles per
//                   CTA, so the prologue must not wait on another warp)
//   RowTableGather  the rope warp, lighter than a scale-group warp by its missing dequantization, reads the
//                   slots and writes a shared row table two tiles ahead; every warp gathers its slice of
//                   each row from the table's addresses (32-head block: the bookkeeping leaves the seven
//                   busiest warps; docs/perf.md, v8). Two ways, one per build of the kernel, picked per
//                   call (kernel_compact.cuh, RegisterGather; v117):
//                   kIntoRegisters = false: cp.async into its staging slice, as WarpRowGather;
//                   kIntoRegisters = true: loads of its lanes' bytes straight into registers (LaneTileBytes).
//                   With eight warps copying, a cp.async costs a warp ~30 cycles of issue and a load ~2-3,
//                   but holding a tile's bytes over the loop costs register moves every tile, so the loads
//                   win only on CTAs of many tiles (docs/perf.md, v114-v117).
// The interface, in the kernel's order:
//   loads_slots(warp)  whether the warp reads slots (it then loads its FirstTileSlot beside the lengths)
//   start(first)  before Q's copies: the first tile, and the table warp's slot loads
//   issue_first() the first active tile's copies or loads; one cp.async group is committed (empty for the
//                 loads, or when the CTA has no tile)
//   has_tile()    whether a tile's bytes are in flight for the loop body (uniform over the CTA)
//   issue_next()  at the top of an iteration, after the warp dequantized the current tile: returns the
//                 current tile's valid-token bits and issues the next tile's copies (committed) or loads
// Semantics shared by both (spec sections 2 and 4): a token is valid iff its list position is inside the
// valid prefix and 0 <= index < num_slots; an index past the pool inside the prefix is counted once per tile
// (head block 0 only) in params.error_counter; an invalid token's bytes are zeros (a cp.async of source size
// 0, or a predicated-off load), so its cache bytes are never read.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "common/decode_params.h"
#include "cuda/decode/async_copy.cuh"
#include "cuda/decode/config_compact.h"
#include "cuda/decode/register_load.cuh"
#include "cuda/decode/tile_common.cuh"
#include "smla/cache.h"

namespace smla::detail::decode {

// Runs body(token, chunk) over the 16-byte chunks of a warp's slice of a tile's rows: a token's
// ChunksPerToken chunks go to as many adjacent lanes, 32 / ChunksPerToken tokens a step.
template <int TileTokens, int ChunksPerToken, class Body>
__device__ __forceinline__ void for_each_slice_chunk(int lane, Body&& body) {
  constexpr int kTokensPerStep = 32 / ChunksPerToken;
#pragma unroll
  for (int step = 0; step < TileTokens / kTokensPerStep; ++step)
    body(step * kTokensPerStep + lane / ChunksPerToken, lane % ChunksPerToken);
}

// Chunks per token of a warp's slice: 4 (64 fp8 bytes of a scale group) or 8 (the 128 rope bytes).
inline constexpr int kFp8SliceChunks = kQuantGroup / kChunkBytes;
inline constexpr int kRopeSliceChunks = kRopeDim * 2 / kChunkBytes;

// The slot of token `lane` of a tile; -1 (masked, not an error) past the list's valid prefix. Loaded one
// tile ahead of its use.
__device__ __forceinline__ int32_t load_lane_slot(const TileSource& source, int lane) {
  const int32_t position = source.first_position + lane;
  return position < source.length ? source.indices[position] : -1;
}

// This lane's slot of the CTA's first tile, loaded before the list lengths are known: the tile range needs
// no length, and positions below the list's width lie inside the index tensor. start() uses it when the
// lengths make that tile the first active one (the row reaches the split's start); the lengths still decide
// which of its entries are valid. The first gather then waits for one memory round trip (lengths and slots
// together) instead of two after the lengths (docs/perf.md, v37). Where a row table is built (the 32-head
// block), whose prologue writes the first two tiles' stages before its barrier, the next tile's slot is
// loaded the same way (v62).
struct FirstTileSlot {
  int tile = -1;  // none
  int32_t slot = -1;
  int32_t next_slot = -1;  // tile + 1's, row table only; -1 past the split's tiles
};

template <class Config>
__device__ __forceinline__ FirstTileSlot load_first_tile_slot(const DecodeParams& params,
                                                              const CtaCoordinates& coords, int lane) {
  FirstTileSlot first;
  const TileRange range = split_tile_range<Config>(params, coords);
  first.tile = range.begin;
  first.slot = load_lane_slot(
      tile_source<Config>(params, coords, first.tile, params.main.width, params.extra.width), lane);
  if constexpr (Config::kRowTable) {
    if (first.tile + 1 < range.end) {
      first.next_slot = load_lane_slot(
          tile_source<Config>(params, coords, first.tile + 1, params.main.width, params.extra.width), lane);
    }
  }
  return first;
}

// Counts (head block 0 only) the tile's indices that lie past the pool inside the valid prefix; called by
// one warp per tile (lane = token).
__device__ __forceinline__ void count_out_of_pool_slots(const DecodeParams& params, const TileSource& source,
                                                        bool in_prefix, int32_t slot, int lane) {
  const uint32_t out_of_pool = __ballot_sync(0xffffffffu, in_prefix && slot >= source.num_slots);
  if (lane == 0 && out_of_pool != 0 && source.counts_errors && params.error_counter != nullptr)
    atomicAdd(params.error_counter, static_cast<uint32_t>(__popc(out_of_pool)));
}

// ---- WarpRowGather ---------------------------------------------------------------------------------------

// Where a warp's slice of each of a tile's rows is (lane = token), and which tokens are valid. Invalid rows
// point at the cache base and are never read.
struct WarpTileRows {
  const uint8_t* slice;       // this lane's token: the warp's first byte of the row (cache base if invalid)
  const uint8_t* scale_word;  // this lane's token: the footer word holding the warp's scale byte
  uint32_t valid_mask;        // bit t: token t is valid (the same in every warp)
};

__device__ __forceinline__ WarpTileRows warp_tile_rows(const DecodeParams& params, const TileSource& source,
                                                       int32_t slot, int warp, int lane) {
  const bool in_prefix = source.first_position + lane < source.length;
  const bool valid = in_prefix && slot >= 0 && slot < source.num_slots;
  if (warp == 0) count_out_of_pool_slots(params, source, in_prefix, slot, lane);
  WarpTileRows rows;
  rows.valid_mask = __ballot_sync(0xffffffffu, valid);
  rows.slice = source.cache_data;
  rows.scale_word = source.cache_data;
  if (valid) {
    const SlotAddress address = slot_address(source, slot);
    rows.slice = address.row + (warp < kNumScaleGroups ? warp * kQuantGroup : kNopeDim);
    rows.scale_word = address.scales + (warp / 4) * 4;
  }
  return rows;
}

__device__ __forceinline__ const uint8_t* lane_pointer(const uint8_t* pointer, int source_lane) {
  return reinterpret_cast<const uint8_t*>(
      __shfl_sync(0xffffffffu, reinterpret_cast<unsigned long long>(pointer), source_lane));
}

// Starts the copy of the warp's slice of a tile's rows into its staging slice ([token][slice bytes]), and
// for a scale-group warp each token's footer word. Invalid tokens' staging bytes are zero-filled.
template <class Config>
__device__ __forceinline__ void issue_warp_slice_copy(const WarpTileRows& rows, uint32_t staging_slice,
                                                      uint32_t scale_words, int warp, int lane) {
  const auto copy_rows = [&]<int kChunksPerToken>() {
    for_each_slice_chunk<Config::kTileTokens, kChunksPerToken>(lane, [&](int token, int chunk) {
      const uint8_t* slice = lane_pointer(rows.slice, token);
      const bool valid = (rows.valid_mask >> token) & 1u;
      cp_async_16(staging_slice + token * kChunksPerToken * kChunkBytes + chunk * kChunkBytes,
                  valid ? slice + chunk * kChunkBytes : slice, valid);
    });
  };
  if (warp < Config::kFp8SliceWarps) {
    copy_rows.template operator()<kFp8SliceChunks>();
    cp_async_4(scale_words + lane * 4, rows.scale_word, (rows.valid_mask >> lane) & 1u);
  } else {
    copy_rows.template operator()<kRopeSliceChunks>();
  }
}

// Every warp finds its own rows: it loads the slots of the tile after next while the next tile's copies
// fly, and turns them into addresses when it issues that tile. No shared state, no barrier.
template <class Config>
class WarpRowGather {
 public:
  static constexpr bool kIntoRegisters = false;
  static constexpr bool kRoleSplit = false;
  __device__ __forceinline__ WarpRowGather(const DecodeParams& params, const CtaCoordinates& coords,
                                           const RowTiles& row, uint8_t* /*shared*/, uint32_t staging_slice,
                                           uint32_t scale_words, int warp, int lane)
      : params_(params),
        coords_(coords),
        row_(row),
        staging_slice_(staging_slice),
        scale_words_(scale_words),
        warp_(warp),
        lane_(lane) {}

  // Every warp reads slots.
  __device__ static bool loads_slots(int /*warp*/) { return true; }

  __device__ __forceinline__ void start(const FirstTileSlot& first) {
    tile_ = next_active_tile<Config>(params_, row_.tile_begin, row_.tile_end, row_.main_length,
                                     row_.extra_length);
    first_ = first;
  }

  __device__ __forceinline__ void issue_first() {
    if (tile_ < row_.tile_end) {
      const TileSource source = source_of(tile_);
      // warp_tile_rows masks positions past the valid prefix, so a slot loaded against the width serves.
      const int32_t slot = tile_ == first_.tile ? first_.slot : load_lane_slot(source, lane_);
      const WarpTileRows rows = warp_tile_rows(params_, source, slot, warp_, lane_);
      issue_warp_slice_copy<Config>(rows, staging_slice_, scale_words_, warp_, lane_);
      valid_next_ = rows.valid_mask;
    }
    cp_async_commit();
    next_tile_ =
        next_active_tile<Config>(params_, tile_ + 1, row_.tile_end, row_.main_length, row_.extra_length);
    if (next_tile_ < row_.tile_end) next_slot_ = load_lane_slot(source_of(next_tile_), lane_);
  }

  __device__ __forceinline__ bool has_tile() const { return tile_ < row_.tile_end; }

  __device__ __forceinline__ uint32_t issue_next() {
    const uint32_t valid_word = valid_next_;
    int tile_after_next = row_.tile_end;
    if (next_tile_ < row_.tile_end) {
      const WarpTileRows rows = warp_tile_rows(params_, source_of(next_tile_), next_slot_, warp_, lane_);
      issue_warp_slice_copy<Config>(rows, staging_slice_, scale_words_, warp_, lane_);
      cp_async_commit();
      valid_next_ = rows.valid_mask;
      tile_after_next = next_active_tile<Config>(params_, next_tile_ + 1, row_.tile_end, row_.main_length,
                                                 row_.extra_length);
      if (tile_after_next < row_.tile_end) next_slot_ = load_lane_slot(source_of(tile_after_next), lane_);
    }
    tile_ = next_tile_;
    next_tile_ = tile_after_next;
    return valid_word;
  }

 private:
  __device__ __forceinline__ TileSource source_of(int tile) const {
    return tile_source<Config>(params_, coords_, tile, row_.main_length, row_.extra_length);
  }

  const DecodeParams& params_;
  const CtaCoordinates& coords_;
  const RowTiles& row_;
  const uint32_t staging_slice_, scale_words_;
  const int warp_, lane_;
  int tile_ = 0;             // the tile whose copies are in flight (dequantized next), tile_end if none
  int next_tile_ = 0;        // the tile after it
  int32_t next_slot_ = -1;   // this lane's slot of next_tile_
  uint32_t valid_next_ = 0;  // valid-token bits of tile_
  FirstTileSlot first_;      // loaded before the lengths
};

// A lane's bytes of one tile, loaded into registers one tile ahead (RowTableGather, v114), for token block
// n (token 8 n + g, g = lane / 4, c = lane % 4): a scale-group warp's fp8 bytes [16 c, 16 c + 16) of its
// slice in chunk[n] and the footer word holding its scale byte in word n of chunk[4]; the rope warp's rope
// bytes [32 c, 32 c + 32) in chunk[2 n] and chunk[2 n + 1]. Zeros for an invalid token. One array for both
// roles, so the registers held over the tile are the rope warp's 32, not 32 + 20.
struct LaneTileBytes {
  uint4 chunk[8];

  __device__ __forceinline__ uint32_t footer_word(int n) const {
    return n == 0 ? chunk[4].x : n == 1 ? chunk[4].y : n == 2 ? chunk[4].z : chunk[4].w;
  }
  __device__ __forceinline__ void set_footer_word(int n, uint32_t word) {
    if (n == 0) chunk[4].x = word;
    if (n == 1) chunk[4].y = word;
    if (n == 2) chunk[4].z = word;
    if (n == 3) chunk[4].w = word;
  }
};

// ---- RowTableGather --------------------------------------------------------------------------------------

// One stage of the row table: one tile's rows, written by the table warp (lane = token), read by every
// warp. Invalid tokens hold the cache base, so a reader's slice offset (< 576) stays inside the pool (at
// least one page of P * 584 bytes) although its source size of 0 reads nothing.
struct RowTableStage {
  const uint8_t* row[32];     // token's 576-byte data row
  const uint8_t* footer[32];  // token's 8-byte footer entry (scale bytes of groups 0..6)
  uint32_t valid_mask;        // bit t: token t valid
  uint32_t present;           // 1: a tile of the CTA; 0: the CTA's tiles ended before this one
  uint32_t padding[2];
};

// Synchronisation: __syncthreads only, the prologue's one (P) and each iteration's two, A (after the
// partial-S exchange) and B (after the softmax). Number the CTA's active tiles 0, 1, ... (then the first
// absent one, whose stage says so); tile u lives in stage u % 3.
//   Reads. Every warp reads tile u's stage once, when it issues u's copies: right after P for u = 0, else
//     at the top of iteration u - 1, before A(u - 1). It keeps the valid bits in a register for the
//     softmax of u, so nothing reads the stage later.
//   Writes. The table warp writes tiles 0 and 1 before P, and tile u >= 2 at the top of iteration u - 2,
//     after issuing its own copies of tile u - 1 and before A(u - 2).
//   Read after write: tile 0 and 1 are written before P, which precedes their reads (after P; iteration
//     0). Tile u >= 2 is written before A(u - 2), which precedes its reads in iteration u - 1.
//   Write after read: tile u >= 3 overwrites tile u - 3, read before A(u - 3) (after P for u = 3, else in
//     iteration u - 4); the write comes in iteration u - 2, after B(u - 3), so A(u - 3) lies between.
//     Tile 2 goes to the stage no one used.
//   Why three stages: with two, tile 2's write (iteration 0, before A(0)) would overwrite tile 0, read after
//     P, with no barrier between. Writing between A and B instead would make two enough, but put the table
//     work in the softmax, where all warps do the same work and reach B together. Before A the table work
//     makes the rope warp the last to arrive, by 150-375 cycles a tile (its dequantization is shorter, its
//     table work longer: tile stamps, docs/perf.md), but moving its slot loads to another warp (v66) or
//     prefetching them (v65) measured slower.
//   Latency: the table warp loads tile u + 1's slots in iteration u - 2 (tile 2's in the prologue), right
//     after writing tile u, and writes them one iteration later; no warp waits on a global load to issue
//     copies, only on the table's shared-memory loads.
// Which warps run a RowTableGather's code: any warp (the role a runtime test of the warp index), or only the
// scale-group warps or only the rope warp, when the kernel runs one copy of its tile loop per role (v116: the
// role's tests fold away, and a scale-group warp no longer moves the rope warp's registers at the loop top).
enum class GatherRole { kAnyWarp, kScaleGroupWarps, kRopeWarp };

template <class Config, bool kIntoRegisters_, GatherRole kRole = GatherRole::kAnyWarp>
class RowTableGather {
 public:
  static constexpr bool kIntoRegisters = kIntoRegisters_;
  // Warps of different roles reach the CTA's barriers from different code (cta_barrier).
  static constexpr bool kRoleSplit = kRole != GatherRole::kAnyWarp;
  static constexpr int kTableWarp = Config::kNumWarps - 1;  // the rope warp
  static_assert(kTableWarp == Config::kFp8SliceWarps, "the table warp is the rope warp");
  static_assert(Config::kTileTokens == 32 && sizeof(RowTableStage) == Config::kRowTableStageBytes,
                "a stage holds one 32-token tile (config_compact.h budgets it)");

  __device__ __forceinline__ RowTableGather(const DecodeParams& params, const CtaCoordinates& coords,
                                            const RowTiles& row, uint8_t* shared, uint32_t staging_slice,
                                            uint32_t scale_words, int warp, int lane)
      : params_(params),
        coords_(coords),
        row_(row),
        table_(reinterpret_cast<RowTableStage*>(shared + Config::kRowTableOffset)),
        staging_slice_(staging_slice),
        scale_words_(scale_words),
        warp_(warp),
        lane_(lane) {}

  // Only the table warp reads slots.
  __device__ static bool loads_slots(int warp) { return warp == kTableWarp; }

  // Whether this warp dequantizes a scale group (else it holds the rope dims and the table).
  __device__ __forceinline__ bool scale_group_warp() const {
    if constexpr (kRole == GatherRole::kAnyWarp)
      return warp_ < Config::kFp8SliceWarps;
    else
      return kRole == GatherRole::kScaleGroupWarps;
  }
  __device__ __forceinline__ bool table_warp() const {
    if constexpr (kRole == GatherRole::kAnyWarp)
      return warp_ == kTableWarp;
    else
      return kRole == GatherRole::kRopeWarp;
  }

  // The table warp finds tiles 0, 1 and 2 and starts loading their slots (2's are written in iteration 0).
  __device__ __forceinline__ void start(const FirstTileSlot& first) {
    if (!table_warp()) return;
    first_tile_ = next_active_tile_from(row_.tile_begin);
    // write_stage masks positions past the valid prefix, so a slot loaded against the width serves.
    first_slot_ = first_tile_ == first.tile ? first.slot : load_slot(first_tile_);
    second_tile_ = next_active_tile_from(first_tile_ + 1);
    second_slot_ = second_tile_ == first.tile + 1 ? first.next_slot : load_slot(second_tile_);
    ahead_tile_ = next_active_tile_from(second_tile_ + 1);
    ahead_slot_ = load_slot(ahead_tile_);
  }

  __device__ __forceinline__ void issue_first() {
    if (table_warp()) {
      write_stage(table_[0], first_tile_, first_slot_);
      write_stage(table_[1], second_tile_, second_slot_);
    }
    cta_barrier<!kRoleSplit>();  // stages 0 and 1 are written (the prologue's one barrier)
    read_and_gather();
    cp_async_commit();  // the first tile's copies (empty for the loads); the prologue waits only for Q's
  }

  __device__ __forceinline__ bool has_tile() const { return present_; }

  // kIntoRegisters: this lane's bytes of the tile whose loads are in flight (read before issue_next
  // overwrites them).
  __device__ __forceinline__ const LaneTileBytes& lane_bytes() const { return bytes_; }

  __device__ __forceinline__ uint32_t issue_next() {
    const uint32_t valid_word = valid_next_;
    read_and_gather();
    if (!kIntoRegisters && present_) cp_async_commit();
    if (table_warp()) {
      // stage_ now is the stage of the tile after the one just issued (see the argument above)
      write_stage(table_[stage_], ahead_tile_, ahead_slot_);
      ahead_tile_ = next_active_tile_from(ahead_tile_ + 1);
      ahead_slot_ = load_slot(ahead_tile_);
    }
    return valid_word;
  }

 private:
  __device__ __forceinline__ TileSource source_of(int tile) const {
    return tile_source<Config>(params_, coords_, tile, row_.main_length, row_.extra_length);
  }

  __device__ __forceinline__ int next_active_tile_from(int tile) const {
    return next_active_tile<Config>(params_, tile, row_.tile_end, row_.main_length, row_.extra_length);
  }

  __device__ __forceinline__ int32_t load_slot(int tile) const {
    return tile < row_.tile_end ? load_lane_slot(source_of(tile), lane_) : -1;
  }

  // Table warp: tile `tile`'s rows (lane = token) into `stage`, or "no tile" past the CTA's last one.
  __device__ __forceinline__ void write_stage(RowTableStage& stage, int tile, int32_t slot) const {
    uint32_t valid_mask = 0;
    if (tile < row_.tile_end) {
      const TileSource source = source_of(tile);
      const bool in_prefix = source.first_position + lane_ < source.length;
      const bool valid = in_prefix && slot >= 0 && slot < source.num_slots;
      count_out_of_pool_slots(params_, source, in_prefix, slot, lane_);
      valid_mask = __ballot_sync(0xffffffffu, valid);
      SlotAddress address{source.cache_data, source.cache_data};
      if (valid) address = slot_address(source, slot);
      stage.row[lane_] = address.row;
      stage.footer[lane_] = address.scales;
    }
    if (lane_ == 0)
      *reinterpret_cast<uint2*>(&stage.valid_mask) = make_uint2(valid_mask, tile < row_.tile_end);
  }

  // Every warp: the next tile's header from stage_ and, when the tile is present, its slice of it (copies,
  // not yet committed, or loads); then stage_ moves on.
  __device__ __forceinline__ void read_and_gather() {
    if constexpr (kIntoRegisters)
      read_and_load();
    else
      read_and_issue();
    stage_ = stage_ == Config::kRowTableStages - 1 ? 0 : stage_ + 1;
  }

  // stage_'s header: the tile's valid-token bits and whether there is a tile; returns the stage.
  __device__ __forceinline__ const RowTableStage& read_stage_header() {
    const RowTableStage& stage = table_[stage_];
    const uint2 header = *reinterpret_cast<const uint2*>(&stage.valid_mask);
    valid_next_ = header.x;
    present_ = header.y != 0;
    return stage;
  }

  // The staging form: the slice's copies into the warp's staging slice and its footer words.
  __device__ __forceinline__ void read_and_issue() {
    const RowTableStage& stage = read_stage_header();
    if (present_) {
      const auto copy_rows = [&]<int kChunksPerToken>(int slice_offset) {
        for_each_slice_chunk<Config::kTileTokens, kChunksPerToken>(lane_, [&](int token, int chunk) {
          cp_async_16(staging_slice_ + token * kChunksPerToken * kChunkBytes + chunk * kChunkBytes,
                      stage.row[token] + slice_offset + chunk * kChunkBytes, (valid_next_ >> token) & 1u);
        });
      };
      if (scale_group_warp()) {
        copy_rows.template operator()<kFp8SliceChunks>(warp_ * kQuantGroup);
        cp_async_4(scale_words_ + lane_ * 4, stage.footer[lane_] + (warp_ / 4) * 4,
                   (valid_next_ >> lane_) & 1u);
      } else {
        copy_rows.template operator()<kRopeSliceChunks>(kNopeDim);
      }
    }
  }

  // The register form: the next tile's header from stage_, and when the tile is present its lane's bytes of
  // it into registers (LaneTileBytes: loads, not cp.async, v114); then stage_ moves on. Every table address
  // is read before the first load, and each role issues its loads in one branch (v114b): in one loop over the
  // token blocks with both roles inside it, ptxas reused a register that the other role's load was still
  // filling as a temporary, and its scoreboard wait serialized the tile's four load blocks (+60-76 %).
  __device__ __forceinline__ void read_and_load() {
    const RowTableStage& stage = read_stage_header();
    if (present_) {
      constexpr int kBlocks = Config::kTileTokens / 8;
      const int group_row = lane_ / 4;
      const int quad_lane = lane_ % 4;
      const uint8_t* rows[kBlocks];
      bool valid[kBlocks];
#pragma unroll
      for (int n = 0; n < kBlocks; ++n) {
        rows[n] = stage.row[n * 8 + group_row];
        valid[n] = (valid_next_ >> (n * 8 + group_row)) & 1u;
      }
      if (scale_group_warp()) {
        const uint8_t* footers[kBlocks];
#pragma unroll
        for (int n = 0; n < kBlocks; ++n) footers[n] = stage.footer[n * 8 + group_row] + (warp_ / 4) * 4;
        const int slice_offset = warp_ * kQuantGroup + quad_lane * kChunkBytes;
#pragma unroll
        for (int n = 0; n < kBlocks; ++n)
          bytes_.chunk[n] = load_row_chunk_or_zero(rows[n] + slice_offset, valid[n]);
#pragma unroll
        for (int n = 0; n < kBlocks; ++n)
          bytes_.set_footer_word(n, load_footer_word_or_zero(footers[n], valid[n]));
      } else {
        const int rope_offset = kNopeDim + quad_lane * 2 * kChunkBytes;
#pragma unroll
        for (int n = 0; n < kBlocks; ++n) {
          bytes_.chunk[2 * n] = load_row_chunk_or_zero(rows[n] + rope_offset, valid[n]);
          bytes_.chunk[2 * n + 1] = load_row_chunk_or_zero(rows[n] + rope_offset + kChunkBytes, valid[n]);
        }
      }
    }
  }

  const DecodeParams& params_;
  const CtaCoordinates& coords_;
  const RowTiles& row_;
  RowTableStage* const table_;
  const uint32_t staging_slice_, scale_words_;  // the staging form's
  const int warp_, lane_;
  int stage_ = 0;            // the stage the next read_and_gather reads
  bool present_ = false;     // a tile's copies or loads are in flight
  uint32_t valid_next_ = 0;  // valid-token bits of that tile
  LaneTileBytes bytes_{};    // the register form: this lane's bytes of that tile
  // Table warp only: tiles 0 and 1 until the prologue writes them, then the next tile to write.
  int first_tile_ = 0, second_tile_ = 0, ahead_tile_ = 0;
  int32_t first_slot_ = -1, second_slot_ = -1, ahead_slot_ = -1;  // this lane's slots of those tiles
};

}  // namespace smla::detail::decode
