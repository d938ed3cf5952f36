// The cache codec (docs/dsv4-sparse-mla.md section 3): quantize-and-append and dequantize, on the host
// or on a CUDA device, bit-identical between the two.
#pragma once

#include <cstdint>

#include "smla/cache.h"
#include "smla/status.h"

namespace smla {

// Host scalar conversions (CUDA toolkit's host-callable cuda_fp8.h / cuda_bf16.h underneath).
float bf16_bits_to_float(uint16_t bits);
uint16_t float_to_bf16_bits(float value);  // round to nearest even
float e4m3_bits_to_float(uint8_t bits);    // OCP e4m3fn; 0x7f/0xff are NaN
uint8_t float_to_e4m3_bits(float value);   // round to nearest even, saturating to +-448

// Encodes one bf16 token x[512] into its 576-byte row and 8-byte footer entry.
void encode_token(const uint16_t* token_bf16, uint8_t* row576, uint8_t* footer8);
// Decodes a row + footer entry to 512 floats (the exact dequantized values).
void decode_token(const uint8_t* row576, const uint8_t* footer8, float* out512);

// Where the buffers of an append or gather live.
enum class MemorySpace { kHost, kCuda };

// Quantizes tokens [n, 512] bf16 (row i at tokens + i*token_stride elements) and writes token i to
// slot slots[i]. Negative slots are skipped. A slot >= the cache's slot count is an error (host:
// checked before anything is written; CUDA: the entry is skipped and counted in *bad_slots if given).
// kCuda: all pointers are device pointers and the work is enqueued on `stream` (a cudaStream_t).
Status append_tokens(const CacheLayout& cache, const void* tokens_bf16, int64_t num_tokens,
                     int64_t token_stride, const int32_t* slots, MemorySpace where = MemorySpace::kHost,
                     void* stream = nullptr);

// Host: dequantizes slot `slot` into out512 (float).
Status dequantize_slot(const CacheLayout& cache, int64_t slot, float* out512);
// Host: dequantizes slots[0..n) into out [n, 512]; a negative slot gives a row of zeros.
Status dequantize_gather(const CacheLayout& cache, const int32_t* slots, int64_t num_slots, float* out);
// Host: as above, rounded to bf16 (exact: the dequantized values are bf16-representable).
Status dequantize_gather_bf16(const CacheLayout& cache, const int32_t* slots, int64_t num_slots,
                              uint16_t* out_bf16);

}  // namespace smla
