// The bodies of the libFuzzer targets, shared with tests/cpu/test_fuzz_regressions.cpp so that the
// seed corpus and every crash a fuzzer ever found replay in the ordinary test suite (and under the
// ASan/UBSan build) through exactly the code the fuzzers run.
//
// Both cases turn arbitrary bytes into calls of the public API with host buffers sized to what the
// call claims (so any out-of-bounds access is the library's, not the harness's). A property that
// must hold whatever the bytes (no write outside the output elements, an error message on every
// failure, codec paths agreeing with each other) aborts with a message, which libFuzzer and gtest
// both report as a crash.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <vector>

#include "smla/cache.h"
#include "smla/codec.h"
#include "smla/smla.h"

namespace smla::fuzz {

// Reads the fuzz input front to back; once it runs out every read returns 0, which the cases map
// to the plain, valid choice (so short inputs still reach the compute path).
class ByteReader {
 public:
  ByteReader(const uint8_t* data, size_t size) : data_(data), size_(size) {}

  uint8_t u8() { return offset_ < size_ ? data_[offset_++] : 0; }
  uint16_t u16() { return static_cast<uint16_t>(u8() | (u8() << 8)); }
  uint32_t u32() { return static_cast<uint32_t>(u16()) | (static_cast<uint32_t>(u16()) << 16); }
  int32_t i32() { return static_cast<int32_t>(u32()); }
  int64_t i64() { return static_cast<int64_t>(static_cast<uint64_t>(u32()) | (uint64_t{u32()} << 32)); }
  float f32() {
    const uint32_t bits = u32();
    float value;
    std::memcpy(&value, &bits, sizeof(value));
    return value;
  }
  // True with probability about 1/one_in (one_in >= 1); 0 bytes read as false.
  bool rarely(int one_in) { return u8() % one_in == static_cast<uint8_t>(one_in - 1); }
  bool exhausted() const { return offset_ >= size_; }
  // The unread tail (used as raw cache contents).
  const uint8_t* rest() const { return data_ + std::min(offset_, size_); }
  size_t rest_size() const { return size_ > offset_ ? size_ - offset_ : 0; }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t offset_ = 0;
};

[[noreturn]] inline void fail(const char* what) {
  std::fprintf(stderr, "smla fuzz property violated: %s\n", what);
  std::abort();
}
inline void require(bool condition, const char* what) {
  if (!condition) fail(what);
}

// SMLA_FUZZ_VERBOSE=1 prints each call's outcome (for reading a reproducer or choosing seeds).
inline void report(const char* call, smla_status_t status) {
  static const bool verbose = std::getenv("SMLA_FUZZ_VERBOSE") != nullptr;
  if (verbose)
    std::fprintf(stderr, "%s: %s%s%s\n", call, smla_status_string(status),
                 status == SMLA_STATUS_OK ? "" : ": ", status == SMLA_STATUS_OK ? "" : smla_last_error());
}

// Every host allocation of a case goes through this budget, so the fuzzer explores validation of
// huge claimed shapes without the harness trying to allocate them.
inline constexpr int64_t kMaxBufferBytes = int64_t{8} << 20;
// ... and every decode it runs through this one: (query row, head, attended token) triples.
inline constexpr int64_t kMaxAttendedPairs = int64_t{1} << 16;

// A host buffer of `count` elements of `element_bytes`, with its first element `misalign_bytes`
// past a 16-byte boundary (to probe alignment checks), surrounded by canary bytes.
class GuardedBuffer {
 public:
  static constexpr size_t kGuardBytes = 64;
  static constexpr uint8_t kCanary = 0xA5;

  GuardedBuffer() = default;
  GuardedBuffer(int64_t count, int64_t element_bytes, int misalign_bytes, uint8_t fill) {
    bytes_ = static_cast<size_t>(count * element_bytes);
    misalign_ = static_cast<size_t>(misalign_bytes);
    storage_.assign(kGuardBytes + 16 + bytes_ + kGuardBytes, kCanary);
    std::memset(begin(), fill, bytes_);
  }
  uint8_t* begin() {
    const uintptr_t base = reinterpret_cast<uintptr_t>(storage_.data() + kGuardBytes);
    return reinterpret_cast<uint8_t*>((base + 15) / 16 * 16) + misalign_;
  }
  size_t bytes() const { return bytes_; }
  bool empty() const { return storage_.empty(); }
  // True when no byte outside [begin, begin + bytes) changed.
  bool guards_intact() {
    if (storage_.empty()) return true;
    const uint8_t* first = begin();
    const uint8_t* last = first + bytes_;
    for (const uint8_t* byte = storage_.data(); byte < first; ++byte)
      if (*byte != kCanary) return false;
    for (const uint8_t* byte = last; byte < storage_.data() + storage_.size(); ++byte)
      if (*byte != kCanary) return false;
    return true;
  }

