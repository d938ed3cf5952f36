// The swizzled shared-memory layout of the mma.sync decode kernels' operand tiles (Q, K = V and P; the
// portable kernel, kernel.cuh, and the 99 KB-class kernel, kernel_compact.cuh), read with ldmatrix. The
// sm_90a kernel uses the wgmma layout instead (kernel_sm90.cuh).
#pragma once

#include <cstdint>

#include "cuda/decode/config.h"

namespace smla::detail::decode {

// Byte offset of logical 16-byte chunk `chunk` of row `row` in a swizzled shared tile whose rows are
// `ChunksPerRow` chunks long. Rows of >= 8 chunks XOR the chunk with the low three row bits. Rows of 4
// chunks (the P tile of a 32-token kernel: two rows per 128-byte bank line) XOR with row bits 1..2, so the
// 8 rows of one ldmatrix still land in 8 different 16-byte bank groups.
template <int ChunksPerRow>
__device__ __forceinline__ uint32_t swizzled_offset(int row, int chunk) {
  static_assert(ChunksPerRow >= 8 || ChunksPerRow == 4, "swizzle defined for rows of 4 or >= 8 chunks");
  const int swizzle = ChunksPerRow >= 8 ? (row & 7) : ((row >> 1) & 3);
  return static_cast<uint32_t>((row * ChunksPerRow + (chunk ^ swizzle)) * kChunkBytes);
}

// Byte offset of 16-byte chunk `chunk` of row `row` of a 512-wide operand tile (Q or K): one swizzled
// 1024-byte row.
template <class Config>
__device__ __forceinline__ uint32_t operand_offset(int row, int chunk) {
  return swizzled_offset<Config::kHeadDimChunks>(row, chunk);
}

}  // namespace smla::detail::decode
