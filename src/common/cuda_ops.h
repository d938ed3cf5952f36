// Launchers of the CUDA cache kernels (src/cuda/append, src/cuda/relayout). Called by the public
// entry points after validation; arguments are trusted.
#pragma once

#include <cstdint>

#include "smla/cache.h"
#include "smla/relayout.h"
#include "smla/status.h"

namespace smla::detail {

// GPU quantize-and-append, bit-identical to the host codec. Negative slots are skipped; slots >=
// the cache's slot count are skipped too and counted into *bad_slot_counter (device pointer, may be
// null).
Status append_tokens_cuda(const CacheLayout& cache, const uint16_t* tokens_bf16, int64_t num_tokens,
                          int64_t token_stride, const int32_t* slots, uint32_t* bad_slot_counter,
                          void* stream);

// Re-layout of a P=256 cache to 64-token pages; see smla/relayout.h.
Status relayout_pages_cuda(const CacheLayout& source, const CacheLayout& destination,
                           const RelayoutIndexSet* index_sets, int num_index_sets, void* workspace,
                           void* stream);

}  // namespace smla::detail
