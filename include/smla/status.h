// The C++ result type: a status code plus a message that names the offending argument.
#pragma once

#include <string>
#include <utility>

#include "smla/status_codes.h"

namespace smla {

class Status {
 public:
  Status() = default;  // OK
  Status(smla_status_t code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }
  static Status InvalidArgument(std::string message) {
    return Status(SMLA_STATUS_INVALID_ARGUMENT, std::move(message));
  }
  static Status Unsupported(std::string message) {
    return Status(SMLA_STATUS_UNSUPPORTED, std::move(message));
  }
  static Status NoDevice(std::string message) { return Status(SMLA_STATUS_NO_DEVICE, std::move(message)); }
  static Status CudaError(std::string message) { return Status(SMLA_STATUS_CUDA_ERROR, std::move(message)); }
  static Status Internal(std::string message) { return Status(SMLA_STATUS_INTERNAL, std::move(message)); }

  bool ok() const { return code_ == SMLA_STATUS_OK; }
  smla_status_t code() const { return code_; }
  const std::string& message() const { return message_; }

 private:
  smla_status_t code_ = SMLA_STATUS_OK;
  std::string message_;
};

// Name of a status code ("invalid argument", ...).
const char* status_code_name(smla_status_t code);

}  // namespace smla

// Propagate a non-OK Status from an expression to the caller.
#define SMLA_RETURN_IF_ERROR(expr)        \
  do {                                    \
    ::smla::Status smla_status_ = (expr); \
    if (!smla_status_.ok()) {             \
      return smla_status_;                \
    }                                     \
  } while (0)
