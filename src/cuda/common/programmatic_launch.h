// Programmatic dependent launch (PDL, sm_90+), host side. A kernel launched with the attribute may be
// scheduled while the previous kernel on its stream is still finishing, instead of after it has drained
// (in a CUDA graph the edge is captured as a programmatic one). Every smla kernel launched this way waits
// for its prerequisite grid (programmatic_launch.cuh) before it reads or writes global memory, so the
// attribute only overlaps launch and scheduling latency with the previous kernel's tail.
#pragma once

#include <cuda_runtime.h>

namespace smla::detail {

// Whether a kernel whose loaded image was compiled from `kernel_ptx_version` code (cudaFuncAttributes::
// ptxVersion: 90 for sm_90a code, 120 for sm_120, 89 for the compute_89 PTX that a B200 JIT-compiles) may be
// launched programmatically on a device of compute capability major `cc_major`. The device must schedule
// PDL (sm_90+), and the kernel must hold the griddepcontrol.wait that programmatic_launch.cuh compiles only
// for sm_90+ targets: a kernel JIT-compiled from older PTX has none, and launched programmatically after a
// kernel that lets its dependents start early it could read its inputs before that kernel wrote them.
constexpr bool programmatic_launch_usable(int cc_major, int kernel_ptx_version) {
  return cc_major >= 9 && kernel_ptx_version >= 90;
}

// The ptxVersion of the library's kernels as loaded on `device` (a probe kernel compiled like every other
// library kernel: all CUDA units share one architecture list, so the driver picks the same target for
// each), or 0 when the query fails.
int library_kernel_ptx_version(int device);

// Whether kernels on `device` are launched with programmatic dependent launch: programmatic_launch_usable
// for the device's compute capability and the library's loaded kernels (asked once per device and
// remembered), and not switched off by SMLA_PROGRAMMATIC_LAUNCH=0.
bool device_has_programmatic_launch(int device);

// The launch attribute that allows programmatic serialization with the previous kernel on the stream.
inline cudaLaunchAttribute programmatic_launch_attribute() {
  cudaLaunchAttribute attribute = {};
  attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute.val.programmaticStreamSerializationAllowed = 1;
  return attribute;
}

}  // namespace smla::detail
