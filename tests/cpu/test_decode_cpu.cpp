// Tests of the CPU reference decode (src/cpu/reference.cpp) and the CPU backend behind smla::decode.
// Properties of spec section 4 (order, duplicates, sinks, lengths, the two-part merge), an
// independent brute-force evaluation, the float32 mode against float64 within spec section 8, and
// thread-count independence. Every check states its tolerance and why.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "common/decode_params.h"
#include "common/test_support.h"
#include "cpu/reference.h"
#include "smla/cache.h"
#include "smla/codec.h"
#include "smla/decode.h"

namespace smla {
namespace {

using detail::DecodeParams;
using test::DecodeProblem;
using test::ProblemConfig;

constexpr double kInf = std::numeric_limits<double>::infinity();

// float64 evaluation results, [b][s_q][h][512] and [b][s_q][h].
struct Result {
  std::vector<double> out, lse;
};

Result evaluate(const DecodeParams& params, smla_cpu_precision_t precision = SMLA_CPU_FLOAT64,
                int num_threads = 0) {
  const size_t head_rows = (size_t)params.batch * params.seq_q * params.num_heads;
  Result result;
  result.out.assign(head_rows * kHeadDim, std::nan(""));
  result.lse.assign(head_rows, std::nan(""));
  detail::reference_decode(params, precision, num_threads, result.out.data(), result.lse.data());
  return result;
}

// Largest |a - b| over two arrays, where equal infinities count as 0 and any other non-finite
// mismatch (inf vs finite, NaN anywhere) counts as +inf, so inf/NaN positions must match exactly.
double max_difference(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size()) return kInf;
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i]) || std::isnan(b[i])) return kInf;
    if (std::isinf(a[i]) || std::isinf(b[i])) {
      if (a[i] != b[i]) return kInf;
      continue;
    }
    worst = std::max(worst, std::fabs(a[i] - b[i]));
  }
  return worst;
}

bool bitwise_equal(const Result& a, const Result& b) {
  return a.out.size() == b.out.size() && a.lse.size() == b.lse.size() &&
         std::memcmp(a.out.data(), b.out.data(), a.out.size() * sizeof(double)) == 0 &&
         std::memcmp(a.lse.data(), b.lse.data(), a.lse.size() * sizeof(double)) == 0;
}

// Clamped row length, written out here rather than borrowed from the library (spec section 4).
int32_t row_length(const std::vector<int32_t>& lengths, bool per_query, int b, int t, int seq_q, int width) {
  if (lengths.empty()) return width;
  const int32_t raw = lengths[per_query ? (size_t)b * seq_q + t : (size_t)b];
  return std::clamp(raw, 0, width);
}

// Indices with every entry at or past the row's length set to -1: the same attended set as
// `indices` with `lengths`, expressed without a lengths tensor.
std::vector<int32_t> mask_past_length(const std::vector<int32_t>& indices,
                                      const std::vector<int32_t>& lengths, bool per_query, int batch,
                                      int seq_q, int width) {
  std::vector<int32_t> masked = indices;
  for (int b = 0; b < batch; ++b) {
    for (int t = 0; t < seq_q; ++t) {
      const int32_t length = row_length(lengths, per_query, b, t, seq_q, width);
      for (int position = length; position < width; ++position) {
        masked[((size_t)b * seq_q + t) * width + position] = -1;
      }
    }
  }
  return masked;
}

ProblemConfig small_config() {
  ProblemConfig config;
  config.batch = 2;
  config.seq_q = 3;
  config.num_heads = 4;
  config.topk = 64;
  config.extra_topk = 64;
  config.main_page_block_size = 64;
  config.extra_page_block_size = 2;
  return config;
}

// --- Order and the two-part merge -------------------------------------------------------------

// The attended set is a multiset: its order must not matter. Tolerance 1e-12 absolute (out values are
// below 1 and lse is O(1)): float64 sums of at most 128 terms in another order differ by rounding only.
TEST(CpuReference, PermutingTheAttendedSetLeavesResultsUnchanged) {
  test::Rng rng = test::Rng::ForTest(1);
  ProblemConfig config = small_config();
  config.duplicate_fraction = 0.1;
  DecodeProblem problem = test::make_problem(rng, config);
  const Result original = evaluate(test::reference_params(problem));

  const auto shuffle_prefixes = [&](std::vector<int32_t>& indices, const std::vector<int32_t>& lengths,
                                    int width) {
    for (int b = 0; b < config.batch; ++b) {
      for (int t = 0; t < config.seq_q; ++t) {
        const int32_t length = row_length(lengths, config.lengths_per_query, b, t, config.seq_q, width);
        int32_t* row = indices.data() + ((size_t)b * config.seq_q + t) * width;
        std::shuffle(row, row + length, rng.engine());
      }
    }
  };
  shuffle_prefixes(problem.indices, problem.topk_length, config.topk);
  shuffle_prefixes(problem.extra_indices, problem.extra_topk_length, config.extra_topk);
  const Result permuted = evaluate(test::reference_params(problem));

  EXPECT_LE(max_difference(original.out, permuted.out), 1e-12);
  EXPECT_LE(max_difference(original.lse, permuted.lse), 1e-12);
}

