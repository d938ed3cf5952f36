// Forces one build of the 32-head 99 KB-class kernel (the staging or the register gather) for a scope, so
// that a test checks a build on shapes whose schedule would pick the other (register_gather_pays); the
// choice returns to the schedule when the scope ends, also on a failed assertion.
#pragma once

#include "cuda/decode/kernel.h"

namespace smla::test {

class ForcedCompact32Gather {
 public:
  explicit ForcedCompact32Gather(detail::decode::Compact32Gather gather) {
    detail::decode::set_compact32_gather(gather);
  }
  ~ForcedCompact32Gather() {
    detail::decode::set_compact32_gather(detail::decode::Compact32Gather::kBySchedule);
  }
  ForcedCompact32Gather(const ForcedCompact32Gather&) = delete;
  ForcedCompact32Gather& operator=(const ForcedCompact32Gather&) = delete;
};

inline const char* compact32_gather_name(detail::decode::Compact32Gather gather) {
  return gather == detail::decode::Compact32Gather::kStaging ? "staging gather" : "register gather";
}

}  // namespace smla::test
