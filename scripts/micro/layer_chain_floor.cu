// The latency floor of a decode step at b = 1 (issue 13: DSv4-Flash, 43 layers, goal <= 250 us, i.e.
// 5.8 us a layer): 43 layers captured in one CUDA graph, each layer a chain shaped like smla's small calls
// (4 head blocks x 10 splits = 40 CTAs of 256 threads, then a combine of 64 blocks of 128 threads) but with
// no attention math, so that what is left is launch, dependency and memory latency:
//
//   empty2      two empty kernels a layer (decode-shaped, combine-shaped)
//   empty1      one empty kernel a layer
//   chain2      decode-shaped kernel: list length -> 32 indices -> one 16-byte chunk of each row from a 2 GB
//               pool (three dependent global loads, as before a first tile), then every CTA writes its 16
//               heads' fp32 partial rows and lse (32 KB); combine-shaped kernel: reads the 10 splits'
//               lse and partials of one (row, head) and writes the row
//   last_cta    chain2's decode kernel combining in-kernel: each CTA fences its partial, takes a ticket;
//               the last CTA of a head block combines the block's 16 heads (and resets the ticket)
//   split_sync  chain2's decode kernel combining in-kernel: the 10 CTAs of a head block wait for each other
//               (a barrier word whose top bit flips when the last arrives; spin), then each combines a
//               tenth of the block's rows (the grid is far below the SM count, so its CTAs are co-resident
//               here)
//   split_coop  split_sync launched as a cooperative kernel, which guarantees the co-residency that the spin
//               needs whatever else runs on the GPU (a library cannot rely on an idle GPU); whether the
//               driver accepts the cooperative and the programmatic-launch attributes together is part of
//               what this measures (a refused launch is printed, not fatal)
//   cluster     the 10 splits of a head block as one thread-block cluster (non-portable size 10): each CTA
//               stages its 16 heads' rows and lse in its own shared memory (as smla's split epilogue
//               stages O before its global stores), one cluster barrier, then each CTA combines a tenth of
//               the block's vectors reading all 10 CTAs' stages over distributed shared memory and writes
//               out; a second cluster barrier keeps every CTA's shared memory alive until all have read it.
//               No partials in global memory, no combine kernel.
//
// Every variant runs with programmatic dependent launch (each kernel waits with griddepcontrol.wait before
// its first global access and triggers its dependents at its end, as smla's kernels do) and without. Timed
// as smla-bench times a step: CUDA events around graph replays queued behind a spin, median of 200.
// Evidence for docs/perf.md (Hopper v2). Run on the GPU machine: scripts/micro/run.
#include <cooperative_groups.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <vector>

#include "cuda/common/programmatic_launch.cuh"
#include "flash_c4_b1_call.cuh"
#include "graph_timing.cuh"

