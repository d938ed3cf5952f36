// Instantiation: the 99 KB-class kernel with 32 heads per CTA (4 warps: 2 MMA row groups x 2 token slices,
// 32-token compute tiles), for calls that would use 64-head blocks where that block does not fit.
#include "cuda/decode/kernel.h"
#include "cuda/decode/launch.cuh"

namespace smla::detail::decode {

Status launch_sparse_decode_compact32(const DecodeParams& params, int device, cudaStream_t stream) {
  return launch_sparse_decode<DecodeConfigCompact32>(params, device, stream);
}

}  // namespace smla::detail::decode
