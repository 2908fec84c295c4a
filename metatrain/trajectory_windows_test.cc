// The data pipeline follows the official recipe: 5 inputs + up to 40 targets 200 steps (50 rows)
// apart, 4 shifted windows per slice, per-tensor 'std' scaling with the inputs' statistics,
// y_mask only on real parameter slots and horizons, LPE signs per slice, disjoint batches; LM
// (GPT-2) trajectories every 200 steps with the token-embedding subsampling (wte_size rows per
// slice, pos_w = ids + 1) and the official global-scaling quirk.
#include "metatrain/trajectory_windows.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <random>
#include <set>
#include <sstream>
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

// --- LM (GPT-2) trajectories -------------------------------------------------------------------

constexpr int64_t kLmRows = 30;  // every 200 steps: (5 + 10 + 4) + 1 = 20 rows needed at least

// Values that encode their flat row: row r of the dataset holds +i (r even) or -i (r odd) at
// flat index i (exact in float16 below 2048).
torch::Tensor IndexRow(int64_t row, int64_t num_params) {
  return torch::arange(num_params, torch::kFloat32) * (row % 2 == 0 ? 1.0f : -1.0f);
}

std::string WriteLmDataset(const std::string& name, const testing::RowFunction& values = {}) {
  const std::string dir = ::testing::TempDir() + "/" + name;
  std::filesystem::remove_all(dir);
  testing::WriteGpt2TestTrajectory(dir, 7, kLmRows, testing::Gpt2TestShape{}, values);
  return dir;
}

WindowOptions LmOptions(bool global_scale = true) {
  WindowOptions o;
  o.lpe_dim = 8;
  o.wte_size = 16;
  o.lm_global_scale = global_scale;
  return o;
}

// The full flat row each reduced row must come from, computed independently of TokenSubsample:
// wte (40, 8) -> kept ids' rows, everything after wte shifted by the 24 dropped rows.
torch::Tensor ExpectedRows(const torch::Tensor& ids, int64_t reduced_params) {
  std::vector<int64_t> rows;
  for (int64_t i = 0; i < 16; ++i)
    for (int64_t j = 0; j < 8; ++j) rows.push_back(ids[i].item<int64_t>() * 8 + j);
  for (int64_t r = 16 * 8; r < reduced_params; ++r) rows.push_back(r + 24 * 8);
  return torch::tensor(rows, torch::kInt64);
}

std::string Text(const std::mt19937_64& rng) {
  std::ostringstream out;
  out << rng;
  return out.str();
}

TEST(LmTrajectoryWindows, SubsampledWindowsGatherTheKeptRows) {
  const std::string dir = WriteLmDataset("lm_index", IndexRow);
  auto data = TrajectoryWindows::Open({dir}, LmOptions());
  ASSERT_TRUE(data.ok()) << data.status();
  const LayoutGraph& g = (*data)->graph(0);
  EXPECT_TRUE((*data)->tokens(0).active());
  EXPECT_EQ(g.params()[0].shape, (std::vector<int64_t>{16, 8}));
  const int64_t Pr = g.num_params();
  testing::Gpt2TestShape shape;
  EXPECT_EQ(Pr, TotalParams(*MakeParamTable(testing::Gpt2NamedShapes(shape))) - 24 * 8);
  EXPECT_TRUE(g.global_scale());  // wte is the first tensor: the official quirk applies
  std::mt19937_64 rng(11);
  for (int i = 0; i < 10; ++i) {
    const SliceRef s = (*data)->SampleSlice(&rng);
    ASSERT_TRUE(s.token_ids.defined());
    ASSERT_EQ(s.token_ids.numel(), 16);
    EXPECT_GE(s.start_row, 0);
    EXPECT_LT(s.start_row, kLmRows - 19);  // stride 1: rows 200 steps apart
    const torch::Tensor states = (*data)->SliceStates(s);
    const int64_t n = std::min<int64_t>(45, kLmRows - s.start_row);
    ASSERT_EQ(states.size(0), n);
    ASSERT_EQ(states.size(1), Pr);
    const torch::Tensor want = ExpectedRows(s.token_ids, Pr).to(torch::kFloat32);
    for (int64_t r = 0; r < n; ++r) {
      const float sign = (s.start_row + r) % 2 == 0 ? 1.0f : -1.0f;
      ASSERT_TRUE(torch::equal(states[r], want * sign)) << "slice row " << r;
    }
    const auto w = (*data)->Windows(s);
    ASSERT_EQ(w.size(), 4u);
    for (const auto& win : w) {
      EXPECT_EQ(win.num_nodes, g.graph().num_nodes);
      EXPECT_EQ(win.num_edges(), g.graph().num_edges());
      EXPECT_EQ(win.x.size(1), 5);  // F = 1 for transformers
      EXPECT_TRUE(torch::equal(win.pos_w.narrow(0, 0, 16), s.token_ids + 1));
      EXPECT_EQ(win.pos_w.narrow(0, 16, win.num_nodes - 16).abs().sum().item<int64_t>(), 0);
      EXPECT_TRUE(torch::equal(win.pos_w, w[0].pos_w));  // one subset for the 4 windows
    }
    // Window 1's inputs are slice states 1..5, scaled with one global mu/sigma (the quirk); the
    // first 16*8 edges are the kept wte rows (token v -> X_0[j], edge v*8 + j).
    const torch::Tensor in = states.narrow(0, 1, 5);
    const float mu = in.mean().item<float>(), sd = in.std().item<float>();
    for (int64_t e : {int64_t{0}, int64_t{37}, int64_t{16 * 8 - 1}}) {
      for (int64_t c = 0; c < 5; ++c) {
        EXPECT_NEAR(w[1].x[e][c].item<float>(), (in[c][e].item<float>() - mu) / (sd + 1e-6f), 1e-5);
      }
      EXPECT_NEAR(w[1].y[e][0][0].item<float>(), (states[6][e].item<float>() - mu) / (sd + 1e-6f),
                  1e-5);
    }
  }
}

