/* Plain-C descriptions of caches and decode calls. They are the one definition shared by the
 * C API, the C++ API (which aliases them) and the kernels' launch code. No CUDA headers needed.
 *
 * Conventions (see docs/dsv4-sparse-mla.md, sections 2 and 4):
 *  - bf16 tensors are passed as untyped pointers to 16-bit bf16 values.
 *  - Strides are in elements of the tensor's own type; the last dimension is always contiguous.
 *  - Pointers live on the backend's device: host memory for the CPU backend, CUDA device memory for
 *    the CUDA backends.
 *  - Fields that hold an enum value are int32_t, not the enum type: the size of a C enum is
 *    implementation-defined, and a C caller may store any integer there. smla validates the value
 *    before converting it (an out-of-range value is SMLA_STATUS_INVALID_ARGUMENT).
 */
#ifndef SMLA_TYPES_H_
#define SMLA_TYPES_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* One paged FP8 KV cache in the "footer" layout (spec section 2). */
typedef struct smla_cache_layout_t {
  void* data;                /* base of page 0; 16-byte aligned */
  int64_t page_block_size;   /* P: tokens per page, >= 1 */
  int64_t page_stride_bytes; /* bytes between pages: >= P*584 and a multiple of 16 */
  int64_t num_pages;         /* pages in the pool; slot ids are in [0, num_pages * P) */
} smla_cache_layout_t;

typedef enum smla_backend_t {
  SMLA_BACKEND_AUTO = 0,     /* cuda on a supported GPU, else cpu */
  SMLA_BACKEND_CPU = 1,      /* the host reference (float64 or float32) */
  SMLA_BACKEND_CUDA_REF = 2, /* the simple CUDA oracle (sm_80 and up) */
  SMLA_BACKEND_CUDA = 3      /* the tensor-core CUDA backend */
} smla_backend_t;

/* Shape of a topk_length / extra_topk_length tensor. */
typedef enum smla_lengths_layout_t {
  SMLA_LENGTHS_PER_BATCH = 0, /* [b]: one length for every query row of a batch row */
  SMLA_LENGTHS_PER_QUERY = 1  /* [b, s_q] */
} smla_lengths_layout_t;

/* The fixed part of a decode call: what a plan is made for. */
typedef struct smla_decode_shape_t {
  int32_t batch;      /* b >= 1 */
  int32_t seq_q;      /* s_q >= 1 (MTP: 2..8) */
  int32_t num_heads;  /* h in 1..128 */
  int32_t topk;       /* main-cache index width, 1..2^24 */
  int32_t extra_topk; /* extra-cache index width, 0..2^24; 0 = no extra cache */
} smla_decode_shape_t;

typedef enum smla_cpu_precision_t {
  SMLA_CPU_FLOAT64 = 0, /* reference mode: dot products and softmax in float64 */
  SMLA_CPU_FLOAT32 = 1  /* faster; agrees with float64 within the bf16-kernel tolerances */
} smla_cpu_precision_t;

typedef struct smla_plan_options_t {
  int32_t backend;       /* smla_backend_t; SMLA_BACKEND_AUTO honours SMLA_BACKEND */
  /* CUDA device ordinal; -1 = the current device. Another device may be named: planning queries it
   * without changing the caller's current device, but a run needs the plan's device current. */
  int32_t device;
  int32_t num_splits;    /* split-KV factor; 0 = chosen by the planner */
  int32_t cpu_precision; /* smla_cpu_precision_t; CPU backend only */
  int32_t cpu_threads;   /* CPU backend only, 0..1024; 0 = all hardware threads */
  /* Cap on the shared memory per block the planner may use (bytes); 0 = none, then the environment
   * variable SMLA_MAX_SHARED_BYTES applies. 101376 makes a Hopper GPU run the kernel and split schedule
   * of the 99 KB class (sm_120, sm_89, sm_86). Used by the CUDA backend only, but a bad value (here or in
   * the variable) fails every plan, CPU ones included, so that a misconfiguration is never silent. */
  int32_t max_shared_bytes;
  /* The SM count the planner schedules for instead of the device's (1..1024); 0 = the device's own, then
   * the environment variable SMLA_SM_COUNT applies. With max_shared_bytes 101376, 188 makes a Hopper GPU
   * run the kernel and split schedule of an RTX PRO 6000 (170: an RTX 5090). Only the schedule changes:
   * the kernels still run on the real device. Used by the CUDA backend only; a bad value (here or in the
   * variable) fails every plan, as for max_shared_bytes. */
  int32_t sm_count;
} smla_plan_options_t;

/* Everything that may change between calls of one plan. Pointers and strides only: the shape
 * comes from the plan. */
typedef struct smla_decode_args_t {
  /* q [b, s_q, h, 512] bf16 */
  const void* q;
  int64_t q_stride_batch, q_stride_seq, q_stride_head;

  /* main cache with indices [b, s_q, topk] int32 (negative = no token) */
  smla_cache_layout_t main_cache;
  const int32_t* indices;
  int64_t indices_stride_batch, indices_stride_seq;
  const int32_t* topk_length; /* optional (NULL = all topk entries), contiguous */
  int32_t topk_length_layout; /* smla_lengths_layout_t */

  /* extra cache, required when the plan's extra_topk > 0, ignored otherwise */
  smla_cache_layout_t extra_cache;
  const int32_t* extra_indices; /* [b, s_q, extra_topk] */
  int64_t extra_indices_stride_batch, extra_indices_stride_seq;
  const int32_t* extra_topk_length; /* optional, contiguous */
  int32_t extra_topk_length_layout; /* smla_lengths_layout_t */

  const float* attn_sink; /* optional [h] fp32, natural-log domain; +-inf allowed */
  float softmax_scale;    /* model value 512^-0.5; must be finite and > 0 */

  /* out [b, s_q, h, 512] bf16 */
  void* out;
  int64_t out_stride_batch, out_stride_seq, out_stride_head;
  /* lse [b, s_q, h] fp32: natural log, sink excluded, +inf for empty rows */
  float* lse;
  int64_t lse_stride_batch, lse_stride_seq, lse_stride_head;
} smla_decode_args_t;

#ifdef __cplusplus
}
#endif

#endif /* SMLA_TYPES_H_ */
