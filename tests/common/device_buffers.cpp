#include "common/device_buffers.h"

#include <algorithm>
#include <cstring>
#include <utility>

namespace smla::test {

DeviceBuffer::~DeviceBuffer() { reset(); }

DeviceBuffer::DeviceBuffer(DeviceBuffer&& other) noexcept
    : ptr_(std::exchange(other.ptr_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  if (this != &other) {
    reset();
    ptr_ = std::exchange(other.ptr_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

std::string DeviceBuffer::allocate(size_t bytes) {
  reset();
  bytes_ = bytes;
  return cuda_failure(cudaMalloc(&ptr_, std::max<size_t>(bytes, 16)), "cudaMalloc");
}

void DeviceBuffer::reset() {
  if (ptr_ != nullptr) cudaFree(ptr_);
  ptr_ = nullptr;
  bytes_ = 0;
}

std::string cuda_failure(cudaError_t error, const std::string& what) {
  return error == cudaSuccess ? std::string() : what + ": " + cudaGetErrorString(error);
}

std::string upload_bytes(const void* host, size_t bytes, DeviceBuffer* device, const std::string& what) {
  if (device->as<void>() == nullptr || device->bytes() != bytes) {
    const std::string failure = device->allocate(bytes);
    if (!failure.empty()) return what + ": " + failure;
  }
  return upload_bytes_in_place(host, bytes, *device, what);
}

std::string upload_pool(const HostCache& cache, DeviceBuffer* device, const std::string& what) {
  return upload_bytes(cache.layout.data, static_cast<size_t>(cache.pool_bytes()), device, what);
}

std::string upload_bytes_in_place(const void* host, size_t bytes, const DeviceBuffer& device,
                                  const std::string& what) {
  if (device.as<void>() == nullptr || device.bytes() != bytes) {
    return what + ": the device buffer holds " + std::to_string(device.bytes()) + " bytes, not " +
           std::to_string(bytes);
  }
  if (bytes == 0) return {};
  RETURN_IF_FAILED(
      cuda_failure(cudaMemcpy(device.as<void>(), host, bytes, cudaMemcpyHostToDevice), what + " upload"));
  // A pageable upload may still be in flight when cudaMemcpy returns; non-blocking streams do not wait.
  return cuda_failure(cudaDeviceSynchronize(), what + " upload sync");
}

std::string upload_pool_in_place(const HostCache& cache, const DeviceBuffer& device,
                                 const std::string& what) {
  return upload_bytes_in_place(cache.layout.data, static_cast<size_t>(cache.pool_bytes()), device, what);
}

namespace {

uint8_t* out_begin(const DeviceProblem& device) { return device.out_with_guards.as<uint8_t>() + kGuardBytes; }
uint8_t* lse_begin(const DeviceProblem& device) { return device.lse_with_guards.as<uint8_t>() + kGuardBytes; }

std::string check_guard_bytes(const DeviceBuffer& buffer, size_t payload_bytes, const char* name) {
  std::vector<uint8_t> host(buffer.bytes());
  RETURN_IF_FAILED(
      cuda_failure(cudaMemcpy(host.data(), buffer.as<void>(), host.size(), cudaMemcpyDeviceToHost),
                   std::string("download of ") + name + " guards"));
  for (size_t i = 0; i < host.size(); ++i) {
    const bool in_payload = i >= kGuardBytes && i < kGuardBytes + payload_bytes;
    if (!in_payload && host[i] != kGuardByte) {
      const long long offset = static_cast<long long>(i) - static_cast<long long>(kGuardBytes);
      return std::string("byte ") + std::to_string(offset) + " relative to " + name + " (payload " +
             std::to_string(payload_bytes) + " bytes) was overwritten";
    }
  }
  return {};
}

}  // namespace

std::string upload_problem(const DecodeProblem& problem, DeviceProblem* device) {
  RETURN_IF_FAILED(upload_vector(problem.q, &device->q, "q"));
  RETURN_IF_FAILED(upload_pool(problem.main_cache, &device->main_pool, "main pool"));
  RETURN_IF_FAILED(upload_vector(problem.indices, &device->indices, "indices"));
  RETURN_IF_FAILED(upload_vector(problem.topk_length, &device->topk_length, "topk_length"));
  const DecodeShape& shape = problem.shape;
  if (shape.extra_topk > 0) {
    RETURN_IF_FAILED(upload_pool(problem.extra_cache, &device->extra_pool, "extra pool"));
    RETURN_IF_FAILED(upload_vector(problem.extra_indices, &device->extra_indices, "extra_indices"));
    RETURN_IF_FAILED(
        upload_vector(problem.extra_topk_length, &device->extra_topk_length, "extra_topk_length"));
  }
  RETURN_IF_FAILED(upload_vector(problem.sink, &device->sink, "sink"));
  device->lse_elements = static_cast<size_t>(shape.batch) * shape.seq_q * shape.num_heads;
  device->out_elements = device->lse_elements * kHeadDim;
  const size_t out_total = device->out_elements * sizeof(uint16_t) + 2 * kGuardBytes;
  const size_t lse_total = device->lse_elements * sizeof(float) + 2 * kGuardBytes;
  if (device->out_with_guards.bytes() != out_total)
    RETURN_IF_FAILED(device->out_with_guards.allocate(out_total));
  if (device->lse_with_guards.bytes() != lse_total)
    RETURN_IF_FAILED(device->lse_with_guards.allocate(lse_total));

  DecodeArgs args = problem.host_args(nullptr, nullptr);
  args.q = device->q.as<void>();
  args.main_cache.data = device->main_pool.as<void>();
  args.indices = device->indices.as<int32_t>();
  args.topk_length = problem.topk_length.empty() ? nullptr : device->topk_length.as<int32_t>();
  if (shape.extra_topk > 0) {
    args.extra_cache.data = device->extra_pool.as<void>();
    args.extra_indices = device->extra_indices.as<int32_t>();
    args.extra_topk_length =
        problem.extra_topk_length.empty() ? nullptr : device->extra_topk_length.as<int32_t>();
  }
  args.attn_sink = problem.sink.empty() ? nullptr : device->sink.as<float>();
  // kGuardBytes is a multiple of 16, so out keeps the 16-byte alignment of cudaMalloc.
  args.out = out_begin(*device);
  args.lse = reinterpret_cast<float*>(lse_begin(*device));
  device->args = args;
  return poison_outputs(*device, nullptr);
}

std::string poison_outputs(const DeviceProblem& device, cudaStream_t stream) {
  const size_t out_bytes = device.out_elements * sizeof(uint16_t);
  const size_t lse_bytes = device.lse_elements * sizeof(float);
  RETURN_IF_FAILED(cuda_failure(
      cudaMemsetAsync(device.out_with_guards.as<void>(), kGuardByte, device.out_with_guards.bytes(), stream),
      "guard fill of out"));
  RETURN_IF_FAILED(cuda_failure(
      cudaMemsetAsync(device.lse_with_guards.as<void>(), kGuardByte, device.lse_with_guards.bytes(), stream),
      "guard fill of lse"));
  RETURN_IF_FAILED(
      cuda_failure(cudaMemsetAsync(out_begin(device), 0xFF, out_bytes, stream), "poison of out"));
  return cuda_failure(cudaMemsetAsync(lse_begin(device), 0xFF, lse_bytes, stream), "poison of lse");
}

bool HostOutputs::bitwise_equal(const HostOutputs& other) const {
  return out == other.out && lse.size() == other.lse.size() &&
         std::memcmp(lse.data(), other.lse.data(), lse.size() * sizeof(float)) == 0;
}

std::string download_outputs(const DeviceProblem& device, HostOutputs* outputs) {
  RETURN_IF_FAILED(cuda_failure(cudaDeviceSynchronize(), "device sync before download"));
  outputs->out.resize(device.out_elements);
  outputs->lse.resize(device.lse_elements);
  RETURN_IF_FAILED(cuda_failure(cudaMemcpy(outputs->out.data(), out_begin(device),
                                           device.out_elements * sizeof(uint16_t), cudaMemcpyDeviceToHost),
                                "download of out"));
  return cuda_failure(cudaMemcpy(outputs->lse.data(), lse_begin(device), device.lse_elements * sizeof(float),
                                 cudaMemcpyDeviceToHost),
                      "download of lse");
}

std::string guards_intact(const DeviceProblem& device) {
  RETURN_IF_FAILED(cuda_failure(cudaDeviceSynchronize(), "device sync before the guard check"));
  RETURN_IF_FAILED(check_guard_bytes(device.out_with_guards, device.out_elements * sizeof(uint16_t), "out"));
  return check_guard_bytes(device.lse_with_guards, device.lse_elements * sizeof(float), "lse");
}

std::string make_device_plan(const DecodeShape& shape, Backend backend, DevicePlan* device_plan,
                             int32_t max_shared_bytes) {
  PlanOptions options = default_plan_options();
  options.backend = backend;
  options.max_shared_bytes = max_shared_bytes;
  const Status status = make_plan(shape, options, &device_plan->plan);
  if (!status.ok()) return "make_plan: " + status.message();
  if (device_plan->plan.backend() != backend) return "make_plan resolved another backend";
  RETURN_IF_FAILED(device_plan->workspace.allocate(device_plan->plan.workspace_bytes()));
  RETURN_IF_FAILED(cuda_failure(cudaMemset(device_plan->workspace.as<void>(), 0,
                                           std::max<size_t>(device_plan->plan.workspace_bytes(), 16)),
                                "workspace clear"));
  // cudaMemset runs on the legacy stream; a non-blocking stream would not wait for it.
  return cuda_failure(cudaDeviceSynchronize(), "workspace clear sync");
}

std::string make_supported_device_plan(const DecodeShape& shape, Backend backend, DevicePlan* device_plan) {
  PlanOptions options = default_plan_options();
  options.backend = backend;
  Plan probe;
  const Status status = make_plan(shape, options, &probe);
  if (status.code() == SMLA_STATUS_UNSUPPORTED) {
    return std::string(kUnsupportedPrefix) + backend_name(backend) +
           " cannot serve this shape here: " + status.message();
  }
  return make_device_plan(shape, backend, device_plan);
}

std::string reupload_pools(const DecodeProblem& problem, const DeviceProblem& device) {
  RETURN_IF_FAILED(upload_pool_in_place(problem.main_cache, device.main_pool, "main pool"));
  if (problem.shape.extra_topk == 0) return {};
  return upload_pool_in_place(problem.extra_cache, device.extra_pool, "extra pool");
}

std::string run_and_download(const DevicePlan& device_plan, const DeviceProblem& device, cudaStream_t stream,
                             HostOutputs* outputs) {
  RETURN_IF_FAILED(poison_outputs(device, stream));
  const Status status = run(device_plan.plan, device.args, device_plan.workspace.as<void>(),
                            device_plan.plan.workspace_bytes(), stream);
  if (!status.ok()) return "run: " + status.message();
  RETURN_IF_FAILED(cuda_failure(cudaStreamSynchronize(stream), "stream sync after run"));
  return download_outputs(device, outputs);
}

}  // namespace smla::test
