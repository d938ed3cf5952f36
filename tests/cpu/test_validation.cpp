// The argument checks of make_plan / validate_decode_args / run: each test starts from a small valid CPU
// problem, breaks exactly one thing and expects INVALID_ARGUMENT with a message naming the argument.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "common/build_params.h"
#include "common/test_support.h"
#include "smla/cache.h"
#include "smla/decode.h"

namespace smla {
namespace {

using test::DecodeProblem;
using test::ProblemConfig;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

// Expects `status` to be INVALID_ARGUMENT whose message contains every needle.
void expect_invalid(const Status& status, std::initializer_list<const char*> needles) {
  EXPECT_EQ(status.code(), SMLA_STATUS_INVALID_ARGUMENT) << status.message();
  for (const char* needle : needles) {
    EXPECT_NE(status.message().find(needle), std::string::npos)
        << "message '" << status.message() << "' does not mention '" << needle << "'";
  }
}

PlanOptions cpu_options() {
  PlanOptions options = default_plan_options();
  options.backend = SMLA_BACKEND_CPU;
  return options;
}

DecodeShape valid_shape() { return DecodeShape{2, 2, 4, 64, 64}; }

// ---------------------------------------------------------------------------------------------------
// Shapes and plan options.

TEST(ShapeValidation, AcceptsAValidShape) { EXPECT_TRUE(validate_decode_shape(valid_shape()).ok()); }

TEST(ShapeValidation, RejectsEachFieldOutOfRange) {
  struct Case {
    const char* field;
    void (*mutate)(DecodeShape&);
    const char* expected;
  };
  const Case cases[] = {
      {"batch", [](DecodeShape& s) { s.batch = 0; }, "shape.batch must be >= 1 (got 0)"},
      {"seq_q", [](DecodeShape& s) { s.seq_q = -3; }, "shape.seq_q must be >= 1 (got -3)"},
      {"num_heads=0", [](DecodeShape& s) { s.num_heads = 0; }, "shape.num_heads must be in 1..128 (got 0)"},
      {"num_heads=129", [](DecodeShape& s) { s.num_heads = 129; },
       "shape.num_heads must be in 1..128 (got 129)"},
      {"topk", [](DecodeShape& s) { s.topk = 0; }, "shape.topk must be in 1..16777216 (got 0)"},
      {"topk=2^24+1", [](DecodeShape& s) { s.topk = (1 << 24) + 1; },
       "shape.topk must be in 1..16777216 (got 16777217)"},
      {"extra_topk", [](DecodeShape& s) { s.extra_topk = -1; },
       "shape.extra_topk must be in 0..16777216 (got -1)"},
      {"extra_topk=2^31-1", [](DecodeShape& s) { s.extra_topk = 2147483647; },
       "shape.extra_topk must be in 0..16777216 (got 2147483647)"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.field);
    DecodeShape shape = valid_shape();
    c.mutate(shape);
    expect_invalid(validate_decode_shape(shape), {c.expected});
    Plan plan;
    expect_invalid(make_plan(shape, cpu_options(), &plan), {c.expected});
    EXPECT_FALSE(plan.valid());
  }
}

TEST(ShapeValidation, RejectsElementCountsBeyondInt32Indexing) {
  // 2^13 * 8 * 64 * 512 = 2^31 q elements: one past the int32 range.
  expect_invalid(validate_decode_shape(DecodeShape{1 << 13, 8, 64, 64, 0}),
                 {"num_heads * 512", "2147483648"});
  // Largest accepted: 2^31 - 512 elements.
  EXPECT_TRUE(validate_decode_shape(DecodeShape{(1 << 22) - 1, 1, 1, 64, 0}).ok());
  expect_invalid(validate_decode_shape(DecodeShape{1 << 16, 1, 1, 1 << 15, 0}), {"seq_q * topk"});
  expect_invalid(validate_decode_shape(DecodeShape{1 << 16, 1, 1, 64, 1 << 15}), {"seq_q * extra_topk"});
}

TEST(ShapeValidation, WidestListsKeepTileCountsInInt32) {
  // 2^24 entries a list is the most accepted; 2^31 - 1 used to pass (b = 1) and wrap the tile count.
  const DecodeShape widest{1, 1, 8, 1 << 24, 1 << 24};
  ASSERT_TRUE(validate_decode_shape(widest).ok());
  Plan plan;
  ASSERT_TRUE(make_plan(widest, cpu_options(), &plan).ok());
  EXPECT_EQ(plan.total_tiles(), 2 * (1 << 24) / 64);
  EXPECT_EQ(plan.tiles_per_split(), plan.total_tiles());
}

TEST(PlanValidation, RejectsBadOptions) {
  Plan plan;
  PlanOptions options = cpu_options();
  options.num_splits = -1;
  expect_invalid(make_plan(valid_shape(), options, &plan), {"options.num_splits", "(got -1)"});
  options = cpu_options();
  options.cpu_threads = -2;
  expect_invalid(make_plan(valid_shape(), options, &plan), {"options.cpu_threads", "(got -2)"});
  options = cpu_options();
  options.cpu_threads = 1025;  // each would be a std::thread
  expect_invalid(make_plan(valid_shape(), options, &plan),
                 {"options.cpu_threads must be in 0..1024", "(got 1025)"});
  options = cpu_options();
  options.cpu_precision = 7;
  expect_invalid(make_plan(valid_shape(), options, &plan), {"options.cpu_precision", "(got 7)"});
  options = cpu_options();
  options.device = -2;
  expect_invalid(make_plan(valid_shape(), options, &plan), {"options.device", "(got -2)"});
  options = cpu_options();
  options.backend = 9;
  expect_invalid(make_plan(valid_shape(), options, &plan), {"backend", "cuda-ref"});
  expect_invalid(make_plan(valid_shape(), cpu_options(), nullptr), {"plan must not be null"});
}

TEST(PlanValidation, CpuPlanHasNoDeviceNoSplitsNoWorkspace) {
  Plan plan;
  ASSERT_TRUE(make_plan(DecodeShape{3, 2, 16, 128, 192}, cpu_options(), &plan).ok());
  EXPECT_TRUE(plan.valid());
  EXPECT_EQ(plan.backend(), SMLA_BACKEND_CPU);
  EXPECT_EQ(plan.device(), -1);
  EXPECT_EQ(plan.num_splits(), 1);
  EXPECT_EQ(plan.total_tiles(), 2 + 3);
  EXPECT_EQ(plan.tiles_per_split(), 5);
  EXPECT_EQ(plan.workspace_bytes(), 0u);
}

TEST(PlanValidation, InvalidPlanIsRejectedByRun) {
  Plan plan;  // never planned
  DecodeArgs args{};
  expect_invalid(validate_decode_args(plan, args, nullptr, 0), {"plan is not valid"});
}

// ---------------------------------------------------------------------------------------------------
// Arguments: a valid CPU problem with main and extra lists, mutated one field at a time.

class ArgsValidation : public ::testing::Test {
 protected:
  void SetUp() override {
    ProblemConfig config;
    config.batch = 2;
    config.seq_q = 2;
    config.num_heads = 4;
    config.topk = 64;
    config.extra_topk = 64;
    config.main_page_block_size = 16;
    config.extra_page_block_size = 2;
    config.full_lengths = true;  // every index position is inside the valid prefix
    test::Rng rng = test::Rng::ForTest();
    problem = test::make_problem(rng, config);
    const size_t rows = static_cast<size_t>(config.batch) * config.seq_q;
    out.assign(rows * config.num_heads * kHeadDim, test::kPoisonBf16);
    lse.assign(rows * config.num_heads, kNaN);
    args = problem.host_args(out.data(), lse.data());
    ASSERT_TRUE(make_plan(problem.shape, cpu_options(), &plan).ok());
    ASSERT_TRUE(check().ok()) << check().message();
  }

