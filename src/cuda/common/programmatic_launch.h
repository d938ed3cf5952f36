// Programmatic dependent launch (PDL, sm_90+), host side. A kernel launched with the attribute may be
// scheduled while the previous kernel on its stream is still finishing, instead of after it has drained
// (in a CUDA graph the edge is captured as a programmatic one). Every smla kernel launched this way waits
// for its prerequisite grid (programmatic_launch.cuh) before it reads or writes global memory, so the
// attribute only overlaps launch and scheduling latency with the previous kernel's tail.
#pragma once

#include <cuda_runtime.h>

namespace smla::detail {

// Whether kernels on `device` are launched with programmatic dependent launch: compute capability >= 9.0
// (asked once per device and remembered) and not switched off by SMLA_PROGRAMMATIC_LAUNCH=0.
bool device_has_programmatic_launch(int device);

// The launch attribute that allows programmatic serialization with the previous kernel on the stream.
inline cudaLaunchAttribute programmatic_launch_attribute() {
  cudaLaunchAttribute attribute = {};
  attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute.val.programmaticStreamSerializationAllowed = 1;
  return attribute;
}

}  // namespace smla::detail
