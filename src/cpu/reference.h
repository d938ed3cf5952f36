// The CPU evaluation of spec section 4, un-rounded: the oracle every backend is tested against and
// the engine of the CPU backend (which rounds `out` to bf16).
#pragma once

#include <cstdint>

#include "common/decode_params.h"
#include "smla/status.h"
#include "smla/types.h"

namespace smla::detail {

// Evaluates the decode for every (b, t, h) of `params` (the out/lse pointers and split fields of
// params are ignored). out: [b][s_q][h][512] contiguous, lse: [b][s_q][h] contiguous, both as
// double. precision FLOAT64 accumulates in double; FLOAT32 in float (then widened). Uses up to
// `num_threads` threads (0 = hardware concurrency). Invalid or out-of-range slots are skipped
// (the CPU backend rejects out-of-range slots before calling this).
// Internal error (nothing else) when host memory runs out; out/lse are then incomplete.
Status reference_decode(const DecodeParams& params, smla_cpu_precision_t precision, int num_threads,
                        double* out, double* lse);

}  // namespace smla::detail
