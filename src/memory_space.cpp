// locate_pointer (src/common/memory_space.h): the driver's cuPointerGetAttributes, found once through
// the runtime's driver entry point so that libsmla does not link libcuda.
#include "common/memory_space.h"

#include <cuda.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace smla::detail {
namespace {

using PointerGetAttributesFn = CUresult(CUDAAPI*)(unsigned int, CUpointer_attribute*, void**, CUdeviceptr);

// nullptr when there is no driver (CPU-only machines) or it lacks the symbol.
PointerGetAttributesFn driver_pointer_query() {
  static const PointerGetAttributesFn query = []() -> PointerGetAttributesFn {
    void* entry = nullptr;
    cudaDriverEntryPointQueryResult found = cudaDriverEntryPointSymbolNotFound;
#if CUDART_VERSION >= 12050
    const cudaError_t error =
        cudaGetDriverEntryPointByVersion("cuPointerGetAttributes", &entry, 12000, cudaEnableDefault, &found);
#else
    const cudaError_t error =
        cudaGetDriverEntryPoint("cuPointerGetAttributes", &entry, cudaEnableDefault, &found);
#endif
    if (error != cudaSuccess || found != cudaDriverEntryPointSuccess || entry == nullptr) {
      cudaGetLastError();  // no driver: not the caller's error
      return nullptr;
    }
    return reinterpret_cast<PointerGetAttributesFn>(entry);
  }();
  return query;
}

PointerLocation locate_with_runtime(const void* ptr) {
  cudaPointerAttributes attributes{};
  if (cudaPointerGetAttributes(&attributes, ptr) != cudaSuccess) {
    cudaGetLastError();  // no driver / unregistered pointer on old runtimes: clear the sticky error
    return {};
  }
  switch (attributes.type) {
    case cudaMemoryTypeDevice:
      return {MemorySpace::kDevice, attributes.device};
    case cudaMemoryTypeManaged:
      return {MemorySpace::kManaged, attributes.device};
    case cudaMemoryTypeHost:
      return {MemorySpace::kHost, attributes.device};
    default:
      return {};
  }
}

}  // namespace

PointerLocation locate_pointer(const void* ptr) {
  if (ptr == nullptr) return {};
  const PointerGetAttributesFn query = driver_pointer_query();
  if (query == nullptr) return locate_with_runtime(ptr);
  // Unlike cuPointerGetAttribute, the plural form answers CUDA_SUCCESS with zeroed values for a pointer
  // the driver does not know (plain host memory).
  CUpointer_attribute names[3] = {CU_POINTER_ATTRIBUTE_MEMORY_TYPE, CU_POINTER_ATTRIBUTE_IS_MANAGED,
                                  CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL};
  unsigned int memory_type = 0;
  unsigned int is_managed = 0;
  int device = -1;
  void* values[3] = {&memory_type, &is_managed, &device};
  if (query(3, names, values, static_cast<CUdeviceptr>(reinterpret_cast<uintptr_t>(ptr))) != CUDA_SUCCESS) {
    return locate_with_runtime(ptr);
  }
  if (is_managed != 0) return {MemorySpace::kManaged, device};
  if (memory_type == CU_MEMORYTYPE_DEVICE) return {MemorySpace::kDevice, device};
  if (memory_type == CU_MEMORYTYPE_HOST) return {MemorySpace::kHost, device};
  return {};
}

}  // namespace smla::detail
