// libFuzzer target: arbitrary bytes as cache contents plus small index lists through the host codec
// and a CPU decode. See fuzz_cases.h.
#include <cstddef>
#include <cstdint>

#include "fuzz_cases.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return smla::fuzz::run_codec_decode_case(data, size);
}
