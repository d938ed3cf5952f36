// Warp-level tensor-core helpers for the portable (sm_80+) kernels: ldmatrix loads from shared
// memory, the movmatrix transpose and the bf16 m16n8k16 MMA with fp32 accumulation (inline PTX, so no CUTLASS
// dependency).
//
// Fragment layouts (PTX ISA, "mma.m16n8k16" for .bf16), with g = lane / 4 and c = lane % 4:
//   A (16x16, row-major)  reg0: (g, 2c..2c+1)  reg1: (g+8, 2c..)  reg2: (g, 8+2c..)  reg3: (g+8, 8+2c..)
//   B (16x8, k x n)       reg0: (k = 2c..2c+1, n = g)              reg1: (k = 8+2c.., n = g)
//   C (16x8, fp32)        c0,c1: (g, 2c..2c+1)                     c2,c3: (g+8, 2c..2c+1)
#pragma once

#include <cstdint>

namespace smla::detail::mma {

// Shared-memory address (32-bit, .shared window) of a generic pointer into shared memory.
__device__ __forceinline__ uint32_t shared_address(const void* pointer) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(pointer));
}

// Four 8x8 b16 matrices; lanes 8i..8i+7 give the row addresses of matrix i, register i receives
// matrix i with thread t holding (row t/4, cols 2(t%4)..+1). The "memory" clobber keeps the compiler
// from moving these loads across the plain shared-memory stores that filled the tile.
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&regs)[4], uint32_t address) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(regs[0]), "=r"(regs[1]), "=r"(regs[2]), "=r"(regs[3])
               : "r"(address)
               : "memory");
}

// As ldmatrix_x4, but each matrix is transposed on the way: thread t holds (rows 2(t%4)..+1, col t/4)
// of the stored matrix. Used to read V = K tile [token][dim] as the k-major B operand.
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&regs)[4], uint32_t address) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(regs[0]), "=r"(regs[1]), "=r"(regs[2]), "=r"(regs[3])
               : "r"(address)
               : "memory");
}

// The 8x8 b16 matrix the warp holds in `value` (thread t: row t/4, cols 2(t%4)..+1), transposed: thread t
// receives (rows 2(t%4)..+1, col t/4) of it. sm_75+. Turns row-major K fragments into V's k-major ones
// without a round trip through shared memory.
__device__ __forceinline__ uint32_t movmatrix_trans(uint32_t value) {
  uint32_t result;
  asm volatile("movmatrix.sync.aligned.m8n8.trans.b16 %0, %1;\n" : "=r"(result) : "r"(value));
  return result;
}

// accumulator += A (16x16 bf16) * B (16x8 bf16), fp32 accumulation.
__device__ __forceinline__ void mma_bf16_m16n8k16(float (&accumulator)[4], const uint32_t (&a)[4],
                                                  uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(accumulator[0]), "+f"(accumulator[1]), "+f"(accumulator[2]), "+f"(accumulator[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

}  // namespace smla::detail::mma
