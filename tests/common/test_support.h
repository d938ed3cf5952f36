// Shared test support: seeded randomness, host caches filled per spec section 8, random decode
// problems, the float64 reference, and the spec's comparison rules. Used by CPU and CUDA tests and by
// smla-bench's correctness spot checks.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "smla/cache.h"
#include "smla/decode.h"

namespace smla::detail {
struct DecodeParams;
struct IndexListParams;
}  // namespace smla::detail

namespace smla::test {

// Seed for this test process: SMLA_TEST_SEED if set, else random; printed once to stderr so a
// failure can be replayed.
uint64_t test_seed();

class Rng {
 public:
  explicit Rng(uint64_t seed) : gen_(seed) {}
  // Seeded from test_seed() mixed with `stream` (e.g. a parameter index), so each case differs.
  static Rng ForTest(uint64_t stream = 0);
  float normal() { return normal_(gen_); }
  int64_t uniform_int(int64_t lo, int64_t hi);  // inclusive
  double uniform01();
  std::mt19937_64& engine() { return gen_; }

 private:
  std::mt19937_64 gen_;
  std::normal_distribution<float> normal_{0.f, 1.f};
};

// n bf16 values ~ N(0,1)*sigma clipped to [-1,1] (spec section 8), as bf16 bits.
std::vector<uint16_t> random_bf16(Rng& rng, size_t n, float sigma = 0.1f);

// A host cache pool, 16-byte aligned, every byte initialised to `fill_byte` (0xFF = NaN bytes: e4m3
// NaN, bf16 NaN, scale 255). Move-only: layout.data points into storage, so a copy would still point at
// the original's buffer; a move keeps the vector's buffer and with it layout.data.
struct HostCache {
  HostCache() = default;
  HostCache(const HostCache&) = delete;
  HostCache& operator=(const HostCache&) = delete;
  HostCache(HostCache&&) noexcept = default;
  HostCache& operator=(HostCache&&) noexcept = default;