  Status check() const { return validate_decode_args(plan, args, nullptr, 0); }

  // Pointer `bytes` past `base`, to build misaligned arguments.
  template <typename T>
  static T* offset_bytes(T* base, int bytes) {
    return reinterpret_cast<T*>(reinterpret_cast<uintptr_t>(base) + bytes);
  }

  DecodeProblem problem;
  std::vector<uint16_t> out;
  std::vector<float> lse;
  DecodeArgs args{};
  Plan plan;
};

TEST_F(ArgsValidation, ValidCallSucceedsAndWritesOutputs) {
  ASSERT_TRUE(run(plan, args, nullptr, 0, nullptr).ok());
  size_t poisoned = 0;
  for (uint16_t value : out) poisoned += value == test::kPoisonBf16;
  EXPECT_EQ(poisoned, 0u);
  for (float value : lse) EXPECT_FALSE(std::isnan(value));
}

TEST_F(ArgsValidation, FailedValidationWritesNothing) {
  args.softmax_scale = kNaN;
  const std::vector<uint16_t> out_before = out;
  const std::vector<float> lse_before = lse;
  expect_invalid(run(plan, args, nullptr, 0, nullptr), {"args.softmax_scale"});
  EXPECT_EQ(out, out_before);
  EXPECT_EQ(std::memcmp(lse.data(), lse_before.data(), lse.size() * sizeof(float)), 0);
}

TEST_F(ArgsValidation, RejectsEachRequiredNullPointer) {
  const DecodeArgs valid = args;
  args.q = nullptr;
  expect_invalid(check(), {"args.q must not be null"});
  args = valid;
  args.indices = nullptr;
  expect_invalid(check(), {"args.indices must not be null"});
  args = valid;
  args.out = nullptr;
  expect_invalid(check(), {"args.out must not be null"});
  args = valid;
  args.lse = nullptr;
  expect_invalid(check(), {"args.lse must not be null"});
  args = valid;
  args.extra_indices = nullptr;
  expect_invalid(check(), {"args.extra_indices must not be null"});
}

TEST_F(ArgsValidation, OptionalPointersMayBeNull) {
  args.topk_length = nullptr;
  args.extra_topk_length = nullptr;
  args.attn_sink = nullptr;
  EXPECT_TRUE(check().ok()) << check().message();
}

TEST_F(ArgsValidation, ExtraArgumentsIgnoredWithoutExtraTopk) {
  DecodeShape shape = problem.shape;
  shape.extra_topk = 0;
  ASSERT_TRUE(make_plan(shape, cpu_options(), &plan).ok());
  args.extra_indices = nullptr;
  args.extra_cache = CacheLayout{};  // invalid, but unused
  args.extra_topk_length_layout = 5;
  args.extra_indices_stride_seq = -1;
  EXPECT_TRUE(check().ok()) << check().message();
}

// Each cache-layout field, for the main and the extra cache.
class CacheArgsValidation : public ArgsValidation, public ::testing::WithParamInterface<bool> {
 protected:
  CacheLayout& cache() { return GetParam() ? args.extra_cache : args.main_cache; }
  std::string name(const char* field) const {
    return std::string(GetParam() ? "args.extra_cache." : "args.main_cache.") + field;
  }
};

TEST_P(CacheArgsValidation, RejectsEachBadField) {
  const DecodeArgs valid = args;
  cache().data = nullptr;
  expect_invalid(check(), {name("data").c_str(), "null"});
  args = valid;
  cache().data = offset_bytes(cache().data, 8);
  expect_invalid(check(), {name("data").c_str(), "16-byte aligned"});
  args = valid;
  cache().page_block_size = 0;
  expect_invalid(check(), {name("page_block_size").c_str(), ">= 1"});
  args = valid;
  cache().page_stride_bytes = cache().page_block_size * kRecordBytes - 16;
  expect_invalid(check(), {name("page_stride_bytes").c_str(), "584"});
  args = valid;
  cache().page_stride_bytes += 8;
  expect_invalid(check(), {name("page_stride_bytes").c_str(), "multiple of 16"});
  args = valid;
  cache().num_pages = 0;
  expect_invalid(check(), {name("num_pages").c_str(), ">= 1"});
}

INSTANTIATE_TEST_SUITE_P(MainAndExtra, CacheArgsValidation, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "Extra" : "Main";
                         });

TEST_F(ArgsValidation, RejectsNegativeStrides) {
  struct Case {
    const char* name;
    int64_t DecodeArgs::*stride;
  };
  const Case cases[] = {
      {"args.q_stride_batch", &DecodeArgs::q_stride_batch},
      {"args.q_stride_seq", &DecodeArgs::q_stride_seq},
      {"args.q_stride_head", &DecodeArgs::q_stride_head},
      {"args.indices_stride_batch", &DecodeArgs::indices_stride_batch},
      {"args.indices_stride_seq", &DecodeArgs::indices_stride_seq},
      {"args.extra_indices_stride_batch", &DecodeArgs::extra_indices_stride_batch},
      {"args.extra_indices_stride_seq", &DecodeArgs::extra_indices_stride_seq},
      {"args.out_stride_batch", &DecodeArgs::out_stride_batch},
      {"args.out_stride_seq", &DecodeArgs::out_stride_seq},
      {"args.out_stride_head", &DecodeArgs::out_stride_head},
      {"args.lse_stride_batch", &DecodeArgs::lse_stride_batch},
      {"args.lse_stride_seq", &DecodeArgs::lse_stride_seq},
      {"args.lse_stride_head", &DecodeArgs::lse_stride_head},
  };
  const DecodeArgs valid = args;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    args = valid;
    args.*c.stride = -8;
    expect_invalid(check(), {c.name, ">= 0"});
  }
}

