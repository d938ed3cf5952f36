// The CPU evaluation of spec section 4. One query row (b, t) at a time: gather and dequantize its
// attended tokens once, then run a max-subtracted softmax for each head. Rows (and, when rows are
// fewer than threads, blocks of heads) are spread over std::threads. The per-head arithmetic does not
// depend on how the work is split, so results are bitwise identical for any thread count.
#include "cpu/reference.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <new>
#include <thread>
#include <vector>

#include "smla/cache.h"
#include "smla/codec.h"

namespace smla::detail {
namespace {

// Appends the dequantized tokens of the valid entries of one list of row (b, t) to `tokens`
// ([n][512] floats). Valid: position below the row's length, index >= 0 and below the cache's slot
// count; duplicates are kept (each counts separately). Invalid entries are never read.
void gather_list_tokens(const IndexListParams& list, int32_t b, int32_t t, int32_t seq_q,
                        std::vector<float>& tokens) {
  const int32_t length = list_length(list, b, t, seq_q);
  if (length == 0) return;
  const int32_t* row = list_row(list, b, t);
  const CacheParams& cache = list.cache;
  for (int32_t position = 0; position < length; ++position) {
    const int64_t slot = row[position];
    if (slot < 0 || slot >= cache.num_slots) continue;
    const uint8_t* data_row =
        cache.data + slot_row_offset(cache.page_block_size, cache.page_stride_bytes, slot);
    const uint8_t* footer =
        cache.data + slot_scale_offset(cache.page_block_size, cache.page_stride_bytes, slot);
    const size_t start = tokens.size();
    tokens.resize(start + kHeadDim);
    decode_token(data_row, footer, tokens.data() + start);
  }
}

// q . key with kLanes independent partial sums: a fixed summation order (so results stay
// deterministic) that the compiler can vectorize, unlike one strictly sequential sum.
template <typename Acc>
Acc dot_product(const Acc* q, const float* key) {
  constexpr int kLanes = 8;
  Acc partial[kLanes] = {};
  for (int d = 0; d < kHeadDim; d += kLanes) {
    for (int lane = 0; lane < kLanes; ++lane) partial[lane] += q[d + lane] * static_cast<Acc>(key[d + lane]);
  }
  Acc sum = 0;
  for (int lane = 0; lane < kLanes; ++lane) sum += partial[lane];
  return sum;
}

// One head of one row: z_j = scale * q.K_j, lse = ln sum e^z_j (sink excluded),
// out = sum e^z_j K_j / (sum e^z_j + e^sink). Every exponent is taken relative to the largest logit,
// so nothing overflows: a huge finite or +inf sink drives the denominator to +inf and out to 0,
// a -inf sink adds exactly 0.
template <typename Acc>
void decode_one_head(const float* tokens, int64_t num_tokens, const uint16_t* q_bf16, float softmax_scale,
                     bool has_sink, float sink, std::vector<Acc>& logits, double* out512, double* lse) {
  if (num_tokens == 0) {
    std::fill(out512, out512 + kHeadDim, 0.0);
    *lse = std::numeric_limits<double>::infinity();
    return;
  }
  Acc q[kHeadDim];
  for (int d = 0; d < kHeadDim; ++d) q[d] = static_cast<Acc>(bf16_bits_to_float(q_bf16[d]));

  logits.resize(static_cast<size_t>(num_tokens));
  // Start from a large finite value, not -inf, so that max - max is never inf - inf.
  Acc max_logit = -std::numeric_limits<Acc>::max();
  for (int64_t j = 0; j < num_tokens; ++j) {
    logits[j] = static_cast<Acc>(softmax_scale) * dot_product(q, tokens + j * kHeadDim);
    max_logit = std::max(max_logit, logits[j]);
  }

  Acc accumulated[kHeadDim] = {};
  Acc weight_sum = 0;
  for (int64_t j = 0; j < num_tokens; ++j) {
    const Acc weight = std::exp(logits[j] - max_logit);
    weight_sum += weight;
    const float* value = tokens + j * kHeadDim;
    for (int d = 0; d < kHeadDim; ++d) accumulated[d] += weight * static_cast<Acc>(value[d]);
  }

  const Acc sink_weight = has_sink ? std::exp(static_cast<Acc>(sink) - max_logit) : Acc(0);
  const Acc denominator = weight_sum + sink_weight;  // >= 1 (the max term), may be +inf
  for (int d = 0; d < kHeadDim; ++d) out512[d] = static_cast<double>(accumulated[d] / denominator);
  *lse = static_cast<double>(max_logit + std::log(weight_sum));
}

// A unit of work: heads [head_begin, head_end) of query row `row` (= b * seq_q + t).
struct WorkItem {
  int64_t row;
  int32_t head_begin, head_end;
};

template <typename Acc>
void run_work_item(const DecodeParams& params, const WorkItem& item, std::vector<float>& tokens,
                   std::vector<Acc>& logits, double* out, double* lse) {
  const int32_t b = static_cast<int32_t>(item.row / params.seq_q);
  const int32_t t = static_cast<int32_t>(item.row % params.seq_q);
  tokens.clear();
  gather_list_tokens(params.main, b, t, params.seq_q, tokens);
  gather_list_tokens(params.extra, b, t, params.seq_q, tokens);
  const int64_t num_tokens = static_cast<int64_t>(tokens.size()) / kHeadDim;

  for (int32_t h = item.head_begin; h < item.head_end; ++h) {
    const uint16_t* q_row = params.q + (int64_t)b * params.q_stride_batch + (int64_t)t * params.q_stride_seq +
                            (int64_t)h * params.q_stride_head;
    const int64_t out_index = item.row * params.num_heads + h;
    const bool has_sink = params.attn_sink != nullptr;
    const float sink = has_sink ? params.attn_sink[h] : 0.f;
    decode_one_head<Acc>(tokens.data(), num_tokens, q_row, params.softmax_scale, has_sink, sink, logits,
                         out + out_index * kHeadDim, lse + out_index);
  }
}

// Rows first; when rows are fewer than threads, each row's heads are cut into blocks so every thread
// has work (each block dequantizes the row's tokens again, a small price for few rows).
std::vector<WorkItem> make_work_items(const DecodeParams& params, int num_threads) {
  const int64_t rows = (int64_t)params.batch * params.seq_q;
  int32_t head_blocks = 1;
  if (rows < num_threads) {
    head_blocks = static_cast<int32_t>(std::min<int64_t>((num_threads + rows - 1) / rows, params.num_heads));
  }
  const int32_t heads_per_block = (params.num_heads + head_blocks - 1) / head_blocks;
  std::vector<WorkItem> items;
  for (int64_t row = 0; row < rows; ++row) {
    for (int32_t begin = 0; begin < params.num_heads; begin += heads_per_block) {
      items.push_back({row, begin, std::min(begin + heads_per_block, params.num_heads)});
    }
  }
  return items;
}

// Workers stop at the first failure (a bad_alloc while holding a row's tokens) and report it: an exception
// must not leave a worker thread, where it would terminate the process. A thread that cannot be created
// leaves its share to the others.
template <typename Acc>
bool reference_decode_with(const DecodeParams& params, int num_threads, double* out, double* lse) {
  const std::vector<WorkItem> items = make_work_items(params, num_threads);
  std::atomic<size_t> next_item{0};
  std::atomic<bool> failed{false};
  auto worker = [&]() noexcept {
    try {
      std::vector<float> tokens;
      std::vector<Acc> logits;
      for (size_t i = next_item.fetch_add(1); i < items.size() && !failed.load(std::memory_order_relaxed);
           i = next_item.fetch_add(1)) {
        run_work_item<Acc>(params, items[i], tokens, logits, out, lse);
      }
    } catch (...) {
      failed.store(true);
    }
  };
  const int threads = static_cast<int>(std::min<size_t>(num_threads, items.size()));
  std::vector<std::thread> pool;
  try {
    pool.reserve(threads > 1 ? threads - 1 : 0);
    for (int i = 1; i < threads; ++i) pool.emplace_back(worker);
  } catch (...) {
    // No more threads (std::system_error, bad_alloc): the ones started and this one do all the work.
  }
  worker();
  for (std::thread& thread : pool) thread.join();
  return !failed.load();
}

}  // namespace

Status reference_decode(const DecodeParams& params, smla_cpu_precision_t precision, int num_threads,
                        double* out, double* lse) {
  if (num_threads <= 0) num_threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  if (params.batch <= 0 || params.seq_q <= 0 || params.num_heads <= 0) return Status::Ok();
  bool done = false;
  try {
    done = precision == SMLA_CPU_FLOAT32 ? reference_decode_with<float>(params, num_threads, out, lse)
                                         : reference_decode_with<double>(params, num_threads, out, lse);
  } catch (const std::bad_alloc&) {  // the work list itself
  }
  if (!done) {
    return Status::Internal(
        "cpu backend: out of host memory (each worker thread holds one query row's dequantized tokens, "
        "2 KB an index entry; fewer options.cpu_threads need less)");
  }
  return Status::Ok();
}

}  // namespace smla::detail
