// The C API: plan lifecycle, errors through codes and smla_last_error (thread-local), NULL handling,
// and a full CPU decode that must match the C++ API bit for bit.
#include <gtest/gtest.h>

#include <cstring>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "common/test_support.h"
#include "smla/decode.h"
#include "smla/device_workspace.h"
#include "smla/smla.h"

namespace {

smla_plan_options_t cpu_options() {
  smla_plan_options_t options;
  smla_default_plan_options(&options);
  options.backend = SMLA_BACKEND_CPU;
  return options;
}

bool last_error_has(const char* needle) {
  return std::string(smla_last_error()).find(needle) != std::string::npos;
}

TEST(CApi, VersionAndStatusStrings) {
  // The library and the generated header carry the same project(VERSION).
  EXPECT_STREQ(smla_version(), SMLA_VERSION_STRING);
  EXPECT_EQ(std::to_string(SMLA_VERSION_MAJOR) + "." + std::to_string(SMLA_VERSION_MINOR) + "." +
                std::to_string(SMLA_VERSION_PATCH),
            smla_version());
  EXPECT_STREQ(smla_status_string(SMLA_STATUS_OK), "ok");
  EXPECT_STREQ(smla_status_string(SMLA_STATUS_INVALID_ARGUMENT), "invalid argument");
  EXPECT_STREQ(smla_status_string(SMLA_STATUS_NO_DEVICE), "no device");
  EXPECT_STREQ(smla_status_string(static_cast<smla_status_t>(99)), "unknown status");
}

// The sizes bindings check before mirroring a struct (python/smla/_lib.py): every public struct by name,
// 0 for anything else.
TEST(CApi, StructSizes) {
  EXPECT_EQ(smla_struct_size("smla_cache_layout_t"), sizeof(smla_cache_layout_t));
  EXPECT_EQ(smla_struct_size("smla_decode_shape_t"), sizeof(smla_decode_shape_t));
  EXPECT_EQ(smla_struct_size("smla_plan_options_t"), sizeof(smla_plan_options_t));
  EXPECT_EQ(smla_struct_size("smla_decode_args_t"), sizeof(smla_decode_args_t));
  EXPECT_EQ(smla_struct_size("smla_relayout_index_set_t"), sizeof(smla_relayout_index_set_t));
  EXPECT_EQ(smla_struct_size("smla_decode_args"), 0u);
  EXPECT_EQ(smla_struct_size(""), 0u);
  EXPECT_EQ(smla_struct_size(nullptr), 0u);
}

TEST(CApi, DefaultOptions) {
  smla_plan_options_t options;
  std::memset(&options, 0x5a, sizeof(options));
  smla_default_plan_options(&options);
  EXPECT_EQ(options.backend, SMLA_BACKEND_AUTO);
  EXPECT_EQ(options.device, -1);
  EXPECT_EQ(options.num_splits, 0);
  EXPECT_EQ(options.cpu_precision, SMLA_CPU_FLOAT64);
  EXPECT_EQ(options.cpu_threads, 0);
  EXPECT_EQ(options.max_shared_bytes, 0);
  EXPECT_EQ(options.sm_count, 0);
}

TEST(CApi, BackendNames) {
  smla_backend_t backend = SMLA_BACKEND_AUTO;
  ASSERT_EQ(smla_backend_from_name("cuda-ref", &backend), SMLA_STATUS_OK);
  EXPECT_EQ(backend, SMLA_BACKEND_CUDA_REF);
  EXPECT_STREQ(smla_backend_name(SMLA_BACKEND_CUDA), "cuda");
  EXPECT_EQ(smla_backend_from_name("fpga", &backend), SMLA_STATUS_INVALID_ARGUMENT);
  EXPECT_TRUE(last_error_has("auto, cpu, cuda-ref, cuda"));
  EXPECT_EQ(smla_backend_from_name(nullptr, &backend), SMLA_STATUS_INVALID_ARGUMENT);
  EXPECT_TRUE(last_error_has("name must not be NULL"));
  EXPECT_EQ(smla_resolve_backend(SMLA_BACKEND_CPU, -1, &backend), SMLA_STATUS_OK);
  EXPECT_EQ(backend, SMLA_BACKEND_CPU);
  EXPECT_EQ(smla_resolve_backend(SMLA_BACKEND_CPU, -1, nullptr), SMLA_STATUS_INVALID_ARGUMENT);
  const int available = smla_cuda_available();
  EXPECT_TRUE(available == 0 || available == 1);
}

TEST(CApi, CacheGeometry) {
  EXPECT_EQ(smla_writer_page_stride_bytes(64), 37440);
  EXPECT_EQ(smla_writer_page_stride_bytes(2), 1728);
  EXPECT_EQ(smla_writer_page_stride_bytes(0), -1);
  EXPECT_TRUE(last_error_has("page_block_size"));
  // P * 584 used to wrap for P near 2^63 (-448 came back, no error); slot ids are int32 anyway.
  EXPECT_EQ(smla_writer_page_stride_bytes(std::numeric_limits<int64_t>::max()), -1);
  EXPECT_TRUE(last_error_has("page_block_size must be in 1..2147483647"));
  EXPECT_EQ(smla_writer_page_stride_bytes(2147483647), (2147483647LL * 584 + 575) / 576 * 576);
  alignas(16) static unsigned char pool[1728];
  smla_cache_layout_t cache{pool, 2, 1728, 1};
  EXPECT_EQ(smla_validate_cache_layout(&cache), SMLA_STATUS_OK);
  cache.page_stride_bytes = 1000;
  EXPECT_EQ(smla_validate_cache_layout(&cache), SMLA_STATUS_INVALID_ARGUMENT);
  EXPECT_TRUE(last_error_has("page_stride_bytes"));
  EXPECT_EQ(smla_validate_cache_layout(nullptr), SMLA_STATUS_INVALID_ARGUMENT);
  EXPECT_TRUE(last_error_has("cache must not be NULL"));
}

TEST(CApi, PlanLifecycleAndQueries) {
  const smla_decode_shape_t shape{2, 1, 8, 128, 64};
  const smla_plan_options_t options = cpu_options();
  smla_plan_t plan = nullptr;
  ASSERT_EQ(smla_plan_create(&shape, &options, &plan), SMLA_STATUS_OK) << smla_last_error();
  ASSERT_NE(plan, nullptr);
  size_t workspace_bytes = 123;
  ASSERT_EQ(smla_plan_workspace_bytes(plan, &workspace_bytes), SMLA_STATUS_OK);
  EXPECT_EQ(workspace_bytes, 0u);
  smla_backend_t backend = SMLA_BACKEND_AUTO;
  ASSERT_EQ(smla_plan_backend(plan, &backend), SMLA_STATUS_OK);
  EXPECT_EQ(backend, SMLA_BACKEND_CPU);
  int32_t num_splits = 0;
  ASSERT_EQ(smla_plan_num_splits(plan, &num_splits), SMLA_STATUS_OK);
  EXPECT_EQ(num_splits, 1);
  const char* kernel_name = nullptr;
  ASSERT_EQ(smla_plan_kernel_name(plan, &kernel_name), SMLA_STATUS_OK);
  EXPECT_STREQ(kernel_name, "cpu");
  int32_t sm_count = -1;
  ASSERT_EQ(smla_plan_sm_count(plan, &sm_count), SMLA_STATUS_OK);
  EXPECT_EQ(sm_count, 0);  // the CPU backend has no SMs to schedule

  smla_decode_args_t args{};
  ASSERT_EQ(smla_set_contiguous_strides(plan, &args), SMLA_STATUS_OK);
  EXPECT_EQ(args.q_stride_head, 512);
  EXPECT_EQ(args.q_stride_seq, 8 * 512);
  EXPECT_EQ(args.q_stride_batch, 8 * 512);
  EXPECT_EQ(args.indices_stride_seq, 128);
  EXPECT_EQ(args.extra_indices_stride_batch, 64);
  EXPECT_EQ(args.lse_stride_seq, 8);
  EXPECT_EQ(args.lse_stride_head, 1);
  EXPECT_EQ(smla_plan_destroy(plan), SMLA_STATUS_OK);
}

TEST(CApi, FailedPlanCreateReportsStatusAndMessage) {
  const smla_decode_shape_t shape{1, 1, 0, 64, 0};
  const smla_plan_options_t options = cpu_options();
  smla_plan_t plan = reinterpret_cast<smla_plan_t>(0x1);  // must be reset to NULL on failure
  EXPECT_EQ(smla_plan_create(&shape, &options, &plan), SMLA_STATUS_INVALID_ARGUMENT);
  EXPECT_EQ(plan, nullptr);
  EXPECT_STREQ(smla_last_error(), "shape.num_heads must be in 1..128 (got 0)");
  // A later successful call keeps the message of the last failure.
  const smla_decode_shape_t good{1, 1, 8, 64, 0};
  ASSERT_EQ(smla_plan_create(&good, &options, &plan), SMLA_STATUS_OK);
  EXPECT_STREQ(smla_last_error(), "shape.num_heads must be in 1..128 (got 0)");
  smla_plan_destroy(plan);
}

TEST(CApi, NullHandlesAndOutParameters) {
  const smla_decode_shape_t shape{1, 1, 8, 64, 0};
  const smla_plan_options_t options = cpu_options();
  smla_plan_t plan = nullptr;
  EXPECT_EQ(smla_plan_create(&shape, &options, nullptr), SMLA_STATUS_INVALID_ARGUMENT);
  EXPECT_TRUE(last_error_has("plan must not be NULL"));
  EXPECT_EQ(smla_plan_create(nullptr, &options, &plan), SMLA_STATUS_INVALID_ARGUMENT);
  EXPECT_TRUE(last_error_has("shape must not be NULL"));
  EXPECT_EQ(smla_plan_create(&shape, nullptr, &plan), SMLA_STATUS_INVALID_ARGUMENT);
  EXPECT_TRUE(last_error_has("options must not be NULL"));

  size_t bytes = 0;
  smla_backend_t backend;
  int32_t splits = 0;
  smla_decode_args_t args{};
  EXPECT_EQ(smla_plan_destroy(nullptr), SMLA_STATUS_INVALID_ARGUMENT);
  EXPECT_TRUE(last_error_has("plan must not be NULL"));
  EXPECT_EQ(smla_plan_workspace_bytes(nullptr, &bytes), SMLA_STATUS_INVALID_ARGUMENT);
  EXPECT_EQ(smla_plan_backend(nullptr, &backend), SMLA_STATUS_INVALID_ARGUMENT);
  EXPECT_EQ(smla_plan_num_splits(nullptr, &splits), SMLA_STATUS_INVALID_ARGUMENT);
  const char* kernel_name = nullptr;
  EXPECT_EQ(smla_plan_kernel_name(nullptr, &kernel_name), SMLA_STATUS_INVALID_ARGUMENT);
  int32_t sm_count = 0;
  EXPECT_EQ(smla_plan_sm_count(nullptr, &sm_count), SMLA_STATUS_INVALID_ARGUMENT);
  EXPECT_EQ(smla_set_contiguous_strides(nullptr, &args), SMLA_STATUS_INVALID_ARGUMENT);
  EXPECT_EQ(smla_decode_run(nullptr, &args, nullptr, 0, nullptr), SMLA_STATUS_INVALID_ARGUMENT);
  EXPECT_TRUE(last_error_has("plan must not be NULL"));

  ASSERT_EQ(smla_plan_create(&shape, &options, &plan), SMLA_STATUS_OK);
  EXPECT_EQ(smla_plan_workspace_bytes(plan, nullptr), SMLA_STATUS_INVALID_ARGUMENT);
  EXPECT_TRUE(last_error_has("bytes must not be NULL"));
  EXPECT_EQ(smla_plan_backend(plan, nullptr), SMLA_STATUS_INVALID_ARGUMENT);
  EXPECT_TRUE(last_error_has("backend must not be NULL"));
  EXPECT_EQ(smla_plan_num_splits(plan, nullptr), SMLA_STATUS_INVALID_ARGUMENT);
  EXPECT_TRUE(last_error_has("num_splits must not be NULL"));
  EXPECT_EQ(smla_plan_kernel_name(plan, nullptr), SMLA_STATUS_INVALID_ARGUMENT);
  EXPECT_TRUE(last_error_has("name must not be NULL"));
  EXPECT_EQ(smla_plan_sm_count(plan, nullptr), SMLA_STATUS_INVALID_ARGUMENT);
  EXPECT_TRUE(last_error_has("sm_count must not be NULL"));
  EXPECT_EQ(smla_set_contiguous_strides(plan, nullptr), SMLA_STATUS_INVALID_ARGUMENT);
  EXPECT_TRUE(last_error_has("args must not be NULL"));
  EXPECT_EQ(smla_decode_run(plan, nullptr, nullptr, 0, nullptr), SMLA_STATUS_INVALID_ARGUMENT);
  EXPECT_TRUE(last_error_has("args must not be NULL"));
  // A decode call with zeroed args fails validation with a named argument, not a crash.
  EXPECT_EQ(smla_decode_run(plan, &args, nullptr, 0, nullptr), SMLA_STATUS_INVALID_ARGUMENT);
  EXPECT_TRUE(last_error_has("args.q must not be null"));
  smla_plan_destroy(plan);

  EXPECT_EQ(smla_append(nullptr, nullptr, 0, 0, nullptr, 0, nullptr), SMLA_STATUS_INVALID_ARGUMENT);
  EXPECT_TRUE(last_error_has("cache must not be NULL"));
  EXPECT_EQ(smla_dequantize_gather(nullptr, nullptr, 0, nullptr), SMLA_STATUS_INVALID_ARGUMENT);
  EXPECT_EQ(smla_relayout_workspace_bytes(nullptr), -1);
  EXPECT_TRUE(last_error_has("source must not be NULL"));
  smla_cache_layout_t cache{};
  EXPECT_EQ(smla_relayout_pages(nullptr, &cache, nullptr, 0, nullptr, 0, nullptr),
            SMLA_STATUS_INVALID_ARGUMENT);
  EXPECT_EQ(smla_relayout_pages(&cache, nullptr, nullptr, 0, nullptr, 0, nullptr),
            SMLA_STATUS_INVALID_ARGUMENT);
  EXPECT_TRUE(last_error_has("destination must not be NULL"));
  EXPECT_EQ(smla_relayout_pages(&cache, &cache, nullptr, 2, nullptr, 0, nullptr),
            SMLA_STATUS_INVALID_ARGUMENT);
  EXPECT_TRUE(last_error_has("index_sets"));
  EXPECT_EQ(smla_relayout_pages(&cache, &cache, nullptr, -1, nullptr, 0, nullptr),
            SMLA_STATUS_INVALID_ARGUMENT);
  EXPECT_TRUE(last_error_has("num_index_sets"));
}

TEST(CApi, RelayoutChecksItsArgumentsBeforeReadingThem) {
  // The workspace size of a source relayout_pages would reject is an error, not a number.
  const smla_cache_layout_t not_p256{reinterpret_cast<void*>(0x100000), 7, 16, 5};
  EXPECT_EQ(smla_relayout_workspace_bytes(&not_p256), -1);
  EXPECT_TRUE(last_error_has("source.page_stride_bytes"));
  const smla_cache_layout_t p64{reinterpret_cast<void*>(0x100000), 64, 37440, 5};
  EXPECT_EQ(smla_relayout_workspace_bytes(&p64), -1);
  EXPECT_TRUE(last_error_has("source.page_block_size must be 256"));
  const smla_cache_layout_t p256{reinterpret_cast<void*>(0x100000), 256, 149760, 5};
  EXPECT_EQ(smla_relayout_workspace_bytes(&p256), 20);  // one mark byte per 64-token page
  // num_index_sets is checked before the sets are copied: one set and a count of 20,000,000 used to read
  // (and crash) far past the caller's array.
  const int32_t indices[1] = {0};
  const smla_relayout_index_set_t one_set{indices, 1, 1, 1};
  EXPECT_EQ(smla_relayout_pages(&p256, &p256, &one_set, 20000000, nullptr, 0, nullptr),
            SMLA_STATUS_INVALID_ARGUMENT);
  EXPECT_TRUE(last_error_has("num_index_sets must be in [0, 8] (got 20000000)"));
  EXPECT_EQ(smla_relayout_pages(&p256, &p256, &one_set, 9, nullptr, 0, nullptr),
            SMLA_STATUS_INVALID_ARGUMENT);
  EXPECT_TRUE(last_error_has("num_index_sets must be in [0, 8] (got 9)"));
}

TEST(CApi, DeviceWorkspaceDestroyRejectsANegativeDevice) {
  char message[256] = {};
  int placeholder = 0;
  EXPECT_EQ(smla_device_workspace_destroy(-1, &placeholder, message, sizeof(message)),
            SMLA_STATUS_INVALID_ARGUMENT);
  EXPECT_NE(std::string(message).find("device must be >= 0 (got -1)"), std::string::npos) << message;
  EXPECT_EQ(smla_device_workspace_destroy(-1, nullptr, message, sizeof(message)),
            SMLA_STATUS_OK);  // nothing to free
}

TEST(CApi, DeviceWorkspaceCreateRejectsBadArgumentsBeforeTouchingADevice) {
  char message[256] = {};
  void* workspace = reinterpret_cast<void*>(0x1);  // create clears it before any check that can fail
  EXPECT_EQ(smla_device_workspace_create(-1, 16, &workspace, message, sizeof(message)),
            SMLA_STATUS_INVALID_ARGUMENT);
  EXPECT_NE(std::string(message).find("device must be >= 0 (got -1)"), std::string::npos) << message;
  EXPECT_EQ(workspace, nullptr);
  EXPECT_EQ(smla_device_workspace_create(0, 16, nullptr, message, sizeof(message)),
            SMLA_STATUS_INVALID_ARGUMENT);
  EXPECT_NE(std::string(message).find("workspace must not be NULL"), std::string::npos) << message;
}

TEST(CApi, AppendRejectsUnknownMemorySpace) {
  alignas(16) static unsigned char pool[1728];
  const smla_cache_layout_t cache{pool, 2, 1728, 1};
  std::vector<uint16_t> token(512, 0);
  const int32_t slot = 0;
  EXPECT_EQ(smla_append(&cache, token.data(), 1, 512, &slot, 2, nullptr), SMLA_STATUS_INVALID_ARGUMENT);
  EXPECT_TRUE(last_error_has("memory_space must be 0 (host) or 1 (CUDA device) (got 2)"));
  EXPECT_EQ(smla_append(&cache, token.data(), 1, 512, &slot, -1, nullptr), SMLA_STATUS_INVALID_ARGUMENT);
  // A host append of a zero token then gathers back as zeros.
  ASSERT_EQ(smla_append(&cache, token.data(), 1, 512, &slot, 0, nullptr), SMLA_STATUS_OK)
      << smla_last_error();
  std::vector<float> gathered(512, 1.f);
  ASSERT_EQ(smla_dequantize_gather(&cache, &slot, 1, gathered.data()), SMLA_STATUS_OK) << smla_last_error();
  for (float value : gathered) EXPECT_EQ(value, 0.f);
}

TEST(CApi, LastErrorIsThreadLocal) {
  std::string first_message, second_message;
  std::thread first([&] {
    smla_backend_t backend;
    EXPECT_EQ(smla_backend_from_name("first-bad-name", &backend), SMLA_STATUS_INVALID_ARGUMENT);
    first_message = smla_last_error();
  });
  first.join();
  std::thread second([&] {
    // This thread has not failed yet: its message is empty, not the other thread's.
    EXPECT_STREQ(smla_last_error(), "");
    const smla_decode_shape_t shape{1, 0, 8, 64, 0};
    const smla_plan_options_t options = cpu_options();
    smla_plan_t plan;
    EXPECT_EQ(smla_plan_create(&shape, &options, &plan), SMLA_STATUS_INVALID_ARGUMENT);
    second_message = smla_last_error();
  });
  second.join();
  EXPECT_NE(first_message.find("first-bad-name"), std::string::npos) << first_message;
  EXPECT_NE(second_message.find("shape.seq_q"), std::string::npos) << second_message;

  // Concurrently: each thread keeps seeing its own failure while the other fails differently.
  std::string concurrent[2];
  auto provoke = [&](int which) {
    for (int i = 0; i < 200; ++i) {
      smla_backend_t backend;
      const std::string name = which == 0 ? "alpha" : "beta";
      smla_backend_from_name(name.c_str(), &backend);
      const std::string seen = smla_last_error();
      if (seen.find(name) == std::string::npos) {
        concurrent[which] = seen;
        return;
      }
    }
    concurrent[which] = "own";
  };
  std::thread a(provoke, 0), b(provoke, 1);
  a.join();
  b.join();
  EXPECT_EQ(concurrent[0], "own");
  EXPECT_EQ(concurrent[1], "own");
}

TEST(CApi, CpuDecodeMatchesTheCppApiBitwise) {
  smla::test::ProblemConfig config;
  config.batch = 2;
  config.seq_q = 2;
  config.num_heads = 8;
  config.topk = 128;
  config.extra_topk = 64;
  config.extra_page_block_size = 2;
  smla::test::Rng rng = smla::test::Rng::ForTest();
  const smla::test::DecodeProblem problem = smla::test::make_problem(rng, config);
  const size_t rows = static_cast<size_t>(config.batch) * config.seq_q;
  const size_t out_elements = rows * config.num_heads * 512;
  const size_t lse_elements = rows * config.num_heads;
  const float nan = std::numeric_limits<float>::quiet_NaN();

  std::vector<uint16_t> out_cpp(out_elements, smla::test::kPoisonBf16),
      out_c(out_elements, smla::test::kPoisonBf16);
  std::vector<float> lse_cpp(lse_elements, nan), lse_c(lse_elements, nan);

  smla::PlanOptions cpp_options = smla::default_plan_options();
  cpp_options.backend = SMLA_BACKEND_CPU;
  smla::Plan cpp_plan;
  ASSERT_TRUE(smla::make_plan(problem.shape, cpp_options, &cpp_plan).ok());
  const smla::Status cpp_status =
      smla::run(cpp_plan, problem.host_args(out_cpp.data(), lse_cpp.data()), nullptr, 0, nullptr);
  ASSERT_TRUE(cpp_status.ok()) << cpp_status.message();

  const smla_plan_options_t options = cpu_options();
  smla_plan_t plan = nullptr;
  ASSERT_EQ(smla_plan_create(&problem.shape, &options, &plan), SMLA_STATUS_OK) << smla_last_error();
  smla_decode_args_t args = problem.host_args(out_c.data(), lse_c.data());
  ASSERT_EQ(smla_decode_run(plan, &args, nullptr, 0, nullptr), SMLA_STATUS_OK) << smla_last_error();
  smla_plan_destroy(plan);

  EXPECT_EQ(std::memcmp(out_c.data(), out_cpp.data(), out_elements * sizeof(uint16_t)), 0);
  EXPECT_EQ(std::memcmp(lse_c.data(), lse_cpp.data(), lse_elements * sizeof(float)), 0);
  size_t poisoned = 0;
  for (uint16_t value : out_c) poisoned += value == smla::test::kPoisonBf16;
  EXPECT_EQ(poisoned, 0u);
}

}  // namespace
