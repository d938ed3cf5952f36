// Instantiation: 64 heads per CTA with warpgroup MMAs (sm_90a). Built in every architecture pass, but
// only the sm_90a pass emits the wgmma instructions (the others compile a trap); the launcher runs it
// only on a compute capability 9.0 device whose loaded binary for it is the sm_90 one.
#include <atomic>

#include "cuda/decode/kernel.h"
#include "cuda/decode/launch.cuh"

namespace smla::detail::decode {

namespace {
std::atomic<bool> hopper_decode_enabled{true};
}  // namespace

void set_hopper_decode_enabled(bool enabled) { hopper_decode_enabled.store(enabled); }

bool hopper_decode_available(int device) {
  if (!hopper_decode_enabled.load(std::memory_order_relaxed)) return false;
  static std::atomic<uint64_t> known{0}, available{0};  // bit d: device d answered / can run it (d < 64)
  if (device < 0 || device >= 64) return false;
  const uint64_t bit = uint64_t{1} << device;
  if ((known.load(std::memory_order_acquire) & bit) == 0) {
    int major = 0, minor = 0;
    cudaFuncAttributes attributes = {};
    const bool queried =
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) == cudaSuccess &&
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device) == cudaSuccess &&
        cudaFuncGetAttributes(&attributes, sparse_mla_decode_kernel<DecodeConfigHeads64Sm90>) == cudaSuccess;
    if (!queried) {
      (void)cudaGetLastError();  // a failed query is not the caller's error
      return false;
    }
    // binaryVersion 90: the sm_90a cubin was built and loaded (an sm_80 cubin would run the trap body).
    if (major == 9 && minor == 0 && attributes.binaryVersion == 90)
      available.fetch_or(bit, std::memory_order_acq_rel);
    known.fetch_or(bit, std::memory_order_acq_rel);
  }
  return (available.load(std::memory_order_acquire) & bit) != 0;
}

Status launch_sparse_decode_heads64_sm90(const DecodeParams& params, int device, cudaStream_t stream) {
  return launch_sparse_decode<DecodeConfigHeads64Sm90>(params, device, stream);
}

}  // namespace smla::detail::decode