// Splits each row's main list in two: the first part stays in the main cache (P = 64), the second is
// copied byte for byte into an extra cache with another page size (P = 2). (1) The dual-list call
// attends the same tokens in the same order, so it must equal the single-list call bitwise. (2) Two
// un-sinked halves merged with the rule of spec section 4 must equal the whole within 1e-12 absolute
// (float64 rounding in a different association only).
TEST(CpuReference, SplittingBetweenMainAndExtraAndMergingHalvesEqualsTheWhole) {
  test::Rng rng = test::Rng::ForTest(2);
  ProblemConfig config = small_config();
  config.num_heads = 8;
  config.topk = 128;
  config.extra_topk = 0;
  config.sink_inf_fraction = 0.25;  // some +inf and -inf sinks go through the merge as well
  DecodeProblem problem = test::make_problem(rng, config);
  const int width = config.topk;
  const int rows = config.batch * config.seq_q;
  const std::vector<int32_t> whole_indices = mask_past_length(
      problem.indices, problem.topk_length, config.lengths_per_query, config.batch, config.seq_q, width);

  // Every second-part entry gets its own slot in the extra cache.
  test::HostCache extra_cache = test::make_host_cache(2, (int64_t)rows * width / 2 + 1);
  std::vector<int32_t> first_part(whole_indices.size(), -1), second_part(whole_indices.size(), -1);
  const test::HostCache& main_cache = problem.main_cache;
  const auto* main_base = static_cast<const uint8_t*>(main_cache.layout.data);
  auto* extra_base = static_cast<uint8_t*>(extra_cache.layout.data);
  int32_t next_extra_slot = 0;
  for (int row = 0; row < rows; ++row) {
    const int split = static_cast<int>(rng.uniform_int(0, width));
    for (int position = 0; position < width; ++position) {
      const size_t entry = (size_t)row * width + position;
      const int32_t slot = whole_indices[entry];
      if (position < split) {
        first_part[entry] = slot;
        continue;
      }
      if (slot < 0) continue;
      const CacheLayout& from = main_cache.layout;
      const CacheLayout& to = extra_cache.layout;
      std::memcpy(extra_base + slot_row_offset(to.page_block_size, to.page_stride_bytes, next_extra_slot),
                  main_base + slot_row_offset(from.page_block_size, from.page_stride_bytes, slot), kRowBytes);
      std::memcpy(extra_base + slot_scale_offset(to.page_block_size, to.page_stride_bytes, next_extra_slot),
                  main_base + slot_scale_offset(from.page_block_size, from.page_stride_bytes, slot),
                  kScaleBytes);
      second_part[entry] = next_extra_slot++;
    }
  }

  const std::vector<int32_t> no_lengths;
  DecodeParams whole = test::reference_params(problem);
  whole.main = test::index_list_params(main_cache, whole_indices, no_lengths, width, config.seq_q, false);
  DecodeParams dual = whole;
  dual.main = test::index_list_params(main_cache, first_part, no_lengths, width, config.seq_q, false);
  dual.extra = test::index_list_params(extra_cache, second_part, no_lengths, width, config.seq_q, false);
  const Result whole_result = evaluate(whole);
  const Result dual_result = evaluate(dual);
  EXPECT_TRUE(bitwise_equal(whole_result, dual_result));

  DecodeParams first_half = whole;
  first_half.attn_sink = nullptr;
  first_half.main = test::index_list_params(main_cache, first_part, no_lengths, width, config.seq_q, false);
  DecodeParams second_half = first_half;
  second_half.main =
      test::index_list_params(extra_cache, second_part, no_lengths, width, config.seq_q, false);
  const Result first = evaluate(first_half);
  const Result second = evaluate(second_half);

  Result merged;
  merged.out.resize(whole_result.out.size());
  merged.lse.resize(whole_result.lse.size());
  for (size_t i = 0; i < merged.lse.size(); ++i) {
    // An empty part reports lse = +inf but contributes e^L = 0 to the merge.
    const double l1 = std::isinf(first.lse[i]) ? -kInf : first.lse[i];
    const double l2 = std::isinf(second.lse[i]) ? -kInf : second.lse[i];
    const double largest = std::max(l1, l2);
    const double sink = problem.sink[i % config.num_heads];
    if (largest == -kInf) {  // both parts empty
      std::fill_n(merged.out.begin() + i * kHeadDim, kHeadDim, 0.0);
      merged.lse[i] = kInf;
      continue;
    }
    const double w1 = std::exp(l1 - largest), w2 = std::exp(l2 - largest);
    const double denominator = w1 + w2 + std::exp(sink - largest);
    for (int d = 0; d < kHeadDim; ++d) {
      const size_t at = i * kHeadDim + d;
      merged.out[at] = (w1 * first.out[at] + w2 * second.out[at]) / denominator;
    }
    merged.lse[i] = largest + std::log(w1 + w2);
  }
  EXPECT_LE(max_difference(whole_result.out, merged.out), 1e-12);
  EXPECT_LE(max_difference(whole_result.lse, merged.lse), 1e-12);
}

