// Instantiation: 16 heads per CTA (1 MMA row group x 8 warps), for h <= 16.
#include "cuda/decode/kernel.h"
#include "cuda/decode/launch.cuh"

namespace smla::detail::decode {

Status launch_sparse_decode_heads16(const DecodeParams& params, int device, cudaStream_t stream) {
  return launch_sparse_decode<DecodeConfigHeads16>(params, device, stream);
}

}  // namespace smla::detail::decode
