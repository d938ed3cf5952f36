// Microbenchmark: how fast can an H200 gather the KV records a sparse decode reads, with nothing else to
// do? A decode call reads whole 584-byte records (a 576-byte row at `r * 576` of its page and an 8-byte
// footer entry at `P * 576 + 8 r`, spec section 2) at random slots of a pool far larger than the L2. The
// spec's roofline divides those bytes by the copy bandwidth (streamed, ~4.1 TB/s); this measures what a
// gather of random records actually reaches, by three routes and over a sweep of bytes in flight per SM,
// so that docs/perf.md can state the floor of the memory-bound rows as measured (issue 13's "floor
// itself, measured").
//
//   warp-rows   one warp per record: lane l loads 16-byte chunk l, lanes 0-3 chunks 32-35, lane 4 the
//               footer; U records in flight per warp (ld.global.nc.L1::no_allocate, as sm90-h64 loads)
//   quarters    sm90-h64's producer pattern: 4 threads per record, each 9 16-byte chunks 64 bytes apart
//               and the 8 footer bytes; U records in flight per thread
//   bulk        one lane per record issues cp.async.bulk of the row (576 B) and of the 16-byte footer
//               window into shared memory, completing on a per-batch mbarrier; NB batches of R records in
//               flight per warp (the copy engine route, v50)
//   seq-read    reference: a streamed read of 2 GiB, 16-byte loads, 4 in flight per thread
//   memcpy      reference: cudaMemcpyAsync of 1 GiB device to device, (read + write bytes) / time
//
// Slot ids are read one batch ahead (as the decode kernels prefetch them), so the figure is the records'
// gather, not the index load's latency. Each figure: a graph of 8 launches over 8 index sets (so no set is
// L2-resident when read again), replayed behind a spin kernel, median replay / 8. Records are counted as
// 584 bytes, the spec's count. Run on the GPU machine: scripts/micro/run (or build it alone with nvcc
// -gencode=arch=compute_90a,code=sm_90a -Iinclude -Isrc).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "cuda/common/sm90_sync.cuh"
#include "graph_timing.cuh"

namespace {

constexpr int kRowBytes = 576;
constexpr int kRecordBytes = 584;
constexpr int kIndexSets = 8;

struct Pool {
  const uint8_t* base;
  int page_tokens;
  long long page_stride;
};

// Page start and row within the page of a slot (spec section 2).
__device__ __forceinline__ const uint8_t* page_start(const Pool& pool, int32_t slot, int* row_in_page) {
  const int page = slot / pool.page_tokens;
  *row_in_page = slot - page * pool.page_tokens;
  return pool.base + page * pool.page_stride;
}

__device__ __forceinline__ const uint8_t* row_address(const Pool& pool, int32_t slot) {
  int r = 0;
  const uint8_t* page = page_start(pool, slot, &r);
  return page + static_cast<long long>(r) * kRowBytes;
}

__device__ __forceinline__ const uint8_t* footer_address(const Pool& pool, int32_t slot) {
  int r = 0;
  const uint8_t* page = page_start(pool, slot, &r);
  return page + static_cast<long long>(pool.page_tokens) * kRowBytes + 8 * r;
}

// The decode kernels' streaming loads (ld.global.nc.L1::no_allocate), so the routes load as sm90-h64 does.
using smla::detail::sm90::load_global_stream_16;
using smla::detail::sm90::load_global_stream_8;
// The bulk route's per-batch barriers, as sm90-h64's producer waits on its stages.
using smla::detail::sm90::mbarrier_init;
using smla::detail::sm90::mbarrier_wait;

// Slot ids of records [first, first + U), -1 past the end: a batch's slots, read one batch ahead.
template <int U>
__device__ __forceinline__ void load_slots(const int32_t* slots, int first, int records, int32_t (&out)[U]) {
#pragma unroll
  for (int u = 0; u < U; ++u) out[u] = first + u < records ? slots[first + u] : -1;
}

// Walks worker `worker`'s batches of U records (batch k of it starts at (worker + k * workers) * U), each
// batch's slot ids read one batch ahead, and runs visit(slot) on each batch (slot -1 past the end).
template <int U, class Visit>
__device__ __forceinline__ void for_each_slot_batch(const int32_t* slots, int records, int worker, int workers,
                                                    Visit&& visit) {
  int base = worker * U;
  int32_t slot[U];
  load_slots(slots, base, records, slot);
  for (; base < records; base += workers * U) {
    int32_t next[U];
    load_slots(slots, base + workers * U, records, next);
    visit(slot);
#pragma unroll
    for (int u = 0; u < U; ++u) slot[u] = next[u];
  }
}

__device__ __forceinline__ uint32_t fold(const uint4& v) { return v.x ^ v.y ^ v.z ^ v.w; }

// Keeps the loads alive: a value that is never the magic word, stored only if it were.
__device__ __forceinline__ void keep(uint32_t acc, uint32_t* sink) {
  if (acc == 0x9e3779b9u) sink[threadIdx.x] = acc;
}

// ---- warp-rows: a warp per record, U records in flight per warp.
template <int U>
__global__ void __launch_bounds__(256)
    gather_warp_rows(Pool pool, const int32_t* slots, int records, uint32_t* sink) {
  const int lane = threadIdx.x % 32;
  const int warp = (blockIdx.x * blockDim.x + threadIdx.x) / 32;
  const int warps = gridDim.x * blockDim.x / 32;
  uint32_t acc = 0;
  for_each_slot_batch<U>(slots, records, warp, warps, [&](const int32_t (&slot)[U]) {
    uint4 a[U], b[U];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      a[u] = b[u] = make_uint4(0, 0, 0, 0);
      if (slot[u] >= 0) {
        const uint8_t* row = row_address(pool, slot[u]);
        a[u] = load_global_stream_16(row + lane * 16);
        if (lane < 4) {
          b[u] = load_global_stream_16(row + 512 + lane * 16);
        } else if (lane == 4) {
          const uint2 f = load_global_stream_8(footer_address(pool, slot[u]));
          b[u] = make_uint4(f.x, f.y, 0, 0);
        }
      }
    }
#pragma unroll
    for (int u = 0; u < U; ++u) acc ^= fold(a[u]) ^ fold(b[u]);
  });
  keep(acc, sink);
}