// --- Duplicates and sinks -------------------------------------------------------------------------

// One token listed twice counts twice: against a hand computation with weight 2 on that token.
// Tolerance 1e-12 absolute: both sides are float64 evaluations of the same three-term sums.
TEST(CpuReference, DuplicateEntriesCountTwice) {
  test::Rng rng = test::Rng::ForTest(3);
  test::HostCache cache = test::make_host_cache(64, 1);
  const int32_t slot_a = 5, slot_b = 9;
  test::fill_random_tokens(cache, rng, {slot_a, slot_b});
  const int num_heads = 2;
  const std::vector<uint16_t> q = test::random_bf16(rng, (size_t)num_heads * kHeadDim);
  const std::vector<int32_t> indices = {slot_a, slot_b, slot_a};
  const std::vector<float> sink = {0.5f, -1.25f};
  const float softmax_scale = 0.04419417382415922f;

  DecodeParams params;
  params.batch = params.seq_q = 1;
  params.num_heads = num_heads;
  params.q = q.data();
  params.q_stride_head = kHeadDim;
  params.q_stride_seq = params.q_stride_batch = (int64_t)num_heads * kHeadDim;
  params.main = test::index_list_params(cache, indices, {}, 3, 1, false);
  params.attn_sink = sink.data();
  params.softmax_scale = softmax_scale;
  const Result result = evaluate(params);

  std::vector<float> key_a(kHeadDim), key_b(kHeadDim);
  ASSERT_TRUE(dequantize_slot(cache.layout, slot_a, key_a.data()).ok());
  ASSERT_TRUE(dequantize_slot(cache.layout, slot_b, key_b.data()).ok());
  for (int h = 0; h < num_heads; ++h) {
    double dot_a = 0, dot_b = 0;
    for (int d = 0; d < kHeadDim; ++d) {
      const double qd = bf16_bits_to_float(q[(size_t)h * kHeadDim + d]);
      dot_a += qd * key_a[d];
      dot_b += qd * key_b[d];
    }
    const double weight_a = 2 * std::exp((double)softmax_scale * dot_a);  // listed twice
    const double weight_b = std::exp((double)softmax_scale * dot_b);
    const double denominator = weight_a + weight_b + std::exp((double)sink[h]);
    EXPECT_NEAR(result.lse[h], std::log(weight_a + weight_b), 1e-12) << "head " << h;
    for (int d = 0; d < kHeadDim; ++d) {
      const double expected = (weight_a * key_a[d] + weight_b * key_b[d]) / denominator;
      ASSERT_NEAR(result.out[(size_t)h * kHeadDim + d], expected, 1e-12) << "head " << h << " dim " << d;
    }
  }
}

// e^-inf is exactly 0, so a -inf sink leaves every denominator unchanged: bitwise equal to no sink.
// A +inf sink makes every denominator +inf: out exactly 0, lse (which excludes the sink) unchanged.
TEST(CpuReference, InfiniteSinksMatchNoSinkAndZeroOutput) {
  test::Rng rng = test::Rng::ForTest(4);
  ProblemConfig config = small_config();
  config.sink = false;
  DecodeProblem problem = test::make_problem(rng, config);
  const Result no_sink = evaluate(test::reference_params(problem));

  problem.sink.assign(config.num_heads, -std::numeric_limits<float>::infinity());
  EXPECT_TRUE(bitwise_equal(evaluate(test::reference_params(problem)), no_sink));

  problem.sink.assign(config.num_heads, std::numeric_limits<float>::infinity());
  const Result infinite_sink = evaluate(test::reference_params(problem));
  for (double value : infinite_sink.out) ASSERT_EQ(value, 0.0);
  EXPECT_EQ(std::memcmp(infinite_sink.lse.data(), no_sink.lse.data(), no_sink.lse.size() * sizeof(double)),
            0);
}

