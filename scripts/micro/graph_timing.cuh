// What the graph-timing microbenchmarks share: a CUDA error check that returns from main, and the timing
// of a graph as smla-bench times a call: its replays queued behind a spin kernel (so the host's launch rate
// does not show), CUDA events around each replay, sorted times in microseconds.
#pragma once

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

__global__ void spin_for_ns(unsigned long long ns) {
  unsigned long long t0, t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
  do {
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  } while (t - t0 < ns);
}

// Replays `exec` 20 times untimed, then `replays` times timed; *sorted gets each replay's time (us),
// ascending. Returns the first CUDA error.
inline cudaError_t time_graph_replays(cudaGraphExec_t exec, cudaStream_t stream, int replays,
                                      std::vector<float>* sorted) {
  cudaError_t error = cudaGraphUpload(exec, stream);
  for (int i = 0; i < 20 && error == cudaSuccess; ++i) error = cudaGraphLaunch(exec, stream);
  if (error == cudaSuccess) error = cudaStreamSynchronize(stream);
  std::vector<cudaEvent_t> events(replays + 1);
  for (auto& event : events)
    if (error == cudaSuccess) error = cudaEventCreate(&event);
  if (error != cudaSuccess) return error;
  spin_for_ns<<<1, 1, 0, stream>>>(5000000);
  for (int i = 0; i < replays && error == cudaSuccess; ++i) {
    error = cudaEventRecord(events[i], stream);
    if (error == cudaSuccess) error = cudaGraphLaunch(exec, stream);
  }
  if (error == cudaSuccess) error = cudaEventRecord(events[replays], stream);
  if (error == cudaSuccess) error = cudaStreamSynchronize(stream);
  sorted->assign(replays, 0.f);
  for (int i = 0; i < replays && error == cudaSuccess; ++i) {
    error = cudaEventElapsedTime(&(*sorted)[i], events[i], events[i + 1]);
    (*sorted)[i] *= 1000;
  }
  for (auto& event : events) cudaEventDestroy(event);
  std::sort(sorted->begin(), sorted->end());
  return error;
}
