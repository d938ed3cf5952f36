// The cpu backend at the host's limits: a worker thread that cannot be created leaves its share to the
// others, and host memory that runs out inside a worker comes back as a status. Neither may end the
// process (an exception leaving a std::thread calls std::terminate). Each case runs in a child process
// (a gtest death test) under an address-space limit (RLIMIT_AS, which binds root too).
#include <gtest/gtest.h>
#include <pthread.h>
#include <sys/resource.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "common/test_support.h"
#include "smla/decode.h"

namespace smla {
namespace {

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kAddressSanitizer = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kAddressSanitizer = true;
#else
constexpr bool kAddressSanitizer = false;
#endif
#else
constexpr bool kAddressSanitizer = false;
#endif

// Why an address-space limit cannot be used here, or empty. ASan reserves terabytes of shadow memory, and
// valgrind runs the process in its own address space, so a limit would fail them before the library.
std::string limit_unusable_reason() {
  if (kAddressSanitizer) return "AddressSanitizer reserves its shadow memory: RLIMIT_AS cannot apply";
  const char* preload = std::getenv("LD_PRELOAD");
  if (preload != nullptr && (std::strstr(preload, "valgrind") || std::strstr(preload, "vgpreload"))) {
    return "running under valgrind: RLIMIT_AS cannot apply";
  }
  return "";
}

// Bytes of address space this process maps now (/proc/self/statm: size in pages).
size_t mapped_bytes() {
  FILE* file = std::fopen("/proc/self/statm", "r");
  if (file == nullptr) return 0;
  unsigned long pages = 0;
  const int read = std::fscanf(file, "%lu", &pages);
  std::fclose(file);
  return read == 1 ? pages * 4096ul : 0;
}

// Child-side: caps the address space `headroom` bytes above what is mapped now.
void limit_address_space(size_t headroom) {
  const size_t current = mapped_bytes();
  if (current == 0) std::_Exit(90);
  const rlimit limit{current + headroom, current + headroom};
  if (setrlimit(RLIMIT_AS, &limit) != 0) std::_Exit(91);
}

// Exit codes of the child: what the run returned.
constexpr int kRanAndMatched = 0;
constexpr int kRanButDiffered = 1;
constexpr int kOutOfHostMemoryStatus = 3;
constexpr int kOtherStatus = 4;

int exit_code_of(const Status& status) {
  if (status.ok()) return kRanAndMatched;
  const bool out_of_memory = status.code() == SMLA_STATUS_INTERNAL &&
                             status.message().find("out of host memory") != std::string::npos;
  return out_of_memory ? kOutOfHostMemoryStatus : kOtherStatus;
}

PlanOptions cpu_options(int threads) {
  PlanOptions options = default_plan_options();
  options.backend = SMLA_BACKEND_CPU;
  options.cpu_threads = threads;
  return options;
}

// Threads of 64 MB stacks under 160 MB of address space: two can be created, the third and later cannot,
// and 32 MB stay for the work (with 8 MB stacks the threads took all the room, and then the workers' own
// allocations failed now and then: a status, not the case this test is for). The run must finish, with
// the very outputs of a one-thread run (the work split does not change a bit).
TEST(CpuBackendLimits, ThreadsThatCannotStartLeaveTheirWorkToTheOthers) {
  const std::string reason = limit_unusable_reason();
  if (!reason.empty()) GTEST_SKIP() << reason;
  test::Rng rng = test::Rng::ForTest();
  test::ProblemConfig config = test::problem_config(16, 1, 32, 128, 64, 64, 2);
  const test::DecodeProblem problem = test::make_problem(rng, config);
  const size_t elements = static_cast<size_t>(16) * 32;
  std::vector<uint16_t> expected_out(elements * kHeadDim), out(elements * kHeadDim, test::kPoisonBf16);
  std::vector<float> expected_lse(elements), lse(elements);
  Plan one_thread, many_threads;
  ASSERT_TRUE(make_plan(problem.shape, cpu_options(1), &one_thread).ok());
  ASSERT_TRUE(make_plan(problem.shape, cpu_options(1024), &many_threads).ok());
  ASSERT_TRUE(
      run(one_thread, problem.host_args(expected_out.data(), expected_lse.data()), nullptr, 0, nullptr).ok());
  EXPECT_EXIT(
      {
        pthread_attr_t attributes;
        if (pthread_attr_init(&attributes) != 0 || pthread_attr_setstacksize(&attributes, 64ul << 20) != 0 ||
            pthread_setattr_default_np(&attributes) != 0) {
          std::_Exit(92);
        }
        limit_address_space(160ul << 20);
        const Status status =
            run(many_threads, problem.host_args(out.data(), lse.data()), nullptr, 0, nullptr);
        const bool same =
            out == expected_out && std::memcmp(lse.data(), expected_lse.data(), 4 * elements) == 0;
        std::_Exit(status.ok() && !same ? kRanButDiffered : exit_code_of(status));
      },
      ::testing::ExitedWithCode(kRanAndMatched), "");
}

// A query row of 2^20 entries needs 2 GB of dequantized tokens in its worker: under a 512 MB limit the
// allocation fails, on the calling thread (1 thread) and in a worker thread (4), and run() says so.
TEST(CpuBackendLimits, RunningOutOfHostMemoryIsAStatus) {
  const std::string reason = limit_unusable_reason();
  if (!reason.empty()) GTEST_SKIP() << reason;
  test::Rng rng = test::Rng::ForTest();
  constexpr int kBatch = 4, kHeads = 8, kWidth = 1 << 20;
  test::HostCache cache = test::make_host_cache(64, 1);
  std::vector<int32_t> slots(64);
  for (int i = 0; i < 64; ++i) slots[i] = i;
  test::fill_random_tokens(cache, rng, slots);
  std::vector<int32_t> indices(static_cast<size_t>(kBatch) * kWidth);
  for (size_t i = 0; i < indices.size(); ++i) indices[i] = static_cast<int32_t>(i % 64);  // repeats count
  const std::vector<uint16_t> q = test::random_bf16(rng, static_cast<size_t>(kBatch) * kHeads * kHeadDim);
  std::vector<uint16_t> out(static_cast<size_t>(kBatch) * kHeads * kHeadDim);
  std::vector<float> lse(static_cast<size_t>(kBatch) * kHeads);
  const DecodeShape shape{kBatch, 1, kHeads, kWidth, 0};
  DecodeArgs args{};
  args.q = q.data();
  args.main_cache = cache.layout;
  args.indices = indices.data();
  args.softmax_scale = 0.04419417382415922f;
  args.out = out.data();
  args.lse = lse.data();
  set_contiguous_strides(shape, &args);
  for (const int threads : {1, 4}) {
    SCOPED_TRACE("cpu_threads " + std::to_string(threads));
    Plan plan;
    ASSERT_TRUE(make_plan(shape, cpu_options(threads), &plan).ok());
    EXPECT_EXIT(
        {
          limit_address_space(512ul << 20);
          std::_Exit(exit_code_of(run(plan, args, nullptr, 0, nullptr)));
        },
        ::testing::ExitedWithCode(kOutOfHostMemoryStatus), "");
  }
}

}  // namespace
}  // namespace smla
