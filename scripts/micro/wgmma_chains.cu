// Microbenchmark: cycles per tile of the sm_90a decode kernel's tensor-core chains in isolation (one CTA
// per SM, operands in shared memory, no producer, no softmax): S = Q K^T as v14 issues it (two warpgroups,
// 32 m64n32k16 each over all dims), S split over the dims (16 m64n64k16 each), PV (8 m64n128k16 each, or
// v96's 4 m64n256k16 each), and one warpgroup alone. Evidence for docs/perf.md (v19, v96). Run on the GPU
// machine: scripts/micro/run.
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>

#include "cuda/common/sm90_wgmma.cuh"
using namespace smla::detail;

__device__ __forceinline__ void mma_m64n64k16_kk(float (&d)[32], uint64_t a, uint64_t b) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, "
      "%22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, %32, %33, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]),
        "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]),
        "+f"(d[30]), "+f"(d[31])
      : "l"(a), "l"(b), "r"(1)
      : "memory");
}

template <int Variant>
__global__ void __launch_bounds__(256, 1) bench(float* sink, long long* cycles, int reps) {
  extern __shared__ __align__(1024) uint8_t smem[];
  for (int i = threadIdx.x; i < (192 * 1024) / 16; i += blockDim.x)
    reinterpret_cast<uint4*>(smem)[i] = make_uint4(0, 0, 0, 0);
  __syncthreads();
  wgmma::fence_shared_for_async_proxy();
  __syncthreads();
  const uint32_t base = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  const uint32_t q = base, k = base + 65536;
  const int group = threadIdx.x / 128;
  float acc16[16] = {}, acc32[32] = {};
  float acc64[64] = {};
  float acc128[128] = {};
  long long t0 = clock64();
  for (int r = 0; r < reps; ++r) {
    wgmma::fence_operands();
    if (Variant == 0) {  // v14 S: 32 x m64n32k16 per WG (tokens 32g..)
      const uint32_t krows = k + group * 32 * 128;
#pragma unroll
      for (int ks = 0; ks < 32; ++ks) {
        const uint32_t off = (ks / 4) * 8192 + (ks % 4) * 32;
        wgmma::mma_m64n32k16_kk(acc16, wgmma::make_descriptor(q + off, 16, 1024),
                                wgmma::make_descriptor(krows + off, 16, 1024));
      }
    } else if (Variant == 1) {  // split-K S: 16 x m64n64k16 per WG (dims 256g..)
#pragma unroll
      for (int ks = 0; ks < 16; ++ks) {
        const int kk = group * 16 + ks;
        const uint32_t off = (kk / 4) * 8192 + (kk % 4) * 32;
        mma_m64n64k16_kk(acc32, wgmma::make_descriptor(q + off, 16, 1024),
                         wgmma::make_descriptor(k + off, 16, 1024));
      }
    } else if (Variant == 2) {                          // v14 PV: 4 k-steps x 2 halves m64n128k16 per WG
      const uint32_t p = base + 131072 + 65536 - 8192;  // any 1024-aligned 8 KB
      const uint32_t v = k + group * 4 * 8192;
#pragma unroll
      for (int ks = 0; ks < 4; ++ks)
#pragma unroll
        for (int h = 0; h < 2; ++h)
          wgmma::mma_m64n128k16_kt(reinterpret_cast<float(&)[64]>(acc64[0]),
                                   wgmma::make_descriptor(p + ks * 32, 16, 1024),
                                   wgmma::make_descriptor(v + h * 2 * 8192 + ks * 16 * 128, 8192, 1024));
    } else if (Variant == 5) {  // v96 PV: 4 k-steps x one m64n256k16 per WG
      const uint32_t p = base + 131072 + 65536 - 8192;
      const uint32_t v = k + group * 4 * 8192;
#pragma unroll
      for (int ks = 0; ks < 4; ++ks)
        wgmma::mma_m64n256k16_kt(acc128, wgmma::make_descriptor(p + ks * 32, 16, 1024),
                                 wgmma::make_descriptor(v + ks * 16 * 128, 8192, 1024));
    } else if (Variant == 3) {  // one WG does all-dims S m64n64k16 x 32 (v15 scorer), other idle
      {
#pragma unroll
        for (int ks = 0; ks < 32; ++ks) {
          const uint32_t off = (ks / 4) * 8192 + (ks % 4) * 32;
          mma_m64n64k16_kk(acc32, wgmma::make_descriptor(q + off, 16, 1024),
                           wgmma::make_descriptor(k + off, 16, 1024));
        }
      }
    } else if (Variant == 4) {  // v14 S but only WG 0 (no sharing)
      {
#pragma unroll
        for (int ks = 0; ks < 32; ++ks) {
          const uint32_t off = (ks / 4) * 8192 + (ks % 4) * 32;
          wgmma::mma_m64n32k16_kk(acc16, wgmma::make_descriptor(q + off, 16, 1024),
                                  wgmma::make_descriptor(k + off, 16, 1024));
        }
      }
    }
    wgmma::commit_and_wait_all();
  }
  long long t1 = clock64();
  float s = 0;
  for (int i = 0; i < 16; ++i) s += acc16[i];
  for (int i = 0; i < 32; ++i) s += acc32[i];
  for (int i = 0; i < 64; ++i) s += acc64[i];
  for (float value : acc128) s += value;
  sink[blockIdx.x * blockDim.x + threadIdx.x] = s;
  if (threadIdx.x == 0) cycles[blockIdx.x] = (t1 - t0) / reps;
}

template <int V>
void run(const char* name, float* sink, long long* cycles, int ctas, int threads = 256) {
  cudaFuncSetAttribute(bench<V>, cudaFuncAttributeMaxDynamicSharedMemorySize, 200 * 1024);
  bench<V><<<ctas, threads, 200 * 1024>>>(sink, cycles, 4);
  bench<V><<<ctas, threads, 200 * 1024>>>(sink, cycles, 200);
  long long c[132];
  cudaMemcpy(c, cycles, sizeof(long long) * ctas, cudaMemcpyDeviceToHost);
  printf("%-44s ctas=%3d cycles per rep: %lld (err %s)\n", name, ctas, c[0],
         cudaGetErrorString(cudaGetLastError()));
}

int main() {
  float* sink;
  long long* cycles;
  cudaMalloc(&sink, 132 * 256 * 4);
  cudaMalloc(&cycles, 132 * 8);
  for (int ctas : {1, 132}) {
    run<0>("S v14: 2 WG x 32 m64n32k16", sink, cycles, ctas);
    run<1>("S split-K: 2 WG x 16 m64n64k16", sink, cycles, ctas);
    run<2>("PV v14: 2 WG x 8 m64n128k16", sink, cycles, ctas);
    run<5>("PV v96: 2 WG x 4 m64n256k16", sink, cycles, ctas);
    run<3>("S one WG x 32 m64n64k16", sink, cycles, ctas, 128);
    run<4>("S one WG x 32 m64n32k16", sink, cycles, ctas, 128);
  }
}