TEST(LmTrajectoryWindows, PerTensorScalingWhenTheQuirkIsOff) {
  const std::string dir = WriteLmDataset("lm_index_pt", IndexRow);
  auto data = TrajectoryWindows::Open({dir}, LmOptions(/*global_scale=*/false));
  ASSERT_TRUE(data.ok());
  EXPECT_FALSE((*data)->graph(0).global_scale());
  std::mt19937_64 rng(5);
  const SliceRef s = (*data)->SampleSlice(&rng);
  const torch::Tensor states = (*data)->SliceStates(s);
  const auto w = (*data)->Windows(s);
  const torch::Tensor wte = states.narrow(0, 0, 5).narrow(1, 0, 16 * 8);  // wte's own statistics
  const float mu = wte.mean().item<float>(), sd = wte.std().item<float>();
  EXPECT_NEAR(w[0].x[9][2].item<float>(), (states[2][9].item<float>() - mu) / (sd + 1e-6f), 1e-5);
}

TEST(LmTrajectoryWindows, SubsetsDifferAcrossSlicesAndAResumedSamplerRepeatsThem) {
  const std::string dir = WriteLmDataset("lm_resume");
  auto data = TrajectoryWindows::Open({dir}, LmOptions());
  ASSERT_TRUE(data.ok());
  std::mt19937_64 rng(3);
  for (int i = 0; i < 3; ++i) (*data)->SampleSlice(&rng);
  const std::string saved = Text(rng);  // what the trainer's checkpoint stores
  std::vector<SliceRef> first;
  for (int i = 0; i < 8; ++i) first.push_back((*data)->SampleSlice(&rng));
  std::set<std::vector<int64_t>> subsets;
  for (const auto& s : first) {
    subsets.insert(std::vector<int64_t>(s.token_ids.data_ptr<int64_t>(),
                                        s.token_ids.data_ptr<int64_t>() + 16));
  }
  EXPECT_GE(subsets.size(), 7u);  // C(40, 16) subsets: repeats are all but impossible
  std::mt19937_64 resumed;
  std::istringstream(saved) >> resumed;
  for (const auto& s : first) {
    const SliceRef again = (*data)->SampleSlice(&resumed);
    EXPECT_EQ(again.start_row, s.start_row);
    EXPECT_TRUE(torch::equal(again.pos_sign, s.pos_sign));
    EXPECT_TRUE(torch::equal(again.token_ids, s.token_ids));
    EXPECT_TRUE(torch::equal((*data)->Windows(again)[2].x, (*data)->Windows(s)[2].x));
  }
}

TEST(LmTrajectoryWindows, ValidationSubsetsAreFixedAndSeeded) {
  const std::string dir = WriteLmDataset("lm_val");
  auto data = TrajectoryWindows::Open({dir}, LmOptions());
  ASSERT_TRUE(data.ok());
  const auto a = (*data)->EvenSlices(4);
  const auto b = (*data)->EvenSlices(4);
  ASSERT_EQ(a.size(), 4u);
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_TRUE(a[i].token_ids.defined());
    EXPECT_TRUE(torch::equal(a[i].token_ids, b[i].token_ids));
    EXPECT_FALSE(a[i].pos_sign.defined());
    std::mt19937_64 rng(1000003ull * 0 + i);  // the documented seed (eval_seed 0, trajectory 0)
    EXPECT_TRUE(torch::equal(a[i].token_ids, (*data)->tokens(0).Draw(&rng)));
  }
  EXPECT_FALSE(torch::equal(a[0].token_ids, a[1].token_ids));
}