TEST_F(ArgsValidation, RejectsQAndOutStridesThatBreakVectorAccess) {
  const DecodeArgs valid = args;
  args.q_stride_head = 516;
  expect_invalid(check(), {"args.q_stride_head", "multiple of 8"});
  args = valid;
  args.q_stride_seq += 4;
  expect_invalid(check(), {"args.q_stride_seq", "multiple of 8"});
  args = valid;
  args.out_stride_batch += 2;
  expect_invalid(check(), {"args.out_stride_batch", "multiple of 8"});
  args = valid;
  args.out_stride_head = 520;  // a padded head is fine for reads and writes alike
  args.out_stride_seq = 4 * 520;
  args.out_stride_batch = 2 * 4 * 520;
  std::vector<uint16_t> padded_out(2 * 2 * 4 * 520, test::kPoisonBf16);
  args.out = padded_out.data();
  EXPECT_TRUE(check().ok()) << check().message();
}

TEST_F(ArgsValidation, RejectsOverlappingOutputs) {
  const DecodeArgs valid = args;
  args.out_stride_head = 0;  // every head would write the same row
  expect_invalid(check(), {"args.out", "overlap"});
  args = valid;
  args.out_stride_head = 256;
  args.out_stride_seq = 1024;
  args.out_stride_batch = 2048;
  expect_invalid(check(), {"args.out", "overlap"});
  args = valid;
  args.lse_stride_seq = 2;  // seq rows overlap heads
  expect_invalid(check(), {"args.lse", "overlap"});
}

