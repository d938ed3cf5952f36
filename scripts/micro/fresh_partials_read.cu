// Why the combine's reads of the decode kernel's partials are slow at b = 1 (docs/perf.md, "Where a b = 1
// call's time goes" and v40): with phase stamps, the 64 combine blocks of a flash-c4 b = 1 call took
// 2,825-3,320 cycles from their wait to the arrival of their 10 splits' lse and 16-byte partial vectors,
// against ~630 for one L2 load alone. This isolates that step: a writer kernel shaped like the decode
// kernel's split epilogue (40 CTAs of 256 threads, each storing its 16 heads' fp32 partial rows, 32 KB, and
// their lse) and a reader kernel shaped like the combine (64 blocks of 128 threads, each loading the 10
// splits' lse and one float4 of each split's row per thread), the reader a programmatic dependent of the
// writer, one pair per graph. The reader's thread 0 times its loads with clock64 (after the wait, until its
// values have arrived); the figure is the mean and the largest over blocks and replays. Variants:
//
//   fresh           the reader loads what the writer has just stored (the combine's case)
//   stale           the writer stores elsewhere; the reader loads rows written by earlier replays
//   fresh-no-pdl    fresh, the reader launched in plain stream order (no programmatic dependency)
//   fresh-delay     fresh, the reader spins 2 us after its wait before it loads
//   fresh-cg        fresh, the reader's loads are ld.global.cg (L2 only)
//   fresh-fence     fresh, the writer's threads __threadfence() after their stores
//   fresh-trigger   fresh, the writer lets its dependent launch before its stores (smla's decode kernel
//                   does so after its tile loop, before the epilogue), not at its end
//   one-load        fresh, the reader loads one lse word (the L2 round trip alone)
//   fresh-parts2/4  fresh, a head's 512 dims spread over 2 or 4 reader blocks (64 or 32 threads each)
//   stale-parts4    stale, 4 blocks a head
//   fresh-no-lse    fresh, the partial loads only
//   fresh-half      fresh, 8 bytes a thread instead of 16 (the traffic of bf16 partials); -p2: 2 blocks a head
//
// Also each variant's graph replay time (writer + reader), timed as smla-bench times a call. Results and
// what they say: docs/perf.md, "The combine's reads of just-written partials".
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <vector>

#include "cuda/common/programmatic_launch.cuh"
#include "flash_c4_b1_call.cuh"
#include "graph_timing.cuh"

