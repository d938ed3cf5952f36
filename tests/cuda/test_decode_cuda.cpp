// Tensor-core CUDA backend (SMLA_BACKEND_CUDA) against the float64 CPU reference (spec section 8
// tolerances for bf16-MMA kernels, checked by smla::test::compare_to_reference): a sampled grid of shapes,
// split-count consistency, out-of-range slot ids, CUDA-graph replay with changed indices and lengths, and
// back-to-back calls that read each other's writes.
//
// Every case draws fresh random inputs (seed printed once; SMLA_TEST_SEED replays), fills unused cache
// slots with NaN bytes and poisons out/lse with NaN before each run, so a missing write or a read of an
// unselected slot shows up as a NaN mismatch.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/backend_entry.h"
#include "common/compact32_gather.h"
#include "common/hopper_clusters.h"
#include "common/test_support.h"
#include "cuda/combine/kernel.h"
#include "cuda/common/programmatic_launch.h"
#include "cuda/decode/config.h"
#include "cuda/decode/config_compact.h"
#include "cuda/decode/config_sm90.h"
#include "cuda/decode/kernel.h"
#include "smla/decode.h"

namespace smla::test {
namespace {

// CUDA failures in test helpers become exceptions, which gtest reports as a failure of the test.
void cuda_require(cudaError_t error, const char* what) {
  if (error != cudaSuccess) {
    throw std::runtime_error(std::string(what) + ": " + cudaGetErrorName(error) + ": " +
                             cudaGetErrorString(error));
  }
}
#define CUDA_REQUIRE(expr) cuda_require((expr), #expr)

void status_require(const Status& status, const char* what) {
  if (!status.ok()) throw std::runtime_error(std::string(what) + ": " + status.message());
}

// A device allocation of raw bytes (no copy or move: the tests hold them in place).
class DeviceBytes {
 public:
  DeviceBytes() = default;
  explicit DeviceBytes(size_t bytes) { resize(bytes); }
  DeviceBytes(const DeviceBytes&) = delete;
  DeviceBytes& operator=(const DeviceBytes&) = delete;
  ~DeviceBytes() {
    if (data_ != nullptr) cudaFree(data_);
  }
  void resize(size_t bytes) {
    if (data_ != nullptr) cudaFree(data_);
    data_ = nullptr;
    bytes_ = bytes;
    if (bytes > 0) CUDA_REQUIRE(cudaMalloc(&data_, bytes));
  }
  void upload(const void* host, size_t bytes) {
    if (bytes != bytes_) throw std::runtime_error("upload size differs from the device buffer size");
    if (bytes > 0) CUDA_REQUIRE(cudaMemcpy(data_, host, bytes, cudaMemcpyHostToDevice));
  }
  template <class T>
  void upload(const std::vector<T>& host) {
    upload(host.data(), host.size() * sizeof(T));
  }
  template <class T>
  std::vector<T> download() const {
    std::vector<T> host(bytes_ / sizeof(T));
    if (bytes_ > 0) CUDA_REQUIRE(cudaMemcpy(host.data(), data_, bytes_, cudaMemcpyDeviceToHost));
    return host;
  }
  template <class T = void>
  T* get() const {
    return static_cast<T*>(data_);
  }
  size_t bytes() const { return bytes_; }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

template <class T>
size_t vector_bytes(const std::vector<T>& v) {
  return v.size() * sizeof(T);
}

// Device copies of a problem's inputs and outputs. `upload` may be called again with another problem of
// the same config (same sizes): the pointers stay, which is what a captured graph needs.
struct DeviceProblem {
  DeviceBytes q, main_pool, indices, topk_length, extra_pool, extra_indices, extra_topk_length, sink;
  DeviceBytes out, lse;

  explicit DeviceProblem(const DecodeProblem& problem) {
    q.resize(vector_bytes(problem.q));
    main_pool.resize(static_cast<size_t>(problem.main_cache.pool_bytes()));
    indices.resize(vector_bytes(problem.indices));
    topk_length.resize(vector_bytes(problem.topk_length));
    if (problem.shape.extra_topk > 0)
      extra_pool.resize(static_cast<size_t>(problem.extra_cache.pool_bytes()));
    extra_indices.resize(vector_bytes(problem.extra_indices));
    extra_topk_length.resize(vector_bytes(problem.extra_topk_length));
    sink.resize(vector_bytes(problem.sink));
    const size_t rows_heads =
        static_cast<size_t>(problem.shape.batch) * problem.shape.seq_q * problem.shape.num_heads;
    out.resize(rows_heads * kHeadDim * sizeof(uint16_t));
    lse.resize(rows_heads * sizeof(float));
    upload(problem);
  }

  // Every cache byte goes over, NaN-filled unused slots included.
  void upload(const DecodeProblem& problem) {
    q.upload(problem.q);
    main_pool.upload(problem.main_cache.layout.data, static_cast<size_t>(problem.main_cache.pool_bytes()));
    indices.upload(problem.indices);
    topk_length.upload(problem.topk_length);
    if (problem.shape.extra_topk > 0) {
      extra_pool.upload(problem.extra_cache.layout.data,
                        static_cast<size_t>(problem.extra_cache.pool_bytes()));
    }
    extra_indices.upload(problem.extra_indices);
    extra_topk_length.upload(problem.extra_topk_length);
    sink.upload(problem.sink);
  }

  void poison_outputs(cudaStream_t stream) {
    CUDA_REQUIRE(cudaMemsetAsync(out.get(), 0xFF, out.bytes(), stream));
    CUDA_REQUIRE(cudaMemsetAsync(lse.get(), 0xFF, lse.bytes(), stream));
  }

  DecodeArgs args(const DecodeProblem& problem) const {
    DecodeArgs args = problem.host_args(nullptr, nullptr);  // contiguous strides and layouts
    args.q = q.get();
    args.main_cache.data = main_pool.get();
    args.indices = indices.get<int32_t>();
    args.topk_length = problem.topk_length.empty() ? nullptr : topk_length.get<int32_t>();
    if (problem.shape.extra_topk > 0) {
      args.extra_cache.data = extra_pool.get();
      args.extra_indices = extra_indices.get<int32_t>();
      args.extra_topk_length = problem.extra_topk_length.empty() ? nullptr : extra_topk_length.get<int32_t>();
    }
    args.attn_sink = problem.sink.empty() ? nullptr : sink.get<float>();
    args.out = out.get();
    args.lse = lse.get<float>();
    return args;
  }
};

struct DeviceResult {
  std::vector<uint16_t> out;
  std::vector<float> lse;
  uint32_t error_count = 0;
};

// A result's out and lse, copied back from the device buffers that hold them.
DeviceResult result_of(const DeviceBytes& out, const DeviceBytes& lse) {
  DeviceResult result;
  result.out = out.download<uint16_t>();
  result.lse = lse.download<float>();
  return result;
}

// A non-blocking stream and the graph captured on it, destroyed with the object (also when a check throws).
struct GraphStream {
  cudaStream_t stream = nullptr;
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t graph_exec = nullptr;

  GraphStream() { CUDA_REQUIRE(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking)); }
  GraphStream(const GraphStream&) = delete;
  GraphStream& operator=(const GraphStream&) = delete;
  ~GraphStream() {
    if (graph_exec != nullptr) cudaGraphExecDestroy(graph_exec);
    if (graph != nullptr) cudaGraphDestroy(graph);
    cudaStreamDestroy(stream);
  }

