// The launchers dispatch.cpp calls, one per backend. Each receives fully validated params.
#pragma once

#include "common/decode_params.h"
#include "smla/decode.h"
#include "smla/status.h"

namespace smla::detail {

// CPU reference (src/cpu). Uses plan.options().cpu_precision and cpu_threads.
Status run_decode_cpu(const Plan& plan, const DecodeParams& params);

// CUDA oracle (src/cuda/decode_ref): fp32 scalar/warp math, no split (num_splits ignored).
Status run_decode_cuda_ref(const Plan& plan, const DecodeParams& params, void* stream);

// Tensor-core CUDA backend (src/cuda/decode): split-KV + combine as planned.
Status run_decode_cuda(const Plan& plan, const DecodeParams& params, void* stream);

// Device properties for the planner (src/cuda/common): false when no usable device.
struct CudaDeviceInfo {
  int ordinal = -1;
  int sm_count = 0;
  int compute_capability = 0;
  // The sm_90a warp-specialized decode kernel runs here (compute capability 9.0 and an sm_90a build);
  // it changes the planner's head block and split costs.
  bool warp_specialized_decode = false;
  // For that kernel: how many thread-block clusters of n CTAs (index n = 2..8) can be resident at once
  // (cudaOccupancyMaxActiveClusters; GPC boundaries make it less than sm_count / n). 0 = unknown.
  int max_active_clusters[9] = {};
  // Dynamic shared memory one block may opt in to (cudaDevAttrMaxSharedMemoryPerBlockOptin), after the
  // cap of PlanOptions::max_shared_bytes / SMLA_MAX_SHARED_BYTES when make_plan applies one.
  int64_t max_shared_bytes = 0;
};
Status query_cuda_device(int requested_ordinal, CudaDeviceInfo* info);

// Memory-space check of a pointer used by the validation layer: true when `ptr` is CUDA device (or
// managed) memory on `device`. Host-only builds always answer false.
bool pointer_is_device_memory(const void* ptr, int device);

}  // namespace smla::detail

namespace smla::detail {

// The tensor-core decode kernels, and the one the planner picks for a shape on a device
// (src/cuda/decode/kernel_choice.cpp). The plan stores the choice; run_decode_cuda launches it.
enum class DecodeKernel : int32_t {
  kNone = 0,        // no tensor-core kernel fits the device's shared memory
  kSm90Heads64,     // warp-specialized sm_90a kernel, 64 heads per CTA (about 200 KB)
  kMmaHeads64,      // portable mma.sync kernel, 64 heads, 64-token tiles (about 174 KB)
  kCompactHeads32,  // 99 KB-class mma.sync kernel, 32 heads, 32-token tiles (about 85 KB)
  kCompactHeads16,  // the same with 16 heads (about 68 KB): the narrow block on every device
};
struct KernelChoice {
  DecodeKernel kernel = DecodeKernel::kNone;
  int head_block = 0;        // heads per CTA
  int64_t shared_bytes = 0;  // dynamic shared memory per CTA
};
// A call's query rows (b * s_q) and the 64-entry tiles of a query row's two lists, as the planner counts
// them (kernel_choice.cpp, schedule.cpp).
inline int64_t query_rows_of(const DecodeShape& shape) {
  return static_cast<int64_t>(shape.batch) * shape.seq_q;
}
inline int64_t total_tiles_of(const DecodeShape& shape) {
  const int64_t extra_topk = shape.extra_topk > 0 ? shape.extra_topk : 0;
  return (shape.topk + kTileTokens - 1) / kTileTokens + (extra_topk + kTileTokens - 1) / kTileTokens;
}
// "sm90-h64", "mma-h64", "mma99-h32", "mma99-h16"; "none" for kNone.
const char* decode_kernel_name(DecodeKernel kernel);
// The fastest kernel whose shared memory fits device.max_shared_bytes: the sm_90a kernel where
// device.warp_specialized_decode, else the portable kernel, else the 99 KB-class kernel, with the head
// block of decode::head_block_for (64 -> 32 for the 99 KB class). kNone when none fits.
KernelChoice choose_decode_kernel(const DecodeShape& shape, const CudaDeviceInfo& device);
// Shared memory of the smallest tensor-core kernel that could run `shape` (its 99 KB-class kernel).
int64_t smallest_decode_kernel_bytes(const DecodeShape& shape);

// The shared-memory cap of a plan: options.max_shared_bytes when > 0, else SMLA_MAX_SHARED_BYTES when set
// (`env_value`, may be null), else 0 (no cap). A negative option or an environment value that is not a
// positive integer is an error naming it.
Status shared_memory_cap(int32_t option, const char* env_value, int64_t* cap);

// The SM count a plan's kernel choice and split schedule assume instead of the device's: options.sm_count
// when > 0, else SMLA_SM_COUNT when set (`env_value`, may be null), else 0 (the device's own). At most
// kMaxPlannedSmCount; a negative option or an environment value that is not such a positive integer is an
// error naming it. Only the schedule changes: every launch still runs on the real device.
inline constexpr int kMaxPlannedSmCount = 1024;
Status planned_sm_count(int32_t option, const char* env_value, int* sm_count);

// What the plan options change in the device description the planner sees: the shared-memory cap (when
// > 0) lowers max_shared_bytes, the planned SM count (when > 0) replaces sm_count. With both, a Hopper GPU
// is planned exactly as a 99 KB-class GPU of that SM count (e.g. 101376 and 188: an RTX PRO 6000).
void apply_planner_overrides(int64_t shared_cap, int planned_sms, CudaDeviceInfo* device);

// Split-KV schedule of the tensor-core backend (src/cuda/decode/schedule.cpp): how many CTAs share
// one (query row, head block) so that the grid fills the device. `requested_splits` > 0 forces the
// number of splits (clamped to [1, total_tiles]) in 64-entry tiles.
struct SplitSchedule {
  int num_splits = 1;
  int tiles_per_split = 0;  // schedule tiles of tile_tokens entries
  int total_tiles = 0;      // main tiles first, then extra tiles
  // Entries per schedule tile: 64, or 32 (half tiles) for a small call of the 99 KB-class kernels whose
  // 64-entry splits would leave SMs idle (kernel_compact.cuh walks 32-entry tiles either way).
  int tile_tokens = 64;
  int head_block = 64;  // heads per CTA the kernel will use for this shape (the KernelChoice's)
  // The sm_90a kernel's splits run as thread-block clusters that combine inside the kernel (2..8 splits,
  // where the model charges that less than the combine kernel); other split calls write partials for the
  // combine kernel.
  bool cluster_combine = false;
  // The body and tail split (common/split_grid.h): query rows [0, body_rows) run body_splits splits of
  // body_tiles_per_split tiles (body_splits = 1: unsplit) and fill whole waves; the rows after them run
  // num_splits splits of tiles_per_split, through the combine kernel. 0 when every row has num_splits.
  int body_rows = 0;
  int body_splits = 1;
  int body_tiles_per_split = 0;
};
SplitSchedule plan_cuda_decode_splits(const DecodeShape& shape, const CudaDeviceInfo& device,
                                      const KernelChoice& kernel, int requested_splits);

}  // namespace smla::detail
