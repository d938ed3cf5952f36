// The host side of BenchDevice: plain memory, the host codec and wall-clock timing (CPU backend).
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "bench_device.h"
#include "random_values.h"
#include "smla/codec.h"

namespace smla_bench {
namespace {

constexpr size_t kAlignment = 256;

class HostDevice final : public BenchDevice {
 public:
  ~HostDevice() override { free_all(); }

  bool is_cuda() const override { return false; }
  const char* description() const override { return "host"; }

  smla::Status allocate(size_t bytes, void** pointer) override {
    const size_t rounded = std::max<size_t>(kAlignment, (bytes + kAlignment - 1) / kAlignment * kAlignment);
    void* memory = std::aligned_alloc(kAlignment, rounded);
    if (memory == nullptr) {
      return smla::Status::Internal("host allocation of " + std::to_string(bytes) + " bytes failed");
    }
    allocations_.push_back(memory);
    *pointer = memory;
    return smla::Status::Ok();
  }

  void free_all() override {
    for (void* memory : allocations_) std::free(memory);
    allocations_.clear();
  }

  void release(void* pointer) override {
    const auto found = std::find(allocations_.begin(), allocations_.end(), pointer);
    if (found == allocations_.end()) return;
    std::free(pointer);
    allocations_.erase(found);
  }

  size_t free_memory_bytes() const override { return size_t{1} << 40; }

  smla::Status copy_to_device(void* destination, const void* source, size_t bytes) override {
    std::memcpy(destination, source, bytes);
    return smla::Status::Ok();
  }
  smla::Status copy_to_host(void* destination, const void* source, size_t bytes) override {
    std::memcpy(destination, source, bytes);
    return smla::Status::Ok();
  }
  smla::Status fill_bytes(void* destination, int value, size_t bytes) override {
    std::memset(destination, value, bytes);
    return smla::Status::Ok();
  }

  smla::Status fill_random_bf16(uint16_t* destination, int64_t count, uint64_t seed,
                                uint64_t first_value) override {
    for (int64_t i = 0; i < count; ++i) {
      destination[i] =
          finite_float_to_bf16_bits(normalish_value(seed, first_value + static_cast<uint64_t>(i)));
    }
    return smla::Status::Ok();
  }

  smla::Status fill_slot_range(int32_t* slots, int64_t count, int32_t first) override {
    for (int64_t i = 0; i < count; ++i) slots[i] = first + static_cast<int32_t>(i);
    return smla::Status::Ok();
  }

  smla::Status append_tokens(const smla::CacheLayout& cache, const uint16_t* tokens, int64_t count,
                             const int32_t* slots) override {
    return smla::append_tokens(cache, tokens, count, smla::kHeadDim, slots, smla::MemorySpace::kHost);
  }

  smla::Status gather_records(const smla::CacheLayout& source, const int32_t* slots, int64_t count,
                              const smla::CacheLayout& destination) override {
    const auto* from = static_cast<const uint8_t*>(source.data);
    auto* to = static_cast<uint8_t*>(destination.data);
    for (int64_t i = 0; i < count; ++i) {
      const int64_t slot = slots[i];
      std::memcpy(to + smla::slot_row_offset(destination.page_block_size, destination.page_stride_bytes, i),
                  from + smla::slot_row_offset(source.page_block_size, source.page_stride_bytes, slot),
                  smla::kRowBytes);
      std::memcpy(to + smla::slot_scale_offset(destination.page_block_size, destination.page_stride_bytes, i),
                  from + smla::slot_scale_offset(source.page_block_size, source.page_stride_bytes, slot),
                  smla::kScaleBytes);
    }
    return smla::Status::Ok();
  }

  smla::Status run_once(const EnqueueFn& call) override { return call(nullptr); }

  smla::Status time_calls(const std::vector<EnqueueFn>& calls, int warmup, int iterations,
                          TimingSamples* samples) override {
    if (calls.empty()) return smla::Status::InvalidArgument("time_calls: no calls to time");
    for (int i = 0; i < warmup; ++i) SMLA_RETURN_IF_ERROR(calls[i % calls.size()](nullptr));
    samples->times_us.clear();
    for (int i = 0; i < iterations; ++i) {
      const auto start = std::chrono::steady_clock::now();
      SMLA_RETURN_IF_ERROR(calls[i % calls.size()](nullptr));
      const auto stop = std::chrono::steady_clock::now();
      samples->times_us.push_back(std::chrono::duration<double, std::micro>(stop - start).count());
    }
    return smla::Status::Ok();
  }

  smla::Status measure_copy_bandwidth(size_t copy_bytes, double* bytes_per_second) override {
    std::vector<uint8_t> source(copy_bytes, 1), destination(copy_bytes, 0);
    std::vector<double> seconds;
    for (int repeat = 0; repeat < 5; ++repeat) {
      const auto start = std::chrono::steady_clock::now();
      std::memcpy(destination.data(), source.data(), copy_bytes);
      const auto stop = std::chrono::steady_clock::now();
      seconds.push_back(std::chrono::duration<double>(stop - start).count());
    }
    std::sort(seconds.begin(), seconds.end());
    *bytes_per_second = 2.0 * static_cast<double>(copy_bytes) / seconds[seconds.size() / 2];
    return smla::Status::Ok();
  }

 private:
  std::vector<void*> allocations_;
};

}  // namespace

std::unique_ptr<BenchDevice> make_host_device() { return std::make_unique<HostDevice>(); }

}  // namespace smla_bench
