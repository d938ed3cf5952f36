// Which tensor-core decode kernel a plan runs: picked from the device's properties (compute capability,
// the shared-memory opt-in limit, whether the sm_90a kernel is built and enabled), so that a launch never
// asks for more shared memory than the device grants. Host code only; tested over simulated devices.
#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <iterator>
#include <string>

#include "common/backend_entry.h"
#include "common/split_grid.h"
#include "cuda/decode/config.h"
#include "cuda/decode/config_compact.h"
#include "cuda/decode/config_sm90.h"

namespace smla::detail {

const char* decode_kernel_name(DecodeKernel kernel) {
  switch (kernel) {
    case DecodeKernel::kNone:
      return "none";
    case DecodeKernel::kSm90Heads64:
      return "sm90-h64";
    case DecodeKernel::kMmaHeads64:
      return "mma-h64";
    case DecodeKernel::kCompactHeads32:
      return "mma99-h32";
    case DecodeKernel::kCompactHeads16:
      return "mma99-h16";
  }
  return "unknown";
}

namespace {

// Whether the shape wants the wide (64-head) block of decode::head_block_for, else the 16-head one.
bool wants_wide_block(const DecodeShape& shape) {
  return decode::head_block_for(shape.num_heads, query_rows_of(shape), total_tiles_of(shape)) ==
         decode::kWideHeadBlock;
}

template <class Config>
constexpr KernelChoice choice_of(DecodeKernel kernel) {
  return {kernel, Config::kHeadBlock, static_cast<int64_t>(Config::kSharedBytes)};
}

// In order of preference; the last of each list is the 99 KB-class kernel.
constexpr KernelChoice kWideChoices[] = {
    choice_of<decode::DecodeConfigSm90>(DecodeKernel::kSm90Heads64),
    choice_of<decode::DecodeConfigHeads64>(DecodeKernel::kMmaHeads64),
    choice_of<decode::CompactConfigHeads32>(DecodeKernel::kCompactHeads32)};
// The narrow block runs the 99 KB-class kernel everywhere: on the H200 it measured 2-7 % faster than the
// portable kernel's 16-head block on every narrow row (h <= 16 at b = 1..128, and the small calls).
constexpr KernelChoice kNarrowChoices[] = {
    choice_of<decode::CompactConfigHeads16>(DecodeKernel::kCompactHeads16)};
// The last of each list: the 99 KB-class kernel, the smallest in shared memory.
constexpr KernelChoice kCompactWide = std::end(kWideChoices)[-1];
constexpr KernelChoice kCompactNarrow = std::end(kNarrowChoices)[-1];

// Few-row wide calls run the 32-head 99 KB-class kernel where the sm_90a kernel would run them: two
// 32-head CTAs per 64 heads of a row and split reach more SMs than one 64-head CTA, and its 32-entry
// compute tiles let a split walk less. Same-process A/Bs on the H200 (docs/perf.md, v43 and v69):
// - v43 (2026-12-02): at 8 query rows of 64 heads flash-c4, flash-c4-mtp (b = 4) and flash-c128-64k 6.1-6.4 %
//   faster than sm90-h64 and the DSv4-Flash step at b = 8 2.4 %; at 16 rows flash-swa (2 tiles) 13.7 %
//   faster; flash-c4 (10 tiles) then even, and its step layers 3.3 % slower, so the rule stopped at 80
//   row-tiles.
// - v69 (2026-12-04, after the 99 KB-class epilogue and prologue work of v59-v62): 16 rows of 10 tiles
//   (flash-c4 b = 16, flash-c4-mtp b = 8, flash-c128-64k b = 16) 2.5-2.9 % faster, the DSv4-Flash step at
//   b = 16 1.6 %; 128-head rows: pro-c4 b = 3 / 4 14.9 / 2.4 % faster, the DSv4-Pro step (context 65536) at
//   b = 4 3.4 %, but its C128 layers at b = 8 (10 tiles) 1.9 % slower.
// Hence: h <= 64 at most 16 rows, h = 65..128 at most 4; at most 160 rows x 64-head blocks x tiles.
constexpr int64_t kFewRowsForCompactWide = 16;
constexpr int64_t kFewRowsOf128HeadsForCompactWide = 4;
constexpr int64_t kFewWideRowTilesForCompactWide = 160;

bool few_rows_for_compact_wide_block(const DecodeShape& shape) {
  const int64_t rows = query_rows_of(shape);
  const int64_t wide_blocks = head_block_count(shape.num_heads, decode::kWideHeadBlock);
  const int64_t most_rows = wide_blocks == 1 ? kFewRowsForCompactWide : kFewRowsOf128HeadsForCompactWide;
  return rows <= most_rows && rows * wide_blocks * total_tiles_of(shape) <= kFewWideRowTilesForCompactWide;
}

// One-wave wide calls of at most 3 tiles a row (the DSv4-Flash SWA layers; its C128 layers up to a context
// of 8192) also run the 32-head kernel when its CTAs fit one wave unsplit. Same-process A/Bs on the H200
// (docs/perf.md, v69b..v69e, 2026-12-04):
// - 2-tile rows (flash-swa, the step's SWA layers) gained 5-13 % at every row count from 17 to 66.
// - 3-tile rows gained 4-8 % where both kernels' own schedules give a CTA the same grain: one tile (17..22
//   rows, 3 splits of 32-head CTAs still fit one wave) or more (40..66 rows: past the 39 resident 3-CTA
//   clusters the sm_90a kernel splits in 2, and one CTA of each pair walks 2 tiles). In between (23..32
//   rows measured) the sm_90a kernel's 3-CTA clusters give every tile its own CTA while the 32-head kernel
//   walks 2 tiles a CTA and launches a combine, and it was 5-7 % slower.
constexpr int64_t kMostTilesForOneWaveCompactWide = 3;

// Entries the longest CTA of the call walks under a kernel's own split schedule: with a body and tail split
// the body's CTAs (body_tiles_per_split tiles, fewer splits), not the tail's short ones. Every rule below
// compares a call's critical path, which the longest CTA sets.
int64_t entries_per_cta(const DecodeShape& shape, const CudaDeviceInfo& device, const KernelChoice& kernel) {
  const SplitSchedule schedule = plan_cuda_decode_splits(shape, device, kernel, /*requested_splits=*/0);
  const int64_t longest_tiles =
      longest_cta_tiles(schedule.tiles_per_split, schedule.body_rows, schedule.body_tiles_per_split);
  return longest_tiles * schedule.tile_tokens;
}

// Whether a kernel's own split schedule gives every CTA of the call at most one 64-entry tile.
bool one_tile_per_cta(const DecodeShape& shape, const CudaDeviceInfo& device, const KernelChoice& kernel) {
  return entries_per_cta(shape, device, kernel) <= kTileTokens;
}

// Small calls (decode::head_block_for's narrow block) of more than 16 heads whose 16-head CTAs would each
// walk at least two 64-entry tiles run the 32-head kernel when its schedule gives a CTA fewer entries. Its
// CTAs are half as many per row, so its splits reach further; where the 16-head CTAs walk one tile or 1.5,
// the 32-head kernel's larger tile costs more than the shorter walk saves. Same-process A/B on the H200
// (docs/perf.md, v71; 2026-12-04): 128 -> 64 entries a CTA (flash-c4 b = 5 / 6, flash-c4-mtp b = 3,
// flash-c128-64k b = 6) -4.6 to -6.8 %, 160 -> 96 (flash-c4 b = 7, pro-c4 b = 2) -4.2 / -9.3 %, the
// DSv4-Pro step at b = 2 (context 8192) -7.4 %; 96 -> 64 -0.9 to +4.8 % (pro-c4 b = 1), 64 -> 32 +1.2 to
// +7.8 %.
constexpr int64_t kLeastNarrowEntriesForCompactWide = 2 * kTileTokens;

bool narrow_call_walks_long_ctas(const DecodeShape& shape, const CudaDeviceInfo& device,
                                 const KernelChoice& narrow) {
  const int64_t narrow_entries = entries_per_cta(shape, device, narrow);
  return narrow_entries >= kLeastNarrowEntriesForCompactWide &&
         entries_per_cta(shape, device, kCompactWide) < narrow_entries;
}

// A call's 32-head CTAs, unsplit (query rows x 32-head blocks).
int64_t compact_wide_ctas(const DecodeShape& shape) {
  return query_rows_of(shape) * head_block_count(shape.num_heads, kCompactWide.head_block);
}

// Whether a call's 32-head CTAs, unsplit, fit one wave of the device's SMs: one condition of
// one_wave_of_few_tile_rows (Hopper) below, and the first half of compact_wide_beats_portable (without the
// sm_90a kernel: a B200 / B300 running the compute_89 PTX, an H100 / H200 with it switched off), where such
// wide calls run the 32-head kernel instead of the portable one. Measured on an H100 running JIT-compiled
// compute_89 PTX (docs/perf.md, "The portable kernel against mma99-h32 from PTX", v101, 2026-12-06): 13-38 %
// faster on 8 of the 10 named-shape rows at b = 1..128 it moves (16 to 128 32-head CTAs on 132 SMs), level
// at pro-c4 b = 16 / 32; at two waves (256 CTAs) 13-21 % slower on rows of 10 and 18 tiles (flash-c4
// b = 128, pro-c4 b = 64), 8.7 % faster on rows of 2 at full lengths (flash-swa b = 128) but slower at random
// ones, so beyond 1.5 waves no rule moves a call.
bool compact_wide_fits_one_wave(const DecodeShape& shape, const CudaDeviceInfo& device) {
  return device.sm_count > 0 && compact_wide_ctas(shape) <= device.sm_count;
}

bool one_wave_of_few_tile_rows(const DecodeShape& shape, const CudaDeviceInfo& device,
                               const KernelChoice& sm90) {
  const int64_t tiles = total_tiles_of(shape);
  if (head_block_count(shape.num_heads, decode::kWideHeadBlock) != 1 ||
      tiles > kMostTilesForOneWaveCompactWide || !compact_wide_fits_one_wave(shape, device))
    return false;
  return tiles < kMostTilesForOneWaveCompactWide ||
         one_tile_per_cta(shape, device, kCompactWide) == one_tile_per_cta(shape, device, sm90);
}

// Without the sm_90a kernel, wide calls also run the 32-head kernel where its CTAs fit one and a half waves
// on rows of at most 10 tiles (v102). In the two-wave sweep on an H100 running compute_89 PTX (docs/perf.md,
// 2026-12-06), up to 1.5 waves on rows of 2 and 10 tiles it took 0.887-0.997x the portable kernel's time at
// full lengths and 0.737-0.956x at random ones (one row 1.020x), but 1.116x on rows of 18 tiles; at two
// waves and beyond the lengths decide even for 2-tile rows, so no rule moves those. Its A/B (v102_call, same
// day and GPU kind): the 14 rows it moves 0.916x in geometric mean, 0.735x to 1.029x.
constexpr int64_t kMostTilesForWaveAndAHalfCompactWide = 10;

bool compact_wide_beats_portable(const DecodeShape& shape, const CudaDeviceInfo& device) {
  if (compact_wide_fits_one_wave(shape, device)) return true;
  return 2 * compact_wide_ctas(shape) <= 3 * int64_t{device.sm_count} &&
         total_tiles_of(shape) <= kMostTilesForWaveAndAHalfCompactWide;
}

}  // namespace

KernelChoice choose_decode_kernel(const DecodeShape& shape, const CudaDeviceInfo& device) {
  const auto pick = [&](const auto& choices) {
    for (const KernelChoice& choice : choices) {
      // The sm_90a kernel only where it is built for and enabled on this device.
      if (choice.kernel == DecodeKernel::kSm90Heads64 && !device.warp_specialized_decode) continue;
      if (choice.shared_bytes <= device.max_shared_bytes) return choice;
    }
    return KernelChoice{};
  };
  if (!wants_wide_block(shape)) {
    const KernelChoice narrow = pick(kNarrowChoices);
    if (narrow.kernel == DecodeKernel::kCompactHeads16 && shape.num_heads > decode::kNarrowHeadBlock &&
        kCompactWide.shared_bytes <= device.max_shared_bytes &&
        narrow_call_walks_long_ctas(shape, device, narrow))
      return kCompactWide;
    return narrow;
  }
  const KernelChoice wide = pick(kWideChoices);
  if (wide.kernel == DecodeKernel::kSm90Heads64 &&
      (few_rows_for_compact_wide_block(shape) || one_wave_of_few_tile_rows(shape, device, wide)))
    return kCompactWide;
  if (wide.kernel == DecodeKernel::kMmaHeads64 && compact_wide_beats_portable(shape, device))
    return kCompactWide;
  return wide;
}

int64_t smallest_decode_kernel_bytes(const DecodeShape& shape) {
  return wants_wide_block(shape) ? kCompactWide.shared_bytes : kCompactNarrow.shared_bytes;
}

namespace {

// A planner override from an environment variable: a positive decimal integer up to `largest` (leading or
// trailing text, signs, exponents and overflow are errors); `meaning` ends the error message.
Status positive_integer_from_environment(const char* name, const char* env_value, int64_t largest,
                                         const char* meaning, int64_t* value) {
  errno = 0;
  char* end = nullptr;
  const long long parsed = std::strtoll(env_value, &end, 10);
  if (errno != 0 || end == env_value || *end != '\0' || parsed <= 0 || parsed > largest) {
    return Status::InvalidArgument(std::string(name) + "='" + env_value + "' must be a positive integer" +
                                   (largest < (int64_t{1} << 31) ? " up to " + std::to_string(largest) : "") +
                                   ": " + meaning);
  }
  *value = parsed;
  return Status::Ok();
}

}  // namespace

Status shared_memory_cap(int32_t option, const char* env_value, int64_t* cap) {
  *cap = 0;
  if (option < 0) {
    return Status::InvalidArgument("options.max_shared_bytes must be >= 0 (0 = no cap; got " +
                                   std::to_string(option) + ")");
  }
  if (option > 0) {
    *cap = option;
    return Status::Ok();
  }
  if (env_value == nullptr || env_value[0] == '\0') return Status::Ok();
  return positive_integer_from_environment(
      "SMLA_MAX_SHARED_BYTES", env_value, int64_t{1} << 31,
      "the bytes of shared memory per block the planner may use (e.g. 101376 for the 99 KB class)", cap);
}

Status planned_sm_count(int32_t option, const char* env_value, int* sm_count) {
  *sm_count = 0;
  if (option < 0 || option > kMaxPlannedSmCount) {
    return Status::InvalidArgument("options.sm_count must be in 0.." + std::to_string(kMaxPlannedSmCount) +
                                   " (0 = the device's own; got " + std::to_string(option) + ")");
  }
  if (option > 0) {
    *sm_count = option;
    return Status::Ok();
  }
  if (env_value == nullptr || env_value[0] == '\0') return Status::Ok();
  int64_t value = 0;
  SMLA_RETURN_IF_ERROR(positive_integer_from_environment(
      "SMLA_SM_COUNT", env_value, kMaxPlannedSmCount,
      "the SM count the planner schedules for (e.g. 188 for an RTX PRO 6000)", &value));
  *sm_count = static_cast<int>(value);
  return Status::Ok();
}

void apply_planner_overrides(int64_t shared_cap, int planned_sms, CudaDeviceInfo* device) {
  if (shared_cap > 0) device->max_shared_bytes = std::min(device->max_shared_bytes, shared_cap);
  if (planned_sms > 0) device->sm_count = planned_sms;
}

}  // namespace smla::detail