TEST(LmTrajectoryWindows, NoSubsamplingAtOrBelowWteSize) {
  const std::string dir = WriteLmDataset("lm_small", IndexRow);
  WindowOptions o = LmOptions();
  o.wte_size = 1000;  // the official value; our vocabularies of <= 1000 tokens are kept whole
  auto data = TrajectoryWindows::Open({dir}, o);
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_FALSE((*data)->tokens(0).active());
  const LayoutGraph& g = (*data)->graph(0);
  EXPECT_EQ(g.params()[0].shape, (std::vector<int64_t>{40, 8}));
  std::mt19937_64 rng(0);
  const SliceRef s = (*data)->SampleSlice(&rng);
  EXPECT_FALSE(s.token_ids.defined());
  auto reader = trainer::TrajectoryReader::Open(dir);
  ASSERT_TRUE(reader.ok());
  const torch::Tensor states = (*data)->SliceStates(s);
  EXPECT_TRUE(torch::equal(states[0], (*reader)->states()[s.start_row].to(torch::kFloat32)));
  const auto w = (*data)->Windows(s);
  ASSERT_EQ(w.size(), 4u);
  EXPECT_TRUE(torch::equal(w[0].pos_w.narrow(0, 0, 40), torch::arange(1, 41, torch::kInt64)));
  EXPECT_EQ(w[0].pos_w.sum().item<int64_t>(), 40 * 41 / 2);
  SliceRef bad = s;
  bad.token_ids = torch::arange(16, torch::kInt64);
  EXPECT_THROW((*data)->Windows(bad), c10::Error);
}

TEST(LmTrajectoryWindows, LlamaEmbeddingAndUntiedHeadKeepTheSameTokens) {
  LlamaShape shape;
  shape.vocab = 40;
  shape.dim = 8;
  shape.layers = 1;
  shape.heads = 2;
  shape.kv_heads = 1;
  shape.ffn = 16;
  GraphSpec spec;
  spec.kind = GraphSpec::Kind::kAuto;
  spec.num_heads = 2;
  spec.num_kv_heads = 1;
  const std::string dir = ::testing::TempDir() + "/lm_llama";
  std::filesystem::remove_all(dir);
  const int64_t P =
      testing::WriteLmTestTrajectory(dir, 3, kLmRows, LlamaNamedShapes(shape), spec, IndexRow);
  auto data = TrajectoryWindows::Open({dir}, LmOptions());
  ASSERT_TRUE(data.ok()) << data.status();
  const LayoutGraph& g = (*data)->graph(0);
  EXPECT_FALSE(g.global_scale());  // the quirk is GPT-2's wte only
  const auto& r = g.params();
  EXPECT_EQ(r.front().shape, (std::vector<int64_t>{16, 8}));
  EXPECT_EQ(r.back().name, "lm_head.weight");
  EXPECT_EQ(r.back().shape, (std::vector<int64_t>{16, 8}));
  EXPECT_EQ(g.num_params(), P - 2 * 24 * 8);
  std::mt19937_64 rng(4);
  const SliceRef s = (*data)->SampleSlice(&rng);
  ASSERT_TRUE(s.token_ids.defined());
  const torch::Tensor states = (*data)->SliceStates(s);
  const float sign = s.start_row % 2 == 0 ? 1.0f : -1.0f;
  const int64_t head_full = P - 40 * 8, head_reduced = g.num_params() - 16 * 8;
  for (int64_t i = 0; i < 16; ++i) {
    const int64_t id = s.token_ids[i].item<int64_t>();
    for (int64_t j = 0; j < 8; ++j) {
      EXPECT_EQ(states[0][i * 8 + j].item<float>(), sign * (id * 8 + j));
      EXPECT_EQ(states[0][head_reduced + i * 8 + j].item<float>(), sign * (head_full + id * 8 + j));
    }
  }
  const auto w = (*data)->Windows(s);
  ASSERT_EQ(w.size(), 4u);
  EXPECT_TRUE(torch::equal(w[0].pos_w.narrow(0, 0, 16), s.token_ids + 1));
  EXPECT_EQ((w[3].pos_w > 0).sum().item<int64_t>(), 16);
}

TEST(LmTrajectoryWindows, OneGraphPerReducedLayout) {
  const std::string a = WriteLmDataset("lm_graph_a");
  const std::string b = ::testing::TempDir() + "/lm_graph_b";
  std::filesystem::remove_all(b);
  testing::WriteGpt2TestTrajectory(b, 8, kLmRows, testing::Gpt2TestShape{});
  auto data = TrajectoryWindows::Open({a, b}, LmOptions());
  ASSERT_TRUE(data.ok());
  EXPECT_EQ(&(*data)->graph(0), &(*data)->graph(1));
  // A mixed batch: LM graphs and MLP graphs merge (pos_w of all samples concatenated).
  const std::string mlp = WriteDataset("lm_mixed_mlp", 9);
  WindowOptions o = LmOptions();
  auto mixed = TrajectoryWindows::Open({a, mlp}, o);
  ASSERT_TRUE(mixed.ok()) << mixed.status();
  SliceRef lm_slice, mlp_slice;
  lm_slice.trajectory = 0;
  mlp_slice.trajectory = 1;
  std::vector<GraphSample> parts = (*mixed)->Windows(lm_slice);
  for (auto& w : (*mixed)->Windows(mlp_slice)) parts.push_back(w);
  const GraphSample batch = MergeGraphs(parts, 5);
  EXPECT_EQ(batch.pos_w.numel(), batch.num_nodes);
  EXPECT_EQ(batch.pos.size(0), batch.num_nodes);
}

}  // namespace
}  // namespace nino::metatrain
