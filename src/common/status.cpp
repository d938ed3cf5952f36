// Human-readable names of the status codes shared by the C and C++ APIs.
#include "smla/status.h"

namespace smla {

const char* status_code_name(smla_status_t code) {
  switch (code) {
    case SMLA_STATUS_OK:
      return "ok";
    case SMLA_STATUS_INVALID_ARGUMENT:
      return "invalid argument";
    case SMLA_STATUS_UNSUPPORTED:
      return "unsupported";
    case SMLA_STATUS_NO_DEVICE:
      return "no device";
    case SMLA_STATUS_CUDA_ERROR:
      return "cuda error";
    case SMLA_STATUS_DEVICE_CHECK_FAILED:
      return "device check failed";
    case SMLA_STATUS_INTERNAL:
      return "internal error";
  }
  // A value outside the enum (e.g. from the C API): name it rather than crash.
  return "unknown status";
}

}  // namespace smla
