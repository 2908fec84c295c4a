// The training loop: the loss goes down on learnable synthetic trajectories, a stopped run
// resumes to exactly the weights of an uninterrupted one, a NaN rolls back and says so, the
// metrics file has one line per step, and the saved model is read by NiNoModel::Load and
// predicts what the training module predicts.
#include "metatrain/metatrainer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/nino/nino_model.h"
#include "metatrain/batch_forward.h"
#include "metatrain/test_trajectories.h"

namespace nino::metatrain {
namespace {

std::vector<std::string> Datasets() {
  static const std::vector<std::string> dirs = [] {
    std::vector<std::string> d;
    for (uint64_t s = 0; s < 3; ++s) {
      d.push_back(::testing::TempDir() + "/mt_data_" + std::to_string(s));
      testing::WriteTestTrajectory(d.back(), 10 + s, 1000);
    }
    return d;
  }();
  return dirs;
}

MetaTrainOptions Small(const std::string& out, bool gnn) {
  MetaTrainOptions o;
  o.train_dirs = {Datasets()[0], Datasets()[1]};
  o.val_dirs = {Datasets()[2]};
  o.gnn = gnn;
  o.hid = 8;
  o.steps = 24;
  o.batch_trajectories = 2;
  o.lr = 1e-2;
  o.ckpt_every = 5;
  o.val_slices = 2;
  o.out_dir = ::testing::TempDir() + "/" + out;
  std::filesystem::remove_all(o.out_dir);
  return o;
}

std::vector<nlohmann::json> Metrics(const std::string& out_dir) {
  std::vector<nlohmann::json> lines;
  std::ifstream in(out_dir + "/metrics.jsonl");
  for (std::string l; std::getline(in, l);) lines.push_back(nlohmann::json::parse(l));
  return lines;
}

torch::Tensor Flat(const TrainableNiNo& m) {
  std::vector<torch::Tensor> v;
  for (const auto& [k, t] : m.StateDict()) v.push_back(t.view({-1}));
  return torch::cat(v);
}

TEST(MetaTrainer, LossFallsAndTheSavedModelIsTheTrainedOne) {
  for (bool gnn : {false, true}) {
    MetaTrainOptions o = Small(gnn ? "mt_gnn" : "mt_wnn", gnn);
    o.steps = 40;
    auto t = MetaTrainer::Create(o);
    ASSERT_TRUE(t.ok()) << t.status();
    ASSERT_TRUE((*t)->Run().ok());
    const auto lines = Metrics(o.out_dir);
    int64_t step_lines = 0;
    for (const auto& l : lines) step_lines += l.contains("loss");
    ASSERT_EQ(step_lines, 40);
    // Single-batch losses are too noisy to compare; the held-out L1 must beat "no change"
    // (an untrained NiNo, whose updates are ~0.02-scale noise, does not: its L1 is about equal).
    ASSERT_TRUE(lines.back().contains("val_l1"));
    const double val = lines.back()["val_l1"].get<double>();
    const double no_change = lines.back()["val_l1_no_change"].get<double>();
    EXPECT_LT(val, (gnn ? 0.995 : 0.95) * no_change) << "gnn " << gnn;
    EXPECT_TRUE(lines[5].contains("grad_norm") && lines[5].contains("lr") &&
                lines[5].contains("wall_seconds"));
    // The saved checkpoint: official layout, read by our reader, same predictions.
    auto loaded = NiNoModel::Load(o.out_dir + "/nino.pt");
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    EXPECT_EQ(loaded->is_gnn(), gnn);
    auto data = TrajectoryWindows::Open(o.val_dirs, WindowOptions{5, 40, 4, 200, gnn ? 8 : 0});
    ASSERT_TRUE(data.ok());
    const GraphSample w = (*data)->Windows(SliceRef{})[0];
    torch::NoGradGuard no_grad;
    const torch::Tensor ours = (*t)->model().Forward(w.x, w.edge_type, w.edge_index, w.pos);
    for (int k : {1, 40}) {
      const torch::Tensor ref = loaded->Forward(w.x, w.edge_type, w.edge_index, w.pos, {}, k);
      EXPECT_LE((ours.select(2, k - 1) - ref).abs().max().item<double>(), 1e-6);
    }
  }
}

// 5x5 kernels (25 slots per edge): a GNN with the official 9 slots refuses the data before any
// work, naming the trajectory; one with max_feat_size 25 trains on 5x5 and MLP graphs in the
// same batches, and its saved model (model_args max_feat_size 25) predicts what it predicts.
TEST(MetaTrainer, AGnnWithMoreFeatureSlotsTrainsOnWiderKernels) {
  const std::string k5 = ::testing::TempDir() + "/mt_data_k5";
  std::filesystem::remove_all(k5);
  testing::WriteConvTestTrajectory(k5, 21, 1000, 5);
  MetaTrainOptions o = Small("mt_k5", /*gnn=*/true);
  o.train_dirs = {Datasets()[0], k5};
  o.val_dirs = {k5};
  o.steps = 6;
  auto refused = MetaTrainer::Create(o);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("mt_data_k5 has 25 feature slots"), std::string::npos)
      << refused.status();
  EXPECT_FALSE(std::filesystem::exists(o.out_dir + "/train_state.pt"));
  o.max_feat_size = 25;
  auto t = MetaTrainer::Create(o);
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_TRUE((*t)->Run().ok());
  const auto lines = Metrics(o.out_dir);
  ASSERT_TRUE(lines.back().contains("val_l1"));
  EXPECT_TRUE(std::isfinite(lines.back()["val_l1"].get<double>()));
  auto loaded = NiNoModel::Load(o.out_dir + "/nino.pt");
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->config().max_feat_size, 25);
  // On the 5x5 graph (all 25 slots) and on the MLP graph (1 slot: the rest of the model's
  // input columns and head rows unused, as at inference on 3x3 kernels).
  for (const std::string& dir : {k5, Datasets()[0]}) {
    auto data = TrajectoryWindows::Open({dir}, WindowOptions{5, 40, 4, 200, 8});
    ASSERT_TRUE(data.ok());
    const GraphSample w = (*data)->Windows(SliceRef{})[0];
    ASSERT_EQ(w.x.size(1), dir == k5 ? 5 * 25 : 5);
    torch::NoGradGuard no_grad;
    const torch::Tensor ours = (*t)->model().Forward(w.x, w.edge_type, w.edge_index, w.pos);
    for (int k : {1, 40}) {
      const torch::Tensor ref = loaded->Forward(w.x, w.edge_type, w.edge_index, w.pos, {}, k);
      EXPECT_LE((ours.select(2, k - 1) - ref).abs().max().item<double>(), 1e-6) << dir << " " << k;
    }
  }
  // A resume with the official width is another configuration.
  o.max_feat_size = 9;
  o.steps = 6;
  auto other = MetaTrainer::Create(o);
  EXPECT_FALSE(other.ok());
}

