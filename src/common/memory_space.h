// Where a pointer lives, for the memory-space checks of every decode call (dispatch.cpp).
#pragma once

namespace smla::detail {

enum class MemorySpace {
  kUnregistered,  // plain host memory, or no CUDA driver to ask
  kHost,          // page-locked (registered) host memory
  kDevice,        // device memory of `device`
  kManaged,       // managed memory allocated against `device`
};

struct PointerLocation {
  MemorySpace space = MemorySpace::kUnregistered;
  int device = -1;  // CUDA ordinal for kDevice / kManaged / kHost
};

// One cuPointerGetAttributes query (memory type, managed flag, device ordinal) through the driver entry
// point: tens of nanoseconds, against about a microsecond for cudaPointerGetAttributes, which a call
// paid once per pointer. Falls back to cudaPointerGetAttributes when the driver entry point is missing.
// Nothing is cached: an address freed and reused between calls is asked about again.
PointerLocation locate_pointer(const void* ptr);

}  // namespace smla::detail