TEST_F(ArgsValidation, RejectsStridesWhoseByteOffsetsOverflow) {
  // Each stride is >= 0 and a multiple of what its tensor needs; its offsets would wrap int64 and send
  // the backend's reads and writes before the buffer (the audit of 2026-12-04 saw writes before out and lse).
  struct Case {
    const char* name;
    int64_t DecodeArgs::*stride;
    int64_t value;
  };
  const Case cases[] = {
      {"args.out_stride_head", &DecodeArgs::out_stride_head, std::numeric_limits<int64_t>::max() - 7},
      {"args.out_stride_batch", &DecodeArgs::out_stride_batch, int64_t{1} << 62},
      {"args.q_stride_seq", &DecodeArgs::q_stride_seq, int64_t{1} << 62},
      {"args.lse_stride_head", &DecodeArgs::lse_stride_head, (int64_t{1} << 62) - 1},
      {"args.indices_stride_batch", &DecodeArgs::indices_stride_batch, (int64_t{1} << 62) - 1},
      {"args.extra_indices_stride_seq", &DecodeArgs::extra_indices_stride_seq, int64_t{1} << 62},
  };
  const DecodeArgs valid = args;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    args = valid;
    args.*c.stride = c.value;
    expect_invalid(check(), {c.name, "past the end of the address range"});
    // run() writes nothing before failing.
    const std::vector<uint16_t> out_before = out;
    expect_invalid(run(plan, args, nullptr, 0, nullptr), {c.name});
    EXPECT_EQ(out, out_before);
  }
}

