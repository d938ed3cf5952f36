// The timing floor of smla-bench's method: a graph holding one (almost) empty kernel with the decode
// kernel's launch shape (384 threads, 1 KB or 201 KB of shared memory, 1..132 CTAs, clusters of 1 or 2),
// timed as smla-bench times a call (CUDA events around each replay, replays queued behind a spin).
// Evidence for docs/perf.md. Run on the GPU machine: scripts/micro/run.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <vector>
#define CK(x)                                                                     \
  do {                                                                            \
    cudaError_t e_ = (x);                                                         \
    if (e_ != cudaSuccess) {                                                      \
      printf("%s:%d %s -> %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
      return 1;                                                                   \
    }                                                                             \
  } while (0)
__global__ void __launch_bounds__(384, 1) empty_kernel(float* out) {
  extern __shared__ float smem[];
  if (threadIdx.x == 0) smem[0] = blockIdx.x;
  __syncthreads();
  if (threadIdx.x == 0 && out) out[blockIdx.x] = smem[0];
}
__global__ void spin(unsigned long long ns) {
  unsigned long long t0, t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
  do {
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  } while (t - t0 < ns);
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
        CK(cudaGraphUpload(e, s));
        for (int i = 0; i < 20; ++i) cudaGraphLaunch(e, s);
        CK(cudaStreamSynchronize(s));
        const int n = 200;
        std::vector<cudaEvent_t> ev(n + 1);
        for (auto& x : ev) cudaEventCreate(&x);
        spin<<<1, 1, 0, s>>>(5000000);
        for (int i = 0; i < n; ++i) {
          cudaEventRecord(ev[i], s);
          cudaGraphLaunch(e, s);
        }
        cudaEventRecord(ev[n], s);
        cudaStreamSynchronize(s);
        std::vector<float> t(n);
        for (int i = 0; i < n; ++i) {
          CK(cudaEventElapsedTime(&t[i], ev[i], ev[i + 1]));
          t[i] *= 1000;
        }
        std::sort(t.begin(), t.end());
        printf("empty kernel smem=%d ctas=%d cluster=%d: median %.2f us (min %.2f) err=%s\n", smem, ctas,
               cluster, t[n / 2], t[0], cudaGetErrorString(cudaGetLastError()));
      }
}
