#include <cuda_bf16.h>

#include <algorithm>

#include "device_kernels.h"
#include "random_values.h"

namespace smla_bench {
namespace {

constexpr int kThreadsPerBlock = 256;
constexpr int64_t kMaxBlocks = 65536;  // grid-stride loops cover the rest

unsigned grid_for(int64_t count) {
  return static_cast<unsigned>(
      std::max<int64_t>(1, std::min(kMaxBlocks, (count + kThreadsPerBlock - 1) / kThreadsPerBlock)));
}

__global__ void fill_random_bf16_kernel(uint16_t* destination, int64_t count, uint64_t seed,
                                        uint64_t first_value) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const __nv_bfloat16 value =
        __float2bfloat16_rn(normalish_value(seed, first_value + static_cast<uint64_t>(i)));
    destination[i] = __bfloat16_as_ushort(value);
  }
}

__global__ void fill_slot_range_kernel(int32_t* slots, int64_t count, int32_t first) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    slots[i] = first + static_cast<int32_t>(i);
  }
}

// One block per gathered token: the row is 36 16-byte vectors (rows start 16-byte aligned: page strides
// and 576 are multiples of 16), the footer entry one 8-byte word (entries are 8-byte aligned).
constexpr int kRowVectors = smla::kRowBytes / 16;

__global__ void gather_records_kernel(smla::CacheLayout source, const int32_t* slots, int64_t count,
                                      smla::CacheLayout destination) {
  for (int64_t i = blockIdx.x; i < count; i += gridDim.x) {
    const int64_t slot = slots[i];
    const auto* from = static_cast<const uint8_t*>(source.data);
    auto* to = static_cast<uint8_t*>(destination.data);
    const auto* row_from = reinterpret_cast<const uint4*>(
        from + smla::slot_row_offset(source.page_block_size, source.page_stride_bytes, slot));
    auto* row_to = reinterpret_cast<uint4*>(
        to + smla::slot_row_offset(destination.page_block_size, destination.page_stride_bytes, i));
    for (int v = threadIdx.x; v < kRowVectors; v += blockDim.x) row_to[v] = row_from[v];
    if (threadIdx.x == 0) {
      *reinterpret_cast<uint2*>(
          to + smla::slot_scale_offset(destination.page_block_size, destination.page_stride_bytes, i)) =
          *reinterpret_cast<const uint2*>(
              from + smla::slot_scale_offset(source.page_block_size, source.page_stride_bytes, slot));
    }
  }
}

__device__ uint64_t global_timer_ns() {
  uint64_t now;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
  return now;
}

__global__ void spin_kernel(uint64_t nanoseconds) {
  const uint64_t start = global_timer_ns();
  while (global_timer_ns() - start < nanoseconds) {
  }
}

}  // namespace

cudaError_t launch_fill_random_bf16(uint16_t* destination, int64_t count, uint64_t seed, uint64_t first_value,
                                    cudaStream_t stream) {
  fill_random_bf16_kernel<<<grid_for(count), kThreadsPerBlock, 0, stream>>>(destination, count, seed,
                                                                            first_value);
  return cudaGetLastError();
}

cudaError_t launch_fill_slot_range(int32_t* slots, int64_t count, int32_t first, cudaStream_t stream) {
  fill_slot_range_kernel<<<grid_for(count), kThreadsPerBlock, 0, stream>>>(slots, count, first);
  return cudaGetLastError();
}

cudaError_t launch_gather_records(const smla::CacheLayout& source, const int32_t* slots, int64_t count,
                                  const smla::CacheLayout& destination, cudaStream_t stream) {
  if (count <= 0) return cudaSuccess;
  const unsigned blocks = static_cast<unsigned>(std::min<int64_t>(count, kMaxBlocks));
  gather_records_kernel<<<blocks, 64, 0, stream>>>(source, slots, count, destination);
  return cudaGetLastError();
}

cudaError_t launch_spin(uint64_t nanoseconds, cudaStream_t stream) {
  spin_kernel<<<1, 1, 0, stream>>>(nanoseconds);
  return cudaGetLastError();
}

}  // namespace smla_bench
