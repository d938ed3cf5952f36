// Backend names and resolution: explicit requests, the SMLA_BACKEND variable, and the no-device paths.
#include <gtest/gtest.h>

#include <cstdlib>
#include <optional>
#include <string>

#include "common/test_support.h"
#include "smla/backend.h"
#include "smla/decode.h"

namespace smla {
namespace {

// Sets (or unsets) SMLA_BACKEND for one test and restores the previous value afterwards.
class ScopedBackendEnv {
 public:
  explicit ScopedBackendEnv(const char* value) {
    if (const char* previous = std::getenv("SMLA_BACKEND")) previous_ = previous;
    if (value == nullptr) {
      unsetenv("SMLA_BACKEND");
    } else {
      setenv("SMLA_BACKEND", value, 1);
    }
  }
  ~ScopedBackendEnv() {
    if (previous_) {
      setenv("SMLA_BACKEND", previous_->c_str(), 1);
    } else {
      unsetenv("SMLA_BACKEND");
    }
  }

 private:
  std::optional<std::string> previous_;
};

bool has_device() {
  std::string reason;
  return test::cuda_device_present(&reason) && cuda_device_available();
}

void expect_message_has(const Status& status, const char* needle) {
  EXPECT_NE(status.message().find(needle), std::string::npos)
      << "message '" << status.message() << "' does not mention '" << needle << "'";
}

TEST(BackendNames, RoundTrip) {
  for (Backend backend : {SMLA_BACKEND_AUTO, SMLA_BACKEND_CPU, SMLA_BACKEND_CUDA_REF, SMLA_BACKEND_CUDA}) {
    Backend parsed = static_cast<Backend>(-1);
    ASSERT_TRUE(parse_backend(backend_name(backend), &parsed).ok()) << backend_name(backend);
    EXPECT_EQ(parsed, backend);
  }
  EXPECT_STREQ(backend_name(SMLA_BACKEND_CUDA_REF), "cuda-ref");
  EXPECT_STREQ(backend_name(SMLA_BACKEND_CPU), "cpu");
}

TEST(BackendNames, UnknownNameListsTheValidOnes) {
  Backend parsed = SMLA_BACKEND_CPU;
  for (const char* name : {"gpu", "CUDA", "", "cuda_ref", "cpu "}) {
    SCOPED_TRACE(name);
    const Status status = parse_backend(name, &parsed);
    EXPECT_EQ(status.code(), SMLA_STATUS_INVALID_ARGUMENT);
    expect_message_has(status, "auto, cpu, cuda-ref, cuda");
    EXPECT_EQ(parsed, SMLA_BACKEND_CPU);  // untouched on failure
  }
}

TEST(BackendSelection, ExplicitCpuAlwaysResolvesToCpu) {
  ScopedBackendEnv env("cuda");  // an explicit request wins over the variable
  Backend resolved = SMLA_BACKEND_AUTO;
  ASSERT_TRUE(resolve_backend(SMLA_BACKEND_CPU, -1, &resolved).ok());
  EXPECT_EQ(resolved, SMLA_BACKEND_CPU);
}

TEST(BackendSelection, AutoWithoutVariableFollowsTheHardware) {
  for (const char* value : {static_cast<const char*>(nullptr), "", "auto"}) {
    SCOPED_TRACE(value ? value : "(unset)");
    ScopedBackendEnv env(value);
    Backend resolved = SMLA_BACKEND_AUTO;
    ASSERT_TRUE(resolve_backend(SMLA_BACKEND_AUTO, -1, &resolved).ok());
    EXPECT_EQ(resolved, has_device() ? SMLA_BACKEND_CUDA : SMLA_BACKEND_CPU);
  }
}

TEST(BackendSelection, AutoWithoutDeviceIsCpuAndPlansOnCpu) {
  if (has_device()) GTEST_SKIP() << "a CUDA device is present: AUTO picks cuda";
  ScopedBackendEnv env(nullptr);
  Plan plan;
  ASSERT_TRUE(make_plan(DecodeShape{1, 1, 8, 64, 0}, default_plan_options(), &plan).ok());
  EXPECT_EQ(plan.backend(), SMLA_BACKEND_CPU);
  EXPECT_EQ(plan.device(), -1);
}

TEST(BackendSelection, VariableSelectsCpu) {
  ScopedBackendEnv env("cpu");
  Backend resolved = SMLA_BACKEND_AUTO;
  ASSERT_TRUE(resolve_backend(SMLA_BACKEND_AUTO, -1, &resolved).ok());
  EXPECT_EQ(resolved, SMLA_BACKEND_CPU);
  Plan plan;
  ASSERT_TRUE(make_plan(DecodeShape{1, 1, 8, 64, 0}, default_plan_options(), &plan).ok());
  EXPECT_EQ(plan.backend(), SMLA_BACKEND_CPU);
}

TEST(BackendSelection, InvalidVariableNamesItAndTheValidList) {
  ScopedBackendEnv env("tpu");
  Backend resolved = SMLA_BACKEND_AUTO;
  const Status status = resolve_backend(SMLA_BACKEND_AUTO, -1, &resolved);
  EXPECT_EQ(status.code(), SMLA_STATUS_INVALID_ARGUMENT);
  expect_message_has(status, "SMLA_BACKEND");
  expect_message_has(status, "tpu");
  expect_message_has(status, "auto, cpu, cuda-ref, cuda");
  // make_plan surfaces the same error.
  Plan plan;
  EXPECT_EQ(make_plan(DecodeShape{1, 1, 8, 64, 0}, default_plan_options(), &plan).code(),
            SMLA_STATUS_INVALID_ARGUMENT);
  EXPECT_FALSE(plan.valid());
}

TEST(BackendSelection, ExplicitCudaWithoutDeviceIsNoDevice) {
  ScopedBackendEnv env(nullptr);
  for (Backend backend : {SMLA_BACKEND_CUDA, SMLA_BACKEND_CUDA_REF}) {
    SCOPED_TRACE(backend_name(backend));
    Backend resolved = SMLA_BACKEND_AUTO;
    const Status status = resolve_backend(backend, -1, &resolved);
    if (has_device()) {
      EXPECT_TRUE(status.ok()) << status.message();
      EXPECT_EQ(resolved, backend);
      continue;
    }
    EXPECT_EQ(status.code(), SMLA_STATUS_NO_DEVICE);
    expect_message_has(status, backend_name(backend));
    expect_message_has(status, "CUDA device");
    PlanOptions options = default_plan_options();
    options.backend = backend;
    Plan plan;
    EXPECT_EQ(make_plan(DecodeShape{1, 1, 8, 64, 0}, options, &plan).code(), SMLA_STATUS_NO_DEVICE);
    EXPECT_FALSE(plan.valid());
  }
}

TEST(BackendSelection, VariableCudaWithoutDeviceIsNoDeviceNamingTheVariable) {
  if (has_device()) GTEST_SKIP() << "a CUDA device is present";
  for (const char* value : {"cuda", "cuda-ref"}) {
    SCOPED_TRACE(value);
    ScopedBackendEnv env(value);
    Backend resolved = SMLA_BACKEND_AUTO;
    const Status status = resolve_backend(SMLA_BACKEND_AUTO, -1, &resolved);
    EXPECT_EQ(status.code(), SMLA_STATUS_NO_DEVICE);
    expect_message_has(status, "SMLA_BACKEND");
    // An explicit CPU request is unaffected by the variable.
    ASSERT_TRUE(resolve_backend(SMLA_BACKEND_CPU, -1, &resolved).ok());
    EXPECT_EQ(resolved, SMLA_BACKEND_CPU);
  }
}

TEST(BackendSelection, UnknownEnumValueIsInvalid) {
  Backend resolved = SMLA_BACKEND_AUTO;
  const Status status = resolve_backend(static_cast<Backend>(17), -1, &resolved);
  EXPECT_EQ(status.code(), SMLA_STATUS_INVALID_ARGUMENT);
  expect_message_has(status, "(got 17)");
}

TEST(BackendSelection, NullOutputIsInvalid) {
  EXPECT_EQ(resolve_backend(SMLA_BACKEND_CPU, -1, nullptr).code(), SMLA_STATUS_INVALID_ARGUMENT);
  EXPECT_EQ(parse_backend("cpu", nullptr).code(), SMLA_STATUS_INVALID_ARGUMENT);
}

TEST(BackendSelection, CudaPlanCapturesTheDevice) {
  SMLA_SKIP_WITHOUT_CUDA();
  PlanOptions options = default_plan_options();
  options.backend = SMLA_BACKEND_CUDA_REF;
  Plan plan;
  ASSERT_TRUE(make_plan(DecodeShape{2, 1, 16, 128, 0}, options, &plan).ok());
  EXPECT_GE(plan.device(), 0);
  EXPECT_GE(plan.compute_capability(), 80);
  EXPECT_GT(plan.sm_count(), 0);
  EXPECT_EQ(plan.num_splits(), 1);
  options.device = 1 << 20;  // no such ordinal
  EXPECT_EQ(make_plan(DecodeShape{2, 1, 16, 128, 0}, options, &plan).code(), SMLA_STATUS_NO_DEVICE);
}

}  // namespace
}  // namespace smla