  std::vector<uint8_t> storage;  // over-allocated for alignment
  CacheLayout layout{};
  int64_t pool_bytes() const { return layout.num_pages * layout.page_stride_bytes; }
};
HostCache make_host_cache(int64_t page_block_size, int64_t num_pages, int64_t page_stride_bytes = 0,
                          uint8_t fill_byte = 0xFF);  // stride 0 = writer stride

// `count` distinct slot ids drawn uniformly from [0, num_slots).
std::vector<int32_t> random_distinct_slots(Rng& rng, int64_t num_slots, int64_t count);

// Quantizes random tokens into `slots` of the cache (host codec).
void fill_random_tokens(HostCache& cache, Rng& rng, const std::vector<int32_t>& slots);

struct ProblemConfig {
  int batch = 1, seq_q = 1, num_heads = 8;
  int topk = 64, extra_topk = 0;  // extra_topk 0 = no extra cache
  int64_t main_page_block_size = 64, extra_page_block_size = 64;
  int64_t main_stride_pad_bytes = 0;  // added to the writer stride (multiple of 16)
  int64_t extra_stride_pad_bytes = 0;
  bool lengths = true;                  // pass topk_length / extra_topk_length tensors
  bool lengths_per_query = false;       // [b, s_q] instead of [b]
  bool full_lengths = false;            // lengths == width instead of random 0..width
  double invalid_index_fraction = 0.1;  // entries set to -1 inside the valid prefix
  double duplicate_fraction = 0.0;      // entries repeating another valid slot of the row
  bool sink = true;
  double sink_inf_fraction = 0.25;  // heads whose sink is +inf or -inf
  int64_t pool_slack = 2;           // pool slots = slack * entries referenced + 1 page
  // Magnitudes far apart (values and scores far from the usual ones; DecodeCuda.FarApartMagnitudes...): each
  // cached token's scale groups and rope dims are multiplied by 2^k, k = round(shift + spread * u + ramp *
  // position / width) with u uniform in [-1, 1] per group (later list entries grow by `ramp` binades), and
  // each (query row, head) of q by 2^k, k = round(q_spread * u). Powers of two: exact in bf16.
  double magnitude_shift_log2 = 0, magnitude_spread_log2 = 0, magnitude_ramp_log2 = 0;
  double q_magnitude_spread_log2 = 0;
};

// A random problem: caches (unused slots NaN-filled), q, indices (past the row length: random
// garbage incl. out-of-range ids and -1), lengths and sinks. Host memory.
struct DecodeProblem {
  ProblemConfig config;
  DecodeShape shape{};
  HostCache main_cache, extra_cache;
  std::vector<uint16_t> q;                              // [b, s_q, h, 512]
  std::vector<int32_t> indices;                         // [b, s_q, topk]
  std::vector<int32_t> extra_indices;                   // [b, s_q, extra_topk]
  std::vector<int32_t> topk_length, extra_topk_length;  // empty when config.lengths is false
  std::vector<float> sink;                              // empty when config.sink is false
  float softmax_scale = 0.04419417382415922f;           // 512^-0.5
  // Public args over the host buffers, with contiguous strides and the given outputs.
  DecodeArgs host_args(uint16_t* out, float* lse) const;
};
DecodeProblem make_problem(Rng& rng, const ProblemConfig& config);

// Shorthand for test tables: a default ProblemConfig with the shape and page sizes set.
ProblemConfig problem_config(int batch, int seq_q, int num_heads, int topk, int extra_topk,
                             int64_t main_page_block_size, int64_t extra_page_block_size);

// float64 evaluation of spec section 4 (out [b, s_q, h, 512], lse [b, s_q, h]).
struct Reference {
  std::vector<double> out;
  std::vector<double> lse;
  DecodeShape shape{};  // lets compare_to_reference name (b, t, h, d); zero = report flat indices
};
Reference reference_decode(const DecodeProblem& problem);

// The backend params reference_decode evaluates: built straight from the problem (contiguous q, no
// outputs), not through dispatch, so the oracle does not share code with the path under test.
detail::DecodeParams reference_params(const DecodeProblem& problem);
// One contiguous index list [b, s_q, width] over `cache`; empty `lengths` = no lengths tensor.
detail::IndexListParams index_list_params(const HostCache& cache, const std::vector<int32_t>& indices,
                                          const std::vector<int32_t>& lengths, int width, int seq_q,
                                          bool lengths_per_query);

// Spec section 8 comparison of a bf16-MMA kernel result (out bf16 bits, lse float, both contiguous)
// with the reference: per element |a-r| < 1e-3 or rel < 2.01/128; cosine difference <= 5e-6 (over
// the whole output); lse abs 1e-6 or rel 8.01/65536; positions of +-inf and NaN identical.
struct Comparison {
  bool ok = true;
  std::string report;  // first failures, with their (b, t, h, d) positions
  double max_abs_error = 0, cosine_difference = 0, max_lse_error = 0;
};
Comparison compare_to_reference(const Reference& reference, const uint16_t* out, const float* lse);

// Values to poison outputs with before a run (bf16 NaN with payload, float NaN).
inline constexpr uint16_t kPoisonBf16 = 0x7fa5;
uint16_t bf16_bits(float value);
float bf16_value(uint16_t bits);

// SMLA_TEST_QUICK=1 (set by scripts/gpu-check under compute-sanitizer, which slows kernels 10-100x):
// long GPU tests run a smaller sample of the same cases.
bool quick_mode();

// True when a CUDA device is usable; otherwise sets *reason.
bool cuda_device_present(std::string* reason);

}  // namespace smla::test

// Skips a GPU test visibly when there is no CUDA device.
#define SMLA_SKIP_WITHOUT_CUDA()                                  \
  do {                                                            \
    std::string smla_skip_reason_;                                \
    if (!::smla::test::cuda_device_present(&smla_skip_reason_)) { \
      GTEST_SKIP() << "no CUDA device: " << smla_skip_reason_;    \
    }                                                             \
  } while (0)
