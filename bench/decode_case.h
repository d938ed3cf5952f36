// One benchmarked decode layer on a BenchDevice: its caches (filled with random quantized tokens), its
// rotating index sets and lengths, the shared q/out/lse/sink buffers, the decode args per index set, the
// bytes and FLOPs it implies, and the --check comparison against the float64 CPU reference.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "bench_device.h"
#include "shapes.h"
#include "smla/decode.h"

namespace smla_bench {

// A cache of at least `min_tokens` slots using about `budget_bytes` of device memory, filled with random
// tokens (every slot written; the page padding holds 0xFF bytes).
smla::Status make_filled_cache(BenchDevice& device, int64_t page_block_size, int64_t min_tokens,
                               int64_t budget_bytes, uint64_t seed, smla::CacheLayout* cache);

// How the valid lengths of the rows are chosen.
enum class LengthMode { kFull, kRandom, kFixed };

struct LengthChoice {
  LengthMode mode = LengthMode::kFull;
  int main_length = 0;   // kFixed only
  int extra_length = 0;  // kFixed only
};

// Decode q, out, lse and sinks for up to `batch` x `seq_q` x `heads`, shared by every layer of a run.
struct IoBuffers {
  void* q = nullptr;
  void* out = nullptr;
  float* lse = nullptr;
  float* sinks = nullptr;
};
smla::Status make_io_buffers(BenchDevice& device, const smla::DecodeShape& shape, uint64_t seed,
                             IoBuffers* buffers);

struct LayerInstance {
  smla::DecodeShape shape{};
  smla::CacheLayout main_cache{};
  smla::CacheLayout extra_cache{};
  std::vector<int32_t*> main_indices;      // device [b, s_q, topk], one per index set
  std::vector<int32_t*> extra_indices;     // device [b, s_q, extra_topk], one per index set
  std::vector<int32_t> host_main_indices;  // index set 0, kept for --check
  std::vector<int32_t> host_extra_indices;
  int32_t* main_lengths = nullptr;  // device [b]
  int32_t* extra_lengths = nullptr;
  std::vector<int32_t> host_main_lengths;
  std::vector<int32_t> host_extra_lengths;
  int64_t attended_tokens = 0;  // all rows, from the lengths (every index is a valid slot)

  double bytes() const;
  double flops() const;
};

// Random distinct slot ids spread over each cache (one stratum of the pool per entry, a random slot in
// each) for `num_index_sets` sets, and the lengths of `lengths`.
smla::Status make_layer_instance(BenchDevice& device, const smla::DecodeShape& shape,
                                 const smla::CacheLayout& main_cache, const smla::CacheLayout& extra_cache,
                                 int num_index_sets, const LengthChoice& lengths, std::mt19937_64& rng,
                                 LayerInstance* layer);
// Frees the index sets and lengths of `layer` (the caches belong to the caller).
void release_layer_instance(BenchDevice& device, LayerInstance* layer);

// The decode args of `layer` for index set `index_set`, writing to `buffers`.
smla::DecodeArgs make_decode_args(const LayerInstance& layer, int index_set, const IoBuffers& buffers);

struct CheckResult {
  double max_abs_error_out = 0.0;
  double max_abs_error_lse = 0.0;
  int64_t elements_outside_tolerance = 0;
  int64_t checked_rows = 0;
};

// Runs `plan` on index set 0, then recomputes a sample of batch entries (up to 4) with the CPU backend in
// float64 from the same cache records and compares (spec section 8, bf16-kernel tolerances).
smla::Status check_layer(BenchDevice& device, const smla::Plan& plan, const LayerInstance& layer,
                         const IoBuffers& buffers, void* workspace, CheckResult* result);

}  // namespace smla_bench
