// run_decode_cuda: the tensor-core backend's entry (src/common/backend_entry.h). One decode launch, plus
// the combine launch when the plan splits the KV tiles; nothing else (CUDA-graph friendly).
#include <cuda_runtime.h>

#include "common/backend_entry.h"
#include "cuda/combine/kernel.h"
#include "cuda/decode/config.h"
#include "cuda/decode/config_sm90.h"
#include "cuda/decode/kernel.h"

namespace smla::detail {

Status run_decode_cuda(const Plan& plan, const DecodeParams& params, void* stream) {
  const cudaStream_t cuda_stream = static_cast<cudaStream_t>(stream);
  // The head block follows from h, b * s_q and the tile count (decode::head_block_for), the rule the
  // planner also used.
  const int64_t query_rows = static_cast<int64_t>(params.batch) * params.seq_q;
  if (decode::head_block_for(params.num_heads, query_rows, params.total_tiles) ==
      decode::DecodeConfigHeads16::kHeadBlock) {
    SMLA_RETURN_IF_ERROR(decode::launch_sparse_decode_heads16(params, plan.device(), cuda_stream));
  } else if (decode::hopper_decode_available(plan.device())) {
    SMLA_RETURN_IF_ERROR(decode::launch_sparse_decode_heads64_sm90(params, plan.device(), cuda_stream));
    // Up to kMaxClusterSplits splits are combined inside the kernel's clusters.
    if (decode::sm90_combines_in_cluster(params.num_splits)) return Status::Ok();
  } else {
    SMLA_RETURN_IF_ERROR(decode::launch_sparse_decode_heads64(params, plan.device(), cuda_stream));
  }
  if (params.num_splits > 1) SMLA_RETURN_IF_ERROR(launch_split_combine(params, cuda_stream));
  return Status::Ok();
}

}  // namespace smla::detail
