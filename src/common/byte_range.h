// The bytes an argument can touch, overflow-checked, and the rule that outputs share memory with no other
// argument. Used at the validation boundaries (src/dispatch.cpp, src/relayout.cpp): a stride so large that
// an element's byte offset wraps int64 (or the address space) would otherwise send a kernel's reads or
// writes before the buffer, and an output that overlaps an input or another output is a race on the GPU
// and silently wrong on the CPU.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>

#include "smla/status.h"

namespace smla::detail {

// [begin, end) in the address space; begin == end for an absent (null) optional argument.
struct ByteRange {
  const char* name = nullptr;  // the argument, as messages name it (e.g. "args.out")
  uintptr_t begin = 0;
  uintptr_t end = 0;

  bool empty() const { return begin == end; }
  bool overlaps(const ByteRange& other) const {
    return !empty() && !other.empty() && begin < other.end && other.begin < end;
  }
};

// One dimension of a strided tensor: `extent` elements `stride` elements apart (stride >= 0).
struct StridedDim {
  const char* stride_name;  // e.g. "args.out_stride_head"
  int64_t extent;
  int64_t stride;
};

// The bytes of a tensor at `data` with the given dimensions and element size: from data to one element past
// its largest element offset, sum over dims of (extent - 1) * stride. InvalidArgument naming the stride whose
// term overflows int64 or carries the tensor past the end of the address space. A null `data` gives an empty
// range (optional arguments); dims with extent <= 1 add nothing.
Status strided_byte_range(const char* name, const void* data, std::initializer_list<StridedDim> dims,
                          int64_t element_bytes, ByteRange* range);

// [data, data + bytes) for a buffer given by its size (bytes >= 0); InvalidArgument when it wraps the
// address space.
Status sized_byte_range(const char* name, const void* data, int64_t bytes, ByteRange* range);

// InvalidArgument naming the first pair in which an output overlaps another output or an input. Inputs may
// overlap each other (they are only read).
Status check_outputs_disjoint(const ByteRange* outputs, size_t num_outputs, const ByteRange* inputs,
                              size_t num_inputs);
inline Status check_outputs_disjoint(std::initializer_list<ByteRange> outputs,
                                     std::initializer_list<ByteRange> inputs) {
  return check_outputs_disjoint(outputs.begin(), outputs.size(), inputs.begin(), inputs.size());
}

}  // namespace smla::detail
