// Regression tests for what fuzzing found (docs/FUZZING.md): each finding's input, or a
// hand-made equivalent, must give a clear error and change nothing. The replay tests
// (*_replay_test) additionally run every input under regressions/ through the fuzz targets.
#include <gtest/gtest.h>
#include <malloc.h>

#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/str_replace.h"
#include "common/io/torch_file.h"

namespace nino {
namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.is_open()) << path;
  std::stringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

// A small valid archive written by our own writer.
std::string ValidArchive() {
  const std::string path = ::testing::TempDir() + "/fuzz_regressions_valid.pt";
  io::NamedTensors sd = {{"w", torch::arange(6, torch::kFloat32).reshape({2, 3})}};
  EXPECT_TRUE(io::SaveTorchFile(path, io::StateDictValue(sd)).ok());
  return ReadFile(path);
}

// Findings 1-3 (torch_file, leak): PyTorchStreamReader's constructor threw after miniz had
// allocated its reader state, which LibTorch 1.13 then leaks (~0.4-1 KB per load): an archive
// whose version record was renamed (1), is flagged encrypted (2), or is flagged a directory
// (3: miniz "extracts" a directory by writing nothing, so the record read as uninitialised
// memory). The loader now rejects such archives from its own zip index before constructing
// the reader.
TEST(TorchFileFuzzRegression, FoundArchivesAreDataLossAndDoNotLeak) {
  struct Case {
    const char* file;
    const char* needle;
  };
  const Case cases[] = {
      {"leak_stream_reader_ctor_throws.pt", "no version record"},
      {"leak_version_record_encrypted.pt", "version record is compressed, encrypted"},
      {"leak_version_record_directory.pt", "'misc/version' is a directory"},
  };
  for (const Case& c : cases) {
    const std::string bytes = ReadFile(std::string("tools/fuzz/regressions/torch_file/") + c.file);
    ASSERT_FALSE(bytes.empty()) << c.file;
    absl::StatusOr<io::PickleValue> v = io::LoadTorchBytes(bytes, c.file);
    ASSERT_FALSE(v.ok()) << c.file;
    EXPECT_EQ(v.status().code(), absl::StatusCode::kDataLoss) << v.status();
    EXPECT_NE(v.status().message().find(c.needle), std::string::npos) << v.status();

    // Without ASan: the heap must not grow with the number of rejected loads (before the fix,
    // each one leaked 0.4-1 KB: 0.8-2 MB over these 2000).
    for (int i = 0; i < 50; ++i) (void)io::LoadTorchBytes(bytes, c.file);
    const size_t before = mallinfo2().uordblks;
    for (int i = 0; i < 2000; ++i) (void)io::LoadTorchBytes(bytes, c.file);
    const size_t after = mallinfo2().uordblks;
    EXPECT_LT(after, before + 200 * 1024)
        << c.file << ": heap grew by " << (after - before) << " bytes";
  }
}

TEST(TorchFileFuzzRegression, StreamReaderPreconditionsAreCheckedFirst) {
  const std::string valid = ValidArchive();
  ASSERT_TRUE(io::LoadTorchBytes(valid, "valid.pt").ok());
  struct Case {
    std::string bytes;
    const char* needle;
  };
  const Case cases[] = {
      // no version record
      {absl::StrReplaceAll(valid, {{"archive/version", "archive/versiom"}}), "no version record"},
      // the first record is in no folder
      {absl::StrReplaceAll(valid, {{"archive/data.pkl", "archive_data.pkl"}}),
       "is not in an archive folder"},
  };
  for (const Case& c : cases) {
    ASSERT_NE(c.bytes, valid);
    absl::StatusOr<io::PickleValue> v = io::LoadTorchBytes(c.bytes, "bad.pt");
    ASSERT_FALSE(v.ok()) << c.needle;
    EXPECT_EQ(v.status().code(), absl::StatusCode::kDataLoss) << v.status();
    EXPECT_NE(v.status().message().find(c.needle), std::string::npos) << v.status();
  }
}

}  // namespace
}  // namespace nino
