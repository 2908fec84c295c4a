#include "trainer/trajectory.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace nino::trainer {
namespace {
namespace fs = std::filesystem;

class TrajectoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = (fs::path(::testing::TempDir()) / ("nino_traj_" + std::to_string(getpid()))).string();
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  static TrajectoryInfo Info() {
    TrajectoryInfo i;
    i.task = "fm16";
    i.seed = 100001;
    i.lr = 6e-3;
    i.optimizer = "adamw";
    i.max_steps = 100;
    i.every = 4;
    i.params = {{"w", {2, 3}}, {"b", {2}}};
    return i;
  }
  static torch::Tensor Row(int64_t step) { return torch::arange(8, torch::kFloat32) * 0.1 + step; }
  std::string dir_;
};

TEST_F(TrajectoryTest, RowsRoundTripAsFloat16AndCheck) {
  auto w = TrajectoryWriter::Open(dir_, Info(), -1);
  ASSERT_TRUE(w.ok()) << w.status();
  for (int64_t s = 0; s <= 12; s += 4) ASSERT_TRUE((*w)->Append(s, Row(s)).ok());
  EXPECT_FALSE((*w)->Append(12, Row(12)).ok());            // steps must increase
  EXPECT_FALSE((*w)->Append(16, torch::zeros({7})).ok());  // wrong size
  ASSERT_TRUE((*w)->Finish({{"best_acc", 81.0}}).ok());
  w->reset();
  auto r = TrajectoryReader::Open(dir_);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)->rows(), 4);
  EXPECT_EQ((*r)->steps(), (std::vector<int64_t>{0, 4, 8, 12}));
  EXPECT_TRUE(torch::equal((*r)->states()[2], Row(8).to(torch::kHalf)));
  EXPECT_EQ((*r)->manifest()["metrics"]["best_acc"], 81.0);
  EXPECT_EQ((*r)->manifest()["params"][0]["shape"], (std::vector<int64_t>{2, 3}));
  auto c = (*r)->Check();
  EXPECT_EQ(c.non_finite, 0);
  EXPECT_TRUE(c.checksum_checked);
  EXPECT_TRUE(c.checksum_ok);
}

TEST_F(TrajectoryTest, AResumedRunDropsRowsAfterItsCheckpoint) {
  {
    auto w = TrajectoryWriter::Open(dir_, Info(), -1);
    ASSERT_TRUE(w.ok());
    for (int64_t s = 0; s <= 8; s += 4) ASSERT_TRUE((*w)->Append(s, Row(s)).ok());
    ASSERT_TRUE((*w)->Flush().ok());
    ASSERT_TRUE((*w)->Append(12, Row(12)).ok());  // written after the last flush: a crash here
  }
  auto w = TrajectoryWriter::Open(dir_, Info(), /*resume_step=*/4);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ((*w)->rows(), 2);
  ASSERT_TRUE((*w)->Append(8, Row(8) + 1).ok());
  ASSERT_TRUE((*w)->Finish({}).ok());
  auto r = TrajectoryReader::Open(dir_);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)->rows(), 3);
  EXPECT_TRUE(torch::equal((*r)->states()[2], (Row(8) + 1).to(torch::kHalf)));
  // Another run's folder is refused, and a fresh run never overwrites a dataset.
  TrajectoryInfo other = Info();
  other.seed = 5;
  EXPECT_EQ(TrajectoryWriter::Open(dir_, other, 4).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(TrajectoryWriter::Open(dir_, Info(), -1).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(TrajectoryTest, DamageIsFound) {
  {
    auto w = TrajectoryWriter::Open(dir_, Info(), -1);
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->Append(0, Row(0)).ok());
    torch::Tensor bad = Row(4);
    bad[3] = NAN;
    ASSERT_TRUE((*w)->Append(4, bad).ok());
    ASSERT_TRUE((*w)->Finish({}).ok());
  }
  {
    auto r = TrajectoryReader::Open(dir_);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ((*r)->Check().non_finite, 1);
  }
  const std::string states = dir_ + "/states.f16";
  {  // a flipped byte: the checksum no longer matches
    std::fstream f(states, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(1);
    f.put('\x55');
  }
  {
    auto r = TrajectoryReader::Open(dir_);
    ASSERT_TRUE(r.ok());
    EXPECT_FALSE((*r)->Check().checksum_ok);
  }
  fs::resize_file(states, 10);  // shorter than the manifest says
  auto r = TrajectoryReader::Open(dir_);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss) << r.status();
  std::ofstream(dir_ + "/manifest.json", std::ios::trunc) << "{\"format\":\"other\"}";
  EXPECT_EQ(TrajectoryReader::Open(dir_).status().code(), absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace nino::trainer