// ---- quarters: sm90-h64's producer pattern, 4 threads per record, U records in flight per thread.
template <int U>
__global__ void __launch_bounds__(256)
    gather_quarters(Pool pool, const int32_t* slots, int records, uint32_t* sink) {
  const int thread = blockIdx.x * blockDim.x + threadIdx.x;
  const int quarter = thread % 4;
  const int group = thread / 4;
  const int groups = gridDim.x * blockDim.x / 4;
  uint32_t acc = 0;
  for_each_slot_batch<U>(slots, records, group, groups, [&](const int32_t (&slot)[U]) {
    uint4 chunk[U][9];
    uint2 footer[U];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      footer[u] = make_uint2(0, 0);
#pragma unroll
      for (int s = 0; s < 9; ++s) chunk[u][s] = make_uint4(0, 0, 0, 0);
      if (slot[u] >= 0) {
        const uint8_t* row = row_address(pool, slot[u]) + quarter * 16;
#pragma unroll
        for (int s = 0; s < 9; ++s) chunk[u][s] = load_global_stream_16(row + s * 64);
        footer[u] = load_global_stream_8(footer_address(pool, slot[u]));
      }
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      acc ^= footer[u].x ^ footer[u].y;
#pragma unroll
      for (int s = 0; s < 9; ++s) acc ^= fold(chunk[u][s]);
    }
  });
  keep(acc, sink);
}

// ---- bulk: per warp NB batches of R records in flight, each record 2 bulk copies into shared memory.
constexpr int kBulkWarps = 4;
constexpr int kBulkRecordSlot = kRowBytes + 16;

