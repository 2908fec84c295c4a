// The data pipeline follows the official recipe: 5 inputs + up to 40 targets 200 steps (50 rows)
// apart, 4 shifted windows per slice, per-tensor 'std' scaling with the inputs' statistics,
// y_mask only on real parameter slots and horizons, LPE signs per slice, disjoint batches.
#include "metatrain/trajectory_windows.h"

#include <gtest/gtest.h>

#include <random>
#include <string>

#include "common/nino/scaling.h"
#include "metatrain/graph_sample.h"
#include "metatrain/test_trajectories.h"

namespace nino::metatrain {
namespace {

constexpr int64_t kRows = 1200;  // (5 + 10 + 4) * 50 = 950 rows needed at least

std::string WriteDataset(const std::string& name, uint64_t seed, int64_t rows = kRows) {
  const std::string dir = ::testing::TempDir() + "/" + name;
  testing::WriteTestTrajectory(dir, seed, rows);
  return dir;
}

TEST(TrajectoryWindows, WindowsAreTheOfficialRecipe) {
  const std::string dir = WriteDataset("tw_recipe", 1);
  WindowOptions o;
  auto data = TrajectoryWindows::Open({dir}, o);
  ASSERT_TRUE(data.ok()) << data.status();
  auto reader = trainer::TrajectoryReader::Open(dir);
  ASSERT_TRUE(reader.ok());
  const torch::Tensor all = (*reader)->states().to(torch::kFloat32);
  const auto params = *MakeParamTable(
      {{"fc.0.weight", {5, 6}}, {"fc.0.bias", {5}}, {"fc.2.weight", {4, 5}}, {"fc.2.bias", {4}}});
  SliceRef slice;
  slice.start_row = 100;  // rows 100, 150, ..., 1150: 22 of the 45 states fit
  const auto windows = (*data)->Windows(slice);
  ASSERT_EQ(windows.size(), 4u);
  const int64_t n = (kRows - 1 - 100) / 50 + 1;  // 22 states in the slice
  for (int64_t shift = 0; shift < 4; ++shift) {
    const GraphSample& w = windows[shift];
    torch::Tensor in = torch::stack({all[100 + 50 * (shift + 0)], all[100 + 50 * (shift + 1)],
                                     all[100 + 50 * (shift + 2)], all[100 + 50 * (shift + 3)],
                                     all[100 + 50 * (shift + 4)]});
    const ScaledStates s = ScaleStates(in, params);
    // fc.0.weight[o=2, i=3] is the edge input 3 -> hidden 2: edge index 3*5 + 2 (input-major).
    const int64_t e = 3 * 5 + 2, row = 2 * 6 + 3;
    for (int64_t c = 0; c < 5; ++c)
      EXPECT_FLOAT_EQ(w.x[e][c].item<float>(), s.scaled[row][c].item<float>());
    const int64_t horizons = std::min<int64_t>(40, n - shift - 5);
    for (int64_t k = 0; k < 40; ++k) {
      const bool valid = k < horizons;
      EXPECT_EQ(w.y_mask[e][0][k].item<float>(), valid ? 1.0f : 0.0f) << shift << " " << k;
      if (!valid) continue;
      const float v = all[100 + 50 * (shift + 5 + k)][row].item<float>();
      const float want = (v - s.mu[0].item<float>()) / (s.sigma[0].item<float>() + 1e-6f);
      EXPECT_NEAR(w.y[e][0][k].item<float>(), want, 1e-5);
    }
    // Self-loops (the last 17 edges) carry the constant 2.0 and are never targets.
    const int64_t E = w.num_edges();
    EXPECT_EQ(w.x[E - 1][4].item<float>(), 2.0f);
    EXPECT_EQ(w.y_mask.narrow(0, E - 17, 17).sum().item<float>(), 0.0f);
    EXPECT_EQ(w.y_mask.select(2, 0).sum().item<float>(), 59.0f);  // one slot per parameter
  }
}

TEST(TrajectoryWindows, FullSlicesHaveFortyHorizonsMinusTheShift) {
  const std::string dir = WriteDataset("tw_full", 2, 44 * 50 + 1);  // 45 states from row 0
  auto data = TrajectoryWindows::Open({dir}, WindowOptions{});
  ASSERT_TRUE(data.ok());
  SliceRef slice;  // start 0: 45 states available
  const auto windows = (*data)->Windows(slice);
  ASSERT_EQ(windows.size(), 4u);
  for (int64_t shift = 0; shift < 4; ++shift) {
    const torch::Tensor per_k = windows[shift].y_mask.sum(std::vector<int64_t>{0, 1});
    EXPECT_EQ((per_k > 0).sum().item<int64_t>(), 40 - shift) << shift;
  }
}

TEST(TrajectoryWindows, SlicesStayInRangeAndLpeSignsFlipPerSlice) {
  const std::string dir = WriteDataset("tw_lpe", 3);
  WindowOptions o;
  o.lpe_dim = 8;
  auto data = TrajectoryWindows::Open({dir}, o);
  ASSERT_TRUE(data.ok()) << data.status();
  std::mt19937_64 rng(0);
  bool saw_minus = false;
  for (int i = 0; i < 50; ++i) {
    const SliceRef s = (*data)->SampleSlice(&rng);
    EXPECT_GE(s.start_row, 0);
    EXPECT_LT(s.start_row, kRows - 19 * 50);
    ASSERT_TRUE(s.pos_sign.defined());
    saw_minus |= (s.pos_sign < 0).any().item<bool>();
    const auto w = (*data)->Windows(s);
    ASSERT_EQ(w.size(), 4u);
    // All windows of a slice share the flipped encoding.
    EXPECT_TRUE(torch::equal(w[0].pos, w[3].pos));
    SliceRef plain = s;
    plain.pos_sign = torch::Tensor();
    const torch::Tensor base = (*data)->Windows(plain)[0].pos;
    EXPECT_TRUE(torch::allclose(w[0].pos, base * s.pos_sign.unsqueeze(0)));
  }
  EXPECT_TRUE(saw_minus);
}

TEST(TrajectoryWindows, MergedBatchesAreDisjointGraphs) {
  const std::string dir = WriteDataset("tw_merge", 4);
  WindowOptions o;
  o.lpe_dim = 8;
  auto data = TrajectoryWindows::Open({dir}, o);
  ASSERT_TRUE(data.ok());
  const auto w = (*data)->Windows(SliceRef{});
  const GraphSample b = MergeGraphs(w, 5);
  EXPECT_EQ(b.num_nodes, 4 * w[0].num_nodes);
  EXPECT_EQ(b.num_edges(), 4 * w[0].num_edges());
  const int64_t E = w[0].num_edges(), N = w[0].num_nodes;
  EXPECT_TRUE(torch::equal(b.edge_index.narrow(1, 2 * E, E), w[2].edge_index + 2 * N));
  EXPECT_TRUE(torch::equal(b.y.narrow(0, 3 * E, E), w[3].y));
  EXPECT_EQ(b.pos.size(0), 4 * N);
}

TEST(TrajectoryWindows, RefusesIncompleteOrShortDatasets) {
  const std::string dir = ::testing::TempDir() + "/tw_short";
  testing::WriteTestTrajectory(dir, 5, 900);  // < 951 rows
  auto data = TrajectoryWindows::Open({dir}, WindowOptions{});
  EXPECT_EQ(data.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(CompleteDatasets(::testing::TempDir() + "/none").size(), 0u);
}

}  // namespace
}  // namespace nino::metatrain
