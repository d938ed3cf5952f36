// The timing floor of smla-bench's method: a graph holding one (almost) empty kernel with the decode
// kernel's launch shape (384 threads, 1 KB or 201 KB of shared memory, 1..132 CTAs, clusters of 1 or 2),
// timed as smla-bench times a call (CUDA events around each replay, replays queued behind a spin).
// Evidence for docs/perf.md. Run on the GPU machine: scripts/micro/run.
#include <cuda_runtime.h>

#include <cstdio>
#include <vector>

#include "graph_timing.cuh"

__global__ void __launch_bounds__(384, 1) empty_kernel(float* out) {
  extern __shared__ float smem[];
  if (threadIdx.x == 0) smem[0] = blockIdx.x;
  __syncthreads();
  if (threadIdx.x == 0 && out) out[blockIdx.x] = smem[0];
}

int main() {
  float* out;
  cudaMalloc(&out, 4096 * 4);
  cudaStream_t s;
  cudaStreamCreate(&s);
  for (int smem : {1024, 201 * 1024})
    for (int ctas : {1, 128, 132})
      for (int cluster : {1, 2}) {
        if (ctas % cluster) continue;
        CK(cudaFuncSetAttribute(empty_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 227 * 1024));
        cudaGraph_t g;
        cudaGraphExec_t e;
        CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed));
        cudaLaunchConfig_t cfg = {};
        cfg.gridDim = dim3(ctas);
        cfg.blockDim = dim3(384);
        cfg.dynamicSmemBytes = smem;
        cfg.stream = s;
        cudaLaunchAttribute attr[1];
        attr[0].id = cudaLaunchAttributeClusterDimension;
        attr[0].val.clusterDim.x = cluster;
        attr[0].val.clusterDim.y = 1;
        attr[0].val.clusterDim.z = 1;
        cfg.attrs = attr;
        cfg.numAttrs = cluster > 1 ? 1 : 0;
        CK(cudaLaunchKernelEx(&cfg, empty_kernel, out));
        CK(cudaStreamEndCapture(s, &g));
        CK(cudaGraphInstantiate(&e, g, 0));
        const int n = 200;
        std::vector<float> t;
        CK(time_graph_replays(e, s, n, &t));
        printf("empty kernel smem=%d ctas=%d cluster=%d: median %.2f us (min %.2f) err=%s\n", smem, ctas,
               cluster, t[n / 2], t[0], cudaGetErrorString(cudaGetLastError()));
      }
}
