// smla-bench: times smla's decode on the DSv4 shapes (issue #4 "benchmark first"; spec sections 7 and 9).
// CUDA backends: CUDA-graph replays timed with events, KV pool >= 2 GB, rotating index sets. CPU backend:
// host wall clock on a small pool. Every failure prints its message and exits non-zero.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "bench_device.h"
#include "bench_status.h"
#include "decode_case.h"
#include "options.h"
#include "report.h"
#include "run_info.h"
#include "shapes.h"
#include "smla/backend.h"
#include "smla/decode.h"

namespace smla_bench {
namespace {

constexpr double kBytesPerGb = 1e9;
// Share of the free device memory the pool may take (index sets, q/out and workspaces need the rest).
constexpr double kMaxPoolShareOfFreeMemory = 0.8;
constexpr int kExitCheckFailed = 3;
constexpr int kExitRowsSkipped = 4;

struct RowResult {
  std::string shape;
  std::string backend;
  std::string kernel;  // the plan's kernel; a model step lists its layers' distinct kernels, joined by '+'
  // Which build of the kernel ran where it has two (mma99-h32: "registers" for its register-gather build,
  // "staging" otherwise; Plan::register_gather); "-" for the kernels of one build. Joined like kernel.
  std::string build;
  int batch = 0, heads = 0, seq_q = 0, topk = 0, extra_topk = 0;
  int64_t main_page_block_size = 0, extra_page_block_size = 0;
  int layers = 1;
  int splits = 1;  // of the first call; a whole step reports its first layer's plan
  // How that plan merges its splits: "cluster" (inside the sm_90a kernel's clusters), "kernel" (the combine
  // kernel), "tail" / "body+tail" (the combine kernel, for the rows after the first whole waves / for the
  // split rows of both parts) or "none" (one split).
  std::string combine = "none";
  double median_us = 0, p10_us = 0, p90_us = 0;
  double bytes = 0, flops = 0;
  double copy_bytes_per_second = 0;
  double floor_us = 0;
  bool mixed_layer_types = false;  // a whole model step
  bool checked = false;
  CheckResult check;
};

// Defaults that differ between the CUDA and CPU devices.
struct DeviceSettings {
  std::vector<smla::Backend> backends;
  std::vector<int> batches;
  int iterations = 0, warmup = 0;
  double pool_bytes = 0;
  double copy_bytes_per_second = 0;
  bool compute_floor = true;
};

double percentile(std::vector<double> values, double fraction) {
  std::sort(values.begin(), values.end());
  const size_t index = static_cast<size_t>(std::lround(fraction * (values.size() - 1)));
  return values[index];
}

// One planned layer call of a group that is timed as a unit (a named shape: one; a model step: many).
struct PlannedLayer {
  const LayerInstance* layer = nullptr;
  const smla::Plan* plan = nullptr;
};

double group_floor_us(const std::vector<PlannedLayer>& group, const DeviceSettings& settings) {
  double floor_seconds = 0;
  for (const PlannedLayer& planned : group) {
    double call_seconds = planned.layer->bytes() / settings.copy_bytes_per_second;
    if (settings.compute_floor) {
      call_seconds = std::max(call_seconds, planned.layer->flops() / kSpecDenseBf16FlopsPerSecond);
    }
    floor_seconds += call_seconds;
  }
  return floor_seconds * 1e6;
}

smla::Status time_group(BenchDevice& device, const std::vector<PlannedLayer>& group, const IoBuffers& buffers,
                        void* workspace, size_t workspace_bytes, const BenchOptions& options,
                        const DeviceSettings& settings, RowResult* row) {
  std::vector<EnqueueFn> calls;
  for (int set = 0; set < options.index_sets; ++set) {
    std::vector<smla::DecodeArgs> args;
    for (const PlannedLayer& planned : group) args.push_back(make_decode_args(*planned.layer, set, buffers));
    calls.push_back([group, args, workspace, workspace_bytes](void* stream) -> smla::Status {
      for (size_t i = 0; i < group.size(); ++i) {
        SMLA_RETURN_IF_ERROR(smla::run(*group[i].plan, args[i], workspace, workspace_bytes, stream));
      }
      return smla::Status::Ok();
    });
  }
  TimingSamples samples;
  BENCH_RETURN_IF_ERROR_CTX(device.time_calls(calls, settings.warmup, settings.iterations, &samples),
                            "timing " + row->shape + " on " + row->backend);
  row->median_us = percentile(samples.times_us, 0.5);
  row->p10_us = percentile(samples.times_us, 0.1);
  row->p90_us = percentile(samples.times_us, 0.9);
  row->bytes = 0;
  row->flops = 0;
  for (const PlannedLayer& planned : group) {
    row->bytes += planned.layer->bytes();
    row->flops += planned.layer->flops();
  }
  row->copy_bytes_per_second = settings.copy_bytes_per_second;
  row->floor_us = group_floor_us(group, settings);
  row->layers = static_cast<int>(group.size());
  row->splits = group.front().plan->num_splits();
  // "tail": rows [0, plan->body_rows()) unsplit, the rows after them split (and combined by the combine
  // kernel); "body+tail": the body rows split too, in fewer splits than the tail's.
  const smla::Plan& plan = *group.front().plan;
  row->combine = row->splits == 1          ? "none"
                 : plan.cluster_combine()  ? "cluster"
                 : plan.body_rows() == 0   ? "kernel"
                 : plan.body_splits() == 1 ? "tail"
                                           : "body+tail";
  row->kernel.clear();
  row->build.clear();
  const auto add_distinct = [](std::string* list, const std::string& name) {
    if (("+" + *list + "+").find("+" + name + "+") == std::string::npos)
      *list += (list->empty() ? "" : "+") + name;
  };
  for (const PlannedLayer& planned : group) {
    add_distinct(&row->kernel, planned.plan->kernel_name());
    if (std::string(planned.plan->kernel_name()) == "mma99-h32")
      add_distinct(&row->build, planned.plan->register_gather() ? "registers" : "staging");
  }
  if (row->build.empty()) row->build = "-";
  const smla::DecodeShape& shape = group.front().layer->shape;
  row->batch = shape.batch;
  row->heads = shape.num_heads;
  row->seq_q = shape.seq_q;
  row->topk = shape.topk;
  row->extra_topk = shape.extra_topk;
  row->main_page_block_size = group.front().layer->main_cache.page_block_size;
  row->extra_page_block_size = shape.extra_topk > 0 ? group.front().layer->extra_cache.page_block_size : 0;
  return smla::Status::Ok();
}

smla::Status make_backend_plan(smla::Backend backend, const smla::DecodeShape& shape,
                               const BenchOptions& options, smla::Plan* plan) {
  smla::PlanOptions plan_options = smla::default_plan_options();
  plan_options.backend = backend;
  plan_options.num_splits = options.num_splits;
  plan_options.cpu_precision = options.cpu_float64 ? SMLA_CPU_FLOAT64 : SMLA_CPU_FLOAT32;
  plan_options.cpu_threads = options.cpu_threads;
  return with_context(smla::make_plan(shape, plan_options, plan),
                      std::string("smla::make_plan for backend ") + smla::backend_name(backend));
}

// Zeroed workspace (its first bytes are the device error counter).
smla::Status allocate_workspace(BenchDevice& device, size_t bytes, void** workspace) {
  *workspace = nullptr;
  if (bytes == 0) return smla::Status::Ok();
  SMLA_RETURN_IF_ERROR(device.allocate(bytes, workspace));
  return device.fill_bytes(*workspace, 0, bytes);
}

void release_io_buffers(BenchDevice& device, IoBuffers* buffers) {
  device.release(buffers->q);
  device.release(buffers->out);
  device.release(buffers->lse);
  device.release(buffers->sinks);
  *buffers = IoBuffers{};
}

smla::Status run_check(BenchDevice& device, const smla::Plan& plan, const LayerInstance& layer,
                       const IoBuffers& buffers, void* workspace, RowResult* row) {
  BENCH_RETURN_IF_ERROR_CTX(check_layer(device, plan, layer, buffers, workspace, &row->check),
                            "--check of " + row->shape + " on " + row->backend);
  row->checked = true;
  if (row->check.elements_outside_tolerance > 0) {
    std::fprintf(
        stderr,
        "check FAILED: %s backend %s b=%d: %lld values out of tolerance (max |err| out %.3g, lse %.3g)\n",
        row->shape.c_str(), row->backend.c_str(), layer.shape.batch,
        static_cast<long long>(row->check.elements_outside_tolerance), row->check.max_abs_error_out,
        row->check.max_abs_error_lse);
  }
  return smla::Status::Ok();
}

// A backend that refuses a shape (unsupported, invalid for it) costs its row, not the whole run: the
// message goes to stderr and into `skipped` (the exit status is then non-zero). CUDA errors and internal
// failures stop the run, since the device state can no longer be trusted.
smla::Status keep_going_unless_fatal(const smla::Status& status, const std::string& what,
                                     std::vector<std::string>* skipped) {
  if (status.ok()) return status;
  const smla_status_t code = status.code();
  if (code != SMLA_STATUS_INVALID_ARGUMENT && code != SMLA_STATUS_UNSUPPORTED &&
      code != SMLA_STATUS_NO_DEVICE) {
    return status;
  }
  std::fprintf(stderr, "  skipped %s: %s (%s)\n", what.c_str(), status.message().c_str(),
               smla::status_code_name(code));
  skipped->push_back(what + ": " + status.message());
  return smla::Status::Ok();
}

double pool_bytes_for(BenchDevice& device, const DeviceSettings& settings) {
  return std::min(settings.pool_bytes,
                  kMaxPoolShareOfFreeMemory * static_cast<double>(device.free_memory_bytes()));
}

// A layer's main cache and, when its shape has an extra list, its extra cache (seed main_seed + 1), of
// the given pool bytes each; failures name `where`.
smla::Status make_layer_caches(BenchDevice& device, const LayerShape& shape, int64_t main_bytes,
                               int64_t extra_bytes, uint64_t main_seed, const std::string& where,
                               smla::CacheLayout* main_cache, smla::CacheLayout* extra_cache) {
  BENCH_RETURN_IF_ERROR_CTX(
      make_filled_cache(device, shape.main_page_block_size, shape.topk, main_bytes, main_seed, main_cache),
      where + ": main cache");
  if (shape.extra_topk > 0) {
    BENCH_RETURN_IF_ERROR_CTX(make_filled_cache(device, shape.extra_page_block_size, shape.extra_topk,
                                                extra_bytes, main_seed + 1, extra_cache),
                              where + ": extra cache");
  }
  return smla::Status::Ok();
}

// The named shapes a run times: --shape, or all of them.
std::vector<std::string> shape_names(const BenchOptions& options) {
  std::vector<std::string> names = options.shapes;
  if (names.empty()) {
    for (const LayerShape& shape : named_shapes()) names.push_back(shape.name);
  }
  return names;
}

// Rows (or, for --model, steps) a device's part of the run will time: the N of the [k/N] progress.
int planned_measurements(const BenchOptions& options, const DeviceSettings& settings) {
  const size_t per_shape = settings.batches.size() * settings.backends.size();
  return static_cast<int>(options.model.empty() ? shape_names(options).size() * per_shape : per_shape);
}

smla::Status run_named_shapes(BenchDevice& device, const DeviceSettings& settings,
                              const BenchOptions& options, Progress* progress, std::vector<RowResult>* rows,
                              std::vector<std::string>* skipped) {
  const std::vector<std::string> names = shape_names(options);
  std::mt19937_64 rng(options.seed);
  for (const std::string& name : names) {
    LayerShape layer_shape;
    find_named_shape(name, &layer_shape);
    if (options.heads > 0) layer_shape.heads = options.heads;
    if (options.main_page_block_size > 0) layer_shape.main_page_block_size = options.main_page_block_size;

    device.free_all();
    const double pool_bytes = pool_bytes_for(device, settings);
    const double main_share =
        static_cast<double>(layer_shape.topk) / (layer_shape.topk + layer_shape.extra_topk);
    smla::CacheLayout main_cache{}, extra_cache{};
    SMLA_RETURN_IF_ERROR(make_layer_caches(device, layer_shape, static_cast<int64_t>(pool_bytes * main_share),
                                           static_cast<int64_t>(pool_bytes * (1 - main_share)), options.seed,
                                           name, &main_cache, &extra_cache));
    for (int batch : settings.batches) {
      const smla::DecodeShape shape{batch, layer_shape.seq_q, layer_shape.heads, layer_shape.topk,
                                    layer_shape.extra_topk};
      IoBuffers buffers;
      SMLA_RETURN_IF_ERROR(make_io_buffers(device, shape, options.seed + batch, &buffers));
      LayerInstance layer;
      const LengthChoice lengths{options.random_lengths ? LengthMode::kRandom : LengthMode::kFull, 0, 0};
      SMLA_RETURN_IF_ERROR(make_layer_instance(device, shape, main_cache, extra_cache, options.index_sets,
                                               lengths, rng, &layer));
      for (smla::Backend backend : settings.backends) {
        RowResult row;
        row.shape = name;
        row.backend = smla::backend_name(backend);
        void* workspace = nullptr;
        auto measure = [&]() -> smla::Status {
          smla::Plan plan;
          SMLA_RETURN_IF_ERROR(make_backend_plan(backend, shape, options, &plan));
          SMLA_RETURN_IF_ERROR(allocate_workspace(device, plan.workspace_bytes(), &workspace));
          if (options.check) SMLA_RETURN_IF_ERROR(run_check(device, plan, layer, buffers, workspace, &row));
          return time_group(device, {{&layer, &plan}}, buffers, workspace, plan.workspace_bytes(), options,
                            settings, &row);
        };
        const smla::Status status = measure();
        device.release(workspace);
        const std::string progress_label = progress->next();
        SMLA_RETURN_IF_ERROR(keep_going_unless_fatal(
            status, name + " " + row.backend + " b=" + std::to_string(batch), skipped));
        if (!status.ok()) continue;
        rows->push_back(row);
        std::fprintf(stderr, "%s %s %s b=%d: %.2f us\n", progress_label.c_str(), name.c_str(),
                     row.backend.c_str(), batch, row.median_us);
      }
      release_layer_instance(device, &layer);
      release_io_buffers(device, &buffers);
    }
  }
  device.free_all();
  return smla::Status::Ok();
}

// One decode step of attention of a whole model: each layer has its own caches, sized in proportion to
// what the context implies (scaled to the pool), and its own index sets.
smla::Status run_model(BenchDevice& device, const DeviceSettings& settings, const BenchOptions& options,
                       Progress* progress, std::vector<RowResult>* rows, std::vector<std::string>* skipped) {
  std::vector<ModelLayerType> types;
  std::string error;
  if (!model_layer_types(options.model, options.context, options.heads, options.main_page_block_size, &types,
                         &error)) {
    return smla::Status::InvalidArgument(error);
  }
  std::mt19937_64 rng(options.seed);
  const std::string prefix = options.model + "@" + std::to_string(options.context);
  for (int batch : settings.batches) {
    device.free_all();
    double natural_bytes = 0;
    for (const ModelLayerType& type : types) {
      natural_bytes += static_cast<double>(type.num_layers) * batch *
                       (type.main_tokens_per_seq + type.extra_tokens_per_seq) * kRecordBytesPerToken;
    }
    const double scale = pool_bytes_for(device, settings) / natural_bytes;

    // layers[t] holds the instances of type t; deque-like stability via reserve.
    std::vector<std::vector<LayerInstance>> layers(types.size());
    uint64_t cache_seed = options.seed;
    for (size_t t = 0; t < types.size(); ++t) {
      const ModelLayerType& type = types[t];
      const smla::DecodeShape shape{batch, type.shape.seq_q, type.shape.heads, type.shape.topk,
                                    type.shape.extra_topk};
      layers[t].resize(type.num_layers);
      for (int l = 0; l < type.num_layers; ++l) {
        smla::CacheLayout main_cache{}, extra_cache{};
        const std::string where = prefix + " " + type.shape.name + " layer " + std::to_string(l);
        SMLA_RETURN_IF_ERROR(make_layer_caches(
            device, type.shape,
            static_cast<int64_t>(scale * batch * type.main_tokens_per_seq * kRecordBytesPerToken),
            static_cast<int64_t>(scale * batch * type.extra_tokens_per_seq * kRecordBytesPerToken),
            cache_seed + 1, where, &main_cache, &extra_cache));
        cache_seed += type.shape.extra_topk > 0 ? 2 : 1;  // one seed per cache made
        const LengthChoice lengths{LengthMode::kFixed, type.main_length, type.extra_length};
        SMLA_RETURN_IF_ERROR(make_layer_instance(device, shape, main_cache, extra_cache, options.index_sets,
                                                 lengths, rng, &layers[t][l]));
      }
    }
    IoBuffers buffers;
    const smla::DecodeShape io_shape{batch, 1, types.front().shape.heads, 1, 0};
    SMLA_RETURN_IF_ERROR(make_io_buffers(device, io_shape, options.seed + batch, &buffers));

    for (smla::Backend backend : settings.backends) {
      void* workspace = nullptr;
      std::vector<RowResult> backend_rows;
      const std::string progress_label = progress->next();
      auto measure = [&]() -> smla::Status {
        std::vector<smla::Plan> plans(types.size());
        size_t workspace_bytes = 0;
        for (size_t t = 0; t < types.size(); ++t) {
          SMLA_RETURN_IF_ERROR(make_backend_plan(backend, layers[t].front().shape, options, &plans[t]));
          workspace_bytes = std::max(workspace_bytes, plans[t].workspace_bytes());
        }
        SMLA_RETURN_IF_ERROR(allocate_workspace(device, workspace_bytes, &workspace));
        std::vector<PlannedLayer> step;
        std::vector<std::vector<PlannedLayer>> per_type(types.size());
        for (size_t t = 0; t < types.size(); ++t) {
          for (const LayerInstance& layer : layers[t]) {
            step.push_back({&layer, &plans[t]});
            per_type[t].push_back({&layer, &plans[t]});
          }
        }
        RowResult step_row;
        step_row.shape = prefix + ":step";
        step_row.backend = smla::backend_name(backend);
        step_row.mixed_layer_types = true;
        SMLA_RETURN_IF_ERROR(
            time_group(device, step, buffers, workspace, workspace_bytes, options, settings, &step_row));
        backend_rows.push_back(step_row);
        std::fprintf(stderr, "%s %s %s b=%d: %.2f us per step\n", progress_label.c_str(),
                     step_row.shape.c_str(), step_row.backend.c_str(), batch, step_row.median_us);
        for (size_t t = 0; t < types.size(); ++t) {
          RowResult row;
          row.shape = prefix + ":" + types[t].shape.name;
          row.backend = smla::backend_name(backend);
          if (options.check) {
            SMLA_RETURN_IF_ERROR(run_check(device, plans[t], layers[t].front(), buffers, workspace, &row));
          }
          SMLA_RETURN_IF_ERROR(
              time_group(device, per_type[t], buffers, workspace, workspace_bytes, options, settings, &row));
          backend_rows.push_back(row);
        }
        return smla::Status::Ok();
      };
      const smla::Status status = measure();
      device.release(workspace);
      SMLA_RETURN_IF_ERROR(keep_going_unless_fatal(
          status, prefix + " " + smla::backend_name(backend) + " b=" + std::to_string(batch), skipped));
      rows->insert(rows->end(), backend_rows.begin(), backend_rows.end());
    }
  }
  device.free_all();
  return smla::Status::Ok();
}

Table results_table(const std::vector<RowResult>& rows) {
  Table table;
  table.columns = {"shape",    "backend",  "kernel",      "build",    "b",           "h",
                   "s_q",      "topk",     "extra_topk",  "P_main",   "P_extra",     "layers",
                   "splits",   "combine",  "time_us",     "p10_us",   "p90_us",      "us_per_layer",
                   "GB_per_s", "copy_pct", "TFLOP_per_s", "floor_us", "max_err_out", "max_err_lse"};
  for (const RowResult& row : rows) {
    const double seconds = row.median_us * 1e-6;
    const double bytes_per_second = row.bytes / seconds;
    const double nan = std::nan("");
    // A whole model step mixes layer types: its per-call geometry columns say so instead of showing the
    // first layer's.
    auto per_call = [&](Cell cell) { return row.mixed_layer_types ? text_cell("mixed") : cell; };
    table.add_row({text_cell(row.shape),
                   text_cell(row.backend),
                   text_cell(row.kernel),
                   text_cell(row.build),
                   integer_cell(row.batch),
                   integer_cell(row.heads),
                   integer_cell(row.seq_q),
                   per_call(integer_cell(row.topk)),
                   per_call(integer_cell(row.extra_topk)),
                   per_call(integer_cell(row.main_page_block_size)),
                   per_call(integer_cell(row.extra_page_block_size)),
                   integer_cell(row.layers),
                   per_call(integer_cell(row.splits)),
                   per_call(text_cell(row.combine)),
                   number_cell(row.median_us, 2),
                   number_cell(row.p10_us, 2),
                   number_cell(row.p90_us, 2),
                   number_cell(row.median_us / row.layers, 2),
                   number_cell(bytes_per_second / 1e9, 1),
                   number_cell(100.0 * bytes_per_second / row.copy_bytes_per_second, 1),
                   number_cell(row.flops / seconds / 1e12, 2),
                   number_cell(row.floor_us, 2),
                   number_cell(row.checked ? row.check.max_abs_error_out : nan, 6),
                   number_cell(row.checked ? row.check.max_abs_error_lse : nan, 7)});
  }
  return table;
}

// Spec section 9 for every named shape and batch (or one model step): no device involved.
Table roofline_table(const BenchOptions& options) {
  Table table;
  table.columns = {"shape",
                   "b",
                   "h",
                   "s_q",
                   "topk",
                   "extra_topk",
                   "tokens_per_row",
                   "MB_per_call",
                   "GFLOP_per_call",
                   "memory_floor_us",
                   "compute_floor_us"};
  const std::vector<int> batches =
      options.batches.empty() ? std::vector<int>{1, 8, 32, 64, 128} : options.batches;
  auto add = [&](const std::string& name, int batch, int heads, int seq_q, int topk, int extra_topk,
                 int length, int extra_length, int layers) {
    const int64_t rows = static_cast<int64_t>(batch) * seq_q;
    const int64_t tokens = rows * (length + extra_length);
    const double bytes = layers * call_bytes(rows, heads, topk, extra_topk, tokens);
    const double flops = layers * call_flops(heads, tokens);
    table.add_row({text_cell(name), integer_cell(batch), integer_cell(heads), integer_cell(seq_q),
                   integer_cell(topk), integer_cell(extra_topk), integer_cell(length + extra_length),
                   number_cell(bytes / 1e6, 3), number_cell(flops / 1e9, 3),
                   number_cell(bytes / kSpecCopyBytesPerSecond * 1e6, 2),
                   number_cell(flops / kSpecDenseBf16FlopsPerSecond * 1e6, 2)});
  };
  if (!options.model.empty()) {
    std::vector<ModelLayerType> types;
    std::string error;
    if (!model_layer_types(options.model, options.context, options.heads, options.main_page_block_size,
                           &types, &error)) {
      return table;
    }
    for (int batch : batches) {
      for (const ModelLayerType& type : types) {
        add(options.model + "@" + std::to_string(options.context) + ":" + type.shape.name + " x" +
                std::to_string(type.num_layers),
            batch, type.shape.heads, 1, type.shape.topk, type.shape.extra_topk, type.main_length,
            type.extra_length, type.num_layers);
      }
    }
    return table;
  }
  std::vector<std::string> names = options.shapes;
  if (names.empty()) {
    for (const LayerShape& shape : named_shapes()) names.push_back(shape.name);
  }
  for (const std::string& name : names) {
    LayerShape shape;
    find_named_shape(name, &shape);
    if (options.heads > 0) shape.heads = options.heads;
    for (int batch : batches) {
      add(name, batch, shape.heads, shape.seq_q, shape.topk, shape.extra_topk, shape.topk, shape.extra_topk,
          1);
    }
  }
  return table;
}

bool contains(const std::vector<smla::Backend>& backends, smla::Backend backend) {
  return std::find(backends.begin(), backends.end(), backend) != backends.end();
}

DeviceSettings cuda_settings(const BenchOptions& options, const std::vector<smla::Backend>& backends) {
  DeviceSettings settings;
  settings.backends = backends;
  settings.batches = options.batches.empty() ? std::vector<int>{1, 8, 32, 64, 128} : options.batches;
  settings.iterations = options.iterations > 0 ? options.iterations : 200;
  settings.warmup = options.warmup >= 0 ? options.warmup : 20;
  settings.pool_bytes = (options.pool_gb > 0 ? options.pool_gb : 2.5) * kBytesPerGb;
  return settings;
}

DeviceSettings cpu_settings(const BenchOptions& options) {
  DeviceSettings settings;
  settings.backends = {SMLA_BACKEND_CPU};
  settings.batches = options.batches.empty() ? std::vector<int>{1, 4} : options.batches;
  settings.iterations = options.iterations > 0 ? options.iterations : 5;
  settings.warmup = options.warmup >= 0 ? options.warmup : 1;
  settings.pool_bytes = (options.pool_gb > 0 ? options.pool_gb : 0.25) * kBytesPerGb;
  settings.compute_floor = false;
  return settings;
}

// `info` comes with what needs no device (collect_run_info); the run adds the device and bandwidths.
smla::Status run(const BenchOptions& options, RunInfo* info, int* exit_code) {
  *exit_code = 0;
  if (options.roofline) {
    if (!options.model.empty()) {
      std::vector<ModelLayerType> types;
      std::string error;
      if (!model_layer_types(options.model, options.context, options.heads, 0, &types, &error)) {
        return smla::Status::InvalidArgument(error);
      }
    }
    return write_output(options.output, format_table(roofline_table(options), options.format));
  }

  const bool have_cuda = smla::cuda_device_available();
  std::vector<smla::Backend> requested = options.backends;
  if (requested.empty()) {
    if (have_cuda) requested = {SMLA_BACKEND_CUDA, SMLA_BACKEND_CUDA_REF};
    requested.push_back(SMLA_BACKEND_CPU);
  }
  std::vector<RowResult> rows;
  std::vector<std::string> skipped;

  std::vector<smla::Backend> cuda_backends;
  for (smla::Backend backend : requested) {
    if (backend == SMLA_BACKEND_CUDA || backend == SMLA_BACKEND_CUDA_REF) cuda_backends.push_back(backend);
  }
  const bool run_cpu = contains(requested, SMLA_BACKEND_CPU);
  const int cuda_measurements =
      cuda_backends.empty() ? 0 : planned_measurements(options, cuda_settings(options, cuda_backends));
  Progress progress(cuda_measurements + (run_cpu ? planned_measurements(options, cpu_settings(options)) : 0));
  if (!cuda_backends.empty()) {
    std::unique_ptr<BenchDevice> device;
    SMLA_RETURN_IF_ERROR(with_context(make_cuda_device(&device), "--backend asks for a CUDA backend"));
    SMLA_RETURN_IF_ERROR(add_current_cuda_device(info));
    DeviceSettings settings = cuda_settings(options, cuda_backends);
    BENCH_RETURN_IF_ERROR_CTX(
        device->measure_copy_bandwidth(static_cast<size_t>(options.copy_gb * kBytesPerGb),
                                       &settings.copy_bytes_per_second),
        "measuring the device copy bandwidth");
    info->device_copy_bytes_per_second = settings.copy_bytes_per_second;
    std::fprintf(
        stderr,
        "device: %s; copy bandwidth (read + write) %.1f GB/s; compute floor uses the spec's %.0f TFLOP/s\n",
        device->description(), settings.copy_bytes_per_second / 1e9, kSpecDenseBf16FlopsPerSecond / 1e12);
    SMLA_RETURN_IF_ERROR(options.model.empty()
                             ? run_named_shapes(*device, settings, options, &progress, &rows, &skipped)
                             : run_model(*device, settings, options, &progress, &rows, &skipped));
  }
  if (run_cpu) {
    std::unique_ptr<BenchDevice> device = make_host_device();
    DeviceSettings settings = cpu_settings(options);
    SMLA_RETURN_IF_ERROR(device->measure_copy_bandwidth(
        static_cast<size_t>(std::min(options.copy_gb, 0.25) * kBytesPerGb), &settings.copy_bytes_per_second));
    info->host_copy_bytes_per_second = settings.copy_bytes_per_second;
    std::fprintf(stderr, "cpu backend (%s): host memcpy bandwidth (read + write) %.1f GB/s\n",
                 options.cpu_float64 ? "float64" : "float32", settings.copy_bytes_per_second / 1e9);
    SMLA_RETURN_IF_ERROR(options.model.empty()
                             ? run_named_shapes(*device, settings, options, &progress, &rows, &skipped)
                             : run_model(*device, settings, options, &progress, &rows, &skipped));
  }
  SMLA_RETURN_IF_ERROR(
      write_output(options.output, format_report(results_table(rows), *info, options.format)));
  if (!skipped.empty()) {
    std::fprintf(stderr, "smla-bench: %zu row(s) skipped:\n", skipped.size());
    for (const std::string& line : skipped) std::fprintf(stderr, "  %s\n", line.c_str());
    *exit_code = kExitRowsSkipped;
  }
  for (const RowResult& row : rows) {
    if (row.checked && row.check.elements_outside_tolerance > 0) *exit_code = kExitCheckFailed;
  }
  return smla::Status::Ok();
}

}  // namespace
}  // namespace smla_bench

int main(int argc, char** argv) {
  smla_bench::BenchOptions options;
  smla::Status status = smla_bench::parse_options(argc, argv, &options);
  if (!status.ok()) {
    std::fprintf(stderr, "smla-bench: %s\n", status.message().c_str());
    return 2;
  }
  if (options.help) {
    std::cout << smla_bench::usage_text();
    return 0;
  }
  int exit_code = 0;
  smla_bench::RunInfo info = smla_bench::collect_run_info(argc, argv);
  status = smla_bench::run(options, &info, &exit_code);
  if (!status.ok()) {
    std::fprintf(stderr, "smla-bench: error (%s): %s\n", smla::status_code_name(status.code()),
                 status.message().c_str());
    return 1;
  }
  return exit_code;
}
