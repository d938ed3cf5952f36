// The launch template shared by the instantiation units: the shared-memory opt-in and the grid of one
// (split, head block, query row) per CTA, launched as a programmatic dependent of the previous kernel on
// the stream where the device supports it (the kernel waits for it before touching memory).
#pragma once

#include <cuda_runtime.h>

#include "cuda/common/cuda_check.h"
#include "cuda/common/programmatic_launch.h"
#include "cuda/common/shared_memory_limit.h"
#include "cuda/decode/kernel.cuh"

namespace smla::detail::decode {

template <class Config>
Status launch_sparse_decode(const DecodeParams& params, int device, cudaStream_t stream) {
  SMLA_RETURN_IF_ERROR(
      ensure_shared_memory_limit<sparse_mla_decode_kernel<Config>>(device, Config::kSharedBytes));
  const int64_t rows = static_cast<int64_t>(params.batch) * params.seq_q;
  cudaLaunchConfig_t config = {};
  config.gridDim =
      dim3(static_cast<unsigned>(rows * params.num_splits),
           static_cast<unsigned>((params.num_heads + Config::kHeadBlock - 1) / Config::kHeadBlock));
  config.blockDim = dim3(Config::kThreads);
  config.dynamicSmemBytes = Config::kSharedBytes;
  config.stream = stream;
  cudaLaunchAttribute attribute = programmatic_launch_attribute();
  config.attrs = &attribute;
  config.numAttrs = device_has_programmatic_launch(device) ? 1 : 0;
  SMLA_CUDA_CHECK(cudaLaunchKernelEx(&config, sparse_mla_decode_kernel<Config>, params));
  return Status::Ok();
}

}  // namespace smla::detail::decode
