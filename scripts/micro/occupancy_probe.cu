// Occupancy of the 99 KB-class decode kernels as built in this tree: registers, local memory and the
// resident CTAs per SM the driver grants at their shared-memory size (with the max-shared carveout).
// On the GPU machine (scripts/micro/v86_call does it for .ab trees):
//   nvcc -std=c++20 -O3 -gencode arch=compute_90a,code=sm_90a -Iinclude -Isrc \
//       scripts/micro/occupancy_probe.cu -o /tmp/occupancy_probe && /tmp/occupancy_probe
#include <cstdio>
#include "cuda/decode/kernel_compact.cuh"

using namespace smla::detail::decode;

template <class Config>
void report(const char* name) {
  auto kernel = sparse_mla_decode_compact_kernel<Config>;
  cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(Config::kSharedBytes));
  cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout, 100);
  cudaFuncAttributes attributes{};
  cudaFuncGetAttributes(&attributes, kernel);
  int blocks = 0;
  cudaError_t error = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, kernel, Config::kThreads, Config::kSharedBytes);
  std::printf("%s: %d registers, %zu local bytes, %zu shared bytes, min blocks %d -> %d CTAs per SM (%s)\n", name,
              attributes.numRegs, attributes.localSizeBytes, Config::kSharedBytes, Config::kMinBlocksPerSm, blocks,
              cudaGetErrorString(error));
}

int main() {
  report<CompactConfigHeads16>("mma99-h16");
  report<CompactConfigHeads32>("mma99-h32");
  return 0;
}
