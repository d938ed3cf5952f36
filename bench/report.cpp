#include "report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

namespace smla_bench {
namespace {

std::string csv_escape(const std::string& text) {
  if (text.find_first_of(",\"\n") == std::string::npos) return text;
  std::string quoted = "\"";
  for (char c : text) {
    if (c == '"') quoted += '"';
    quoted += c;
  }
  return quoted + "\"";
}

std::string json_escape(const std::string& text) {
  std::string escaped;
  for (char c : text) {
    if (c == '"' || c == '\\') escaped += '\\';
    escaped += c;
  }
  return escaped;
}

// A column is numeric (right-aligned) when any of its cells is a number.
bool column_is_numeric(const Table& table, size_t column) {
  for (const auto& row : table.rows) {
    if (column < row.size() && row[column].numeric) return true;
  }
  return false;
}

std::string format_aligned(const Table& table) {
  std::vector<size_t> widths(table.columns.size());
  for (size_t c = 0; c < table.columns.size(); ++c) widths[c] = table.columns[c].size();
  for (const auto& row : table.rows) {
    for (size_t c = 0; c < row.size() && c < widths.size(); ++c)
      widths[c] = std::max(widths[c], row[c].text.size());
  }
  std::ostringstream out;
  auto write_line = [&](auto cell_text, auto is_numeric) {
    for (size_t c = 0; c < widths.size(); ++c) {
      const std::string text = cell_text(c);
      const size_t pad = widths[c] - text.size();
      if (c > 0) out << "  ";
      // Numbers align right so their digits line up; names align left.
      if (is_numeric(c))
        out << std::string(pad, ' ') << text;
      else
        out << text << (c + 1 < widths.size() ? std::string(pad, ' ') : "");
    }
    out << "\n";
  };
  auto column_numeric = [&](size_t c) { return column_is_numeric(table, c); };
  write_line([&](size_t c) { return table.columns[c]; }, column_numeric);
  size_t total = 0;
  for (size_t w : widths) total += w + 2;
  out << std::string(total > 2 ? total - 2 : 0, '-') << "\n";
  for (const auto& row : table.rows) {
    write_line([&](size_t c) { return c < row.size() ? row[c].text : std::string(); }, column_numeric);
  }
  return out.str();
}

std::string format_csv(const Table& table) {
  std::ostringstream out;
  for (size_t c = 0; c < table.columns.size(); ++c) out << (c ? "," : "") << csv_escape(table.columns[c]);
  out << "\n";
  for (const auto& row : table.rows) {
    for (size_t c = 0; c < row.size(); ++c) out << (c ? "," : "") << csv_escape(row[c].text);
    out << "\n";
  }
  return out.str();
}

std::string format_json(const Table& table) {
  std::ostringstream out;
  out << "[\n";
  for (size_t r = 0; r < table.rows.size(); ++r) {
    out << "  {";
    const auto& row = table.rows[r];
    for (size_t c = 0; c < row.size() && c < table.columns.size(); ++c) {
      out << (c ? ", " : "") << "\"" << json_escape(table.columns[c]) << "\": ";
      if (!row[c].numeric)
        out << "\"" << json_escape(row[c].text) << "\"";
      else if (row[c].text == "nan" || row[c].text == "inf" || row[c].text == "-inf")
        out << "null";
      else
        out << row[c].text;
    }
    out << "}" << (r + 1 < table.rows.size() ? "," : "") << "\n";
  }
  out << "]\n";
  return out.str();
}

std::string format_markdown(const Table& table) {
  std::ostringstream out;
  out << "|";
  for (const auto& column : table.columns) out << " " << column << " |";
  out << "\n|";
  for (size_t c = 0; c < table.columns.size(); ++c) {
    out << (column_is_numeric(table, c) ? "---:|" : "---|");
  }
  out << "\n";
  for (const auto& row : table.rows) {
    out << "|";
    for (const auto& cell : row) out << " " << cell.text << " |";
    out << "\n";
  }
  return out.str();
}

}  // namespace

bool parse_output_format(const std::string& name, OutputFormat* format) {
  if (name == "table")
    *format = OutputFormat::kTable;
  else if (name == "csv")
    *format = OutputFormat::kCsv;
  else if (name == "json")
    *format = OutputFormat::kJson;
  else if (name == "markdown")
    *format = OutputFormat::kMarkdown;
  else
    return false;
  return true;
}

Cell text_cell(const std::string& text) { return Cell{text, false}; }

Cell number_cell(double value, int decimals) {
  if (std::isnan(value)) return Cell{"nan", true};
  if (std::isinf(value)) return Cell{value > 0 ? "inf" : "-inf", true};
  char buffer[64];
  std::snprintf(buffer, sizeof(buffer), "%.*f", decimals, value);
  return Cell{buffer, true};
}

Cell integer_cell(long long value) { return Cell{std::to_string(value), true}; }

std::string format_table(const Table& table, OutputFormat format) {
  switch (format) {
    case OutputFormat::kTable:
      return format_aligned(table);
    case OutputFormat::kCsv:
      return format_csv(table);
    case OutputFormat::kJson:
      return format_json(table);
    case OutputFormat::kMarkdown:
      return format_markdown(table);
  }
  return {};
}

smla::Status write_output(const std::string& path, const std::string& text) {
  if (path.empty()) {
    std::cout << text << std::flush;
    return smla::Status::Ok();
  }
  std::ofstream file(path);
  if (!file) return smla::Status::InvalidArgument("--output: cannot open '" + path + "' for writing");
  file << text;
  if (!file) return smla::Status::InvalidArgument("--output: writing '" + path + "' failed");
  return smla::Status::Ok();
}

}  // namespace smla_bench
