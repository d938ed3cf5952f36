// Does compute-sanitizer's racecheck model a bar.arrive / bar.sync hand-off? The v8 prologue variant of the
// 99 KB-class kernel (docs/perf.md, "The 99 KB class", v8) published shared data from one warp with
// bar.arrive and let the other warps bar.sync on the same named barrier; racecheck then reported hazards
// between accesses that later __syncthreads barriers order. This kernel has the same shape without the
// attention math: warp 7 fills a table and arrives on barrier 1, warps 0-6 sync on it and read the table;
// then every warp writes its block of an exchange buffer, __syncthreads, every thread reads other warps'
// blocks, __syncthreads, a few times over. Run under `compute-sanitizer --tool racecheck`: hazards on the
// exchange buffer mean the tool misreads the hand-off; none (and none with --hand-off off) clear the tool.
// Run on the GPU machine: scripts/micro/run.
#include <cuda_runtime.h>

#include <cstdio>
#include <cstring>

#include "graph_timing.cuh"

namespace {

constexpr int kThreads = 256;
constexpr int kRounds = 4;

__global__ void __launch_bounds__(kThreads) hand_off_kernel(float* out, bool hand_off) {
  __shared__ float table[32];
  __shared__ float exchange[kThreads];
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (hand_off) {
    if (warp == 7) {
      table[lane] = static_cast<float>(lane + blockIdx.x);
      __syncwarp();
      asm volatile("bar.arrive 1, %0;" ::"n"(kThreads) : "memory");
    } else {
      asm volatile("bar.sync 1, %0;" ::"n"(kThreads) : "memory");
    }
  } else {
    if (warp == 7) table[lane] = static_cast<float>(lane + blockIdx.x);
    __syncthreads();
  }
  float sum = table[(lane * 7) % 32];
  for (int round = 0; round < kRounds; ++round) {
    exchange[threadIdx.x] = sum + static_cast<float>(round);
    __syncthreads();
    sum += exchange[(threadIdx.x + 32 * (round + 1)) % kThreads];
    __syncthreads();
  }
  out[blockIdx.x * kThreads + threadIdx.x] = sum;
}

}  // namespace

int main(int argc, char** argv) {
  const bool hand_off = !(argc > 1 && std::strcmp(argv[1], "--hand-off=off") == 0);
  float* out = nullptr;
  CK(cudaMalloc(&out, 4 * kThreads * sizeof(float)));
  hand_off_kernel<<<4, kThreads>>>(out, hand_off);
  CK(cudaGetLastError());
  CK(cudaDeviceSynchronize());
  float host[kThreads];
  CK(cudaMemcpy(host, out, sizeof(host), cudaMemcpyDeviceToHost));
  std::printf(
      "named_barrier_racecheck: hand-off %s, out[0] = %.1f (run under compute-sanitizer --tool racecheck)\n",
      hand_off ? "bar.arrive / bar.sync" : "off (__syncthreads)", host[0]);
  return 0;
}