namespace {

constexpr int kLayers = 43;
using flash_c4_b1::kDims;
using flash_c4_b1::kHeadBlocks;
using flash_c4_b1::kHeads;
using flash_c4_b1::kHeadsPerBlock;
using flash_c4_b1::kSplits;
constexpr int kDecodeThreads = 256;
constexpr int kCombineThreads = 128;
constexpr int64_t kRowBytes = 576;
constexpr int64_t kPoolRows = (int64_t{2} << 30) / kRowBytes;
constexpr int kVectorsPerBlock = kHeadsPerBlock * kDims / 4;  // float4 of one head block's rows

struct Buffers {
  const int* length;    // [1]
  const int* indices;   // [kSplits * 64]
  const uint8_t* pool;  // kPoolRows * kRowBytes
  float* partial;       // [kSplits][kHeads][kDims]
  float* partial_lse;   // [kSplits][kHeads]
  float* out;           // [kHeads][kDims]
  float* lse;           // [kHeads]
  unsigned* arrive;     // [kHeadBlocks]
  float* sink;          // keeps loaded values alive
};

using smla::detail::allow_dependent_launch;
using smla::detail::wait_for_prerequisite_grids;

__global__ void __launch_bounds__(kDecodeThreads) empty_decode(Buffers b) {
  wait_for_prerequisite_grids();
  allow_dependent_launch();
  if (threadIdx.x == 0 && blockIdx.x == 0 && b.length == nullptr) b.sink[0] = 1.f;
}

__global__ void __launch_bounds__(kCombineThreads) empty_combine(Buffers b) {
  wait_for_prerequisite_grids();
  if (threadIdx.x == 0 && blockIdx.x == 0 && b.length == nullptr) b.sink[0] = 1.f;
}

// The three dependent loads before a first tile (length, indices, one chunk of each row), reduced to one
// value that every thread of the CTA gets, so that nothing is optimized away.
__device__ __forceinline__ float load_row_value(const Buffers& b, int split) {
  __shared__ float row_value;
  if (threadIdx.x < 32) {
    const int length = b.length[0];
    const int index = threadIdx.x < length ? b.indices[split * 64 + threadIdx.x] : 0;
    const uint4 chunk = *reinterpret_cast<const uint4*>(b.pool + static_cast<int64_t>(index) * kRowBytes);
    float v = __int_as_float((chunk.x ^ chunk.y ^ chunk.z ^ chunk.w) & 0x3f7fffff);
    for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (threadIdx.x == 0) row_value = v;
  }
  __syncthreads();
  return row_value;
}

// The loads, then the CTA's partial rows and lse, whose values depend on the row bytes loaded.
__device__ __forceinline__ void decode_body(const Buffers& b, int split, int head_block) {
  const float v = load_row_value(b, split);
  float4* rows = reinterpret_cast<float4*>(
      b.partial + (static_cast<int64_t>(split) * kHeads + head_block * kHeadsPerBlock) * kDims);
  for (int i = threadIdx.x; i < kVectorsPerBlock; i += kDecodeThreads) rows[i] = make_float4(v, v, v, v);
  if (threadIdx.x < kHeadsPerBlock)
    b.partial_lse[split * kHeads + head_block * kHeadsPerBlock + threadIdx.x] = v + threadIdx.x;
}

// out[head][v] for float4 vector v of the head's row from the splits' lse and partial vectors (loaded
// by the caller, every split in flight before any is used): the partials weighted by exp(lse - max).
__device__ __forceinline__ void merge_vector(const Buffers& b, int head, int vector, const float (&lse)[kSplits],
                                             const float4 (&part)[kSplits]) {
  float m = lse[0];
#pragma unroll
  for (int s = 1; s < kSplits; ++s) m = fmaxf(m, lse[s]);
  float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
  float sum = 0.f;
#pragma unroll
  for (int s = 0; s < kSplits; ++s) {
    const float w = __expf(lse[s] - m);
    sum += w;
    acc.x += w * part[s].x;
    acc.y += w * part[s].y;
    acc.z += w * part[s].z;
    acc.w += w * part[s].w;
  }
  const float inv = 1.f / sum;
  reinterpret_cast<float4*>(b.out + head * kDims)[vector] =
      make_float4(acc.x * inv, acc.y * inv, acc.z * inv, acc.w * inv);
  if (vector == 0) b.lse[head] = m + __logf(sum);
}

// merge_vector of the partials in global memory.
__device__ __forceinline__ void combine_vector(const Buffers& b, int head, int vector) {
  float lse[kSplits];
  float4 part[kSplits];
#pragma unroll
  for (int s = 0; s < kSplits; ++s) {
    lse[s] = b.partial_lse[s * kHeads + head];
    part[s] = reinterpret_cast<const float4*>(b.partial +
                                              (static_cast<int64_t>(s) * kHeads + head) * kDims)[vector];
  }
  merge_vector(b, head, vector, lse, part);
}

__global__ void __launch_bounds__(kDecodeThreads) chain_decode(Buffers b) {
  wait_for_prerequisite_grids();
  decode_body(b, blockIdx.x % kSplits, blockIdx.x / kSplits);
  allow_dependent_launch();
}

__global__ void __launch_bounds__(kCombineThreads) chain_combine(Buffers b) {
  wait_for_prerequisite_grids();
  combine_vector(b, blockIdx.x, threadIdx.x);
}

__global__ void __launch_bounds__(kDecodeThreads) last_cta_decode(Buffers b) {
  wait_for_prerequisite_grids();
  const int split = blockIdx.x % kSplits;
  const int head_block = blockIdx.x / kSplits;
  decode_body(b, split, head_block);
  __shared__ bool last;
  __threadfence();  // this thread's partial writes are visible device-wide before the ticket
  __syncthreads();
  if (threadIdx.x == 0) {
    last = atomicAdd(&b.arrive[head_block], 1u) == kSplits - 1;
    if (last) b.arrive[head_block] = 0;  // every other CTA of the block has taken its ticket
  }
  __syncthreads();
  if (last) {
    __threadfence();
    for (int i = threadIdx.x; i < kVectorsPerBlock; i += kDecodeThreads)
      combine_vector(b, head_block * kHeadsPerBlock + i / (kDims / 4), i % (kDims / 4));
  }
  allow_dependent_launch();
}

__global__ void __launch_bounds__(kDecodeThreads) split_sync_decode(Buffers b) {
  wait_for_prerequisite_grids();
  const int split = blockIdx.x % kSplits;
  const int head_block = blockIdx.x / kSplits;
  decode_body(b, split, head_block);
  // smla's barrier (src/cuda/combine/in_kernel_combine.cuh on the in-kernel-combine branch): the top bit
  // of the block's word flips when the last split arrives; no reset.
  __syncthreads();
  if (threadIdx.x == 0) {
    __threadfence();
    const unsigned before = atomicAdd(&b.arrive[head_block], split == 0 ? 0x80000000u - (kSplits - 1) : 1u);
    unsigned now;
    do {
      asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(now) : "l"(&b.arrive[head_block]) : "memory");
    } while (((before ^ now) & 0x80000000u) == 0);
  }
  __syncthreads();
  // This CTA's tenth of the block's float4 vectors.
  constexpr int kShare = (kVectorsPerBlock + kSplits - 1) / kSplits;
  const int first = split * kShare;
  for (int i = first + threadIdx.x; i < min(first + kShare, kVectorsPerBlock); i += kDecodeThreads)
    combine_vector(b, head_block * kHeadsPerBlock + i / (kDims / 4), i % (kDims / 4));
  allow_dependent_launch();
}

