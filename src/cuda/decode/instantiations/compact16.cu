// Instantiation: the 99 KB-class kernel with 16 heads per CTA (4 warps, one 8-token slice each, 32-token
// compute tiles), for calls that would use 16-head blocks where that block does not fit.
#include "cuda/decode/kernel.h"
#include "cuda/decode/launch.cuh"

namespace smla::detail::decode {

Status launch_sparse_decode_compact16(const DecodeParams& params, int device, cudaStream_t stream) {
  return launch_sparse_decode<DecodeConfigCompact16>(params, device, stream);
}

}  // namespace smla::detail::decode
