// Shared test support (see test_support.h): seeded randomness, NaN-filled host caches, random decode
// problems per spec section 8, the float64 reference and the spec's comparison rules.
#include "common/test_support.h"

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <unordered_set>

#include "common/decode_params.h"
#include "cpu/reference.h"
#include "smla/codec.h"

namespace smla::test {

namespace {

// splitmix64 finalizer: turns (seed, stream) pairs into well-separated generator seeds.
uint64_t mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

uint64_t choose_seed() {
  if (const char* env = std::getenv("SMLA_TEST_SEED"); env != nullptr && *env != '\0') {
    char* end = nullptr;
    const unsigned long long parsed = std::strtoull(env, &end, 0);
    if (end != nullptr && *end == '\0') return parsed;
    std::fprintf(stderr, "SMLA_TEST_SEED=%s is not an unsigned integer; using a random seed\n", env);
  }
  std::random_device device;
  return (static_cast<uint64_t>(device()) << 32) ^ device();
}

void throw_if_error(const Status& status, const char* what) {
  if (!status.ok()) throw std::runtime_error(std::string(what) + ": " + status.message());
}

}  // namespace

uint64_t test_seed() {
  // Function-local static: chosen and printed exactly once per process, thread-safe.
  static const uint64_t seed = [] {
    const uint64_t chosen = choose_seed();
    std::fprintf(stderr, "SMLA_TEST_SEED=%llu\n", static_cast<unsigned long long>(chosen));
    return chosen;
  }();
  return seed;
}

Rng Rng::ForTest(uint64_t stream) { return Rng(mix64(test_seed() ^ mix64(stream + 1))); }

int64_t Rng::uniform_int(int64_t lo, int64_t hi) {
  return std::uniform_int_distribution<int64_t>(lo, hi)(gen_);
}

double Rng::uniform01() { return std::uniform_real_distribution<double>(0.0, 1.0)(gen_); }

std::vector<uint16_t> random_bf16(Rng& rng, size_t n, float sigma) {
  std::vector<uint16_t> values(n);
  for (auto& value : values) {
    value = float_to_bf16_bits(std::clamp(rng.normal() * sigma, -1.f, 1.f));
  }
  return values;
}

HostCache make_host_cache(int64_t page_block_size, int64_t num_pages, int64_t page_stride_bytes,
                          uint8_t fill_byte) {
  HostCache cache;
  const int64_t stride =
      page_stride_bytes != 0 ? page_stride_bytes : writer_page_stride_bytes(page_block_size);
  const size_t pool_bytes = static_cast<size_t>(num_pages * stride);
  // Over-allocate so the view can start on a 16-byte boundary whatever the allocator returns.
  cache.storage.assign(pool_bytes + kPageAlignBytes, fill_byte);
  const uintptr_t raw = reinterpret_cast<uintptr_t>(cache.storage.data());
  const uintptr_t aligned = (raw + kPageAlignBytes - 1) / kPageAlignBytes * kPageAlignBytes;
  cache.layout = CacheLayout{cache.storage.data() + (aligned - raw), page_block_size, stride, num_pages};
  return cache;
}

std::vector<int32_t> random_distinct_slots(Rng& rng, int64_t num_slots, int64_t count) {
  if (count < 0 || count > num_slots) {
    throw std::invalid_argument("random_distinct_slots: count " + std::to_string(count) + " not in [0, " +
                                std::to_string(num_slots) + "]");
  }
  std::vector<int32_t> slots;
  slots.reserve(static_cast<size_t>(count));
  if (count * 2 > num_slots) {
    // Dense draw: a partial Fisher-Yates shuffle of all slot ids.
    std::vector<int32_t> all(static_cast<size_t>(num_slots));
    for (int64_t i = 0; i < num_slots; ++i) all[i] = static_cast<int32_t>(i);
    for (int64_t i = 0; i < count; ++i) {
      std::swap(all[i], all[rng.uniform_int(i, num_slots - 1)]);
      slots.push_back(all[i]);
    }
    return slots;
  }
  // Sparse draw: rejection sampling, expected < 2 tries per slot.
  std::unordered_set<int32_t> taken;
  while (static_cast<int64_t>(slots.size()) < count) {
    const auto slot = static_cast<int32_t>(rng.uniform_int(0, num_slots - 1));
    if (taken.insert(slot).second) slots.push_back(slot);
  }
  return slots;
}

namespace {

// Quantizes host tokens [slots][512] into `slots` of the cache (host codec).
void append_host_tokens(HostCache& cache, const std::vector<uint16_t>& tokens,
                        const std::vector<int32_t>& slots) {
  throw_if_error(append_tokens(cache.layout, tokens.data(), static_cast<int64_t>(slots.size()), kHeadDim,
                               slots.data(), MemorySpace::kHost),
                 "append_host_tokens");
}

}  // namespace

void fill_random_tokens(HostCache& cache, Rng& rng, const std::vector<int32_t>& slots) {
  append_host_tokens(cache, random_bf16(rng, slots.size() * kHeadDim), slots);
}

namespace {

// bf16 `bits` times 2^k (k a small integer: exact unless the value leaves bf16's range).
uint16_t scale_bf16_by_power_of_two(uint16_t bits, int k) {
  return float_to_bf16_bits(std::ldexp(bf16_bits_to_float(bits), k));
}

// ProblemConfig's token magnitudes applied to tokens [entries][512], entry i at list position
// positions[i]; draws nothing from `rng` when the config sets none (the default problems' streams stay).
void scale_token_magnitudes(Rng& rng, const ProblemConfig& config, const std::vector<int32_t>& positions,
                            int width, std::vector<uint16_t>* tokens) {
  if (config.magnitude_shift_log2 == 0 && config.magnitude_spread_log2 == 0 &&
      config.magnitude_ramp_log2 == 0)
    return;
  constexpr int kGroups = kNumScaleGroups + 1;  // the rope dims count as one more group here
  for (size_t i = 0; i < positions.size(); ++i) {
    for (int group = 0; group < kGroups; ++group) {
      const double u = 2.0 * rng.uniform01() - 1.0;
      const int k =
          static_cast<int>(std::lround(config.magnitude_shift_log2 + config.magnitude_spread_log2 * u +
                                       config.magnitude_ramp_log2 * positions[i] / width));
      for (int d = group * kQuantGroup; d < (group + 1) * kQuantGroup; ++d) {
        uint16_t& value = (*tokens)[i * kHeadDim + static_cast<size_t>(d)];
        value = scale_bf16_by_power_of_two(value, k);
      }
    }
  }
}

// Builds one index list [rows, width] and its lengths, and returns the cache that backs it, with only
// the slots referenced inside the valid prefixes holding tokens (everything else stays NaN bytes).
struct IndexList {
  HostCache cache;
  std::vector<int32_t> indices;
  std::vector<int32_t> lengths;
};

IndexList make_index_list(Rng& rng, const ProblemConfig& config, int width, int64_t page_block_size,
                          int64_t stride_pad_bytes) {
  IndexList list;
  const int64_t rows = static_cast<int64_t>(config.batch) * config.seq_q;
  const int64_t entries = rows * width;
  // Pool: slack * entries + one spare page, rounded up to whole pages, so the referenced slots are a
  // sparse random subset scattered over many pages in random order.
  const int64_t pool_slots = std::max<int64_t>(config.pool_slack, 1) * entries + page_block_size;
  const int64_t num_pages = (pool_slots + page_block_size - 1) / page_block_size;
  list.cache = make_host_cache(page_block_size, num_pages,
                               writer_page_stride_bytes(page_block_size) + stride_pad_bytes, 0xFF);
  const int64_t num_slots = cache_num_slots(list.cache.layout);

  // Row lengths: random in [0, width] (or the whole width); every row uses the whole width when no
  // lengths tensor is passed.
  const int64_t num_lengths = config.lengths_per_query ? rows : config.batch;
  if (config.lengths) {
    list.lengths.resize(static_cast<size_t>(num_lengths));
    for (auto& length : list.lengths) {
      length = config.full_lengths ? width : static_cast<int32_t>(rng.uniform_int(0, width));
    }
  }
  auto row_length = [&](int64_t row) -> int32_t {
    if (!config.lengths) return width;
    return list.lengths[static_cast<size_t>(config.lengths_per_query ? row : row / config.seq_q)];
  };

  const std::vector<int32_t> fresh_slots = random_distinct_slots(rng, num_slots, entries);
  std::vector<int32_t> used_slots, used_positions;
  list.indices.resize(static_cast<size_t>(entries));
  for (int64_t row = 0; row < rows; ++row) {
    int32_t* row_indices = list.indices.data() + row * width;
    const int32_t length = row_length(row);
    std::vector<int32_t> row_valid;
    for (int32_t position = 0; position < width; ++position) {
      int32_t& index = row_indices[position];
      if (position >= length) {
        // Past the row length: garbage that must never be read.
        switch (rng.uniform_int(0, 3)) {
          case 0:
            index = -1;
            break;
          case 1:
            index = std::numeric_limits<int32_t>::max();
            break;
          case 2:
            index = static_cast<int32_t>(num_slots + rng.uniform_int(0, 1 << 20));
            break;
          default:
            index = static_cast<int32_t>(rng.uniform_int(0, num_slots - 1));
            break;  // valid-looking
        }
        continue;
      }
      if (rng.uniform01() < config.invalid_index_fraction) {
        index = -1;
      } else if (!row_valid.empty() && rng.uniform01() < config.duplicate_fraction) {
        index =
            row_valid[static_cast<size_t>(rng.uniform_int(0, static_cast<int64_t>(row_valid.size()) - 1))];
      } else {
        index = fresh_slots[static_cast<size_t>(row * width + position)];
        row_valid.push_back(index);
        used_slots.push_back(index);
        used_positions.push_back(position);
      }
    }
  }
  std::vector<uint16_t> tokens = random_bf16(rng, used_slots.size() * kHeadDim);
  scale_token_magnitudes(rng, config, used_positions, width, &tokens);
  append_host_tokens(list.cache, tokens, used_slots);
  return list;
}

}  // namespace

DecodeProblem make_problem(Rng& rng, const ProblemConfig& config) {
  DecodeProblem problem;
  problem.config = config;
  problem.shape = DecodeShape{config.batch, config.seq_q, config.num_heads, config.topk, config.extra_topk};

  IndexList main =
      make_index_list(rng, config, config.topk, config.main_page_block_size, config.main_stride_pad_bytes);
  problem.main_cache = std::move(main.cache);
  problem.indices = std::move(main.indices);
  problem.topk_length = std::move(main.lengths);
  if (config.extra_topk > 0) {
    IndexList extra = make_index_list(rng, config, config.extra_topk, config.extra_page_block_size,
                                      config.extra_stride_pad_bytes);
    problem.extra_cache = std::move(extra.cache);
    problem.extra_indices = std::move(extra.indices);
    problem.extra_topk_length = std::move(extra.lengths);
  }

  const size_t q_elements = static_cast<size_t>(config.batch) * config.seq_q * config.num_heads * kHeadDim;
  problem.q = random_bf16(rng, q_elements);
  if (config.q_magnitude_spread_log2 != 0) {
    for (size_t row = 0; row < q_elements / kHeadDim; ++row) {
      const int k =
          static_cast<int>(std::lround(config.q_magnitude_spread_log2 * (2.0 * rng.uniform01() - 1.0)));
      for (size_t d = 0; d < static_cast<size_t>(kHeadDim); ++d) {
        problem.q[row * kHeadDim + d] = scale_bf16_by_power_of_two(problem.q[row * kHeadDim + d], k);
      }
    }
  }

  if (config.sink) {
    problem.sink.resize(static_cast<size_t>(config.num_heads));
    for (auto& sink : problem.sink) {
      if (rng.uniform01() < config.sink_inf_fraction) {
        sink = rng.uniform_int(0, 1) ? std::numeric_limits<float>::infinity()
                                     : -std::numeric_limits<float>::infinity();
      } else {
        sink = rng.normal();
      }
    }
  }
  return problem;
}

DecodeArgs DecodeProblem::host_args(uint16_t* out, float* lse) const {
  DecodeArgs args{};
  const int64_t h = shape.num_heads;
  args.q = q.data();
  args.q_stride_head = kHeadDim;
  args.q_stride_seq = h * kHeadDim;
  args.q_stride_batch = shape.seq_q * h * kHeadDim;

  args.main_cache = main_cache.layout;
  args.indices = indices.data();
  args.indices_stride_seq = shape.topk;
  args.indices_stride_batch = static_cast<int64_t>(shape.seq_q) * shape.topk;
  args.topk_length = topk_length.empty() ? nullptr : topk_length.data();
  args.topk_length_layout = config.lengths_per_query ? SMLA_LENGTHS_PER_QUERY : SMLA_LENGTHS_PER_BATCH;

  if (shape.extra_topk > 0) {
    args.extra_cache = extra_cache.layout;
    args.extra_indices = extra_indices.data();
    args.extra_indices_stride_seq = shape.extra_topk;
    args.extra_indices_stride_batch = static_cast<int64_t>(shape.seq_q) * shape.extra_topk;
    args.extra_topk_length = extra_topk_length.empty() ? nullptr : extra_topk_length.data();
    args.extra_topk_length_layout =
        config.lengths_per_query ? SMLA_LENGTHS_PER_QUERY : SMLA_LENGTHS_PER_BATCH;
  }

  args.attn_sink = sink.empty() ? nullptr : sink.data();
  args.softmax_scale = softmax_scale;

  args.out = out;
  args.out_stride_head = kHeadDim;
  args.out_stride_seq = h * kHeadDim;
  args.out_stride_batch = shape.seq_q * h * kHeadDim;
  args.lse = lse;
  args.lse_stride_head = 1;
  args.lse_stride_seq = h;
  args.lse_stride_batch = shape.seq_q * h;
  return args;
}

detail::IndexListParams index_list_params(const HostCache& cache, const std::vector<int32_t>& indices,
                                          const std::vector<int32_t>& lengths, int width, int seq_q,
                                          bool lengths_per_query) {
  detail::IndexListParams list;
  list.cache.data = static_cast<const uint8_t*>(cache.layout.data);
  list.cache.page_block_size = cache.layout.page_block_size;
  list.cache.page_stride_bytes = cache.layout.page_stride_bytes;
  list.cache.num_slots = cache_num_slots(cache.layout);
  list.indices = indices.data();
  list.stride_seq = width;
  list.stride_batch = static_cast<int64_t>(seq_q) * width;
  list.width = width;
  list.lengths = lengths.empty() ? nullptr : lengths.data();
  list.lengths_per_query = lengths_per_query ? 1 : 0;
  return list;
}

detail::DecodeParams reference_params(const DecodeProblem& problem) {
  const DecodeShape& shape = problem.shape;
  detail::DecodeParams params;
  params.batch = shape.batch;
  params.seq_q = shape.seq_q;
  params.num_heads = shape.num_heads;
  params.q = problem.q.data();
  params.q_stride_head = kHeadDim;
  params.q_stride_seq = static_cast<int64_t>(shape.num_heads) * kHeadDim;
  params.q_stride_batch = static_cast<int64_t>(shape.seq_q) * shape.num_heads * kHeadDim;
  params.main = index_list_params(problem.main_cache, problem.indices, problem.topk_length, shape.topk,
                                  shape.seq_q, problem.config.lengths_per_query);
  if (shape.extra_topk > 0) {
    params.extra = index_list_params(problem.extra_cache, problem.extra_indices, problem.extra_topk_length,
                                     shape.extra_topk, shape.seq_q, problem.config.lengths_per_query);
  }
  params.attn_sink = problem.sink.empty() ? nullptr : problem.sink.data();
  params.softmax_scale = problem.softmax_scale;
  return params;
}

Reference reference_decode(const DecodeProblem& problem) {
  const DecodeShape& shape = problem.shape;
  const detail::DecodeParams params = reference_params(problem);
  Reference reference;
  reference.shape = shape;
  const size_t rows_heads = static_cast<size_t>(shape.batch) * shape.seq_q * shape.num_heads;
  reference.out.assign(rows_heads * kHeadDim, 0.0);
  reference.lse.assign(rows_heads, 0.0);
  const Status status =
      detail::reference_decode(params, SMLA_CPU_FLOAT64, 0, reference.out.data(), reference.lse.data());
  if (!status.ok()) ADD_FAILURE() << "the CPU reference failed: " << status.message();
  return reference;
}

namespace {

// Spec section 8 tolerances for bf16-MMA kernels.
constexpr double kOutAbsTolerance = 1e-3;
constexpr double kOutRelTolerance = 2.01 / 128;
constexpr double kCosineTolerance = 5e-6;
constexpr double kLseAbsTolerance = 1e-6;
constexpr double kLseRelTolerance = 8.01 / 65536;
constexpr int kMaxReportedFailures = 8;

// +-inf and NaN must sit at the same positions with the same kind (and sign for inf).
bool nonfinite_match(double actual, double expected) {
  if (std::isnan(expected) || std::isnan(actual)) return std::isnan(expected) && std::isnan(actual);
  if (std::isinf(expected) || std::isinf(actual)) return actual == expected;
  return true;
}

bool within(double actual, double expected, double abs_tolerance, double rel_tolerance) {
  const double error = std::fabs(actual - expected);
  return error < abs_tolerance || error / (std::fabs(expected) + 1e-6) < rel_tolerance;
}

// "(b, t, h)" of a flat [b, s_q, h] position, or "[i]" when the shape is unknown.
std::string position_name(const DecodeShape& shape, size_t row_head, int dim) {
  std::ostringstream name;
  if (shape.seq_q > 0 && shape.num_heads > 0) {
    const size_t h = row_head % shape.num_heads;
    const size_t row = row_head / shape.num_heads;
    name << "(b=" << row / shape.seq_q << ", t=" << row % shape.seq_q << ", h=" << h;
    if (dim >= 0) name << ", d=" << dim;
    name << ")";
  } else {
    name << "[" << (dim >= 0 ? row_head * kHeadDim + dim : row_head) << "]";
  }
  return name.str();
}

}  // namespace

Comparison compare_to_reference(const Reference& reference, const uint16_t* out, const float* lse) {
  Comparison result;
  std::ostringstream report;
  int failures = 0;
  auto fail = [&](const std::string& line) {
    result.ok = false;
    if (failures++ < kMaxReportedFailures) report << line << "\n";
  };

  double dot = 0, norms = 0;
  for (size_t i = 0; i < reference.out.size(); ++i) {
    const double expected = reference.out[i];
    const double actual = bf16_value(out[i]);
    // Built lazily: only failures need a position string.
    auto where = [&] { return position_name(reference.shape, i / kHeadDim, static_cast<int>(i % kHeadDim)); };
    if (!std::isfinite(expected) || !std::isfinite(actual)) {
      if (!nonfinite_match(actual, expected)) {
        fail("out" + where() + ": got " + std::to_string(actual) + ", expected " + std::to_string(expected));
      }
      continue;
    }
    result.max_abs_error = std::max(result.max_abs_error, std::fabs(actual - expected));
    dot += actual * expected;
    norms += actual * actual + expected * expected;
    if (!within(actual, expected, kOutAbsTolerance, kOutRelTolerance)) {
      fail("out" + where() + ": got " + std::to_string(actual) + ", expected " + std::to_string(expected) +
           " (tolerance abs 1e-3 or rel 2.01/128)");
    }
  }
  result.cosine_difference = norms > 0 ? 1.0 - 2.0 * dot / norms : 0.0;
  if (result.cosine_difference > kCosineTolerance) {
    fail("out: cosine difference " + std::to_string(result.cosine_difference) + " > 5e-6");
  }

  for (size_t i = 0; i < reference.lse.size(); ++i) {
    const double expected = reference.lse[i];
    const double actual = lse[i];
    auto where = [&] { return position_name(reference.shape, i, -1); };
    if (!std::isfinite(expected) || !std::isfinite(actual)) {
      if (!nonfinite_match(actual, expected)) {
        fail("lse" + where() + ": got " + std::to_string(actual) + ", expected " + std::to_string(expected));
      }
      continue;
    }
    result.max_lse_error = std::max(result.max_lse_error, std::fabs(actual - expected));
    if (!within(actual, expected, kLseAbsTolerance, kLseRelTolerance)) {
      fail("lse" + where() + ": got " + std::to_string(actual) + ", expected " + std::to_string(expected) +
           " (tolerance abs 1e-6 or rel 8.01/65536)");
    }
  }

  if (failures > kMaxReportedFailures) {
    report << "... " << failures - kMaxReportedFailures << " more failures\n";
  }
  result.report = report.str();
  return result;
}

uint16_t bf16_bits(float value) { return float_to_bf16_bits(value); }

float bf16_value(uint16_t bits) { return bf16_bits_to_float(bits); }

bool cuda_device_present(std::string* reason) {
  int count = 0;
  const cudaError_t error = cudaGetDeviceCount(&count);
  if (error != cudaSuccess) {
    if (reason != nullptr) *reason = cudaGetErrorString(error);
    return false;
  }
  if (count == 0) {
    if (reason != nullptr) *reason = "cudaGetDeviceCount reports 0 devices";
    return false;
  }
  return true;
}

ProblemConfig problem_config(int batch, int seq_q, int num_heads, int topk, int extra_topk,
                             int64_t main_page_block_size, int64_t extra_page_block_size) {
  ProblemConfig config;
  config.batch = batch;
  config.seq_q = seq_q;
  config.num_heads = num_heads;
  config.topk = topk;
  config.extra_topk = extra_topk;
  config.main_page_block_size = main_page_block_size;
  config.extra_page_block_size = extra_page_block_size;
  return config;
}

bool quick_mode() {
  const char* value = std::getenv("SMLA_TEST_QUICK");
  return value != nullptr && std::strcmp(value, "1") == 0;
}

}  // namespace smla::test
