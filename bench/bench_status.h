// Error handling shared by the smla-bench sources: everything returns smla::Status, and CUDA runtime
// errors become statuses that name the failing call, so main() can print one message and exit non-zero.
#pragma once

#include <string>

#include "smla/status.h"

// Returns an InvalidArgument status with `message` from the enclosing function when `condition` is false.
#define BENCH_REQUIRE(condition, message)                              \
  do {                                                                 \
    if (!(condition)) return ::smla::Status::InvalidArgument(message); \
  } while (0)

namespace smla_bench {

// Prefixes a failed status with what the bench was doing, keeping the code.
inline smla::Status with_context(const smla::Status& status, const std::string& context) {
  if (status.ok()) return status;
  return smla::Status(status.code(), context + ": " + status.message());
}

}  // namespace smla_bench

#define BENCH_RETURN_IF_ERROR_CTX(expr, context)                                        \
  do {                                                                                  \
    ::smla::Status bench_status_ = (expr);                                              \
    if (!bench_status_.ok()) return ::smla_bench::with_context(bench_status_, context); \
  } while (0)