__device__ __forceinline__ uint32_t shared_address(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

template <int R, int NB>
__global__ void __launch_bounds__(kBulkWarps * 32)
    gather_bulk(Pool pool, const int32_t* slots, int records, uint32_t* sink) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  extern __shared__ __align__(128) uint8_t smem[];
  __shared__ __align__(8) uint64_t barriers[kBulkWarps][NB];
  const int lane = threadIdx.x % 32;
  const int warp_in_block = threadIdx.x / 32;
  const int warp = blockIdx.x * kBulkWarps + warp_in_block;
  const int warps = gridDim.x * kBulkWarps;
  uint8_t* my_slots = smem + static_cast<size_t>(warp_in_block) * NB * R * kBulkRecordSlot;
  if (lane == 0) {
    for (int n = 0; n < NB; ++n) mbarrier_init(shared_address(&barriers[warp_in_block][n]), 1);
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  __syncwarp();
  // Batch k of this warp: records (warp + k * warps) * R .. + R - 1, in buffer k % NB.
  const auto issue = [&](int k) {
    const int first = (warp + k * warps) * R;
    const int buffer = k % NB;
    const uint32_t barrier = shared_address(&barriers[warp_in_block][buffer]);
    int32_t slot = -1;
    if (lane < R && first + lane < records) slot = slots[first + lane];
    const unsigned valid = __ballot_sync(0xffffffffu, slot >= 0);
    if (lane == 0) {
      const uint32_t bytes = __popc(valid) * kBulkRecordSlot;
      asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(barrier), "r"(bytes)
                   : "memory");
    }
    if (slot >= 0) {
      const uint32_t dst = shared_address(my_slots + (buffer * R + lane) * kBulkRecordSlot);
      const uint8_t* row = row_address(pool, slot);
      const uint8_t* footer = reinterpret_cast<const uint8_t*>(
          reinterpret_cast<uintptr_t>(footer_address(pool, slot)) & ~uintptr_t{15});
      asm volatile(
          "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(
              dst),
          "l"(row), "r"(kRowBytes), "r"(barrier)
          : "memory");
      asm volatile(
          "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], 16, [%2];\n" ::"r"(
              dst + kRowBytes),
          "l"(footer), "r"(barrier)
          : "memory");
    }
  };
  const int total_batches = (records + R - 1) / R;
  const int batches = warp < total_batches ? (total_batches - warp + warps - 1) / warps : 0;
  for (int k = 0; k < NB && k < batches; ++k) issue(k);
  uint32_t acc = 0;
  for (int k = 0; k < batches; ++k) {
    const int buffer = k % NB;
    const uint32_t barrier = shared_address(&barriers[warp_in_block][buffer]);
    const uint32_t parity = (k / NB) & 1;
    mbarrier_wait(barrier, parity);
    acc ^= reinterpret_cast<const uint32_t*>(my_slots + (buffer * R) * kBulkRecordSlot)[lane];
    __syncwarp();
    if (k + NB < batches) issue(k + NB);
  }
  keep(acc, sink);
#endif
}

// ---- references
__global__ void __launch_bounds__(256) stream_read(const uint4* data, long long vectors, uint32_t* sink) {
  const long long threads = static_cast<long long>(gridDim.x) * blockDim.x;
  uint32_t acc = 0;
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < vectors;
       i += 4 * threads) {
    uint4 v[4];
#pragma unroll
    for (int u = 0; u < 4; ++u)
      v[u] =
          i + u * threads < vectors ? load_global_stream_16(data + i + u * threads) : make_uint4(0, 0, 0, 0);
#pragma unroll
    for (int u = 0; u < 4; ++u) acc ^= fold(v[u]);
  }
  keep(acc, sink);
}

__global__ void fill_pool(uint32_t* words, long long count) {
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<long long>(gridDim.x) * blockDim.x)
    words[i] = static_cast<uint32_t>(i * 2654435761ull) | 0x01010101u;
}

uint64_t splitmix(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

struct Method {
  std::string name;
  int in_flight_records_per_block;  // records whose loads one block has in flight at once
  int blocks_per_sm;                // asked for; capped at the occupancy the kernel allows
  const void* kernel;
  int threads;
  size_t shared_bytes;
  void (*launch)(dim3, int, size_t, cudaStream_t, Pool, const int32_t*, int, uint32_t*);
};

template <int U>
void launch_warp_rows(dim3 g, int t, size_t, cudaStream_t s, Pool p, const int32_t* i, int n, uint32_t* k) {
  gather_warp_rows<U><<<g, t, 0, s>>>(p, i, n, k);
}
template <int U>
void launch_quarters(dim3 g, int t, size_t, cudaStream_t s, Pool p, const int32_t* i, int n, uint32_t* k) {
  gather_quarters<U><<<g, t, 0, s>>>(p, i, n, k);
}
template <int R, int NB>
void launch_bulk(dim3 g, int t, size_t smem, cudaStream_t s, Pool p, const int32_t* i, int n, uint32_t* k) {
  gather_bulk<R, NB><<<g, t, smem, s>>>(p, i, n, k);
}

}  // namespace

