// Instantiation: the 32-head 99 KB-class kernel with the register gather (kernel_compact.cuh,
// RegisterGather), for calls whose CTAs walk many tiles (register_gather_pays, config_compact.h).
#include "cuda/decode/kernel.h"
#include "cuda/decode/kernel_compact.cuh"
#include "cuda/decode/launch.cuh"

namespace smla::detail::decode {

Status launch_sparse_decode_compact32_registers(const DecodeParams& params, int device, cudaStream_t stream) {
  return launch_decode_kernel<
      CompactConfigHeads32, sparse_mla_decode_compact_kernel<CompactConfigHeads32, /*RegisterGather=*/true>>(
      params, device, stream);
}

}  // namespace smla::detail::decode
