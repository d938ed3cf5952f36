// Where a benchmark's buffers live and how its calls are timed. The setup, index generation, byte
// accounting and checks are written once against this interface; the host implementation serves the CPU
// backend (and lets all of that logic run on a machine without a GPU), the CUDA implementation serves
// the CUDA backends with device memory and CUDA-graph replays.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "smla/cache.h"
#include "smla/status.h"

namespace smla_bench {

// One benchmarked call (or step of calls) for one index set, enqueued on `stream` (a cudaStream_t for
// CUDA, ignored on the host). It must not allocate or synchronize: the CUDA device captures it.
using EnqueueFn = std::function<smla::Status(void* stream)>;

struct TimingSamples {
  std::vector<double> times_us;  // one per timed call (or replay), in call order
};

class BenchDevice {
 public:
  virtual ~BenchDevice() = default;

  virtual bool is_cuda() const = 0;
  virtual const char* description() const = 0;

  // Allocations live until the device is destroyed or free_all() is called; 256-byte aligned.
  virtual smla::Status allocate(size_t bytes, void** pointer) = 0;
  virtual void free_all() = 0;
  // Frees one allocation made by allocate() (null is ignored).
  virtual void release(void* pointer) = 0;
  // Free memory that allocate() may still use (the host answers a large number).
  virtual size_t free_memory_bytes() const = 0;

  virtual smla::Status copy_to_device(void* destination, const void* source, size_t bytes) = 0;
  virtual smla::Status copy_to_host(void* destination, const void* source, size_t bytes) = 0;
  virtual smla::Status fill_bytes(void* destination, int value, size_t bytes) = 0;

  // Writes `count` bf16 values ~ N(0,1)/10 clipped to [-1, 1] derived from (seed, first_value + i).
  virtual smla::Status fill_random_bf16(uint16_t* destination, int64_t count, uint64_t seed,
                                        uint64_t first_value) = 0;
  // Writes first, first+1, ... into slots[0..count).
  virtual smla::Status fill_slot_range(int32_t* slots, int64_t count, int32_t first) = 0;
  // smla::append_tokens with this device's memory space.
  virtual smla::Status append_tokens(const smla::CacheLayout& cache, const uint16_t* tokens, int64_t count,
                                     const int32_t* slots) = 0;
  // Copies the records (row + footer entry) of source slots[i] into destination slot i.
  virtual smla::Status gather_records(const smla::CacheLayout& source, const int32_t* slots, int64_t count,
                                      const smla::CacheLayout& destination) = 0;

  // Runs `call` once outside any timing (warm-up of lazy initialization, results for --check) and waits.
  virtual smla::Status run_once(const EnqueueFn& call) = 0;
  // Times calls: warm-up calls, then `iterations` timed calls rotating through the index sets
  // (call i uses calls[i % calls.size()]). CUDA: one graph per index set, timed with events per replay.
  virtual smla::Status time_calls(const std::vector<EnqueueFn>& calls, int warmup, int iterations,
                                  TimingSamples* samples) = 0;
  // Copy bandwidth (bytes read + bytes written per second) of a large buffer-to-buffer copy.
  virtual smla::Status measure_copy_bandwidth(size_t copy_bytes, double* bytes_per_second) = 0;
};

std::unique_ptr<BenchDevice> make_host_device();
// Fails with NoDevice when no usable CUDA device exists.
smla::Status make_cuda_device(std::unique_ptr<BenchDevice>* device);

}  // namespace smla_bench
