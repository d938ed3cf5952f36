#include "options.h"

#include <cstdlib>
#include <sstream>

#include "shapes.h"

namespace smla_bench {
namespace {

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> items;
  std::stringstream stream(text);
  std::string item;
  while (std::getline(stream, item, ',')) {
    if (!item.empty()) items.push_back(item);
  }
  return items;
}

smla::Status parse_int64(const std::string& flag, const std::string& text, int64_t minimum, int64_t* value) {
  char* end = nullptr;
  const long long parsed = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || parsed < minimum) {
    return smla::Status::InvalidArgument(flag + " expects an integer >= " + std::to_string(minimum) +
                                         ", got '" + text + "'");
  }
  *value = parsed;
  return smla::Status::Ok();
}

smla::Status parse_int(const std::string& flag, const std::string& text, int minimum, int* value) {
  int64_t parsed = 0;
  SMLA_RETURN_IF_ERROR(parse_int64(flag, text, minimum, &parsed));
  if (parsed > 1'000'000'000) return smla::Status::InvalidArgument(flag + " value " + text + " is too large");
  *value = static_cast<int>(parsed);
  return smla::Status::Ok();
}

smla::Status parse_double(const std::string& flag, const std::string& text, double* value) {
  char* end = nullptr;
  const double parsed = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0' || !(parsed > 0)) {
    return smla::Status::InvalidArgument(flag + " expects a positive number, got '" + text + "'");
  }
  *value = parsed;
  return smla::Status::Ok();
}

}  // namespace

std::string usage_text() {
  return "smla-bench: time smla's sparse MLA decode on DSv4 shapes (shapes and roofline:\n"
         "docs/dsv4-sparse-mla.md sections 7 and 9)\n"
         "\n"
         "Usage: smla-bench [flags]         (every flag with a value takes --flag value or --flag=value)\n"
         "\n"
         "What to run:\n"
         "  --shape a,b,...        named shapes (default: all): " +
         named_shape_list() +
         "\n"
         "  --batch 1,8,...        batch sizes (default: 1,8,32,64,128 on CUDA; 1,4 for the cpu backend)\n"
         "  --backend a,b,...      cuda, cuda-ref, cpu (default: every available backend; cpu runs at the "
         "small\n"
         "                         cpu batch list unless --batch is given)\n"
         "  --lengths full|random  full: topk_length = topk, extra length = extra_topk (default); random:\n"
         "                         per batch row uniform in [0, width], bytes counted from the actual "
         "lengths\n"
         "  --main-page-size N     P of the main (SWA) cache instead of the shape's (P=256 vs P=64)\n"
         "  --heads N              local heads instead of the shape's (1..128)\n"
         "  --num-splits N         force the split-KV factor of the cuda backend (default: planner's)\n"
         "  --model dsv4-flash|dsv4-pro --context N\n"
         "                         one whole decode step of attention: every layer with its own caches and\n"
         "                         real layer mix, captured as one CUDA graph; also one graph per layer "
         "type\n"
         "  --roofline             print bytes, FLOPs and the floors of spec section 9 (3.0 TB/s copy,\n"
         "                         800 TFLOP/s dense bf16) per named shape and batch; needs no device\n"
         "\n"
         "Measurement:\n"
         "  --iters N              timed calls per row (default 200 CUDA-graph replays; 5 on the cpu)\n"
         "  --warmup N             untimed calls first (default 20; 1 on the cpu)\n"
         "  --index-sets N         index sets rotated between calls so consecutive calls read different\n"
         "                         memory (default 8; one CUDA graph per set)\n"
         "  --pool-gb G            KV pool per shape, split between the main and extra caches in proportion\n"
         "                         to their index widths (default 2.5 on CUDA, 0.25 on the cpu)\n"
         "  --copy-gb G            size of the device-to-device copy that measures copy bandwidth (default "
         "1)\n"
         "  --check                before timing, compare up to 4 batch entries of each row with the "
         "float64\n"
         "                         CPU reference; prints max errors, exits 3 if any value is out of "
         "tolerance\n"
         "  --cpu-float64          cpu backend in float64 (default float32)\n"
         "  --cpu-threads N        cpu backend threads (default: all)\n"
         "  --seed N               random seed for caches, indices, lengths, q and sinks (default 1234)\n"
         "\n"
         "Output:\n"
         "  --format table|csv|json|markdown   (default table)\n"
         "  --output FILE          write there instead of stdout\n"
         "  --help                 this text\n"
         "\n"
         "Every format carries the run's metadata: smla version and git commit, date, CUDA device, compute\n"
         "capability, NVIDIA driver, CUDA driver and runtime versions, measured copy bandwidths, host CPU\n"
         "and command line (JSON: {\"metadata\": {...}, \"rows\": [...]}; CSV: extra columns on every row;\n"
         "table and markdown: a header). Progress ([k/N] per row) goes to stderr.\n"
         "\n"
         "Columns: time_us is the median call time (CUDA events around each graph replay; host wall clock "
         "on\n"
         "the cpu), p10_us/p90_us its percentiles; bytes and FLOPs follow spec section 9 (584 B per "
         "attended\n"
         "token, 1 KiB q + 1 KiB out per head, 4 B per index; 2*h*1024 FLOPs per token); copy_pct is GB/s as "
         "a\n"
         "share of the measured copy bandwidth (read + write); floor_us = max(bytes / measured copy "
         "bandwidth,\n"
         "FLOPs / 800e12) summed over the calls (the 800 TFLOP/s is the spec's number, not measured; the "
         "cpu\n"
         "rows use the host memcpy bandwidth and no compute floor). combine says how a split call merges\n"
         "its splits: cluster (inside the sm_90a kernel's thread-block clusters), kernel (the combine\n"
         "kernel), tail (the first rows unsplit, filling whole waves, and only the rows after them split\n"
         "and combined), body+tail (the first rows in fewer splits filling whole waves, the rest in more;\n"
         "both through the combine kernel) or none (one split). build names the build of a kernel that has\n"
         "two: mma99-h32 runs its register-gather build (registers) on calls whose CTAs walk many tiles and\n"
         "its staging build otherwise; - for the kernels of one build.\n";
}

