// The CPU backend: the reference evaluation, rounded to the op's output types (out bf16, lse fp32) and
// written at the caller's strides. Allocating scratch here is fine: the no-allocation rule of the run
// path is about the CUDA backends.
#include <cmath>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "common/backend_entry.h"
#include "cpu/reference.h"
#include "smla/codec.h"

namespace smla::detail {
namespace {

// double -> bf16, rounded to nearest even once. Going through float with plain rounding could round
// twice (double -> float, then float -> bf16) and miss ties; narrowing to float with round-to-odd
// (truncate, then set the last bit when anything was dropped) keeps the sticky information, so the
// final float -> bf16 rounding is the correct one.
uint16_t double_to_bf16_bits(double value) {
  float narrowed = static_cast<float>(value);
  if (std::isnan(value)) return float_to_bf16_bits(narrowed);
  if (std::fabs(static_cast<double>(narrowed)) > std::fabs(value)) {
    narrowed = std::nextafter(narrowed, 0.f);  // toward zero: truncation
  }
  if (static_cast<double>(narrowed) != value) {
    uint32_t bits;
    std::memcpy(&bits, &narrowed, sizeof(bits));
    bits |= 1u;  // sticky bit: the value lies strictly between this float and the next one out
    std::memcpy(&narrowed, &bits, sizeof(bits));
  }
  return float_to_bf16_bits(narrowed);
}

}  // namespace

Status run_decode_cpu(const Plan& plan, const DecodeParams& params) {
  const int64_t rows = (int64_t)params.batch * params.seq_q;
  const int64_t head_rows = rows * params.num_heads;
  std::vector<double> out, lse;
  try {
    out.resize(static_cast<size_t>(head_rows) * kHeadDim);
    lse.resize(static_cast<size_t>(head_rows));
  } catch (const std::bad_alloc&) {
    return Status::Internal("cpu backend: cannot allocate the " + std::to_string(head_rows) +
                            " x 512 float64 scratch output");
  }
  // make_plan validated the raw value, so the conversion is defined.
  SMLA_RETURN_IF_ERROR(reference_decode(params,
                                        static_cast<smla_cpu_precision_t>(plan.options().cpu_precision),
                                        plan.options().cpu_threads, out.data(), lse.data()));

  for (int32_t b = 0; b < params.batch; ++b) {
    for (int32_t t = 0; t < params.seq_q; ++t) {
      for (int32_t h = 0; h < params.num_heads; ++h) {
        const int64_t index = ((int64_t)b * params.seq_q + t) * params.num_heads + h;
        uint16_t* out_row = params.out + (int64_t)b * params.out_stride_batch +
                            (int64_t)t * params.out_stride_seq + (int64_t)h * params.out_stride_head;
        const double* value = out.data() + index * kHeadDim;
        for (int d = 0; d < kHeadDim; ++d) out_row[d] = double_to_bf16_bits(value[d]);
        params.lse[(int64_t)b * params.lse_stride_batch + (int64_t)t * params.lse_stride_seq +
                   (int64_t)h * params.lse_stride_head] = static_cast<float>(lse[index]);
      }
    }
  }
  return Status::Ok();
}

}  // namespace smla::detail
