// Small CUDA kernels of smla-bench (random fill, slot ranges, record gather, a timed spin). Host
// launchers return the launch's cudaError_t; they never synchronize.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "smla/cache.h"

namespace smla_bench {

cudaError_t launch_fill_random_bf16(uint16_t* destination, int64_t count, uint64_t seed, uint64_t first_value,
                                    cudaStream_t stream);
cudaError_t launch_fill_slot_range(int32_t* slots, int64_t count, int32_t first, cudaStream_t stream);
// Destination slot i receives the 576-byte row and 8-byte footer entry of source slot slots[i].
cudaError_t launch_gather_records(const smla::CacheLayout& source, const int32_t* slots, int64_t count,
                                  const smla::CacheLayout& destination, cudaStream_t stream);
// Busy-waits on the device for `nanoseconds`, so that the host can enqueue a batch of timed replays
// behind it and the timings measure the device, not the host's launch rate.
cudaError_t launch_spin(uint64_t nanoseconds, cudaStream_t stream);

}  // namespace smla_bench
