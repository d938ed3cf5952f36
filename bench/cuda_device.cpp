// The CUDA side of BenchDevice: device memory on one stream, the device codec, and timing by CUDA events
// around individual CUDA-graph replays (one graph per index set).
#include <cuda_runtime.h>

#include <algorithm>
#include <string>
#include <vector>

#include "bench_device.h"
#include "device_kernels.h"
#include "smla/backend.h"
#include "smla/codec.h"

namespace smla_bench {
namespace {

smla::Status cuda_status(cudaError_t error, const char* call, const char* file, int line) {
  return smla::Status::CudaError(std::string(file) + ":" + std::to_string(line) + ": " + call +
                                 " failed: " + cudaGetErrorName(error) + ": " + cudaGetErrorString(error));
}

#define BENCH_CUDA_CHECK(expr)                                          \
  do {                                                                  \
    const cudaError_t bench_cuda_error_ = (expr);                       \
    if (bench_cuda_error_ != cudaSuccess) {                             \
      return cuda_status(bench_cuda_error_, #expr, __FILE__, __LINE__); \
    }                                                                   \
  } while (0)

// Owns the graphs and events of one time_calls() so that every exit path releases them.
struct GraphTimingResources {
  std::vector<cudaGraph_t> graphs;
  std::vector<cudaGraphExec_t> executables;
  std::vector<cudaEvent_t> events;
  ~GraphTimingResources() {
    for (cudaEvent_t event : events) cudaEventDestroy(event);
    for (cudaGraphExec_t executable : executables) cudaGraphExecDestroy(executable);
    for (cudaGraph_t graph : graphs) cudaGraphDestroy(graph);
  }
};

class CudaDevice final : public BenchDevice {
 public:
  ~CudaDevice() override {
    free_all();
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }

  smla::Status init() {
    BENCH_CUDA_CHECK(cudaGetDevice(&ordinal_));
    cudaDeviceProp properties{};
    BENCH_CUDA_CHECK(cudaGetDeviceProperties(&properties, ordinal_));
    description_ = std::string(properties.name) + " (device " + std::to_string(ordinal_) + ", sm_" +
                   std::to_string(properties.major * 10 + properties.minor) + ")";
    // Non-blocking: no implicit synchronization with the legacy default stream.
    BENCH_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    return smla::Status::Ok();
  }

  bool is_cuda() const override { return true; }
  const char* description() const override { return description_.c_str(); }

  smla::Status allocate(size_t bytes, void** pointer) override {
    void* memory = nullptr;
    BENCH_CUDA_CHECK(cudaMalloc(&memory, std::max<size_t>(bytes, 256)));
    allocations_.push_back(memory);
    *pointer = memory;
    return smla::Status::Ok();
  }

  void free_all() override {
    if (stream_ != nullptr) cudaStreamSynchronize(stream_);
    for (void* memory : allocations_) cudaFree(memory);
    allocations_.clear();
  }

  void release(void* pointer) override {
    const auto found = std::find(allocations_.begin(), allocations_.end(), pointer);
    if (found == allocations_.end()) return;
    cudaStreamSynchronize(stream_);  // work still queued may use it
    cudaFree(pointer);
    allocations_.erase(found);
  }

  size_t free_memory_bytes() const override {
    size_t free_bytes = 0, total_bytes = 0;
    if (cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess) return 0;
    return free_bytes;
  }

  smla::Status copy_to_device(void* destination, const void* source, size_t bytes) override {
    BENCH_CUDA_CHECK(cudaMemcpyAsync(destination, source, bytes, cudaMemcpyHostToDevice, stream_));
    BENCH_CUDA_CHECK(cudaStreamSynchronize(stream_));  // the host buffer may go away after we return
    return smla::Status::Ok();
  }

  smla::Status copy_to_host(void* destination, const void* source, size_t bytes) override {
    BENCH_CUDA_CHECK(cudaMemcpyAsync(destination, source, bytes, cudaMemcpyDeviceToHost, stream_));
    BENCH_CUDA_CHECK(cudaStreamSynchronize(stream_));
    return smla::Status::Ok();
  }

  smla::Status fill_bytes(void* destination, int value, size_t bytes) override {
    BENCH_CUDA_CHECK(cudaMemsetAsync(destination, value, bytes, stream_));
    return smla::Status::Ok();
  }

  smla::Status fill_random_bf16(uint16_t* destination, int64_t count, uint64_t seed,
                                uint64_t first_value) override {
    BENCH_CUDA_CHECK(launch_fill_random_bf16(destination, count, seed, first_value, stream_));
    return smla::Status::Ok();
  }

  smla::Status fill_slot_range(int32_t* slots, int64_t count, int32_t first) override {
    BENCH_CUDA_CHECK(launch_fill_slot_range(slots, count, first, stream_));
    return smla::Status::Ok();
  }

  smla::Status append_tokens(const smla::CacheLayout& cache, const uint16_t* tokens, int64_t count,
                             const int32_t* slots) override {
    SMLA_RETURN_IF_ERROR(
        smla::append_tokens(cache, tokens, count, smla::kHeadDim, slots, smla::MemorySpace::kCuda, stream_));
    return smla::Status::Ok();
  }

  smla::Status gather_records(const smla::CacheLayout& source, const int32_t* slots, int64_t count,
                              const smla::CacheLayout& destination) override {
    BENCH_CUDA_CHECK(launch_gather_records(source, slots, count, destination, stream_));
    BENCH_CUDA_CHECK(cudaStreamSynchronize(stream_));
    return smla::Status::Ok();
  }

  smla::Status run_once(const EnqueueFn& call) override {
    SMLA_RETURN_IF_ERROR(call(stream_));
    BENCH_CUDA_CHECK(cudaStreamSynchronize(stream_));
    BENCH_CUDA_CHECK(cudaGetLastError());
    return smla::Status::Ok();
  }

  smla::Status time_calls(const std::vector<EnqueueFn>& calls, int warmup, int iterations,
                          TimingSamples* samples) override {
    if (calls.empty()) return smla::Status::InvalidArgument("time_calls: no calls to time");
    GraphTimingResources resources;
    for (const EnqueueFn& call : calls) {
      cudaGraph_t graph = nullptr;
      SMLA_RETURN_IF_ERROR(capture(call, &graph));
      resources.graphs.push_back(graph);
      cudaGraphExec_t executable = nullptr;
      BENCH_CUDA_CHECK(cudaGraphInstantiate(&executable, graph, 0));
      resources.executables.push_back(executable);
      BENCH_CUDA_CHECK(cudaGraphUpload(executable, stream_));
    }
    const size_t num_graphs = resources.executables.size();
    for (int i = 0; i < warmup; ++i)
      BENCH_CUDA_CHECK(cudaGraphLaunch(resources.executables[i % num_graphs], stream_));
    BENCH_CUDA_CHECK(cudaStreamSynchronize(stream_));

    resources.events.resize(static_cast<size_t>(iterations) + 1, nullptr);
    for (cudaEvent_t& event : resources.events) BENCH_CUDA_CHECK(cudaEventCreate(&event));
    // Queue the replays behind a spin so the device never waits for the host between them.
    const uint64_t spin_ns = std::min<uint64_t>(50'000'000ull, 1'000'000ull + 10'000ull * iterations);
    BENCH_CUDA_CHECK(launch_spin(spin_ns, stream_));
    for (int i = 0; i < iterations; ++i) {
      BENCH_CUDA_CHECK(cudaEventRecord(resources.events[i], stream_));
      BENCH_CUDA_CHECK(cudaGraphLaunch(resources.executables[i % num_graphs], stream_));
    }
    BENCH_CUDA_CHECK(cudaEventRecord(resources.events[iterations], stream_));
    BENCH_CUDA_CHECK(cudaStreamSynchronize(stream_));
    BENCH_CUDA_CHECK(cudaGetLastError());

    samples->times_us.clear();
    for (int i = 0; i < iterations; ++i) {
      float milliseconds = 0.f;
      BENCH_CUDA_CHECK(cudaEventElapsedTime(&milliseconds, resources.events[i], resources.events[i + 1]));
      samples->times_us.push_back(1000.0 * milliseconds);
    }
    return smla::Status::Ok();
  }

  smla::Status measure_copy_bandwidth(size_t copy_bytes, double* bytes_per_second) override {
    void* source = nullptr;
    void* destination = nullptr;
    BENCH_CUDA_CHECK(cudaMalloc(&source, copy_bytes));
    const cudaError_t second = cudaMalloc(&destination, copy_bytes);
    if (second != cudaSuccess) {
      cudaFree(source);
      return cuda_status(second, "cudaMalloc(copy destination)", __FILE__, __LINE__);
    }
    const smla::Status status = time_copies(source, destination, copy_bytes, bytes_per_second);
    cudaStreamSynchronize(stream_);
    cudaFree(source);
    cudaFree(destination);
    return status;
  }

 private:
  // Captures `call` into a new graph. Relaxed mode: the bench measures; graph-safety of smla::run itself
  // is asserted by the library's CUDA tests.
  smla::Status capture(const EnqueueFn& call, cudaGraph_t* graph) {
    BENCH_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeRelaxed));
    const smla::Status call_status = call(stream_);
    cudaGraph_t captured = nullptr;
    const cudaError_t end_error = cudaStreamEndCapture(stream_, &captured);
    if (!call_status.ok()) {
      if (captured != nullptr) cudaGraphDestroy(captured);
      cudaGetLastError();
      return call_status;
    }
    if (end_error != cudaSuccess) return cuda_status(end_error, "cudaStreamEndCapture", __FILE__, __LINE__);
    *graph = captured;
    return smla::Status::Ok();
  }

  smla::Status time_copies(void* source, void* destination, size_t copy_bytes, double* bytes_per_second) {
    constexpr int kWarmup = 2;
    constexpr int kRepeats = 10;
    GraphTimingResources resources;
    resources.events.resize(2, nullptr);
    for (cudaEvent_t& event : resources.events) BENCH_CUDA_CHECK(cudaEventCreate(&event));
    BENCH_CUDA_CHECK(cudaMemsetAsync(source, 0x3c, copy_bytes, stream_));
    for (int i = 0; i < kWarmup; ++i) {
      BENCH_CUDA_CHECK(cudaMemcpyAsync(destination, source, copy_bytes, cudaMemcpyDeviceToDevice, stream_));
    }
    std::vector<double> seconds;
    for (int i = 0; i < kRepeats; ++i) {
      BENCH_CUDA_CHECK(cudaEventRecord(resources.events[0], stream_));
      BENCH_CUDA_CHECK(cudaMemcpyAsync(destination, source, copy_bytes, cudaMemcpyDeviceToDevice, stream_));
      BENCH_CUDA_CHECK(cudaEventRecord(resources.events[1], stream_));
      BENCH_CUDA_CHECK(cudaEventSynchronize(resources.events[1]));
      float milliseconds = 0.f;
      BENCH_CUDA_CHECK(cudaEventElapsedTime(&milliseconds, resources.events[0], resources.events[1]));
      seconds.push_back(milliseconds * 1e-3);
    }
    std::sort(seconds.begin(), seconds.end());
    // Bytes read plus bytes written, the convention of spec section 9.
    *bytes_per_second = 2.0 * static_cast<double>(copy_bytes) / seconds[seconds.size() / 2];
    return smla::Status::Ok();
  }

  int ordinal_ = 0;
  cudaStream_t stream_ = nullptr;
  std::string description_;
  std::vector<void*> allocations_;
};

}  // namespace

smla::Status make_cuda_device(std::unique_ptr<BenchDevice>* device) {
  if (!smla::cuda_device_available()) {
    return smla::Status::NoDevice("no CUDA device usable by the smla CUDA backends");
  }
  auto cuda = std::make_unique<CudaDevice>();
  SMLA_RETURN_IF_ERROR(cuda->init());
  *device = std::move(cuda);
  return smla::Status::Ok();
}

}  // namespace smla_bench
