// cp.async (sm_80+) helpers: global -> shared copies that bypass registers, so the next tile's bytes are
// in flight while the current tile runs its MMAs. A false `valid` copies nothing from global memory and
// zero-fills the destination (src-size 0), which is how masked entries become zero rows.
#pragma once

#include <cstdint>

namespace smla::detail::decode {

// 16 bytes, cached in L2 only (.cg): cache rows are read once per CTA.
__device__ __forceinline__ void cp_async_16(uint32_t shared_destination, const void* source, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(shared_destination), "l"(source),
               "r"(valid ? 16 : 0)
               : "memory");
}

// 8 bytes (a token's scale footer); .cg only allows 16-byte copies.
__device__ __forceinline__ void cp_async_8(uint32_t shared_destination, const void* source, bool valid) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 8, %2;\n" ::"r"(shared_destination), "l"(source),
               "r"(valid ? 8 : 0)
               : "memory");
}

// 4 bytes (one word of a scale footer).
__device__ __forceinline__ void cp_async_4(uint32_t shared_destination, const void* source, bool valid) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(shared_destination), "l"(source),
               "r"(valid ? 4 : 0)
               : "memory");
}

__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }

// Waits for all of this thread's committed copies but the most recent group (e.g. Q, committed before the
// first tile's rows); a __syncthreads() after it publishes them to the CTA.
__device__ __forceinline__ void cp_async_wait_all_but_newest() {
  asm volatile("cp.async.wait_group 1;\n" ::: "memory");
}

// Waits for all of this thread's committed copies; a __syncthreads() after it publishes them to the CTA.
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_group 0;\n" ::: "memory"); }

}  // namespace smla::detail::decode