namespace {

using flash_c4_b1::kDims;
using flash_c4_b1::kHeadBlocks;
using flash_c4_b1::kHeads;
using flash_c4_b1::kHeadsPerBlock;
using flash_c4_b1::kSplits;
constexpr int kWriterThreads = 256;
constexpr int kReaderThreads = kDims / 4;
constexpr int kPartialFloats = kSplits * kHeads * kDims;

enum ReaderMode : int { kPlain = 0, kDelay = 1, kCacheGlobal = 2, kOneLoad = 4, kNoLse = 8, kHalfBytes = 16 };
enum WriterMode : int { kTriggerAtEnd = 0, kFence = 1, kTriggerFirst = 2 };

using smla::detail::allow_dependent_launch;
using smla::detail::wait_for_prerequisite_grids;

__device__ __forceinline__ float load_cg(const float* p) {
  float v;
  asm volatile("ld.global.cg.f32 %0, [%1];" : "=f"(v) : "l"(p));
  return v;
}
__device__ __forceinline__ float4 load_cg(const float4* p) {
  float4 v;
  asm volatile("ld.global.cg.v4.f32 {%0, %1, %2, %3}, [%4];"
               : "=f"(v.x), "=f"(v.y), "=f"(v.z), "=f"(v.w)
               : "l"(p));
  return v;
}

// Block = (split, head block): its 16 heads' rows [split][head][512] and their lse, as the decode kernel's
// split epilogue stores them (whole float4s, consecutive threads on consecutive vectors).
__global__ void __launch_bounds__(kWriterThreads)
    write_partials(float* partial, float* lse, int mode, float value) {
  wait_for_prerequisite_grids();
  if (mode & kTriggerFirst) allow_dependent_launch();
  const int split = blockIdx.x % kSplits;
  const int head_block = blockIdx.x / kSplits;
  float4* rows = reinterpret_cast<float4*>(partial + (split * kHeads + head_block * kHeadsPerBlock) * kDims);
  for (int v = threadIdx.x; v < kHeadsPerBlock * kDims / 4; v += kWriterThreads)
    rows[v] = make_float4(value, value + v, value + split, value + head_block);
  if (threadIdx.x < kHeadsPerBlock) lse[split * kHeads + head_block * kHeadsPerBlock + threadIdx.x] = value;
  if (mode & kFence) __threadfence();
  if (!(mode & kTriggerFirst)) allow_dependent_launch();
}

// Block = head: the 10 splits' lse and this thread's float4 of each split's row, all loads in flight at
// once; thread 0 adds its load time (cycles) to totals[0], counts it in totals[1], keeps the largest in
// totals[2].
__global__ void __launch_bounds__(kReaderThreads)
    read_partials(const float* partial, const float* lse, float* out, unsigned long long* totals, int mode) {
  wait_for_prerequisite_grids();
  if (mode & kDelay) {
    unsigned long long start, now;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
    do {
      asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
    } while (now - start < 2000);
  }
  // parts blocks per head, each with kReaderThreads / parts threads covering its share of the row.
  const int parts = kReaderThreads / blockDim.x;
  const int head = blockIdx.x / parts;
  const int vector = (blockIdx.x % parts) * blockDim.x + threadIdx.x;
  const long long start = clock64();
  float sum = 0.f;
  if (mode & kOneLoad) {
    sum = (mode & kCacheGlobal) ? load_cg(lse + head) : lse[head];
  } else {
    float split_lse[kSplits];
    float4 part[kSplits];
    const float4* rows = reinterpret_cast<const float4*>(partial);
#pragma unroll
    for (int k = 0; k < kSplits; ++k) {
      const float* lse_address = lse + k * kHeads + head;
      const float4* row_address = rows + (k * kHeads + head) * (kDims / 4) + vector;
      split_lse[k] = (mode & kNoLse) ? 1.f : (mode & kCacheGlobal) ? load_cg(lse_address) : *lse_address;
      if (mode & kHalfBytes) {
        // 8 bytes a thread (what bf16 partials would move), from the first half of the row.
        const float2 pair = reinterpret_cast<const float2*>(rows + (k * kHeads + head) * (kDims / 4))[vector];
        part[k] = make_float4(pair.x, pair.y, 0.f, 0.f);
      } else {
        part[k] = (mode & kCacheGlobal) ? load_cg(row_address) : *row_address;
      }
    }
#pragma unroll
    for (int k = 0; k < kSplits; ++k) sum += split_lse[k] * (part[k].x + part[k].y + part[k].z + part[k].w);
  }
  if (threadIdx.x == 0) {
    volatile float arrived = sum;  // the loads have arrived
    (void)arrived;
    const unsigned long long cycles = static_cast<unsigned long long>(clock64() - start);
    atomicAdd(&totals[0], cycles);
    atomicAdd(&totals[1], 1ull);
    atomicMax(&totals[2], cycles);
  }
  out[head * kReaderThreads + vector] = sum;
}

struct Variant {
  const char* name;
  bool stale;
  bool reader_pdl;
  int reader_mode;
  int writer_mode;
  int parts;  // reader blocks per head
};

cudaError_t launch(const void* kernel, int blocks, int threads, bool programmatic, cudaStream_t stream,
                   void** args) {
  cudaLaunchConfig_t config = {};
  config.gridDim = dim3(blocks);
  config.blockDim = dim3(threads);
  config.stream = stream;
  cudaLaunchAttribute attribute = {};
  attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute.val.programmaticStreamSerializationAllowed = 1;
  config.attrs = &attribute;
  config.numAttrs = programmatic ? 1 : 0;
  return cudaLaunchKernelExC(&config, kernel, args);
}

}  // namespace

