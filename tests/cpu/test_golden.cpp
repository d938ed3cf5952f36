// Golden vectors from tests/golden/make_golden.py, an independent numpy implementation of the spec:
// codec encodings byte for byte, a cache pool after appends byte for byte, and a small two-cache decode
// through the public smla::decode on the CPU backend.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "common/test_support.h"
#include "smla/cache.h"
#include "smla/codec.h"
#include "smla/decode.h"

namespace smla {
namespace {

// ---- a tiny reader for the line format: `key value...`, '#' starts a comment line

std::vector<std::string> read_lines(const std::string& file_name) {
  const std::string path = std::string(SMLA_GOLDEN_DIR) + "/" + file_name;
  std::ifstream file(path);
  EXPECT_TRUE(file.good()) << "cannot open " << path << " (regenerate with tests/golden/make_golden.py)";
  std::vector<std::string> lines;
  for (std::string line; std::getline(file, line);) {
    if (!line.empty() && line[0] != '#') lines.push_back(line);
  }
  return lines;
}

std::vector<std::string> split(const std::string& line) {
  std::istringstream stream(line);
  std::vector<std::string> fields;
  for (std::string field; stream >> field;) fields.push_back(field);
  return fields;
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  ADD_FAILURE() << "bad hex digit '" << c << "'";
  return 0;
}

std::vector<uint8_t> hex_bytes(const std::string& hex) {
  EXPECT_EQ(hex.size() % 2, 0u);
  std::vector<uint8_t> bytes(hex.size() / 2);
  for (size_t i = 0; i < bytes.size(); ++i) {
    bytes[i] = static_cast<uint8_t>(hex_digit(hex[2 * i]) << 4 | hex_digit(hex[2 * i + 1]));
  }
  return bytes;
}

std::vector<uint16_t> hex_words(const std::string& hex) {
  EXPECT_EQ(hex.size() % 4, 0u);
  std::vector<uint16_t> words(hex.size() / 4);
  for (size_t i = 0; i < words.size(); ++i) {
    words[i] = static_cast<uint16_t>(std::stoul(hex.substr(4 * i, 4), nullptr, 16));
  }
  return words;
}

float float_from_hex_bits(const std::string& hex) {
  const uint32_t bits = static_cast<uint32_t>(std::stoul(hex, nullptr, 16));
  float value;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
}

template <typename T>
std::vector<T> numbers(const std::vector<std::string>& fields, size_t first) {
  std::vector<T> values;
  for (size_t i = first; i < fields.size(); ++i) {
    if constexpr (std::is_integral_v<T>) {
      values.push_back(static_cast<T>(std::stoll(fields[i])));
    } else {
      values.push_back(static_cast<T>(std::strtod(fields[i].c_str(), nullptr)));  // "inf" included
    }
  }
  return values;
}

// ---- codec

TEST(GoldenCodec, EncodingsMatchByteForByte) {
  const std::vector<std::string> lines = read_lines("golden_codec.txt");
  int tokens_checked = 0;
  std::string name;
  std::vector<uint16_t> token;
  for (const std::string& line : lines) {
    const std::vector<std::string> fields = split(line);
    ASSERT_FALSE(fields.empty());
    if (fields[0] == "token") {
      name = fields.at(1);
    } else if (fields[0] == "bf16") {
      token = hex_words(fields.at(1));
      ASSERT_EQ(token.size(), static_cast<size_t>(kHeadDim)) << name;
    } else if (fields[0] == "record") {
      const std::vector<uint8_t> expected = hex_bytes(fields.at(1));
      ASSERT_EQ(expected.size(), static_cast<size_t>(kRecordBytes)) << name;
      uint8_t record[kRecordBytes];
      encode_token(token.data(), record, record + kRowBytes);
      for (int byte = 0; byte < kRecordBytes; ++byte) {
        EXPECT_EQ(record[byte], expected[byte]) << "token " << name << ", byte " << byte
                                                << (byte < kNopeDim    ? " (e4m3)"
                                                    : byte < kRowBytes ? " (rope)"
                                                                       : " (footer)");
      }
      ++tokens_checked;
    }
  }
  EXPECT_GE(tokens_checked, 16);
}

// ---- decode

struct GoldenCache {
  int64_t page_block_size = 0, num_pages = 0, stride = 0;
  std::vector<std::pair<int32_t, std::vector<uint16_t>>> appends;
  std::vector<uint8_t> pool;
};

struct GoldenDecode {
  DecodeShape shape{};
  float softmax_scale = 0;
  std::map<std::string, GoldenCache> caches;
  std::vector<uint16_t> q;
  std::vector<int32_t> indices, topk_length, extra_indices, extra_topk_length;
  bool topk_length_per_query = false, extra_topk_length_per_query = false;
  std::vector<float> sink;
  std::vector<double> out, lse;
};

GoldenDecode read_golden_decode() {
  GoldenDecode golden;
  for (const std::string& line : read_lines("golden_decode.txt")) {
    const std::vector<std::string> fields = split(line);
    const std::string& key = fields.at(0);
    if (key == "shape") {
      const auto dims = numbers<int32_t>(fields, 1);
      golden.shape = DecodeShape{dims.at(0), dims.at(1), dims.at(2), dims.at(3), dims.at(4)};
    } else if (key == "softmax_scale") {
      golden.softmax_scale = float_from_hex_bits(fields.at(1));
    } else if (key == "cache") {
      GoldenCache& cache = golden.caches[fields.at(1)];
      cache.page_block_size = std::stoll(fields.at(2));
      cache.num_pages = std::stoll(fields.at(3));
      cache.stride = std::stoll(fields.at(4));
    } else if (key == "append") {
      golden.caches[fields.at(1)].appends.emplace_back(std::stoi(fields.at(2)), hex_words(fields.at(3)));
    } else if (key == "pool") {
      golden.caches[fields.at(1)].pool = hex_bytes(fields.at(2));
    } else if (key == "q") {
      golden.q = hex_words(fields.at(1));
    } else if (key == "indices") {
      golden.indices = numbers<int32_t>(fields, 1);
    } else if (key == "extra_indices") {
      golden.extra_indices = numbers<int32_t>(fields, 1);
    } else if (key == "topk_length") {
      golden.topk_length_per_query = fields.at(1) == "per_query";
      golden.topk_length = numbers<int32_t>(fields, 2);
    } else if (key == "extra_topk_length") {
      golden.extra_topk_length_per_query = fields.at(1) == "per_query";
      golden.extra_topk_length = numbers<int32_t>(fields, 2);
    } else if (key == "sink") {
      for (size_t i = 1; i < fields.size(); ++i) golden.sink.push_back(float_from_hex_bits(fields[i]));
    } else if (key == "out") {
      const auto values = numbers<double>(fields, 4);  // after "out b t h"
      EXPECT_EQ(values.size(), static_cast<size_t>(kHeadDim));
      golden.out.insert(golden.out.end(), values.begin(), values.end());
    } else if (key == "lse") {
      golden.lse = numbers<double>(fields, 1);
    } else {
      ADD_FAILURE() << "unknown key '" << key << "' in golden_decode.txt";
    }
  }
  return golden;
}

// Builds a NaN-filled cache and writes the golden tokens with the host append; the pool must then
// equal the generator's pool byte for byte (codec and slot addressing end to end).
test::HostCache build_cache(const GoldenCache& golden, const char* name) {
  test::HostCache cache =
      test::make_host_cache(golden.page_block_size, golden.num_pages, golden.stride, 0xFF);
  EXPECT_EQ(cache.layout.page_stride_bytes, writer_page_stride_bytes(golden.page_block_size)) << name;
  for (const auto& [slot, token] : golden.appends) {
    const Status status = append_tokens(cache.layout, token.data(), 1, kHeadDim, &slot);
    EXPECT_TRUE(status.ok()) << name << ": " << status.message();
  }
  EXPECT_EQ(static_cast<size_t>(cache.pool_bytes()), golden.pool.size()) << name;
  const auto* pool = static_cast<const uint8_t*>(cache.layout.data);
  for (size_t byte = 0; byte < golden.pool.size(); ++byte) {
    if (pool[byte] != golden.pool[byte]) {
      ADD_FAILURE() << name << " pool differs at byte " << byte << " (page " << byte / golden.stride
                    << ", offset " << byte % golden.stride << "): got " << int(pool[byte]) << ", expected "
                    << int(golden.pool[byte]);
      break;
    }
  }
  return cache;
}

TEST(GoldenDecode, CpuBackendMatchesTheNumpyEvaluation) {
  const GoldenDecode golden = read_golden_decode();
  ASSERT_EQ(golden.caches.size(), 2u);
  const DecodeShape& shape = golden.shape;
  const size_t head_rows = static_cast<size_t>(shape.batch) * shape.seq_q * shape.num_heads;
  ASSERT_EQ(golden.q.size(), head_rows * kHeadDim);
  ASSERT_EQ(golden.out.size(), head_rows * kHeadDim);
  ASSERT_EQ(golden.lse.size(), head_rows);

  test::HostCache main_cache = build_cache(golden.caches.at("main"), "main");
  test::HostCache extra_cache = build_cache(golden.caches.at("extra"), "extra");
  // Decode reads the generator's own bytes, so the decode check stands even if the pools differ.
  std::memcpy(main_cache.layout.data, golden.caches.at("main").pool.data(),
              golden.caches.at("main").pool.size());
  std::memcpy(extra_cache.layout.data, golden.caches.at("extra").pool.data(),
              golden.caches.at("extra").pool.size());

  std::vector<uint16_t> out(head_rows * kHeadDim, test::kPoisonBf16);
  std::vector<float> lse(head_rows, std::numeric_limits<float>::quiet_NaN());
  DecodeArgs args{};
  args.q = golden.q.data();
  args.main_cache = main_cache.layout;
  args.indices = golden.indices.data();
  args.topk_length = golden.topk_length.data();
  args.topk_length_layout = golden.topk_length_per_query ? SMLA_LENGTHS_PER_QUERY : SMLA_LENGTHS_PER_BATCH;
  args.extra_cache = extra_cache.layout;
  args.extra_indices = golden.extra_indices.data();
  args.extra_topk_length = golden.extra_topk_length.data();
  args.extra_topk_length_layout =
      golden.extra_topk_length_per_query ? SMLA_LENGTHS_PER_QUERY : SMLA_LENGTHS_PER_BATCH;
  args.attn_sink = golden.sink.data();
  args.softmax_scale = golden.softmax_scale;
  args.out = out.data();
  args.lse = lse.data();
  set_contiguous_strides(shape, &args);

  PlanOptions options = default_plan_options();
  options.backend = SMLA_BACKEND_CPU;
  options.cpu_precision = SMLA_CPU_FLOAT64;
  const Status status = decode(shape, args, options);
  ASSERT_TRUE(status.ok()) << status.message();

  // out is bf16: spec section 8 tolerances (and identical inf/NaN positions) via the shared checker.
  test::Reference reference{golden.out, golden.lse, shape};
  const test::Comparison comparison = test::compare_to_reference(reference, out.data(), lse.data());
  EXPECT_TRUE(comparison.ok) << comparison.report;

  // lse is fp32 of a float64 evaluation: within 1e-6 relative of numpy's float64, +inf for empty rows.
  for (size_t i = 0; i < head_rows; ++i) {
    if (std::isinf(golden.lse[i])) {
      EXPECT_EQ(lse[i], std::numeric_limits<float>::infinity()) << "lse[" << i << "]";
    } else {
      EXPECT_NEAR(lse[i], golden.lse[i], 1e-6 * std::fabs(golden.lse[i])) << "lse[" << i << "]";
    }
  }
  // The generator's exact zeros (empty rows, the +inf sink head) must be exact zeros here too.
  for (size_t i = 0; i < golden.out.size(); ++i) {
    if (golden.out[i] == 0.0) ASSERT_EQ(test::bf16_value(out[i]), 0.f) << "out[" << i << "]";
  }
}

}  // namespace
}  // namespace smla
