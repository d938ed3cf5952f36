#include "decode_case.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <memory>
#include <string>

#include "bench_status.h"
#include "smla/codec.h"

namespace smla_bench {
namespace {

constexpr int64_t kFillChunkTokens = 32768;
constexpr int kMaxCheckedBatchEntries = 4;

// Host memory with the 16-byte alignment smla requires of cache bases and tensors.
struct AlignedHostBuffer {
  std::unique_ptr<void, decltype(&std::free)> memory{nullptr, &std::free};
  smla::Status allocate(size_t bytes) {
    const size_t rounded = std::max<size_t>(64, (bytes + 63) / 64 * 64);
    memory.reset(std::aligned_alloc(64, rounded));
    if (!memory)
      return smla::Status::Internal("host allocation of " + std::to_string(bytes) + " bytes failed");
    return smla::Status::Ok();
  }
  template <typename T>
  T* as() const {
    return static_cast<T*>(memory.get());
  }
};

template <typename T>
smla::Status upload(BenchDevice& device, const std::vector<T>& values, T** destination) {
  void* memory = nullptr;
  SMLA_RETURN_IF_ERROR(device.allocate(values.size() * sizeof(T), &memory));
  SMLA_RETURN_IF_ERROR(device.copy_to_device(memory, values.data(), values.size() * sizeof(T)));
  *destination = static_cast<T*>(memory);
  return smla::Status::Ok();
}

// One index set: `rows` rows of `width` distinct slots out of `num_slots`. Entry i of a row is drawn from
// the i-th of `width` equal strata of the pool, so a row's tokens are distinct and spread over all of it.
void sample_index_set(std::mt19937_64& rng, int64_t rows, int width, int64_t num_slots,
                      std::vector<int32_t>* indices) {
  indices->resize(static_cast<size_t>(rows) * width);
  for (int64_t row = 0; row < rows; ++row) {
    int32_t* out = indices->data() + row * width;
    for (int i = 0; i < width; ++i) {
      const int64_t low = i * num_slots / width;
      const int64_t high = (i + 1) * num_slots / width;  // > low because num_slots >= width
      out[i] = static_cast<int32_t>(low + static_cast<int64_t>(rng() % static_cast<uint64_t>(high - low)));
    }
  }
}

std::vector<int32_t> choose_lengths(std::mt19937_64& rng, int batch, int width, LengthMode mode, int fixed) {
  std::vector<int32_t> lengths(batch, width);
  if (mode == LengthMode::kRandom) {
    std::uniform_int_distribution<int> length(0, width);
    for (int32_t& value : lengths) value = length(rng);
  } else if (mode == LengthMode::kFixed) {
    std::fill(lengths.begin(), lengths.end(), std::clamp(fixed, 0, width));
  }
  return lengths;
}

// Sampled batch entries of a check: first, last and two in between, without repeats.
std::vector<int> checked_batch_entries(int batch) {
  std::vector<int> entries = {0, batch - 1, batch / 2, batch / 3};
  std::sort(entries.begin(), entries.end());
  entries.erase(std::unique(entries.begin(), entries.end()), entries.end());
  if (static_cast<int>(entries.size()) > kMaxCheckedBatchEntries) entries.resize(kMaxCheckedBatchEntries);
  return entries;
}

// Copies the records that `host_indices` rows of the sampled entries reference into a compact host cache
// (slot = position in the gather) and rewrites the indices to those compact slots.
smla::Status gather_to_host_cache(BenchDevice& device, const smla::CacheLayout& source,
                                  const std::vector<int32_t>& host_indices, const std::vector<int>& entries,
                                  int seq_q, int width, AlignedHostBuffer* host_pages,
                                  smla::CacheLayout* host_cache, std::vector<int32_t>* compact_indices) {
  const int64_t row_elements = static_cast<int64_t>(seq_q) * width;
  std::vector<int32_t> slots;
  for (int entry : entries) {
    const auto begin = host_indices.begin() + entry * row_elements;
    slots.insert(slots.end(), begin, begin + row_elements);
  }
  compact_indices->resize(slots.size());
  for (size_t i = 0; i < slots.size(); ++i) (*compact_indices)[i] = static_cast<int32_t>(i);

  constexpr int64_t kCompactPageBlockSize = 64;
  const int64_t pages =
      (static_cast<int64_t>(slots.size()) + kCompactPageBlockSize - 1) / kCompactPageBlockSize;
  const size_t pool_bytes =
      static_cast<size_t>(pages * smla::writer_page_stride_bytes(kCompactPageBlockSize));
  int32_t* device_slots = nullptr;
  SMLA_RETURN_IF_ERROR(upload(device, slots, &device_slots));
  void* device_pages = nullptr;
  SMLA_RETURN_IF_ERROR(device.allocate(pool_bytes, &device_pages));
  const smla::CacheLayout device_compact =
      smla::make_cache_layout(device_pages, kCompactPageBlockSize, pages);
  smla::Status status =
      device.gather_records(source, device_slots, static_cast<int64_t>(slots.size()), device_compact);
  if (status.ok()) status = host_pages->allocate(pool_bytes);
  if (status.ok()) status = device.copy_to_host(host_pages->as<void>(), device_pages, pool_bytes);
  device.release(device_slots);
  device.release(device_pages);
  *host_cache = smla::make_cache_layout(host_pages->as<void>(), kCompactPageBlockSize, pages);
  return status;
}

std::vector<int32_t> lengths_of_entries(const std::vector<int32_t>& lengths,
                                        const std::vector<int>& entries) {
  std::vector<int32_t> selected;
  for (int entry : entries) selected.push_back(lengths[entry]);
  return selected;
}

// Per-element bf16-kernel tolerance of spec section 8.
bool out_within_tolerance(double actual, double reference) {
  if (std::isnan(actual) || std::isnan(reference)) return std::isnan(actual) && std::isnan(reference);
  const double error = std::fabs(actual - reference);
  return error < 1e-3 || error / (std::fabs(reference) + 1e-6) < 2.01 / 128;
}

bool lse_within_tolerance(double actual, double reference) {
  if (std::isnan(actual) || std::isnan(reference)) return std::isnan(actual) && std::isnan(reference);
  if (std::isinf(actual) || std::isinf(reference)) return actual == reference;
  const double error = std::fabs(actual - reference);
  return error < 1e-6 || error / std::fabs(reference) < 8.01 / 65536;
}

}  // namespace

smla::Status make_filled_cache(BenchDevice& device, int64_t page_block_size, int64_t min_tokens,
                               int64_t budget_bytes, uint64_t seed, smla::CacheLayout* cache) {
  const int64_t stride = smla::writer_page_stride_bytes(page_block_size);
  int64_t pages = std::max((min_tokens + page_block_size - 1) / page_block_size, budget_bytes / stride);
  // Slot ids are int32.
  pages =
      std::max<int64_t>(1, std::min<int64_t>(pages, std::numeric_limits<int32_t>::max() / page_block_size));
  void* data = nullptr;
  BENCH_RETURN_IF_ERROR_CTX(device.allocate(static_cast<size_t>(pages * stride), &data),
                            "allocating a " + std::to_string(pages * stride) + "-byte cache");
  // Page padding stays NaN bytes; a decode must never read it.
  SMLA_RETURN_IF_ERROR(device.fill_bytes(data, 0xFF, static_cast<size_t>(pages * stride)));
  *cache = smla::make_cache_layout(data, page_block_size, pages);

  const int64_t total_tokens = pages * page_block_size;
  const int64_t chunk = std::min(total_tokens, kFillChunkTokens);
  void* tokens = nullptr;
  void* slots = nullptr;
  SMLA_RETURN_IF_ERROR(device.allocate(static_cast<size_t>(chunk) * smla::kHeadDim * 2, &tokens));
  SMLA_RETURN_IF_ERROR(device.allocate(static_cast<size_t>(chunk) * 4, &slots));
  smla::Status status = smla::Status::Ok();
  for (int64_t first = 0; first < total_tokens && status.ok(); first += chunk) {
    const int64_t count = std::min(chunk, total_tokens - first);
    status = device.fill_random_bf16(static_cast<uint16_t*>(tokens), count * smla::kHeadDim, seed,
                                     static_cast<uint64_t>(first) * smla::kHeadDim);
    if (status.ok())
      status = device.fill_slot_range(static_cast<int32_t*>(slots), count, static_cast<int32_t>(first));
    if (status.ok()) {
      status = with_context(device.append_tokens(*cache, static_cast<const uint16_t*>(tokens), count,
                                                 static_cast<const int32_t*>(slots)),
                            "smla::append_tokens");
    }
  }
  device.release(tokens);  // waits for the queued appends on a CUDA device
  device.release(slots);
  return status;
}

smla::Status make_io_buffers(BenchDevice& device, const smla::DecodeShape& shape, uint64_t seed,
                             IoBuffers* buffers) {
  const int64_t head_rows = static_cast<int64_t>(shape.batch) * shape.seq_q * shape.num_heads;
  SMLA_RETURN_IF_ERROR(device.allocate(static_cast<size_t>(head_rows) * smla::kHeadDim * 2, &buffers->q));
  SMLA_RETURN_IF_ERROR(device.allocate(static_cast<size_t>(head_rows) * smla::kHeadDim * 2, &buffers->out));
  void* lse = nullptr;
  SMLA_RETURN_IF_ERROR(device.allocate(static_cast<size_t>(head_rows) * 4, &lse));
  buffers->lse = static_cast<float*>(lse);
  SMLA_RETURN_IF_ERROR(device.fill_random_bf16(static_cast<uint16_t*>(buffers->q), head_rows * smla::kHeadDim,
                                               seed ^ 0x51ull, 0));
  // Finite per-head sinks around 0: the model's learned values are of that order.
  std::mt19937_64 rng(seed ^ 0x5151ull);
  std::normal_distribution<float> normal(0.f, 1.f);
  std::vector<float> sinks(shape.num_heads);
  for (float& sink : sinks) sink = normal(rng);
  return upload(device, sinks, &buffers->sinks);
}

double LayerInstance::bytes() const {
  return call_bytes(static_cast<int64_t>(shape.batch) * shape.seq_q, shape.num_heads, shape.topk,
                    shape.extra_topk, attended_tokens);
}

double LayerInstance::flops() const { return call_flops(shape.num_heads, attended_tokens); }

smla::Status make_layer_instance(BenchDevice& device, const smla::DecodeShape& shape,
                                 const smla::CacheLayout& main_cache, const smla::CacheLayout& extra_cache,
                                 int num_index_sets, const LengthChoice& lengths, std::mt19937_64& rng,
                                 LayerInstance* layer) {
  layer->shape = shape;
  layer->main_cache = main_cache;
  layer->extra_cache = extra_cache;
  const int64_t rows = static_cast<int64_t>(shape.batch) * shape.seq_q;
  BENCH_REQUIRE(smla::cache_num_slots(main_cache) >= shape.topk, "main cache smaller than topk");
  if (shape.extra_topk > 0) {
    BENCH_REQUIRE(smla::cache_num_slots(extra_cache) >= shape.extra_topk,
                  "extra cache smaller than extra_topk");
  }
  std::vector<int32_t> indices;
  for (int set = 0; set < num_index_sets; ++set) {
    sample_index_set(rng, rows, shape.topk, smla::cache_num_slots(main_cache), &indices);
    int32_t* device_indices = nullptr;
    SMLA_RETURN_IF_ERROR(upload(device, indices, &device_indices));
    layer->main_indices.push_back(device_indices);
    if (set == 0) layer->host_main_indices = indices;
    if (shape.extra_topk > 0) {
      sample_index_set(rng, rows, shape.extra_topk, smla::cache_num_slots(extra_cache), &indices);
      SMLA_RETURN_IF_ERROR(upload(device, indices, &device_indices));
      layer->extra_indices.push_back(device_indices);
      if (set == 0) layer->host_extra_indices = indices;
    }
  }
  layer->host_main_lengths = choose_lengths(rng, shape.batch, shape.topk, lengths.mode, lengths.main_length);
  SMLA_RETURN_IF_ERROR(upload(device, layer->host_main_lengths, &layer->main_lengths));
  layer->attended_tokens = 0;
  for (int32_t length : layer->host_main_lengths)
    layer->attended_tokens += static_cast<int64_t>(length) * shape.seq_q;
  if (shape.extra_topk > 0) {
    layer->host_extra_lengths =
        choose_lengths(rng, shape.batch, shape.extra_topk, lengths.mode, lengths.extra_length);
    SMLA_RETURN_IF_ERROR(upload(device, layer->host_extra_lengths, &layer->extra_lengths));
    for (int32_t length : layer->host_extra_lengths) {
      layer->attended_tokens += static_cast<int64_t>(length) * shape.seq_q;
    }
  }
  return smla::Status::Ok();
}

void release_layer_instance(BenchDevice& device, LayerInstance* layer) {
  for (int32_t* indices : layer->main_indices) device.release(indices);
  for (int32_t* indices : layer->extra_indices) device.release(indices);
  device.release(layer->main_lengths);
  device.release(layer->extra_lengths);
  layer->main_indices.clear();
  layer->extra_indices.clear();
  layer->main_lengths = nullptr;
  layer->extra_lengths = nullptr;
}

smla::DecodeArgs make_decode_args(const LayerInstance& layer, int index_set, const IoBuffers& buffers) {
  smla::DecodeArgs args{};
  smla::set_contiguous_strides(layer.shape, &args);
  args.q = buffers.q;
  args.main_cache = layer.main_cache;
  args.indices = layer.main_indices[index_set];
  args.topk_length = layer.main_lengths;
  args.topk_length_layout = SMLA_LENGTHS_PER_BATCH;
  if (layer.shape.extra_topk > 0) {
    args.extra_cache = layer.extra_cache;
    args.extra_indices = layer.extra_indices[index_set];
    args.extra_topk_length = layer.extra_lengths;
    args.extra_topk_length_layout = SMLA_LENGTHS_PER_BATCH;
  }
  args.attn_sink = buffers.sinks;
  args.softmax_scale = 1.0f / std::sqrt(static_cast<float>(smla::kHeadDim));
  args.out = buffers.out;
  args.lse = buffers.lse;
  return args;
}

smla::Status check_layer(BenchDevice& device, const smla::Plan& plan, const LayerInstance& layer,
                         const IoBuffers& buffers, void* workspace, CheckResult* result) {
  const smla::DecodeArgs device_args = make_decode_args(layer, 0, buffers);
  BENCH_RETURN_IF_ERROR_CTX(device.run_once([&](void* stream) {
    return smla::run(plan, device_args, workspace, plan.workspace_bytes(), stream);
  }),
                            "smla::run before the check");

  const smla::DecodeShape& shape = layer.shape;
  const std::vector<int> entries = checked_batch_entries(shape.batch);
  const int sampled = static_cast<int>(entries.size());
  smla::DecodeShape sample_shape = shape;
  sample_shape.batch = sampled;

  AlignedHostBuffer main_pages, extra_pages;
  smla::CacheLayout host_main{}, host_extra{};
  std::vector<int32_t> main_indices, extra_indices;
  SMLA_RETURN_IF_ERROR(gather_to_host_cache(device, layer.main_cache, layer.host_main_indices, entries,
                                            shape.seq_q, shape.topk, &main_pages, &host_main, &main_indices));
  if (shape.extra_topk > 0) {
    SMLA_RETURN_IF_ERROR(gather_to_host_cache(device, layer.extra_cache, layer.host_extra_indices, entries,
                                              shape.seq_q, shape.extra_topk, &extra_pages, &host_extra,
                                              &extra_indices));
  }
  const std::vector<int32_t> main_lengths = lengths_of_entries(layer.host_main_lengths, entries);
  const std::vector<int32_t> extra_lengths =
      shape.extra_topk > 0 ? lengths_of_entries(layer.host_extra_lengths, entries) : std::vector<int32_t>();

  // q, the device's out and lse of the sampled entries (contiguous [s_q, h, ...] blocks per entry).
  const int64_t entry_values = static_cast<int64_t>(shape.seq_q) * shape.num_heads * smla::kHeadDim;
  const int64_t entry_heads = static_cast<int64_t>(shape.seq_q) * shape.num_heads;
  std::vector<uint16_t> q(sampled * entry_values), device_out(sampled * entry_values);
  std::vector<float> device_lse(sampled * entry_heads), sinks(shape.num_heads);
  for (int i = 0; i < sampled; ++i) {
    const int64_t entry = entries[i];
    SMLA_RETURN_IF_ERROR(device.copy_to_host(q.data() + i * entry_values,
                                             static_cast<const uint16_t*>(buffers.q) + entry * entry_values,
                                             entry_values * 2));
    SMLA_RETURN_IF_ERROR(device.copy_to_host(device_out.data() + i * entry_values,
                                             static_cast<const uint16_t*>(buffers.out) + entry * entry_values,
                                             entry_values * 2));
    SMLA_RETURN_IF_ERROR(device.copy_to_host(device_lse.data() + i * entry_heads,
                                             buffers.lse + entry * entry_heads, entry_heads * 4));
  }
  SMLA_RETURN_IF_ERROR(device.copy_to_host(sinks.data(), buffers.sinks, sinks.size() * 4));

  std::vector<uint16_t> reference_out(sampled * entry_values);
  std::vector<float> reference_lse(sampled * entry_heads);
  smla::DecodeArgs args{};
  smla::set_contiguous_strides(sample_shape, &args);
  args.q = q.data();
  args.main_cache = host_main;
  args.indices = main_indices.data();
  args.topk_length = main_lengths.data();
  if (shape.extra_topk > 0) {
    args.extra_cache = host_extra;
    args.extra_indices = extra_indices.data();
    args.extra_topk_length = extra_lengths.data();
  }
  args.attn_sink = sinks.data();
  args.softmax_scale = device_args.softmax_scale;
  args.out = reference_out.data();
  args.lse = reference_lse.data();
  smla::PlanOptions options = smla::default_plan_options();
  options.backend = SMLA_BACKEND_CPU;
  options.cpu_precision = SMLA_CPU_FLOAT64;
  BENCH_RETURN_IF_ERROR_CTX(smla::decode(sample_shape, args, options), "float64 CPU reference for --check");

  *result = CheckResult{};
  result->checked_rows = static_cast<int64_t>(sampled) * shape.seq_q;
  for (size_t i = 0; i < reference_out.size(); ++i) {
    const double actual = smla::bf16_bits_to_float(device_out[i]);
    const double reference = smla::bf16_bits_to_float(reference_out[i]);
    if (!out_within_tolerance(actual, reference)) ++result->elements_outside_tolerance;
    if (std::isfinite(actual) && std::isfinite(reference)) {
      result->max_abs_error_out = std::max(result->max_abs_error_out, std::fabs(actual - reference));
    }
  }
  for (size_t i = 0; i < reference_lse.size(); ++i) {
    if (!lse_within_tolerance(device_lse[i], reference_lse[i])) ++result->elements_outside_tolerance;
    if (std::isfinite(device_lse[i]) && std::isfinite(reference_lse[i])) {
      result->max_abs_error_lse = std::max(result->max_abs_error_lse,
                                           std::fabs(static_cast<double>(device_lse[i]) - reference_lse[i]));
    }
  }
  return smla::Status::Ok();
}

}  // namespace smla_bench