// decode_body's loads, without the global partials: the CTA's rows go to its shared stage.
__global__ void __launch_bounds__(kDecodeThreads) cluster_decode(Buffers b) {
  namespace cg = cooperative_groups;
  __shared__ __align__(16) float stage[kHeadsPerBlock * kDims];  // 32 KB: the CTA's rows
  __shared__ float stage_lse[kHeadsPerBlock];
  wait_for_prerequisite_grids();
  const int split = blockIdx.x % kSplits;  // = cluster rank
  const int head_block = blockIdx.x / kSplits;
  const float v = load_row_value(b, split);
  for (int i = threadIdx.x; i < kVectorsPerBlock; i += kDecodeThreads)
    reinterpret_cast<float4*>(stage)[i] = make_float4(v, v, v, v);
  if (threadIdx.x < kHeadsPerBlock) stage_lse[threadIdx.x] = v + threadIdx.x;
  cg::cluster_group cluster = cg::this_cluster();
  cluster.sync();  // every CTA's stage is written (release / acquire at cluster scope)
  constexpr int kShare = (kVectorsPerBlock + kSplits - 1) / kSplits;
  const int i = split * kShare + static_cast<int>(threadIdx.x);
  if (threadIdx.x < kShare && i < kVectorsPerBlock) {
    const int head = i / (kDims / 4);
    float lse[kSplits];
    float4 part[kSplits];
#pragma unroll
    for (int r = 0; r < kSplits; ++r) {  // every split's values in flight before any is used
      lse[r] = cluster.map_shared_rank(stage_lse, r)[head];
      part[r] = reinterpret_cast<const float4*>(cluster.map_shared_rank(stage, r))[i];
    }
    merge_vector(b, head_block * kHeadsPerBlock + head, i % (kDims / 4), lse, part);
  }
  allow_dependent_launch();
  cluster.sync();  // no CTA leaves while another still reads its stage
}

