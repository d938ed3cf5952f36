// Byte ranges of arguments and the disjoint-outputs rule (byte_range.h).
#include "common/byte_range.h"

#include <cinttypes>
#include <cstdio>
#include <limits>
#include <string>

namespace smla::detail {
namespace {

std::string hex(uintptr_t address) {
  char text[24];
  std::snprintf(text, sizeof(text), "0x%" PRIxPTR, address);
  return text;
}

std::string describe(const ByteRange& range) {
  return std::string(range.name) + " [" + hex(range.begin) + ", " + hex(range.end) + ")";
}

Status past_address_range(const char* name, const char* what) {
  return Status::InvalidArgument(std::string(what) + " puts " + name +
                                 "'s elements past the end of the address range (byte offsets overflow)");
}

}  // namespace

Status strided_byte_range(const char* name, const void* data, std::initializer_list<StridedDim> dims,
                          int64_t element_bytes, ByteRange* range) {
  *range = ByteRange{name, 0, 0};
  if (data == nullptr) return Status::Ok();
  const auto blame = [name](const StridedDim& dim) {
    return past_address_range(name, (std::string(dim.stride_name) + " = " + std::to_string(dim.stride) +
                                     " (extent " + std::to_string(dim.extent) + ")")
                                        .c_str());
  };
  int64_t bytes = element_bytes;  // one past the largest element's first byte
  const StridedDim* largest =
      nullptr;  // the dim reaching furthest, blamed when the end wraps the address space
  int64_t largest_term = -1;
  for (const StridedDim& dim : dims) {
    if (dim.extent <= 1) continue;
    int64_t term = 0;
    if (__builtin_mul_overflow(dim.extent - 1, dim.stride, &term) ||
        __builtin_mul_overflow(term, element_bytes, &term) || __builtin_add_overflow(bytes, term, &bytes)) {
      return blame(dim);
    }
    if (term > largest_term) largest = &dim, largest_term = term;
  }
  if (largest != nullptr && static_cast<uint64_t>(bytes) >
                                std::numeric_limits<uintptr_t>::max() - reinterpret_cast<uintptr_t>(data)) {
    return blame(*largest);
  }
  return sized_byte_range(name, data, bytes, range);
}

Status sized_byte_range(const char* name, const void* data, int64_t bytes, ByteRange* range) {
  *range = ByteRange{name, 0, 0};
  if (data == nullptr || bytes <= 0) return Status::Ok();
  const auto begin = reinterpret_cast<uintptr_t>(data);
  if (static_cast<uint64_t>(bytes) > std::numeric_limits<uintptr_t>::max() - begin) {
    return past_address_range(name, ("its size, " + std::to_string(bytes) + " bytes,").c_str());
  }
  *range = ByteRange{name, begin, begin + static_cast<uintptr_t>(bytes)};
  return Status::Ok();
}

Status check_outputs_disjoint(const ByteRange* outputs, size_t num_outputs, const ByteRange* inputs,
                              size_t num_inputs) {
  const auto overlap = [](const ByteRange& output, const ByteRange& other) {
    return Status::InvalidArgument(describe(output) + " overlaps " + describe(other) +
                                   ": an output must not share memory with another output or with an input");
  };
  for (size_t i = 0; i < num_outputs; ++i) {
    for (size_t j = i + 1; j < num_outputs; ++j) {
      if (outputs[i].overlaps(outputs[j])) return overlap(outputs[i], outputs[j]);
    }
    for (size_t j = 0; j < num_inputs; ++j) {
      if (outputs[i].overlaps(inputs[j])) return overlap(outputs[i], inputs[j]);
    }
  }
  return Status::Ok();
}

}  // namespace smla::detail