// A finite sink far above every logit must give a (near-)zero output, never inf/NaN from e^sink
// overflowing; in both precisions. Tolerance: |out| <= 1e-30, since the true weight is below e^-1e30.
TEST(CpuReference, HugeFiniteSinkDoesNotOverflow) {
  test::Rng rng = test::Rng::ForTest(5);
  ProblemConfig config = small_config();
  config.sink = false;
  DecodeProblem problem = test::make_problem(rng, config);
  problem.sink.assign(config.num_heads, 3.0e38f);
  for (smla_cpu_precision_t precision : {SMLA_CPU_FLOAT64, SMLA_CPU_FLOAT32}) {
    const Result result = evaluate(test::reference_params(problem), precision);
    for (double value : result.out) ASSERT_TRUE(std::isfinite(value) && std::fabs(value) <= 1e-30);
    for (double value : result.lse) ASSERT_FALSE(std::isnan(value));
  }
}

// --- Lengths, empty rows and invalid entries ----------------------------------------------------

// Rows with length 0 and all indices -1: out = 0 and lse = +inf, through the public CPU backend (so the
// bf16/fp32 writing is covered too). Exact: these are the spec's defined values.
TEST(CpuBackend, EmptyRowsGiveZeroOutputAndInfiniteLse) {
  test::Rng rng = test::Rng::ForTest(6);
  ProblemConfig config = small_config();
  config.lengths_per_query = true;
  DecodeProblem problem = test::make_problem(rng, config);
  std::fill(problem.indices.begin(), problem.indices.end(), -1);
  std::fill(problem.extra_indices.begin(), problem.extra_indices.end(), -1);
  std::fill(problem.topk_length.begin(), problem.topk_length.end(), 0);
  std::fill(problem.extra_topk_length.begin(), problem.extra_topk_length.end(), 0);

  const size_t head_rows = (size_t)config.batch * config.seq_q * config.num_heads;
  std::vector<uint16_t> out(head_rows * kHeadDim, test::kPoisonBf16);
  std::vector<float> lse(head_rows, std::nanf(""));
  PlanOptions options = default_plan_options();
  options.backend = SMLA_BACKEND_CPU;
  const Status status = decode(problem.shape, problem.host_args(out.data(), lse.data()), options);
  ASSERT_TRUE(status.ok()) << status.message();
  for (uint16_t bits : out) ASSERT_EQ(test::bf16_value(bits), 0.0f) << "bits " << bits;
  for (float value : lse) ASSERT_EQ(value, std::numeric_limits<float>::infinity());
}

// A lengths tensor must select exactly the entries before the row's length: the result equals a call
// without lengths whose entries past the length are -1. Same entries in the same order: bitwise equal.
void expect_lengths_equal_masking(bool per_query, uint64_t stream) {
  test::Rng rng = test::Rng::ForTest(stream);
  ProblemConfig config = small_config();
  config.lengths_per_query = per_query;
  config.seq_q = 3;
  DecodeProblem problem = test::make_problem(rng, config);
  ASSERT_EQ(problem.topk_length.size(),
            per_query ? (size_t)config.batch * config.seq_q : (size_t)config.batch);
  const Result with_lengths = evaluate(test::reference_params(problem));

  problem.indices = mask_past_length(problem.indices, problem.topk_length, per_query, config.batch,
                                     config.seq_q, config.topk);
  problem.extra_indices = mask_past_length(problem.extra_indices, problem.extra_topk_length, per_query,
                                           config.batch, config.seq_q, config.extra_topk);
  problem.topk_length.clear();
  problem.extra_topk_length.clear();
  EXPECT_TRUE(bitwise_equal(with_lengths, evaluate(test::reference_params(problem))));
}

TEST(CpuReference, PerBatchLengthsSelectThePrefix) { expect_lengths_equal_masking(false, 7); }
TEST(CpuReference, PerQueryLengthsSelectThePrefix) { expect_lengths_equal_masking(true, 8); }

