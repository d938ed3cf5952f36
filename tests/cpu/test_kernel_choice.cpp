// The planner's kernel choice and split schedule over simulated devices (no GPU needed): which decode
// kernel each GPU class gets for the DeepSeek-V4 shapes, with which head block, and split counts that fill
// the device without waves of empty work. Device figures are the vendors'
// (cudaDevAttrMaxSharedMemoryPerBlockOptin and multiprocessor counts).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <string>
#include <vector>

#include "common/backend_entry.h"
#include "common/decode_params.h"
#include "common/hopper_clusters.h"
#include "common/split_grid.h"
#include "cuda/combine/kernel.h"
#include "cuda/common/programmatic_launch.h"
#include "cuda/decode/config.h"
#include "cuda/decode/config_compact.h"
#include "cuda/decode/config_sm90.h"
#include "smla/decode.h"

namespace smla {
namespace {

struct SimulatedDevice {
  const char* name;
  int compute_capability, sm_count;
  int64_t max_shared_bytes;
  bool sm90_kernel;           // compute capability 9.0 with an sm_90a build
  const char* wide_kernel;    // what a 64-head-block shape gets
  const char* narrow_kernel;  // what a 16-head-block shape gets
  int wide_head_block;
};

// The 99 KB class (sm_120, sm_89, sm_86) gets the 32-token-tile kernels for both head blocks; the A100 (163
// KB) does not fit the portable 64-head block (about 174 KB); Hopper runs the sm_90a kernel. The narrow
// (16-head) block is the 99 KB-class kernel on every device.
const SimulatedDevice kDevices[] = {
    {"RTX PRO 6000 Blackwell", 120, 188, 101376, false, "mma99-h32", "mma99-h16", 32},
    {"RTX 5090", 120, 170, 101376, false, "mma99-h32", "mma99-h16", 32},
    {"L40S", 89, 142, 101376, false, "mma99-h32", "mma99-h16", 32},
    {"RTX 3090", 86, 82, 101376, false, "mma99-h32", "mma99-h16", 32},
    {"A100", 80, 108, 166912, false, "mma99-h32", "mma99-h16", 32},
    {"H100/H200", 90, 132, 232448, true, "sm90-h64", "mma99-h16", 64},
    {"H200 with the sm_90a kernel off", 90, 132, 232448, false, "mma-h64", "mma99-h16", 64},
    // No native code in the default build: the driver JIT-compiles its compute_89 PTX (no sm_90a kernel).
    {"B200", 100, 148, 232448, false, "mma-h64", "mma99-h16", 64},
};

detail::CudaDeviceInfo device_info(const SimulatedDevice& device) {
  detail::CudaDeviceInfo info;
  info.ordinal = 0;
  info.sm_count = device.sm_count;
  info.compute_capability = device.compute_capability;
  info.warp_specialized_decode = device.sm90_kernel;
  info.max_shared_bytes = device.max_shared_bytes;
  // The one-wave rule compares the kernels' split schedules, which count the sm_90a kernel's waves against
  // its resident clusters.
  if (device.sm90_kernel) test::set_hopper_resident_clusters(&info);
  return info;
}

// Whether a wide call's 32-head CTAs, unsplit, fit one wave of `sm_count` SMs, or one and a half on rows of
// at most 10 64-entry tiles: where the sm_90a kernel is missing, such calls run mma99-h32 instead of the
// portable mma-h64 (kernel_choice.cpp).
bool compact_ctas_fit(const DecodeShape& shape, int sm_count) {
  const int64_t rows = static_cast<int64_t>(shape.batch) * shape.seq_q;
  const int64_t ctas = rows * ((shape.num_heads + 31) / 32);
  const int64_t tiles = (shape.topk + 63) / 64 + (std::max(shape.extra_topk, 0) + 63) / 64;
  return ctas <= sm_count || (2 * ctas <= 3 * int64_t{sm_count} && tiles <= 10);
}

// The split schedule an H200 plans for `shape`, uncapped or under the 99 KB cap, with the kernel it chooses.
detail::SplitSchedule h200_schedule(const DecodeShape& shape, bool capped) {
  detail::CudaDeviceInfo device = device_info(kDevices[5]);
  if (capped) device.max_shared_bytes = 101376;
  return detail::plan_cuda_decode_splits(shape, device, detail::choose_decode_kernel(shape, device), 0);
}

struct NamedShape {
  const char* name;
  int32_t num_heads, seq_q, topk, extra_topk;
};
// bench/shapes.cpp's production shapes (one layer's call).
const NamedShape kShapes[] = {
    {"flash-swa", 64, 1, 128, 0},     {"flash-c4", 64, 1, 128, 512},       {"flash-c4-tp4", 16, 1, 128, 512},
    {"flash-c4-tp8", 8, 1, 128, 512}, {"flash-c128-64k", 64, 1, 128, 512}, {"flash-c4-mtp", 64, 2, 128, 512},
    {"pro-c4", 128, 1, 128, 1024},    {"pro-c128-1m", 128, 1, 128, 8192},
};

TEST(KernelChoice, EveryCompactConfigurationFitsThe99KbClass) {
  std::printf(
      "[kernel_choice] shared bytes: sm90-h64 %zu, mma-h64 %zu, mma99-h32 %zu, mma99-h16 %zu\n",
      detail::decode::DecodeConfigSm90::kSharedBytes, detail::decode::DecodeConfigHeads64::kSharedBytes,
      detail::decode::CompactConfigHeads32::kSharedBytes, detail::decode::CompactConfigHeads16::kSharedBytes);
  EXPECT_LE(detail::decode::CompactConfigHeads32::kSharedBytes, 101376u);
  EXPECT_LE(detail::decode::CompactConfigHeads16::kSharedBytes, 101376u);
  // The portable kernel does not fit there (nor on an A100): that is why the 99 KB class needs its own.
  EXPECT_GT(detail::decode::DecodeConfigHeads64::kSharedBytes, 166912u);
}

// Where both run, the planner gives wide calls of few query rows and little tile work the 32-head 99 KB-class
// kernel instead of the sm_90a kernel (kernel_choice.cpp: at most 16 rows of 64 heads or 4 of 128, and at
// most 160 rows x 64-head blocks x 64-entry tiles), as measured on the H200 (v43, v69); every other wide call
// keeps sm90-h64. Without the sm_90a kernel these rules do not apply; the wave rules there pick between
// mma99-h32 and the portable mma-h64 (WideCallsOfAWaveAndAHalfRunTheCompactKernelWithoutSm90 below).
TEST(KernelChoice, FewRowWideCallsRunTheCompactKernelOnHopper) {
  struct Case {
    const char* shape;
    int32_t batch;
    const char* kernel;
  };
  const Case cases[] = {
      {"flash-c4", 8, "mma99-h32"},        // 8 rows x 10 tiles = 80
      {"flash-c128-64k", 8, "mma99-h32"},  // the same lists
      {"flash-c4-mtp", 4, "mma99-h32"},    // 8 rows (s_q = 2)
      {"flash-swa", 16, "mma99-h32"},      // 16 rows x 2 tiles
      {"flash-c4", 16, "mma99-h32"},       // 16 rows x 10 tiles = 160
      {"flash-c4-mtp", 8, "mma99-h32"},    // 16 rows (s_q = 2) x 10 tiles
      {"flash-c4", 17, "sm90-h64"},        // more than 16 rows
      {"flash-c4-mtp", 16, "sm90-h64"},    // 32 rows
      {"flash-swa", 32, "mma99-h32"},      // 64 32-head CTAs of 2 tiles: one wave (OneWave... below)
      {"flash-c4", 64, "sm90-h64"},        // 640 row-tiles
      {"pro-c4", 3, "mma99-h32"},          // 3 rows x 2 blocks x 18 tiles = 108
      {"pro-c4", 4, "mma99-h32"},          // 4 x 2 x 18 = 144
      {"pro-c4", 8, "sm90-h64"},           // more than 4 rows of 128 heads
      {"pro-c128-1m", 1, "sm90-h64"},      // 1 x 2 x 130 = 260
      {"flash-c4", 4, "mma99-h16"},        // a small call: the 16-head block first
  };
  const detail::CudaDeviceInfo hopper = device_info(kDevices[5]);
  const detail::CudaDeviceInfo portable = device_info(kDevices[6]);
  for (const Case& test_case : cases) {
    const NamedShape* named = nullptr;
    for (const NamedShape& candidate : kShapes) {
      if (std::string(candidate.name) == test_case.shape) named = &candidate;
    }
    ASSERT_NE(named, nullptr) << test_case.shape;
    const DecodeShape shape{test_case.batch, named->seq_q, named->num_heads, named->topk, named->extra_topk};
    const std::string label = std::string(test_case.shape) + " b=" + std::to_string(test_case.batch);
    const detail::KernelChoice choice = detail::choose_decode_kernel(shape, hopper);
    EXPECT_STREQ(detail::decode_kernel_name(choice.kernel), test_case.kernel) << label;
    if (std::string(test_case.kernel) == "mma99-h32") EXPECT_EQ(choice.head_block, 32) << label;
    // Without the sm_90a kernel only the wave rules apply (WideCallsOfAWaveAndAHalfRunTheCompactKernel...).
    const bool narrow = std::string(test_case.kernel) == "mma99-h16";
    EXPECT_STREQ(
        detail::decode_kernel_name(detail::choose_decode_kernel(shape, portable).kernel),
        narrow ? "mma99-h16" : (compact_ctas_fit(shape, portable.sm_count) ? "mma99-h32" : "mma-h64"))
        << label;
  }
}

// Wide calls of at most 3 tiles a row whose 32-head CTAs fit one wave unsplit run the 32-head kernel on
// Hopper (v69e in docs/perf.md): 2-tile rows always; 3-tile rows (the DSv4-Flash C128 layers at context
// 8192: 128 + 64 entries) when both kernels' schedules give a CTA the same grain, one tile (up to 22 rows on
// 132 SMs: 32-head CTAs in 3 splits fit) or more (from 40 rows, beyond the 39 resident 3-CTA clusters of the
// sm_90a kernel). Between them, and beyond one wave of 32-head CTAs, sm90-h64 keeps the call.
TEST(KernelChoice, OneWaveFewTileCallsRunTheCompactKernelOnHopper) {
  struct Case {
    DecodeShape shape;
    const char* kernel;
    const char* why;
  };
  const Case cases[] = {
      {{17, 1, 64, 128, 0}, "mma99-h32", "SWA, 17 rows (past the few-row rule)"},
      {{66, 1, 64, 128, 0}, "mma99-h32", "SWA, 132 32-head CTAs"},
      {{67, 1, 64, 128, 0}, "sm90-h64", "SWA, 134 32-head CTAs: two waves"},
      {{33, 2, 64, 128, 0}, "mma99-h32", "SWA with s_q = 2: 66 rows"},
      {{34, 2, 64, 128, 0}, "sm90-h64", "SWA with s_q = 2: 68 rows"},
      {{17, 1, 64, 128, 64}, "mma99-h32", "C128: both one tile a CTA"},
      {{22, 1, 64, 128, 64}, "mma99-h32", "C128: 132 32-head CTAs of one tile"},
      {{23, 1, 64, 128, 64}, "sm90-h64", "C128: only sm90-h64 one tile a CTA"},
      {{39, 1, 64, 128, 64}, "sm90-h64", "C128: 39 resident 3-CTA clusters"},
      {{40, 1, 64, 128, 64}, "mma99-h32", "C128: neither one tile a CTA"},
      {{66, 1, 64, 128, 64}, "mma99-h32", "C128: 132 32-head CTAs unsplit"},
      {{67, 1, 64, 128, 64}, "sm90-h64", "C128: two waves of 32-head CTAs"},
      {{40, 1, 64, 128, 128}, "sm90-h64", "4 tiles a row: outside the rule"},
      {{20, 1, 128, 128, 0}, "sm90-h64", "128 heads: outside the rule"},
  };
  const detail::CudaDeviceInfo hopper = device_info(kDevices[5]);
  const detail::CudaDeviceInfo portable = device_info(kDevices[6]);
  for (const Case& test_case : cases) {
    const DecodeShape& shape = test_case.shape;
    const std::string label = std::string(test_case.why) + " (b=" + std::to_string(shape.batch) +
                              " s_q=" + std::to_string(shape.seq_q) +
                              " h=" + std::to_string(shape.num_heads) +
                              " extra=" + std::to_string(shape.extra_topk) + ")";
    EXPECT_STREQ(detail::decode_kernel_name(detail::choose_decode_kernel(shape, hopper).kernel),
                 test_case.kernel)
        << label;
    EXPECT_STREQ(detail::decode_kernel_name(detail::choose_decode_kernel(shape, portable).kernel),
                 compact_ctas_fit(shape, portable.sm_count) ? "mma99-h32" : "mma-h64")
        << label << ": without the sm_90a kernel only the wave rules apply";
  }
}

// Without the sm_90a kernel (a B200 running the compute_89 PTX; a Hopper GPU with it switched off) wide calls
// whose 32-head CTAs fit one wave unsplit (v101), or one and a half on rows of at most 10 tiles (v102), run
// mma99-h32, the others the portable mma-h64, as measured on an H100 running JIT-compiled PTX (docs/perf.md,
// "The portable kernel against mma99-h32 from PTX", 2026-12-06).
TEST(KernelChoice, WideCallsOfAWaveAndAHalfRunTheCompactKernelWithoutSm90) {
  struct Case {
    int device_index;  // into kDevices
    DecodeShape shape;
    const char* kernel;
  };
  const Case cases[] = {
      {6, {8, 1, 64, 128, 512}, "mma99-h32"},     // flash-c4 b = 8, measured faster
      {6, {64, 1, 64, 128, 512}, "mma99-h32"},    // flash-c4 b = 64: 128 CTAs, measured faster
      {6, {64, 1, 64, 128, 0}, "mma99-h32"},      // flash-swa b = 64, measured faster
      {6, {8, 1, 128, 128, 1024}, "mma99-h32"},   // pro-c4 b = 8, measured faster
      {6, {64, 1, 128, 128, 1024}, "mma-h64"},    // pro-c4 b = 64: 256 CTAs, measured slower
      {6, {66, 1, 64, 128, 512}, "mma99-h32"},    // 132 CTAs on 132 SMs
      {6, {80, 1, 64, 128, 512}, "mma99-h32"},    // flash-c4 b = 80: 160 CTAs, measured faster
      {6, {99, 1, 64, 128, 512}, "mma99-h32"},    // 198 CTAs: 1.5 waves
      {6, {100, 1, 64, 128, 512}, "mma-h64"},     // 200
      {6, {96, 1, 64, 128, 0}, "mma99-h32"},      // flash-swa b = 96: 192 CTAs of 2-tile rows
      {6, {128, 1, 64, 128, 0}, "mma-h64"},       // flash-swa b = 128: 256 CTAs, lengths decide
      {6, {128, 1, 64, 128, 512}, "mma-h64"},     // flash-c4 b = 128, measured slower
      {6, {67, 1, 64, 128, 576}, "mma-h64"},      // 134 CTAs of 11-tile rows
      {6, {48, 1, 128, 128, 1024}, "mma-h64"},    // pro-c4 b = 48: 192 CTAs, 18 tiles, slower
      {6, {33, 2, 64, 128, 512}, "mma99-h32"},    // 66 query rows (s_q = 2): 132 CTAs
      {6, {48, 2, 64, 128, 512}, "mma99-h32"},    // flash-c4-mtp b = 48: 192 CTAs
      {6, {50, 2, 64, 128, 512}, "mma-h64"},      // 200 CTAs
      {7, {74, 1, 64, 128, 512}, "mma99-h32"},    // B200: 148 CTAs on 148 SMs
      {7, {111, 1, 64, 128, 512}, "mma99-h32"},   // 222: 1.5 waves of 148
      {7, {112, 1, 64, 128, 512}, "mma-h64"},     // 224
      {7, {37, 1, 128, 128, 1024}, "mma99-h32"},  // 148
      {7, {38, 1, 128, 128, 1024}, "mma-h64"},    // 152 CTAs of 18-tile rows
  };
  for (const Case& test_case : cases) {
    const SimulatedDevice& simulated = kDevices[test_case.device_index];
    const DecodeShape& shape = test_case.shape;
    const std::string label = std::string(simulated.name) + " b=" + std::to_string(shape.batch) +
                              " s_q=" + std::to_string(shape.seq_q) +
                              " h=" + std::to_string(shape.num_heads) +
                              " extra=" + std::to_string(shape.extra_topk);
    const detail::KernelChoice choice = detail::choose_decode_kernel(shape, device_info(simulated));
    EXPECT_STREQ(detail::decode_kernel_name(choice.kernel), test_case.kernel) << label;
  }
}

// The small-call threshold (kSmallCallTileWork) sits between the calls it was measured on (v45, H200):
// pro-c4 at b = 2 (288 tile-work) is faster on 16-head blocks than on sm90-h64, at b = 3 (432) and b = 4
// (576) it is not: those take the wide block's kernel, which at up to 4 rows of 128 heads is the 32-head one
// (v69), from 5 rows sm90-h64. At b = 2 the narrow call's 16-head CTAs would walk 160 entries each, so since
// v71 it runs the 32-head kernel (96 entries a CTA; 9.7 % faster).
TEST(KernelChoice, SmallCallThresholdSitsBetweenItsMeasuredCalls) {
  const detail::CudaDeviceInfo hopper = device_info(kDevices[5]);
  const struct {
    int32_t batch;
    const char* kernel;
    int head_block;
  } cases[] = {{1, "mma99-h16", 16},
               {2, "mma99-h32", 32},
               {3, "mma99-h32", 32},
               {4, "mma99-h32", 32},
               {5, "sm90-h64", 64}};
  for (const auto& test_case : cases) {
    const DecodeShape shape{test_case.batch, 1, 128, 128, 1024};  // pro-c4
    const detail::KernelChoice choice = detail::choose_decode_kernel(shape, hopper);
    EXPECT_STREQ(detail::decode_kernel_name(choice.kernel), test_case.kernel)
        << "pro-c4 b=" << test_case.batch;
    EXPECT_EQ(choice.head_block, test_case.head_block) << "pro-c4 b=" << test_case.batch;
    EXPECT_EQ(detail::decode::head_block_for(128, test_case.batch, 18) == detail::decode::kWideHeadBlock,
              test_case.batch > 2)
        << "pro-c4 b=" << test_case.batch << ": the small-call threshold";
  }
}

TEST(KernelChoice, PinsKernelHeadBlockAndSaneSplitsPerDevice) {
  for (const SimulatedDevice& device : kDevices) {
    const detail::CudaDeviceInfo info = device_info(device);
    for (const NamedShape& named : kShapes) {
      for (int32_t batch : {1, 8, 64}) {
        const DecodeShape shape{batch, named.seq_q, named.num_heads, named.topk, named.extra_topk};
        const std::string label = std::string(device.name) + " " + named.name + " b=" + std::to_string(batch);
        const detail::KernelChoice choice = detail::choose_decode_kernel(shape, info);
        const int64_t rows = static_cast<int64_t>(batch) * named.seq_q;
        const int total_tiles = (named.topk + 63) / 64 + (named.extra_topk + 63) / 64;
        const bool wide = detail::decode::head_block_for(named.num_heads, rows, total_tiles) == 64;
        // On Hopper the 8-row flash-c4 and flash-c128-64k calls and the 16-row flash-c4-mtp call (at most
        // 160 row-tiles) take the 32-head kernel (FewRowWideCallsRunTheCompactKernelOnHopper above).
        // So do flash-swa's 64 rows (2 tiles: 128 32-head CTAs fit one wave, OneWaveFewTileCalls... below).
        // On the RTX 3090 (82 SMs) pro-c4's one row would walk 128 entries a 16-head CTA, and the 32-head
        // kernel's schedule 64 (LongNarrowCallsRunTheCompactWideKernel below).
        const bool long_narrow_ctas = !wide && std::string(device.name) == "RTX 3090" &&
                                      std::string(named.name) == "pro-c4" && batch == 1;
        // Where the portable kernel is the wide choice (no sm_90a kernel), the calls whose 32-head CTAs fit
        // one wave (or 1.5 on rows of <= 10 tiles) take the 32-head kernel: here every wide call but pro-c4,
        // pro-c128-1m and flash-c4-mtp (s_q = 2) at b = 64.
        const bool one_wave_without_sm90 =
            wide && std::string(device.wide_kernel) == "mma-h64" && compact_ctas_fit(shape, device.sm_count);
        const bool few_row_compact =
            (device.sm90_kernel && wide && named.num_heads == 64 &&
             ((batch == 8 && total_tiles == 10) || (batch == 64 && total_tiles == 2))) ||
            long_narrow_ctas || one_wave_without_sm90;
        EXPECT_STREQ(detail::decode_kernel_name(choice.kernel),
                     few_row_compact ? "mma99-h32" : (wide ? device.wide_kernel : device.narrow_kernel))
            << label;
        EXPECT_EQ(choice.head_block, few_row_compact ? 32 : (wide ? device.wide_head_block : 16)) << label;
        EXPECT_LE(choice.shared_bytes, device.max_shared_bytes)
            << label << ": a launch could not get its memory";

        const detail::SplitSchedule schedule = detail::plan_cuda_decode_splits(shape, info, choice, 0);
        const int64_t ctas = rows * ((named.num_heads + choice.head_block - 1) / choice.head_block);
        std::printf("[kernel_choice] %-52s %-10s head_block=%-3d ctas=%-5lld splits=%-3d tiles/split=%d\n",
                    label.c_str(), detail::decode_kernel_name(choice.kernel), choice.head_block,
                    static_cast<long long>(ctas), schedule.num_splits, schedule.tiles_per_split);
        EXPECT_EQ(schedule.head_block, choice.head_block) << label;
        // 64-entry schedule tiles, or half tiles for the 99 KB-class kernels' small calls (one wave).
        const bool compact = choice.kernel == detail::DecodeKernel::kCompactHeads16 ||
                             choice.kernel == detail::DecodeKernel::kCompactHeads32;
        ASSERT_TRUE(schedule.tile_tokens == 64 || (compact && schedule.tile_tokens == 32)) << label;
        const int schedule_tiles = total_tiles * 64 / schedule.tile_tokens;
        EXPECT_EQ(schedule.total_tiles, schedule_tiles) << label;
        EXPECT_GE(schedule.num_splits, 1) << label;
        EXPECT_GE(schedule.num_splits * schedule.tiles_per_split, schedule_tiles) << label;
        EXPECT_LT((schedule.num_splits - 1) * schedule.tiles_per_split, schedule_tiles)
            << label << ": empty split";
        if (schedule.tile_tokens == 32) {
          EXPECT_LE(ctas * schedule.num_splits, device.sm_count) << label;
          EXPECT_LE(schedule.num_splits, 32) << label;  // the combine's one-batch limit, kMaxOneBatchSplits
        }
        // Sane: a grid that leaves most SMs idle splits its rows, and a split never costs more waves of
        // tile work than the unsplit grid: waves x (tiles per split + 1 fixed tile) (schedule.cpp's model).
        if (ctas * 4 <= device.sm_count && total_tiles >= 2) EXPECT_GT(schedule.num_splits, 1) << label;
        const auto waves = [&](int64_t grid) { return (grid + device.sm_count - 1) / device.sm_count; };
        const double tiles_per_split = schedule.tiles_per_split * schedule.tile_tokens / 64.0;
        if (schedule.body_rows > 0) {
          // The body and tail split: the body's CTAs fill whole waves, in fewer splits than the tail's.
          const int64_t head_blocks = ctas / rows;
          const int64_t body_ctas = schedule.body_rows * head_blocks * schedule.body_splits;
          // Whole waves, as nearly as whole rows allow: fewer idle SMs than a body row has CTAs.
          EXPECT_LT(waves(body_ctas) * device.sm_count - body_ctas, head_blocks * schedule.body_splits)
              << label;
          EXPECT_LT(schedule.body_rows, rows) << label;
          EXPECT_LT(schedule.body_splits, schedule.num_splits) << label;
          EXPECT_EQ(schedule.tile_tokens, 64) << label;
          EXPECT_GE(schedule.body_splits * schedule.body_tiles_per_split, schedule_tiles) << label;
          EXPECT_LT((schedule.body_splits - 1) * schedule.body_tiles_per_split, schedule_tiles)
              << label << ": empty body split";
          EXPECT_FALSE(schedule.cluster_combine) << label;
          EXPECT_LE(static_cast<double>(waves(body_ctas)) * (schedule.body_tiles_per_split + 1) +
                        static_cast<double>(
                            waves((ctas - schedule.body_rows * head_blocks) * schedule.num_splits)) *
                            (tiles_per_split + 1),
                    static_cast<double>(waves(ctas) * (total_tiles + 1)))
              << label;
        } else {
          EXPECT_LE(static_cast<double>(waves(ctas * schedule.num_splits)) * (tiles_per_split + 1),
                    static_cast<double>(waves(ctas) * (total_tiles + 1)))
              << label;
        }
      }
    }
  }
}

// A sm_90a call whose combine has at most one block per SM reads its splits serially in each block, so
// the schedule charges each split (schedule.cpp, v46): pro-c128-1m at b = 1 (128 heads, 130 tiles) takes 44
// splits of 3 tiles on an H200 (measured 30.2 us against 33.3 for the 65 of 2 picked before); at b = 2 the
// combine has 256 blocks and the count is the throughput model's.
TEST(KernelChoice, FewCombineBlocksChargeEachSplit) {
  const detail::CudaDeviceInfo hopper = device_info(kDevices[5]);
  const struct {
    int32_t batch;
    int splits, tiles_per_split;
  } cases[] = {{1, 44, 3}, {2, 33, 4}};
  for (const auto& test_case : cases) {
    const DecodeShape shape{test_case.batch, 1, 128, 128, 8192};  // pro-c128-1m
    const detail::KernelChoice choice = detail::choose_decode_kernel(shape, hopper);
    ASSERT_STREQ(detail::decode_kernel_name(choice.kernel), "sm90-h64");
    const detail::SplitSchedule schedule = detail::plan_cuda_decode_splits(shape, hopper, choice, 0);
    EXPECT_EQ(schedule.num_splits, test_case.splits) << "pro-c128-1m b=" << test_case.batch;
    EXPECT_EQ(schedule.tiles_per_split, test_case.tiles_per_split) << "pro-c128-1m b=" << test_case.batch;
  }
}

// Small calls of the 99 KB-class kernels split 32-entry half tiles when the 64-entry schedule is one wave
// and half tiles give each split less work, still in one wave and in at most 32 splits (schedule.cpp): the
// DSv4-Flash step's layers at b = 1, context 8192 (SWA: 2 tiles; C4: 2 + 8; C128: 2 + 1) and pro-c4 at b = 1.
TEST(KernelChoice, SmallCompactCallsSplitHalfTiles) {
  struct Expected {
    int splits, tiles_per_split, tile_tokens;
  };
  struct Case {
    const char* name;
    DecodeShape shape;
    Expected pro6000, h200;  // 188 and 132 SMs
  };
  const Case cases[] = {
      // 4 head blocks of 16: 16 CTAs of one half tile
      {"flash-swa b=1", {1, 1, 64, 128, 0}, {4, 1, 32}, {4, 1, 32}},
      // 4 head blocks: 20 splits of one half tile (within the 32-split cap since the grouped combine)
      {"flash-c4 b=1", {1, 1, 64, 128, 512}, {20, 1, 32}, {20, 1, 32}},
      {"flash-c128 b=1", {1, 1, 64, 128, 64}, {6, 1, 32}, {6, 1, 32}},
      // 8 head blocks: 188 SMs take 18 splits of one 64-entry tile (half tiles: 23 splits of 2, no
      // shorter); 132 take 9 of two, and 16 splits of half tiles fit one wave: 12 splits of 3
      {"pro-c4 b=1", {1, 1, 128, 128, 1024}, {18, 1, 64}, {12, 3, 32}},
      // 96 entries: the second tile's last half would be empty in every row: 64-entry tiles
      {"h=64 topk=96 b=1", {1, 1, 64, 96, 0}, {2, 1, 64}, {2, 1, 64}},
  };
  for (const int device_index : {0, 5}) {  // RTX PRO 6000, H100/H200
    const detail::CudaDeviceInfo info = device_info(kDevices[device_index]);
    for (const Case& test_case : cases) {
      const std::string label = std::string(kDevices[device_index].name) + " " + test_case.name;
      const Expected& expected = device_index == 0 ? test_case.pro6000 : test_case.h200;
      const detail::KernelChoice choice = detail::choose_decode_kernel(test_case.shape, info);
      const detail::SplitSchedule schedule =
          detail::plan_cuda_decode_splits(test_case.shape, info, choice, 0);
      EXPECT_EQ(schedule.num_splits, expected.splits) << label;
      EXPECT_EQ(schedule.tiles_per_split, expected.tiles_per_split) << label;
      EXPECT_EQ(schedule.tile_tokens, expected.tile_tokens) << label;
      // A forced count keeps 64-entry tiles.
      EXPECT_EQ(detail::plan_cuda_decode_splits(test_case.shape, info, choice, 2).tile_tokens, 64) << label;
    }
    // Not a small call: 64-entry tiles whatever the split count.
    const DecodeShape large{64, 1, 64, 128, 512};
    EXPECT_EQ(detail::plan_cuda_decode_splits(large, info, detail::choose_decode_kernel(large, info), 0)
                  .tile_tokens,
              64);
  }
}

// The 99 KB-class kernels' combine is charged 0.59 of a 64-entry tile besides its bytes (schedule.cpp, v70),
// which sets three boundaries measured on the H200 (same-process A/Bs, 2026-12-04), uncapped and capped
// alike: flash-swa splits half tiles up to 16 rows and runs unsplit from 17 (2 splits of one tile before:
// 2-8 % slower); flash-c4-tp4 at 80..88 rows runs unsplit (3 splits of 4 tiles before: 2-3 % slower; 79
// rows keep 5 splits of 2 in 3 waves);
// flash-c4-tp8 there keeps its 3 splits (2-3 % faster than unsplit).
TEST(KernelChoice, CompactCombineChargeSetsTheMeasuredSplitBoundaries) {
  struct Case {
    const char* name;
    DecodeShape shape;
    int splits, tile_tokens;
  };
  const Case cases[] = {
      {"flash-swa b=16", {16, 1, 64, 128, 0}, 4, 32},
      {"flash-swa b=17", {17, 1, 64, 128, 0}, 1, 64},
      {"flash-swa b=33", {33, 1, 64, 128, 0}, 1, 64},
      {"flash-swa b=34", {34, 1, 64, 128, 0}, 1, 64},
      {"flash-c4-tp4 b=79", {79, 1, 16, 128, 512}, 5, 64},
      {"flash-c4-tp4 b=80", {80, 1, 16, 128, 512}, 1, 64},
      {"flash-c4-tp4 b=88", {88, 1, 16, 128, 512}, 1, 64},
      {"flash-c4-tp8 b=80", {80, 1, 8, 128, 512}, 3, 64},
      {"flash-c4-tp8 b=88", {88, 1, 8, 128, 512}, 3, 64},
  };
  for (const int64_t cap : {int64_t{0}, int64_t{101376}}) {
    detail::CudaDeviceInfo hopper = device_info(kDevices[5]);
    detail::apply_planner_overrides(cap, 0, &hopper);
    for (const Case& test_case : cases) {
      const std::string label = std::string(test_case.name) + " cap=" + std::to_string(cap);
      const detail::KernelChoice choice = detail::choose_decode_kernel(test_case.shape, hopper);
      ASSERT_TRUE(choice.kernel == detail::DecodeKernel::kCompactHeads32 ||
                  choice.kernel == detail::DecodeKernel::kCompactHeads16)
          << label << ": " << detail::decode_kernel_name(choice.kernel);
      const detail::SplitSchedule schedule =
          detail::plan_cuda_decode_splits(test_case.shape, hopper, choice, 0);
      EXPECT_EQ(schedule.num_splits, test_case.splits) << label;
      EXPECT_EQ(schedule.tile_tokens, test_case.tile_tokens) << label;
    }
  }
}

// Narrow (small) calls of more than 16 heads whose 16-head CTAs would walk at least two 64-entry tiles run
// the 32-head kernel when its schedule gives a CTA fewer entries (kernel_choice.cpp, v71; H200 A/Bs, capped
// and uncapped alike). Boundaries on both sides on the H200, uncapped and capped: flash-c4 at 4 rows (96
// entries a 16-head CTA) stays, at 5..7 moves (128 / 128 / 160 -> 64 / 64 / 96); flash-c4-mtp at 2 / 3
// batch rows (4 / 6 query rows); pro-c4 at 1 / 2 rows (96 stays; 160 -> 96); the DSv4-Flash C128 layer at
// context 8192 (3 tiles) stays at 8 rows (64 entries); 16 heads never move (no narrower block to leave).
TEST(KernelChoice, LongNarrowCallsRunTheCompactWideKernel) {
  struct Case {
    const char* name;
    DecodeShape shape;
    const char* kernel;
  };
  const Case cases[] = {
      {"flash-c4 b=4", {4, 1, 64, 128, 512}, "mma99-h16"},
      {"flash-c4 b=5", {5, 1, 64, 128, 512}, "mma99-h32"},
      {"flash-c4 b=7", {7, 1, 64, 128, 512}, "mma99-h32"},
      {"flash-c4-mtp b=2", {2, 2, 64, 128, 512}, "mma99-h16"},
      {"flash-c4-mtp b=3", {3, 2, 64, 128, 512}, "mma99-h32"},
      {"pro-c4 b=1", {1, 1, 128, 128, 1024}, "mma99-h16"},
      {"pro-c4 b=2", {2, 1, 128, 128, 1024}, "mma99-h32"},
      {"C128 at 8192, b=8", {8, 1, 64, 128, 64}, "mma99-h16"},
      {"flash-c4-tp4 b=7", {7, 1, 16, 128, 512}, "mma99-h16"},
  };
  for (const int64_t cap : {int64_t{0}, int64_t{101376}}) {
    detail::CudaDeviceInfo hopper = device_info(kDevices[5]);
    detail::apply_planner_overrides(cap, 0, &hopper);
    for (const Case& test_case : cases) {
      const std::string label = std::string(test_case.name) + " cap=" + std::to_string(cap);
      const detail::KernelChoice choice = detail::choose_decode_kernel(test_case.shape, hopper);
      EXPECT_STREQ(detail::decode_kernel_name(choice.kernel), test_case.kernel) << label;
      const int rows = test_case.shape.batch * test_case.shape.seq_q;
      const int tiles = (test_case.shape.topk + 63) / 64 + (test_case.shape.extra_topk + 63) / 64;
      EXPECT_EQ(detail::decode::head_block_for(test_case.shape.num_heads, rows, tiles),
                detail::decode::kNarrowHeadBlock)
          << label << ": a narrow (small) call";
    }
  }
}

// The kernel rules that compare how far a CTA walks (v71's narrow rule, v69e's one-wave rule) compare the
// longest CTA of a schedule: with a body and tail split, the body's. flash-c4 at 7 rows planned for 6 or 12
// SMs (options.sm_count on an H200, uncapped and capped): the 32-head kernel's schedule runs 6 rows unsplit
// (640 entries a CTA) and the last row in 3 or 5 short splits; the 16-head kernel's CTAs walk 640 entries
// too (unsplit at 6 SMs; the same body at 12), so the 32-head kernel walks no less and the call stays on
// the 16-head kernel. Comparing the 32-head tail's CTAs (256 entries against 640 at 6 SMs, 128 against the
// 16-head tail's 256 at 12) moved it to mma99-h32.
TEST(KernelChoice, NarrowCallRuleComparesTheLongestCta) {
  const DecodeShape flash_c4_b7{7, 1, 64, 128, 512};
  for (const int64_t cap : {int64_t{0}, int64_t{101376}}) {
    for (const int sms : {6, 12}) {
      detail::CudaDeviceInfo device = device_info(kDevices[5]);
      detail::apply_planner_overrides(cap, sms, &device);
      const std::string label = "flash-c4 b=7 sms=" + std::to_string(sms) + " cap=" + std::to_string(cap);
      const detail::KernelChoice compact_wide{
          detail::DecodeKernel::kCompactHeads32, 32,
          static_cast<int64_t>(detail::decode::CompactConfigHeads32::kSharedBytes)};
      const detail::KernelChoice compact_narrow{
          detail::DecodeKernel::kCompactHeads16, 16,
          static_cast<int64_t>(detail::decode::CompactConfigHeads16::kSharedBytes)};
      const detail::SplitSchedule wide =
          detail::plan_cuda_decode_splits(flash_c4_b7, device, compact_wide, 0);
      const detail::SplitSchedule narrow =
          detail::plan_cuda_decode_splits(flash_c4_b7, device, compact_narrow, 0);
      std::printf(
          "[kernel_choice] %s: mma99-h32 body %d x %d of %d, tail %d of %d; mma99-h16 body %d x %d "
          "of %d, tail %d of %d\n",
          label.c_str(), wide.body_rows, wide.body_splits, wide.body_tiles_per_split, wide.num_splits,
          wide.tiles_per_split, narrow.body_rows, narrow.body_splits, narrow.body_tiles_per_split,
          narrow.num_splits, narrow.tiles_per_split);
      // The 32-head schedule has an unsplit body of 10 tiles and a tail of shorter splits.
      ASSERT_EQ(wide.body_rows, 6) << label;
      ASSERT_EQ(wide.body_tiles_per_split, 10) << label;
      ASSERT_LT(wide.tiles_per_split, 10) << label;
      EXPECT_STREQ(detail::decode_kernel_name(detail::choose_decode_kernel(flash_c4_b7, device).kernel),
                   "mma99-h16")
          << label;
    }
  }
}

// v73's tail splits at the rows its A/B measured (docs/perf.md, "v73 and v74 measured"; H200, 2026-12-05),
// on the H200 description: the unsplit rows fill whole waves, the rest run in short splits after them; the
// named batches keep uniform plans.
TEST(KernelChoice, TailSplitPlansOfTheMeasuredCliffs) {
  struct Case {
    const char* name;
    DecodeShape shape;
    bool capped;
    int unsplit_rows, splits, tiles_per_split;
  };
  const Case cases[] = {
      // 134 unsplit CTAs on 132 SMs: 66 rows unsplit, the last row's 2 head blocks in 18 splits of one tile
      {"pro-c4 b=67", {67, 1, 128, 128, 1024}, false, 66, 18, 1},
      {"pro-c4 b=80", {80, 1, 128, 128, 1024}, false, 66, 4, 5},
      {"pro-c4 b=99", {99, 1, 128, 128, 1024}, false, 66, 2, 9},
      {"pro-c128-1m b=67", {67, 1, 128, 128, 8192}, false, 66, 44, 3},
      {"flash-c4-mtp b=67", {67, 2, 64, 128, 512}, false, 132, 10, 1},
      {"capped flash-c4 b=67", {67, 1, 64, 128, 512}, true, 66, 10, 1},
      {"capped pro-c4 b=34", {34, 1, 128, 128, 1024}, true, 33, 18, 1},
      {"capped pro-c4 b=100", {100, 1, 128, 128, 1024}, true, 99, 18, 1},
      {"pro-c4 b=64", {64, 1, 128, 128, 1024}, false, 0, 0, 0},
      {"pro-c4 b=128", {128, 1, 128, 128, 1024}, false, 0, 0, 0},
      {"flash-c4 b=128", {128, 1, 64, 128, 512}, false, 0, 0, 0},
      {"capped flash-c4 b=64", {64, 1, 64, 128, 512}, true, 0, 0, 0},
      {"capped pro-c4 b=128", {128, 1, 128, 128, 1024}, true, 0, 0, 0},
  };
  for (const Case& test_case : cases) {
    const detail::SplitSchedule schedule = h200_schedule(test_case.shape, test_case.capped);
    EXPECT_EQ(schedule.body_rows, test_case.unsplit_rows) << test_case.name;
    if (test_case.unsplit_rows == 0) continue;
    EXPECT_EQ(schedule.body_splits, 1) << test_case.name;
    EXPECT_EQ(schedule.num_splits, test_case.splits) << test_case.name;
    EXPECT_EQ(schedule.tiles_per_split, test_case.tiles_per_split) << test_case.name;
    EXPECT_FALSE(schedule.cluster_combine) << test_case.name;
  }
}

// The 32-head block runs its register-gather build where the longest CTA of the call's schedule walks at
// least kRegisterGatherMinTiles 32-entry compute tiles, or kRegisterGatherMinSplitTiles in a split call
// (register_gather_pays, config_compact.h; v117-v119, docs/perf.md): where it measured faster, and not the
// sliding-window calls of short unsplit CTAs or one-tile splits, where it measured slower.
TEST(KernelChoice, RegisterGatherRunsWhereTheLongestCtaWalksManyTiles) {
  const auto pays = [](int splits, int tiles_per_split, int tile_tokens, int body_rows = 0,
                       int body_tiles_per_split = 0, int body_splits = 1) {
    detail::SplitSchedule schedule;
    schedule.num_splits = splits;
    schedule.tiles_per_split = tiles_per_split;
    schedule.tile_tokens = tile_tokens;
    schedule.body_rows = body_rows;
    schedule.body_splits = body_splits;
    schedule.body_tiles_per_split = body_tiles_per_split;
    return detail::decode::register_gather_pays(schedule);
  };
  static_assert(
      detail::decode::kRegisterGatherMinTiles == 5 && detail::decode::kRegisterGatherMinSplitTiles == 3,
      "the cases below sit at 5 compute tiles unsplit and 3 split");
  EXPECT_TRUE(pays(1, 3, 64));             // unsplit: 3 list tiles = 6 compute tiles
  EXPECT_FALSE(pays(1, 2, 64));            // 4
  EXPECT_TRUE(pays(1, 5, 32));             // 5 compute tiles
  EXPECT_FALSE(pays(1, 4, 32));            // 4
  EXPECT_TRUE(pays(2, 3, 32));             // split: 3
  EXPECT_FALSE(pays(4, 2, 32));            // 2
  EXPECT_TRUE(pays(2, 2, 64));             // 2 list tiles = 4 compute tiles, split
  EXPECT_TRUE(pays(1, 1, 64, 5, 10, 1));   // the unsplit body's CTAs walk 10 list tiles
  EXPECT_TRUE(pays(2, 1, 64, 5, 2, 1));    // a tail of 2 splits makes the call split: 4 compute tiles
  EXPECT_FALSE(pays(1, 1, 64, 0, 10, 1));  // no body: its tile count is not the call's
  EXPECT_FALSE(pays(1, 0, 64));            // an empty schedule

  struct Case {
    const char* name;
    DecodeShape shape;
    bool pays;
  };
  const Case cases[] = {
      {"capped flash-c4 b=64", {64, 1, 64, 128, 512}, true},
      {"capped flash-c4 b=128", {128, 1, 64, 128, 512}, true},
      {"capped pro-c4 b=64", {64, 1, 128, 128, 1024}, true},
      {"capped pro-c4 b=128", {128, 1, 128, 128, 1024}, true},
      {"capped flash-c4 b=8", {8, 1, 64, 128, 512}, true},    // 7 splits of 3 compute tiles
      {"capped flash-c4 b=16", {16, 1, 64, 128, 512}, true},  // 4 splits of 5
      {"capped pro-c4 b=4", {4, 1, 128, 128, 1024}, true},    // 8 splits of 5
      {"capped flash-swa b=16", {16, 1, 64, 128, 0}, false},  // 4 splits of 1
      {"capped flash-swa b=32", {32, 1, 64, 128, 0}, false},  // unsplit, 4
      {"capped flash-swa b=64", {64, 1, 64, 128, 0}, false},
      {"capped flash-swa b=128", {128, 1, 64, 128, 0}, false},
  };
  detail::CudaDeviceInfo h200_capped = device_info(kDevices[5]);
  h200_capped.max_shared_bytes = 101376;
  for (const Case& test_case : cases) {
    const detail::KernelChoice choice = detail::choose_decode_kernel(test_case.shape, h200_capped);
    ASSERT_EQ(choice.kernel, detail::DecodeKernel::kCompactHeads32) << test_case.name;
    const detail::SplitSchedule schedule =
        detail::plan_cuda_decode_splits(test_case.shape, h200_capped, choice, 0);
    EXPECT_EQ(detail::decode::register_gather_pays(schedule), test_case.pays)
        << test_case.name << ": " << schedule.num_splits << " splits of " << schedule.tiles_per_split
        << " tiles of " << schedule.tile_tokens;
  }
}

// The sm_90a kernel's splits combine in its clusters or through the combine kernel, whichever the model
// charges less (schedule.cpp, v72): the combine launch 1.1 tiles, clusters queued behind the resident ones
// 1.25x their waves. Measured boundaries on the H200 (same-process A/Bs, 2026-12-04): flash-c4 keeps 4-CTA
// clusters at 23 / 24 rows and 3-CTA ones at 32, and runs unsplit at 70 (3-CTA clusters queued: 18 %
// slower); pro-c4 takes 6-CTA clusters at 7 rows (9 splits through the combine kernel: 6 % slower), 3 splits
// through the combine kernel at 21 (2-CTA clusters: 12 % slower), unsplit at 40 (queued 4-CTA clusters:
// 23 % slower), and keeps queued 3-CTA clusters at 36 (0.3 % faster than unsplit); pro-c128-1m at 48 rows
// takes 4 splits through the combine kernel (queued 8-CTA clusters: 24 % slower).
TEST(KernelChoice, Sm90CombineInClustersOnlyWhereTheyPay) {
  struct Case {
    const char* name;
    DecodeShape shape;
    int splits;
    bool cluster_combine;
    int body_rows = 0;  // > 0: a body and tail split (BodyAndTailSplitWhereWavesWouldBePartEmpty)
    int body_splits = 1;
  };
  const Case cases[] = {
      {"flash-c4 b=23", {23, 1, 64, 128, 512}, 4, true},
      {"flash-c4 b=24", {24, 1, 64, 128, 512}, 4, true},
      {"flash-c4 b=32", {32, 1, 64, 128, 512}, 3, true},
      {"flash-c4 b=70", {70, 1, 64, 128, 512}, 1, false},
      {"pro-c4 b=7", {7, 1, 128, 128, 1024}, 6, true},
      {"pro-c4 b=21", {21, 1, 128, 128, 1024}, 3, false},
      {"pro-c4 b=36", {36, 1, 128, 128, 1024}, 3, true},
      {"pro-c4 b=37", {37, 1, 128, 128, 1024}, 3, true},  // queued 3-CTA clusters
      {"pro-c4 b=40", {40, 1, 128, 128, 1024}, 1, false},
      // The pro-c128-1m rows pinned here before the body and tail split, which the model now charges at
      // least a tenth less than their uniform plans (4 splits through the combine kernel at 48, queued 3-
      // and 4-CTA clusters at 36 and 45); pro-c4's split bodies (9 tiles a split) measured slower (v74)
      {"pro-c128-1m b=48", {48, 1, 128, 128, 8192}, 4, false, 33, 2},
      {"pro-c128-1m b=36", {36, 1, 128, 128, 8192}, 22, false, 33, 2},
      {"pro-c128-1m b=45", {45, 1, 128, 128, 8192}, 5, false, 33, 2},
      // v72b: queued clusters charged ~3 tiles a queued wave, not 1.25x every wave (measured -1.8 % in
      // 2-CTA clusters)
      {"pro-c128-1m b=90", {90, 1, 128, 128, 8192}, 2, true},
  };
  const detail::CudaDeviceInfo hopper = device_info(kDevices[5]);
  for (const Case& test_case : cases) {
    const detail::KernelChoice choice = detail::choose_decode_kernel(test_case.shape, hopper);
    ASSERT_STREQ(detail::decode_kernel_name(choice.kernel), "sm90-h64") << test_case.name;
    const detail::SplitSchedule schedule =
        detail::plan_cuda_decode_splits(test_case.shape, hopper, choice, 0);
    EXPECT_EQ(schedule.num_splits, test_case.splits) << test_case.name;
    EXPECT_EQ(schedule.cluster_combine, test_case.cluster_combine) << test_case.name;
    EXPECT_EQ(schedule.body_rows, test_case.body_rows) << test_case.name;
    EXPECT_EQ(schedule.body_splits, test_case.body_splits) << test_case.name;
  }
  // Other kernels never combine in clusters, and a forced count keeps the choice the model prices.
  const DecodeShape pro_c4_b40{40, 1, 128, 128, 1024};
  detail::CudaDeviceInfo capped = hopper;
  capped.max_shared_bytes = 101376;
  const detail::KernelChoice compact = detail::choose_decode_kernel(pro_c4_b40, capped);
  EXPECT_FALSE(detail::plan_cuda_decode_splits(pro_c4_b40, capped, compact, 4).cluster_combine);
  const detail::KernelChoice sm90 = detail::choose_decode_kernel(pro_c4_b40, hopper);
  const detail::SplitSchedule forced = detail::plan_cuda_decode_splits(pro_c4_b40, hopper, sm90, 4);
  EXPECT_EQ(forced.num_splits, 4);
  EXPECT_TRUE(forced.cluster_combine);  // queued clusters still charged less than the combine kernel
  EXPECT_FALSE(detail::plan_cuda_decode_splits(pro_c4_b40, hopper, sm90, 9).cluster_combine);  // > 8 splits
}

// The body and tail split (schedule.cpp) where a uniform plan leaves a wave part-empty, on an H200
// (132 SMs), with and without the 99 KB cap: the body's rows fill whole waves in few splits (none: the tail
// split of pro-c4 at 67..99 rows, 66 rows unsplit), the tail's rows follow in more. The named rows of the
// issues (b = 32, 64, 128) keep their uniform plans.
TEST(KernelChoice, BodyAndTailSplitWhereWavesWouldBePartEmpty) {
  struct Case {
    const char* name;
    DecodeShape shape;
    bool capped;
    int splits, tiles_per_split;
    int body_rows, body_splits, body_tiles_per_split;  // body_rows 0: uniform
  };
  const Case cases[] = {
      // pro-c4 at 34 / 35 rows: 68 / 70 unsplit CTAs; bodies of 3 splits of 6 tiles or 2 of 9 (v74's plans)
      // measured 7-18 % slower than these 3-CTA clusters, so a split body needs 16+ tiles a split
      {"pro-c4 b=34", {34, 1, 128, 128, 1024}, false, 3, 6, 0, 1, 0},
      {"pro-c4 b=35", {35, 1, 128, 128, 1024}, false, 3, 6, 0, 1, 0},
      {"pro-c128-1m b=35", {35, 1, 128, 128, 8192}, false, 33, 4, 33, 2, 65},
      // pro-c4 at 67 rows: 134 unsplit CTAs on 132 SMs; 66 rows unsplit, the last row's 2 head blocks in
      // 18 splits of one tile (v73's tail split)
      {"pro-c4 b=67", {67, 1, 128, 128, 1024}, false, 18, 1, 66, 1, 18},
      {"pro-c4 b=99", {99, 1, 128, 128, 1024}, false, 2, 9, 66, 1, 18},
      {"pro-c128-1m b=17", {17, 1, 128, 128, 8192}, false, 11, 12, 11, 6, 22},
      {"pro-c128-1m b=40", {40, 1, 128, 128, 8192}, false, 9, 15, 33, 2, 65},
      {"pro-c128-1m b=100", {100, 1, 128, 128, 8192}, false, 44, 3, 99, 2, 65},
      {"flash-c4-mtp b=67", {67, 2, 64, 128, 512}, false, 10, 1, 132, 1, 10},
      {"capped pro-c128-1m b=17", {17, 1, 128, 128, 8192}, true, 33, 4, 16, 2, 65},
      {"capped flash-c4 b=67", {67, 1, 64, 128, 512}, true, 10, 1, 66, 1, 10},
      {"capped pro-c4 b=34", {34, 1, 128, 128, 1024}, true, 18, 1, 33, 1, 18},
      // uniform
      {"flash-c4 b=32", {32, 1, 64, 128, 512}, false, 3, 4, 0, 1, 0},
      {"flash-c4 b=64", {64, 1, 64, 128, 512}, false, 2, 5, 0, 1, 0},
      {"flash-c4 b=128", {128, 1, 64, 128, 512}, false, 1, 10, 0, 1, 0},
      {"pro-c4 b=32", {32, 1, 128, 128, 1024}, false, 2, 9, 0, 1, 0},
      {"pro-c4 b=64", {64, 1, 128, 128, 1024}, false, 1, 18, 0, 1, 0},
      {"pro-c4 b=128", {128, 1, 128, 128, 1024}, false, 1, 18, 0, 1, 0},
      {"pro-c128-1m b=32", {32, 1, 128, 128, 8192}, false, 2, 65, 0, 1, 0},
      {"pro-c128-1m b=128", {128, 1, 128, 128, 8192}, false, 1, 130, 0, 1, 0},
      {"capped pro-c4 b=64", {64, 1, 128, 128, 1024}, true, 1, 18, 0, 1, 0},
      {"capped flash-c4 b=128", {128, 1, 64, 128, 512}, true, 1, 10, 0, 1, 0},
  };
  for (const Case& test_case : cases) {
    const detail::SplitSchedule schedule = h200_schedule(test_case.shape, test_case.capped);
    EXPECT_EQ(schedule.num_splits, test_case.splits) << test_case.name;
    EXPECT_EQ(schedule.tiles_per_split, test_case.tiles_per_split) << test_case.name;
    EXPECT_EQ(schedule.body_rows, test_case.body_rows) << test_case.name;
    if (test_case.body_rows == 0) continue;
    EXPECT_EQ(schedule.body_splits, test_case.body_splits) << test_case.name;
    EXPECT_EQ(schedule.body_tiles_per_split, test_case.body_tiles_per_split) << test_case.name;
    EXPECT_FALSE(schedule.cluster_combine) << test_case.name;
  }
  // A forced split count is uniform.
  detail::CudaDeviceInfo hopper = device_info(kDevices[5]);
  const DecodeShape pro_c4_b35{35, 1, 128, 128, 1024};
  const detail::KernelChoice choice = detail::choose_decode_kernel(pro_c4_b35, hopper);
  EXPECT_EQ(detail::plan_cuda_decode_splits(pro_c4_b35, hopper, choice, 2).body_rows, 0);
}

// The body and tail plans the GPU tests (tests/cuda/test_decode_cuda.cpp) are written for, on the H200
// description at their planned SM counts (options.sm_count): the portable kernel's with the sm_90a kernel
// off (DecodeCuda.BodyAndTailSplitRowsMatchReferenceOnThePortableKernel), where a body of 17-tile splits also
// runs split;
// the chained calls' and the graph replay's (ChainedCallsSeeThePreviousCallsWrites,
// BodyAndTailGraphReplaySeesNewInputs), uncapped and capped, one with a split body (two combine launches).
TEST(KernelChoice, BodyAndTailPlansOfTheGpuTests) {
  struct Case {
    const char* test;
    DecodeShape shape;
    int device_index;  // into kDevices
    int64_t cap;
    int sms;
    const char* kernel;
    int splits, tiles_per_split, body_rows, body_splits, body_tiles_per_split;
  };
  const Case cases[] = {
      {"portable", {5, 1, 128, 128, 512}, 6, 0, 4, "mma-h64", 2, 5, 4, 1, 10},
      {"portable", {5, 1, 128, 128, 512}, 6, 0, 7, "mma-h64", 2, 5, 3, 1, 10},
      {"portable", {5, 1, 128, 128, 512}, 6, 0, 8, "mma-h64", 4, 3, 4, 1, 10},
      {"portable", {5, 1, 128, 128, 512}, 6, 0, 9, "mma-h64", 5, 2, 4, 1, 10},
      {"portable", {3, 3, 64, 128, 512}, 6, 0, 4, "mma-h64", 4, 3, 8, 1, 10},
      {"portable", {3, 3, 64, 128, 512}, 6, 0, 6, "mma-h64", 2, 5, 6, 1, 10},
      {"portable", {3, 3, 64, 128, 2048}, 6, 0, 16, "mma-h64", 12, 3, 8, 2, 17},
      {"portable", {3, 3, 64, 128, 2048}, 6, 0, 17, "mma-h64", 17, 2, 8, 2, 17},
      {"portable, capped", {3, 3, 64, 128, 2048}, 6, 101376, 17, "mma99-h32", 9, 4, 8, 1, 34},
      {"portable", {23, 1, 64, 128, 2048}, 6, 0, 44, "mma-h64", 34, 1, 22, 2, 17},
      {"chained / graph", {5, 1, 128, 128, 512}, 5, 0, 8, "sm90-h64", 4, 3, 4, 1, 10},
      {"chained / graph", {5, 1, 128, 128, 512}, 5, 101376, 8, "mma99-h32", 2, 5, 4, 1, 10},
      {"chained / graph", {23, 1, 64, 128, 2048}, 5, 0, 44, "sm90-h64", 34, 1, 22, 2, 17},
      {"chained / graph", {23, 1, 64, 128, 2048}, 5, 101376, 88, "mma99-h32", 34, 1, 22, 2, 17},
  };
  for (const Case& test_case : cases) {
    detail::CudaDeviceInfo device = device_info(kDevices[test_case.device_index]);
    detail::apply_planner_overrides(test_case.cap, test_case.sms, &device);
    const DecodeShape& shape = test_case.shape;
    const std::string label =
        std::string(test_case.test) + " b=" + std::to_string(shape.batch) +
        " s_q=" + std::to_string(shape.seq_q) + " h=" + std::to_string(shape.num_heads) +
        " extra=" + std::to_string(shape.extra_topk) + " sms=" + std::to_string(test_case.sms) +
        " cap=" + std::to_string(test_case.cap);
    const detail::KernelChoice choice = detail::choose_decode_kernel(shape, device);
    const detail::SplitSchedule schedule = detail::plan_cuda_decode_splits(shape, device, choice, 0);
    std::printf("[kernel_choice] %s: %s body %d x %d of %d, tail %d of %d\n", label.c_str(),
                detail::decode_kernel_name(choice.kernel), schedule.body_rows, schedule.body_splits,
                schedule.body_tiles_per_split, schedule.num_splits, schedule.tiles_per_split);
    EXPECT_STREQ(detail::decode_kernel_name(choice.kernel), test_case.kernel) << label;
    EXPECT_EQ(schedule.num_splits, test_case.splits) << label;
    EXPECT_EQ(schedule.tiles_per_split, test_case.tiles_per_split) << label;
    EXPECT_EQ(schedule.body_rows, test_case.body_rows) << label;
    EXPECT_EQ(schedule.body_splits, test_case.body_splits) << label;
    EXPECT_EQ(schedule.body_tiles_per_split, test_case.body_tiles_per_split) << label;
  }
}

TEST(KernelChoice, NothingFitsBelowTheSmallestKernel) {
  detail::CudaDeviceInfo info = device_info(kDevices[0]);
  const DecodeShape wide{64, 1, 64, 128, 512};
  const DecodeShape narrow{1, 1, 8, 128, 512};
  info.max_shared_bytes = detail::smallest_decode_kernel_bytes(wide);
  EXPECT_EQ(detail::choose_decode_kernel(wide, info).kernel, detail::DecodeKernel::kCompactHeads32);
  info.max_shared_bytes -= 1;
  EXPECT_EQ(detail::choose_decode_kernel(wide, info).kernel, detail::DecodeKernel::kNone);
  info.max_shared_bytes = detail::smallest_decode_kernel_bytes(narrow) - 1;
  EXPECT_EQ(detail::choose_decode_kernel(narrow, info).kernel, detail::DecodeKernel::kNone);
  info.max_shared_bytes = 48 * 1024;  // no opt-in beyond the default 48 KB
  EXPECT_EQ(detail::choose_decode_kernel(narrow, info).kernel, detail::DecodeKernel::kNone);
}

// The sm_90a kernel runs only from an sm_90 binary compiled from compute_90a code: not from an sm_80 cubin
// (its trap body), not on other devices, and not from the binary the driver JIT-compiles out of an older
// target's PTX (binaryVersion 90, ptxVersion 80: the trap body again; found by scripts/gpu-check-ptx).
TEST(KernelChoice, Sm90KernelOnlyFromCompute90aCode) {
  using detail::decode::sm90_kernel_binary_usable;
  EXPECT_TRUE(sm90_kernel_binary_usable(9, 0, 90, 90));   // sm_90a cubin, or compute_90a PTX JIT-compiled
  EXPECT_FALSE(sm90_kernel_binary_usable(9, 0, 90, 80));  // 80-virtual PTX JIT-compiled on an H100/H200
  EXPECT_FALSE(sm90_kernel_binary_usable(9, 0, 80, 80));  // sm_80 cubin loaded on an H100/H200
  EXPECT_FALSE(sm90_kernel_binary_usable(8, 0, 80, 80));  // A100
  EXPECT_FALSE(sm90_kernel_binary_usable(12, 0, 120, 120));
  EXPECT_FALSE(sm90_kernel_binary_usable(10, 0, 100, 90));  // compute_90a code cannot load there
}

// Programmatic launches only for kernels that wait for the previous kernel: an image compiled from sm_90+
// code (ptxVersion >= 90) on an sm_90+ device. JIT-compiled older PTX has no griddepcontrol.wait.
TEST(ProgrammaticLaunch, OnlyForKernelsThatWaitForThePreviousKernel) {
  using detail::programmatic_launch_usable;
  EXPECT_TRUE(programmatic_launch_usable(9, 90));    // sm_90a cubin on an H100 / H200
  EXPECT_TRUE(programmatic_launch_usable(12, 120));  // sm_120 cubin on an RTX PRO 6000
  EXPECT_TRUE(programmatic_launch_usable(13, 120));  // compute_120 PTX JIT-compiled on a newer GPU
  EXPECT_FALSE(programmatic_launch_usable(10, 89));  // B200: the default build's compute_89 PTX
  EXPECT_FALSE(programmatic_launch_usable(9, 89));   // the same PTX under CUDA_FORCE_PTX_JIT=1 on Hopper
  EXPECT_FALSE(programmatic_launch_usable(9, 80));   // an 80-virtual build on Hopper
  EXPECT_FALSE(programmatic_launch_usable(8, 89));   // L40S: no PDL before sm_90
  EXPECT_FALSE(programmatic_launch_usable(9, 0));    // the kernel-image query failed
}

// Every named shape at b = 1 / 8 / 64 / 128 gets the same kernel, head block and split schedule on
// `planned` as on `real`.
void expect_same_plans(const detail::CudaDeviceInfo& planned, const detail::CudaDeviceInfo& real,
                       const std::string& label) {
  for (const NamedShape& named : kShapes) {
    for (int32_t batch : {1, 8, 64, 128}) {
      const DecodeShape shape{batch, named.seq_q, named.num_heads, named.topk, named.extra_topk};
      const std::string where = label + " " + named.name + " b=" + std::to_string(batch);
      const detail::KernelChoice a = detail::choose_decode_kernel(shape, planned);
      const detail::KernelChoice b = detail::choose_decode_kernel(shape, real);
      EXPECT_EQ(a.kernel, b.kernel) << where;
      EXPECT_EQ(a.head_block, b.head_block) << where;
      const detail::SplitSchedule sa = detail::plan_cuda_decode_splits(shape, planned, a, 0);
      const detail::SplitSchedule sb = detail::plan_cuda_decode_splits(shape, real, b, 0);
      EXPECT_EQ(sa.num_splits, sb.num_splits) << where;
      EXPECT_EQ(sa.tiles_per_split, sb.tiles_per_split) << where;
      EXPECT_EQ(sa.tile_tokens, sb.tile_tokens) << where;
      EXPECT_EQ(sa.body_rows, sb.body_rows) << where;
      EXPECT_EQ(sa.body_splits, sb.body_splits) << where;
    }
  }
}

// A capped Hopper device picks exactly what a 99 KB device with the same SM count picks.
TEST(KernelChoice, CappedHopperMatchesThe99KbClass) {
  detail::CudaDeviceInfo capped = device_info(kDevices[5]);
  capped.max_shared_bytes = 101376;
  detail::CudaDeviceInfo sm120 = device_info(kDevices[0]);
  sm120.sm_count = capped.sm_count;
  expect_same_plans(capped, sm120, "capped Hopper vs sm_120 at 132 SMs");
}

// The two planner overrides together turn a Hopper device description into any 99 KB-class GPU's: the
// kernel, head block and split schedule of every named shape are that GPU's.
TEST(KernelChoice, CapAndSmCountPlanHopperAsEvery99KbGpu) {
  for (const SimulatedDevice& target : kDevices) {
    if (target.max_shared_bytes != 101376) continue;
    detail::CudaDeviceInfo hopper = device_info(kDevices[5]);
    detail::apply_planner_overrides(101376, target.sm_count, &hopper);
    EXPECT_EQ(hopper.sm_count, target.sm_count) << target.name;
    EXPECT_EQ(hopper.max_shared_bytes, 101376) << target.name;
    expect_same_plans(hopper, device_info(target), target.name);
  }
  // Without overrides nothing changes; a cap above the device's limit does not raise it.
  detail::CudaDeviceInfo untouched = device_info(kDevices[5]);
  detail::apply_planner_overrides(0, 0, &untouched);
  EXPECT_EQ(untouched.sm_count, 132);
  EXPECT_EQ(untouched.max_shared_bytes, 232448);
  detail::apply_planner_overrides(int64_t{1} << 20, 0, &untouched);
  EXPECT_EQ(untouched.max_shared_bytes, 232448);
}

// The extremes of the planned SM count still give schedules that cover every tile with whole splits, on
// a capped and an uncapped Hopper description: 1 SM (everything in waves) and kMaxPlannedSmCount.
TEST(KernelChoice, ExtremePlannedSmCountsStillCoverTheTiles) {
  for (const int64_t cap : {int64_t{0}, int64_t{101376}}) {
    for (const int sms : {1, 2, detail::kMaxPlannedSmCount}) {
      detail::CudaDeviceInfo device = device_info(kDevices[5]);
      detail::apply_planner_overrides(cap, sms, &device);
      for (const NamedShape& named : kShapes) {
        for (int32_t batch : {1, 8, 64, 128}) {
          const DecodeShape shape{batch, named.seq_q, named.num_heads, named.topk, named.extra_topk};
          const std::string label = std::string(named.name) + " b=" + std::to_string(batch) +
                                    " sms=" + std::to_string(sms) + " cap=" + std::to_string(cap);
          const detail::KernelChoice kernel = detail::choose_decode_kernel(shape, device);
          ASSERT_NE(kernel.kernel, detail::DecodeKernel::kNone) << label;
          const detail::SplitSchedule schedule = detail::plan_cuda_decode_splits(shape, device, kernel, 0);
          EXPECT_GE(schedule.num_splits, 1) << label;
          EXPECT_GE(schedule.tiles_per_split, 1) << label;
          EXPECT_GE(int64_t{schedule.num_splits} * schedule.tiles_per_split, schedule.total_tiles) << label;
          // No split is empty: the last one starts before the end of the list.
          EXPECT_LT(int64_t{schedule.num_splits - 1} * schedule.tiles_per_split, schedule.total_tiles)
              << label;
          if (sms == 1) EXPECT_EQ(schedule.num_splits, 1) << label;  // one SM: splitting only adds partials
        }
      }
    }
  }
}

TEST(KernelChoice, PlannedSmCountFromOptionThenEnvironment) {
  int sm_count = -1;
  ASSERT_TRUE(detail::planned_sm_count(0, nullptr, &sm_count).ok());
  EXPECT_EQ(sm_count, 0);
  ASSERT_TRUE(detail::planned_sm_count(0, "", &sm_count).ok());
  EXPECT_EQ(sm_count, 0);
  ASSERT_TRUE(detail::planned_sm_count(0, "188", &sm_count).ok());
  EXPECT_EQ(sm_count, 188);
  ASSERT_TRUE(detail::planned_sm_count(170, "188", &sm_count).ok());  // the field wins
  EXPECT_EQ(sm_count, 170);
  ASSERT_TRUE(detail::planned_sm_count(0, "1024", &sm_count).ok());
  EXPECT_EQ(sm_count, detail::kMaxPlannedSmCount);
  for (int32_t bad : {-1, detail::kMaxPlannedSmCount + 1}) {
    const Status status = detail::planned_sm_count(bad, nullptr, &sm_count);
    EXPECT_EQ(status.code(), SMLA_STATUS_INVALID_ARGUMENT) << bad;
    EXPECT_NE(status.message().find("options.sm_count must be in 0..1024"), std::string::npos)
        << status.message();
  }
  for (const char* bad : {"abc", "188 SMs", "-5", "0", "1e2", "1025", "99999999999999999999"}) {
    const Status status = detail::planned_sm_count(0, bad, &sm_count);
    EXPECT_EQ(status.code(), SMLA_STATUS_INVALID_ARGUMENT) << bad;
    EXPECT_NE(status.message().find(std::string("SMLA_SM_COUNT='") + bad + "'"), std::string::npos)
        << status.message();
    EXPECT_NE(status.message().find("up to 1024"), std::string::npos) << status.message();
  }
}

TEST(KernelChoice, SharedMemoryCapFromOptionThenEnvironment) {
  int64_t cap = -1;
  ASSERT_TRUE(detail::shared_memory_cap(0, nullptr, &cap).ok());
  EXPECT_EQ(cap, 0);
  ASSERT_TRUE(detail::shared_memory_cap(0, "", &cap).ok());
  EXPECT_EQ(cap, 0);
  ASSERT_TRUE(detail::shared_memory_cap(0, "101376", &cap).ok());
  EXPECT_EQ(cap, 101376);
  ASSERT_TRUE(detail::shared_memory_cap(65536, "101376", &cap).ok());  // the field wins
  EXPECT_EQ(cap, 65536);
  const Status negative = detail::shared_memory_cap(-1, nullptr, &cap);
  EXPECT_EQ(negative.code(), SMLA_STATUS_INVALID_ARGUMENT);
  EXPECT_NE(negative.message().find("options.max_shared_bytes"), std::string::npos) << negative.message();
  for (const char* bad : {"abc", "99KB", "-5", "0", "1e5", "99999999999"}) {
    const Status status = detail::shared_memory_cap(0, bad, &cap);
    EXPECT_EQ(status.code(), SMLA_STATUS_INVALID_ARGUMENT) << bad;
    EXPECT_NE(status.message().find("SMLA_MAX_SHARED_BYTES"), std::string::npos) << status.message();
  }
}

// make_plan reads the variables and rejects a bad value by name, on any machine (checked before the device).
TEST(KernelChoice, MakePlanRejectsBadOverridesByName) {
  const DecodeShape shape{1, 1, 8, 64, 0};
  PlanOptions options = default_plan_options();
  options.backend = SMLA_BACKEND_CPU;
  options.max_shared_bytes = -3;
  Plan plan;
  Status status = make_plan(shape, options, &plan);
  EXPECT_EQ(status.code(), SMLA_STATUS_INVALID_ARGUMENT);
  EXPECT_NE(status.message().find("options.max_shared_bytes"), std::string::npos) << status.message();
  options.max_shared_bytes = 0;
  ASSERT_EQ(setenv("SMLA_MAX_SHARED_BYTES", "lots", 1), 0);
  status = make_plan(shape, options, &plan);
  unsetenv("SMLA_MAX_SHARED_BYTES");
  EXPECT_EQ(status.code(), SMLA_STATUS_INVALID_ARGUMENT);
  EXPECT_NE(status.message().find("SMLA_MAX_SHARED_BYTES='lots'"), std::string::npos) << status.message();
  ASSERT_TRUE(make_plan(shape, options, &plan).ok());
  EXPECT_STREQ(plan.kernel_name(), "cpu");
  EXPECT_EQ(plan.max_shared_bytes(), 0);

  options.sm_count = -2;
  status = make_plan(shape, options, &plan);
  EXPECT_EQ(status.code(), SMLA_STATUS_INVALID_ARGUMENT);
  EXPECT_NE(status.message().find("options.sm_count"), std::string::npos) << status.message();
  options.sm_count = 0;
  ASSERT_EQ(setenv("SMLA_SM_COUNT", "many", 1), 0);
  status = make_plan(shape, options, &plan);
  EXPECT_EQ(status.code(), SMLA_STATUS_INVALID_ARGUMENT);
  EXPECT_NE(status.message().find("SMLA_SM_COUNT='many'"), std::string::npos) << status.message();
  options.sm_count = 188;  // a valid field wins over a bad variable
  ASSERT_TRUE(make_plan(shape, options, &plan).ok());
  unsetenv("SMLA_SM_COUNT");
  EXPECT_EQ(plan.sm_count(), 0);  // the CPU backend schedules no SMs
}

// Every schedule the planner makes is one the launchers and kernels can run (the rules make_plan checks
// and split_grid.h assumes), over random shapes on every simulated device and on random planned SM counts
// and caps: whole splits that cover the tiles with none empty; half tiles only on the 99 KB-class kernels,
// in one wave and within the one-batch combine; clusters only on the sm_90a kernel, 2..kMaxClusterSplits
// of them, never with a body; a body of whole rows before a split tail, in fewer splits that cover the
// tiles; a grid that blockIdx.x can count.
TEST(KernelChoice, EveryPlannedScheduleIsOneTheKernelsCanRun) {
  uint64_t state = 0x5eed5eedULL;
  const auto next = [&](int64_t low, int64_t high) {  // uniform in [low, high], a fixed sequence
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return low + static_cast<int64_t>((state >> 33) % static_cast<uint64_t>(high - low + 1));
  };
  int body_plans = 0, split_body_plans = 0;
  for (int i = 0; i < 6000; ++i) {
    detail::CudaDeviceInfo device = device_info(kDevices[next(0, std::size(kDevices) - 1)]);
    if (next(0, 2) == 0) detail::apply_planner_overrides(next(0, 1) ? 101376 : 0, next(1, 300), &device);
    const DecodeShape shape{static_cast<int32_t>(next(0, 3) ? next(1, 160) : next(1, 1024)),
                            static_cast<int32_t>(next(1, 4)), static_cast<int32_t>(next(1, 128)),
                            static_cast<int32_t>(next(0, 1) ? 128 : next(1, 2048)),
                            static_cast<int32_t>(next(0, 2) ? 64 * next(0, 130) : next(0, 16384))};
    const detail::KernelChoice kernel = detail::choose_decode_kernel(shape, device);
    if (kernel.kernel == detail::DecodeKernel::kNone) continue;
    const detail::SplitSchedule schedule = detail::plan_cuda_decode_splits(shape, device, kernel, 0);
    const std::string label =
        "b=" + std::to_string(shape.batch) + " s_q=" + std::to_string(shape.seq_q) +
        " h=" + std::to_string(shape.num_heads) + " topk=" + std::to_string(shape.topk) +
        " extra=" + std::to_string(shape.extra_topk) + " sms=" + std::to_string(device.sm_count) +
        " shared=" + std::to_string(device.max_shared_bytes) + " " +
        detail::decode_kernel_name(kernel.kernel);
    const int64_t rows = int64_t{shape.batch} * shape.seq_q;
    const int64_t head_blocks = detail::head_block_count(shape.num_heads, kernel.head_block);
    const int total_tiles = schedule.total_tiles;
    ASSERT_GE(total_tiles, 1) << label;
    ASSERT_GE(schedule.num_splits, 1) << label;
    ASSERT_GE(schedule.tiles_per_split, 1) << label;
    EXPECT_GE(int64_t{schedule.num_splits} * schedule.tiles_per_split, total_tiles) << label;
    EXPECT_LT(int64_t{schedule.num_splits - 1} * schedule.tiles_per_split, total_tiles) << label;
    const bool compact = kernel.kernel == detail::DecodeKernel::kCompactHeads16 ||
                         kernel.kernel == detail::DecodeKernel::kCompactHeads32;
    if (schedule.tile_tokens == 32) {
      EXPECT_TRUE(compact) << label;
      EXPECT_LE(rows * head_blocks * schedule.num_splits, device.sm_count) << label;
      EXPECT_LE(schedule.num_splits, detail::kMaxOneBatchSplits) << label;
    } else {
      EXPECT_EQ(schedule.tile_tokens, 64) << label;
    }
    if (schedule.cluster_combine) {
      EXPECT_EQ(kernel.kernel, detail::DecodeKernel::kSm90Heads64) << label;
      EXPECT_TRUE(detail::decode::sm90_combines_in_cluster(schedule.num_splits)) << label;
    }
    int64_t body_ctas = 0;
    if (schedule.body_rows > 0) {
      ++body_plans;
      if (schedule.body_splits > 1) ++split_body_plans;
      EXPECT_LT(schedule.body_rows, rows) << label;
      EXPECT_FALSE(schedule.cluster_combine) << label;
      EXPECT_EQ(schedule.tile_tokens, 64) << label;
      EXPECT_GE(schedule.body_splits, 1) << label;
      EXPECT_LT(schedule.body_splits, schedule.num_splits) << label;
      EXPECT_GE(int64_t{schedule.body_splits} * schedule.body_tiles_per_split, total_tiles) << label;
      EXPECT_LT(int64_t{schedule.body_splits - 1} * schedule.body_tiles_per_split, total_tiles) << label;
      body_ctas = schedule.body_rows * head_blocks * schedule.body_splits;
      // The body fills whole waves, as nearly as whole rows allow.
      EXPECT_LT((body_ctas + device.sm_count - 1) / device.sm_count * device.sm_count - body_ctas,
                head_blocks * schedule.body_splits)
          << label;
    } else {
      EXPECT_EQ(schedule.body_rows, 0) << label;
    }
    const int64_t ctas =
        detail::decode_grid_ctas(rows, head_blocks, schedule.body_rows,
                                 schedule.body_rows > 0 ? schedule.body_splits : 1, schedule.num_splits);
    EXPECT_GE(ctas, body_ctas) << label;
    EXPECT_LE(ctas, int64_t{0x7fffffff}) << label;
  }
  // The sample reaches the body and tail split, with split bodies too.
  std::printf("[kernel_choice] random schedules: %d with a body and tail, %d of them with a split body\n",
              body_plans, split_body_plans);
  EXPECT_GE(body_plans, 20);
  EXPECT_GE(split_body_plans, 5);
}

// The grid's head blocks (launchers) and the kernels' decoding of blockIdx.x use this one count: every head
// of a call falls in exactly one block, and no block is empty, for every head block the kernels use.
TEST(KernelChoice, HeadBlockCountCoversEveryHeadOnce) {
  for (const int head_block : {8, 16, 32, 64}) {
    for (int heads = 1; heads <= 128; ++heads) {
      const int blocks = detail::head_block_count(heads, head_block);
      EXPECT_GE(blocks * head_block, heads) << heads << " heads, blocks of " << head_block;
      EXPECT_LT((blocks - 1) * head_block, heads) << heads << " heads, blocks of " << head_block;
    }
  }
  EXPECT_EQ(detail::head_block_count(128, 64), 2);
  EXPECT_EQ(detail::head_block_count(64, 32), 2);
  EXPECT_EQ(detail::head_block_count(1, 16), 1);
}

}  // namespace
}  // namespace smla
