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

// d (64 x 256, fp32) += A (64 x 16, K-major) * B (16 x 256, MN-major: stored [k][n], transposed read): one
// instruction over 4 column blocks (the P V of v96, docs/perf.md; this benchmark is its only user).
__device__ __forceinline__ void mma_m64n256k16_kt(float (&d)[128], uint64_t a, uint64_t b) {
  asm volatile(
      "{\n.reg .pred accumulate;\nsetp.ne.b32 accumulate, %130, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, "
      "%22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, "
      "%42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, "
      "%62, %63, %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, "
      "%82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, %96, %97, %98, %99, %100, %101, "
      "%102, %103, %104, %105, %106, %107, %108, %109, %110, %111, %112, %113, %114, %115, %116, %117, %118, "
      "%119, %120, %121, %122, %123, %124, %125, %126, %127}, "
      "%128, %129, accumulate, 1, 1, 0, 1;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]),
        "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]),
        "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]),
        "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]),
        "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]),
        "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]),
        "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]), "+f"(d[64]),
        "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]),
        "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]),
        "+f"(d[79]), "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]),
        "+f"(d[86]), "+f"(d[87]), "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]),
        "+f"(d[93]), "+f"(d[94]), "+f"(d[95]), "+f"(d[96]), "+f"(d[97]), "+f"(d[98]), "+f"(d[99]),
        "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]), "+f"(d[104]), "+f"(d[105]), "+f"(d[106]),
        "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111]), "+f"(d[112]), "+f"(d[113]),
        "+f"(d[114]), "+f"(d[115]), "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), "+f"(d[119]), "+f"(d[120]),
        "+f"(d[121]), "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]), "+f"(d[126]), "+f"(d[127])
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
        mma_m64n256k16_kt(acc128, wgmma::make_descriptor(p + ks * 32, 16, 1024),
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
