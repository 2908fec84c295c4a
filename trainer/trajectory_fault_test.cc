// TrajectoryWriter::Flush under injected faults and power loss (FaultInjectionEnv): whichever
// of the states.f16 fsync or the manifest's open, write, fsync, rename and folder fsync fails,
// Flush returns the error, the manifest never lists a row that states.f16 lacks, and a writer
// reopened at the last successful flush (as a resumed run does) ends with exactly the dataset of
// an uninterrupted run.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "common/env/fault_injection_env.h"
#include "trainer/trajectory.h"

namespace nino::trainer {
namespace {
namespace fs = std::filesystem;
using Op = FaultInjectionEnv::Op;

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

TrajectoryInfo Info() {
  TrajectoryInfo i;
  i.task = "fm16";
  i.seed = 3;
  i.lr = 1e-3;
  i.optimizer = "adamw";
  i.max_steps = 16;
  i.every = 4;
  i.params = {{"w", {64, 32}}, {"b", {64}}};
  return i;
}
constexpr int64_t kParams = 64 * 32 + 64;

torch::Tensor Row(int64_t step) { return torch::arange(kParams, torch::kFloat32) * 1e-3 + step; }

// Writes rows 0..8, flushes, writes rows 12 and 16 and finishes.
absl::Status WriteAll(Env* env, const std::string& dir) {
  auto w = TrajectoryWriter::Open(env, dir, Info(), -1);
  if (!w.ok()) return w.status();
  for (int64_t s = 0; s <= 16; s += 4) {
    if (absl::Status st = (*w)->Append(s, Row(s)); !st.ok()) return st;
    if (s == 8) {
      if (absl::Status st = (*w)->Flush(); !st.ok()) return st;
    }
  }
  return (*w)->Finish({{"best_acc", 50.0}});
}

class TrajectoryFaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::path(::testing::TempDir()) / "trajectory_fault_test";
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  void TearDown() override { fs::remove_all(root_); }
  fs::path root_;
};

TEST_F(TrajectoryFaultTest, AFailedFlushKeepsTheDatasetConsistentAndResumable) {
  const std::string whole = (root_ / "whole").string();
  ASSERT_TRUE(WriteAll(Env::Default(), whole).ok());
  const std::string want = Slurp(whole + "/states.f16");
  ASSERT_EQ(want.size(), 5u * kParams * 2);

  struct Case {
    Op op;
    std::string path;
  };
  const std::vector<Case> cases = {{Op::kSync, "states.f16"},      {Op::kOpen, "manifest.json"},
                                   {Op::kWrite, "manifest.json"},  {Op::kSync, "manifest.json"},
                                   {Op::kRename, "manifest.json"}, {Op::kSyncDir, "/case"}};
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    SCOPED_TRACE(std::string(FaultInjectionEnv::OpName(c.op)) + " " + c.path);
    const std::string dir = (root_ / ("case" + std::to_string(i))).string();
    FaultInjectionEnv env;
    {
      auto w = TrajectoryWriter::Open(&env, dir, Info(), -1);
      ASSERT_TRUE(w.ok()) << w.status();
      for (int64_t s = 0; s <= 4; s += 4) ASSERT_TRUE((*w)->Append(s, Row(s)).ok());
      ASSERT_TRUE((*w)->Flush().ok());  // the checkpoint of step 4
      ASSERT_TRUE((*w)->Append(8, Row(8)).ok());
      env.FailNth(c.op, 1, c.path);
      absl::Status s = (*w)->Flush();  // the checkpoint of step 8 fails
      EXPECT_FALSE(s.ok());
      EXPECT_TRUE(absl::StrContains(s.message(), "injected fault")) << s;
    }  // the process dies
    ASSERT_TRUE(env.DropUnsyncedData().ok());

    const auto manifest = nlohmann::json::parse(Slurp(dir + "/manifest.json"));
    const auto rows = static_cast<int64_t>(manifest["steps"].size());
    EXPECT_GE(rows, 2);
    EXPECT_GE(static_cast<int64_t>(fs::file_size(dir + "/states.f16")), rows * kParams * 2)
        << "the manifest lists rows that states.f16 lacks";
    for (const auto& e : fs::directory_iterator(dir)) {
      EXPECT_FALSE(absl::StrContains(e.path().filename().string(), ".tmp")) << e.path();
    }

    // The resumed run reopens at its checkpoint (step 4) and finishes like the whole run.
    auto w = TrajectoryWriter::Open(&env, dir, Info(), 4);
    ASSERT_TRUE(w.ok()) << w.status();
    EXPECT_EQ((*w)->rows(), 2);
    for (int64_t s = 8; s <= 16; s += 4) ASSERT_TRUE((*w)->Append(s, Row(s)).ok());
    ASSERT_TRUE((*w)->Finish({{"best_acc", 50.0}}).ok());
    w->reset();
    EXPECT_EQ(Slurp(dir + "/states.f16"), want);
    auto r = TrajectoryReader::Open(dir);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_TRUE(r.value()->Check().checksum_ok);
  }
}

}  // namespace
}  // namespace nino::trainer
