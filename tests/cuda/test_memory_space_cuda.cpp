// The run path's memory-space checks (src/common/memory_space.h: one driver query per pointer, nothing
// cached) and plan workspaces from smla_device_workspace_create (include/smla/device_workspace.h), on a
// CUDA device. Skipped visibly without one.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "common/device_buffers.h"
#include "common/memory_space.h"
#include "common/test_support.h"
#include "smla/decode.h"
#include "smla/device_workspace.h"

namespace smla {
namespace {

using detail::locate_pointer;
using detail::MemorySpace;

TEST(MemorySpace, LocatesEachKindOfMemory) {
  SMLA_SKIP_WITHOUT_CUDA();
  int device = -1;
  ASSERT_EQ(cudaGetDevice(&device), cudaSuccess);

  // Large enough for a mapping of its own (small cudaMallocs may share one, which outlives a free).
  constexpr size_t kLargeBytes = size_t{64} << 20;
  void* device_memory = nullptr;
  ASSERT_EQ(cudaMalloc(&device_memory, kLargeBytes), cudaSuccess);
  for (const size_t offset : {size_t{0}, size_t{4096}, kLargeBytes - 16}) {
    const detail::PointerLocation location = locate_pointer(static_cast<char*>(device_memory) + offset);
    EXPECT_EQ(location.space, MemorySpace::kDevice) << "offset " << offset;
    EXPECT_EQ(location.device, device);
  }

  void* managed = nullptr;
  ASSERT_EQ(cudaMallocManaged(&managed, 4096), cudaSuccess);
  EXPECT_EQ(locate_pointer(managed).space, MemorySpace::kManaged);

  void* pinned = nullptr;
  ASSERT_EQ(cudaMallocHost(&pinned, 4096), cudaSuccess);
  EXPECT_EQ(locate_pointer(pinned).space, MemorySpace::kHost);

  std::vector<uint8_t> pageable(4096);
  EXPECT_EQ(locate_pointer(pageable.data()).space, MemorySpace::kUnregistered);
  EXPECT_EQ(locate_pointer(nullptr).space, MemorySpace::kUnregistered);

  // A freed allocation is asked about again, not remembered as device memory.
  ASSERT_EQ(cudaFree(device_memory), cudaSuccess);
  EXPECT_NE(locate_pointer(device_memory).space, MemorySpace::kDevice);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);  // the queries leave no sticky error
  cudaFree(managed);
  cudaFreeHost(pinned);
}

TEST(MemorySpace, EveryCallChecksThePointersItIsGiven) {
  SMLA_SKIP_WITHOUT_CUDA();
  test::Rng rng = test::Rng::ForTest(900);
  const test::DecodeProblem problem = test::make_problem(rng, test::problem_config(2, 1, 16, 64, 64, 64, 2));
  test::DeviceProblem device;
  ASSERT_EQ(test::upload_problem(problem, &device), "");
  test::DevicePlan device_plan;
  SMLA_DEVICE_PLAN_OR_SKIP(problem.shape, SMLA_BACKEND_CUDA, &device_plan);
  const Plan& plan = device_plan.plan;
  void* workspace = device_plan.workspace.as<void>();
  const size_t workspace_bytes = device_plan.workspace.bytes();
  ASSERT_TRUE(validate_decode_args(plan, device.args, workspace, workspace_bytes).ok());

  // Managed memory is accepted; pinned host memory is refused, on the same plan, call after call.
  DecodeArgs args = device.args;
  void* managed_q = nullptr;
  ASSERT_EQ(cudaMallocManaged(&managed_q, problem.q.size() * 2), cudaSuccess);
  args.q = managed_q;
  EXPECT_TRUE(validate_decode_args(plan, args, workspace, workspace_bytes).ok());
  void* pinned_q = nullptr;
  ASSERT_EQ(cudaMallocHost(&pinned_q, problem.q.size() * 2), cudaSuccess);
  args.q = pinned_q;
  Status status = validate_decode_args(plan, args, workspace, workspace_bytes);
  EXPECT_FALSE(status.ok());
  EXPECT_NE(status.message().find("args.q must be CUDA device or managed memory"), std::string::npos)
      << status.message();

  // Device memory that passed once and is then freed is refused on the next call.
  void* fresh_q = nullptr;  // 64 MiB: a mapping of its own, gone after the free
  ASSERT_EQ(cudaMalloc(&fresh_q, size_t{64} << 20), cudaSuccess);
  args.q = fresh_q;
  EXPECT_TRUE(validate_decode_args(plan, args, workspace, workspace_bytes).ok());
  ASSERT_EQ(cudaFree(fresh_q), cudaSuccess);
  status = validate_decode_args(plan, args, workspace, workspace_bytes);
  EXPECT_FALSE(status.ok());
  EXPECT_NE(status.message().find("args.q"), std::string::npos) << status.message();
  cudaFree(managed_q);
  cudaFreeHost(pinned_q);
}

TEST(DeviceWorkspace, ZeroedDeviceMemoryAlsoWhileAStreamIsCaptured) {
  SMLA_SKIP_WITHOUT_CUDA();
  int device = -1;
  ASSERT_EQ(cudaGetDevice(&device), cudaSuccess);
  char message[256] = {};
  void* workspace = nullptr;
  ASSERT_EQ(smla_device_workspace_create(device, 1 << 16, &workspace, message, sizeof(message)),
            SMLA_STATUS_OK)
      << message;
  EXPECT_EQ(locate_pointer(workspace).space, MemorySpace::kDevice);
  std::vector<uint8_t> bytes(1 << 16, 0xAB);
  ASSERT_EQ(cudaMemcpy(bytes.data(), workspace, bytes.size(), cudaMemcpyDeviceToHost), cudaSuccess);
  for (const uint8_t byte : bytes) ASSERT_EQ(byte, 0);
  EXPECT_EQ(smla_device_workspace_destroy(device, workspace, message, sizeof(message)), SMLA_STATUS_OK)
      << message;

  // Created in the middle of a (global-mode) capture: the capture stays valid, records nothing of the
  // creation, and the memory is zeroed before create returns.
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  void* scratch = nullptr;
  ASSERT_EQ(cudaMalloc(&scratch, 256), cudaSuccess);
  ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal), cudaSuccess);
  ASSERT_EQ(cudaMemsetAsync(scratch, 1, 256, stream), cudaSuccess);
  const smla_status_t created =
      smla_device_workspace_create(device, 1 << 16, &workspace, message, sizeof(message));
  cudaGraph_t graph = nullptr;
  ASSERT_EQ(cudaStreamEndCapture(stream, &graph), cudaSuccess);
  ASSERT_EQ(created, SMLA_STATUS_OK) << message;
  size_t nodes = 0;
  ASSERT_EQ(cudaGraphGetNodes(graph, nullptr, &nodes), cudaSuccess);
  EXPECT_EQ(nodes, 1u);  // only the captured memset
  std::fill(bytes.begin(), bytes.end(), 0xAB);
  ASSERT_EQ(cudaMemcpy(bytes.data(), workspace, bytes.size(), cudaMemcpyDeviceToHost), cudaSuccess);
  for (const uint8_t byte : bytes) ASSERT_EQ(byte, 0);
  EXPECT_EQ(smla_device_workspace_destroy(device, workspace, message, sizeof(message)), SMLA_STATUS_OK)
      << message;
  cudaGraphDestroy(graph);
  cudaFree(scratch);
  cudaStreamDestroy(stream);

  EXPECT_EQ(smla_device_workspace_create(-1, 16, &workspace, message, sizeof(message)),
            SMLA_STATUS_INVALID_ARGUMENT);
  EXPECT_NE(std::string(message).find("device must be >= 0"), std::string::npos) << message;
}

}  // namespace
}  // namespace smla
