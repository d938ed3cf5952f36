// Instantiation: 64 heads per CTA (4 MMA row groups x 2 warps).
#include "cuda/decode/kernel.cuh"
#include "cuda/decode/kernel.h"
#include "cuda/decode/launch.cuh"

namespace smla::detail::decode {

Status launch_sparse_decode_heads64(const DecodeParams& params, int device, cudaStream_t stream) {
  return launch_decode_kernel<DecodeConfigHeads64, sparse_mla_decode_kernel<DecodeConfigHeads64>>(
      params, device, stream);
}

}  // namespace smla::detail::decode