TEST(MetaTrainer, AStoppedRunResumesExactly) {
  MetaTrainOptions straight = Small("mt_straight", false);
  auto a = MetaTrainer::Create(straight);
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE((*a)->Run().ok());

  MetaTrainOptions stopped = Small("mt_resumed", false);
  stopped.stop_at = 12;  // not a multiple of ckpt_every: the stop itself checkpoints
  auto b = MetaTrainer::Create(stopped);
  ASSERT_TRUE(b.ok());
  ASSERT_TRUE((*b)->Run().ok());
  EXPECT_EQ((*b)->progress().step, 12);
  EXPECT_FALSE((*b)->finished());
  b->reset();
  stopped.stop_at = 0;
  stopped.train_dirs = {};  // the checkpoint's list is used
  auto c = MetaTrainer::Create(stopped);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ((*c)->progress().step, 12);
  ASSERT_TRUE((*c)->Run().ok());
  EXPECT_TRUE(torch::equal(Flat((*a)->model()), Flat((*c)->model())));
  int step_lines = 0;
  for (const auto& l : Metrics(stopped.out_dir)) step_lines += l.contains("loss");
  EXPECT_EQ(step_lines, 24);

  MetaTrainOptions other = stopped;  // same folder, the finished run's checkpoint is there
  other.hid = 16;
  EXPECT_FALSE(MetaTrainer::Create(other).ok());  // another configuration's checkpoint
}

