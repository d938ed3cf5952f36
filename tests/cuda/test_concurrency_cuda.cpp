// Concurrent decodes: 4 host threads, each driving 4 streams, every stream with its own plan, workspace
// and problem. Runs cuda-ref (and the tensor-core cuda backend when it can be planned) and checks every
// result against its float64 reference with the bf16-MMA tolerance of spec section 8. A data race on a
// shared buffer, a workspace shared by mistake or state kept across calls would show up as a mismatch.
//
// Worker threads do not use gtest assertions; they record failures as text, checked on the main thread.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/device_buffers.h"
#include "common/test_support.h"
#include "smla/cache.h"
#include "smla/decode.h"

namespace smla {
namespace {

constexpr int kThreads = 4;
constexpr int kStreamsPerThread = 4;
constexpr int kIterations = 3;

// The test's size: threads, streams per thread, iterations. Under the sanitizers (SMLA_TEST_QUICK=1) one
// iteration over 2 streams per thread: racecheck serializes every launch and instruments each
// shared-memory access, and the full test did not finish in 410 s there. SMLA_TEST_CONCURRENCY="T,S,I"
// (each 1..16) sets all three, so that a sanitizer run can be sized or a hang narrowed down.
struct ConcurrencySize {
  int threads = kThreads;
  int streams_per_thread = kStreamsPerThread;
  int iterations = kIterations;
};

ConcurrencySize concurrency_size() {
  ConcurrencySize size;
  if (test::quick_mode()) {
    size.streams_per_thread = 2;
    size.iterations = 1;
  }
  const char* value = std::getenv("SMLA_TEST_CONCURRENCY");
  if (value == nullptr || value[0] == '\0') return size;
  int threads = 0, streams = 0, iterations = 0;
  char tail = 0;
  if (std::sscanf(value, "%d,%d,%d%c", &threads, &streams, &iterations, &tail) != 3 || threads < 1 ||
      threads > 16 || streams < 1 || streams > 16 || iterations < 1 || iterations > 16) {
    std::fprintf(stderr, "SMLA_TEST_CONCURRENCY='%s' must be T,S,I with each in 1..16; using %d,%d,%d\n",
                 value, size.threads, size.streams_per_thread, size.iterations);
    return size;
  }
  return {threads, streams, iterations};
}

const ConcurrencySize& test_size() {
  static const ConcurrencySize size = concurrency_size();
  return size;
}
int thread_count() { return test_size().threads; }
int streams_per_thread() { return test_size().streams_per_thread; }
int iterations() { return test_size().iterations; }

// One decode stream: problem, reference, device buffers, plan, workspace and stream of its own.
struct Job {
  test::ProblemConfig config;
  Backend backend = SMLA_BACKEND_CUDA_REF;
  std::unique_ptr<test::DecodeProblem> problem;
  test::Reference reference;
  test::DeviceProblem device;
  test::DevicePlan device_plan;
  cudaStream_t stream = nullptr;
  std::vector<std::string> lines;     // one per checked iteration
  std::vector<std::string> failures;  // empty when every iteration matched
};

std::string prepare_job(Job* job) {
  RETURN_IF_FAILED(test::upload_problem(*job->problem, &job->device));
  // Clears the workspace and waits for the device, so the job's non-blocking stream sees the uploads.
  RETURN_IF_FAILED(test::make_device_plan(job->problem->shape, job->backend, &job->device_plan));
  return test::cuda_failure(cudaStreamCreateWithFlags(&job->stream, cudaStreamNonBlocking), "create stream");
}

std::string enqueue_run(Job* job) {
  RETURN_IF_FAILED(test::poison_outputs(job->device, job->stream));
  const Plan& plan = job->device_plan.plan;
  const Status status =
      run(plan, job->device.args, job->device_plan.workspace.as<void>(), plan.workspace_bytes(), job->stream);
  return status.ok() ? std::string() : "smla::run: " + status.message();
}

// Downloads on the job's own stream (not test::download_outputs, whose device-wide sync would make the
// threads' streams wait for each other).
std::string check_outputs(Job* job, int iteration) {
  RETURN_IF_FAILED(test::cuda_failure(cudaStreamSynchronize(job->stream), "synchronize stream"));
  const DecodeArgs& args = job->device.args;
  std::vector<uint16_t> out(job->device.out_elements);
  std::vector<float> lse(job->device.lse_elements);
  RETURN_IF_FAILED(test::cuda_failure(cudaMemcpyAsync(out.data(), args.out, out.size() * sizeof(uint16_t),
                                                      cudaMemcpyDeviceToHost, job->stream),
                                      "download out"));
  RETURN_IF_FAILED(test::cuda_failure(
      cudaMemcpyAsync(lse.data(), args.lse, lse.size() * sizeof(float), cudaMemcpyDeviceToHost, job->stream),
      "download lse"));
  RETURN_IF_FAILED(test::cuda_failure(cudaStreamSynchronize(job->stream), "synchronize downloads"));
  const test::Comparison comparison = test::compare_to_reference(job->reference, out.data(), lse.data());
  char line[256];
  std::snprintf(line, sizeof(line),
                "%-8s b=%d s_q=%d h=%-3d topk=%d extra=%-4d iteration %d: max_abs=%.3g "
                "cos_diff=%.3g %s",
                backend_name(job->backend), job->config.batch, job->config.seq_q, job->config.num_heads,
                job->config.topk, job->config.extra_topk, iteration, comparison.max_abs_error,
                comparison.cosine_difference, comparison.ok ? "ok" : "FAIL");
  job->lines.push_back(line);
  return comparison.ok ? std::string() : std::string(line) + "\n" + comparison.report;
}

// One host thread: prepares its jobs, then for each iteration enqueues all of them before waiting, so
// its streams overlap with each other and with the other threads' streams.
void drive_jobs(std::vector<Job*> jobs) {
  for (Job* job : jobs) {
    const std::string failure = prepare_job(job);
    if (!failure.empty()) {
      job->failures.push_back("prepare: " + failure);
      return;
    }
  }
  for (int iteration = 0; iteration < iterations(); ++iteration) {
    for (Job* job : jobs) {
      const std::string failure = enqueue_run(job);
      if (!failure.empty()) job->failures.push_back(failure);
    }
    for (Job* job : jobs) {
      const std::string failure = check_outputs(job, iteration);
      if (!failure.empty()) job->failures.push_back(failure);
    }
  }
  for (Job* job : jobs) cudaStreamDestroy(job->stream);
}

// Whether the tensor-core backend can be planned here (it may be absent or not support the device).
bool cuda_backend_plannable(const DecodeShape& shape, std::string* reason) {
  PlanOptions options = default_plan_options();
  options.backend = SMLA_BACKEND_CUDA;
  Plan plan;
  const Status status = make_plan(shape, options, &plan);
  if (!status.ok()) *reason = status.message();
  return status.ok();
}

test::ProblemConfig job_config(int index) {
  test::ProblemConfig config;
  const int heads[] = {8, 16, 64, 128};
  config.batch = 1 + index % 4;
  config.seq_q = 1 + (index / 4) % 2;
  config.num_heads = heads[(index / 2) % 4];
  if (config.num_heads == 128) config.batch = 1;
  config.topk = 128;
  config.extra_topk = index % 3 == 0 ? 0 : 512;
  config.main_page_block_size = index % 2 == 0 ? 64 : 256;
  config.extra_page_block_size = index % 4 < 2 ? 2 : 64;
  config.lengths_per_query = index % 5 == 0;
  return config;
}

TEST(ConcurrencyCuda, ThreadsAndStreamsEachWithOwnPlan) {
  SMLA_SKIP_WITHOUT_CUDA();
  const int jobs_count = thread_count() * streams_per_thread();
  std::string cuda_reason;
  const bool use_cuda_backend = cuda_backend_plannable(DecodeShape{2, 1, 16, 128, 512}, &cuda_reason);
  std::printf("concurrency: %d threads x %d streams, %d iterations; tensor-core cuda backend %s%s\n",
              thread_count(), streams_per_thread(), iterations(),
              use_cuda_backend ? "included" : "not plannable, cuda-ref only: ",
              use_cuda_backend ? "" : cuda_reason.c_str());

  std::vector<std::unique_ptr<Job>> jobs;
  for (int index = 0; index < jobs_count; ++index) {
    auto job = std::make_unique<Job>();
    job->config = job_config(index);
    // Half of each thread's streams use the tensor-core backend when it is available.
    job->backend = use_cuda_backend && index % 2 == 1 ? SMLA_BACKEND_CUDA : SMLA_BACKEND_CUDA_REF;
    test::Rng rng = test::Rng::ForTest(static_cast<uint64_t>(index));
    job->problem = std::make_unique<test::DecodeProblem>(test::make_problem(rng, job->config));
    job->reference = test::reference_decode(*job->problem);
    jobs.push_back(std::move(job));
  }

  std::vector<std::thread> threads;
  for (int t = 0; t < thread_count(); ++t) {
    std::vector<Job*> own;
    for (int s = 0; s < streams_per_thread(); ++s)
      own.push_back(jobs[static_cast<size_t>(t * streams_per_thread() + s)].get());
    threads.emplace_back(drive_jobs, own);
  }
  for (std::thread& thread : threads) thread.join();

  for (size_t index = 0; index < jobs.size(); ++index) {
    const Job& job = *jobs[index];
    for (const std::string& line : job.lines) std::printf("concurrency job %2zu %s\n", index, line.c_str());
    EXPECT_EQ(job.lines.size(), static_cast<size_t>(iterations())) << "job " << index << " did not finish";
    for (const std::string& failure : job.failures) ADD_FAILURE() << "job " << index << ": " << failure;
    if (job.failures.empty()) EXPECT_EQ(test::guards_intact(job.device), "") << "job " << index;
  }
}

}  // namespace
}  // namespace smla