  // Captures what `enqueue` issues on the stream and instantiates it (once per object).
  template <class Enqueue>
  void capture(Enqueue&& enqueue) {
    CUDA_REQUIRE(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
    enqueue();
    CUDA_REQUIRE(cudaStreamEndCapture(stream, &graph));
    CUDA_REQUIRE(cudaGraphInstantiate(&graph_exec, graph, 0));
  }

  // Runs `enqueue` on the stream eagerly, or (graph_mode) once eagerly, so the per-device kernel setup
  // happens outside the capture, then captured and launched as a graph; waits for the stream either way.
  template <class Enqueue>
  void run(Enqueue&& enqueue, bool graph_mode) {
    enqueue();
    if (graph_mode) {
      CUDA_REQUIRE(cudaStreamSynchronize(stream));
      capture(enqueue);
      CUDA_REQUIRE(cudaGraphLaunch(graph_exec, stream));
    }
    CUDA_REQUIRE(cudaStreamSynchronize(stream));
  }
};

// `sm_count` > 0 plans for that many SMs (options.sm_count; every launch still runs on this GPU).
Plan make_cuda_plan(const DecodeShape& shape, int num_splits, int32_t max_shared_bytes = 0,
                    int32_t sm_count = 0) {
  PlanOptions options = default_plan_options();
  options.backend = SMLA_BACKEND_CUDA;
  options.num_splits = num_splits;
  options.max_shared_bytes = max_shared_bytes;
  options.sm_count = sm_count;
  Plan plan;
  status_require(make_plan(shape, options, &plan), "make_plan(cuda)");
  return plan;
}

// Zeroed workspace (its first uint32 is the device error counter), poisoned outputs, one run, sync.
DeviceResult run_on_device(const Plan& plan, const DecodeProblem& problem, DeviceProblem& device) {
  DeviceBytes workspace(plan.workspace_bytes());
  if (workspace.bytes() > 0) CUDA_REQUIRE(cudaMemset(workspace.get(), 0, workspace.bytes()));
  device.poison_outputs(nullptr);
  status_require(run(plan, device.args(problem), workspace.get(), workspace.bytes(), nullptr), "smla::run");
  CUDA_REQUIRE(cudaDeviceSynchronize());
  DeviceResult result = result_of(device.out, device.lse);
  if (workspace.bytes() >= sizeof(uint32_t)) {
    CUDA_REQUIRE(cudaMemcpy(&result.error_count, workspace.get(), sizeof(uint32_t), cudaMemcpyDeviceToHost));
  }
  return result;
}

// A plan's first, eager run before a test captures it in a graph on `stream`: the workspace zeroed (and the
// device synchronized: the capture's non-blocking stream is not ordered after the memset), the outputs
// poisoned, one run outside any capture (it does the one-time per-device kernel setup), then a sync.
void eager_run_before_capture(const Plan& plan, const DecodeProblem& problem, DeviceProblem& device,
                              const DeviceBytes& workspace, cudaStream_t stream) {
  if (workspace.bytes() > 0) CUDA_REQUIRE(cudaMemset(workspace.get(), 0, workspace.bytes()));
  CUDA_REQUIRE(cudaDeviceSynchronize());
  device.poison_outputs(stream);
  status_require(run(plan, device.args(problem), workspace.get(), workspace.bytes(), stream), "eager run");
  CUDA_REQUIRE(cudaStreamSynchronize(stream));
}

// True when two plans launch the same kernels on the same grids: the same kernel, build and split schedule.
bool same_launches(const Plan& a, const Plan& b) {
  return std::string(a.kernel_name()) == b.kernel_name() && a.num_splits() == b.num_splits() &&
         a.tiles_per_split() == b.tiles_per_split() && a.split_tile_tokens() == b.split_tile_tokens() &&
         a.cluster_combine() == b.cluster_combine() && a.body_rows() == b.body_rows() &&
         a.body_splits() == b.body_splits() && a.body_tiles_per_split() == b.body_tiles_per_split() &&
         a.register_gather() == b.register_gather();
}

// A device result viewed as a reference, to compare two kernel results with the same tolerances.
Reference as_reference(const DeviceResult& result, const DecodeShape& shape) {
  Reference reference;
  reference.shape = shape;
  reference.out.resize(result.out.size());
  for (size_t i = 0; i < result.out.size(); ++i) reference.out[i] = bf16_value(result.out[i]);
  reference.lse.assign(result.lse.begin(), result.lse.end());
  return reference;
}

std::string describe(const ProblemConfig& c) {
  char text[320];
  std::snprintf(text, sizeof(text),
                "b=%d s_q=%d h=%d topk=%d(P=%lld pad=%lld) extra=%d(P=%lld pad=%lld) lengths=%s%s sink=%s",
                c.batch, c.seq_q, c.num_heads, c.topk, static_cast<long long>(c.main_page_block_size),
                static_cast<long long>(c.main_stride_pad_bytes), c.extra_topk,
                static_cast<long long>(c.extra_page_block_size),
                static_cast<long long>(c.extra_stride_pad_bytes),
                !c.lengths ? "none" : (c.lengths_per_query ? "[b,s_q]" : "[b]"),
                c.lengths && c.full_lengths ? "(full)" : "", c.sink ? "yes" : "no");
  return text;
}

// Checks one kernel result against an expected one and prints the per-configuration line.
void expect_matches(const Reference& expected, const DeviceResult& actual, const std::string& label) {
  const Comparison comparison = compare_to_reference(expected, actual.out.data(), actual.lse.data());
  std::printf("[decode_cuda] %-110s max_abs=%.3g cos_diff=%.3g lse_err=%.3g %s\n", label.c_str(),
              comparison.max_abs_error, comparison.cosine_difference, comparison.max_lse_error,
              comparison.ok ? "PASS" : "FAIL");
  EXPECT_TRUE(comparison.ok) << label << "\n" << comparison.report;
}

// Empties row 0 of every list (length 0), so the +inf lse / zero out path is always exercised.
void empty_first_row(DecodeProblem& problem) {
  if (!problem.topk_length.empty()) problem.topk_length[0] = 0;
  if (!problem.extra_topk_length.empty()) problem.extra_topk_length[0] = 0;
}

// Empties query row `query_row` of every list: that row alone with [b, s_q] lengths, its whole batch row
// with [b] lengths. The last row is always in a body and tail plan's tail (row 0 is in its body).
void empty_query_row(DecodeProblem& problem, int64_t query_row) {
  const size_t index =
      static_cast<size_t>(problem.config.lengths_per_query ? query_row : query_row / problem.shape.seq_q);
  if (!problem.topk_length.empty()) problem.topk_length.at(index) = 0;
  if (!problem.extra_topk_length.empty()) problem.extra_topk_length.at(index) = 0;
}

// A label's description of a plan's split schedule: the body and tail split's parts when it has a body.
std::string describe_schedule(const Plan& plan) {
  std::string text = std::string(plan.kernel_name()) + " splits=" + std::to_string(plan.num_splits()) + "x" +
                     std::to_string(plan.tiles_per_split());
  if (plan.body_rows() > 0) {
    text += " body_rows=" + std::to_string(plan.body_rows()) +
            " body_splits=" + std::to_string(plan.body_splits()) + "x" +
            std::to_string(plan.body_tiles_per_split());
  }
  return text;
}

// The sampled grid: every listed value of h, s_q, P (main, extra), topk, extra_topk, lengths layout and
// fullness, sinks and b appears at least once, without the full cross product (the float64 reference is
// the slow part).
std::vector<ProblemConfig> grid_configs() {
  std::vector<ProblemConfig> configs;
  {  // smallest: one head, one tile
    ProblemConfig c = test::problem_config(1, 1, 1, 64, 0, 64, 64);
    configs.push_back(c);
  }
  {  // MTP rows, C4-like extra list, per-query lengths
    ProblemConfig c = test::problem_config(1, 3, 8, 128, 512, 256, 64);
    c.lengths_per_query = true;
    configs.push_back(c);
  }
  {  // odd page size with a padded stride, topk not from the model, full lengths
    ProblemConfig c = test::problem_config(4, 1, 16, 576, 0, 61, 64);
    c.main_stride_pad_bytes = 48;
    c.full_lengths = true;
    configs.push_back(c);
  }
  {  // C128-like extra cache (P=2), per-query lengths, padded extra stride
    ProblemConfig c = test::problem_config(4, 3, 32, 128, 1024, 64, 2);
    c.lengths_per_query = true;
    c.extra_stride_pad_bytes = 32;
    configs.push_back(c);
  }
  {  // DSv4-Flash C4 layer at TP 1
    ProblemConfig c = test::problem_config(1, 1, 64, 128, 512, 256, 64);
    configs.push_back(c);
  }
  {  // DSv4-Pro C128 layer at TP 1, no lengths tensors, no sink
    ProblemConfig c = test::problem_config(1, 1, 128, 128, 1024, 256, 2);
    c.lengths = false;
    c.sink = false;
    configs.push_back(c);
  }
  {  // many rows: the planner does not (or barely) split
    ProblemConfig c = test::problem_config(74, 1, 8, 128, 512, 64, 64);
    configs.push_back(c);
  }
  {  // two head blocks with the second one partial, odd P, full per-query lengths
    ProblemConfig c = test::problem_config(1, 3, 100, 128, 0, 61, 64);
    c.lengths_per_query = true;
    c.full_lengths = true;
    configs.push_back(c);
  }
  {  // h = 128 with an extra list of P = 2, both strides padded, duplicates in the lists
    ProblemConfig c = test::problem_config(2, 3, 128, 64, 512, 61, 2);
    c.main_stride_pad_bytes = 16;
    c.extra_stride_pad_bytes = 160;
    c.duplicate_fraction = 0.1;
    configs.push_back(c);
  }
  {  // long lists on both caches, every sink infinite
    ProblemConfig c = test::problem_config(2, 1, 64, 576, 1024, 256, 64);
    c.sink_inf_fraction = 1.0;
    configs.push_back(c);
  }
  {  // a small call with h > 16 runs 16-head blocks; 100 heads leave the last block partial
    ProblemConfig c = test::problem_config(1, 1, 100, 128, 512, 64, 64);
    configs.push_back(c);
  }
  {  // many rows with MTP and per-query lengths, small head count
    ProblemConfig c = test::problem_config(74, 3, 1, 64, 512, 256, 2);
    c.lengths_per_query = true;
    c.pool_slack = 1;  // keeps the P = 2 pool (one page per 2 slots) near 66 MB
    configs.push_back(c);
  }
  return configs;
}

// The split planner is host code: checked here without a device. Invariants: the splits cover every tile,
// none is statically empty, forced counts are clamped to [1, total_tiles] and the head block is 16 exactly
// when h <= 16 or the call is small (see below). The automatic count (132 SMs, one CTA per SM) is
// checked against hand-computed values: the count minimizing waves * (tiles per split + 1) + partials,
// waves = ceil(ctas * splits / 132), partials = (splits > 1) rows * h * splits * 4104 B / 132 / 160 KiB
// tile times, fewest on ties.
TEST(DecodeCudaSchedule, SplitsCoverTilesAndFillTheDevice) {
  detail::CudaDeviceInfo h100;
  h100.ordinal = 0;
  h100.sm_count = 132;
  h100.compute_capability = 90;
  h100.max_shared_bytes = 232448;
  struct Case {
    DecodeShape shape;
    int auto_splits;
    int auto_tile_tokens;    // 32: the half-tile rule (16-head blocks run the 99 KB-class kernel)
    int auto_body_rows = 0;  // > 0: the body and tail split (the rows after these split more)
    int auto_body_splits = 1;
  };
  const Case cases[] = {
      // 16-head blocks: 4 CTAs, 10 tiles: one tile per split (40 CTAs); then 20 half tiles in 20 splits of
      // one (80 CTAs, within the half-tile cap of 32)
      {{1, 1, 64, 128, 512}, 20, 32},
      {{1, 1, 64, 128, 64}, 6, 32},  // 3 tiles: one each, then 6 half tiles in 24 CTAs (a C128 layer)
      // 16-head blocks: 8 CTAs, 18 tiles: 9 splits of 2 (18 of 1: 2 waves); then 16 splits fit one wave:
      // 36 half tiles in 12 splits of 3
      {{1, 1, 128, 128, 1024}, 12, 32},
      // 148 CTAs: 2 waves x 11 = 22, 2 splits: 3 waves x 6 + 3.6 = 21.6; the tail split: 66 rows' 132 CTAs
      // unsplit (11), the other 8 rows' 16 head blocks in 5 splits of 2 tiles (one wave of 80 CTAs: 3) and
      // their combine (21 MB of partials: 6.6) = 20.6
      {{74, 1, 128, 128, 512}, 5, 64, 66},
      // 70 CTAs: 3-CTA clusters partly queued. A body of 33 rows in 2 splits of 9 tiles and a tail of 18
      // splits of one, which the model charged 14.9 against 17.4, ran 1.5-18 % slower at b = 34..43 (v74):
      // split bodies are for rows of 16+ tiles a split (pro-c128-1m's)
      {{35, 1, 128, 128, 1024}, 3, 64},
      // 130 tiles a row: 33 rows in 2 splits of 65 tiles, the other 2 rows' 4 head blocks in more splits
      // (v74 measured -14.4 % at this row)
      {{35, 1, 128, 128, 8192}, 33, 64, 33, 2},
      // One tile in one CTA: two half-tile splits would save half a tile against a combine charged 0.59
      // of a tile for the 99 KB-class kernels (schedule.cpp): unsplit. Two tiles: 4 splits of a half tile.
      {{1, 1, 8, 64, 0}, 1, 64},
      {{1, 1, 8, 128, 0}, 4, 32},
      {{1, 1, 128, 128, 8192}, 65, 64},  // 130 tiles are too much work for 16-head blocks: 65 splits of 2
      // 12 CTAs, 25 tiles: 9 splits of 3 (108 CTAs) beat 13 of 2 (2 waves); then 11 splits fit one wave:
      // 50 half tiles in 10 splits of 5
      {{4, 3, 16, 576, 1024}, 10, 32},
      {{2, 1, 100, 1, 1}, 2, 64},       // 2 tiles: one each (a half tile past each list's one entry: kept)
      {{16, 2, 64, 128, 512}, 4, 64},   // 32 CTAs: 4 splits of 3 tiles fill one wave (5 would need two)
      {{1, 1, 1, 65, 63}, 3, 64},       // 3 tiles: one each (65 entries: an empty last half tile)
      {{64, 1, 32, 128, 512}, 2, 64},   // 64 CTAs: 2 splits of 5 in one wave beat 3 of 4 in two
      {{128, 1, 64, 128, 512}, 1, 64},  // 128 CTAs fill one wave: splitting only adds waves
      {{64, 1, 64, 128, 0}, 1, 64},     // flash-swa: 2 splits = 1 x 2 + 1.55 partial tiles > 1 x 3 unsplit
      {{8, 1, 64, 128, 512}, 10, 64},   // 80 CTAs: 1 x 2 + 1.2 beats 5 splits: 1 x 3 + 0.6
  };
  for (const Case& test_case : cases) {
    const DecodeShape& shape = test_case.shape;
    const int total_tiles = (shape.topk + 63) / 64 + (shape.extra_topk + 63) / 64;
    // 16-head blocks for h <= 16 and for small calls: b * s_q * ceil(h / 64) <= 4 CTAs of 64 heads and
    // b * s_q * ceil(h / 16) * total_tiles <= 256 tiles of 16-head CTAs.
    const int64_t rows = static_cast<int64_t>(shape.batch) * shape.seq_q;
    const bool small_call = rows * ((shape.num_heads + 63) / 64) <= 4 &&
                            rows * ((shape.num_heads + 15) / 16) * total_tiles <= 256;
    const int head_block = shape.num_heads <= 16 || small_call ? 16 : 64;
    // Without the sm_90a kernel, wide calls whose 32-head CTAs fit one wave, or 1.5 on rows of few tiles, run
    // mma99-h32 (kernel_choice.cpp); the schedule model checked here is the portable kernel's, so they are
    // planned on mma-h64 itself.
    detail::KernelChoice kernel = detail::choose_decode_kernel(shape, h100);
    if (head_block == 64 && kernel.kernel == detail::DecodeKernel::kCompactHeads32) {
      kernel = {detail::DecodeKernel::kMmaHeads64, 64,
                static_cast<int64_t>(detail::decode::DecodeConfigHeads64::kSharedBytes)};
    }
    for (int requested : {0, 1, 3, total_tiles, total_tiles + 5, 1000}) {
      const detail::SplitSchedule schedule = detail::plan_cuda_decode_splits(shape, h100, kernel, requested);
      const std::string label =
          "b=" + std::to_string(shape.batch) + " s_q=" + std::to_string(shape.seq_q) +
          " h=" + std::to_string(shape.num_heads) + " topk=" + std::to_string(shape.topk) +
          " extra=" + std::to_string(shape.extra_topk) + " requested=" + std::to_string(requested);
      std::printf("[decode_cuda schedule] %-60s -> splits=%d tiles/split=%d head_block=%d\n", label.c_str(),
                  schedule.num_splits, schedule.tiles_per_split, schedule.head_block);
      // Forced counts split 64-entry tiles; the automatic one may split half tiles.
      const int tile_tokens = requested == 0 ? test_case.auto_tile_tokens : 64;
      const int schedule_tiles = total_tiles * 64 / tile_tokens;
      EXPECT_EQ(schedule.tile_tokens, tile_tokens) << label;
      EXPECT_EQ(schedule.total_tiles, schedule_tiles) << label;
      EXPECT_EQ(schedule.head_block, head_block) << label;
      EXPECT_GE(schedule.num_splits, 1) << label;
      EXPECT_LE(schedule.num_splits, schedule_tiles) << label;
      EXPECT_GE(schedule.num_splits * schedule.tiles_per_split, schedule_tiles) << label;
      EXPECT_LT((schedule.num_splits - 1) * schedule.tiles_per_split, schedule_tiles)
          << label << ": empty split";
      if (requested == 0) {
        EXPECT_EQ(schedule.num_splits, test_case.auto_splits) << label;
        EXPECT_EQ(schedule.body_rows, test_case.auto_body_rows) << label;
        if (test_case.auto_body_rows > 0)
          EXPECT_EQ(schedule.body_splits, test_case.auto_body_splits) << label;
        // Half tiles only for the 99 KB-class kernel, in one wave, in at most kMaxOneBatchSplits splits.
        if (tile_tokens == 32) {
          EXPECT_EQ(head_block, 16) << label;
          EXPECT_LE(rows * ((shape.num_heads + 15) / 16) * schedule.num_splits, h100.sm_count) << label;
          EXPECT_LE(schedule.num_splits, detail::kMaxOneBatchSplits) << label;
        }
      } else {
        EXPECT_LE(schedule.num_splits, std::min(requested, total_tiles)) << label;
        EXPECT_EQ(schedule.body_rows, 0) << label << ": a forced count is uniform";
        if (requested == 1 || requested >= total_tiles) {
          EXPECT_EQ(schedule.num_splits, std::min(requested, total_tiles)) << label;
        }
      }
    }
    detail::CudaDeviceInfo unknown;  // sm_count 0: no basis to split
    EXPECT_EQ(detail::plan_cuda_decode_splits(shape, unknown, detail::choose_decode_kernel(shape, h100), 0)
                  .num_splits,
              1);
  }
}

// The same planner on a device that runs the sm_90a kernel (64-head blocks): clusters of 2..8 CTAs
// combine in the kernel, charged 0.4 tile times, with waves counted against the resident clusters (a
// 132-SM Hopper GPU's measured cudaOccupancyMaxActiveClusters, common/hopper_clusters.h); more splits pay 0.3
// tile times of combine launch plus partials at 56 KiB per SM per tile time, a tenth of that when <= 20 MB of
// partials are written (L2). Small calls and h <= 16 keep 16-head blocks and the serialized kernel's costs
// (cases above).
TEST(DecodeCudaSchedule, WarpSpecializedKernelPlansClustersWithinResidency) {
  detail::CudaDeviceInfo h100;
  h100.ordinal = 0;
  h100.sm_count = 132;
  h100.compute_capability = 90;
  h100.warp_specialized_decode = true;
  h100.max_shared_bytes = 232448;
  test::set_hopper_resident_clusters(&h100);
  struct Case {
    DecodeShape shape;
    int auto_splits, head_block;
  };
  const Case cases[] = {
      // small call: 16-head blocks, half tiles (as without the sm_90a kernel)
      {{1, 1, 64, 128, 512}, 20, 16},
      // 8 rows x 10 tiles: few enough rows for the 32-head 99 KB-class kernel (kernel_choice.cpp), 20 half
      // tiles in 7 splits of 3
      {{8, 1, 64, 128, 512}, 7, 32},
      // 16 rows x 10 tiles = 160: the 32-head kernel (v69), 128 CTAs of 5 tiles
      {{16, 1, 64, 128, 512}, 4, 32},
      {{20, 1, 64, 128, 512}, 5, 64},   // more than 16 rows: sm90-h64, 20 clusters of 5 (<= 22), 2 tiles each
      {{32, 1, 64, 128, 512}, 3, 64},   // 32 clusters of 3 (<= 39): 4 + 1 + 0.4; 4 per cluster: 2 waves
      {{64, 1, 64, 128, 512}, 2, 64},   // 64 clusters of 2: 5 + 1 + 0.4 = 6.4 beats unsplit 11
      {{128, 1, 64, 128, 512}, 1, 64},  // 128 CTAs fill the device: unsplit
      {{8, 1, 128, 128, 1024}, 6, 64},  // 16 clusters of 6 (<= 17): 3 + 1 + 0.4
      {{32, 1, 128, 128, 1024}, 2, 64},  // 64 clusters of 2: 9 + 1 + 0.4
      {{64, 1, 128, 128, 0}, 1, 64},     // flash-swa h=128: 2 tiles, 128 CTAs
  };
  for (const Case& test_case : cases) {
    const detail::SplitSchedule schedule = detail::plan_cuda_decode_splits(
        test_case.shape, h100, detail::choose_decode_kernel(test_case.shape, h100), 0);
    const std::string label = "b=" + std::to_string(test_case.shape.batch) +
                              " h=" + std::to_string(test_case.shape.num_heads) +
                              " extra=" + std::to_string(test_case.shape.extra_topk);
    std::printf("[decode_cuda schedule sm90] %-30s -> splits=%d tiles/split=%d head_block=%d\n",
                label.c_str(), schedule.num_splits, schedule.tiles_per_split, schedule.head_block);
    EXPECT_EQ(schedule.num_splits, test_case.auto_splits) << label;
    EXPECT_EQ(schedule.head_block, test_case.head_block) << label;
  }
}

// On a device that runs the sm_90a kernel the planner knows how many clusters of each size fit at once
// (fewer than sm_count / n: clusters stay inside a GPC).
TEST(DecodeCuda, ClusterOccupancyIsKnownOnHopper) {
  SMLA_SKIP_WITHOUT_CUDA();
  detail::CudaDeviceInfo info;
  ASSERT_TRUE(detail::query_cuda_device(-1, &info).ok());
  if (!info.warp_specialized_decode) GTEST_SKIP() << "the sm_90a kernel does not run on this device";
  for (int size = 2; size <= detail::decode::kMaxClusterSplits; ++size) {
    std::printf("[decode_cuda] %d SMs: at most %d resident clusters of %d CTAs\n", info.sm_count,
                info.max_active_clusters[size], size);
    EXPECT_GT(info.max_active_clusters[size], 0) << size;
    EXPECT_LE(info.max_active_clusters[size] * size, info.sm_count) << size;
  }
}

// A plan may name a device that is not the caller's current one (PlanOptions::device). The queries behind
// it answer for the current device only and are remembered per device, so each runs with the named device
// made current (DeviceScope). Here the last device is asked first while device 0 is current (each test is
// its own process): its answers must equal device 0's where both are the same model, and device 0 must
// still be current afterwards.
TEST(DecodeCuda, DeviceQueriesAnswerForTheNamedDevice) {
  SMLA_SKIP_WITHOUT_CUDA();
  int device_count = 0;
  ASSERT_EQ(cudaGetDeviceCount(&device_count), cudaSuccess);
  if (device_count < 2) GTEST_SKIP() << "needs two CUDA devices (this machine has " << device_count << ")";
  const int other = device_count - 1;
  ASSERT_EQ(cudaSetDevice(0), cudaSuccess);
  detail::CudaDeviceInfo other_info, own_info;
  ASSERT_TRUE(detail::query_cuda_device(other, &other_info).ok());
  int current = -1;
  ASSERT_EQ(cudaGetDevice(&current), cudaSuccess);
  EXPECT_EQ(current, 0) << "query_cuda_device(" << other << ") changed the current device";
  ASSERT_TRUE(detail::query_cuda_device(0, &own_info).ok());
  cudaDeviceProp own_properties = {}, other_properties = {};
  ASSERT_EQ(cudaGetDeviceProperties(&own_properties, 0), cudaSuccess);
  ASSERT_EQ(cudaGetDeviceProperties(&other_properties, other), cudaSuccess);
  if (std::string(own_properties.name) != other_properties.name)
    GTEST_SKIP() << "devices 0 and " << other << " are different models (" << own_properties.name << ", "
                 << other_properties.name << ")";
  EXPECT_EQ(other_info.ordinal, other);
  EXPECT_EQ(other_info.sm_count, own_info.sm_count);
  EXPECT_EQ(other_info.warp_specialized_decode, own_info.warp_specialized_decode);
  for (int size = 2; size <= detail::decode::kMaxClusterSplits; ++size)
    EXPECT_EQ(other_info.max_active_clusters[size], own_info.max_active_clusters[size]) << size;
  std::printf("[decode_cuda] devices 0 and %d (%s): sm_90a kernel %s, %d resident clusters of 2 CTAs\n",
              other, own_properties.name, other_info.warp_specialized_decode ? "on" : "off",
              other_info.max_active_clusters[2]);
}

TEST(DecodeCuda, MatchesReferenceOnSampledGrid) {
  SMLA_SKIP_WITHOUT_CUDA();
  const std::vector<ProblemConfig> configs = grid_configs();
  for (size_t i = 0; i < configs.size(); ++i) {
    Rng rng = Rng::ForTest(100 + i);
    DecodeProblem problem = make_problem(rng, configs[i]);
    if (i % 2 == 0) empty_first_row(problem);
    const Reference reference = reference_decode(problem);
    DeviceProblem device(problem);
    // Unsplit (the kernel writes out/lse) and the planner's choice (usually split + combine).
    for (int requested_splits : {1, 0}) {
      const Plan plan = make_cuda_plan(problem.shape, requested_splits);
      const DeviceResult result = run_on_device(plan, problem, device);
      expect_matches(reference, result,
                     describe(configs[i]) + " splits=" + std::to_string(plan.num_splits()) + "x" +
                         std::to_string(plan.tiles_per_split()) + "x" +
                         std::to_string(plan.split_tile_tokens()));
      EXPECT_EQ(result.error_count, 0u) << "no out-of-range id lies inside a valid prefix";
    }
  }
}

// Every tensor-core kernel this device can run agrees with the reference and with the others on the same
// inputs: the planner's preferred kernel (sm90-h64 on Hopper), the portable mma.sync kernel (the Hopper
// path switched off at plan time) and the 99 KB-class kernel (plans capped at 101,376 bytes of shared
// memory, what an sm_120 / sm_89 / sm_86 device gets), there also mma99-h32's staging and register builds
// each forced. The kernel is fixed when the plan is made.
TEST(DecodeCuda, AllKernelsAgree) {
  SMLA_SKIP_WITHOUT_CUDA();
  int device = 0;
  ASSERT_EQ(cudaGetDevice(&device), cudaSuccess);
  const bool hopper = detail::decode::hopper_decode_available(device);
  std::printf("[decode_cuda] device %d: sm_90a wgmma kernel %s\n", device,
              hopper ? "in use" : "not available");
  int sm_count = 0;
  ASSERT_EQ(cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, device), cudaSuccess);
  struct EnableHopperOnExit {
    ~EnableHopperOnExit() { detail::decode::set_hopper_decode_enabled(true); }
  } restore;
  using detail::decode::Compact32Gather;
  int compact32_builds_run = 0;
  const std::vector<ProblemConfig> configs = grid_configs();
  for (size_t i = 0; i < configs.size(); ++i) {
    Rng rng = Rng::ForTest(150 + i);
    DecodeProblem problem = make_problem(rng, configs[i]);
    if (i % 2 == 1) empty_first_row(problem);
    const Reference reference = reference_decode(problem);
    DeviceProblem device_problem(problem);
    for (int requested_splits : {1, 0}) {
      const Plan preferred_plan = make_cuda_plan(problem.shape, requested_splits);
      detail::decode::set_hopper_decode_enabled(false);
      EXPECT_FALSE(detail::decode::hopper_decode_available(device));
      // Without the sm_90a kernel a call whose 32-head CTAs fit one wave, or 1.5 on rows of few tiles, runs
      // mma99-h32 (kernel_choice.cpp); planned for fewer SMs than two thirds of those CTAs, every call that
      // can run the portable kernel runs it here.
      const int64_t compact_ctas =
          int64_t{problem.shape.batch} * problem.shape.seq_q * ((problem.shape.num_heads + 31) / 32);
      const int32_t portable_sms = compact_ctas > 1 && 2 * compact_ctas <= 3 * int64_t{sm_count}
                                       ? static_cast<int32_t>((2 * compact_ctas - 1) / 3)
                                       : 0;
      const Plan portable_plan = make_cuda_plan(problem.shape, requested_splits, 0, portable_sms);
      detail::decode::set_hopper_decode_enabled(true);
      const Plan compact_plan = make_cuda_plan(problem.shape, requested_splits,
                                               static_cast<int32_t>(detail::decode::kCompactSharedLimit));
      EXPECT_LE(compact_plan.max_shared_bytes(), static_cast<int64_t>(detail::decode::kCompactSharedLimit));
      EXPECT_EQ(std::string(compact_plan.kernel_name()).rfind("mma99-", 0), 0u) << compact_plan.kernel_name();
      EXPECT_NE(std::string(portable_plan.kernel_name()), "sm90-h64");
      // Under the sanitizers (quick mode, which gpu-check runs capped: all three plans then run the 99 KB
      // class) a plan that launches what an earlier one did reuses that result.
      const DeviceResult preferred = run_on_device(preferred_plan, problem, device_problem);
      const DeviceResult portable = test::quick_mode() && same_launches(portable_plan, preferred_plan)
                                        ? preferred
                                        : run_on_device(portable_plan, problem, device_problem);
      const DeviceResult compact = test::quick_mode() && same_launches(compact_plan, portable_plan)
                                       ? portable
                                       : run_on_device(compact_plan, problem, device_problem);
      const std::string label = describe(configs[i]) + " splits=" + std::to_string(requested_splits) + " (" +
                                std::to_string(compact_plan.num_splits()) + "x" +
                                std::to_string(compact_plan.split_tile_tokens()) + " capped) ";
      expect_matches(reference, preferred, label + preferred_plan.kernel_name());
      expect_matches(reference, portable, label + portable_plan.kernel_name());
      expect_matches(reference, compact, label + compact_plan.kernel_name());
      expect_matches(as_reference(portable, problem.shape), preferred,
                     label + preferred_plan.kernel_name() + " vs " + portable_plan.kernel_name());
      expect_matches(as_reference(portable, problem.shape), compact,
                     label + compact_plan.kernel_name() + " vs " + portable_plan.kernel_name());
      EXPECT_EQ(compact.error_count, 0u);
      // mma99-h32 in each of its builds, forced whichever the schedule picks (register_gather_pays): each
      // build runs every row length, page size, sink and empty row here, not only the calls it is chosen for.
      if (std::string(compact_plan.kernel_name()) != "mma99-h32") continue;
      for (const Compact32Gather gather : {Compact32Gather::kStaging, Compact32Gather::kRegisters}) {
        const test::ForcedCompact32Gather forced(gather);
        const DeviceResult build = run_on_device(compact_plan, problem, device_problem);
        const std::string build_label = label + "mma99-h32, " + test::compact32_gather_name(gather);
        expect_matches(reference, build, build_label);
        expect_matches(as_reference(compact, problem.shape), build, build_label + " vs the schedule's build");
        EXPECT_EQ(build.error_count, 0u) << build_label;
        ++compact32_builds_run;
      }
    }
  }
  EXPECT_GT(compact32_builds_run, 0) << "no sampled shape plans mma99-h32 under the cap";
}

// Magnitudes far apart. The random problems of the other tests give scale bytes within a few binades of
// each other and scaled scores of a few units; here every kernel this device runs (the preferred one and
// the 99 KB class under the cap, unsplit and split) must match the float64 reference when the scale bytes
// of one group spread over 12 binades, grow by 22 along the list (so the softmax's running max and O's
// rescale move in mid-row), sit near 2^-40, or near 2^+40 (scaled scores near 2^45, whose rounding once
// reached the exponent of P: scaled_score, tile_common.cuh), with q rows up to 2^8 apart. Magnitudes stay
// at or below the usual ones where the result is not one-hot: the spec's tolerance (1e-3 absolute or
// 2.01/128 relative per element) is written for values up to 1, and bf16 P's error grows with the values.
TEST(DecodeCuda, FarApartMagnitudesMatchReference) {
  SMLA_SKIP_WITHOUT_CUDA();
  struct Magnitudes {
    const char* name;
    double shift, spread, ramp;
  };
  const Magnitudes magnitudes[] = {
      {"2^-12..2^0 in a group", -6, 6, 0},
      {"2^-24..2^0 growing along the list", -22, 2, 20},
      {"scales near 2^-40", -40, 3, 0},
      {"scales near 2^+40 (one-hot softmax)", 40, 3, 0},
  };
  std::vector<ProblemConfig> shapes;
  shapes.push_back(test::problem_config(1, 1, 16, 128, 512, 64, 64));  // mma99-h16, 20 half tiles
  shapes.push_back(test::problem_config(2, 3, 32, 256, 384, 256, 2));  // MTP, P = 2 extra cache
  shapes.push_back(test::problem_config(17, 1, 64, 576, 0, 61, 64));   // sm90-h64 / mma99-h32, odd P
  shapes.push_back(test::problem_config(9, 1, 128, 128, 1024, 256, 64));
  int case_id = 0;
  for (const Magnitudes& m : magnitudes) {
    // Under the sanitizers (quick mode) the two whose branches differ from the usual inputs: O rescaled in
    // mid-row, and the one-hot softmax.
    if (test::quick_mode() && m.ramp == 0 && m.shift < 0) continue;
    for (ProblemConfig config : shapes) {
      config.magnitude_shift_log2 = m.shift;
      config.magnitude_spread_log2 = m.spread;
      config.magnitude_ramp_log2 = m.ramp;
      config.q_magnitude_spread_log2 = 4;
      config.full_lengths = (case_id % 2) == 0;
      Rng rng = Rng::ForTest(900 + case_id++);
      const DecodeProblem problem = make_problem(rng, config);
      const Reference reference = reference_decode(problem);
      DeviceProblem device(problem);
      for (const int32_t cap : {0, static_cast<int32_t>(detail::decode::kCompactSharedLimit)}) {
        for (int requested_splits : {1, 0}) {
          const Plan plan = make_cuda_plan(problem.shape, requested_splits, cap);
          // Quick mode under SMLA_MAX_SHARED_BYTES: the uncapped plans are the capped ones again.
          if (test::quick_mode() && cap > 0 &&
              same_launches(plan, make_cuda_plan(problem.shape, requested_splits)))
            continue;
          const DeviceResult result = run_on_device(plan, problem, device);
          expect_matches(reference, result,
                         std::string(m.name) + " " + describe(config) + " " + plan.kernel_name() +
                             " splits=" + std::to_string(plan.num_splits()));
          EXPECT_EQ(result.error_count, 0u);
        }
      }
    }
  }
}

// The plan names its kernel and never asks for more shared memory than the device (or the cap) allows:
// the preferred kernel uncapped, the 99 KB class under a 101,376-byte cap (option or variable), and below
// the smallest kernel AUTO falls back to cuda-ref while an explicit cuda request is refused by name.
TEST(DecodeCuda, PlanChoosesKernelFromSharedMemoryLimit) {
  SMLA_SKIP_WITHOUT_CUDA();
  detail::CudaDeviceInfo info;
  ASSERT_TRUE(detail::query_cuda_device(-1, &info).ok());
  const char* env_cap = std::getenv("SMLA_MAX_SHARED_BYTES");
  std::printf("[decode_cuda] device: cc %d, %d SMs, %lld bytes of opt-in shared memory per block%s%s\n",
              info.compute_capability, info.sm_count, static_cast<long long>(info.max_shared_bytes),
              env_cap != nullptr ? ", SMLA_MAX_SHARED_BYTES=" : "", env_cap != nullptr ? env_cap : "");
  const DecodeShape wide{64, 1, 64, 128, 512};
  const DecodeShape narrow{1, 1, 8, 128, 512};
  for (const DecodeShape& shape : {wide, narrow}) {
    const Plan preferred = make_cuda_plan(shape, 0);
    EXPECT_LE(static_cast<int64_t>(detail::choose_decode_kernel(shape, info).shared_bytes),
              info.max_shared_bytes);
    std::printf("[decode_cuda] h=%d b=%d: kernel %s, %d splits, shared limit %lld\n", shape.num_heads,
                shape.batch, preferred.kernel_name(), preferred.num_splits(),
                static_cast<long long>(preferred.max_shared_bytes()));
    const Plan capped = make_cuda_plan(shape, 0, 101376);
    EXPECT_STREQ(capped.kernel_name(), shape.num_heads > 16 ? "mma99-h32" : "mma99-h16");
    EXPECT_EQ(capped.max_shared_bytes(), std::min<int64_t>(101376, info.max_shared_bytes));

    PlanOptions options = default_plan_options();
    options.max_shared_bytes = 40 * 1024;  // below every tensor-core kernel
    Plan fallback;
    if (std::getenv("SMLA_BACKEND") == nullptr) {
      ASSERT_TRUE(make_plan(shape, options, &fallback).ok());
      EXPECT_EQ(fallback.backend(), SMLA_BACKEND_CUDA_REF);
      EXPECT_STREQ(fallback.kernel_name(), "cuda-ref");
    }
    options.backend = SMLA_BACKEND_CUDA;
    const Status refused = make_plan(shape, options, &fallback);
    EXPECT_EQ(refused.code(), SMLA_STATUS_UNSUPPORTED) << refused.message();
    EXPECT_NE(refused.message().find("40960 bytes of shared memory"), std::string::npos) << refused.message();
    EXPECT_FALSE(fallback.valid());
  }
}

// options.sm_count with the 99 KB cap plans this GPU as an RTX PRO 6000 (188 SMs) or an RTX 5090 (170):
// the plan reports that count, its kernel and split schedule are the simulated device's, and it runs here
// with the reference's results (only the schedule changes; every CTA still runs on this GPU).
TEST(DecodeCuda, SmCountOptionPlansAnotherGpusSchedule) {
  SMLA_SKIP_WITHOUT_CUDA();
  if (std::getenv("SMLA_SM_COUNT") != nullptr) {
    GTEST_SKIP() << "SMLA_SM_COUNT is set; this test sets options.sm_count itself";
  }
  const struct {
    const char* name;
    int sm_count;
  } targets[] = {{"RTX PRO 6000", 188}, {"RTX 5090", 170}};
  const std::vector<ProblemConfig> configs = {test::problem_config(1, 1, 64, 128, 512, 256, 64),
                                              test::problem_config(8, 1, 64, 128, 512, 256, 64),
                                              test::problem_config(3, 2, 128, 128, 64, 61, 2)};
  for (const auto& target : targets) {
    detail::CudaDeviceInfo simulated;
    simulated.ordinal = 0;
    simulated.sm_count = target.sm_count;
    simulated.compute_capability = 120;
    simulated.max_shared_bytes = 101376;
    for (size_t i = 0; i < configs.size(); ++i) {
      Rng rng = Rng::ForTest(700 + i);
      DecodeProblem problem = make_problem(rng, configs[i]);
      empty_first_row(problem);
      const Plan plan = make_cuda_plan(problem.shape, 0, 101376, target.sm_count);
      const std::string label = std::string(target.name) + " " + describe(configs[i]);
      EXPECT_EQ(plan.sm_count(), target.sm_count) << label;
      const detail::KernelChoice kernel = detail::choose_decode_kernel(problem.shape, simulated);
      const detail::SplitSchedule schedule =
          detail::plan_cuda_decode_splits(problem.shape, simulated, kernel, 0);
      EXPECT_STREQ(plan.kernel_name(), detail::decode_kernel_name(kernel.kernel)) << label;
      EXPECT_EQ(plan.num_splits(), schedule.num_splits) << label;
      EXPECT_EQ(plan.tiles_per_split(), schedule.tiles_per_split) << label;
      EXPECT_EQ(plan.split_tile_tokens(), schedule.tile_tokens) << label;
      const Reference reference = reference_decode(problem);
      DeviceProblem device(problem);
      expect_matches(reference, run_on_device(plan, problem, device),
                     label + " " + plan.kernel_name() + " splits=" + std::to_string(plan.num_splits()));
    }
  }
}

// sm90-h64 split calls of at most kMaxClusterSplits splits whose clusters do not all fit at once write
// partials for the combine kernel (schedule.cpp, v72); the others combine in their clusters. On this GPU's
// own schedule: 128-head calls of 20 rows (3 splits: 40 clusters, past the H200's 39 resident 3-CTA
// clusters) and 7 rows (6 splits, 14 clusters), both against the reference, an empty row and sinks with
// +-inf included; the plan's choice is the planner's for the device.
TEST(DecodeCuda, Sm90SplitsCombineInClustersOrThroughTheCombineKernel) {
  SMLA_SKIP_WITHOUT_CUDA();
  detail::CudaDeviceInfo info;
  ASSERT_TRUE(detail::query_cuda_device(-1, &info).ok());
  if (!info.warp_specialized_decode) GTEST_SKIP() << "no sm_90a kernel on this device";
  int through_combine_kernel = 0, on_sm90 = 0;
  for (const int batch : {20, 7}) {
    ProblemConfig config = test::problem_config(batch, 1, 128, 128, 1024, 256, 64);
    config.sink_inf_fraction = 0.5;
    Rng rng = Rng::ForTest(900 + batch);
    DecodeProblem problem = make_problem(rng, config);
    empty_first_row(problem);
    const Plan plan = make_cuda_plan(problem.shape, 0);
    const detail::SplitSchedule schedule = detail::plan_cuda_decode_splits(
        problem.shape, info, detail::choose_decode_kernel(problem.shape, info), 0);
    const std::string label = describe(config) + " " + plan.kernel_name() +
                              " splits=" + std::to_string(plan.num_splits()) +
                              (plan.cluster_combine() ? " in clusters" : " through the combine kernel");
    // Under SMLA_MAX_SHARED_BYTES (the capped pass) the 99 KB-class kernel takes the calls.
    if (std::string(plan.kernel_name()) != "sm90-h64") continue;
    ++on_sm90;
    EXPECT_EQ(plan.cluster_combine(), schedule.cluster_combine) << label;
    if (plan.cluster_combine())
      EXPECT_TRUE(detail::decode::sm90_combines_in_cluster(plan.num_splits())) << label;
    if (!plan.cluster_combine() && detail::decode::sm90_combines_in_cluster(plan.num_splits()))
      ++through_combine_kernel;
    const Reference reference = reference_decode(problem);
    DeviceProblem device(problem);
    const DeviceResult result = run_on_device(plan, problem, device);
    expect_matches(reference, result, label);
    EXPECT_EQ(result.error_count, 0u) << label;
  }
  if (on_sm90 == 0) GTEST_SKIP() << "no call planned on sm90-h64 (capped by SMLA_MAX_SHARED_BYTES?)";
  // On a 132-SM Hopper part (H100 / H200) the 20-row call is the one through the combine kernel.
  if (on_sm90 == 2 && info.sm_count == 132 && info.max_active_clusters[3] < 40)
    EXPECT_GE(through_combine_kernel, 1);
}

// The plan names the build of mma99-h32 that its calls launch (Plan::register_gather, which smla-bench prints
// in its build column): the rule over the plan's own split schedule (register_gather_pays), and false for
// every other kernel. Under the 99 KB cap (mma99-h32 takes the 32-head calls) and without it.
TEST(DecodeCuda, PlanNamesTheBuildOfTheKernelItLaunches) {
  SMLA_SKIP_WITHOUT_CUDA();
  const DecodeShape shapes[] = {{1, 1, 64, 128, 512},   {8, 1, 64, 128, 512},   {16, 1, 64, 128, 512},
                                {64, 1, 64, 128, 512},  {128, 1, 64, 128, 512}, {16, 1, 64, 128, 0},
                                {32, 1, 64, 128, 0},    {128, 1, 64, 128, 0},   {4, 1, 128, 128, 1024},
                                {64, 1, 128, 128, 1024}};
  int register_plans = 0, staging_plans = 0;
  for (const int32_t max_shared_bytes : {0, 101376}) {
    for (const DecodeShape& shape : shapes) {
      const Plan plan = make_cuda_plan(shape, 0, max_shared_bytes);
      detail::SplitSchedule schedule;
      schedule.num_splits = plan.num_splits();
      schedule.tiles_per_split = plan.tiles_per_split();
      schedule.tile_tokens = plan.split_tile_tokens();
      schedule.body_rows = plan.body_rows();
      schedule.body_splits = plan.body_splits();
      schedule.body_tiles_per_split = plan.body_tiles_per_split();
      const bool compact32 = std::string(plan.kernel_name()) == "mma99-h32";
      const std::string label = "b=" + std::to_string(shape.batch) + " h=" + std::to_string(shape.num_heads) +
                                " extra_topk=" + std::to_string(shape.extra_topk) +
                                " cap=" + std::to_string(max_shared_bytes) + " " + plan.kernel_name() +
                                " splits=" + std::to_string(plan.num_splits()) + " of " +
                                std::to_string(plan.tiles_per_split());
      EXPECT_EQ(plan.register_gather(), compact32 && detail::decode::register_gather_pays(schedule)) << label;
      if (compact32) ++(plan.register_gather() ? register_plans : staging_plans);
    }
  }
  // Under the cap the long rows take the register build and the sliding-window rows of 4 tiles the staging
  // one.
  EXPECT_GT(register_plans, 0);
  EXPECT_GT(staging_plans, 0);
}

// One problem of the body and tail tests and the planned SM counts (options.sm_count) to plan it for.
struct BodyAndTailCase {
  ProblemConfig config;
  std::vector<int> sm_counts;
};

// The body and tail plans a pass ran: tails of an unsplit body, of a split body, and those on mma-h64.
struct BodyAndTailPlans {
  int tail = 0, split_body = 0;
  int portable = 0, portable_split_body = 0;
};

// Each case at each of its planned SM counts whose plan has a body, against the reference (in quick mode at
// most two plans with an unsplit body per case): sinks with +-inf, rows 0 (in the body) and the last (in the
// tail) empty. Each case must give at least one such plan. The plan's kernel, body and tail are printed with
// each result.
BodyAndTailPlans expect_body_and_tail_plans_match_reference(std::vector<BodyAndTailCase> cases,
                                                            uint64_t seed) {
  BodyAndTailPlans plans;
  for (size_t i = 0; i < cases.size(); ++i) {
    ProblemConfig& config = cases[i].config;
    config.sink_inf_fraction = 0.3;
    Rng rng = Rng::ForTest(seed + i);
    DecodeProblem problem = make_problem(rng, config);
    const int64_t rows = static_cast<int64_t>(problem.shape.batch) * problem.shape.seq_q;
    empty_first_row(problem);
    empty_query_row(problem, rows - 1);
    const Reference reference = reference_decode(problem);
    DeviceProblem device(problem);
    int case_plans = 0, case_unsplit_bodies = 0;
    for (const int sm_count : cases[i].sm_counts) {
      const Plan plan = make_cuda_plan(problem.shape, 0, 0, sm_count);
      if (plan.body_rows() == 0) continue;
      // Under the sanitizers (quick mode) every split-body plan still runs, unsplit bodies two per case.
      if (plan.body_splits() == 1 && test::quick_mode() && ++case_unsplit_bodies > 2) continue;
      ++case_plans;
      ++(plan.body_splits() > 1 ? plans.split_body : plans.tail);
      if (std::string(plan.kernel_name()) == "mma-h64") {
        ++plans.portable;
        if (plan.body_splits() > 1) ++plans.portable_split_body;
      }
      const std::string label =
          describe(config) + " sm_count=" + std::to_string(sm_count) + " " + describe_schedule(plan);
      EXPECT_LT(plan.body_rows(), rows) << label;
      EXPECT_GE(plan.num_splits(), 2) << label;
      EXPECT_LT(plan.body_splits(), plan.num_splits()) << label;
      EXPECT_FALSE(plan.cluster_combine()) << label;
      const DeviceResult result = run_on_device(plan, problem, device);
      expect_matches(reference, result, label);
      EXPECT_EQ(result.error_count, 0u) << label;
    }
    EXPECT_GE(case_plans, 1) << describe(config) << ": no planned SM count gave a body and tail split";
  }
  std::printf(
      "[body and tail] %d tail splits of an unsplit body, %d with a split body (%d and %d on mma-h64)\n",
      plans.tail, plans.split_body, plans.portable - plans.portable_split_body, plans.portable_split_body);
  return plans;
}

// The body and tail split (schedule.cpp): when a uniform plan would leave a wave part-empty, the rows
// that fill whole waves (the body) run in few splits or none, and only the rows after them (the tail) in
// more; each split part goes through its own combine launch. Small planned SM counts (options.sm_count) give
// such plans on small problems for whichever kernel the device and the cap choose; each must match the
// reference (empty rows, +-inf sinks, per-query lengths, odd page sizes). The first four problems' rows
// (10 or 4 tiles) are too short for a split body, whose splits must walk 16+ tiles: they give tail splits of
// an unsplit body. The last three have 34-tile rows, where an H200 also plans split bodies at some of their
// SM counts (the 23-row problem at 44 SMs uncapped on sm90-h64, at 88 capped on mma99-h32).
TEST(DecodeCuda, BodyAndTailSplitRowsMatchReference) {
  SMLA_SKIP_WITHOUT_CUDA();
  if (std::getenv("SMLA_SM_COUNT") != nullptr) {
    GTEST_SKIP() << "SMLA_SM_COUNT is set; this test sets options.sm_count itself";
  }
  std::vector<BodyAndTailCase> cases = {
      {test::problem_config(5, 1, 128, 128, 512, 256, 64), {4, 6, 7, 8, 9, 10, 12, 16, 22}},
      {test::problem_config(7, 1, 64, 128, 512, 64, 2), {4, 6, 7, 8, 9, 10, 12, 16, 22}},
      {test::problem_config(3, 3, 32, 128, 512, 61, 2), {4, 6, 7, 8, 9, 10, 12, 16, 22}},
      {test::problem_config(9, 1, 8, 256, 0, 2, 64), {4, 6, 7, 8, 9, 10, 12, 16, 22}},
      // 34-tile rows: split bodies too
      {test::problem_config(7, 1, 8, 128, 2048, 64, 61), {6, 10}},
      {test::problem_config(4, 2, 32, 128, 2048, 2, 256), {7, 15}},
      {test::problem_config(23, 1, 64, 128, 2048, 256, 64), {44, 67, 88}},
  };
  cases[2].config.lengths_per_query = true;
  cases[5].config.lengths_per_query = true;
  const BodyAndTailPlans plans = expect_body_and_tail_plans_match_reference(cases, 950);
  EXPECT_GE(plans.tail, 1);
  EXPECT_GE(plans.split_body, 2);  // the first split-body problem in both passes, and one more
}

// The same with the sm_90a kernel switched off at plan time: on Hopper the portable mma.sync kernel
// (kernel.cuh, mma-h64) runs only then, so this is where its body and tail plans run. Planned on an H200
// (CPU, the "sm_90a kernel off" description): the first problem at 4 / 7 / 8 / 9 SMs an unsplit body of
// 4 / 3 / 4 / 4 rows and a tail of 2 / 2 / 4 / 5 splits; the second (9 rows of 64 heads, per-query lengths,
// P = 61 / 2) at 4 / 6 an unsplit body of 8 / 6 rows (at 16 none: its 10-tile rows are too short for a split
// body, whose splits must walk 16+ tiles); the same with 34-tile rows at 16 / 17 SMs 8 rows in 2 splits of 17
// tiles, the last in 12 of 3 / 17 of 2 (under the cap, at 17, an unsplit body of 8 rows and the last in 9
// of 4); the fourth at 44 SMs 22 rows in 2 splits of 17 tiles, the last in 34 of one (two combine
// launches). Every problem has more 32-head CTAs than SMs, and more than 1.5 times as many where its rows
// hold at most 10 tiles, so the wave rules for devices without the sm_90a kernel leave them on mma-h64, but
// for the second at 16 SMs (18 CTAs of 10-tile rows), which runs mma99-h32. Under SMLA_MAX_SHARED_BYTES the
// 99 KB-class kernels take them (still checked).
TEST(DecodeCuda, BodyAndTailSplitRowsMatchReferenceOnThePortableKernel) {
  SMLA_SKIP_WITHOUT_CUDA();
  if (std::getenv("SMLA_SM_COUNT") != nullptr) {
    GTEST_SKIP() << "SMLA_SM_COUNT is set; this test sets options.sm_count itself";
  }
  int device = 0;
  ASSERT_EQ(cudaGetDevice(&device), cudaSuccess);
  struct EnableHopperOnExit {
    ~EnableHopperOnExit() { detail::decode::set_hopper_decode_enabled(true); }
  } restore;
  detail::decode::set_hopper_decode_enabled(false);
  EXPECT_FALSE(detail::decode::hopper_decode_available(device));
  std::vector<BodyAndTailCase> cases = {
      {test::problem_config(5, 1, 128, 128, 512, 256, 64), {4, 7, 8, 9}},
      {test::problem_config(3, 3, 64, 128, 512, 61, 2), {4, 6, 16}},
      {test::problem_config(3, 3, 64, 128, 2048, 61, 2), {16, 17}},
      {test::problem_config(23, 1, 64, 128, 2048, 256, 64), {44}},
  };
  cases[1].config.lengths_per_query = true;
  cases[2].config.lengths_per_query = true;
  const BodyAndTailPlans plans = expect_body_and_tail_plans_match_reference(cases, 960);
  // Where the portable kernel fits (no 99 KB cap) it ran them: 9 plans, 3 with a split body, on an H200.
  const Plan probe = make_cuda_plan(DecodeShape{5, 1, 128, 128, 512}, 0, 0, 8);
  if (probe.max_shared_bytes() >= static_cast<int64_t>(detail::decode::DecodeConfigHeads64::kSharedBytes)) {
    EXPECT_STREQ(probe.kernel_name(), "mma-h64");
    EXPECT_GE(plans.portable, 4);
    EXPECT_GE(plans.portable_split_body, 3);
  }
}

// Forced 1 split, the planner's choice and the maximum (one tile per split) agree with each other and
// with the reference.
TEST(DecodeCuda, SplitCountsAgree) {
  SMLA_SKIP_WITHOUT_CUDA();
  std::vector<ProblemConfig> configs = {test::problem_config(1, 1, 64, 128, 512, 256, 64),
                                        test::problem_config(2, 2, 16, 576, 1024, 61, 2),
                                        test::problem_config(1, 1, 64, 128, 64, 256, 2)};
  configs[1].lengths_per_query = true;
  for (size_t i = 0; i < configs.size(); ++i) {
    Rng rng = Rng::ForTest(200 + i);
    DecodeProblem problem = make_problem(rng, configs[i]);
    empty_first_row(problem);
    const Reference reference = reference_decode(problem);
    DeviceProblem device(problem);
    // The planner's plan of the third config (4 CTAs, 3 tiles per row, a C128 layer) splits half tiles: 24
    // CTAs of one 32-entry tile on any device with 24 SMs or more (schedule.cpp).
    const Plan auto_plan = make_cuda_plan(problem.shape, 0);
    if (i == 2 && auto_plan.sm_count() >= 24) {
      EXPECT_EQ(auto_plan.split_tile_tokens(), 32);
      EXPECT_EQ(auto_plan.num_splits(), 6);
    }
    const int max_splits = auto_plan.total_tiles() * auto_plan.split_tile_tokens() / 64;  // of 64 entries
    std::vector<DeviceResult> results;
    for (int requested_splits : {1, 0, max_splits}) {
      const Plan plan = make_cuda_plan(problem.shape, requested_splits);
      if (requested_splits == max_splits) {
        EXPECT_EQ(plan.num_splits(), max_splits);
        EXPECT_EQ(plan.tiles_per_split(), 1);
      }
      results.push_back(run_on_device(plan, problem, device));
      expect_matches(reference, results.back(),
                     describe(configs[i]) + " splits=" + std::to_string(plan.num_splits()) + "x" +
                         std::to_string(plan.tiles_per_split()) + "x" +
                         std::to_string(plan.split_tile_tokens()));
    }
    const Reference unsplit = as_reference(results[0], problem.shape);
    expect_matches(unsplit, results[1], describe(configs[i]) + " auto vs 1 split");
    expect_matches(unsplit, results[2], describe(configs[i]) + " max vs 1 split");
  }
}

// Every split count the sm_90a kernel combines inside a thread-block cluster (2..8, see config_sm90.h),
// plus 9 (fp32 partials + combine kernel again), against the reference: rows with an empty list, a
// partial second head block, per-query lengths, sinks with +-inf. On devices without the sm_90a kernel
// the same splits run the portable kernel and the combine kernel.
TEST(DecodeCuda, ClusterCombinedSplitsMatchReference) {
  SMLA_SKIP_WITHOUT_CUDA();
  for (int splits = 2; splits <= 9; ++splits) {
    if (test::quick_mode() && splits % 3 != 2) continue;  // 2, 5, 8 under the sanitizers
    // 2 * splits tiles, so the requested count is the effective one (2 tiles per split).
    std::vector<ProblemConfig> configs = {test::problem_config(3, 1, 64, 128, 128 * splits - 128, 256, 64),
                                          test::problem_config(2, 3, 100, 128 * splits - 40, 0, 61, 64)};
    configs[0].sink_inf_fraction = 0.5;
    configs[1].lengths_per_query = true;
    for (size_t i = 0; i < configs.size(); ++i) {
      Rng rng = Rng::ForTest(260 + 10 * splits + i);
      DecodeProblem problem = make_problem(rng, configs[i]);
      empty_first_row(problem);
      const Reference reference = reference_decode(problem);
      DeviceProblem device(problem);
      const Plan plan = make_cuda_plan(problem.shape, splits);
      ASSERT_EQ(plan.num_splits(), splits);
      const DeviceResult result = run_on_device(plan, problem, device);
      expect_matches(reference, result, describe(configs[i]) + " splits=" + std::to_string(splits));
      EXPECT_EQ(result.error_count, 0u);
    }
  }
}

// `splits` forced splits of a 48-head call of `batch` rows (2 * splits 64-entry tiles, so the requested
// count is the effective one), uncapped and under the 99 KB cap, wherever the combine kernel merges them
// (a 99 KB-class kernel, mma-h64, or sm90-h64 past the splits its clusters combine; plans that merge in
// clusters are skipped), against the reference: an empty row, sinks with +-inf, per-query lengths at odd
// counts. Returns how many of the two plans it checked.
int expect_combined_splits_match_reference(int batch, int splits, uint64_t seed) {
  ProblemConfig config = test::problem_config(batch, 1, 48, 128, 128 * splits - 128, 256, 64);
  config.sink_inf_fraction = 0.5;
  config.lengths_per_query = splits % 2 == 1;
  Rng rng = Rng::ForTest(seed);
  DecodeProblem problem = make_problem(rng, config);
  empty_first_row(problem);
  const Reference reference = reference_decode(problem);
  DeviceProblem device(problem);
  int checked = 0;
  for (int32_t cap : {0, 101376}) {
    const Plan plan = make_cuda_plan(problem.shape, splits, cap);
    EXPECT_EQ(plan.num_splits(), splits);
    const std::string kernel = plan.kernel_name();
    if (kernel == "sm90-h64" && plan.cluster_combine()) continue;
    // Every tensor-core kernel merges these through the combine kernel; mma-h64 runs uncapped where the
    // sm_90a kernel does not (an sm_80-class device, or kernels JIT-compiled from PTX:
    // scripts/gpu-check-ptx).
    EXPECT_TRUE(kernel.rfind("mma99-", 0) == 0 || kernel == "sm90-h64" || kernel == "mma-h64") << kernel;
    const DeviceResult result = run_on_device(plan, problem, device);
    expect_matches(reference, result,
                   describe(config) + " splits=" + std::to_string(splits) + " kernel=" + kernel +
                       (cap > 0 ? " capped" : ""));
    EXPECT_EQ(result.error_count, 0u);
    ++checked;
  }
  return checked;
}

// The combine kernel's one-batch variants (few blocks: every split's loads at once; 2 and 4 splits in one
// group of 128 threads, 5..32 in the grouped kernel, here 4 groups of 2..8 slots) at every split count 2..16
// and at 20, 24, 28 and 32 splits of 2 rows (96 combine blocks; from 28 splits the call is no longer small
// and runs mma99-h32, uncapped by the few-row rule, through the combine kernel).
TEST(DecodeCuda, CombineOneBatchEverySplitCountMatchesReference) {
  SMLA_SKIP_WITHOUT_CUDA();
  std::vector<int> split_counts;
  for (int splits = 2; splits <= 16; ++splits) split_counts.push_back(splits);
  for (int splits : {20, 24, 28, detail::kMaxOneBatchSplits}) split_counts.push_back(splits);
  for (int splits : split_counts) {
    if (test::quick_mode() && splits % 4 != 2 && splits != detail::kMaxOneBatchSplits) continue;
    EXPECT_EQ(expect_combined_splits_match_reference(2, splits, 1500 + splits), 2) << "splits=" << splits;
  }
}

// The grouped combine's two-group form (257..512 combine blocks): 6 rows x 48 heads, 3..32 splits (3 and 4
// in 2 groups of 2 slots, v68c).
TEST(DecodeCuda, CombineTwoGroupSplitCountsMatchReference) {
  SMLA_SKIP_WITHOUT_CUDA();
  for (int splits : {3, 4, 5, 9, 13, 17, 24, detail::kMaxOneBatchSplits}) {
    if (test::quick_mode() && splits != 3 && splits != 9 && splits != detail::kMaxOneBatchSplits) continue;
    EXPECT_GE(expect_combined_splits_match_reference(6, splits, 1600 + splits), 1) << "splits=" << splits;
  }
}

// An id >= num_slots inside the valid prefix is masked (the reference treats it as invalid) and counted
// once per entry in the workspace's error counter, even with two head blocks and several splits.
TEST(DecodeCuda, OutOfRangeSlotIsMaskedAndCounted) {
  SMLA_SKIP_WITHOUT_CUDA();
  ProblemConfig config = test::problem_config(2, 2, 128, 128, 512, 64, 2);
  config.full_lengths = true;
  Rng rng = Rng::ForTest(300);
  DecodeProblem problem = make_problem(rng, config);
  const int64_t main_slots = cache_num_slots(problem.main_cache.layout);
  const int64_t extra_slots = cache_num_slots(problem.extra_cache.layout);
  // Main: row 0 position 3 and row 3 position 100; extra: row 1 position 400 (all inside full lengths).
  problem.indices[3] = static_cast<int32_t>(main_slots);
  problem.indices[3 * config.topk + 100] = std::numeric_limits<int32_t>::max();
  problem.extra_indices[1 * config.extra_topk + 400] = static_cast<int32_t>(extra_slots + 7);
  const uint32_t planted = 3;
  const Reference reference = reference_decode(problem);
  DeviceProblem device(problem);
  for (int requested_splits : {1, 0, 4}) {
    const Plan plan = make_cuda_plan(problem.shape, requested_splits);
    const DeviceResult result = run_on_device(plan, problem, device);
    expect_matches(reference, result,
                   describe(config) + " 3 out-of-range ids, splits=" + std::to_string(plan.num_splits()));
    EXPECT_EQ(result.error_count, planted) << "splits=" << plan.num_splits();
  }
}

// A graph captured once replays correctly after indices and lengths change on the device (spec section 5):
// the launch shape never depends on them.
TEST(DecodeCuda, GraphReplaySeesNewIndicesAndLengths) {
  SMLA_SKIP_WITHOUT_CUDA();
  for (int batch : {1, 2, 4, 8, 12, 16}) {
    ProblemConfig config = test::problem_config(batch, 2, 64, 128, 512, 256, 64);
    config.lengths_per_query = batch % 2 == 0;
    Rng rng = Rng::ForTest(400 + batch);
    const DecodeProblem first = make_problem(rng, config);
    DeviceProblem device(first);
    const Plan plan = make_cuda_plan(first.shape, 0);
    DeviceBytes workspace(plan.workspace_bytes());
    GraphStream captured;
    const cudaStream_t stream = captured.stream;
    eager_run_before_capture(plan, first, device, workspace, stream);

    Status captured_status = Status::Ok();
    captured.capture(
        [&] { captured_status = run(plan, device.args(first), workspace.get(), workspace.bytes(), stream); });
    status_require(captured_status, "smla::run under capture");

    // New indices and lengths from a fresh problem of the same config. Its selected slots hold tokens
    // only in its own caches, so those (same sizes) are copied into the same buffers too: every pointer
    // the graph captured stays, only the device-side contents change.
    Rng second_rng = Rng::ForTest(500 + batch);
    DecodeProblem second = make_problem(second_rng, config);
    empty_first_row(second);
    device.upload(second);
    device.poison_outputs(stream);
    CUDA_REQUIRE(cudaGraphLaunch(captured.graph_exec, stream));
    CUDA_REQUIRE(cudaStreamSynchronize(stream));
    const DeviceResult replayed = result_of(device.out, device.lse);

    const DeviceResult eager = run_on_device(plan, second, device);
    const Reference reference = reference_decode(second);
    const std::string label = describe(config) + " splits=" + std::to_string(plan.num_splits());
    expect_matches(reference, replayed, label + " graph replay");
    expect_matches(reference, eager, label + " eager");
    expect_matches(as_reference(eager, second.shape), replayed, label + " replay vs eager");
  }
}

// A body and tail plan captured once replays correctly as its inputs change (spec section 5): the decode
// grid of both parts and the combine launches of the split parts (two for a split body) are captured
// together, and each replay reads new q, caches, indices and lengths, with a different row of the tail
// (and row 0, in the body) empty each time. The plans (planned SM counts; CPU-checked on an H200): 5 rows
// of 128 heads at 8 SMs, 4 unsplit and the last in 4 splits (mma99-h32 under the cap: 2 splits), and 23
// rows of 64 heads at 44 SMs (88 under the cap), 22 rows in 2 splits and the last in 34.
TEST(DecodeCuda, BodyAndTailGraphReplaySeesNewInputs) {
  SMLA_SKIP_WITHOUT_CUDA();
  struct Case {
    ProblemConfig config;
    int32_t sm_count, capped_sm_count;
  };
  std::vector<Case> cases = {{test::problem_config(5, 1, 128, 128, 512, 256, 64), 8, 8},
                             {test::problem_config(23, 1, 64, 128, 2048, 256, 64), 44, 88}};
  cases[0].config.lengths_per_query = true;
  cases[1].config.sink_inf_fraction = 0.5;
  for (size_t i = 0; i < cases.size(); ++i) {
    for (int32_t cap : {0, static_cast<int32_t>(detail::decode::kCompactSharedLimit)}) {
      const ProblemConfig& config = cases[i].config;
      const int64_t rows = static_cast<int64_t>(config.batch) * config.seq_q;
      Rng rng = Rng::ForTest(1700 + 10 * i);
      const DecodeProblem first = make_problem(rng, config);
      DeviceProblem device(first);
      const int32_t sm_count = cap > 0 ? cases[i].capped_sm_count : cases[i].sm_count;
      const Plan plan = make_cuda_plan(first.shape, 0, cap, sm_count);
      const std::string label = describe(config) + " sm_count=" + std::to_string(sm_count) + " " +
                                describe_schedule(plan) + (cap > 0 ? " capped" : "");
      EXPECT_GT(plan.body_rows(), 0) << label << ": not a body and tail plan";
      DeviceBytes workspace(plan.workspace_bytes());
      GraphStream captured;
      const cudaStream_t stream = captured.stream;
      eager_run_before_capture(plan, first, device, workspace, stream);
      Status captured_status = Status::Ok();
      captured.capture([&] {
        device.poison_outputs(stream);
        captured_status = run(plan, device.args(first), workspace.get(), workspace.bytes(), stream);
      });
      status_require(captured_status, "smla::run under capture");

      // Two replays, each with a fresh problem of the same config in the same buffers and another tail row
      // empty (the last, then the one before it where that is in the tail too).
      for (int replay = 0; replay < 2; ++replay) {
        Rng replay_rng = Rng::ForTest(1800 + 10 * i + replay);
        DecodeProblem next = make_problem(replay_rng, config);
        empty_first_row(next);
        const int64_t empty_row = std::max<int64_t>(plan.body_rows(), rows - 1 - replay);
        empty_query_row(next, empty_row);
        device.upload(next);
        CUDA_REQUIRE(cudaGraphLaunch(captured.graph_exec, stream));
        CUDA_REQUIRE(cudaStreamSynchronize(stream));
        const DeviceResult replayed = result_of(device.out, device.lse);
        const std::string where =
            label + " replay " + std::to_string(replay) + " (row " + std::to_string(empty_row) + " empty)";
        expect_matches(reference_decode(next), replayed, where);
      }
    }
  }
}

// Back-to-back calls see each other's writes. The kernels are launched as programmatic dependents of the
// previous kernel on the stream (sm_90+, cuda/common/programmatic_launch.h) and may be scheduled before it
// drains; they must wait for it before touching memory. Call 2 takes call 1's out as its q (a read after
// write across calls) and reuses the same plan and workspace, whose partials call 1's combine may still be
// reading when call 2's decode starts (a write after read). Eagerly and as one captured graph, for every
// kernel the planner picks here: uncapped and under the 99 KB cap, split (with combine or in-cluster) and
// unsplit, and body and tail plans (planned SM counts, options.sm_count; CPU-checked plans on an H200):
// 5 rows of 128 heads at 8 SMs run 4 rows unsplit and the last in 4 splits of 3 tiles on sm90-h64 (in 2
// of 5 on mma99-h32 under the cap); 23 rows of 64 heads at 44 SMs (88 under the cap) run 22 rows in 2
// splits of 17 tiles and the last in 34 of one, on sm90-h64 (mma99-h32 capped): two combine launches,
// the second a programmatic dependent of the first, chained to the next call's decode kernel.
TEST(DecodeCuda, ChainedCallsSeeThePreviousCallsWrites) {
  SMLA_SKIP_WITHOUT_CUDA();
  int device_ordinal = 0;
  ASSERT_EQ(cudaGetDevice(&device_ordinal), cudaSuccess);
  struct Case {
    ProblemConfig config;
    int requested_splits;
    int32_t sm_count = 0, capped_sm_count = 0;  // planned SM counts (0: the device's own)
    int body_splits = 0;                        // > 0: the body and tail split expected, body in these splits
  };
  std::vector<Case> cases = {{test::problem_config(1, 1, 64, 128, 512, 64, 64), 0},
                             {test::problem_config(8, 1, 64, 128, 512, 64, 64), 0},
                             {test::problem_config(2, 2, 128, 256, 0, 61, 2), 1},
                             {test::problem_config(3, 1, 16, 384, 256, 2, 256), 3},
                             {test::problem_config(5, 1, 128, 128, 512, 256, 64), 0, 8, 8, 1},
                             {test::problem_config(23, 1, 64, 128, 2048, 256, 64), 0, 44, 88, 2}};
  cases[2].config.sink_inf_fraction = 0.5;
  cases[4].config.sink_inf_fraction = 0.5;
  for (size_t i = 0; i < cases.size(); ++i) {
    for (int32_t cap : {0, static_cast<int32_t>(detail::decode::kCompactSharedLimit)}) {
      for (bool graph_mode : {false, true}) {
        // Under the sanitizers (quick mode) only eagerly: a replay runs the same kernels on the same data.
        if (graph_mode && test::quick_mode()) continue;
        const ProblemConfig& config = cases[i].config;
        Rng rng = Rng::ForTest(700 + 10 * i);
        DecodeProblem first = make_problem(rng, config);
        const int64_t rows = static_cast<int64_t>(config.batch) * config.seq_q;
        empty_first_row(first);
        if (cases[i].body_splits > 0) empty_query_row(first, rows - 1);  // a row of the tail
        const int32_t sm_count = cap > 0 ? cases[i].capped_sm_count : cases[i].sm_count;
        const Plan plan = make_cuda_plan(first.shape, cases[i].requested_splits, cap, sm_count);
        const std::string label = describe(config) + " sm_count=" + std::to_string(sm_count) + " " +
                                  describe_schedule(plan) + (graph_mode ? " graph" : " eager");
        // The body and tail plans these cases are here for. Their body's split count is the H200's under
        // the cap, and uncapped where the sm_90a kernel runs and SMLA_MAX_SHARED_BYTES does not cap the
        // pass (the 99 KB-class kernel plans the 23-row call at 44 SMs with an unsplit body).
        if (cases[i].body_splits > 0) {
          EXPECT_GT(plan.body_rows(), 0) << label;
          if (cap > 0 || (std::getenv("SMLA_MAX_SHARED_BYTES") == nullptr &&
                          detail::decode::hopper_decode_available(device_ordinal)))
            EXPECT_EQ(plan.body_splits(), cases[i].body_splits) << label;
        }
        DeviceProblem device(first);
        DeviceBytes second_out(device.out.bytes()), second_lse(device.lse.bytes());
        DeviceBytes workspace(plan.workspace_bytes());
        CUDA_REQUIRE(cudaMemset(workspace.get(), 0, workspace.bytes()));
        CUDA_REQUIRE(cudaDeviceSynchronize());  // the non-blocking stream below is not ordered after it
        DecodeArgs first_args = device.args(first);
        DecodeArgs second_args = first_args;
        second_args.q = device.out.get();  // out and q are both contiguous [b, s_q, h, 512] bf16
        second_args.out = second_out.get();
        second_args.lse = second_lse.get<float>();

        GraphStream captured;
        const cudaStream_t stream = captured.stream;
        auto enqueue = [&] {
          device.poison_outputs(stream);
          CUDA_REQUIRE(cudaMemsetAsync(second_out.get(), 0xFF, second_out.bytes(), stream));
          CUDA_REQUIRE(cudaMemsetAsync(second_lse.get(), 0xFF, second_lse.bytes(), stream));
          status_require(run(plan, first_args, workspace.get(), workspace.bytes(), stream), "first call");
          status_require(run(plan, second_args, workspace.get(), workspace.bytes(), stream), "second call");
        };
        captured.run(enqueue, graph_mode);

        const DeviceResult first_result = result_of(device.out, device.lse);
        const DeviceResult second_result = result_of(second_out, second_lse);
        expect_matches(reference_decode(first), first_result, label + " call 1");
        Rng same_rng = Rng::ForTest(700 + 10 * i);  // the same caches, indices, lengths and sinks
        DecodeProblem second = make_problem(same_rng, config);
        empty_first_row(second);
        if (cases[i].body_splits > 0) empty_query_row(second, rows - 1);
        second.q = first_result.out;  // call 1's output as the query
        expect_matches(reference_decode(second), second_result, label + " call 2 (q = call 1's out)");
      }
    }
  }
}

// A kernel that lets its dependents launch at once (griddepcontrol.launch_dependents, as PDL-aware engine
// kernels do), then waits `delay_ns` and copies `words` 32-bit words from src to dst. Hand-written PTX for
// sm_90, loaded at run time, so that it triggers early whatever architectures this binary was built for.
constexpr char kEarlyTriggerThenCopyPtx[] = R"(
.version 7.8
.target sm_90
.address_size 64

.visible .entry early_trigger_then_copy(.param .u64 dst, .param .u64 src, .param .u32 words,
                                        .param .u64 delay_ns)
{
  .reg .pred done;
  .reg .b32 index, count, stride, value;
  .reg .b64 to, from, delay, start, now, offset, to_word, from_word;
  griddepcontrol.launch_dependents;
  ld.param.u64 to, [dst];
  ld.param.u64 from, [src];
  ld.param.u32 count, [words];
  ld.param.u64 delay, [delay_ns];
  cvta.to.global.u64 to, to;
  cvta.to.global.u64 from, from;
  mov.u64 start, %globaltimer;
WAIT:
  mov.u64 now, %globaltimer;
  sub.u64 now, now, start;
  setp.lt.u64 done, now, delay;
  @done bra WAIT;
  mov.u32 index, %tid.x;
  mov.u32 stride, %ntid.x;
COPY:
  setp.ge.u32 done, index, count;
  @done bra END;
  mul.wide.u32 offset, index, 4;
  add.u64 from_word, from, offset;
  add.u64 to_word, to, offset;
  ld.global.u32 value, [from_word];
  st.global.u32 [to_word], value;
  add.u32 index, index, stride;
  bra COPY;
END:
  ret;
}
)";

// The kernel above, loaded once per test (the library is unloaded with the object).
struct EarlyTriggerKernel {
  cudaLibrary_t library = nullptr;
  cudaKernel_t kernel = nullptr;

