// Compile-time shape of the cuda-ref (oracle) decode kernel.
#pragma once

namespace smla::detail::decode_ref {

constexpr int kWarpSize = 32;
constexpr int kHeadsPerBlock = 8;                     // one warp per head for the dot products
constexpr int kThreads = kHeadsPerBlock * kWarpSize;  // 256
constexpr int kDimsPerThread = 2;                     // 256 threads x 2 dims = 512 dims of out
constexpr int kDotDimsPerLane = 512 / kWarpSize;      // 16 dims of the dot product per lane
// Running maxima start here instead of -inf, so exp(old_max - new_max) is 0, never exp(-inf + inf) = NaN
// (spec section 4, NaN safety).
constexpr float kInitialRunningMax = -1e30f;

}  // namespace smla::detail::decode_ref
