// Thread safety of the cpu backend: 4 host threads run independent plans (different shapes, precisions
// and thread counts) concurrently, several times each, and every result must equal bitwise the result
// of the same plan run sequentially beforehand. Shared mutable state in the library (a static scratch
// buffer, a cached plan) would show up as a mismatch or, under TSan/ASan, as a report.
//
// Worker threads do not use gtest assertions; they record failures as text, checked on the main thread.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/test_support.h"
#include "smla/decode.h"

namespace smla {
namespace {

constexpr int kThreads = 4;
constexpr int kIterations = 5;

struct Outputs {
  std::vector<uint16_t> out;
  std::vector<float> lse;
  bool bitwise_equal(const Outputs& other) const {
    return out == other.out && lse.size() == other.lse.size() &&
           std::memcmp(lse.data(), other.lse.data(), lse.size() * sizeof(float)) == 0;
  }
};

// One worker's plan and problem.
struct Job {
  std::unique_ptr<test::DecodeProblem> problem;
  Plan plan;
  Outputs sequential;
  std::string failure;
};

test::ProblemConfig job_config(int job) {
  test::ProblemConfig config;
  config.batch = 2 + job;
  config.seq_q = 1 + job % 2;
  config.num_heads = 8 << (job % 3);
  config.topk = 64 * (1 + job % 2);
  config.extra_topk = job % 2 == 0 ? 128 : 0;
  config.main_page_block_size = job == 3 ? 61 : 64;
  config.extra_page_block_size = 2;
  config.lengths_per_query = job % 2 == 1;
  return config;
}

std::string run_job(const Job& job, Outputs* outputs) {
  const DecodeShape& shape = job.problem->shape;
  const size_t lse_elements = static_cast<size_t>(shape.batch) * shape.seq_q * shape.num_heads;
  outputs->out.assign(lse_elements * kHeadDim, test::kPoisonBf16);
  outputs->lse.assign(lse_elements, 0.f);
  const DecodeArgs args = job.problem->host_args(outputs->out.data(), outputs->lse.data());
  const Status status = run(job.plan, args, nullptr, 0, nullptr);
  return status.ok() ? std::string() : status.message();
}

TEST(ThreadsCpu, ConcurrentPlansMatchSequentialResults) {
  std::vector<Job> jobs(kThreads);
  for (int i = 0; i < kThreads; ++i) {
    test::Rng rng = test::Rng::ForTest(static_cast<uint64_t>(500 + i));
    jobs[i].problem = std::make_unique<test::DecodeProblem>(test::make_problem(rng, job_config(i)));
    PlanOptions options = default_plan_options();
    options.backend = SMLA_BACKEND_CPU;
    options.cpu_precision = i % 2 == 0 ? SMLA_CPU_FLOAT64 : SMLA_CPU_FLOAT32;
    options.cpu_threads = i == 0 ? 0 : i;  // 0 = the backend's default
    const Status status = make_plan(jobs[i].problem->shape, options, &jobs[i].plan);
    ASSERT_TRUE(status.ok()) << status.message();
    ASSERT_EQ(run_job(jobs[i], &jobs[i].sequential), "");
  }

  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&job = jobs[i], i] {
      for (int iteration = 0; iteration < kIterations && job.failure.empty(); ++iteration) {
        Outputs concurrent;
        const std::string failure = run_job(job, &concurrent);
        if (!failure.empty()) {
          job.failure = "thread " + std::to_string(i) + ": run failed: " + failure;
        } else if (!concurrent.bitwise_equal(job.sequential)) {
          job.failure = "thread " + std::to_string(i) + " iteration " + std::to_string(iteration) +
                        ": result differs from the sequential run";
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  int failures = 0;
  for (const Job& job : jobs) {
    if (!job.failure.empty()) ++failures;
    EXPECT_EQ(job.failure, "");
  }
  std::printf("cpu threads: %d threads x %d runs of independent plans: %s\n", kThreads, kIterations,
              failures == 0 ? "all bitwise equal to the sequential runs" : "MISMATCH");
}

}  // namespace
}  // namespace smla
