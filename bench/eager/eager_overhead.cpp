// smla-eager-overhead: host time of one eager decode call through the C++ API (smla::run on a plan),
// the C++ row of bench/eager_overhead.py. Method (issue 15): back-to-back calls on one stream, host
// wall time per call, best of several repeats; the device is synchronized only between repeats. Also
// where that time goes: validate_decode_args alone (the part of a call that is not the launch), within it
// the memory-space queries of the call's pointers alone, the per-call lookups of SMLA_DEBUG_CHECKS and of
// the current device, and the calls in bursts of 16 with the device waited for between bursts (the host
// time while the launch queue is shallow: back-to-back calls that take the GPU longer than the host can
// fill the queue, and then a launch waits for room).
//
//   smla-eager-overhead [--backend auto|cpu|cuda|cuda-ref] [--shapes flash-c4:1,flash-c4:64,pro-c4:1]
//                       [--calls 500] [--repeats 5]
//
// One line per shape, `key=value` fields (bench/eager_overhead.py parses them). On the cpu backend the
// lengths are 0, so a call does no attention work and the figure is the host path plus the CPU backend's
// fixed cost; it is a smoke test, not comparable to the GPU figures.
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "common/memory_space.h"
#include "smla/backend.h"
#include "smla/cache.h"
#include "smla/decode.h"

namespace {

struct ShapeSpec {
  const char* name;
  int num_heads;
  int topk;
  int extra_topk;
  int main_page_block_size;
  int extra_page_block_size;
};

// The production shapes of smla-bench that issue 15 names (DSv4-Flash and DSv4-Pro C4 layers).
constexpr ShapeSpec kShapes[] = {
    {"flash-c4", 64, 128, 512, 64, 64},
    {"flash-swa", 64, 128, 0, 64, 64},
    {"pro-c4", 128, 128, 1024, 64, 64},
};

struct Options {
  std::string backend = "auto";
  std::string shapes = "flash-c4:1,flash-c4:64,pro-c4:1";
  int calls = 500;
  int repeats = 5;
};

int fail(const std::string& message) {
  std::fprintf(stderr, "smla-eager-overhead: %s\n", message.c_str());
  return 1;
}

bool parse_options(int argc, char** argv, Options* options, std::string* error) {
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    std::string value;
    const size_t equals = flag.find('=');
    if (equals != std::string::npos) {
      value = flag.substr(equals + 1);
      flag = flag.substr(0, equals);
    } else if (flag != "--help" && i + 1 < argc) {
      value = argv[++i];
    }
    if (flag == "--backend") {
      options->backend = value;
    } else if (flag == "--shapes") {
      options->shapes = value;
    } else if (flag == "--calls") {
      options->calls = std::atoi(value.c_str());
    } else if (flag == "--repeats") {
      options->repeats = std::atoi(value.c_str());
    } else {
      *error = "usage: smla-eager-overhead [--backend B] [--shapes name:batch,...] [--calls N] [--repeats N]";
      return false;
    }
  }
  if (options->calls < 1 || options->repeats < 1) {
    *error = "--calls and --repeats must be >= 1";
    return false;
  }
  return true;
}

// Host or device buffers of one decode call; freed by the destructor.
class Buffers {
 public:
  explicit Buffers(bool on_device) : on_device_(on_device) {}
  ~Buffers() {
    for (void* ptr : owned_) {
      if (on_device_) {
        cudaFree(ptr);
      } else {
        std::free(ptr);
      }
    }
  }
  Buffers(const Buffers&) = delete;
  Buffers& operator=(const Buffers&) = delete;

  // Zeroed, 256-byte aligned; `host` (if given) is copied in.
  void* make(size_t bytes, const void* host = nullptr) {
    bytes = std::max<size_t>(bytes, 16);
    void* ptr = nullptr;
    if (on_device_) {
      if (cudaMalloc(&ptr, bytes) != cudaSuccess) return nullptr;
      cudaMemset(ptr, 0, bytes);
      if (host != nullptr) cudaMemcpy(ptr, host, bytes, cudaMemcpyHostToDevice);
    } else {
      ptr = std::aligned_alloc(256, (bytes + 255) / 256 * 256);
      if (ptr == nullptr) return nullptr;
      std::memset(ptr, 0, bytes);
      if (host != nullptr) std::memcpy(ptr, host, bytes);
    }
    owned_.push_back(ptr);
    return ptr;
  }

 private:
  bool on_device_;
  std::vector<void*> owned_;
};

