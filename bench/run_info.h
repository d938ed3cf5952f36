// What a smla-bench run measured, written next to its results: the build (smla version, git commit),
// the machine (CUDA device, compute capability, driver and CUDA versions, host CPU), the measured copy
// bandwidths every GB_per_s / copy_pct / floor_us column is relative to, the date and the command line.
// JSON: {"metadata": {...}, "rows": [...]}; CSV: the metadata as constant columns after each row's, so
// concatenated CSVs of several runs stay self-describing; table and markdown: a header above the rows.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "report.h"
#include "smla/status.h"

namespace smla_bench {

struct RunInfo {
  std::string smla_version;
  std::string git_commit;  // of the source tree smla-bench was built from ("unknown" outside git)
  std::string date_utc;    // start of the run, ISO 8601
  std::string command_line;
  std::string host_cpu;                      // /proc/cpuinfo model name ("unknown" elsewhere)
  std::string device = "none";               // the CUDA device timed; "none" when only the cpu ran
  std::string compute_capability = "none";   // e.g. "9.0"
  std::string nvidia_driver = "none";        // kernel module version, e.g. "580.159.04"
  std::string driver_cuda_version = "none";  // newest CUDA version the driver supports, e.g. "13.0"
  std::string cuda_runtime_version;          // the CUDA runtime smla-bench links, e.g. "13.0"
  double device_copy_bytes_per_second = 0;   // 0: not measured (no CUDA backend ran)
  double host_copy_bytes_per_second = 0;     // 0: not measured (the cpu backend did not run)
  // The planner variables in effect (SMLA_MAX_SHARED_BYTES, SMLA_SM_COUNT), e.g.
  // "SMLA_MAX_SHARED_BYTES=101376 SMLA_SM_COUNT=188": whose kernels and schedule the rows are; "none".
  std::string planner_overrides = "none";
};

// Everything that needs no device: build, date, command line, host CPU, driver and runtime versions.
RunInfo collect_run_info(int argc, char** argv);
// The name and compute capability of the current CUDA device (the one smla-bench times).
smla::Status add_current_cuda_device(RunInfo* info);

// Ordered (name, value) pairs, as written in every output format.
std::vector<std::pair<std::string, Cell>> run_info_fields(const RunInfo& info);

// The results table in `format` with the run's metadata (see the file comment).
std::string format_report(const Table& rows, const RunInfo& info, OutputFormat format);

// "[k/N]" progress of a run's rows, printed to stderr before each row's line (stdout keeps the table).
class Progress {
 public:
  explicit Progress(int total) : total_(total) {}
  // The prefix of the next row's line; counts the row.
  std::string next() { return "[" + std::to_string(++done_) + "/" + std::to_string(total_) + "]"; }

 private:
  int total_ = 0;
  int done_ = 0;
};

}  // namespace smla_bench
