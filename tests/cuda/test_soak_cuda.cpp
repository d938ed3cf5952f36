// Soak: smla::run (cuda backend) captured once in a CUDA graph and replayed 100,000 times while indices
// and lengths change on the device between replays (a cudaMemcpyAsync from one of several precomputed
// index/length sets, on the same stream, in the loop). Every 10,000th replay is checked against the
// float64 reference of its set (bf16-MMA rule of spec section 8) and bitwise against the first check of
// the same set; device memory in use must not grow and the device error counter must stay 0.
// SMLA_TEST_QUICK=1 (sanitizer runs) cuts the replays to 200, checked every 50. s_q = 1, so the
// lengths tensors ([b]) have one entry per query row.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "common/device_buffers.h"
#include "common/test_support.h"
#include "smla/decode.h"

namespace smla {
namespace {

constexpr int kIndexSets = 7;  // coprime with the check interval, so the checks visit every set
// Allowed drop of free device memory over the loop: the driver may settle small internal pools, a leak
// per replay (even 64 bytes x 100,000) would exceed it.
constexpr size_t kMemoryToleranceBytes = 4u << 20;

// The index lists and lengths of one replay, packed as [indices | extra_indices | topk_length |
// extra_topk_length] so one copy switches all four.
struct IndexSet {
  std::vector<int32_t> indices, extra_indices, topk_length, extra_topk_length;
  std::vector<int32_t> packed() const {
    std::vector<int32_t> all = indices;
    all.insert(all.end(), extra_indices.begin(), extra_indices.end());
    all.insert(all.end(), topk_length.begin(), topk_length.end());
    all.insert(all.end(), extra_topk_length.begin(), extra_topk_length.end());
    return all;
  }
};

// Slots holding tokens: the in-range entries of the valid prefixes.
std::vector<int32_t> filled_slots(const std::vector<int32_t>& indices, const std::vector<int32_t>& lengths,
                                  int width, int64_t num_slots) {
  std::vector<int32_t> slots;
  for (size_t row = 0; row < lengths.size(); ++row) {
    for (int32_t j = 0; j < lengths[row] && j < width; ++j) {
      const int32_t slot = indices[row * static_cast<size_t>(width) + static_cast<size_t>(j)];
      if (slot >= 0 && slot < num_slots) slots.push_back(slot);
    }
  }
  return slots;
}

// New lengths (0..width) and indices: valid prefixes from the filled slots (some -1), garbage past them
// (-1, INT32_MAX, ids past the pool) that a correct decode never reads and never counts.
void random_list(test::Rng& rng, const std::vector<int32_t>& slots, int width, int64_t num_slots,
                 std::vector<int32_t>* indices, std::vector<int32_t>* lengths) {
  for (auto& length : *lengths) length = static_cast<int32_t>(rng.uniform_int(0, width));
  for (size_t row = 0; row < lengths->size(); ++row) {
    for (int32_t j = 0; j < width; ++j) {
      int32_t& index = (*indices)[row * static_cast<size_t>(width) + static_cast<size_t>(j)];
      if (j < (*lengths)[row]) {
        index = rng.uniform01() < 0.1
                    ? -1
                    : slots[static_cast<size_t>(rng.uniform_int(0, static_cast<int64_t>(slots.size()) - 1))];
      } else {
        const int64_t choice = rng.uniform_int(0, 2);
        index = choice == 0 ? -1
                            : (choice == 1 ? std::numeric_limits<int32_t>::max()
                                           : static_cast<int32_t>(num_slots + rng.uniform_int(0, 999)));
      }
    }
  }
}

size_t free_device_bytes() {
  size_t free_bytes = 0, total_bytes = 0;
  EXPECT_EQ(cudaMemGetInfo(&free_bytes, &total_bytes), cudaSuccess);
  return free_bytes;
}

TEST(SoakCuda, GraphReplaysWithChangingIndicesStayCorrectAndDoNotGrowMemory) {
  SMLA_SKIP_WITHOUT_CUDA();
  const int64_t replays = test::quick_mode() ? 200 : 100000;
  const int64_t check_every = test::quick_mode() ? 50 : 10000;

  test::Rng rng = test::Rng::ForTest(7000);
  test::ProblemConfig config;
  config.batch = 4;
  config.seq_q = 1;
  config.num_heads = 16;
  config.topk = 128;
  config.extra_topk = 512;
  config.main_page_block_size = 64;
  config.extra_page_block_size = 64;
  config.full_lengths = true;  // the first problem fills as many slots as possible
  test::DecodeProblem problem = test::make_problem(rng, config);

  test::DevicePlan device_plan;
  SMLA_DEVICE_PLAN_OR_SKIP(problem.shape, SMLA_BACKEND_CUDA, &device_plan);
  test::DeviceProblem device;
  ASSERT_EQ(test::upload_problem(problem, &device), "");

  // Index sets and their references.
  const int64_t main_slots = cache_num_slots(problem.main_cache.layout);
  const int64_t extra_slots = cache_num_slots(problem.extra_cache.layout);
  const std::vector<int32_t> main_filled =
      filled_slots(problem.indices, problem.topk_length, config.topk, main_slots);
  const std::vector<int32_t> extra_filled =
      filled_slots(problem.extra_indices, problem.extra_topk_length, config.extra_topk, extra_slots);
  ASSERT_FALSE(main_filled.empty());
  ASSERT_FALSE(extra_filled.empty());
  std::vector<IndexSet> sets(kIndexSets);
  std::vector<test::Reference> references;
  std::vector<int32_t> all_sets_packed;
  for (IndexSet& set : sets) {
    set.indices = problem.indices;
    set.extra_indices = problem.extra_indices;
    set.topk_length = problem.topk_length;
    set.extra_topk_length = problem.extra_topk_length;
    random_list(rng, main_filled, config.topk, main_slots, &set.indices, &set.topk_length);
    random_list(rng, extra_filled, config.extra_topk, extra_slots, &set.extra_indices,
                &set.extra_topk_length);
    // The set's reference: its index lists swapped into `problem` (caches, q and sinks shared, and a
    // DecodeProblem is move-only), then swapped back out.
    const auto swap_set_lists = [&problem](IndexSet& lists) {
      std::swap(problem.indices, lists.indices);
      std::swap(problem.extra_indices, lists.extra_indices);
      std::swap(problem.topk_length, lists.topk_length);
      std::swap(problem.extra_topk_length, lists.extra_topk_length);
    };
    swap_set_lists(set);
    references.push_back(test::reference_decode(problem));
    swap_set_lists(set);
    const std::vector<int32_t> packed = set.packed();
    all_sets_packed.insert(all_sets_packed.end(), packed.begin(), packed.end());
  }
  const size_t set_elements = sets[0].packed().size();
  test::DeviceBuffer sets_device, active;
  ASSERT_EQ(test::upload_vector(all_sets_packed, &sets_device, "index sets"), "");
  ASSERT_EQ(active.allocate(set_elements * sizeof(int32_t)), "");
  ASSERT_EQ(test::cuda_failure(cudaMemcpy(active.as<void>(), sets_device.as<void>(),
                                          set_elements * sizeof(int32_t), cudaMemcpyDeviceToDevice),
                               "first index set"),
            "");
  DecodeArgs args = device.args;
  int32_t* packed_base = active.as<int32_t>();
  args.indices = packed_base;
  args.extra_indices = packed_base + sets[0].indices.size();
  args.topk_length = args.extra_indices + sets[0].extra_indices.size();
  args.extra_topk_length = args.topk_length + sets[0].topk_length.size();

  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t graph_exec = nullptr;
  ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  const Status capture_status = run(device_plan.plan, args, device_plan.workspace.as<void>(),
                                    device_plan.plan.workspace_bytes(), stream);
  ASSERT_EQ(cudaStreamEndCapture(stream, &graph), cudaSuccess);
  ASSERT_TRUE(capture_status.ok()) << capture_status.message();
  ASSERT_EQ(cudaGraphInstantiate(&graph_exec, graph, 0), cudaSuccess);

  // One replay per set first, so lazy driver allocations happen before the memory baseline.
  for (int set = 0; set < kIndexSets; ++set) {
    ASSERT_EQ(cudaMemcpyAsync(active.as<void>(), sets_device.as<int32_t>() + set * set_elements,
                              set_elements * sizeof(int32_t), cudaMemcpyDeviceToDevice, stream),
              cudaSuccess);
    ASSERT_EQ(cudaGraphLaunch(graph_exec, stream), cudaSuccess);
  }
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  const size_t free_before = free_device_bytes();

  std::map<int, test::HostOutputs> first_check_of_set;
  int64_t checks = 0;
  const auto start = std::chrono::steady_clock::now();
  for (int64_t replay = 0; replay < replays; ++replay) {
    const int set = static_cast<int>(replay % kIndexSets);
    ASSERT_EQ(cudaMemcpyAsync(active.as<void>(), sets_device.as<int32_t>() + set * set_elements,
                              set_elements * sizeof(int32_t), cudaMemcpyDeviceToDevice, stream),
              cudaSuccess);
    const bool check = (replay + 1) % check_every == 0 || replay + 1 == replays;
    if (check) ASSERT_EQ(test::poison_outputs(device, stream), "");
    ASSERT_EQ(cudaGraphLaunch(graph_exec, stream), cudaSuccess);
    if (!check) continue;
    ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    test::HostOutputs outputs;
    ASSERT_EQ(test::download_outputs(device, &outputs), "");
    const test::Comparison comparison = test::compare_to_reference(references[static_cast<size_t>(set)],
                                                                   outputs.out.data(), outputs.lse.data());
    EXPECT_TRUE(comparison.ok) << "replay " << replay << " (set " << set << ")\n" << comparison.report;
    auto [first, inserted] = first_check_of_set.emplace(set, outputs);
    if (!inserted)
      EXPECT_TRUE(first->second.bitwise_equal(outputs)) << "replay " << replay << " (set " << set << ")";
    ++checks;
    if (::testing::Test::HasFailure()) break;
  }
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const size_t free_after = free_device_bytes();
  EXPECT_EQ(test::guards_intact(device), "");

  uint64_t device_errors = 0;
  const Status read_status =
      read_device_errors(device_plan.plan, device_plan.workspace.as<void>(), &device_errors, stream);
  ASSERT_TRUE(read_status.ok()) << read_status.message();
  const long long grown = static_cast<long long>(free_before) - static_cast<long long>(free_after);
  std::printf(
      "cuda soak: %lld graph replays (%d splits) in %.2f s (%.2f us each incl. the index copy), %lld "
      "checked against the reference, free device memory change %+lld bytes, device errors %llu\n",
      static_cast<long long>(replays), device_plan.plan.num_splits(), seconds, 1e6 * seconds / replays,
      static_cast<long long>(checks), -grown, static_cast<unsigned long long>(device_errors));
  EXPECT_LE(grown, static_cast<long long>(kMemoryToleranceBytes)) << "device memory in use grew";
  EXPECT_EQ(device_errors, 0u);
  EXPECT_GE(checks, replays / check_every);

  cudaGraphExecDestroy(graph_exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
}

}  // namespace
}  // namespace smla
