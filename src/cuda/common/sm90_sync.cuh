// Synchronization between warp-specialized warpgroups on sm_90a: shared-memory mbarriers (a producer
// fills a buffer and arrives, consumers wait on the phase), named barriers over a subset of the CTA, and
// setmaxnreg (moves registers from the producer warpgroup to the consumers). As in sm90_wgmma.cuh, only
// the sm_90a device pass emits the instructions; every other pass compiles a trap.
#pragma once

#include <cstdint>

#include "cuda/common/sm90_wgmma.cuh"

namespace smla::detail::sm90 {

// An mbarrier at shared address `barrier` that completes a phase after `arrivals` arrive() calls.
__device__ __forceinline__ void mbarrier_init(uint32_t barrier, uint32_t arrivals) {
#if SMLA_WGMMA_ENABLED
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(barrier), "r"(arrivals) : "memory");
#else
  __trap();
#endif
}

// One arrival (release semantics at CTA scope: this thread's earlier shared-memory writes are visible to
// a thread whose wait observes the phase completion).
__device__ __forceinline__ void mbarrier_arrive(uint32_t barrier) {
#if SMLA_WGMMA_ENABLED
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(barrier) : "memory");
#else
  __trap();
#endif
}

// Spins until the phase with parity `parity` has completed. A fresh barrier is in phase 0, so waiting
// for parity 1 returns at once (the "previous" phase counts as complete): producers start their
// buffer-free waits with parity 1.
__device__ __forceinline__ void mbarrier_wait(uint32_t barrier, uint32_t parity) {
#if SMLA_WGMMA_ENABLED
  asm volatile(
      "{\n"
      ".reg .pred complete;\n"
      "smla_mbarrier_retry:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 complete, [%0], %1;\n"
      "@!complete bra smla_mbarrier_retry;\n"
      "}\n" ::"r"(barrier),
      "r"(parity)
      : "memory");
#else
  __trap();
#endif
}

// Barrier `id` (1..15; 0 is __syncthreads) among `threads` threads, a multiple of 32.
__device__ __forceinline__ void named_barrier_sync(uint32_t id, uint32_t threads) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

template <int Registers>
__device__ __forceinline__ void release_registers() {
  static_assert(Registers >= 24 && Registers <= 256 && Registers % 8 == 0, "setmaxnreg range");
#if SMLA_WGMMA_ENABLED
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(Registers));
#endif
}

template <int Registers>
__device__ __forceinline__ void claim_registers() {
  static_assert(Registers >= 24 && Registers <= 256 && Registers % 8 == 0, "setmaxnreg range");
#if SMLA_WGMMA_ENABLED
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(Registers));
#endif
}

// 16 bytes from global memory that this CTA reads once: not kept in L1.
__device__ __forceinline__ uint4 load_global_stream_16(const void* address) {
  uint4 value;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(value.x), "=r"(value.y), "=r"(value.z), "=r"(value.w)
               : "l"(address));
  return value;
}

__device__ __forceinline__ uint2 load_global_stream_8(const void* address) {
  uint2 value;
  asm volatile("ld.global.nc.L1::no_allocate.v2.u32 {%0, %1}, [%2];\n"
               : "=r"(value.x), "=r"(value.y)
               : "l"(address));
  return value;
}

// ---- Thread-block clusters (sm_90): CTAs of one cluster read each other's shared memory.

// Every thread of every CTA in the cluster arrives and waits; shared-memory writes before it are
// visible to the cluster's reads after it.
__device__ __forceinline__ void cluster_sync() {
#if SMLA_WGMMA_ENABLED
  asm volatile("barrier.cluster.arrive.release.aligned;\nbarrier.cluster.wait.acquire.aligned;\n" ::
                   : "memory");
#else
  __trap();
#endif
}

__device__ __forceinline__ uint32_t cluster_rank() {
  uint32_t rank = 0;
#if SMLA_WGMMA_ENABLED
  asm volatile("mov.u32 %0, %%cluster_ctarank;\n" : "=r"(rank));
#endif
  return rank;
}

// The shared::cluster address of this CTA's shared address `address` in the CTA of rank `rank`.
__device__ __forceinline__ uint32_t map_to_rank(uint32_t address, uint32_t rank) {
  uint32_t mapped = 0;
#if SMLA_WGMMA_ENABLED
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;\n" : "=r"(mapped) : "r"(address), "r"(rank));
#else
  __trap();
#endif
  return mapped;
}

__device__ __forceinline__ float4 load_cluster_f32x4(uint32_t cluster_address) {
  float4 value = make_float4(0.f, 0.f, 0.f, 0.f);
#if SMLA_WGMMA_ENABLED
  asm volatile("ld.shared::cluster.v4.f32 {%0, %1, %2, %3}, [%4];\n"
               : "=f"(value.x), "=f"(value.y), "=f"(value.z), "=f"(value.w)
               : "r"(cluster_address)
               : "memory");
#endif
  return value;
}

__device__ __forceinline__ float2 load_cluster_f32x2(uint32_t cluster_address) {
  float2 value = make_float2(0.f, 0.f);
#if SMLA_WGMMA_ENABLED
  asm volatile("ld.shared::cluster.v2.f32 {%0, %1}, [%2];\n"
               : "=f"(value.x), "=f"(value.y)
               : "r"(cluster_address)
               : "memory");
#endif
  return value;
}

}  // namespace smla::detail::sm90