TEST_F(ArgsValidation, RejectsOutputsThatShareMemoryWithAnyArgument) {
  const DecodeArgs valid = args;
  args.lse = reinterpret_cast<float*>(args.out);
  expect_invalid(check(), {"args.out [", "overlaps args.lse ["});
  args = valid;
  args.out = const_cast<void*>(args.q);  // in place
  expect_invalid(check(), {"args.out [", "overlaps args.q ["});
  args = valid;
  args.out = args.main_cache.data;  // the KV cache would be overwritten
  expect_invalid(check(), {"args.out [", "overlaps args.main_cache.data ["});
  args = valid;
  args.lse = reinterpret_cast<float*>(args.extra_cache.data);
  expect_invalid(check(), {"args.lse [", "overlaps args.extra_cache.data ["});
  args = valid;
  // lse (rows x heads floats) is longer than the sink (heads floats): both in one buffer of their own, so
  // that lse overlaps the sink and nothing else the heap happens to put after it.
  std::vector<float> sink_and_lse(lse.size() + static_cast<size_t>(problem.shape.num_heads));
  std::memcpy(sink_and_lse.data(), args.attn_sink, sizeof(float) * problem.shape.num_heads);
  args.attn_sink = sink_and_lse.data();
  args.lse = sink_and_lse.data();
  expect_invalid(check(), {"args.lse [", "overlaps args.attn_sink ["});
  args = valid;
  args.lse = reinterpret_cast<float*>(const_cast<int32_t*>(args.indices)) + 8;  // inside the list, aligned
  expect_invalid(check(), {"args.lse [", "overlaps args.indices ["});
  args = valid;
  // The lengths (one int32 a row) are shorter than lse: a buffer of their own too.
  std::vector<int32_t> lengths_and_lse(problem.extra_topk_length.size() + lse.size());
  std::copy(problem.extra_topk_length.begin(), problem.extra_topk_length.end(), lengths_and_lse.begin());
  args.extra_topk_length = lengths_and_lse.data();
  args.lse = reinterpret_cast<float*>(lengths_and_lse.data());
  expect_invalid(check(), {"args.lse [", "overlaps args.extra_topk_length ["});
  // Inputs may share memory: the main list read a second time as the extra list is not an error.
  args = valid;
  args.extra_cache = args.main_cache;
  args.extra_indices = args.indices;
  args.extra_topk_length = args.topk_length;
  EXPECT_TRUE(check().ok()) << check().message();
  // A failed run writes nothing: out keeps its poison, the cache its bytes.
  args = valid;
  args.out = args.main_cache.data;
  const std::vector<uint8_t> cache_before = problem.main_cache.storage;
  expect_invalid(run(plan, args, nullptr, 0, nullptr), {"overlaps"});
  EXPECT_EQ(problem.main_cache.storage, cache_before);
}

TEST_F(ArgsValidation, AcceptsTransposedLseView) {
  // FlashMLA's lse is [b, h, s_q]: head stride s_q, seq stride 1.
  args.lse_stride_head = 2;
  args.lse_stride_seq = 1;
  args.lse_stride_batch = 8;
  EXPECT_TRUE(check().ok()) << check().message();
}

TEST_F(ArgsValidation, AcceptsBroadcastQ) {
  // Inputs may alias: the same query for every batch row.
  args.q_stride_batch = 0;
  EXPECT_TRUE(check().ok()) << check().message();
}

