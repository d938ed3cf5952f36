// Result tables of smla-bench and their output formats: an aligned text table, CSV, JSON (an array of
// objects keyed by column name) and a Markdown table (used to generate docs/perf.md).
#pragma once

#include <string>
#include <vector>

#include "smla/status.h"

namespace smla_bench {

enum class OutputFormat { kTable, kCsv, kJson, kMarkdown };

bool parse_output_format(const std::string& name, OutputFormat* format);

// A cell is text; numeric cells are written unquoted in JSON.
struct Cell {
  std::string text;
  bool numeric = false;
};

struct Table {
  std::vector<std::string> columns;
  std::vector<std::vector<Cell>> rows;

  void add_row(std::vector<Cell> row) { rows.push_back(std::move(row)); }
};

Cell text_cell(const std::string& text);
// A number with `decimals` digits after the point; NaN becomes "nan" text (JSON: null).
Cell number_cell(double value, int decimals);
Cell integer_cell(long long value);

std::string format_table(const Table& table, OutputFormat format);

// Writes `text` to `path`, or to stdout when path is empty.
smla::Status write_output(const std::string& path, const std::string& text);

}  // namespace smla_bench
