// libFuzzer target: arbitrary bytes -> shapes, strides, alignment, lengths, cache geometry and backend
// fed through smla_plan_create / smla_decode_run (CPU backend, host buffers). See fuzz_cases.h.
#include <cstddef>
#include <cstdint>

#include "fuzz_cases.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return smla::fuzz::run_c_api_validation_case(data, size);
}