// Lengths are clamped to [0, topk]: a negative length means an empty list, one above topk the whole
// list. Compared bitwise with the explicit forms (same entries, same order).
TEST(CpuReference, LengthsAreClampedToTheListWidth) {
  test::Rng rng = test::Rng::ForTest(9);
  ProblemConfig config = small_config();
  config.lengths_per_query = true;
  config.extra_topk = 0;
  DecodeProblem problem = test::make_problem(rng, config);
  const int width = config.topk;
  const int rows = config.batch * config.seq_q;
  // Entries past the generated lengths are garbage (NaN-filled or out-of-range slots): repeat the
  // row's first valid token there instead, so every position holds a real token and the clamp to
  // topk changes results visibly.
  problem.indices = mask_past_length(problem.indices, problem.topk_length, config.lengths_per_query,
                                     config.batch, config.seq_q, width);
  for (int row = 0; row < rows; ++row) {
    int32_t* entries = problem.indices.data() + (size_t)row * width;
    const int32_t* first_valid = std::find_if(entries, entries + width, [](int32_t s) { return s >= 0; });
    const int32_t filler = first_valid == entries + width ? -1 : *first_valid;
    for (int position = 0; position < width; ++position) {
      if (entries[position] < 0) entries[position] = filler;
    }
  }
  const std::vector<int32_t> raw_lengths = {
      -1,  width + 1, std::numeric_limits<int32_t>::min(), std::numeric_limits<int32_t>::max(),
      -64, 3 * width};
  ASSERT_EQ((int)raw_lengths.size(), rows);
  problem.topk_length = raw_lengths;
  const Result clamped = evaluate(test::reference_params(problem));

  std::vector<int32_t> explicit_lengths(rows);
  for (int row = 0; row < rows; ++row) explicit_lengths[row] = raw_lengths[row] < 0 ? 0 : width;
  problem.topk_length = explicit_lengths;
  EXPECT_TRUE(bitwise_equal(clamped, evaluate(test::reference_params(problem))));
  for (int row : {0, 2, 4}) {  // the negative ones are empty rows
    EXPECT_EQ(clamped.lse[(size_t)row * config.num_heads], kInf) << "row " << row;
  }
}

// Slot ids outside [0, num_slots) are never read: they act like -1 (the slot past the pool would be
// outside the allocation; the NaN-filled cache would poison any result that read a wrong slot).
TEST(CpuReference, OutOfRangeSlotsAreSkipped) {
  test::Rng rng = test::Rng::ForTest(10);
  ProblemConfig config = small_config();
  config.lengths = false;
  DecodeProblem problem = test::make_problem(rng, config);
  const int32_t num_slots = static_cast<int32_t>(cache_num_slots(problem.main_cache.layout));
  for (size_t i = 0; i < problem.indices.size(); i += 7) problem.indices[i] = -1;
  const Result skipped = evaluate(test::reference_params(problem));
  const int32_t out_of_range[] = {num_slots, num_slots + 1, std::numeric_limits<int32_t>::max()};
  for (size_t i = 0, k = 0; i < problem.indices.size(); i += 7, ++k) problem.indices[i] = out_of_range[k % 3];
  EXPECT_TRUE(bitwise_equal(skipped, evaluate(test::reference_params(problem))));
}

// --- Independent brute force ----------------------------------------------------------------------

// OCP e4m3fn written out from the format: 1 sign, 4 exponent (bias 7), 3 mantissa bits.
double e4m3_value(uint8_t bits) {
  const int exponent = (bits >> 3) & 0xF, mantissa = bits & 0x7;
  if (exponent == 0xF && mantissa == 0x7) return std::nan("");
  const double magnitude =
      exponent == 0 ? std::ldexp(mantissa / 8.0, -6) : std::ldexp(1.0 + mantissa / 8.0, exponent - 7);
  return (bits & 0x80) ? -magnitude : magnitude;
}

double bf16_value_naive(uint16_t bits) {
  const uint32_t widened = static_cast<uint32_t>(bits) << 16;
  float value;
  std::memcpy(&value, &widened, sizeof(value));
  return value;
}

// Dequantizes slot `slot` straight from the bytes of spec sections 2-3.
std::vector<double> naive_token(const CacheLayout& cache, int64_t slot) {
  const auto* base = static_cast<const uint8_t*>(cache.data);
  const int64_t page = slot / cache.page_block_size, r = slot % cache.page_block_size;
  const uint8_t* row = base + page * cache.page_stride_bytes + r * 576;
  const uint8_t* scales = base + page * cache.page_stride_bytes + cache.page_block_size * 576 + r * 8;
  std::vector<double> token(512);
  for (int i = 0; i < 448; ++i) token[i] = e4m3_value(row[i]) * std::ldexp(1.0, scales[i / 64] - 127);
  for (int j = 0; j < 64; ++j) token[448 + j] = bf16_value_naive(row[448 + 2 * j] | (row[449 + 2 * j] << 8));
  return token;
}

