/* smla C API: sparse MLA decode over a paged FP8 KV cache (DeepSeek-V4).
 *
 * Every function returns an smla_status_t; on failure smla_last_error() holds a message naming the
 * offending argument (thread-local: each thread sees its own last error). No CUDA headers needed:
 * streams are passed as void* (a cudaStream_t, NULL = default stream).
 *
 *   smla_plan_options_t opts;  smla_default_plan_options(&opts);
 *   smla_plan_t plan;          smla_plan_create(&shape, &opts, &plan);
 *   size_t ws_bytes;           smla_plan_workspace_bytes(plan, &ws_bytes);
 *   ... allocate ws_bytes on the plan's device ...
 *   smla_decode_run(plan, &args, workspace, ws_bytes, stream);
 *   smla_plan_destroy(plan);
 */
#ifndef SMLA_SMLA_H_
#define SMLA_SMLA_H_

#include <stddef.h>
#include <stdint.h>

#include "smla/status_codes.h"
#include "smla/types.h"
#include "smla/version.h" /* generated from project(VERSION) in CMakeLists.txt */

#ifdef __cplusplus
extern "C" {
#endif

typedef struct smla_plan_s* smla_plan_t;

/* Library version as "major.minor.patch" (SMLA_VERSION_STRING of the headers it was built with). */
const char* smla_version(void);
/* sizeof of a public struct as this library was compiled, by its C type name (e.g.
 * "smla_decode_args_t", "smla_plan_options_t"); 0 for NULL or a name it does not know. Bindings that
 * mirror the structs (python/smla/_lib.py) compare it with their own layout before making any call. */
size_t smla_struct_size(const char* name);
/* Message of the last failed call on this thread ("" if none). */
const char* smla_last_error(void);
/* Human-readable name of a status code. */
const char* smla_status_string(smla_status_t status);

/* Backend names: "auto", "cpu", "cuda-ref", "cuda". */
const char* smla_backend_name(int32_t backend); /* "unknown" for a value outside smla_backend_t */
smla_status_t smla_backend_from_name(const char* name, smla_backend_t* backend);
/* The backend AUTO resolves to on this machine (honours SMLA_BACKEND). */
smla_status_t smla_resolve_backend(int32_t requested, int32_t device, smla_backend_t* resolved);
/* 1 when a CUDA device usable by the CUDA backends exists, else 0. */
int smla_cuda_available(void);

/* Cache geometry. */
/* ceil(P*584/576)*576, the page stride writers use; -1 (and the last error set) for P outside 1..2^31-1. */
int64_t smla_writer_page_stride_bytes(int64_t page_block_size);
smla_status_t smla_validate_cache_layout(const smla_cache_layout_t* cache);

/* Decode plans. */
void smla_default_plan_options(smla_plan_options_t* options);
smla_status_t smla_plan_create(const smla_decode_shape_t* shape, const smla_plan_options_t* options,
                               smla_plan_t* plan);
smla_status_t smla_plan_destroy(smla_plan_t plan);
smla_status_t smla_plan_workspace_bytes(smla_plan_t plan, size_t* bytes);
smla_status_t smla_plan_backend(smla_plan_t plan, smla_backend_t* backend);
smla_status_t smla_plan_num_splits(smla_plan_t plan, int32_t* num_splits);
/* The kernel the plan runs: "cpu", "cuda-ref", or a tensor-core kernel ("sm90-h64", "mma-h64",
 * "mma99-h32", "mma99-h16"); a static string, valid for the life of the library. */
smla_status_t smla_plan_kernel_name(smla_plan_t plan, const char** name);
/* The SM count the plan's split schedule was made for: options.sm_count or SMLA_SM_COUNT when set, else
 * the device's; 0 for the CPU backend. */
smla_status_t smla_plan_sm_count(smla_plan_t plan, int32_t* sm_count);
/* Fills the strides of args for contiguous q, indices, out and lse of the plan's shape. */
smla_status_t smla_set_contiguous_strides(smla_plan_t plan, smla_decode_args_t* args);
/* Runs one decode: no allocation, no host synchronization, CUDA-graph capturable. out, lse and the
 * workspace must share no byte with each other or with any input (in-place calls are refused). */
smla_status_t smla_decode_run(smla_plan_t plan, const smla_decode_args_t* args, void* workspace,
                              size_t workspace_bytes, void* stream);

/* Device error counter (CUDA plans; docs/safety.md): slot ids past the cache and lengths outside
 * [0, width] met by runs on `workspace` are masked/clamped and counted there. The workspace must be
 * zeroed once after allocation. check_errors copies the count on `stream` and waits for the stream
 * (synchronizing: not for the run path); reset_errors zeroes it on `stream` (graph-capturable).
 * CPU plans: the count is always 0 and reset does nothing. */
smla_status_t smla_plan_check_errors(smla_plan_t plan, const void* workspace, void* stream, uint64_t* count);
smla_status_t smla_plan_reset_errors(smla_plan_t plan, void* workspace, void* stream);

/* Codec. memory_space: 0 = host pointers, 1 = CUDA device pointers (enqueued on stream). */
smla_status_t smla_append(const smla_cache_layout_t* cache, const void* tokens_bf16, int64_t num_tokens,
                          int64_t token_stride, const int32_t* slots, int32_t memory_space, void* stream);
/* Host only: dequantize slots into float [n, 512] (negative slot = zero row). */
smla_status_t smla_dequantize_gather(const smla_cache_layout_t* cache, const int32_t* slots,
                                     int64_t num_slots, float* out);

/* Page re-layout (device memory): P=256 source -> 64-token pages. index_sets may be NULL (all pages). */
typedef struct smla_relayout_index_set_t {
  const int32_t* indices;
  int64_t num_rows;
  int64_t width;
  int64_t row_stride;
} smla_relayout_index_set_t;
/* Workspace bytes of smla_relayout_pages with index sets; -1 (and the last error set) when `source` is not
 * a valid P=256 cache layout. */
int64_t smla_relayout_workspace_bytes(const smla_cache_layout_t* source);
smla_status_t smla_relayout_pages(const smla_cache_layout_t* source, const smla_cache_layout_t* destination,
                                  const smla_relayout_index_set_t* index_sets, int32_t num_index_sets,
                                  void* workspace, int64_t workspace_bytes, void* stream);

#ifdef __cplusplus
}
#endif

#endif /* SMLA_SMLA_H_ */
