// Programmatic dependent launch (PDL), device side: the two griddepcontrol instructions, no-ops before
// sm_90 and in a kernel launched without the attribute (programmatic_launch.h).
#pragma once

namespace smla::detail {

// Blocks until the grids this one depends on (the previous kernel on the stream) have completed and their
// memory operations are visible. Call it in every thread before the first global read or write.
__device__ __forceinline__ void wait_for_prerequisite_grids() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}

// Lets the next kernel on the stream (if launched with PDL) be scheduled once every CTA of this grid has
// called this or exited. It still waits for this grid's completion before touching memory, so this only
// decides when its CTAs may become resident.
__device__ __forceinline__ void allow_dependent_launch() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}

}  // namespace smla::detail