// Every (b, t, h) of a small problem against a naive float64 loop written here from the spec (no max
// subtraction: logits are O(1) for these inputs). Tolerance 1e-12 absolute on out (values below 1) and
// lse: the two differ by float64 rounding order only.
TEST(CpuReference, MatchesANaiveDoubleLoop) {
  test::Rng rng = test::Rng::ForTest(11);
  ProblemConfig config = small_config();
  config.main_page_block_size = 61;
  config.duplicate_fraction = 0.05;
  const DecodeProblem problem = test::make_problem(rng, config);
  const Result result = evaluate(test::reference_params(problem));

  int checked_nonempty = 0;
  for (int b = 0; b < config.batch; ++b) {
    for (int t = 0; t < config.seq_q; ++t) {
      std::vector<std::vector<double>> keys;
      const auto collect = [&](const test::HostCache& cache, const std::vector<int32_t>& indices,
                               const std::vector<int32_t>& lengths, int width) {
        const int32_t length = row_length(lengths, config.lengths_per_query, b, t, config.seq_q, width);
        for (int position = 0; position < length; ++position) {
          const int32_t slot = indices[((size_t)b * config.seq_q + t) * width + position];
          if (slot >= 0 && slot < cache_num_slots(cache.layout))
            keys.push_back(naive_token(cache.layout, slot));
        }
      };
      collect(problem.main_cache, problem.indices, problem.topk_length, config.topk);
      collect(problem.extra_cache, problem.extra_indices, problem.extra_topk_length, config.extra_topk);

      for (int h = 0; h < config.num_heads; ++h) {
        const size_t head_row = ((size_t)b * config.seq_q + t) * config.num_heads + h;
        const uint16_t* q = problem.q.data() + head_row * kHeadDim;
        std::vector<double> numerator(512, 0.0);
        double weight_sum = 0;
        for (const std::vector<double>& key : keys) {
          double dot = 0;
          for (int d = 0; d < 512; ++d) dot += bf16_value_naive(q[d]) * key[d];
          const double weight = std::exp(problem.softmax_scale * dot);
          weight_sum += weight;
          for (int d = 0; d < 512; ++d) numerator[d] += weight * key[d];
        }
        const double sink_weight = problem.sink.empty() ? 0.0 : std::exp((double)problem.sink[h]);
        const double expected_lse = keys.empty() ? kInf : std::log(weight_sum);
        if (std::isinf(expected_lse)) {
          EXPECT_EQ(result.lse[head_row], expected_lse);
        } else {
          EXPECT_NEAR(result.lse[head_row], expected_lse, 1e-12) << "b " << b << " t " << t << " h " << h;
          ++checked_nonempty;
        }
        for (int d = 0; d < 512; ++d) {
          const double expected = keys.empty() ? 0.0 : numerator[d] / (weight_sum + sink_weight);
          ASSERT_NEAR(result.out[head_row * kHeadDim + d], expected, 1e-12)
              << "b " << b << " t " << t << " h " << h << " d " << d;
        }
      }
    }
  }
  EXPECT_GT(checked_nonempty, 0);
}

// --- Threads ------------------------------------------------------------------------------------

// Each (b, t, h) is computed by the same sequential code whatever the split, so float64 results are
// bitwise equal for 1 thread, all threads and an odd count (few rows: heads are split across threads).
TEST(CpuReference, ResultsDoNotDependOnTheThreadCount) {
  for (int batch : {1, 3}) {
    test::Rng rng = test::Rng::ForTest(12 + batch);
    ProblemConfig config = small_config();
    config.batch = batch;
    config.seq_q = batch == 1 ? 1 : 3;
    config.num_heads = 16;
    const DecodeProblem problem = test::make_problem(rng, config);
    const DecodeParams params = test::reference_params(problem);
    const Result single = evaluate(params, SMLA_CPU_FLOAT64, 1);
    EXPECT_TRUE(bitwise_equal(single, evaluate(params, SMLA_CPU_FLOAT64, 0))) << "batch " << batch;
    EXPECT_TRUE(bitwise_equal(single, evaluate(params, SMLA_CPU_FLOAT64, 5))) << "batch " << batch;
  }
}

