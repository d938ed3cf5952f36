// The launch template shared by the mma.sync instantiation units: the shared-memory opt-in and the grid of
// one (split, head block, query row) per CTA, launched as a programmatic dependent of the previous kernel on
// the stream where the device supports it (the kernel waits for it before touching memory).
#pragma once

#include <cuda_runtime.h>

#include "common/decode_params.h"
#include "common/split_grid.h"
#include "cuda/common/cuda_check.h"
#include "cuda/common/shared_memory_limit.h"
#include "cuda/decode/launch_config.h"

namespace smla::detail::decode {

// `Kernel` is a decode kernel instantiated for `Config` (head block, threads, shared bytes).
template <class Config, auto Kernel>
Status launch_decode_kernel(const DecodeParams& params, int device, cudaStream_t stream) {
  SMLA_RETURN_IF_ERROR(ensure_shared_memory_limit<Kernel>(device, Config::kSharedBytes));
  const DecodeLaunch launch(params, Config::kHeadBlock, Config::kThreads, Config::kSharedBytes, device,
                            stream);
  DecodeParams placed = params;
  set_split_grid_divisors(placed, Config::kHeadBlock);
  SMLA_CUDA_CHECK(cudaLaunchKernelEx(launch.config(), Kernel, placed));
  return Status::Ok();
}

}  // namespace smla::detail::decode
