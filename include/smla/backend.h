// Backend choice: SMLA_BACKEND=auto|cpu|cuda-ref|cuda, or an explicit smla_backend_t.
#pragma once

#include <cstdint>
#include <string_view>

#include "smla/status.h"
#include "smla/types.h"

namespace smla {

using Backend = smla_backend_t;

// "auto", "cpu", "cuda-ref", "cuda".
const char* backend_name(Backend backend);
// Parses a backend name; an unknown one is an error listing the valid names.
Status parse_backend(std::string_view name, Backend* backend);
// Resolves `requested` (AUTO reads SMLA_BACKEND, then picks cuda on a supported GPU, else cpu).
// `requested` is a raw smla_backend_t value (as stored in smla_plan_options_t); a value outside the
// enum is an error. Asking for a CUDA backend without a usable device is SMLA_STATUS_NO_DEVICE.
Status resolve_backend(int32_t requested, int device, Backend* resolved);
// True when a CUDA device that the CUDA backends support is present.
bool cuda_device_available();

}  // namespace smla