TEST_F(ArgsValidation, RejectsMisalignedPointers) {
  const DecodeArgs valid = args;
  args.q = offset_bytes(args.q, 8);
  expect_invalid(check(), {"args.q", "16-byte aligned"});
  args = valid;
  args.out = offset_bytes(args.out, 2);
  expect_invalid(check(), {"args.out", "16-byte aligned"});
  args = valid;
  args.indices = offset_bytes(args.indices, 2);
  expect_invalid(check(), {"args.indices", "4-byte aligned"});
  args = valid;
  args.extra_indices = offset_bytes(args.extra_indices, 1);
  expect_invalid(check(), {"args.extra_indices", "4-byte aligned"});
  args = valid;
  args.topk_length = offset_bytes(args.topk_length, 2);
  expect_invalid(check(), {"args.topk_length", "4-byte aligned"});
  args = valid;
  args.extra_topk_length = offset_bytes(args.extra_topk_length, 2);
  expect_invalid(check(), {"args.extra_topk_length", "4-byte aligned"});
  args = valid;
  args.attn_sink = offset_bytes(args.attn_sink, 2);
  expect_invalid(check(), {"args.attn_sink", "4-byte aligned"});
  args = valid;
  args.lse = offset_bytes(args.lse, 2);
  expect_invalid(check(), {"args.lse", "4-byte aligned"});
}

TEST_F(ArgsValidation, RejectsUnknownLengthsLayouts) {
  const DecodeArgs valid = args;
  args.topk_length_layout = 2;
  expect_invalid(check(), {"args.topk_length_layout", "(got 2)"});
  args = valid;
  args.extra_topk_length_layout = -1;
  expect_invalid(check(), {"args.extra_topk_length_layout", "(got -1)"});
}

TEST_F(ArgsValidation, RejectsBadSoftmaxScale) {
  for (float scale : {kNaN, 0.f, -0.044f, kInf, -kInf}) {
    SCOPED_TRACE(scale);
    args.softmax_scale = scale;
    expect_invalid(check(), {"args.softmax_scale", "finite and > 0"});
  }
}

TEST_F(ArgsValidation, CpuPlanNeedsNoWorkspace) {
  // workspace_bytes() is 0, so neither a null pointer nor a zero size is an error.
  EXPECT_TRUE(validate_decode_args(plan, args, nullptr, 0).ok());
  alignas(16) unsigned char spare[32];
  EXPECT_TRUE(validate_decode_args(plan, args, spare + 1, 3).ok());
}

TEST_F(ArgsValidation, RejectsOutOfRangeMainSlotOnCpu) {
  const int64_t num_slots = cache_num_slots(problem.main_cache.layout);
  // Row (b=1, t=0), position 5: the flat offset of that entry in the contiguous indices.
  problem.indices[(1 * 2 + 0) * 64 + 5] = static_cast<int32_t>(num_slots);
  const Status status = check();
  expect_invalid(
      status, {"args.indices[b=1, t=0, position=5]", std::to_string(num_slots).c_str(), "args.main_cache"});
  ASSERT_TRUE(run(plan, args, nullptr, 0, nullptr).code() == SMLA_STATUS_INVALID_ARGUMENT);
  for (uint16_t value : out) ASSERT_EQ(value, test::kPoisonBf16);
}

TEST_F(ArgsValidation, RejectsOutOfRangeExtraSlotOnCpu) {
  const int64_t num_slots = cache_num_slots(problem.extra_cache.layout);
  problem.extra_indices[(0 * 2 + 1) * 64 + 63] = 2147483647;
  expect_invalid(check(), {"args.extra_indices[b=0, t=1, position=63]", "2147483647", "args.extra_cache",
                           std::to_string(num_slots).c_str()});
}

