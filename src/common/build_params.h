// Turns validated public arguments into the backends' DecodeParams (one place: dispatch.cpp).
#pragma once

#include <cstddef>

#include "common/decode_params.h"
#include "smla/decode.h"

namespace smla::detail {

// Copies pointers/strides/geometry from `args`, the split schedule from `plan`, and carves the
// workspace (may be null when plan.workspace_bytes() == 0). Does not validate: call after
// validate_decode_args.
DecodeParams build_decode_params(const Plan& plan, const DecodeArgs& args, void* workspace);

}  // namespace smla::detail