TEST(MetaTrainer, NanLossRollsBackToTheLastCheckpoint) {
  MetaTrainOptions o = Small("mt_nan", false);
  bool injected = false;
  o.loss_hook = [&](int64_t step, torch::Tensor* loss) {
    if (step == 8 && !injected) {
      injected = true;
      *loss = *loss * std::numeric_limits<float>::quiet_NaN();
    }
  };
  auto t = MetaTrainer::Create(o);
  ASSERT_TRUE(t.ok());
  ASSERT_TRUE((*t)->Run().ok());
  EXPECT_TRUE(injected);
  EXPECT_EQ((*t)->progress().step, 24);
  EXPECT_EQ((*t)->progress().rollbacks, 1);
  bool logged = false;
  for (const auto& l : Metrics(o.out_dir)) {
    if (l.value("event", "") == "nan_rollback") {
      logged = true;
      EXPECT_EQ(l["nan_at_step"].get<int64_t>(), 8);
      EXPECT_EQ(l["step"].get<int64_t>(), 5);  // the checkpoint before it
    }
    if (l.contains("loss")) {
      EXPECT_TRUE(std::isfinite(l["loss"].get<double>()));
    }
  }
  EXPECT_TRUE(logged);
  EXPECT_TRUE(torch::isfinite(Flat((*t)->model())).all().item<bool>());
}

// LM (GPT-2) trajectories, every 200 steps, vocab 40 subsampled to 16 token rows per slice.
std::vector<std::string> LmDatasets() {
  static const std::vector<std::string> dirs = [] {
    std::vector<std::string> d;
    for (uint64_t s = 0; s < 3; ++s) {
      d.push_back(::testing::TempDir() + "/mt_lm_" + std::to_string(s));
      std::filesystem::remove_all(d.back());
      testing::WriteGpt2TestTrajectory(d.back(), 20 + s, 30, testing::Gpt2TestShape{});
    }
    return d;
  }();
  return dirs;
}

MetaTrainOptions SmallLm(const std::string& out) {
  MetaTrainOptions o = Small(out, /*gnn=*/true);
  o.train_dirs = {LmDatasets()[0], LmDatasets()[1]};
  o.val_dirs = {LmDatasets()[2]};
  o.wte_size = 16;
  o.steps = 8;
  o.ckpt_every = 3;
  return o;
}

TEST(MetaTrainer, TrainsOnSubsampledLmTrajectories) {
  MetaTrainOptions o = SmallLm("mt_lm");
  auto t = MetaTrainer::Create(o);
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_TRUE((*t)->Run().ok());
  int64_t step_lines = 0;
  bool validated = false;
  for (const auto& l : Metrics(o.out_dir)) {
    if (l.contains("loss")) {
      ++step_lines;
      EXPECT_TRUE(std::isfinite(l["loss"].get<double>()));
      EXPECT_GT(l["loss"].get<double>(), 0.0);
      EXPECT_TRUE(std::isfinite(l["grad_norm"].get<double>()));
    }
    if (l.contains("val_l1")) {
      validated = true;
      EXPECT_TRUE(std::isfinite(l["val_l1"].get<double>()));
      EXPECT_EQ(l["windows"].get<int64_t>(), 2 * 4);  // 2 fixed slices x 4 shifts
    }
  }
  EXPECT_EQ(step_lines, 8);
  EXPECT_TRUE(validated);
  EXPECT_TRUE(torch::isfinite(Flat((*t)->model())).all().item<bool>());
  // The LM options are part of the recipe: another wte_size does not resume this run.
  MetaTrainOptions other = o;
  other.wte_size = 8;
  EXPECT_EQ(MetaTrainer::Create(other).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(MetaTrainer, AStoppedLmRunResumesExactly) {
  MetaTrainOptions straight = SmallLm("mt_lm_straight");
  auto a = MetaTrainer::Create(straight);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE((*a)->Run().ok());

  MetaTrainOptions stopped = SmallLm("mt_lm_resumed");
  stopped.stop_at = 4;  // the subsets of steps 5-8 come from the restored sampler
  auto b = MetaTrainer::Create(stopped);
  ASSERT_TRUE(b.ok());
  ASSERT_TRUE((*b)->Run().ok());
  b->reset();
  stopped.stop_at = 0;
  auto c = MetaTrainer::Create(stopped);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ((*c)->progress().step, 4);
  ASSERT_TRUE((*c)->Run().ok());
  EXPECT_TRUE(torch::equal(Flat((*a)->model()), Flat((*c)->model())));
}

}  // namespace
}  // namespace nino::metatrain