TEST_F(ArgsValidation, IgnoresSlotsPastTheRowLengthAndNegativeSlots) {
  problem.indices[0] = -1;
  problem.indices[1] = -12345;
  // Shorten row (b=0) to 10 entries and put an out-of-range id past the prefix: it is never read.
  ASSERT_EQ(args.topk_length_layout, SMLA_LENGTHS_PER_BATCH);
  problem.topk_length[0] = 10;
  problem.indices[20] = 1 << 30;
  EXPECT_TRUE(check().ok()) << check().message();
  problem.indices[9] = 1 << 30;
  expect_invalid(check(), {"args.indices[b=0, t=0, position=9]"});
}

TEST_F(ArgsValidation, CpuLengthsAboveWidthAreClamped) {
  problem.topk_length[1] = 1000;  // clamped to topk: no read past the row
  problem.extra_topk_length[0] = -7;
  EXPECT_TRUE(check().ok()) << check().message();
}

TEST_F(ArgsValidation, DecodeConvenienceMatchesPlanAndRun) {
  ASSERT_TRUE(run(plan, args, nullptr, 0, nullptr).ok());
  std::vector<uint16_t> out_once(out.size(), test::kPoisonBf16);
  std::vector<float> lse_once(lse.size(), kNaN);
  DecodeArgs once_args = args;
  once_args.out = out_once.data();
  once_args.lse = lse_once.data();
  const Status status = decode(problem.shape, once_args, cpu_options());
  ASSERT_TRUE(status.ok()) << status.message();
  EXPECT_EQ(out_once, out);
  EXPECT_EQ(std::memcmp(lse_once.data(), lse.data(), lse.size() * sizeof(float)), 0);
  // decode() validates like run().
  once_args.softmax_scale = 0.f;
  expect_invalid(decode(problem.shape, once_args, cpu_options()), {"args.softmax_scale"});
}

TEST_F(ArgsValidation, BuildParamsCopiesArgumentsAndSchedule) {
  args.topk_length_layout = SMLA_LENGTHS_PER_QUERY;  // only the flag matters here, not the buffer size
  unsetenv("SMLA_DEBUG_CHECKS");
  detail::DecodeParams params = detail::build_decode_params(plan, args, nullptr);
  EXPECT_EQ(params.batch, 2);
  EXPECT_EQ(params.seq_q, 2);
  EXPECT_EQ(params.num_heads, 4);
  EXPECT_EQ(params.q, args.q);
  EXPECT_EQ(params.q_stride_seq, args.q_stride_seq);
  EXPECT_EQ(params.main.indices, args.indices);
  EXPECT_EQ(params.main.width, 64);
  EXPECT_EQ(params.main.lengths_per_query, 1);
  EXPECT_EQ(params.main.cache.num_slots, cache_num_slots(args.main_cache));
  EXPECT_EQ(params.main.cache.page_stride_bytes, args.main_cache.page_stride_bytes);
  EXPECT_EQ(params.extra.width, 64);
  EXPECT_EQ(params.extra.lengths_per_query, 0);
  EXPECT_EQ(params.extra.cache.page_block_size, 2);
  EXPECT_EQ(params.out, args.out);
  EXPECT_EQ(params.lse_stride_head, 1);
  EXPECT_EQ(params.softmax_scale, args.softmax_scale);
  EXPECT_EQ(params.main_tiles, 1);
  EXPECT_EQ(params.total_tiles, 2);
  EXPECT_EQ(params.num_splits, 1);
  EXPECT_EQ(params.tiles_per_split, 2);
  EXPECT_EQ(params.error_counter, nullptr);  // the CPU plan has no workspace
  EXPECT_EQ(params.debug_checks, 0);

  setenv("SMLA_DEBUG_CHECKS", "1", 1);
  EXPECT_EQ(detail::build_decode_params(plan, args, nullptr).debug_checks, 1);
  unsetenv("SMLA_DEBUG_CHECKS");

  // Without an extra list in the plan, the extra arguments are not copied.
  DecodeShape shape = problem.shape;
  shape.extra_topk = 0;
  ASSERT_TRUE(make_plan(shape, cpu_options(), &plan).ok());
  params = detail::build_decode_params(plan, args, nullptr);
  EXPECT_EQ(params.extra.width, 0);
  EXPECT_EQ(params.extra.indices, nullptr);
  EXPECT_EQ(params.total_tiles, 1);
}