// --- The public CPU backend over many shapes ------------------------------------------------------

struct ShapeCase {
  int num_heads, seq_q, topk, extra_topk;
  int64_t main_page_block_size, extra_page_block_size;
  bool lengths_per_query;
};

std::string describe(const ShapeCase& c) {
  std::ostringstream name;
  name << "h" << c.num_heads << "_sq" << c.seq_q << "_topk" << c.topk << "_extra" << c.extra_topk << "_P"
       << c.main_page_block_size << "_P" << c.extra_page_block_size
       << (c.lengths_per_query ? "_perq" : "_perb");
  return name.str();
}

// gtest prints a parameter without PrintTo byte by byte, padding included (uninitialized: valgrind flags it).
void PrintTo(const ShapeCase& c, std::ostream* os) { *os << describe(c); }

// double -> bf16 bits, round to nearest even, computed independently of the library: scale the value
// to an integer with 8 significant bits (bf16's precision), round it in double (ties to even), scale
// back. Finite values within the float range only (the outputs are convex combinations of K).
uint16_t bf16_round_nearest_even(double value) {
  int exponent = 0;
  std::frexp(value, &exponent);         // value = m * 2^exponent, 0.5 <= |m| < 1
  exponent = std::max(exponent, -125);  // below 2^-126 bf16 is subnormal: fixed quantum 2^-133
  const double rounded = std::ldexp(std::nearbyint(std::ldexp(value, 8 - exponent)), exponent - 8);
  const float narrowed = static_cast<float>(rounded);  // exact: rounded has at most 8 significant bits
  uint32_t bits;
  std::memcpy(&bits, &narrowed, sizeof(bits));
  return static_cast<uint16_t>(bits >> 16);
}

class CpuBackendShapes : public ::testing::TestWithParam<ShapeCase> {};

