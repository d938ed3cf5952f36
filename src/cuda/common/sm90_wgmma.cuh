// Warpgroup tensor-core helpers for sm_90a (wgmma.mma_async): shared-memory matrix descriptors with the
// 128-byte swizzle, the bf16 m64nNk16 MMAs the decode kernel uses (kernel_sm90.cuh), and the proxy fence that
// makes plain shared-memory stores visible to them. Only the sm_90a device pass emits the instructions; every
// other pass (sm_80, host) compiles a trap, and the launcher never picks the kernel there (launch.cuh).
//
// Operand layout (the "128B swizzle" atom): 8 rows of 128 bytes (64 bf16) at a 128-byte stride, the
// 16-byte chunk j of row r stored at chunk position j ^ (r & 7); atoms 1024-byte aligned. A 512-wide
// row is 8 such 64-wide column blocks, each block a separate [rows][128 B] region.
// Accumulator layout of m64nNk16 (fp32): warp w of the warpgroup holds rows 16w + lane / 4 (+8),
// register 4j + e = (row + 8 (e / 2), col 8j + 2 (lane % 4) + e % 2): per 8-column block the layout of
// an mma.sync m16n8 C fragment.
#pragma once

#include <cstdint>

namespace smla::detail::wgmma {

// The launcher picks the wgmma kernel on a compute capability 9.0 device whose loaded binary is sm_90
// (cudaFuncAttributes::binaryVersion), which cannot tell sm_90 from sm_90a: a plain sm_90 build would
// pick the trap body, so it is refused here.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ == 900 && !defined(__CUDA_ARCH_FEAT_SM90_ALL)
#error "smla: build Hopper as 90a (CMAKE_CUDA_ARCHITECTURES=90a), not 90: the sm_90 decode kernel uses wgmma"
#endif

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define SMLA_WGMMA_ENABLED 1
#else
#define SMLA_WGMMA_ENABLED 0
#endif

// Descriptor of a swizzled operand at shared address `address` (1024-aligned atom rows, so base offset
// 0): bits 0-13 address / 16, 16-29 leading byte offset / 16, 32-45 stride byte offset / 16, 62-63
// layout (1 = 128-byte swizzle).
__device__ __forceinline__ uint64_t make_descriptor(uint32_t address, uint32_t leading_bytes,
                                                    uint32_t stride_bytes) {
  return static_cast<uint64_t>((address >> 4) & 0x3fffu) |
         (static_cast<uint64_t>((leading_bytes >> 4) & 0x3fffu) << 16) |
         (static_cast<uint64_t>((stride_bytes >> 4) & 0x3fffu) << 32) | (uint64_t{1} << 62);
}

// The descriptor of (the descriptor's address + offset_bytes): one 32-bit add. Shared-memory addresses are
// below 256 KB, so the 14-bit address field never carries into the bits above it.
__device__ __forceinline__ uint64_t advance_descriptor(uint64_t descriptor, uint32_t offset_bytes) {
  const uint32_t low = static_cast<uint32_t>(descriptor) + (offset_bytes >> 4);
  return (descriptor & 0xffffffff00000000ull) | low;
}

// Plain (generic-proxy) shared-memory stores by this thread become visible to later wgmma reads (async
// proxy) once a barrier follows.
__device__ __forceinline__ void fence_shared_for_async_proxy() {
#if SMLA_WGMMA_ENABLED
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}

// Orders this warpgroup's accumulator register accesses before the following wgmma.
__device__ __forceinline__ void fence_operands() {
#if SMLA_WGMMA_ENABLED
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}

// Closes the wgmma instructions issued since the last commit into one group.
__device__ __forceinline__ void commit_group() {
#if SMLA_WGMMA_ENABLED
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#endif
}

// Waits until at most `Pending` committed groups of this warpgroup are in flight (they complete in order).
template <int Pending>
__device__ __forceinline__ void wait_groups() {
#if SMLA_WGMMA_ENABLED
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(Pending) : "memory");
#endif
}

// Marks accumulator registers as written here, after the wait for their wgmma: the compiler must not
// move a use of them above the wait (it sees the wgmma asm as having written them at issue).
template <int N>
__device__ __forceinline__ void fence_accumulators(float (&d)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(d[i])::"memory");
}

__device__ __forceinline__ void commit_and_wait_all() {
  commit_group();
  wait_groups<0>();
}

// d (64 x 32, fp32) += A (64 x 16, K-major) * B (16 x 32, K-major: stored [n][k]).
__device__ __forceinline__ void mma_m64n32k16_kk(float (&d)[16], uint64_t a, uint64_t b) {
#if SMLA_WGMMA_ENABLED
  asm volatile(
      "{\n.reg .pred accumulate;\nsetp.ne.b32 accumulate, %18, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n32k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}, %16, %17, accumulate, 1, 1, "
      "0, "
      "0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15])
      : "l"(a), "l"(b), "r"(1)
      : "memory");
#else
  __trap();
#endif
}

// d (64 x 128, fp32) += A (64 x 16, K-major) * B (16 x 128, MN-major: stored [k][n], transposed read).
__device__ __forceinline__ void mma_m64n128k16_kt(float (&d)[64], uint64_t a, uint64_t b) {
#if SMLA_WGMMA_ENABLED
  asm volatile(
      "{\n.reg .pred accumulate;\nsetp.ne.b32 accumulate, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, "
      "%22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, "
      "%42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, "
      "%62, %63}, "
      "%64, %65, accumulate, 1, 1, 0, 1;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]),
        "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]),
        "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]),
        "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]),
        "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]),
        "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]),
        "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
      : "l"(a), "l"(b), "r"(1)
      : "memory");
#else
  __trap();
#endif
}

}  // namespace smla::detail::wgmma
