// Split-KV combine kernel. For one (query row, head) with split results (o_s, L_s):
//   lse = log(sum_s exp(L_s))                    (natural log, sink excluded; +inf when all empty)
//   out = sum_s exp(L_s - M) o_s / (sum_s exp(L_s - M) + exp(sink - M)),  M = max(max_s L_s, finite sink)
// Empty splits (L_s = -inf) are skipped without reading o_s. Shifting by M keeps every exponent <= 0 and
// the denominator >= 1, so no finite sink can overflow it; a +inf sink gives out = 0.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <atomic>
#include <cmath>
#include <cstdint>

#include "cuda/combine/kernel.h"
#include "cuda/common/cuda_check.h"
#include "smla/cache.h"

namespace smla::detail {
namespace {

constexpr int kCombineThreads = kHeadDim / 4;  // one float4 of the 512 dims per thread

__global__ void __launch_bounds__(kCombineThreads) split_combine_kernel(const DecodeParams params) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  // Launched as a programmatic dependent of the decode kernel: the blocks may start while its last CTAs
  // run; this waits until that grid has completed and its partials are visible.
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
  const int64_t row_head = blockIdx.x;  // query_row * num_heads + head
  const int head = static_cast<int>(row_head % params.num_heads);
  const int64_t query_row = row_head / params.num_heads;
  const int batch = static_cast<int>(query_row / params.seq_q);
  const int seq = static_cast<int>(query_row % params.seq_q);
  const int num_splits = params.num_splits;
  // partial index of (row, split, head) = (row * num_splits + split) * h + head
  const int64_t first_partial = query_row * num_splits * params.num_heads + head;
  const int64_t split_step = params.num_heads;

  float max_lse = -INFINITY;
  for (int s = 0; s < num_splits; ++s)
    max_lse = fmaxf(max_lse, params.partial_lse[first_partial + s * split_step]);
  const bool empty = max_lse == -INFINITY;

  const float sink = params.attn_sink != nullptr ? params.attn_sink[head] : -INFINITY;
  const float shift = (isfinite(sink) && sink > max_lse) ? sink : max_lse;

  float4 accumulated = make_float4(0.f, 0.f, 0.f, 0.f);
  float weight_sum = 0.f;  // sum_s exp(L_s - max_lse), >= 1 when not empty
  float shifted_weight_sum = 0.f;
  if (!empty) {
    for (int s = 0; s < num_splits; ++s) {
      const float split_lse = params.partial_lse[first_partial + s * split_step];
      if (split_lse == -INFINITY) continue;
      weight_sum += expf(split_lse - max_lse);
      const float weight = expf(split_lse - shift);
      shifted_weight_sum += weight;
      const float4 partial = reinterpret_cast<const float4*>(
          params.partial_out + (first_partial + s * split_step) * kHeadDim)[threadIdx.x];
      accumulated.x += weight * partial.x;
      accumulated.y += weight * partial.y;
      accumulated.z += weight * partial.z;
      accumulated.w += weight * partial.w;
    }
  }
  float inverse = 0.f;
  if (!empty && sink != INFINITY) {
    const float sink_weight = isfinite(sink) ? expf(sink - shift) : 0.f;
    inverse = 1.f / (shifted_weight_sum + sink_weight);
  }
  const __nv_bfloat162 low = __floats2bfloat162_rn(accumulated.x * inverse, accumulated.y * inverse);
  const __nv_bfloat162 high = __floats2bfloat162_rn(accumulated.z * inverse, accumulated.w * inverse);
  uint2 packed;
  __builtin_memcpy(&packed.x, &low, 4);
  __builtin_memcpy(&packed.y, &high, 4);
  uint16_t* out_row = params.out + batch * params.out_stride_batch + seq * params.out_stride_seq +
                      head * params.out_stride_head;
  reinterpret_cast<uint2*>(out_row)[threadIdx.x] = packed;
  if (threadIdx.x == 0) {
    params
        .lse[batch * params.lse_stride_batch + seq * params.lse_stride_seq + head * params.lse_stride_head] =
        empty ? INFINITY : max_lse + logf(weight_sum);
  }
}

// Whether the current device supports programmatic dependent launch (sm_90+), asked once per device.
bool current_device_has_pdl() {
  static std::atomic<uint64_t> known{0}, supported{0};  // bit d: device d answered / has sm_90+ (d < 64)
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess || device < 0 || device >= 64) return false;
  const uint64_t bit = uint64_t{1} << device;
  if ((known.load(std::memory_order_acquire) & bit) == 0) {
    int major = 0;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess)
      return false;
    if (major >= 9) supported.fetch_or(bit, std::memory_order_acq_rel);
    known.fetch_or(bit, std::memory_order_acq_rel);
  }
  return (supported.load(std::memory_order_acquire) & bit) != 0;
}

}  // namespace

Status launch_split_combine(const DecodeParams& params, cudaStream_t stream) {
  const int64_t blocks = static_cast<int64_t>(params.batch) * params.seq_q * params.num_heads;
  // Programmatic dependent launch (sm_90+): the combine's launch overlaps the decode kernel's tail instead
  // of waiting for it to drain. Captured into CUDA graphs as a programmatic edge.
  cudaLaunchConfig_t config = {};
  config.gridDim = dim3(static_cast<unsigned>(blocks));
  config.blockDim = dim3(kCombineThreads);
  config.dynamicSmemBytes = 0;
  config.stream = stream;
  cudaLaunchAttribute attribute = {};
  attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute.val.programmaticStreamSerializationAllowed = 1;
  config.attrs = &attribute;
  config.numAttrs = current_device_has_pdl() ? 1 : 0;
  SMLA_CUDA_CHECK(cudaLaunchKernelEx(&config, split_combine_kernel, params));
  return Status::Ok();
}

}  // namespace smla::detail