 private:
  std::vector<uint8_t> storage_;
  size_t bytes_ = 0;
  size_t misalign_ = 0;
};

// Element span of a strided tensor: the largest offset reachable plus the contiguous last dim.
// Negative strides are measured too (the harness then offsets the base), though the API rejects them.
struct Span {
  int64_t min_offset = 0;
  int64_t max_offset = 0;
  bool overflow = false;
  int64_t count() const { return max_offset - min_offset + 1; }
};
inline Span strided_span(std::initializer_list<int64_t> extents, std::initializer_list<int64_t> strides,
                         int64_t last_dim) {
  Span span;
  const int64_t* stride = strides.begin();
  for (int64_t extent : extents) {
    const int64_t s = *stride++;
    const long double reach = static_cast<long double>(extent - 1) * s;
    if (std::fabs(reach) > 1e15L) {
      span.overflow = true;
      return span;
    }
    (s < 0 ? span.min_offset : span.max_offset) += (extent - 1) * s;
  }
  span.max_offset += last_dim - 1;
  return span;
}

// A float the decode may see as a sink or a scale: mostly ordinary, sometimes special.
inline float pick_special_float(ByteReader& in, float ordinary) {
  switch (in.u8() % 8) {
    case 1:
      return std::numeric_limits<float>::infinity();
    case 2:
      return -std::numeric_limits<float>::infinity();
    case 3:
      return std::numeric_limits<float>::quiet_NaN();
    case 4:
      return -ordinary;
    case 5:
      return 0.f;
    case 6:
      return in.f32();
    default:
      return ordinary;
  }
}

// A slot id relative to a pool of `num_slots`: mostly valid, sometimes "no token" or out of range.
inline int32_t pick_slot(ByteReader& in, int64_t num_slots) {
  const uint8_t kind = in.u8();
  const int64_t valid = num_slots > 0 ? static_cast<int64_t>(in.u16()) % num_slots : 0;
  switch (kind % 16) {
    case 13:
      return -1;
    case 14:
      return in.i32();
    case 15:
      return static_cast<int32_t>(std::min<int64_t>(num_slots + (kind >> 4), INT32_MAX));
    default:
      return static_cast<int32_t>(valid);
  }
}

// Fills a cache pool: NaN bytes, a repeated byte pattern from the input, or quantized-looking data.
inline void fill_pool(ByteReader& in, uint8_t* pool, int64_t pool_bytes) {
  const uint8_t mode = in.u8() % 3;
  if (mode == 0) {
    std::memset(pool, 0xFF, static_cast<size_t>(pool_bytes));
    return;
  }
  uint8_t pattern[32];
  for (uint8_t& byte : pattern) byte = in.u8();
  for (int64_t i = 0; i < pool_bytes; ++i) {
    // Mode 2 keeps bytes small: finite e4m3 values and plausible scale bytes near 127.
    pool[i] = mode == 1 ? pattern[i % 32] : static_cast<uint8_t>((pattern[i % 32] & 0x3f) + 100);
  }
}

// ---------------------------------------------------------------------------------------------------
// fuzz_c_api_validation: shapes, strides, pointer alignment, lengths, cache geometry and backend all
// come from the input; smla_plan_create and smla_decode_run must return an error or compute, and a
// successful run may write only the output elements its arguments describe.

struct FuzzCache {
  smla_cache_layout_t layout{};
  GuardedBuffer pool;
  bool allocated = false;
};

inline FuzzCache make_fuzz_cache(ByteReader& in) {
  FuzzCache cache;
  const uint8_t geometry = in.u8();
  int64_t page_block_size = 1 + in.u8() % 80;
  if (geometry % 8 == 1) page_block_size = 256;
  if (geometry % 8 == 2) page_block_size = 2;
  int64_t page_stride_bytes = smla_writer_page_stride_bytes(page_block_size) + 16 * (in.u8() % 3);
  int64_t num_pages = 1 + in.u8() % 4;
  int misalign = 0;
  if (geometry % 16 == 7) page_stride_bytes = in.i64() % (int64_t{1} << 40);  // any stride at all
  if (geometry % 16 == 8) page_stride_bytes -= 8;                             // not a multiple of 16
  if (geometry % 32 == 9) num_pages = in.i64();                               // 0, negative, huge
  if (geometry % 32 == 10) page_block_size = in.i64();
  if (geometry % 32 == 11) misalign = 1 + in.u8() % 15;
  cache.layout.page_block_size = page_block_size;
  cache.layout.page_stride_bytes = page_stride_bytes;
  cache.layout.num_pages = num_pages;
  if (geometry % 64 == 12) return cache;  // data = nullptr
  const bool sane = page_block_size >= 1 && num_pages >= 1 && page_stride_bytes >= 1 &&
                    page_stride_bytes <= kMaxBufferBytes && num_pages <= kMaxBufferBytes &&
                    page_stride_bytes * num_pages <= kMaxBufferBytes;
  if (!sane) {
    // The claimed pool cannot be backed; point at a small buffer. The geometry must be rejected
    // before anything is read, or the run is skipped below (see pool_backed).
    cache.pool = GuardedBuffer(64, 1, misalign, 0xFF);
    cache.layout.data = cache.pool.begin();
    return cache;
  }
  cache.pool = GuardedBuffer(page_stride_bytes * num_pages, 1, misalign, 0xFF);
  fill_pool(in, cache.pool.begin(), page_stride_bytes * num_pages);
  cache.layout.data = cache.pool.begin();
  cache.allocated = true;
  return cache;
}

// An int32 tensor [batch, seq_q, width] at the given strides (row-contiguous), filled with slots.
struct FuzzIndexList {
  GuardedBuffer indices;
  GuardedBuffer lengths;
  bool fits = true;
};

inline FuzzIndexList make_index_list(ByteReader& in, int32_t batch, int32_t seq_q, int32_t width,
                                     int64_t stride_batch, int64_t stride_seq, int64_t num_slots,
                                     int32_t lengths_layout, bool with_lengths) {
  FuzzIndexList list;
  const Span span = strided_span({batch, seq_q}, {stride_batch, stride_seq}, width);
  if (span.overflow || span.count() * 4 > kMaxBufferBytes) {
    list.fits = false;
    return list;
  }
  list.indices = GuardedBuffer(span.count(), 4, 0, 0xFF);  // gaps hold -1
  int32_t* base = reinterpret_cast<int32_t*>(list.indices.begin()) - span.min_offset;
  for (int32_t b = 0; b < batch; ++b)
    for (int32_t t = 0; t < seq_q; ++t)
      for (int32_t k = 0; k < width; ++k)
        base[b * stride_batch + t * stride_seq + k] = pick_slot(in, num_slots);
  if (with_lengths) {
    const int64_t count = lengths_layout == SMLA_LENGTHS_PER_QUERY ? int64_t{batch} * seq_q : batch;
    list.lengths = GuardedBuffer(count, 4, 0, 0);
    int32_t* lengths = reinterpret_cast<int32_t*>(list.lengths.begin());
    for (int64_t i = 0; i < count; ++i) {
      const uint8_t kind = in.u8();
      lengths[i] = kind % 8 == 7 ? in.i32() : static_cast<int32_t>(kind % (width + 2));
    }
  }
  return list;
}

// Marks which elements of a strided output belong to the tensor, to check a run wrote nothing else.
inline std::vector<bool> output_mask(const Span& span, std::initializer_list<int64_t> extents,
                                     std::initializer_list<int64_t> strides, int64_t last_dim) {
  std::vector<bool> mask(static_cast<size_t>(span.count()), false);
  const int64_t e0 = extents.begin()[0], e1 = extents.begin()[1], e2 = extents.begin()[2];
  const int64_t s0 = strides.begin()[0], s1 = strides.begin()[1], s2 = strides.begin()[2];
  for (int64_t i = 0; i < e0; ++i)
    for (int64_t j = 0; j < e1; ++j)
      for (int64_t k = 0; k < e2; ++k)
        for (int64_t d = 0; d < last_dim; ++d)
          mask[static_cast<size_t>(i * s0 + j * s1 + k * s2 + d - span.min_offset)] = true;
  return mask;
}

// True when every element outside `mask` still holds the fill pattern.
inline bool untouched_outside(const uint8_t* data, const std::vector<bool>& mask, int64_t element_bytes,
                              uint8_t fill) {
  for (size_t i = 0; i < mask.size(); ++i) {
    if (mask[i]) continue;
    for (int64_t byte = 0; byte < element_bytes; ++byte)
      if (data[i * element_bytes + byte] != fill) return false;
  }
  return true;
}

// A raw backend value (int32_t, as the C struct stores it): sometimes outside the enum on purpose.
inline int32_t pick_backend(ByteReader& in) {
  const uint8_t kind = in.u8();
  switch (kind % 16) {
    case 12:
      return SMLA_BACKEND_AUTO;
    case 13:
      return SMLA_BACKEND_CUDA_REF;
    case 14:
      return SMLA_BACKEND_CUDA;
    case 15:
      return static_cast<int8_t>(in.u8());
    default:
      return SMLA_BACKEND_CPU;
  }
}

inline int run_c_api_validation_case(const uint8_t* data, size_t size) {
  ByteReader in(data, size);
  const uint8_t mode = in.u8();

  // --- shape and options --------------------------------------------------------------------------
  smla_decode_shape_t shape{};
  if (mode % 8 == 7) {  // arbitrary shape: only validation and planning should see it
    shape = {in.i32(), in.i32(), in.i32(), in.i32(), in.i32()};
  } else {
    shape.batch = 1 + in.u8() % 2;
    shape.seq_q = 1 + in.u8() % 2;
    shape.num_heads = 1 + in.u8() % 4;
    shape.topk = 1 + in.u8() % 80;
    const uint8_t extra = in.u8();
    shape.extra_topk = extra % 3 == 1 ? 1 + extra % 70 : 0;
  }
  smla_plan_options_t options;
  smla_default_plan_options(&options);
  options.backend = pick_backend(in);
  options.cpu_threads = 1 + in.u8() % 2;
  const uint8_t option_bits = in.u8();
  if (option_bits & 1) options.cpu_precision = SMLA_CPU_FLOAT32;
  if (option_bits % 16 == 15) {
    options.device = static_cast<int8_t>(in.u8());
    options.num_splits = in.i32();
    options.cpu_precision = static_cast<int8_t>(in.u8());
    options.cpu_threads = static_cast<int8_t>(in.u8());
  }

  smla_plan_t plan = nullptr;
  const smla_status_t plan_status = smla_plan_create(&shape, &options, &plan);
  report("smla_plan_create", plan_status);
  if (plan_status != SMLA_STATUS_OK) {
    require(plan == nullptr, "a failed smla_plan_create left a plan behind");
    require(smla_last_error()[0] != '\0', "smla_plan_create failed without a message");
    return 0;
  }
  require(plan != nullptr, "smla_plan_create succeeded without a plan");
  // decode.h: a valid shape's flat sizes fit the kernels' int32 index arithmetic.
  const __int128 rows = static_cast<__int128>(shape.batch) * shape.seq_q;
  require(rows * shape.num_heads * 512 <= INT32_MAX && rows * shape.topk <= INT32_MAX &&
              rows * shape.extra_topk <= INT32_MAX,
          "smla_plan_create accepted a shape whose flat sizes overflow int32 indexing");

  // --- arguments ----------------------------------------------------------------------------------
  smla_decode_args_t args{};
  smla_set_contiguous_strides(plan, &args);
  const uint8_t stride_bits = in.u8();
  auto perturb = [&](int64_t& stride) {
    const uint8_t kind = in.u8();
    if (kind % 16 == 13) stride += 8 * (kind >> 4);                // padded rows (valid)
    if (kind % 16 == 14) stride = static_cast<int16_t>(in.u16());  // anything, incl. negative
    if (kind % 16 == 15) stride = 0;                               // broadcast (outputs: overlap)
  };
  if (stride_bits & 1) {
    for (int64_t* stride :
         {&args.q_stride_batch, &args.q_stride_seq, &args.q_stride_head, &args.indices_stride_batch,
          &args.indices_stride_seq, &args.extra_indices_stride_batch, &args.extra_indices_stride_seq,
          &args.out_stride_batch, &args.out_stride_seq, &args.out_stride_head, &args.lse_stride_batch,
          &args.lse_stride_seq, &args.lse_stride_head})
      perturb(*stride);
  }
  if (stride_bits & 2) {  // FlashMLA's lse view [b, h, s_q]
    args.lse_stride_head = shape.seq_q;
    args.lse_stride_seq = 1;
  }

  FuzzCache main_cache = make_fuzz_cache(in);
  FuzzCache extra_cache = make_fuzz_cache(in);
  args.main_cache = main_cache.layout;
  args.extra_cache = extra_cache.layout;
  const bool pools_backed = main_cache.allocated && (shape.extra_topk == 0 || extra_cache.allocated);

  const uint8_t list_bits = in.u8();
  args.topk_length_layout = (list_bits & 2) ? SMLA_LENGTHS_PER_QUERY : SMLA_LENGTHS_PER_BATCH;
  args.extra_topk_length_layout = (list_bits & 8) ? SMLA_LENGTHS_PER_QUERY : SMLA_LENGTHS_PER_BATCH;
  // Slot count of a backed pool, capped at 2^31 (a garbage page_block_size may overflow the product).
  const auto slots_of = [](const FuzzCache& cache) -> int64_t {
    int64_t slots = 0;
    if (!cache.allocated ||
        __builtin_mul_overflow(cache.layout.num_pages, cache.layout.page_block_size, &slots))
      return cache.allocated ? int64_t{1} << 31 : 0;
    return std::min(slots, int64_t{1} << 31);
  };
  FuzzIndexList main_list =
      make_index_list(in, shape.batch, shape.seq_q, shape.topk, args.indices_stride_batch,
                      args.indices_stride_seq, slots_of(main_cache), args.topk_length_layout, list_bits & 1);
  FuzzIndexList extra_list;
  if (shape.extra_topk > 0) {
    extra_list = make_index_list(in, shape.batch, shape.seq_q, shape.extra_topk,
                                 args.extra_indices_stride_batch, args.extra_indices_stride_seq,
                                 slots_of(extra_cache), args.extra_topk_length_layout, list_bits & 4);
  }
  // An undefined layout value (2..257); the lengths buffer above was sized for the valid one.
  if (list_bits % 64 == 48) args.topk_length_layout = 2 + in.u8();

  const Span q_span = strided_span({shape.batch, shape.seq_q, shape.num_heads},
                                   {args.q_stride_batch, args.q_stride_seq, args.q_stride_head}, 512);
  const Span out_span = strided_span({shape.batch, shape.seq_q, shape.num_heads},
                                     {args.out_stride_batch, args.out_stride_seq, args.out_stride_head}, 512);
  const Span lse_span = strided_span({shape.batch, shape.seq_q, shape.num_heads},
                                     {args.lse_stride_batch, args.lse_stride_seq, args.lse_stride_head}, 1);
  const bool tensors_fit = main_list.fits && extra_list.fits && !q_span.overflow && !out_span.overflow &&
                           !lse_span.overflow && q_span.count() * 2 <= kMaxBufferBytes &&
                           out_span.count() * 2 <= kMaxBufferBytes && lse_span.count() * 4 <= kMaxBufferBytes;
  // A planned wild shape may be valid but far too slow for the CPU backend; validation was the point.
  const int64_t attended_per_head = int64_t{shape.topk} + shape.extra_topk;
  const bool cheap_enough =
      int64_t{shape.batch} * shape.seq_q * shape.num_heads * attended_per_head <= kMaxAttendedPairs;
  if (!tensors_fit || !pools_backed || !cheap_enough) {
    report("skipped run (buffers or compute over budget)", SMLA_STATUS_OK);
    smla_plan_destroy(plan);
    return 0;
  }

  const uint8_t pointer_bits = in.u8();
  const int q_misalign = pointer_bits % 16 == 1 ? 2 * (1 + in.u8() % 7) : 0;
  const int out_misalign = pointer_bits % 16 == 2 ? 2 * (1 + in.u8() % 7) : 0;
  const int lse_misalign = pointer_bits % 16 == 3 ? 1 + in.u8() % 3 : 0;
  GuardedBuffer q(q_span.count(), 2, q_misalign, 0);
  for (int64_t i = 0; i < q_span.count(); ++i) {
    // bf16 bits of small values (exponent near 0x3c..0x3f), sometimes raw (NaN, Inf, huge).
    const uint16_t bits =
        (pointer_bits & 0x80) ? in.u16() : static_cast<uint16_t>(0x3c00 + (in.u16() & 0x3ff));
    std::memcpy(q.begin() + 2 * i, &bits, 2);
  }
  constexpr uint8_t kOutFill = 0x5A;
  GuardedBuffer out(out_span.count(), 2, out_misalign, kOutFill);
  GuardedBuffer lse(lse_span.count(), 4, lse_misalign, kOutFill);
  std::vector<float> sink(static_cast<size_t>(shape.num_heads));
  for (float& value : sink) value = pick_special_float(in, 0.5f);

  args.q = q.begin() - 2 * q_span.min_offset;
  args.out = out.begin() - 2 * out_span.min_offset;
  args.lse = reinterpret_cast<float*>(lse.begin()) - lse_span.min_offset;
  args.indices = reinterpret_cast<const int32_t*>(main_list.indices.begin()) -
                 strided_span({shape.batch, shape.seq_q},
                              {args.indices_stride_batch, args.indices_stride_seq}, shape.topk)
                     .min_offset;
  args.topk_length =
      main_list.lengths.empty() ? nullptr : reinterpret_cast<int32_t*>(main_list.lengths.begin());
  if (shape.extra_topk > 0) {
    args.extra_indices =
        reinterpret_cast<const int32_t*>(extra_list.indices.begin()) -
        strided_span({shape.batch, shape.seq_q},
                     {args.extra_indices_stride_batch, args.extra_indices_stride_seq}, shape.extra_topk)
            .min_offset;
    args.extra_topk_length =
        extra_list.lengths.empty() ? nullptr : reinterpret_cast<int32_t*>(extra_list.lengths.begin());
  }
  args.attn_sink = (pointer_bits & 0x40) ? nullptr : sink.data();
  args.softmax_scale = pick_special_float(in, 0.0441941738f);
  // One required pointer may go missing.
  switch (pointer_bits % 16) {
    case 4:
      args.q = nullptr;
      break;
    case 5:
      args.indices = nullptr;
      break;
    case 6:
      args.out = nullptr;
      break;
    case 7:
      args.lse = nullptr;
      break;
    case 8:
      args.extra_indices = nullptr;
      break;
    case 9:
      args.main_cache.data = nullptr;
      break;
    default:
      break;
  }
  // Or an output shares memory with another argument: lse inside out's buffer, or out over q (in place).
  const bool aliased = pointer_bits % 16 == 11 || pointer_bits % 16 == 12;
  if (pointer_bits % 16 == 11) args.lse = reinterpret_cast<float*>(out.begin());
  if (pointer_bits % 16 == 12) args.out = const_cast<void*>(args.q);

  size_t workspace_bytes = 0;
  require(smla_plan_workspace_bytes(plan, &workspace_bytes) == SMLA_STATUS_OK, "workspace query failed");
  if (static_cast<int64_t>(workspace_bytes) > kMaxBufferBytes) {
    smla_plan_destroy(plan);
    return 0;
  }
  GuardedBuffer workspace(static_cast<int64_t>(workspace_bytes) + 1, 1, 0, 0);
  size_t given_workspace_bytes = workspace_bytes;
  if (pointer_bits % 16 == 10 && workspace_bytes > 0) given_workspace_bytes = workspace_bytes - 1;

  const smla_status_t run_status =
      smla_decode_run(plan, &args, workspace.begin(), given_workspace_bytes, /*stream=*/nullptr);
  report("smla_decode_run", run_status);
  smla_plan_destroy(plan);

  // --- properties that hold whatever the outcome ------------------------------------------------
  if (run_status != SMLA_STATUS_OK)
    require(smla_last_error()[0] != '\0', "smla_decode_run failed without a message");
  require(!aliased || run_status != SMLA_STATUS_OK, "smla_decode_run accepted an output aliasing another argument");
  require(q.guards_intact() && main_list.indices.guards_intact() && main_cache.pool.guards_intact() &&
              extra_list.indices.guards_intact() && extra_cache.pool.guards_intact(),
          "an input buffer's guard bytes changed");
  require(out.guards_intact(), "smla_decode_run wrote before or after the out buffer");
  require(lse.guards_intact(), "smla_decode_run wrote before or after the lse buffer");
  if (run_status == SMLA_STATUS_OK && args.out != nullptr && args.lse != nullptr) {
    const std::vector<bool> out_mask =
        output_mask(out_span, {shape.batch, shape.seq_q, shape.num_heads},
                    {args.out_stride_batch, args.out_stride_seq, args.out_stride_head}, 512);
    require(untouched_outside(out.begin(), out_mask, 2, kOutFill),
            "smla_decode_run wrote between out elements");
    const std::vector<bool> lse_mask =
        output_mask(lse_span, {shape.batch, shape.seq_q, shape.num_heads},
                    {args.lse_stride_batch, args.lse_stride_seq, args.lse_stride_head}, 1);
    require(untouched_outside(lse.begin(), lse_mask, 4, kOutFill),
            "smla_decode_run wrote between lse elements");
  }
  return 0;
}

// ---------------------------------------------------------------------------------------------------
// fuzz_codec_decode: arbitrary bytes as cache contents and small index lists through the host codec
// (dequantize_gather, its bf16 form, dequantize_slot) and a CPU decode. Nothing may crash; NaN
// results are allowed, but the codec paths must agree bit for bit with decode_token.

inline bool same_float_bits(float a, float b) {
  if (std::isnan(a) && std::isnan(b)) return true;
  return std::memcmp(&a, &b, sizeof(float)) == 0;
}

// encode_token then decode_token of a finite token: rope dims exact, nope dims within e4m3 rounding.
inline void check_token_round_trip(ByteReader& in) {
  uint16_t token[512];
  const bool raw = in.u8() & 1;
  for (uint16_t& bits : token)
    bits = raw ? in.u16() : static_cast<uint16_t>(0x3800 + (in.u16() & 0x7ff) + 0x8000 * (in.u8() & 1));
  uint8_t row[576];
  uint8_t footer[8];
  float decoded[512];
  encode_token(token, row, footer);
  decode_token(row, footer, decoded);
  // Values near FLT_MAX legitimately round up past it (e4m3 rounding of x/scale to 256 * 2^120 = 2^128),
  // so the bound is checked for magnitudes below 2^64, far beyond any normalized KV vector.
  bool in_range = true;
  for (uint16_t bits : token) in_range = in_range && std::fabs(bf16_bits_to_float(bits)) < 0x1p64f;
  if (!in_range) return;
  require(footer[7] == 0, "encode_token wrote a non-zero pad byte");
  for (int g = 0; g < 7; ++g) {
    require(footer[g] != 0 && footer[g] != 255, "encode_token wrote a reserved scale byte (0 or 255)");
    const float scale = std::ldexp(1.f, footer[g] - 127);
    for (int i = 64 * g; i < 64 * g + 64; ++i) {
      const float x = bf16_bits_to_float(token[i]);
      // e4m3 keeps 3 mantissa bits (relative error <= 2^-4) down to its subnormal step 2^-9.
      const float bound = std::fabs(x) * 0.0625f + scale * 0.001953125f;
      require(std::isfinite(decoded[i]) && std::fabs(decoded[i] - x) <= bound,
              "encode_token/decode_token round trip is outside the e4m3 rounding bound");
    }
  }
  for (int i = 448; i < 512; ++i)
    require(same_float_bits(decoded[i], bf16_bits_to_float(token[i])),
            "rope dims did not round-trip exactly");
}

inline int run_codec_decode_case(const uint8_t* data, size_t size) {
  ByteReader in(data, size);
  const uint8_t geometry = in.u8();
  int64_t page_block_size = 1 + in.u8() % 70;
  if (geometry % 4 == 1) page_block_size = 2;
  if (geometry % 8 == 2) page_block_size = 256;
  const int64_t num_pages = 1 + in.u8() % 3;
  const int64_t page_stride_bytes = smla_writer_page_stride_bytes(page_block_size) + 16 * (in.u8() % 2);
  const int num_slots = 1 + in.u8() % 8;
  const int64_t pool_slots = num_pages * page_block_size;
  std::vector<int32_t> slots(static_cast<size_t>(num_slots));
  for (int32_t& slot : slots) slot = pick_slot(in, pool_slots);
  const int32_t num_heads = 1 + in.u8() % 4;
  const uint8_t decode_bits = in.u8();
  std::vector<uint16_t> q(static_cast<size_t>(num_heads) * 512);
  for (uint16_t& bits : q)
    bits = (decode_bits & 1) ? in.u16() : static_cast<uint16_t>(0x3c00 + (in.u8() << 1));
  const float sink = pick_special_float(in, 0.25f);
  check_token_round_trip(in);

  // The rest of the input is the cache contents, tiled over the pool.
  const int64_t pool_bytes = num_pages * page_stride_bytes;
  GuardedBuffer pool(pool_bytes, 1, 0, 0xFF);
  if (in.rest_size() > 0) {
    for (int64_t i = 0; i < pool_bytes; ++i) pool.begin()[i] = in.rest()[i % in.rest_size()];
  }
  const smla_cache_layout_t cache{pool.begin(), page_block_size, page_stride_bytes, num_pages};
  require(smla_validate_cache_layout(&cache) == SMLA_STATUS_OK, "a writer-stride cache layout was rejected");

  bool all_in_range = true;
  for (int32_t slot : slots) all_in_range = all_in_range && slot < pool_slots;
  std::vector<float> gathered(static_cast<size_t>(num_slots) * 512, -7.f);
  const smla_status_t gather_status =
      smla_dequantize_gather(&cache, slots.data(), num_slots, gathered.data());
  report("smla_dequantize_gather", gather_status);
  require((gather_status == SMLA_STATUS_OK) == all_in_range,
          "smla_dequantize_gather must succeed exactly when every slot is in range");
  std::vector<uint16_t> gathered_bf16(static_cast<size_t>(num_slots) * 512);
  const Status bf16_status = dequantize_gather_bf16(cache, slots.data(), num_slots, gathered_bf16.data());
  require(bf16_status.ok() == all_in_range,
          "dequantize_gather_bf16 must succeed exactly when every slot is in range");
  if (all_in_range) {
    for (int i = 0; i < num_slots; ++i) {
      float expected[512];
      if (slots[i] < 0) {
        std::fill(expected, expected + 512, 0.f);
      } else {
        const uint8_t* base = pool.begin();
        decode_token(base + slot_row_offset(page_block_size, page_stride_bytes, slots[i]),
                     base + slot_scale_offset(page_block_size, page_stride_bytes, slots[i]), expected);
        float single[512];
        require(dequantize_slot(cache, slots[i], single).ok(), "dequantize_slot rejected a valid slot");
        for (int d = 0; d < 512; ++d)
          require(same_float_bits(single[d], expected[d]), "dequantize_slot disagrees with decode_token");
      }
      for (int d = 0; d < 512; ++d) {
        const float value = gathered[static_cast<size_t>(i) * 512 + d];
        require(same_float_bits(value, expected[d]), "dequantize_gather disagrees with decode_token");
        // Exact for writer-produced scales; garbage scale bytes can leave bf16's range, so compare
        // with the float gather rounded to nearest even.
        const float from_bf16 = bf16_bits_to_float(gathered_bf16[static_cast<size_t>(i) * 512 + d]);
        require(same_float_bits(from_bf16, bf16_bits_to_float(float_to_bf16_bits(value))),
                "dequantize_gather_bf16 is not the float gather rounded to bf16");
      }
    }
  }

  // A CPU decode of one row attending these slots (out-of-range ids must be rejected, not read).
  smla_decode_shape_t shape{1, 1, num_heads, num_slots, 0};
  smla_plan_options_t options;
  smla_default_plan_options(&options);
  options.backend = SMLA_BACKEND_CPU;
  options.cpu_threads = 1;
  options.cpu_precision = (decode_bits & 2) ? SMLA_CPU_FLOAT32 : SMLA_CPU_FLOAT64;
  smla_plan_t plan = nullptr;
  require(smla_plan_create(&shape, &options, &plan) == SMLA_STATUS_OK, "CPU plan for a small shape failed");
  smla_decode_args_t args{};
  smla_set_contiguous_strides(plan, &args);
  GuardedBuffer out(int64_t{num_heads} * 512, 2, 0, 0x5A);
  std::vector<float> lse(static_cast<size_t>(num_heads), -1.f);
  std::vector<float> sinks(static_cast<size_t>(num_heads), sink);
  const int32_t length = (decode_bits & 4) ? static_cast<int32_t>(in.u8() % (num_slots + 2)) - 1 : num_slots;
  args.q = q.data();
  args.main_cache = cache;
  args.indices = slots.data();
  args.topk_length = (decode_bits & 4) ? &length : nullptr;
  args.attn_sink = (decode_bits & 8) ? sinks.data() : nullptr;
  args.softmax_scale = 0.0441941738f;
  args.out = out.begin();
  args.lse = lse.data();
  size_t workspace_bytes = 0;
  smla_plan_workspace_bytes(plan, &workspace_bytes);
  std::vector<uint8_t> workspace(workspace_bytes + 16);
  const smla_status_t run_status = smla_decode_run(plan, &args, workspace.data(), workspace_bytes, nullptr);
  report("smla_decode_run", run_status);
  smla_plan_destroy(plan);
  bool used_in_range = true;
  const int32_t used = args.topk_length ? std::clamp(length, 0, num_slots) : num_slots;
  for (int32_t i = 0; i < used; ++i) used_in_range = used_in_range && slots[i] < pool_slots;
  require((run_status == SMLA_STATUS_OK) == used_in_range,
          "CPU decode must succeed exactly when every attended slot is in range");
  require(out.guards_intact(), "CPU decode wrote before or after out");
  require(pool.guards_intact(), "the cache pool's guard bytes changed");
  return 0;
}

}  // namespace smla::fuzz