// Index rows [b, 1, width] of distinct slot ids 0.. (the cache holds b * width tokens).
std::vector<int32_t> index_rows(int batch, int width) {
  std::vector<int32_t> rows(static_cast<size_t>(batch) * width);
  for (size_t i = 0; i < rows.size(); ++i) rows[i] = static_cast<int32_t>(i);
  return rows;
}

double now_us() {
  return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

int measure(const ShapeSpec& spec, int batch, const Options& options, smla::Backend requested) {
  const smla::DecodeShape shape{batch, 1, spec.num_heads, spec.topk, spec.extra_topk};
  smla::PlanOptions plan_options = smla::default_plan_options();
  plan_options.backend = requested;
  smla::Plan plan;
  const smla::Status planned = smla::make_plan(shape, plan_options, &plan);
  if (!planned.ok()) return fail("make_plan: " + planned.message());
  const bool on_device = plan.backend() != SMLA_BACKEND_CPU;
  Buffers buffers(on_device);

  const int64_t main_tokens = static_cast<int64_t>(batch) * spec.topk;
  const int64_t extra_tokens = static_cast<int64_t>(batch) * spec.extra_topk;
  const int64_t main_pages = (main_tokens + spec.main_page_block_size - 1) / spec.main_page_block_size;
  const int64_t extra_pages =
      std::max<int64_t>(1, (extra_tokens + spec.extra_page_block_size - 1) / spec.extra_page_block_size);
  // Full lengths on a GPU (a real call); 0 on the CPU backend, whose "launch" is the attention itself.
  const std::vector<int32_t> main_lengths(batch, on_device ? spec.topk : 0);
  const std::vector<int32_t> extra_lengths(batch, on_device ? spec.extra_topk : 0);
  const std::vector<int32_t> main_rows = index_rows(batch, spec.topk);
  const std::vector<int32_t> extra_rows = index_rows(batch, std::max(spec.extra_topk, 1));
  const size_t q_bytes = static_cast<size_t>(batch) * spec.num_heads * smla::kHeadDim * 2;

  smla::DecodeArgs args{};
  args.q = buffers.make(q_bytes);
  args.main_cache = smla::make_cache_layout(
      buffers.make(
          static_cast<size_t>(main_pages * smla::writer_page_stride_bytes(spec.main_page_block_size))),
      spec.main_page_block_size, main_pages);
  args.indices = static_cast<const int32_t*>(buffers.make(main_rows.size() * 4, main_rows.data()));
  args.topk_length = static_cast<const int32_t*>(buffers.make(main_lengths.size() * 4, main_lengths.data()));
  args.topk_length_layout = SMLA_LENGTHS_PER_BATCH;
  if (spec.extra_topk > 0) {
    args.extra_cache = smla::make_cache_layout(
        buffers.make(
            static_cast<size_t>(extra_pages * smla::writer_page_stride_bytes(spec.extra_page_block_size))),
        spec.extra_page_block_size, extra_pages);
    args.extra_indices = static_cast<const int32_t*>(buffers.make(extra_rows.size() * 4, extra_rows.data()));
    args.extra_topk_length =
        static_cast<const int32_t*>(buffers.make(extra_lengths.size() * 4, extra_lengths.data()));
    args.extra_topk_length_layout = SMLA_LENGTHS_PER_BATCH;
  }
  args.attn_sink = static_cast<const float*>(buffers.make(static_cast<size_t>(spec.num_heads) * 4));
  args.softmax_scale = 1.0f / 22.627417f;
  args.out = buffers.make(q_bytes);
  args.lse = static_cast<float*>(buffers.make(static_cast<size_t>(batch) * spec.num_heads * 4));
  smla::set_contiguous_strides(shape, &args);
  void* workspace = buffers.make(plan.workspace_bytes());
  if (args.q == nullptr || args.out == nullptr || workspace == nullptr) return fail("allocation failed");
  cudaStream_t stream = nullptr;
  if (on_device && cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking) != cudaSuccess)
    return fail("cudaStreamCreate failed");

  auto run_once = [&] { return smla::run(plan, args, workspace, plan.workspace_bytes(), stream); };
  for (int i = 0; i < 20; ++i) {  // warm-up: first-use kernel configuration, caches
    const smla::Status status = run_once();
    if (!status.ok()) return fail("run: " + status.message());
  }
  if (on_device) cudaStreamSynchronize(stream);

  double best_run_us = 1e30, best_validate_us = 1e30;
  for (int repeat = 0; repeat < options.repeats; ++repeat) {
    const double start = now_us();
    for (int call = 0; call < options.calls; ++call) {
      if (!run_once().ok()) return fail("run failed while timing");
    }
    best_run_us = std::min(best_run_us, (now_us() - start) / options.calls);
    if (on_device) cudaStreamSynchronize(stream);

    const double validate_start = now_us();
    for (int call = 0; call < options.calls; ++call) {
      if (!smla::validate_decode_args(plan, args, workspace, plan.workspace_bytes()).ok())
        return fail("validate_decode_args failed while timing");
    }
    best_validate_us = std::min(best_validate_us, (now_us() - validate_start) / options.calls);
  }

  // The breakdown. Bursts of 16 calls, the device waited for before each.
  constexpr int kBurst = 16;
  double best_burst_us = 1e30;
  for (int burst = 0; burst < options.repeats * 20; ++burst) {
    if (on_device) cudaStreamSynchronize(stream);
    const double start = now_us();
    for (int call = 0; call < kBurst; ++call) {
      if (!run_once().ok()) return fail("run failed while timing bursts");
    }
    best_burst_us = std::min(best_burst_us, (now_us() - start) / kBurst);
  }
  if (on_device) cudaStreamSynchronize(stream);
  // The memory-space queries of validate_decode_args: one per pointer the plan reads (dispatch.cpp).
  const void* pointers[] = {args.q,
                            args.main_cache.data,
                            args.indices,
                            args.topk_length,
                            args.attn_sink,
                            args.out,
                            args.lse,
                            args.extra_cache.data,
                            args.extra_indices,
                            args.extra_topk_length,
                            plan.workspace_bytes() > 0 ? workspace : nullptr};
  double best_pointers_us = 1e30, best_lookups_us = 1e30;
  volatile int sink = 0;
  for (int repeat = 0; repeat < options.repeats; ++repeat) {
    double start = now_us();
    for (int call = 0; call < options.calls; ++call) {
      for (const void* pointer : pointers) {
        if (pointer != nullptr) sink = sink + static_cast<int>(smla::detail::locate_pointer(pointer).space);
      }
    }
    best_pointers_us = std::min(best_pointers_us, (now_us() - start) / options.calls);
    // What run() asks besides validation: SMLA_DEBUG_CHECKS (per call, so it can be toggled at run time)
    // and, on a GPU, the current device.
    start = now_us();
    for (int call = 0; call < options.calls; ++call) {
      sink = sink + (std::getenv("SMLA_DEBUG_CHECKS") != nullptr ? 1 : 0);
      int device = 0;
      if (on_device) cudaGetDevice(&device);
      sink = sink + device;
    }
    best_lookups_us = std::min(best_lookups_us, (now_us() - start) / options.calls);
  }
  if (on_device) cudaStreamDestroy(stream);
  std::printf(
      "shape=%s b=%d h=%d topk=%d extra_topk=%d backend=%s num_splits=%d calls=%d best_of=%d "
      "run_us=%.2f validate_us=%.2f run_burst16_us=%.2f pointer_queries_us=%.2f lookups_us=%.2f\n",
      spec.name, batch, spec.num_heads, spec.topk, spec.extra_topk, smla::backend_name(plan.backend()),
      plan.num_splits(), options.calls, options.repeats, best_run_us, best_validate_us, best_burst_us,
      best_pointers_us, best_lookups_us);
  std::fflush(stdout);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  std::string error;
  if (!parse_options(argc, argv, &options, &error)) return fail(error);
  smla::Backend requested = SMLA_BACKEND_AUTO;
  const smla::Status parsed = smla::parse_backend(options.backend, &requested);
  if (!parsed.ok()) return fail(parsed.message());

  int status = 0;
  size_t begin = 0;
  while (begin < options.shapes.size()) {
    size_t end = options.shapes.find(',', begin);
    if (end == std::string::npos) end = options.shapes.size();
    const std::string item = options.shapes.substr(begin, end - begin);
    begin = end + 1;
    const size_t colon = item.find(':');
    const std::string name = item.substr(0, colon);
    const int batch = colon == std::string::npos ? 1 : std::atoi(item.c_str() + colon + 1);
    const ShapeSpec* spec = nullptr;
    for (const ShapeSpec& candidate : kShapes) {
      if (name == candidate.name) spec = &candidate;
    }
    if (spec == nullptr || batch < 1) {
      status |= fail("unknown shape '" + item + "' (flash-c4, flash-swa or pro-c4, with :batch)");
      continue;
    }
    status |= measure(*spec, batch, options, requested);
  }
  return status;
}
