// Launcher of the cuda-ref backend: one CTA per (query row, 8-head block), no split, no workspace besides
// the error counter (plan.num_splits is ignored).
#include <cuda_runtime.h>

#include <climits>
#include <cstdint>
#include <string>

#include "common/backend_entry.h"
#include "cuda/common/cuda_check.h"
#include "cuda/decode_ref/config.h"
#include "cuda/decode_ref/kernel.cuh"

namespace smla::detail {

Status run_decode_cuda_ref(const Plan& plan, const DecodeParams& params, void* stream) {
  const int64_t head_blocks = head_block_count(params.num_heads, decode_ref::kHeadsPerBlock);
  const int64_t blocks = static_cast<int64_t>(params.batch) * params.seq_q * head_blocks;
  if (blocks <= 0) return Status::Ok();
  if (blocks > INT_MAX) {
    return Status::Unsupported("cuda-ref: batch * seq_q * ceil(num_heads / " +
                               std::to_string(decode_ref::kHeadsPerBlock) + ") = " + std::to_string(blocks) +
                               " exceeds the grid limit");
  }
  decode_ref::decode_ref_kernel<<<static_cast<unsigned>(blocks), decode_ref::kThreads, 0,
                                  static_cast<cudaStream_t>(stream)>>>(params);
  SMLA_CUDA_CHECK_LAUNCH("decode_ref_kernel");
  return Status::Ok();
}

}  // namespace smla::detail