int main() {
  setvbuf(stdout, nullptr, _IOLBF, 0);  // lines reach a pipe as they are printed
  int device = 0;
  CK(cudaSetDevice(device));
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, device));
  int clock_khz = 0;
  CK(cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, device));
  printf(
      "fresh_partials_read: %s, %d SMs; writer %d CTAs x %d threads (32 KB each), reader %d blocks x %d "
      "threads, %d splits\n",
      prop.name, prop.multiProcessorCount, kSplits * kHeadBlocks, kWriterThreads, kHeads, kReaderThreads,
      kSplits);

  float *partial_a, *partial_b, *lse_a, *lse_b, *out;
  unsigned long long* totals;
  CK(cudaMalloc(&partial_a, sizeof(float) * kPartialFloats));
  CK(cudaMalloc(&partial_b, sizeof(float) * kPartialFloats));
  CK(cudaMalloc(&lse_a, sizeof(float) * kSplits * kHeads));
  CK(cudaMalloc(&lse_b, sizeof(float) * kSplits * kHeads));
  CK(cudaMalloc(&out, sizeof(float) * kHeads * kReaderThreads));
  CK(cudaMalloc(&totals, sizeof(unsigned long long) * 3));
  CK(cudaMemset(partial_a, 0, sizeof(float) * kPartialFloats));
  CK(cudaMemset(partial_b, 0, sizeof(float) * kPartialFloats));
  CK(cudaMemset(lse_a, 0, sizeof(float) * kSplits * kHeads));
  CK(cudaMemset(lse_b, 0, sizeof(float) * kSplits * kHeads));
  cudaStream_t stream;
  CK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));

  const Variant variants[] = {
      {"fresh", false, true, kPlain, kTriggerAtEnd, 1},
      {"stale", true, true, kPlain, kTriggerAtEnd, 1},
      {"fresh-no-pdl", false, false, kPlain, kTriggerAtEnd, 1},
      {"fresh-delay", false, true, kDelay, kTriggerAtEnd, 1},
      {"fresh-cg", false, true, kCacheGlobal, kTriggerAtEnd, 1},
      {"fresh-fence", false, true, kPlain, kFence, 1},
      {"fresh-trigger", false, true, kPlain, kTriggerFirst, 1},
      {"one-load", false, true, kOneLoad, kTriggerAtEnd, 1},
      {"fresh-parts2", false, true, kPlain, kTriggerAtEnd, 2},
      {"fresh-parts4", false, true, kPlain, kTriggerAtEnd, 4},
      {"stale-parts4", true, true, kPlain, kTriggerAtEnd, 4},
      {"fresh-no-lse", false, true, kNoLse, kTriggerAtEnd, 1},
      {"fresh-half", false, true, kHalfBytes, kTriggerAtEnd, 1},
      {"fresh-half-p2", false, true, kHalfBytes, kTriggerAtEnd, 2},
  };
  printf("%-14s %12s %12s %14s\n", "variant", "mean cycles", "max cycles", "replay us (p50)");
  for (const Variant& variant : variants) {
    float* write_partial = variant.stale ? partial_b : partial_a;
    float* write_lse = variant.stale ? lse_b : lse_a;
    int writer_mode = variant.writer_mode;
    int reader_mode = variant.reader_mode;
    float value = 1.f;
    void* writer_args[] = {&write_partial, &write_lse, &writer_mode, &value};
    void* reader_args[] = {&partial_a, &lse_a, &out, &totals, &reader_mode};
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    CK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeRelaxed));
    CK(launch(reinterpret_cast<const void*>(write_partials), kSplits * kHeadBlocks, kWriterThreads, false,
              stream, writer_args));
    CK(launch(reinterpret_cast<const void*>(read_partials), kHeads * variant.parts, kReaderThreads / variant.parts,
              variant.reader_pdl,
              stream, reader_args));
    CK(cudaStreamEndCapture(stream, &graph));
    CK(cudaGraphInstantiate(&exec, graph, 0));
    CK(cudaMemsetAsync(totals, 0, sizeof(unsigned long long) * 3, stream));
    std::vector<float> sorted;
    CK(time_graph_replays(exec, stream, 200, &sorted));
    unsigned long long host_totals[3];
    CK(cudaMemcpy(host_totals, totals, sizeof(host_totals), cudaMemcpyDeviceToHost));
    const double mean = host_totals[1] ? static_cast<double>(host_totals[0]) / host_totals[1] : 0.0;
    printf("%-14s %12.0f %12llu %14.2f\n", variant.name, mean, host_totals[2], sorted[sorted.size() / 2]);
    CK(cudaGraphExecDestroy(exec));
    CK(cudaGraphDestroy(graph));
  }
  printf("(SM clock attribute %d MHz; clock64 counts SM cycles)\n", clock_khz / 1000);
  return 0;
}