  EarlyTriggerKernel() {
    CUDA_REQUIRE(
        cudaLibraryLoadData(&library, kEarlyTriggerThenCopyPtx, nullptr, nullptr, 0, nullptr, nullptr, 0));
    CUDA_REQUIRE(cudaLibraryGetKernel(&kernel, library, "early_trigger_then_copy"));
  }
  EarlyTriggerKernel(const EarlyTriggerKernel&) = delete;
  EarlyTriggerKernel& operator=(const EarlyTriggerKernel&) = delete;
  ~EarlyTriggerKernel() { cudaLibraryUnload(library); }

  void launch(void* dst, const void* src, size_t bytes, uint64_t delay_ns, cudaStream_t stream) const {
    uint32_t words = static_cast<uint32_t>(bytes / sizeof(uint32_t));
    void* params[] = {&dst, &src, &words, &delay_ns};
    CUDA_REQUIRE(
        cudaLaunchKernel(reinterpret_cast<const void*>(kernel), dim3(1), dim3(256), params, 0, stream));
  }
};

// The kernel before smla's on the stream lets its dependents start early and writes q only ~200 us later,
// over a q of NaN bytes. smla's kernels may be launched programmatically only where they wait for that
// kernel (programmatic_launch_usable: their image must hold griddepcontrol.wait), so every call must see
// the real q. In a build of compute_89 PTX only on Hopper (scripts/gpu-check-ptx --arch 89) the library's
// kernels come from that PTX, which has no such wait: what a B200 runs.
TEST(DecodeCuda, WaitsForAnEarlierKernelThatLetsDependentsStartEarly) {
  SMLA_SKIP_WITHOUT_CUDA();
  int device_ordinal = 0, major = 0;
  CUDA_REQUIRE(cudaGetDevice(&device_ordinal));
  CUDA_REQUIRE(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device_ordinal));
  if (major < 9)
    GTEST_SKIP() << "programmatic dependent launch needs sm_90 or newer (this GPU: " << major << ".x)";
  const EarlyTriggerKernel early_trigger;
  std::printf("programmatic launch on this device: %s (library kernels' ptxVersion %d)\n",
              detail::device_has_programmatic_launch(device_ordinal) ? "on" : "off",
              detail::library_kernel_ptx_version(device_ordinal));
  const std::vector<ProblemConfig> configs = {
      test::problem_config(1, 1, 64, 128, 512, 64, 64), test::problem_config(8, 1, 64, 128, 512, 64, 64),
      test::problem_config(64, 1, 64, 128, 512, 256, 64), test::problem_config(2, 2, 128, 256, 0, 61, 2)};
  for (size_t i = 0; i < configs.size(); ++i) {
    Rng rng = Rng::ForTest(800 + 10 * i);
    const DecodeProblem problem = make_problem(rng, configs[i]);
    const Reference reference = reference_decode(problem);
    for (const Backend backend : {SMLA_BACKEND_CUDA, SMLA_BACKEND_CUDA_REF}) {
      for (bool graph_mode : {false, true}) {
        if (graph_mode && test::quick_mode()) continue;
        PlanOptions options = default_plan_options();
        options.backend = backend;
        Plan plan;
        status_require(make_plan(problem.shape, options, &plan), "make_plan");
        const std::string label =
            describe(configs[i]) + " " + plan.kernel_name() + (graph_mode ? " graph" : " eager");
        DeviceProblem device(problem);
        DeviceBytes real_q(device.q.bytes());
        real_q.upload(problem.q);
        DeviceBytes workspace(plan.workspace_bytes());
        if (workspace.bytes() > 0) CUDA_REQUIRE(cudaMemset(workspace.get(), 0, workspace.bytes()));
        CUDA_REQUIRE(cudaDeviceSynchronize());  // the non-blocking stream below is not ordered after these
        const DecodeArgs args = device.args(problem);
        GraphStream captured;
        const cudaStream_t stream = captured.stream;
        auto enqueue = [&] {
          device.poison_outputs(stream);
          CUDA_REQUIRE(cudaMemsetAsync(device.q.get(), 0xFF, device.q.bytes(), stream));
          early_trigger.launch(device.q.get(), real_q.get(), real_q.bytes(), 200 * 1000, stream);
          status_require(run(plan, args, workspace.get(), workspace.bytes(), stream), "smla::run");
        };
        captured.run(enqueue, graph_mode);
        expect_matches(reference, result_of(device.out, device.lse), label);
      }
    }
  }
}

}  // namespace
}  // namespace smla::test
