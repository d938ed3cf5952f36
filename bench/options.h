// Command line of smla-bench.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "report.h"
#include "smla/backend.h"
#include "smla/status.h"

namespace smla_bench {

struct BenchOptions {
  std::vector<std::string> shapes;      // named shapes; all when empty
  std::vector<int> batches;             // empty: per-device defaults
  std::vector<smla::Backend> backends;  // empty: every available backend
  bool random_lengths = false;
  int main_page_block_size = 0;  // 0: the shape's P
  int heads = 0;                 // 0: the shape's h
  int iterations = -1;           // -1: 200 on CUDA, 5 on the CPU
  int warmup = -1;               // -1: 20 on CUDA, 1 on the CPU
  int index_sets = 8;
  double pool_gb = -1.0;  // -1: 2.5 on CUDA, 0.25 on the CPU
  double copy_gb = 1.0;   // bytes of the copy-bandwidth measurement
  OutputFormat format = OutputFormat::kTable;
  std::string output;
  uint64_t seed = 1234;
  bool check = false;
  bool cpu_float64 = false;
  int cpu_threads = 0;
  int num_splits = 0;
  bool roofline = false;
  std::string model;  // "" or dsv4-flash / dsv4-pro
  int64_t context = 65536;
  bool help = false;
};

// Parses argv; an unknown flag or a bad value is an InvalidArgument naming the flag.
smla::Status parse_options(int argc, char** argv, BenchOptions* options);
std::string usage_text();

}  // namespace smla_bench
