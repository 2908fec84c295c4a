// Schedule, scaling, positional encoding and the optimizer wrapper.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "common/nino/laplacian_pe.h"
#include "common/nino/neural_graph.h"
#include "common/nino/nino_model.h"
#include "common/nino/nino_optimizer.h"
#include "common/nino/nowcast_engine.h"
#include "common/nino/scaling.h"
#include "common/nino/schedule.h"

namespace nino {
namespace {

TEST(Schedule, MatchesTheOfficialNumbers) {
  EXPECT_EQ(HorizonSchedule(10000, 1000), (std::vector<int>{40, 33, 26, 21, 16, 11, 8, 5, 3, 1}));
  EXPECT_EQ(HorizonSchedule(15000, 1000),
            (std::vector<int>{40, 35, 31, 27, 23, 20, 16, 13, 11, 8, 6, 5, 3, 2, 1}));
  EXPECT_EQ(HorizonSchedule(5000, 1000), (std::vector<int>{40, 25, 13, 5, 1}));
  EXPECT_EQ(HorizonSchedule(10000, 1000, 1.0),
            (std::vector<int>{40, 36, 31, 27, 23, 18, 14, 10, 5, 1}));
  EXPECT_EQ(HorizonSchedule(500, 1000), (std::vector<int>{40}));
  auto s = HorizonSchedule(10000, 1000);
  EXPECT_EQ(HorizonAt(s, 999, 1000), 40);
  EXPECT_EQ(HorizonAt(s, 1999, 1000), 33);
  EXPECT_EQ(HorizonAt(s, 9999, 1000), 1);
  EXPECT_EQ(HorizonAt(s, 50000, 1000), 1);
}

TEST(Scaling, PerTensorStdAndFrozenTensors) {
  auto table = *MakeParamTable({{"a.weight", {3, 2}}, {"a.bias", {3}}, {"n.weight", {4}}});
  torch::manual_seed(1);
  torch::Tensor states = torch::randn({5, 13});
  states.narrow(1, 9, 4).fill_(1.0);  // frozen gain: identical in all 5 states
  ScaledStates s = ScaleStates(states, table);
  ASSERT_EQ(s.scaled.sizes(), (std::vector<int64_t>{13, 5}));
  // Against a float64 computation.
  torch::Tensor a = states.narrow(1, 0, 6).to(torch::kFloat64);
  const double mu = a.mean().item<double>(), sd = a.std().item<double>();
  EXPECT_NEAR(s.mu[0].item<double>(), mu, 1e-6);
  EXPECT_NEAR(s.sigma[0].item<double>(), sd, 1e-6);
  EXPECT_NEAR(s.scaled[0][3].item<double>(), (states[3][0].item<double>() - mu) / (sd + 1e-6),
              1e-5);
  // sigma = 0: scaled values are 0 and the way back is exactly mu.
  EXPECT_EQ(s.sigma[2].item<float>(), 0.0f);
  EXPECT_EQ(s.scaled.narrow(0, 9, 4).abs().max().item<float>(), 0.0f);
  torch::Tensor back = UnscaleFlat(torch::randn({13}), s, table);
  EXPECT_TRUE(torch::equal(back.narrow(0, 9, 4), torch::ones({4})));
}

NeuralGraph MlpGraph() {
  auto t = *MakeParamTable({{"fc.0.weight", {32, 784}},
                            {"fc.0.bias", {32}},
                            {"fc.2.weight", {32, 32}},
                            {"fc.2.bias", {32}},
                            {"fc.4.weight", {10, 32}},
                            {"fc.4.bias", {10}}});
  return *BuildGenericGraph(t);
}

TEST(LaplacianPE, DenseAndSparseSolversAgree) {
  NeuralGraph g = MlpGraph();  // 861 nodes
  LpeOptions dense;
  dense.sign_seed = 3;
  dense.dense_max_nodes = 2000;
  auto d = ComputeLaplacianPE(g, dense);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_TRUE(d->dense);
  LpeOptions sparse = dense;
  sparse.dense_max_nodes = 0;
  auto s = ComputeLaplacianPE(g, sparse);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_FALSE(s->dense);
  ASSERT_EQ(d->pos.sizes(), (std::vector<int64_t>{861, 8}));
  for (int c = 0; c < 8; ++c) {
    EXPECT_NEAR(d->eigenvalues[c], s->eigenvalues[c], 1e-6) << c;
    EXPECT_LT(d->residuals[c], 1e-6);
    EXPECT_LT(s->residuals[c], 1e-6);
    EXPECT_NEAR(d->pos.select(1, c).norm().item<double>(), 1.0, 1e-5);
  }
  // Ascending, none trivial.
  for (int c = 1; c < 8; ++c) EXPECT_LE(d->eigenvalues[c - 1], d->eigenvalues[c] + 1e-12);
  EXPECT_GT(d->eigenvalues[0], 1e-6);
  // Same seed, same encoding; the residual check recognises our own columns.
  auto d2 = ComputeLaplacianPE(g, dense);
  EXPECT_TRUE(torch::equal(d->pos, d2->pos));
  std::vector<double> ray, res;
  LaplacianResiduals(g, d->pos, &ray, &res);
  for (int c = 0; c < 8; ++c) EXPECT_NEAR(ray[c], d->eigenvalues[c], 1e-6);
  // A random matrix is not an eigenbasis.
  LaplacianResiduals(g, torch::randn({861, 8}), &ray, &res);
  EXPECT_GT(res[0], 1e-2);
}

TEST(LaplacianPE, TinyGraphsAreRefused) {
  auto t = *MakeParamTable({{"a.weight", {2, 2}}});
  auto r = ComputeLaplacianPE(*BuildGenericGraph(t));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  EXPECT_NE(r.status().message().find("needs at least"), absl::string_view::npos) << r.status();
}

// The code is chosen where the error arises: a layout too small for the positional encoding is
// bad input, so the engine (and the nowcaster's RegisterJob on top of it) says INVALID_ARGUMENT
// without anyone remapping it.
TEST(LaplacianPE, AnEngineForATinyLayoutIsInvalidArgument) {
  NiNoConfig config;  // a GNN with an 8-dim positional encoding, nino_no_posw.pt's layout
  config.wte_pos_enc = false;
  config.hid = 16;
  auto model = NiNoModel::Synthetic(config, /*seed=*/0);
  ASSERT_TRUE(model.ok()) << model.status();
  auto engine = NowcastEngine::Create(std::make_shared<const NiNoModel>(std::move(*model)),
                                      *MakeParamTable({{"a.weight", {2, 2}}}), GraphSpec{});
  ASSERT_FALSE(engine.ok());
  EXPECT_EQ(engine.status().code(), absl::StatusCode::kInvalidArgument) << engine.status();
  EXPECT_NE(engine.status().message().find("positional encoding"), absl::string_view::npos)
      << engine.status();
}

// Adds 1 to the last state: easy to recognise in the parameters.
class PlusOneNowcaster : public Nowcaster {
 public:
  absl::StatusOr<torch::Tensor> Nowcast(const torch::Tensor& states, int k) override {
    calls.push_back(k);
    seen = states.clone();
    if (fail) return absl::UnavailableError("injected failure");
    return states[states.size(0) - 1] + 1.0;
  }
  std::vector<int> calls;
  torch::Tensor seen;
  bool fail = false;
};

TEST(NinoOptimizer, CollectsStatesAndJumpsAtThePeriod) {
  torch::Tensor w = torch::zeros({3}, torch::requires_grad());
  torch::optim::SGD sgd({w}, torch::optim::SGDOptions(0.1));
  auto nc = std::make_shared<PlusOneNowcaster>();
  NinoOptimizerOptions o;
  o.period = 10;
  o.ctx = 5;
  o.max_train_steps = 30;
  NinoOptimizer opt(&sgd, {w}, nc, o);
  EXPECT_EQ(opt.schedule(), (std::vector<int>{40, 13, 1}));
  int nino_steps = 0;
  for (int i = 0; i < 30; ++i) {
    const bool need = opt.need_grads();
    EXPECT_EQ(need, (i + 1) % 10 != 0) << i;
    sgd.zero_grad();
    if (need) (w.sum() * -1.0).backward();  // gradient -1: SGD adds 0.1 per step
    torch::Tensor before = w.detach().clone();
    NinoStepOutcome out = opt.step();
    EXPECT_EQ(out.state_recorded, (i + 1) % 2 == 0) << i;
    if (out.nino_step) {
      ++nino_steps;
      EXPECT_TRUE(out.applied) << out.status;
      EXPECT_TRUE(torch::allclose(w.detach(), before + 1.0));
    } else {
      EXPECT_TRUE(torch::allclose(w.detach(), before + 0.1));
    }
  }
  EXPECT_EQ(nino_steps, 3);
  EXPECT_EQ(nc->calls, (std::vector<int>{40, 13, 1}));
  EXPECT_EQ(nc->seen.sizes(), (std::vector<int64_t>{5, 3}));
  // The 5 states are 0.2 apart (2 SGD steps of 0.1), the last being the current parameters.
  EXPECT_NEAR((nc->seen[4] - nc->seen[3]).mean().item<double>(), 0.2, 1e-5);
}

TEST(NinoOptimizer, AFailedNowcastBecomesANormalStep) {
  torch::Tensor w = torch::zeros({2}, torch::requires_grad());
  torch::optim::SGD sgd({w}, torch::optim::SGDOptions(0.1));
  auto nc = std::make_shared<PlusOneNowcaster>();
  nc->fail = true;
  NinoOptimizerOptions o;
  o.period = 5;
  o.ctx = 5;
  NinoOptimizer opt(&sgd, {w}, nc, o);
  for (int i = 0; i < 5; ++i) {
    sgd.zero_grad();
    (w.sum() * -1.0).backward();
    NinoStepOutcome out = opt.step();
    if (i == 4) {
      EXPECT_TRUE(out.nino_step);
      EXPECT_FALSE(out.applied);
      EXPECT_EQ(out.status.code(), absl::StatusCode::kUnavailable);
    }
  }
  EXPECT_TRUE(torch::allclose(w.detach(), torch::full({2}, 0.5)));
  EXPECT_TRUE(opt.history().empty());
}

TEST(NinoOptimizer, RestoreValidatesAndResumes) {
  torch::Tensor w = torch::zeros({4}, torch::requires_grad());
  torch::optim::SGD sgd({w}, torch::optim::SGDOptions(0.1));
  NinoOptimizer opt(&sgd, {w}, std::make_shared<PlusOneNowcaster>(), {});
  EXPECT_FALSE(opt.Restore(10, {torch::zeros({3})}).ok());
  EXPECT_FALSE(opt.Restore(-1, {}).ok());
  std::vector<torch::Tensor> five(5, torch::zeros({4}));
  EXPECT_FALSE(opt.Restore(10, five).ok());
  ASSERT_TRUE(
      opt.Restore(999, {torch::zeros({4}), torch::ones({4}), torch::ones({4}), torch::ones({4})})
          .ok());
  EXPECT_FALSE(opt.need_grads());  // step_idx 999 with 4 states: the next step nowcasts
  EXPECT_FALSE(opt.SetFlatParams(torch::zeros({5})).ok());
}

}  // namespace
}  // namespace nino
