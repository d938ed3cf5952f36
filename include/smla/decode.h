// Sparse MLA decode (docs/dsv4-sparse-mla.md section 4): plan once per shape, then run allocation-free.
//
//   smla::Plan plan;
//   SMLA_RETURN_IF_ERROR(smla::make_plan(shape, options, &plan));
//   // allocate plan.workspace_bytes() on the plan's device (host memory for the CPU backend)
//   SMLA_RETURN_IF_ERROR(smla::run(plan, args, workspace, plan.workspace_bytes(), stream));
//
// `run` validates its arguments, allocates nothing, never synchronizes with the host and launches a
// fixed set of kernels, so it can be captured in a CUDA graph; lengths and indices are read on the
// device when the graph replays. Exception: with SMLA_DEBUG_CHECKS=1 in the environment, a CUDA run
// synchronizes its stream and fails with SMLA_STATUS_DEVICE_CHECK_FAILED when the device met bad slot
// ids or lengths (see read_device_errors and docs/safety.md).
#pragma once

#include <cstddef>
#include <cstdint>

#include "smla/backend.h"
#include "smla/status.h"
#include "smla/types.h"

namespace smla {

using DecodeShape = smla_decode_shape_t;
using DecodeArgs = smla_decode_args_t;
using PlanOptions = smla_plan_options_t;

inline constexpr int kTileTokens = 64;  // tokens per KV tile (spec section 5)

// Options with every field at its default (auto backend, current device, planner's splits).
PlanOptions default_plan_options();

// Checks a decode shape (b >= 1, s_q >= 1, 1 <= h <= 128, 1 <= topk <= 2^24, 0 <= extra_topk <= 2^24, sizes
// that fit the int32 index arithmetic). The message names the field.
Status validate_decode_shape(const DecodeShape& shape);

class Plan {
 public:
  Plan() = default;

  bool valid() const { return valid_; }
  Backend backend() const { return backend_; }
  const DecodeShape& shape() const { return shape_; }
  const PlanOptions& options() const { return options_; }
  int device() const { return device_; }  // CUDA ordinal; -1 for the CPU backend
  // Split-KV factor per (row, head block): each split covers tiles_per_split tiles of split_tile_tokens()
  // entries (64; 32 for small calls of the 99 KB-class kernels), total_tiles() of them per row.
  int num_splits() const { return num_splits_; }
  int tiles_per_split() const { return tiles_per_split_; }
  int total_tiles() const { return total_tiles_; }
  int split_tile_tokens() const { return split_tile_tokens_; }
  // Bytes of workspace `run` needs (may be 0 for the CPU backend).
  size_t workspace_bytes() const { return workspace_bytes_; }
  // Device properties captured at plan time (0 for the CPU backend). sm_count() is the SM count the plan
  // was scheduled for: options.sm_count or SMLA_SM_COUNT when set, else the device's.
  int sm_count() const { return sm_count_; }
  int compute_capability() const { return compute_capability_; }  // e.g. 90
  // The kernel run() launches: "cpu", "cuda-ref", or the tensor-core kernel the planner picked from the
  // device's compute capability and shared-memory limit ("sm90-h64", "mma-h64", "mma99-h32",
  // "mma99-h16"). A static string.
  const char* kernel_name() const { return kernel_name_; }
  // Shared memory per block the planner allowed: the device's opt-in limit, capped by
  // options.max_shared_bytes or SMLA_MAX_SHARED_BYTES (0 for the CPU backend).
  int64_t max_shared_bytes() const { return max_shared_bytes_; }
  // Internal: which tensor-core kernel run() launches (a detail::DecodeKernel value; 0 = none).
  int32_t kernel_id() const { return kernel_id_; }
  // Internal: the sm_90a kernel's splits combine inside its thread-block clusters (no combine launch).
  bool cluster_combine() const { return cluster_combine_; }
  // Internal: query rows [0, body_rows()) run body_splits() splits of body_tiles_per_split() tiles each
  // (1: unsplit) and fill whole waves; the rows after them run num_splits() splits (the body and tail split
  // of a call whose uniform splits would leave a wave part-empty); body_rows() = 0 when every row has
  // num_splits().
  int body_rows() const { return body_rows_; }
  int body_splits() const { return body_splits_; }
  int body_tiles_per_split() const { return body_tiles_per_split_; }
  // Internal: the 32-head 99 KB-class kernel ("mma99-h32") runs its register-gather build, not its staging
  // build: the planner picks the build from the split schedule (register_gather_pays,
  // src/cuda/decode/config_compact.h). false for every other kernel.
  bool register_gather() const { return register_gather_; }

