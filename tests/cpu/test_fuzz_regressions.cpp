// Replays the fuzzers' inputs through the same entry functions the libFuzzer targets call
// (fuzz/fuzz_cases.h), so they run in every build, including the ASan/UBSan one:
//  - the checked-in seed corpus (fuzz/corpus/<target>/),
//  - mutations of those seeds and fresh random byte strings (seeded; SMLA_TEST_SEED replays),
//  - every input a fuzzer ever crashed on (fuzz/corpus/<target>/regression-*, kept with the seeds).
// A case aborts on a violated property, which fails this test executable.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <ostream>
#include <string>
#include <vector>

#include "../../fuzz/fuzz_cases.h"
#include "common/test_support.h"

namespace {

namespace fs = std::filesystem;
using CaseFunction = int (*)(const uint8_t*, size_t);

fs::path corpus_dir(const std::string& target) {
  // The fuzz/ folder sits beside tests/ in the source tree; SMLA_GOLDEN_DIR is tests/golden.
  return fs::path(SMLA_GOLDEN_DIR).parent_path().parent_path() / "fuzz" / "corpus" / target;
}

std::vector<uint8_t> read_bytes(const fs::path& path) {
  std::ifstream file(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>());
}

std::vector<fs::path> corpus_files(const std::string& target) {
  std::vector<fs::path> files;
  const fs::path dir = corpus_dir(target);
  if (!fs::is_directory(dir)) return files;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir))
    if (entry.is_regular_file()) files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  return files;
}

void run_case(CaseFunction run, const std::vector<uint8_t>& bytes) {
  // libFuzzer never passes a null pointer, not even for empty input; keep that contract.
  static const uint8_t kEmpty = 0;
  run(bytes.empty() ? &kEmpty : bytes.data(), bytes.size());
}

struct FuzzTarget {
  const char* name;
  CaseFunction run;
};
void PrintTo(const FuzzTarget& target, std::ostream* os) { *os << target.name; }

class FuzzReplay : public ::testing::TestWithParam<FuzzTarget> {};

TEST_P(FuzzReplay, SeedCorpusAndRegressionsRunCleanly) {
  const std::vector<fs::path> files = corpus_files(GetParam().name);
  ASSERT_FALSE(files.empty()) << "no seed corpus in " << corpus_dir(GetParam().name);
  for (const fs::path& file : files) {
    SCOPED_TRACE(file.string());
    run_case(GetParam().run, read_bytes(file));
  }
  std::printf("replayed %zu corpus files of %s\n", files.size(), GetParam().name);
}

TEST_P(FuzzReplay, MutatedSeedsRunCleanly) {
  const std::vector<fs::path> files = corpus_files(GetParam().name);
  ASSERT_FALSE(files.empty()) << "no seed corpus in " << corpus_dir(GetParam().name);
  smla::test::Rng rng = smla::test::Rng::ForTest(1);
  constexpr int kMutationsPerSeed = 12;
  for (const fs::path& file : files) {
    const std::vector<uint8_t> seed = read_bytes(file);
    for (int mutation = 0; mutation < kMutationsPerSeed; ++mutation) {
      std::vector<uint8_t> bytes = seed;
      // Flip a few bytes, then maybe truncate: the two ways libFuzzer mostly explores.
      const int64_t flips = rng.uniform_int(1, 4);
      for (int64_t i = 0; i < flips && !bytes.empty(); ++i)
        bytes[rng.uniform_int(0, static_cast<int64_t>(bytes.size()) - 1)] =
            static_cast<uint8_t>(rng.uniform_int(0, 255));
      if (rng.uniform01() < 0.25) bytes.resize(rng.uniform_int(0, static_cast<int64_t>(bytes.size())));
      run_case(GetParam().run, bytes);
    }
  }
}

TEST_P(FuzzReplay, RandomBytesRunCleanly) {
  smla::test::Rng rng = smla::test::Rng::ForTest(2);
  constexpr int kInputs = 150;
  for (int input = 0; input < kInputs; ++input) {
    std::vector<uint8_t> bytes(static_cast<size_t>(rng.uniform_int(0, 700)));
    for (uint8_t& byte : bytes) byte = static_cast<uint8_t>(rng.uniform_int(0, 255));
    // Mostly small, benign leading bytes so that many inputs reach the compute path.
    if (!bytes.empty() && rng.uniform01() < 0.5) bytes[0] = 0;
    run_case(GetParam().run, bytes);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Targets, FuzzReplay,
    ::testing::Values(FuzzTarget{"fuzz_c_api_validation", &smla::fuzz::run_c_api_validation_case},
                      FuzzTarget{"fuzz_codec_decode", &smla::fuzz::run_codec_decode_case}),
    [](const ::testing::TestParamInfo<FuzzTarget>& info) { return std::string(info.param.name); });

}  // namespace