int main(int argc, char** argv) {
  const double pool_gib = argc > 1 ? atof(argv[1]) : 2.5;
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  const int sms = prop.multiProcessorCount;
  printf("device: %s, %d SMs, L2 %d MB\n", prop.name, sms, prop.l2CacheSize >> 20);

  const size_t pool_bytes = static_cast<size_t>(pool_gib * (1ull << 30));
  uint8_t* pool_data = nullptr;
  uint32_t* sink = nullptr;
  CK(cudaMalloc(&pool_data, pool_bytes));
  CK(cudaMalloc(&sink, 4096 * sizeof(uint32_t)));
  fill_pool<<<4 * sms, 256>>>(reinterpret_cast<uint32_t*>(pool_data), static_cast<long long>(pool_bytes / 4));
  CK(cudaDeviceSynchronize());
  cudaStream_t stream;
  CK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));

  // References: streamed read and device copy.
  {
    const long long vectors = static_cast<long long>((2ull << 30) / 16);
    cudaGraph_t graph;
    CK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
    stream_read<<<8 * sms, 256, 0, stream>>>(reinterpret_cast<const uint4*>(pool_data), vectors, sink);
    CK(cudaStreamEndCapture(stream, &graph));
    cudaGraphExec_t exec;
    CK(cudaGraphInstantiate(&exec, graph, 0));
    std::vector<float> t;
    CK(time_graph_replays(exec, stream, 20, &t));
    printf("seq-read   2 GiB: %.1f us, %.0f GB/s read\n", t[t.size() / 2],
           2.0 * (1ull << 30) / t[t.size() / 2] / 1e3);
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
    const size_t half = 1ull << 30;
    CK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
    CK(cudaMemcpyAsync(pool_data + half, pool_data, half, cudaMemcpyDeviceToDevice, stream));
    CK(cudaStreamEndCapture(stream, &graph));
    CK(cudaGraphInstantiate(&exec, graph, 0));
    CK(time_graph_replays(exec, stream, 20, &t));
    printf("memcpy     1 GiB: %.1f us, %.0f GB/s (read + write)\n", t[t.size() / 2],
           2.0 * half / t[t.size() / 2] / 1e3);
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
  }

  CK(cudaFuncSetAttribute(gather_bulk<8, 4>, cudaFuncAttributeMaxDynamicSharedMemorySize, 96 * 1024));
  CK(cudaFuncSetAttribute(gather_bulk<8, 2>, cudaFuncAttributeMaxDynamicSharedMemorySize, 96 * 1024));
  std::vector<Method> methods;
  for (int bps : {1, 2, 4, 8}) {
    methods.push_back({"warp-rows U=2", 8 * 2, bps, reinterpret_cast<const void*>(gather_warp_rows<2>), 256,
                       0, launch_warp_rows<2>});
    methods.push_back({"warp-rows U=4", 8 * 4, bps, reinterpret_cast<const void*>(gather_warp_rows<4>), 256,
                       0, launch_warp_rows<4>});
    methods.push_back({"warp-rows U=8", 8 * 8, bps, reinterpret_cast<const void*>(gather_warp_rows<8>), 256,
                       0, launch_warp_rows<8>});
    methods.push_back({"quarters U=1", 64, bps, reinterpret_cast<const void*>(gather_quarters<1>), 256, 0,
                       launch_quarters<1>});
    methods.push_back({"quarters U=2", 128, bps, reinterpret_cast<const void*>(gather_quarters<2>), 256, 0,
                       launch_quarters<2>});
  }
  // sm90-h64's producer: 128 threads, 2 passes of 32 records (the 64 records of one tile in flight).
  methods.push_back({"quarters U=2, 128 threads (producer)", 64, 1,
                     reinterpret_cast<const void*>(gather_quarters<2>), 128, 0, launch_quarters<2>});
  for (int bps : {1, 2, 4}) {
    methods.push_back({"bulk R=8 NB=2", kBulkWarps * 16, bps,
                       reinterpret_cast<const void*>(gather_bulk<8, 2>), kBulkWarps * 32,
                       static_cast<size_t>(kBulkWarps) * 2 * 8 * kBulkRecordSlot, launch_bulk<8, 2>});
    methods.push_back({"bulk R=8 NB=4", kBulkWarps * 32, bps,
                       reinterpret_cast<const void*>(gather_bulk<8, 4>), kBulkWarps * 32,
                       static_cast<size_t>(kBulkWarps) * 4 * 8 * kBulkRecordSlot, launch_bulk<8, 4>});
  }
  // Only resident blocks: a grid-stride loop over blocks that run in a later wave would hide their share.
  for (Method& m : methods) {
    int resident = 0;
    CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&resident, m.kernel, m.threads, m.shared_bytes));
    m.blocks_per_sm = std::min(m.blocks_per_sm, resident);
  }
  std::sort(methods.begin(), methods.end(), [](const Method& a, const Method& b) {
    return a.name != b.name ? a.name < b.name : a.blocks_per_sm < b.blocks_per_sm;
  });
  methods.erase(std::unique(methods.begin(), methods.end(),
                            [](const Method& a, const Method& b) {
                              return a.name == b.name && a.blocks_per_sm == b.blocks_per_sm;
                            }),
                methods.end());

  struct Workload {
    const char* name;
    int records;
  };
  // flash-c4 b=128 reads 128 x (128 + 512) records, pro-c4 b=128 128 x (128 + 1024), flash-swa b=128 128 x
  // 128.
  const Workload workloads[] = {{"flash-swa b=128", 128 * 128},
                                {"flash-c4 b=128", 128 * 640},
                                {"pro-c4 b=128", 128 * 1152},
                                {"1M records", 1 << 20}};
  for (int page_tokens : {64, 256}) {
    const long long page_stride =
        ((static_cast<long long>(page_tokens) * kRecordBytes + kRowBytes - 1) / kRowBytes) * kRowBytes;
    const long long pages = static_cast<long long>(pool_bytes) / page_stride;
    const long long pool_slots = pages * page_tokens;
    const Pool pool{pool_data, page_tokens, page_stride};
    printf("\npage size %d (stride %lld B), %lld slots\n", page_tokens, page_stride, pool_slots);
    printf("%-16s %-38s %7s %9s %10s %8s\n", "workload", "method", "CTA/SM", "rec/SM", "us", "GB/s");
    for (const Workload& w : workloads) {
      std::vector<int32_t> host(static_cast<size_t>(w.records) * kIndexSets);
      uint64_t state = 12345 + page_tokens;
      for (auto& s : host) s = static_cast<int32_t>(splitmix(state) % static_cast<uint64_t>(pool_slots));
      int32_t* slots = nullptr;
      CK(cudaMalloc(&slots, host.size() * sizeof(int32_t)));
      CK(cudaMemcpy(slots, host.data(), host.size() * sizeof(int32_t), cudaMemcpyHostToDevice));
      float best = 1e30f;
      std::string best_name;
      for (const Method& m : methods) {
        cudaGraph_t graph;
        CK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
        for (int set = 0; set < kIndexSets; ++set)
          m.launch(dim3(sms * m.blocks_per_sm), m.threads, m.shared_bytes, stream, pool,
                   slots + static_cast<size_t>(set) * w.records, w.records, sink);
        CK(cudaGetLastError());
        CK(cudaStreamEndCapture(stream, &graph));
        cudaGraphExec_t exec;
        CK(cudaGraphInstantiate(&exec, graph, 0));
        std::vector<float> t;
        CK(time_graph_replays(exec, stream, 15, &t));
        const float us = t[t.size() / 2] / kIndexSets;
        const double gbs = static_cast<double>(w.records) * kRecordBytes / us / 1e3;
        printf("%-16s %-38s %7d %9d %10.2f %8.0f\n", w.name, m.name.c_str(), m.blocks_per_sm,
               m.blocks_per_sm * m.in_flight_records_per_block, us, gbs);
        if (us < best) {
          best = us;
          best_name = m.name + ", " + std::to_string(m.blocks_per_sm) + " CTA/SM";
        }
        cudaGraphExecDestroy(exec);
        cudaGraphDestroy(graph);
      }
      printf("%-16s best: %s, %.2f us, %.0f GB/s\n", w.name, best_name.c_str(), best,
             static_cast<double>(w.records) * kRecordBytes / best / 1e3);
      CK(cudaFree(slots));
    }
  }
  CK(cudaDeviceSynchronize());
  printf("\ndone\n");
  return 0;
}
