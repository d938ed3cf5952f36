#include "run_info.h"

#include <cuda_runtime.h>

#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <sstream>

#include "smla/smla.h"
#include "smla_bench_git_commit.h"  // generated at build time by cmake/git_commit.cmake

namespace smla_bench {
namespace {

// 13000 -> "13.0" (CUDA's encoding: 1000 * major + 10 * minor).
std::string cuda_version_text(int version) {
  return std::to_string(version / 1000) + "." + std::to_string((version % 1000) / 10);
}

std::string first_line_after(const std::string& path, const std::string& key) {
  std::ifstream file(path);
  std::string line;
  while (std::getline(file, line)) {
    if (line.rfind(key, 0) != 0) continue;
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    const size_t start = line.find_first_not_of(" \t", colon + 1);
    return start == std::string::npos ? std::string() : line.substr(start);
  }
  return {};
}

// The first dotted number of the "NVRM version" line: "NVIDIA UNIX x86_64 Kernel Module  580.159.04  Thu
// ..." and the open module's "NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  Release Build ..."
// both give "580.159.04"; "none" without a driver.
std::string nvidia_kernel_module_version() {
  std::istringstream words(first_line_after("/proc/driver/nvidia/version", "NVRM version"));
  std::string word;
  while (words >> word) {
    const bool dotted_number = std::isdigit(static_cast<unsigned char>(word.front())) &&
                               word.find('.') != std::string::npos &&
                               word.find_first_not_of("0123456789.") == std::string::npos;
    if (dotted_number) return word;
  }
  return "none";
}

std::string utc_now_iso8601() {
  const std::time_t now = std::time(nullptr);
  std::tm utc{};
  gmtime_r(&now, &utc);
  char buffer[32];
  std::strftime(buffer, sizeof(buffer), "%Y-%m-%dT%H:%M:%SZ", &utc);
  return buffer;
}

std::string json_string(const std::string& text) {
  std::string quoted = "\"";
  for (const char c : text) {
    if (c == '"' || c == '\\') {
      quoted += '\\';
      quoted += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char escaped[8];
      std::snprintf(escaped, sizeof(escaped), "\\u%04x", static_cast<unsigned char>(c));
      quoted += escaped;
    } else {
      quoted += c;
    }
  }
  return quoted + "\"";
}

Cell bandwidth_cell(double bytes_per_second) {
  return bytes_per_second > 0 ? number_cell(bytes_per_second / 1e9, 1) : number_cell(std::nan(""), 1);
}

}  // namespace

RunInfo collect_run_info(int argc, char** argv) {
  RunInfo info;
  info.smla_version = smla_version();
  info.git_commit = SMLA_BENCH_GIT_COMMIT;
  info.date_utc = utc_now_iso8601();
  for (int i = 0; i < argc; ++i) info.command_line += (i ? " " : "") + std::string(argv[i]);
  info.host_cpu = first_line_after("/proc/cpuinfo", "model name");
  if (info.host_cpu.empty()) info.host_cpu = "unknown";
  info.nvidia_driver = nvidia_kernel_module_version();
  int version = 0;
  // Both work without a GPU: the driver query answers 0 when no driver is installed.
  if (cudaDriverGetVersion(&version) == cudaSuccess && version > 0) {
    info.driver_cuda_version = cuda_version_text(version);
  }
  info.cuda_runtime_version =
      cudaRuntimeGetVersion(&version) == cudaSuccess ? cuda_version_text(version) : std::string("unknown");
  std::string overrides;
  for (const char* name : {"SMLA_MAX_SHARED_BYTES", "SMLA_SM_COUNT"}) {
    const char* value = std::getenv(name);
    if (value != nullptr && value[0] != '\0')
      overrides += (overrides.empty() ? "" : " ") + std::string(name) + "=" + value;
  }
  if (!overrides.empty()) info.planner_overrides = overrides;
  return info;
}

smla::Status add_current_cuda_device(RunInfo* info) {
  int ordinal = 0;
  cudaDeviceProp properties{};
  if (cudaGetDevice(&ordinal) != cudaSuccess ||
      cudaGetDeviceProperties(&properties, ordinal) != cudaSuccess) {
    return smla::Status::CudaError("cannot read the properties of the current CUDA device");
  }
  info->device = properties.name;
  info->compute_capability = std::to_string(properties.major) + "." + std::to_string(properties.minor);
  return smla::Status::Ok();
}

std::vector<std::pair<std::string, Cell>> run_info_fields(const RunInfo& info) {
  return {{"smla_version", text_cell(info.smla_version)},
          {"git_commit", text_cell(info.git_commit)},
          {"date_utc", text_cell(info.date_utc)},
          {"device", text_cell(info.device)},
          {"compute_capability", text_cell(info.compute_capability)},
          {"nvidia_driver", text_cell(info.nvidia_driver)},
          {"driver_cuda_version", text_cell(info.driver_cuda_version)},
          {"cuda_runtime_version", text_cell(info.cuda_runtime_version)},
          {"device_copy_GB_per_s", bandwidth_cell(info.device_copy_bytes_per_second)},
          {"host_cpu", text_cell(info.host_cpu)},
          {"host_copy_GB_per_s", bandwidth_cell(info.host_copy_bytes_per_second)},
          {"planner_overrides", text_cell(info.planner_overrides)},
          {"command_line", text_cell(info.command_line)}};
}

std::string format_report(const Table& rows, const RunInfo& info, OutputFormat format) {
  const std::vector<std::pair<std::string, Cell>> fields = run_info_fields(info);
  std::ostringstream out;
  switch (format) {
    case OutputFormat::kJson: {
      out << "{\n  \"metadata\": {";
      for (size_t i = 0; i < fields.size(); ++i) {
        const Cell& value = fields[i].second;
        out << (i ? ", " : "") << json_string(fields[i].first) << ": "
            << (!value.numeric        ? json_string(value.text)
                : value.text == "nan" ? "null"
                                      : value.text);
      }
      out << "},\n  \"rows\": " << format_table(rows, OutputFormat::kJson) << "}\n";
      return out.str();
    }
    case OutputFormat::kCsv: {
      Table with_metadata = rows;
      for (const auto& field : fields) with_metadata.columns.push_back(field.first);
      for (auto& row : with_metadata.rows) {
        for (const auto& field : fields) row.push_back(field.second);
      }
      return format_table(with_metadata, OutputFormat::kCsv);
    }
    case OutputFormat::kTable:
      for (const auto& field : fields) out << "# " << field.first << ": " << field.second.text << "\n";
      return out.str() + format_table(rows, format);
    case OutputFormat::kMarkdown: {
      // One caption line above the table (docs/perf.md quotes these tables).
      out << "smla " << info.smla_version << " (" << info.git_commit << "), " << info.date_utc;
      if (info.device_copy_bytes_per_second > 0) {
        out << "; " << info.device << " (cc " << info.compute_capability << ", driver " << info.nvidia_driver
            << ", CUDA " << info.driver_cuda_version << " driver / " << info.cuda_runtime_version
            << " runtime), copy bandwidth " << bandwidth_cell(info.device_copy_bytes_per_second).text
            << " GB/s";
      }
      if (info.host_copy_bytes_per_second > 0) {
        out << "; host " << info.host_cpu << ", memcpy bandwidth "
            << bandwidth_cell(info.host_copy_bytes_per_second).text << " GB/s";
      }
      out << "\n\n";
      return out.str() + format_table(rows, format);
    }
  }
  return format_table(rows, format);
}

}  // namespace smla_bench