template <class Kernel>
cudaError_t launch(Kernel kernel, int blocks, int threads, bool pdl, cudaStream_t s, const Buffers& b,
                   bool cooperative = false, int cluster = 1) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(blocks);
  cfg.blockDim = dim3(threads);
  cfg.stream = s;
  cudaLaunchAttribute attr[3];
  cfg.attrs = attr;
  if (pdl) {
    attr[cfg.numAttrs].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[cfg.numAttrs++].val.programmaticStreamSerializationAllowed = 1;
  }
  if (cooperative) {
    attr[cfg.numAttrs].id = cudaLaunchAttributeCooperative;
    attr[cfg.numAttrs++].val.cooperative = 1;
  }
  if (cluster > 1) {
    attr[cfg.numAttrs].id = cudaLaunchAttributeClusterDimension;
    attr[cfg.numAttrs].val.clusterDim.x = cluster;
    attr[cfg.numAttrs].val.clusterDim.y = 1;
    attr[cfg.numAttrs++].val.clusterDim.z = 1;
  }
  return cudaLaunchKernelEx(&cfg, kernel, b);
}

enum class Variant { kEmpty2, kEmpty1, kChain2, kLastCta, kSplitSync, kSplitCoop, kCluster };
const char* name_of(Variant v) {
  switch (v) {
    case Variant::kEmpty2:
      return "empty2";
    case Variant::kEmpty1:
      return "empty1";
    case Variant::kChain2:
      return "chain2";
    case Variant::kLastCta:
      return "last_cta";
    case Variant::kSplitSync:
      return "split_sync";
    case Variant::kSplitCoop:
      return "split_coop";
    case Variant::kCluster:
      return "cluster";
  }
  return "?";
}

cudaError_t capture_layer(Variant v, bool pdl, cudaStream_t s, const Buffers& b) {
  constexpr int kDecodeBlocks = kSplits * kHeadBlocks;
  cudaError_t e = cudaSuccess;
  switch (v) {
    case Variant::kEmpty2:
      e = launch(empty_decode, kDecodeBlocks, kDecodeThreads, pdl, s, b);
      if (e == cudaSuccess) e = launch(empty_combine, kHeads, kCombineThreads, pdl, s, b);
      break;
    case Variant::kEmpty1:
      e = launch(empty_decode, kDecodeBlocks, kDecodeThreads, pdl, s, b);
      break;
    case Variant::kChain2:
      e = launch(chain_decode, kDecodeBlocks, kDecodeThreads, pdl, s, b);
      if (e == cudaSuccess) e = launch(chain_combine, kHeads, kCombineThreads, pdl, s, b);
      break;
    case Variant::kLastCta:
      e = launch(last_cta_decode, kDecodeBlocks, kDecodeThreads, pdl, s, b);
      break;
    case Variant::kSplitSync:
    case Variant::kSplitCoop:
      e = launch(split_sync_decode, kDecodeBlocks, kDecodeThreads, pdl, s, b, v == Variant::kSplitCoop);
      break;
    case Variant::kCluster:
      e = launch(cluster_decode, kDecodeBlocks, kDecodeThreads, pdl, s, b, false, kSplits);
      break;
  }
  return e;
}

}  // namespace