// ---------------------------------------------------------------------------------------------------
// Checks that need a CUDA plan: they run where a device exists (the lead's GPU runs) and skip here.

TEST_F(ArgsValidation, CudaPlanWorkspaceChecks) {
  SMLA_SKIP_WITHOUT_CUDA();
  for (Backend backend : {SMLA_BACKEND_CUDA_REF, SMLA_BACKEND_CUDA}) {
    SCOPED_TRACE(backend_name(backend));
    PlanOptions options = default_plan_options();
    options.backend = backend;
    Plan cuda_plan;
    ASSERT_TRUE(make_plan(problem.shape, options, &cuda_plan).ok());
    const size_t bytes = cuda_plan.workspace_bytes();
    ASSERT_GT(bytes, 0u);  // at least the device error counter
    std::vector<double> host_workspace(bytes / sizeof(double) + 2);
    expect_invalid(validate_decode_args(cuda_plan, args, nullptr, bytes), {"workspace must not be null"});
    expect_invalid(validate_decode_args(cuda_plan, args, offset_bytes(host_workspace.data(), 8), bytes),
                   {"workspace", "16-byte aligned"});
    expect_invalid(validate_decode_args(cuda_plan, args, host_workspace.data(), bytes - 1),
                   {"workspace_bytes", std::to_string(bytes).c_str()});
    // Everything else is right, but the buffers live on the host.
    expect_invalid(validate_decode_args(cuda_plan, args, host_workspace.data(), bytes),
                   {"args.q", "host memory"});
  }
}

TEST_F(ArgsValidation, CpuBackendRejectsDeviceMemory) {
  SMLA_SKIP_WITHOUT_CUDA();
  void* device_q = nullptr;
  const size_t q_bytes = problem.q.size() * sizeof(uint16_t);
  ASSERT_EQ(cudaMalloc(&device_q, q_bytes), cudaSuccess);
  args.q = device_q;
  expect_invalid(check(), {"args.q", "CUDA device memory", "cpu backend"});
  args = problem.host_args(out.data(), lse.data());
  void* device_out = nullptr;
  ASSERT_EQ(cudaMalloc(&device_out, out.size() * sizeof(uint16_t)), cudaSuccess);
  args.out = device_out;
  expect_invalid(check(), {"args.out", "CUDA device memory"});
  cudaFree(device_q);
  cudaFree(device_out);
}

TEST_F(ArgsValidation, CudaPlanWorkspaceCarveUp) {
  SMLA_SKIP_WITHOUT_CUDA();
  PlanOptions options = default_plan_options();
  options.backend = SMLA_BACKEND_CUDA;
  options.num_splits = 2;  // forced, so the partial buffers exist
  Plan cuda_plan;
  ASSERT_TRUE(make_plan(problem.shape, options, &cuda_plan).ok());
  ASSERT_EQ(cuda_plan.num_splits(), 2);
  // 4 query rows in 2 splits of 4 heads: 8 partial rows.
  const detail::WorkspaceLayout layout = detail::WorkspaceLayout::for_partial_rows(4 * 2, 4);
  EXPECT_EQ(cuda_plan.workspace_bytes(), layout.total_bytes);
  alignas(256) static unsigned char fake_workspace[1];  // addresses only; nothing is dereferenced
  const detail::DecodeParams params = detail::build_decode_params(cuda_plan, args, fake_workspace);
  EXPECT_EQ(reinterpret_cast<unsigned char*>(params.error_counter), fake_workspace);
  EXPECT_EQ(reinterpret_cast<unsigned char*>(params.partial_lse), fake_workspace + layout.partial_lse_offset);
  EXPECT_EQ(reinterpret_cast<unsigned char*>(params.partial_out), fake_workspace + layout.partial_out_offset);
  EXPECT_EQ(params.num_splits, 2);
  EXPECT_EQ(params.tiles_per_split, 1);
}

}  // namespace
}  // namespace smla
