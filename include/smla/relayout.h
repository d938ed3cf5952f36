// Page re-layout for interop (docs/dsv4-sparse-mla.md section 6): view a P=256 cache as 64-token pages
// of stride 37440. Slot ids are unchanged. smla's own decode reads any P directly and never needs this.
#pragma once

#include <cstdint>

#include "smla/cache.h"
#include "smla/status.h"

namespace smla {

// An index tensor whose touched pages should be copied: rows [num_rows, width] int32 with a row
// stride in elements. Negative and out-of-range entries are ignored.
struct RelayoutIndexSet {
  const int32_t* indices = nullptr;
  int64_t num_rows = 0;
  int64_t width = 0;
  int64_t row_stride = 0;
};

// relayout_pages takes at most this many index sets.
constexpr int kMaxRelayoutIndexSets = 8;

// Bytes of device workspace relayout_pages needs for a source cache: one mark byte per destination
// (64-token) page, so the touched-pages mode copies only the sub-pages the indices touch. 0 for a source
// with no pages; validate_relayout_source says whether the source is one relayout_pages takes.
int64_t relayout_workspace_bytes(const CacheLayout& source);

// The checks relayout_pages makes of its source alone: a valid cache layout (validate_cache_layout) with
// P = 256. Messages name "source".
Status validate_relayout_source(const CacheLayout& source);

// The destination layout for a P=256 source: 4x the pages, P=64, stride 37440, over `data`.
CacheLayout relayout_destination_layout(const CacheLayout& source, void* data);

// Copies source pages (P must be 256) into `destination` (P=64, 4*source.num_pages pages, stride
// >= 37376). With num_index_sets == 0 every page is copied; otherwise only the pages touched by the
// given index tensors (mark + copy, fixed grid, graph-safe). Device memory, enqueued on `stream`.
Status relayout_pages(const CacheLayout& source, const CacheLayout& destination,
                      const RelayoutIndexSet* index_sets, int num_index_sets, void* workspace,
                      int64_t workspace_bytes, void* stream);

}  // namespace smla
