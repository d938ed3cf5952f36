// Microbenchmark: what issuing a tile's gather costs a warp, by route. The 99 KB-class kernel's tile stamps
// (docs/perf.md, "The capped tile's copies ... the copies' tile stamps") put the copies' whole cost in the
// block that issues them: ~320 cycles more a warp for 4 cp.async of 16 bytes a lane and a footer word,
// whether the 8 tokens of an instruction are 8 rows or one. This reproduces that block alone: one CTA of 8
// warps per SM, every iteration each copying warp moves its 64-byte slice of 32 random 576-byte rows
// (4 instructions of 8 tokens x 4 lanes x 16 bytes, as RowTableGather does), stamps the issue, then waits
// for the bytes and meets the others at a barrier, as the kernel's next dequantization would.
//
//   ldgsts     cp.async.cg 16 bytes into a 2 KB staging slice a warp (the kernel's route)
//   ldgsts-1   the same instructions, all 32 tokens from one row (one line an instruction: `samerow`)
//   ldg        ld.global.nc 16 bytes into registers, used after the stamp (a register route)
//   ldg-sts    ld.global.nc into registers, then st.shared after the stamp (registers, then staging)
//   none       the addresses only
//
// Each route runs with all 8 warps copying and with one, over a pool that stays in L2 (4.7 MB) and one far
// larger (2.4 GB). Printed per route: the issue block's cycles a warp and iteration (median over warps),
// the iteration's cycles, and the bytes copied per SM and cycle. Build: scripts/micro/run, or nvcc -std=c++20
// -O3 -gencode=arch=compute_90a,code=sm_90a scripts/micro/copy_issue_rate.cu.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "graph_timing.cuh"  // CK

namespace {

constexpr int kRowBytes = 576;
constexpr int kWarps = 8;
constexpr int kTileTokens = 32;
constexpr int kSliceBytes = 64;  // a warp's slice of a row
constexpr int kIterations = 256;
constexpr int kSharedBytes = 99 * 1024;  // one CTA per SM, as the capped kernel

enum class Route { kLdgsts, kLdgstsOneRow, kLdg, kLdgSts, kNone };

__host__ __device__ constexpr bool copies_async(Route route) {
  return route == Route::kLdgsts || route == Route::kLdgstsOneRow;
}
__host__ __device__ constexpr bool loads_to_registers(Route route) {
  return route == Route::kLdg || route == Route::kLdgSts;
}

__device__ __forceinline__ uint32_t mix(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352dU;
  x ^= x >> 15;
  x *= 0x846ca68bU;
  x ^= x >> 16;
  return x;
}

template <Route kRoute>
__global__ void __launch_bounds__(256, 1)
    copy_burst(const uint8_t* pool, uint32_t num_rows, int copying_warps, unsigned long long* issue_cycles,
               unsigned long long* iteration_cycles, uint32_t* sink) {
  extern __shared__ __align__(16) uint8_t shared[];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const bool copies = warp < copying_warps;
  const uint32_t staging =
      static_cast<uint32_t>(__cvta_generic_to_shared(shared)) + warp * kTileTokens * kSliceBytes;
  uint4 acc = make_uint4(0, 0, 0, 0);
  unsigned long long issue_sum = 0;
  const unsigned long long start = clock64();
  for (int it = 0; it < kIterations; ++it) {
    uint4 held[4];
    // The addresses first, pinned in registers before the stamp (as the kernel's row table has them), so
    // the issue block holds only the copy instructions.
    const uint8_t* source[4];
    uint32_t destination[4];
#pragma unroll
    for (int step = 0; step < 4; ++step) {
      const int token = step * 8 + lane / 4, chunk = lane % 4;
      // One row a CTA and iteration for the one-row route (not one for the whole GPU: a single line read
      // by every SM at once is an L2 hot spot, not the kernel's `samerow`).
      const uint32_t row =
          mix(blockIdx.x * 977u + it * 131u + (kRoute == Route::kLdgstsOneRow ? 0 : token)) % num_rows;
      source[step] = pool + size_t(row) * kRowBytes + warp * kSliceBytes + chunk * 16;
      destination[step] = staging + token * kSliceBytes + chunk * 16;
      asm volatile("" : "+l"(source[step]), "+r"(destination[step]));
    }
    const unsigned long long t0 = clock64();
    if (copies) {
#pragma unroll
      for (int step = 0; step < 4; ++step) {
        if constexpr (copies_async(kRoute)) {
          asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(destination[step]),
                       "l"(source[step])
                       : "memory");
        } else if constexpr (loads_to_registers(kRoute)) {
          asm volatile("ld.global.nc.v4.u32 {%0, %1, %2, %3}, [%4];\n"
                       : "=r"(held[step].x), "=r"(held[step].y), "=r"(held[step].z), "=r"(held[step].w)
                       : "l"(source[step]));
        } else {
          held[step] = make_uint4(uint32_t(size_t(source[step])), destination[step], 0, 0);
        }
      }
      if constexpr (copies_async(kRoute)) asm volatile("cp.async.commit_group;\n" ::: "memory");
    }
    const unsigned long long t1 = clock64();
    issue_sum += t1 - t0;
    if (copies) {
      if constexpr (copies_async(kRoute)) {
        asm volatile("cp.async.wait_group 0;\n" ::: "memory");
      } else if constexpr (kRoute == Route::kLdgSts) {
#pragma unroll
        for (int step = 0; step < 4; ++step) {
          asm volatile("st.shared.v4.u32 [%0], {%1, %2, %3, %4};\n" ::"r"(destination[step]),
                       "r"(held[step].x), "r"(held[step].y), "r"(held[step].z), "r"(held[step].w)
                       : "memory");
        }
      } else {
#pragma unroll
        for (int step = 0; step < 4; ++step) {
          acc.x ^= held[step].x;
          acc.y ^= held[step].y;
          acc.z ^= held[step].z;
          acc.w ^= held[step].w;
        }
      }
    }
    __syncthreads();
  }
  const unsigned long long total = clock64() - start;
  const int id = blockIdx.x * kWarps + warp;
  if (lane == 0) {
    issue_cycles[id] = issue_sum;
    iteration_cycles[id] = total;
  }
  // Keep the loads and the staging observable.
  const uint32_t staged = reinterpret_cast<const uint32_t*>(shared)[threadIdx.x];
  if ((acc.x ^ acc.y ^ acc.z ^ acc.w ^ staged) == 0x12345678u) sink[threadIdx.x] = 1;
}

