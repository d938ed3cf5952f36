// device_has_programmatic_launch: one attribute query (and one kernel-image query) per device, then a bit
// test.
#include "cuda/common/programmatic_launch.h"

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace smla::detail {

namespace {

// SMLA_PROGRAMMATIC_LAUNCH=0 launches every kernel with plain stream order (read once per process): for
// comparing timings, or for a capture environment that mishandles programmatic edges.
bool programmatic_launch_switched_off() {
  static const bool off = [] {
    const char* value = std::getenv("SMLA_PROGRAMMATIC_LAUNCH");
    return value != nullptr && std::strcmp(value, "0") == 0;
  }();
  return off;
}

}  // namespace

bool device_has_programmatic_launch(int device) {
  static std::atomic<uint64_t> known{0}, supported{0};  // bit d: device d answered / takes PDL (d < 64)
  if (device < 0 || device >= 64 || programmatic_launch_switched_off()) return false;
  const uint64_t bit = uint64_t{1} << device;
  if ((known.load(std::memory_order_acquire) & bit) == 0) {
    int major = 0;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess) {
      (void)cudaGetLastError();  // a failed query is not the caller's error: launch without PDL
      return false;
    }
    // The kernels' image is asked for only where the device could take PDL at all.
    if (major >= 9 && programmatic_launch_usable(major, library_kernel_ptx_version(device)))
      supported.fetch_or(bit, std::memory_order_acq_rel);
    known.fetch_or(bit, std::memory_order_acq_rel);
  }
  return (supported.load(std::memory_order_acquire) & bit) != 0;
}

}  // namespace smla::detail