 private:
  friend Status make_plan(const DecodeShape& shape, const PlanOptions& options, Plan* plan);
  bool valid_ = false;
  Backend backend_ = SMLA_BACKEND_AUTO;
  DecodeShape shape_{};
  PlanOptions options_{};
  int device_ = -1;
  int num_splits_ = 1;
  int tiles_per_split_ = 0;
  int total_tiles_ = 0;
  int split_tile_tokens_ = 64;
  size_t workspace_bytes_ = 0;
  int sm_count_ = 0;
  int compute_capability_ = 0;
  const char* kernel_name_ = "none";
  int64_t max_shared_bytes_ = 0;
  int32_t kernel_id_ = 0;
  bool cluster_combine_ = false;
  int body_rows_ = 0;
  int body_splits_ = 1;
  int body_tiles_per_split_ = 0;
  bool register_gather_ = false;
};

// Resolves the backend, chooses the kernel and the split schedule and sizes the workspace. With the cuda
// backend chosen by AUTO on a device where no tensor-core kernel fits the shared memory allowed, the plan
// uses cuda-ref (kernel_name() says so); asking for cuda explicitly there is SMLA_STATUS_UNSUPPORTED.
Status make_plan(const DecodeShape& shape, const PlanOptions& options, Plan* plan);

// Validates `args` against the plan (pointers, strides, alignment, cache geometry, memory space; every
// element offset within the address range; out, lse and the workspace sharing no byte with each other or
// with any input, so in-place calls are refused) and runs the decode. `workspace` must hold
// plan.workspace_bytes() bytes on the plan's device (16-byte aligned); `stream` is a cudaStream_t (nullptr =
// default stream), ignored by the CPU backend.
Status run(const Plan& plan, const DecodeArgs& args, void* workspace, size_t workspace_bytes, void* stream);

// Device error counter (CUDA backends). The first uint32 of the workspace counts the index-list
// entries with a slot id >= the cache's slots (pages * P) inside the valid prefix and the lengths
// outside [0, width] that runs on this workspace met. Such entries are masked (treated as absent) and
// such lengths clamped, so no byte outside the given buffers is read or written; the counter tells
// the caller that its inputs were bad. The workspace must be zeroed once after allocation
// (cudaMemset or reset_device_errors); runs only ever add to the counter. See docs/safety.md.
//
// Copies the counter to *error_count with cudaMemcpyAsync on `stream` and waits for the stream: a
// synchronizing call for outside the run path (after the caller's own synchronization, or to poll
// now and then). CPU plans have no counter (the cpu backend rejects bad slot ids up front): 0.
Status read_device_errors(const Plan& plan, const void* workspace, uint64_t* error_count, void* stream);
// Sets the counter back to 0 with cudaMemsetAsync on `stream` (no host sync, graph-capturable).
// A no-op for CPU plans.
Status reset_device_errors(const Plan& plan, void* workspace, void* stream);

// The argument checks of `run` alone (exposed for tests and for engines that validate once).
Status validate_decode_args(const Plan& plan, const DecodeArgs& args, const void* workspace,
                            size_t workspace_bytes);

// Fills the strides of `args` for contiguous q, indices, out and lse of `shape`.
void set_contiguous_strides(const DecodeShape& shape, DecodeArgs* args);

// One-shot convenience for tests and tools: plans, allocates a workspace, runs and synchronizes.
// Not for the serving path (it allocates).
Status decode(const DecodeShape& shape, const DecodeArgs& args, const PlanOptions& options,
              void* stream = nullptr);

}  // namespace smla