int main() {
  Buffers b = {};
  int* length;
  int* indices;
  uint8_t* pool;
  CK(cudaMalloc(&length, sizeof(int)));
  CK(cudaMalloc(&indices, kSplits * 64 * sizeof(int)));
  CK(cudaMalloc(&pool, kPoolRows * kRowBytes));
  CK(cudaMemset(pool, 0x11, kPoolRows * kRowBytes));
  const int host_length = 64;
  CK(cudaMemcpy(length, &host_length, sizeof(int), cudaMemcpyHostToDevice));
  std::vector<int> host_indices(kSplits * 64);
  uint64_t state = 88172645463325252ull;
  for (int& x : host_indices) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    x = static_cast<int>(state % kPoolRows);
  }
  CK(cudaMemcpy(indices, host_indices.data(), host_indices.size() * sizeof(int), cudaMemcpyHostToDevice));
  float* partial;
  float* partial_lse;
  float* out;
  float* lse;
  unsigned* counters;
  float* sink;
  CK(cudaMalloc(&partial, sizeof(float) * kSplits * kHeads * kDims));
  CK(cudaMalloc(&partial_lse, sizeof(float) * kSplits * kHeads));
  CK(cudaMalloc(&out, sizeof(float) * kHeads * kDims));
  CK(cudaMalloc(&lse, sizeof(float) * kHeads));
  CK(cudaMalloc(&counters, sizeof(unsigned) * kHeadBlocks));
  CK(cudaMemset(counters, 0, sizeof(unsigned) * kHeadBlocks));
  CK(cudaMalloc(&sink, sizeof(float)));
  b = Buffers{length, indices, pool, partial, partial_lse, out, lse, counters, sink};

  cudaStream_t s;
  CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  std::vector<float> reference;
  // A cluster of 10 is above the portable 8: the kernel has to allow it.
  CK(cudaFuncSetAttribute(cluster_decode, cudaFuncAttributeNonPortableClusterSizeAllowed, 1));
  setvbuf(stdout, nullptr, _IOLBF, 0);  // lines reach a pipe as they are printed
  for (Variant v : {Variant::kEmpty2, Variant::kEmpty1, Variant::kChain2, Variant::kLastCta,
                    Variant::kSplitSync, Variant::kSplitCoop, Variant::kCluster}) {
    for (bool pdl : {false, true}) {
      CK(cudaMemset(out, 0, sizeof(float) * kHeads * kDims));
      CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed));
      cudaError_t captured = cudaSuccess;
      for (int layer = 0; layer < kLayers && captured == cudaSuccess; ++layer)
        captured = capture_layer(v, pdl, s, b);
      cudaGraph_t g = nullptr;
      const cudaError_t ended = cudaStreamEndCapture(s, &g);
      cudaGraphExec_t exec = nullptr;
      if (captured == cudaSuccess && ended == cudaSuccess) captured = cudaGraphInstantiate(&exec, g, 0);
      if (captured != cudaSuccess || ended != cudaSuccess) {
        printf("%-10s pdl=%d: not run: capture or instantiation refused (%s)\n", name_of(v), pdl ? 1 : 0,
               cudaGetErrorString(captured != cudaSuccess ? captured : ended));
        (void)cudaGetLastError();
        if (g != nullptr) cudaGraphDestroy(g);
        continue;
      }
      const int n = 200;
      std::vector<float> t;
      CK(time_graph_replays(exec, s, n, &t));
      // The combining variants must produce chain2's output.
      std::vector<float> host_out(kHeads * kDims);
      CK(cudaMemcpy(host_out.data(), out, host_out.size() * sizeof(float), cudaMemcpyDeviceToHost));
      const char* check = "-";
      if (v == Variant::kChain2 && !pdl) reference = host_out;
      const bool computes_out = v != Variant::kEmpty1 && v != Variant::kEmpty2;
      if (computes_out) check = host_out == reference ? "out matches chain2" : "OUT DIFFERS FROM chain2";
      printf("%-10s pdl=%d: step median %7.2f us (p10 %7.2f, p90 %7.2f), %.2f us a layer; %s\n", name_of(v),
             pdl ? 1 : 0, t[n / 2], t[n / 10], t[n - n / 10], t[n / 2] / kLayers, check);
      CK(cudaGraphExecDestroy(exec));
      CK(cudaGraphDestroy(g));
    }
  }
  return 0;
}