// smla::decode on the CPU backend in both precisions against the float64 reference of the test
// support, with the bf16-kernel tolerances of spec section 8 (float64 mode: bf16 rounding of out only;
// float32 mode: plus float32 accumulation, well inside the same bounds). Outputs are poisoned first.
TEST_P(CpuBackendShapes, BothPrecisionsMatchTheFloat64Reference) {
  const ShapeCase& shape_case = GetParam();
  test::Rng rng = test::Rng::ForTest(100 + shape_case.num_heads * 10 + shape_case.seq_q);
  ProblemConfig config = test::problem_config(
      /*batch=*/2, shape_case.seq_q, shape_case.num_heads, shape_case.topk, shape_case.extra_topk,
      shape_case.main_page_block_size, shape_case.extra_page_block_size);
  config.lengths_per_query = shape_case.lengths_per_query;
  config.duplicate_fraction = 0.05;
  const DecodeProblem problem = test::make_problem(rng, config);
  const test::Reference reference = test::reference_decode(problem);

  const size_t head_rows = (size_t)config.batch * config.seq_q * config.num_heads;
  for (smla_cpu_precision_t precision : {SMLA_CPU_FLOAT64, SMLA_CPU_FLOAT32}) {
    std::vector<uint16_t> out(head_rows * kHeadDim, test::kPoisonBf16);
    std::vector<float> lse(head_rows, std::nanf(""));
    PlanOptions options = default_plan_options();
    options.backend = SMLA_BACKEND_CPU;
    options.cpu_precision = precision;
    const Status status = decode(problem.shape, problem.host_args(out.data(), lse.data()), options);
    ASSERT_TRUE(status.ok()) << status.message();
    const test::Comparison comparison = test::compare_to_reference(reference, out.data(), lse.data());
    EXPECT_TRUE(comparison.ok) << (precision == SMLA_CPU_FLOAT64 ? "float64" : "float32") << ": "
                               << comparison.report;
    if (precision == SMLA_CPU_FLOAT64) {
      // Exact: the float64 backend is the reference rounded once (out to bf16, lse to fp32).
      for (size_t i = 0; i < out.size(); ++i) {
        ASSERT_EQ(out[i], bf16_round_nearest_even(reference.out[i]))
            << "element " << i << " of " << reference.out[i];
      }
      for (size_t i = 0; i < lse.size(); ++i) ASSERT_EQ(lse[i], static_cast<float>(reference.lse[i]));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, CpuBackendShapes,
    ::testing::Values(ShapeCase{1, 1, 64, 0, 64, 64, false}, ShapeCase{8, 3, 128, 64, 256, 2, true},
                      ShapeCase{16, 1, 64, 64, 61, 64, false}, ShapeCase{32, 3, 64, 0, 2, 64, true},
                      ShapeCase{64, 1, 128, 128, 64, 2, false}, ShapeCase{128, 3, 64, 64, 256, 61, true}),
    [](const ::testing::TestParamInfo<ShapeCase>& info) { return describe(info.param); });

// out and lse are written at the caller's strides and nowhere else: the gaps keep their poison, and
// the values equal a contiguous run bitwise (same computation, only the placement differs).
TEST(CpuBackend, WritesOutputsAtTheGivenStridesOnly) {
  test::Rng rng = test::Rng::ForTest(13);
  ProblemConfig config = small_config();
  const DecodeProblem problem = test::make_problem(rng, config);
  const int batch = config.batch, seq_q = config.seq_q, heads = config.num_heads;
  const size_t head_rows = (size_t)batch * seq_q * heads;
  PlanOptions options = default_plan_options();
  options.backend = SMLA_BACKEND_CPU;

  std::vector<uint16_t> contiguous_out(head_rows * kHeadDim, test::kPoisonBf16);
  std::vector<float> contiguous_lse(head_rows, std::nanf(""));
  Status status =
      decode(problem.shape, problem.host_args(contiguous_out.data(), contiguous_lse.data()), options);
  ASSERT_TRUE(status.ok()) << status.message();

  // Padded layouts: 64 spare elements after every head's out row; lse laid out [b][h][s_q] with a
  // spare element per batch (FlashMLA's transposed view, plus padding).
  const int64_t out_head_stride = kHeadDim + 64;
  const int64_t lse_batch_stride = (int64_t)heads * seq_q + 1;
  std::vector<uint16_t> strided_out((size_t)batch * seq_q * heads * out_head_stride, test::kPoisonBf16);
  std::vector<float> strided_lse((size_t)batch * lse_batch_stride, -123.0f);
  DecodeArgs args = problem.host_args(strided_out.data(), strided_lse.data());
  args.out_stride_head = out_head_stride;
  args.out_stride_seq = heads * out_head_stride;
  args.out_stride_batch = seq_q * args.out_stride_seq;
  args.lse_stride_batch = lse_batch_stride;
  args.lse_stride_head = seq_q;
  args.lse_stride_seq = 1;
  status = decode(problem.shape, args, options);
  ASSERT_TRUE(status.ok()) << status.message();

  for (int b = 0; b < batch; ++b) {
    for (int t = 0; t < seq_q; ++t) {
      for (int h = 0; h < heads; ++h) {
        const size_t head_row = ((size_t)b * seq_q + t) * heads + h;
        const uint16_t* row = strided_out.data() + head_row * out_head_stride;
        ASSERT_EQ(std::memcmp(row, contiguous_out.data() + head_row * kHeadDim, kHeadDim * 2), 0);
        for (int d = kHeadDim; d < out_head_stride; ++d) ASSERT_EQ(row[d], test::kPoisonBf16);
        const float lse = strided_lse[b * lse_batch_stride + h * seq_q + t];
        ASSERT_EQ(std::memcmp(&lse, &contiguous_lse[head_row], sizeof(float)), 0);
      }
    }
    ASSERT_EQ(strided_lse[b * lse_batch_stride + heads * seq_q], -123.0f) << "lse padding of batch " << b;
  }
}

// The backend's cpu_threads option does not change a bit of the output (1 thread vs all).
TEST(CpuBackend, ThreadOptionDoesNotChangeTheOutput) {
  test::Rng rng = test::Rng::ForTest(14);
  ProblemConfig config = small_config();
  config.num_heads = 8;
  const DecodeProblem problem = test::make_problem(rng, config);
  const size_t head_rows = (size_t)config.batch * config.seq_q * config.num_heads;
  std::vector<uint16_t> outs[2];
  std::vector<float> lses[2];
  for (int run = 0; run < 2; ++run) {
    outs[run].assign(head_rows * kHeadDim, test::kPoisonBf16);
    lses[run].assign(head_rows, std::nanf(""));
    PlanOptions options = default_plan_options();
    options.backend = SMLA_BACKEND_CPU;
    options.cpu_threads = run == 0 ? 1 : 0;
    const Status status =
        decode(problem.shape, problem.host_args(outs[run].data(), lses[run].data()), options);
    ASSERT_TRUE(status.ok()) << status.message();
  }
  EXPECT_EQ(outs[0], outs[1]);
  EXPECT_EQ(std::memcmp(lses[0].data(), lses[1].data(), head_rows * sizeof(float)), 0);
}

}  // namespace
}  // namespace smla
