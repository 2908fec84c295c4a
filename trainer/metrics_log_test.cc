#include "trainer/metrics_log.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace nino::trainer {
namespace {
namespace fs = std::filesystem;

std::vector<nlohmann::json> ReadLines(const std::string& path) {
  std::ifstream in(path);
  std::vector<nlohmann::json> out;
  for (std::string line; std::getline(in, line);)
    out.push_back(nlohmann::json::parse(line));  // throws if invalid
  return out;
}

TEST(MetricsLog, LinesAreValidJsonWhateverTheStrings) {
  const std::string path =
      (fs::path(::testing::TempDir()) / ("metrics_" + std::to_string(getpid()) + ".jsonl"))
          .string();
  auto log = MetricsLog::Open(path, -1);
  ASSERT_TRUE(log.ok());
  ASSERT_TRUE((*log)
                  ->Append({{"step", 1},
                            {"nino", {{"error", "quote \" backslash \\ newline \n tab \t \x01"}}}})
                  .ok());
  ASSERT_TRUE((*log)->Append({{"step", 2}, {"loss", NAN}}).ok());
  auto lines = ReadLines(path);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0]["nino"]["error"], "quote \" backslash \\ newline \n tab \t \x01");
  EXPECT_TRUE(lines[1]["loss"].is_null());
  fs::remove(path);
}

TEST(MetricsLog, AResumedRunKeepsTheLinesUpToItsStep) {
  const std::string path =
      (fs::path(::testing::TempDir()) / ("metrics_r_" + std::to_string(getpid()) + ".jsonl"))
          .string();
  {
    std::ofstream out(path);
    out << "{\"step\":10,\"loss\":1}\n{\"step\":20}\nnot json\n{\"nostep\":1}\n{\"step\":30}\n";
  }
  auto log = MetricsLog::Open(path, 20);
  ASSERT_TRUE(log.ok());
  ASSERT_TRUE((*log)->Append({{"step", 21}}).ok());
  auto lines = ReadLines(path);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0]["step"], 10);
  EXPECT_EQ(lines[1]["step"], 20);
  EXPECT_EQ(lines[2]["step"], 21);
  fs::remove(path);
}

TEST(WriteJsonFile, ReplacesAtomicallyAndRefusesBadPaths) {
  const std::string path =
      (fs::path(::testing::TempDir()) / ("summary_" + std::to_string(getpid()) + ".json")).string();
  ASSERT_TRUE(WriteJsonFile(path, {{"a", 1}}).ok());
  ASSERT_TRUE(WriteJsonFile(path, {{"a", 2}}).ok());
  std::ifstream in(path);
  EXPECT_EQ(nlohmann::json::parse(in)["a"], 2);
  EXPECT_FALSE(WriteJsonFile("/nonexistent-dir/x/summary.json", {{"a", 1}}).ok());
  EXPECT_FALSE(MetricsLog::Open("/nonexistent-dir/x/metrics.jsonl", -1).ok());
  fs::remove(path);
}

}  // namespace
}  // namespace nino::trainer
