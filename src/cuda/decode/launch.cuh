// The launch template shared by the instantiation units: the shared-memory opt-in and the grid of one
// (split, head block, query row) per CTA.
#pragma once

#include <cuda_runtime.h>

#include "cuda/common/cuda_check.h"
#include "cuda/common/shared_memory_limit.h"
#include "cuda/decode/kernel.cuh"

namespace smla::detail::decode {

template <class Config>
Status launch_sparse_decode(const DecodeParams& params, int device, cudaStream_t stream) {
  SMLA_RETURN_IF_ERROR(ensure_shared_memory_limit<sparse_mla_decode_kernel<Config>>(device, Config::kSharedBytes));
  const int64_t rows = static_cast<int64_t>(params.batch) * params.seq_q;
  const dim3 grid(static_cast<unsigned>(rows * params.num_splits),
                  static_cast<unsigned>((params.num_heads + Config::kHeadBlock - 1) / Config::kHeadBlock));
  sparse_mla_decode_kernel<Config><<<grid, Config::kThreads, Config::kSharedBytes, stream>>>(params);
  SMLA_CUDA_CHECK_LAUNCH("sparse_mla_decode_kernel");
  return Status::Ok();
}

}  // namespace smla::detail::decode
