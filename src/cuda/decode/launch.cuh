// The launch template shared by the instantiation units: shared-memory opt-in (cached per device) and
// the grid of one (split, head block, query row) per CTA.
#pragma once

#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>

#include "cuda/common/cuda_check.h"
#include "cuda/decode/kernel.cuh"

namespace smla::detail::decode {

// More than 48 KiB of dynamic shared memory needs an explicit opt-in per kernel and device. It is done
// once (the first call on each device) and remembered, so the run path stays a bare launch.
template <class Config>
Status ensure_shared_memory_limit(int device) {
  static std::atomic<uint64_t> configured_devices{0};  // bit d: done for device d (d < 64)
  const uint64_t bit = device >= 0 && device < 64 ? (uint64_t{1} << device) : 0;
  if (bit != 0 && (configured_devices.load(std::memory_order_acquire) & bit) != 0) return Status::Ok();
  SMLA_CUDA_CHECK(cudaFuncSetAttribute(sparse_mla_decode_kernel<Config>,
                                       cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       static_cast<int>(Config::kSharedBytes)));
  configured_devices.fetch_or(bit, std::memory_order_acq_rel);
  return Status::Ok();
}

template <class Config>
Status launch_sparse_decode(const DecodeParams& params, int device, cudaStream_t stream) {
  SMLA_RETURN_IF_ERROR(ensure_shared_memory_limit<Config>(device));
  const int64_t rows = static_cast<int64_t>(params.batch) * params.seq_q;
  const dim3 grid(static_cast<unsigned>(rows * params.num_splits),
                  static_cast<unsigned>((params.num_heads + Config::kHeadBlock - 1) / Config::kHeadBlock));
  sparse_mla_decode_kernel<Config><<<grid, Config::kThreads, Config::kSharedBytes, stream>>>(params);
  SMLA_CUDA_CHECK_LAUNCH("sparse_mla_decode_kernel");
  return Status::Ok();
}

}  // namespace smla::detail::decode
