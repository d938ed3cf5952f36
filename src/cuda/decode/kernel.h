// Launchers of the tensor-core sparse decode kernel, one per instantiation (instantiations/*.cu).
// Host declarations only; the kernel template lives in kernel.cuh.
#pragma once

#include <cuda_runtime.h>

#include "common/decode_params.h"
#include "smla/decode.h"
#include "smla/status.h"

namespace smla::detail::decode {

// Launches the decode kernel with 64 heads per CTA on `device` (the current device) and `stream`:
// one CTA per (query row, 64-head block, split), as launch_config.h orders them. Writes final out/lse when
// params.num_splits == 1, else the workspace partials. Sets the kernel's shared-memory limit once per
// device; no allocation, no sync.
Status launch_sparse_decode_heads64(const DecodeParams& params, int device, cudaStream_t stream);

// The 64-head block with warpgroup MMAs (sm_90a); only where hopper_decode_available(device).
Status launch_sparse_decode_heads64_sm90(const DecodeParams& params, int device, cudaStream_t stream);

// Whether `device` runs the sm_90a kernel: compute capability 9.0 and the library was built with sm_90a
// (asked once per device), and not switched off by set_hopper_decode_enabled(false) (tests use that to
// check the portable kernel on a Hopper device).
bool hopper_decode_available(int device);

// How many clusters of `cluster_size` CTAs of the sm_90a kernel fit on `device` at once (asked once per
// device and size; 0 when the query fails). The planner uses it for the waves of cluster launches.
int sm90_max_active_clusters(int device, int cluster_size);
void set_hopper_decode_enabled(bool enabled);

// The 99 KB-class kernel (kernel_compact.cuh; 32-token compute tiles, at most 101,376 bytes of shared
// memory): 32 heads per CTA, grid (b * s_q * num_splits, ceil(h / 32)), and 16 heads per CTA, grid
// (b * s_q * num_splits, ceil(h / 16)), the narrow head block on every device.
Status launch_sparse_decode_compact32(const DecodeParams& params, int device, cudaStream_t stream);
// The 32-head block's register-gather kernel (register_gather_pays, config_compact.h).
Status launch_sparse_decode_compact32_registers(const DecodeParams& params, int device, cudaStream_t stream);
// Which build of the 32-head block a call runs: the one its plan picked (Plan::register_gather),
// unless a test forces one so that both are checked on every shape and input (tests/cuda). Process-wide.
enum class Compact32Gather { kBySchedule, kStaging, kRegisters };
void set_compact32_gather(Compact32Gather gather);
bool compact32_runs_register_gather(const Plan& plan);
Status launch_sparse_decode_compact16(const DecodeParams& params, int device, cudaStream_t stream);

}  // namespace smla::detail::decode