smla::Status parse_options(int argc, char** argv, BenchOptions* options) {
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    // --flag=value is --flag value; a flag without a value given one is an error (see `value` below).
    std::string inline_value;
    bool has_inline_value = false;
    if (const size_t equals = flag.find('='); flag.rfind("--", 0) == 0 && equals != std::string::npos) {
      inline_value = flag.substr(equals + 1);
      flag.resize(equals);
      has_inline_value = true;
    }
    bool value_taken = false;
    auto value = [&](std::string* text) -> smla::Status {
      value_taken = true;
      if (has_inline_value) {
        *text = inline_value;
        return smla::Status::Ok();
      }
      if (i + 1 >= argc) return smla::Status::InvalidArgument(flag + " needs a value");
      *text = argv[++i];
      return smla::Status::Ok();
    };
    std::string text;
    if (flag == "--help" || flag == "-h") {
      options->help = true;
    } else if (flag == "--shape") {
      SMLA_RETURN_IF_ERROR(value(&text));
      for (const std::string& name : split_list(text)) {
        LayerShape shape;
        if (!find_named_shape(name, &shape)) {
          return smla::Status::InvalidArgument("--shape: unknown shape '" + name +
                                               "'; valid: " + named_shape_list());
        }
        options->shapes.push_back(name);
      }
    } else if (flag == "--batch") {
      SMLA_RETURN_IF_ERROR(value(&text));
      options->batches.clear();
      for (const std::string& item : split_list(text)) {
        int batch = 0;
        SMLA_RETURN_IF_ERROR(parse_int("--batch", item, 1, &batch));
        options->batches.push_back(batch);
      }
      if (options->batches.empty()) return smla::Status::InvalidArgument("--batch needs at least one size");
    } else if (flag == "--backend") {
      SMLA_RETURN_IF_ERROR(value(&text));
      for (const std::string& name : split_list(text)) {
        smla::Backend backend = SMLA_BACKEND_AUTO;
        SMLA_RETURN_IF_ERROR(smla::parse_backend(name, &backend));
        if (backend == SMLA_BACKEND_AUTO) {
          return smla::Status::InvalidArgument("--backend: name the backends to time (cuda, cuda-ref, cpu)");
        }
        options->backends.push_back(backend);
      }
    } else if (flag == "--lengths") {
      SMLA_RETURN_IF_ERROR(value(&text));
      if (text != "full" && text != "random") {
        return smla::Status::InvalidArgument("--lengths expects full or random, got '" + text + "'");
      }
      options->random_lengths = text == "random";
    } else if (flag == "--main-page-size") {
      SMLA_RETURN_IF_ERROR(value(&text));
      SMLA_RETURN_IF_ERROR(parse_int(flag, text, 1, &options->main_page_block_size));
    } else if (flag == "--heads") {
      SMLA_RETURN_IF_ERROR(value(&text));
      SMLA_RETURN_IF_ERROR(parse_int(flag, text, 1, &options->heads));
      if (options->heads > 128) return smla::Status::InvalidArgument("--heads must be in 1..128");
    } else if (flag == "--num-splits") {
      SMLA_RETURN_IF_ERROR(value(&text));
      SMLA_RETURN_IF_ERROR(parse_int(flag, text, 0, &options->num_splits));
    } else if (flag == "--iters") {
      SMLA_RETURN_IF_ERROR(value(&text));
      SMLA_RETURN_IF_ERROR(parse_int(flag, text, 1, &options->iterations));
    } else if (flag == "--warmup") {
      SMLA_RETURN_IF_ERROR(value(&text));
      SMLA_RETURN_IF_ERROR(parse_int(flag, text, 0, &options->warmup));
    } else if (flag == "--index-sets") {
      SMLA_RETURN_IF_ERROR(value(&text));
      SMLA_RETURN_IF_ERROR(parse_int(flag, text, 1, &options->index_sets));
    } else if (flag == "--pool-gb") {
      SMLA_RETURN_IF_ERROR(value(&text));
      SMLA_RETURN_IF_ERROR(parse_double(flag, text, &options->pool_gb));
    } else if (flag == "--copy-gb") {
      SMLA_RETURN_IF_ERROR(value(&text));
      SMLA_RETURN_IF_ERROR(parse_double(flag, text, &options->copy_gb));
    } else if (flag == "--format") {
      SMLA_RETURN_IF_ERROR(value(&text));
      if (!parse_output_format(text, &options->format)) {
        return smla::Status::InvalidArgument("--format expects table, csv, json or markdown, got '" + text +
                                             "'");
      }
    } else if (flag == "--output") {
      SMLA_RETURN_IF_ERROR(value(&options->output));
    } else if (flag == "--seed") {
      SMLA_RETURN_IF_ERROR(value(&text));
      int64_t seed = 0;
      SMLA_RETURN_IF_ERROR(parse_int64(flag, text, 0, &seed));
      options->seed = static_cast<uint64_t>(seed);
    } else if (flag == "--check") {
      options->check = true;
    } else if (flag == "--cpu-float64") {
      options->cpu_float64 = true;
    } else if (flag == "--cpu-threads") {
      SMLA_RETURN_IF_ERROR(value(&text));
      SMLA_RETURN_IF_ERROR(parse_int(flag, text, 0, &options->cpu_threads));
    } else if (flag == "--roofline") {
      options->roofline = true;
    } else if (flag == "--model") {
      SMLA_RETURN_IF_ERROR(value(&options->model));
      if (options->model != "dsv4-flash" && options->model != "dsv4-pro") {
        return smla::Status::InvalidArgument("--model expects dsv4-flash or dsv4-pro, got '" +
                                             options->model + "'");
      }
    } else if (flag == "--context") {
      SMLA_RETURN_IF_ERROR(value(&text));
      SMLA_RETURN_IF_ERROR(parse_int64(flag, text, 1, &options->context));
    } else {
      return smla::Status::InvalidArgument("unknown flag '" + flag + "' (see --help)");
    }
    if (has_inline_value && !value_taken) {
      return smla::Status::InvalidArgument(flag + " takes no value, got '" + flag + "=" + inline_value + "'");
    }
  }
  return smla::Status::Ok();
}

}  // namespace smla_bench
