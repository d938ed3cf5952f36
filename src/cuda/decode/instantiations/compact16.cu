// Instantiation: the 99 KB-class kernel with 16 heads per CTA (8 warps, one 64-dim slice of Q, S and O
// each; 32-token compute tiles), for calls that would use 16-head blocks where that block does not fit.
#include "cuda/decode/kernel.h"
#include "cuda/decode/kernel_compact.cuh"
#include "cuda/decode/launch.cuh"

namespace smla::detail::decode {

Status launch_sparse_decode_compact16(const DecodeParams& params, int device, cudaStream_t stream) {
  return launch_decode_kernel<CompactConfigHeads16, sparse_mla_decode_compact_kernel<CompactConfigHeads16>>(
      params, device, stream);
}

}  // namespace smla::detail::decode
