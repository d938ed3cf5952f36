// Host cache codec (spec section 3) and the public append / dequantize entry points.
//
// The scalar conversions come from the CUDA toolkit's host-callable cuda_fp8.h / cuda_bf16.h, so the
// host and the device round with the very same routines; the scale rule below is written so the GPU
// append kernel can replicate it bit for bit.
#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "common/backend_entry.h"
#include "common/byte_range.h"
#include "common/cuda_ops.h"
#include "common/memory_space.h"
#include "smla/codec.h"

namespace smla {

float bf16_bits_to_float(uint16_t bits) {
  // bf16 is the top half of an fp32: widening is a shift, exact for every code including NaN.
  const uint32_t wide = static_cast<uint32_t>(bits) << 16;
  float value;
  std::memcpy(&value, &wide, sizeof(value));
  return value;
}

uint16_t float_to_bf16_bits(float value) {
  const __nv_bfloat16_raw raw = __float2bfloat16_rn(value);
  return raw.x;
}

float e4m3_bits_to_float(uint8_t bits) {
  // Every e4m3 value (and NaN) is exact in fp16, and every fp16 value is exact in fp32.
  const __half_raw half = __nv_cvt_fp8_to_halfraw(static_cast<__nv_fp8_storage_t>(bits), __NV_E4M3);
  return __half2float(__half(half));
}

uint8_t float_to_e4m3_bits(float value) {
  return static_cast<uint8_t>(__nv_cvt_float_to_fp8(value, __NV_SATFINITE, __NV_E4M3));
}

namespace {

constexpr float kMinGroupAmax = 1e-4f;  // spec section 3 step 1: keeps all-zero groups finite
constexpr float kE4m3Max = 448.f;
constexpr int kScaleExponentBias = 127;  // UE8M0
constexpr int kMaxScaleExponent = 127;   // byte 254: 255 is reserved (never written)

// Exponent e of the group scale 2^e = 2^ceil(log2(amax / 448)).
//
// We take the *exact* ceil(log2(r)) of the fp32 value r = amax / 448 (the division rounded once in
// fp32), via frexp: r = m * 2^E with m in [0.5, 1), so r is a power of two exactly when m == 0.5 and
// then log2(r) = E - 1; otherwise ceil(log2(r)) = E. This avoids log2f/ceilf, whose last-ulp
// behaviour differs between libm and CUDA; the GPU append kernel replicates this integer rule
// bit for bit. Infinite magnitudes (NaN inputs are ignored by the max) take the largest scale, so
// the group saturates to +-448 instead of writing the reserved byte 255.
int group_scale_exponent(float group_amax) {
  const float amax = std::fmax(group_amax, kMinGroupAmax);
  if (!std::isfinite(amax)) return kMaxScaleExponent;
  const float ratio = amax / kE4m3Max;
  int exponent = 0;
  const float mantissa = std::frexp(ratio, &exponent);
  const int scale_exponent = (mantissa == 0.5f) ? exponent - 1 : exponent;
  return scale_exponent > kMaxScaleExponent ? kMaxScaleExponent : scale_exponent;
}

}  // namespace

void encode_token(const uint16_t* token_bf16, uint8_t* row576, uint8_t* footer8) {
  for (int group = 0; group < kNumScaleGroups; ++group) {
    const uint16_t* group_values = token_bf16 + group * kQuantGroup;
    float group_amax = 0.f;
    for (int i = 0; i < kQuantGroup; ++i) {
      // fmax ignores a NaN operand, as the device's fmaxf does.
      group_amax = std::fmax(group_amax, std::fabs(bf16_bits_to_float(group_values[i])));
    }
    const int scale_exponent = group_scale_exponent(group_amax);
    // 2^-e is a normal fp32 for every e we produce, so x * 2^-e is an exact rescaling.
    const float inverse_scale = std::ldexp(1.0f, -scale_exponent);
    for (int i = 0; i < kQuantGroup; ++i) {
      row576[group * kQuantGroup + i] =
          float_to_e4m3_bits(bf16_bits_to_float(group_values[i]) * inverse_scale);
    }
    footer8[group] = static_cast<uint8_t>(scale_exponent + kScaleExponentBias);
  }
  footer8[kNumScaleGroups] = 0;  // pad byte: writers store 0
  // Rope dims 448..511 are stored as raw bf16, little-endian.
  for (int j = 0; j < kRopeDim; ++j) {
    const uint16_t bits = token_bf16[kNopeDim + j];
    row576[kNopeDim + 2 * j] = static_cast<uint8_t>(bits & 0xFFu);
    row576[kNopeDim + 2 * j + 1] = static_cast<uint8_t>(bits >> 8);
  }
}

void decode_token(const uint8_t* row576, const uint8_t* footer8, float* out512) {
  for (int group = 0; group < kNumScaleGroups; ++group) {
    const float scale = scale_from_ue8m0(footer8[group]);
    for (int i = 0; i < kQuantGroup; ++i) {
      const int dim = group * kQuantGroup + i;
      out512[dim] = e4m3_bits_to_float(row576[dim]) * scale;
    }
  }
  for (int j = 0; j < kRopeDim; ++j) {
    const uint16_t bits = static_cast<uint16_t>(row576[kNopeDim + 2 * j] |
                                                (static_cast<uint16_t>(row576[kNopeDim + 2 * j + 1]) << 8));
    out512[kNopeDim + j] = bf16_bits_to_float(bits);
  }
}

namespace {

Status check_slot_list(const CacheLayout& cache, const int32_t* slots, int64_t count, const char* what) {
  const int64_t num_slots = cache_num_slots(cache);
  for (int64_t i = 0; i < count; ++i) {
    if (slots[i] >= num_slots) {
      return Status::InvalidArgument(std::string(what) + "[" + std::to_string(i) +
                                     "] = " + std::to_string(slots[i]) + " is out of range (cache holds " +
                                     std::to_string(num_slots) + " slots)");
    }
  }
  return Status::Ok();
}

uint8_t* cache_bytes(const CacheLayout& cache) { return static_cast<uint8_t*>(cache.data); }

// The host paths dereference their pointers on the CPU: CUDA device memory there would be a segfault, not an
// error. (Managed and registered host memory are host-accessible.)
Status check_host_accessible(const void* ptr, const char* name, const char* entry) {
  if (ptr != nullptr && detail::locate_pointer(ptr).space == detail::MemorySpace::kDevice) {
    return Status::InvalidArgument(std::string(name) + " is CUDA device memory; " + entry +
                                   " reads and writes it on the host and needs host memory");
  }
  return Status::Ok();
}

// The CUDA append kernel runs on the current device: every pointer must be that device's memory (or managed
// memory), or the launch faults (or, under HMM, reads host memory at a crawl).
Status check_on_current_device(const void* ptr, const char* name) {
  int device = -1;
  if (cudaGetDevice(&device) != cudaSuccess) {
    cudaGetLastError();  // leave no trace for unrelated checks
    return Status::NoDevice("append with memory_space CUDA needs a CUDA device (cudaGetDevice failed)");
  }
  if (!detail::pointer_is_device_memory(ptr, device)) {
    return Status::InvalidArgument(
        std::string(name) + " must be CUDA device or managed memory on the current " + "device " +
        std::to_string(device) + " (memory_space CUDA; pass host buffers with memory_space host)");
  }
  return Status::Ok();
}

// The 512 values of `slot`, whose range, layout and memory space the caller has checked (the gathers check
// the whole list once rather than each slot again).
void decode_checked_slot(const CacheLayout& cache, int64_t slot, float* out512) {
  const uint8_t* base = cache_bytes(cache);
  decode_token(base + slot_row_offset(cache.page_block_size, cache.page_stride_bytes, slot),
               base + slot_scale_offset(cache.page_block_size, cache.page_stride_bytes, slot), out512);
}

// The cache is written (append) or read beside an output (dequantize): the written buffer must share no
// memory with the other arguments.
Status check_codec_buffers_disjoint(const CacheLayout& cache, bool cache_written, const void* values,
                                    int64_t values_bytes, const char* values_name, const int32_t* slots,
                                    int64_t num_slots) {
  detail::ByteRange cache_range, values_range, slots_range;
  SMLA_RETURN_IF_ERROR(
      detail::sized_byte_range("cache.data", cache.data, cache_pool_bytes(cache), &cache_range));
  SMLA_RETURN_IF_ERROR(detail::sized_byte_range(values_name, values, values_bytes, &values_range));
  SMLA_RETURN_IF_ERROR(detail::sized_byte_range("slots", slots, num_slots * int64_t{4}, &slots_range));
  if (cache_written) return detail::check_outputs_disjoint({cache_range}, {values_range, slots_range});
  return detail::check_outputs_disjoint({values_range}, {cache_range, slots_range});
}

}  // namespace

Status append_tokens(const CacheLayout& cache, const void* tokens_bf16, int64_t num_tokens,
                     int64_t token_stride, const int32_t* slots, MemorySpace where, void* stream) {
  SMLA_RETURN_IF_ERROR(validate_cache_layout(cache, "cache"));
  if (num_tokens < 0) {
    return Status::InvalidArgument("num_tokens must be >= 0 (got " + std::to_string(num_tokens) + ")");
  }
  if (token_stride < kHeadDim) {
    return Status::InvalidArgument("token_stride must be >= 512 elements (got " +
                                   std::to_string(token_stride) + ")");
  }
  if (num_tokens == 0) return Status::Ok();
  if (token_stride > std::numeric_limits<int64_t>::max() / num_tokens) {
    return Status::InvalidArgument("num_tokens * token_stride overflows int64 (" +
                                   std::to_string(num_tokens) + " * " + std::to_string(token_stride) + ")");
  }
  if (tokens_bf16 == nullptr) return Status::InvalidArgument("tokens_bf16 must not be null");
  if (slots == nullptr) return Status::InvalidArgument("slots must not be null");
  // The last token's row ends (num_tokens - 1) * token_stride + 512 elements in: its bytes fit int64.
  const int64_t token_elements = (num_tokens - 1) * token_stride + kHeadDim;
  if (token_elements > std::numeric_limits<int64_t>::max() / 2) {
    return Status::InvalidArgument("num_tokens * token_stride overflows the address range (" +
                                   std::to_string(num_tokens) + " * " + std::to_string(token_stride) + ")");
  }
  SMLA_RETURN_IF_ERROR(check_codec_buffers_disjoint(cache, true, tokens_bf16, 2 * token_elements,
                                                    "tokens_bf16", slots, num_tokens));

  if (where == MemorySpace::kCuda) {
    SMLA_RETURN_IF_ERROR(check_on_current_device(cache.data, "cache.data"));
    SMLA_RETURN_IF_ERROR(check_on_current_device(tokens_bf16, "tokens_bf16"));
    SMLA_RETURN_IF_ERROR(check_on_current_device(slots, "slots"));
    // Device slots cannot be inspected here without a sync; the kernel skips bad ones instead.
    return detail::append_tokens_cuda(cache, static_cast<const uint16_t*>(tokens_bf16), num_tokens,
                                      token_stride, slots, /*bad_slot_counter=*/nullptr, stream);
  }

  SMLA_RETURN_IF_ERROR(check_host_accessible(cache.data, "cache.data", "append with memory_space host"));
  SMLA_RETURN_IF_ERROR(check_host_accessible(tokens_bf16, "tokens_bf16", "append with memory_space host"));
  SMLA_RETURN_IF_ERROR(check_host_accessible(slots, "slots", "append with memory_space host"));
  // Check every slot before the first write, so a bad call leaves the cache untouched.
  SMLA_RETURN_IF_ERROR(check_slot_list(cache, slots, num_tokens, "slots"));
  const uint16_t* tokens = static_cast<const uint16_t*>(tokens_bf16);
  uint8_t* base = cache_bytes(cache);
  for (int64_t i = 0; i < num_tokens; ++i) {
    if (slots[i] < 0) continue;  // "no token"
    encode_token(tokens + i * token_stride,
                 base + slot_row_offset(cache.page_block_size, cache.page_stride_bytes, slots[i]),
                 base + slot_scale_offset(cache.page_block_size, cache.page_stride_bytes, slots[i]));
  }
  return Status::Ok();
}

Status dequantize_slot(const CacheLayout& cache, int64_t slot, float* out512) {
  SMLA_RETURN_IF_ERROR(validate_cache_layout(cache, "cache"));
  if (out512 == nullptr) return Status::InvalidArgument("out512 must not be null");
  SMLA_RETURN_IF_ERROR(check_host_accessible(cache.data, "cache.data", "dequantize_slot"));
  SMLA_RETURN_IF_ERROR(check_host_accessible(out512, "out512", "dequantize_slot"));
  const int64_t num_slots = cache_num_slots(cache);
  if (slot < 0 || slot >= num_slots) {
    return Status::InvalidArgument("slot = " + std::to_string(slot) + " is out of range [0, " +
                                   std::to_string(num_slots) + ")");
  }
  decode_checked_slot(cache, slot, out512);
  return Status::Ok();
}

Status dequantize_gather(const CacheLayout& cache, const int32_t* slots, int64_t num_slots, float* out) {
  SMLA_RETURN_IF_ERROR(validate_cache_layout(cache, "cache"));
  if (num_slots < 0) {
    return Status::InvalidArgument("num_slots must be >= 0 (got " + std::to_string(num_slots) + ")");
  }
  if (num_slots == 0) return Status::Ok();
  if (slots == nullptr) return Status::InvalidArgument("slots must not be null");
  if (out == nullptr) return Status::InvalidArgument("out must not be null");
  SMLA_RETURN_IF_ERROR(check_host_accessible(cache.data, "cache.data", "dequantize_gather"));
  SMLA_RETURN_IF_ERROR(check_host_accessible(slots, "slots", "dequantize_gather"));
  SMLA_RETURN_IF_ERROR(check_host_accessible(out, "out", "dequantize_gather"));
  if (num_slots > std::numeric_limits<int64_t>::max() / (4 * kHeadDim)) {
    return Status::InvalidArgument("num_slots = " + std::to_string(num_slots) + " overflows the size of out");
  }
  SMLA_RETURN_IF_ERROR(
      check_codec_buffers_disjoint(cache, false, out, num_slots * 4 * kHeadDim, "out", slots, num_slots));
  SMLA_RETURN_IF_ERROR(check_slot_list(cache, slots, num_slots, "slots"));
  for (int64_t i = 0; i < num_slots; ++i) {
    float* row = out + i * kHeadDim;
    if (slots[i] < 0) {
      std::memset(row, 0, sizeof(float) * kHeadDim);
      continue;
    }
    decode_checked_slot(cache, slots[i], row);
  }
  return Status::Ok();
}

Status dequantize_gather_bf16(const CacheLayout& cache, const int32_t* slots, int64_t num_slots,
                              uint16_t* out_bf16) {
  SMLA_RETURN_IF_ERROR(validate_cache_layout(cache, "cache"));
  if (num_slots < 0) {
    return Status::InvalidArgument("num_slots must be >= 0 (got " + std::to_string(num_slots) + ")");
  }
  if (num_slots == 0) return Status::Ok();
  if (slots == nullptr) return Status::InvalidArgument("slots must not be null");
  if (out_bf16 == nullptr) return Status::InvalidArgument("out_bf16 must not be null");
  SMLA_RETURN_IF_ERROR(check_host_accessible(cache.data, "cache.data", "dequantize_gather_bf16"));
  SMLA_RETURN_IF_ERROR(check_host_accessible(slots, "slots", "dequantize_gather_bf16"));
  SMLA_RETURN_IF_ERROR(check_host_accessible(out_bf16, "out_bf16", "dequantize_gather_bf16"));
  if (num_slots > std::numeric_limits<int64_t>::max() / (2 * kHeadDim)) {
    return Status::InvalidArgument("num_slots = " + std::to_string(num_slots) +
                                   " overflows the size of out_bf16");
  }
  SMLA_RETURN_IF_ERROR(check_codec_buffers_disjoint(cache, false, out_bf16, num_slots * 2 * kHeadDim,
                                                    "out_bf16", slots, num_slots));
  SMLA_RETURN_IF_ERROR(check_slot_list(cache, slots, num_slots, "slots"));
  float row[kHeadDim];
  for (int64_t i = 0; i < num_slots; ++i) {
    if (slots[i] < 0) {
      std::fill(row, row + kHeadDim, 0.f);
    } else {
      decode_checked_slot(cache, slots[i], row);
    }
    for (int d = 0; d < kHeadDim; ++d) out_bf16[i * kHeadDim + d] = float_to_bf16_bits(row[d]);
  }
  return Status::Ok();
}

}  // namespace smla