template <Route kRoute>
int run(const char* name, const uint8_t* pool, uint32_t num_rows, const char* pool_name, int copying_warps,
        int sms, unsigned long long* issue_d, unsigned long long* iteration_d, uint32_t* sink) {
  CK(cudaFuncSetAttribute(copy_burst<kRoute>, cudaFuncAttributeMaxDynamicSharedMemorySize, kSharedBytes));
  for (int repeat = 0; repeat < 2; ++repeat)  // the first launch warms the L2 for the resident pool
    copy_burst<kRoute><<<sms, 256, kSharedBytes>>>(pool, num_rows, copying_warps, issue_d, iteration_d, sink);
  CK(cudaGetLastError());
  CK(cudaDeviceSynchronize());
  std::vector<unsigned long long> issue(sms * kWarps), iteration(sms * kWarps);
  CK(cudaMemcpy(issue.data(), issue_d, issue.size() * 8, cudaMemcpyDeviceToHost));
  CK(cudaMemcpy(iteration.data(), iteration_d, iteration.size() * 8, cudaMemcpyDeviceToHost));
  std::vector<double> issue_per, iteration_per;
  for (int cta = 0; cta < sms; ++cta)
    for (int w = 0; w < copying_warps; ++w) {
      issue_per.push_back(double(issue[cta * kWarps + w]) / kIterations);
      iteration_per.push_back(double(iteration[cta * kWarps + w]) / kIterations);
    }
  std::sort(issue_per.begin(), issue_per.end());
  std::sort(iteration_per.begin(), iteration_per.end());
  const double issue_median = issue_per[issue_per.size() / 2];
  const double iteration_median = iteration_per[iteration_per.size() / 2];
  const double bytes = double(copying_warps) * kTileTokens * kSliceBytes;
  printf("%-10s %-9s warps %d   issue %7.1f cycles a warp   iteration %7.1f cycles   %6.1f B/cycle/SM\n",
         name, pool_name, copying_warps, issue_median, iteration_median,
         kRoute == Route::kNone ? 0.0 : bytes / iteration_median);
  return 0;
}

}  // namespace

int main() {
  int sms = 0;
  CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  cudaDeviceProp prop{};
  CK(cudaGetDeviceProperties(&prop, 0));
  printf("device: %s, %d SMs; %d iterations of 32 rows x 64 bytes a copying warp, one CTA of 8 warps an SM\n",
         prop.name, sms, kIterations);
  const uint32_t resident_rows = 8192;           // 4.7 MB
  const uint32_t large_rows = 4u * 1024 * 1024;  // 2.4 GB
  uint8_t* pool = nullptr;
  CK(cudaMalloc(&pool, size_t(large_rows) * kRowBytes));
  CK(cudaMemset(pool, 0x11, size_t(large_rows) * kRowBytes));
  unsigned long long *issue_d = nullptr, *iteration_d = nullptr;
  uint32_t* sink = nullptr;
  CK(cudaMalloc(&issue_d, sms * kWarps * 8));
  CK(cudaMalloc(&iteration_d, sms * kWarps * 8));
  CK(cudaMalloc(&sink, 256 * 4));
  for (const uint32_t rows : {resident_rows, large_rows}) {
    const char* pool_name = rows == resident_rows ? "L2 4.7MB" : "2.4 GB";
    for (const int warps : {8, 1}) {
      int rc = 0;
      rc |= run<Route::kLdgsts>("ldgsts", pool, rows, pool_name, warps, sms, issue_d, iteration_d, sink);
      rc |= run<Route::kLdgstsOneRow>("ldgsts-1", pool, rows, pool_name, warps, sms, issue_d, iteration_d,
                                      sink);
      rc |= run<Route::kLdg>("ldg", pool, rows, pool_name, warps, sms, issue_d, iteration_d, sink);
      rc |= run<Route::kLdgSts>("ldg-sts", pool, rows, pool_name, warps, sms, issue_d, iteration_d, sink);
      rc |= run<Route::kNone>("none", pool, rows, pool_name, warps, sms, issue_d, iteration_d, sink);
      if (rc != 0) return rc;
    }
  }
  return 0;
}
