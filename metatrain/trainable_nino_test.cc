// The differentiable NiNo is the inference function: equal to NiNoModel::Forward and to the
// NowcastEngine for every horizon (synthetic models, small graphs: never skips), correct
// gradients (float64 finite differences), and the official checkpoint layout on save.
#include "metatrain/trainable_nino.h"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "common/nino/neural_graph.h"
#include "common/nino/nowcast_engine.h"

namespace nino::metatrain {
namespace {

// A small CNN chain (3x3 kernels: F = 9) with a linear head: 25 nodes, enough for 8 LPE columns.
std::vector<ParamSpec> SmallCnn() {
  return *MakeParamTable({{"fc.0.weight", {4, 2, 3, 3}},
                          {"fc.0.bias", {4}},
                          {"fc.2.weight", {6, 4, 3, 3}},
                          {"fc.2.bias", {6}},
                          {"fc.5.weight", {5, 6}},
                          {"fc.5.bias", {5}}});
}

struct GraphInputs {
  NeuralGraph graph;
  torch::Tensor x, edge_type, edge_index, pos;
};

GraphInputs MakeInputs(const std::vector<ParamSpec>& params, int64_t lpe, uint64_t seed) {
  GraphInputs g;
  g.graph = *BuildGenericGraph(params);
  torch::manual_seed(seed);
  const int64_t E = g.graph.num_edges(), F = g.graph.feat_size;
  g.x = torch::randn({E, F * 5});
  g.edge_type = g.graph.EdgeTypeTensor();
  g.edge_index = g.graph.EdgeIndexTensor();
  g.pos = torch::randn({g.graph.num_nodes, lpe});
  return g;
}

NiNoConfig SmallConfig(bool gnn, int64_t hid) {
  NiNoConfig c;
  c.gnn = gnn;
  c.hid = hid;
  c.wte_pos_enc = false;
  return c;
}

double MaxAbsDiff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

void ExpectEqualsEngineForward(bool gnn) {
  auto model = NiNoModel::Synthetic(SmallConfig(gnn, 32), 7);
  ASSERT_TRUE(model.ok()) << model.status();
  auto trainable = TrainableNiNo::FromModel(*model);
  ASSERT_TRUE(trainable.ok());
  (*trainable)->eval();
  const GraphInputs g = MakeInputs(SmallCnn(), 8, 3);
  torch::NoGradGuard no_grad;
  const torch::Tensor all = (*trainable)->Forward(g.x, g.edge_type, g.edge_index, g.pos);
  ASSERT_EQ(all.sizes(), (std::vector<int64_t>{g.graph.num_edges(), 9, 40}));
  for (int k : {1, 2, 17, 40}) {
    const torch::Tensor ref = model->Forward(g.x, g.edge_type, g.edge_index, g.pos, {}, k);
    EXPECT_LE(MaxAbsDiff(all.select(2, k - 1), ref), 1e-6) << "k " << k;
    // The prediction moves away from the last state (the test could not pass trivially).
    EXPECT_GT(MaxAbsDiff(ref, g.x.view({-1, 9, 5}).select(2, 4)), 1e-5);
  }
}

TEST(TrainableNiNo, GnnEqualsNiNoModelForwardOnEveryHorizon) { ExpectEqualsEngineForward(true); }
TEST(TrainableNiNo, WnnEqualsNiNoModelForwardOnEveryHorizon) { ExpectEqualsEngineForward(false); }

TEST(TrainableNiNo, EqualsNowcastEngineThroughScalingAndGraph) {
  for (bool gnn : {true, false}) {
    auto model = NiNoModel::Synthetic(SmallConfig(gnn, 16), 11);
    ASSERT_TRUE(model.ok());
    auto shared = std::make_shared<const NiNoModel>(*model);
    auto engine = NowcastEngine::Create(shared, SmallCnn(), GraphSpec{});
    ASSERT_TRUE(engine.ok()) << engine.status();
    auto trainable = TrainableNiNo::FromModel(*model);
    ASSERT_TRUE(trainable.ok());
    torch::manual_seed(5);
    const torch::Tensor states = torch::randn({5, TotalParams(SmallCnn())}).cumsum(0);
    const NeuralGraph& graph = (*engine)->graph();
    for (int k : {1, 40}) {
      NowcastDetails d;
      ASSERT_TRUE((*engine)->Nowcast(states, k, &d).ok());
      torch::NoGradGuard no_grad;
      const torch::Tensor all =
          (*trainable)
              ->Forward(d.edge_attr, graph.EdgeTypeTensor(), graph.EdgeIndexTensor(),
                        (*engine)->positional_encoding());
      EXPECT_LE(MaxAbsDiff(all.select(2, k - 1), d.pred_edges), 1e-6) << gnn << " k " << k;
    }
  }
}

// d(sum(out * w))/d(theta) by autograd vs central differences, in float64.
void ExpectGradientsMatchFiniteDifferences(bool gnn) {
  NiNoConfig c = SmallConfig(gnn, 4);
  c.seq_len = 3;
  auto created = TrainableNiNo::Create(c, 1);
  ASSERT_TRUE(created.ok()) << created.status();
  TrainableNiNo& m = **created;
  m.to(torch::kFloat64);
  // Larger weights than the 0.02 init, so that every path contributes visibly.
  {
    torch::NoGradGuard no_grad;
    for (auto& p : m.parameters()) p.normal_(0.0, 0.5);
  }
  GraphInputs g = MakeInputs(SmallCnn(), 8, 9);
  g.x = g.x.to(torch::kFloat64);
  g.pos = g.pos.to(torch::kFloat64);
  const torch::Tensor w = torch::randn({g.graph.num_edges(), 9, 3}, torch::kFloat64);
  auto objective = [&] { return (m.Forward(g.x, g.edge_type, g.edge_index, g.pos) * w).sum(); };
  m.zero_grad();
  objective().backward();
  int checked = 0;
  for (auto& item : m.named_parameters()) {
    const std::string& name = item.key();
    torch::Tensor& p = item.value();
    if (!p.grad().defined()) {
      // Only the last message-passing layer is unused (it cannot reach the output).
      EXPECT_NE(name.find("gnn__convs__2"), std::string::npos) << name;
      continue;
    }
    const torch::Tensor flat = p.view({-1});
    const torch::Tensor grad = p.grad().view({-1});
    for (int64_t i = 0; i < flat.numel(); i += std::max<int64_t>(1, flat.numel() / 5)) {
      torch::NoGradGuard no_grad;
      const double orig = flat[i].item<double>(), eps = 1e-6;
      flat[i].fill_(orig + eps);
      const double up = objective().item<double>();
      flat[i].fill_(orig - eps);
      const double down = objective().item<double>();
      flat[i].fill_(orig);
      const double fd = (up - down) / (2 * eps), ad = grad[i].item<double>();
      EXPECT_NEAR(ad, fd, 1e-6 * std::max(1.0, std::abs(fd))) << name << "[" << i << "]";
      ++checked;
    }
  }
  EXPECT_GT(checked, gnn ? 100 : 40);
}

TEST(TrainableNiNo, GnnGradientsMatchFiniteDifferences) {
  ExpectGradientsMatchFiniteDifferences(true);
}
TEST(TrainableNiNo, WnnGradientsMatchFiniteDifferences) {
  ExpectGradientsMatchFiniteDifferences(false);
}

TEST(TrainableNiNo, SavedModelLoadsWithOurReaderAndPredictsTheSame) {
  for (bool gnn : {true, false}) {
    auto created = TrainableNiNo::Create(SmallConfig(gnn, 16), 4);
    ASSERT_TRUE(created.ok());
    const std::string path = ::testing::TempDir() + (gnn ? "/gnn.pt" : "/wnn.pt");
    ASSERT_TRUE((*created)->Save(path).ok());
    auto loaded = NiNoModel::Load(path);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    EXPECT_EQ(loaded->is_gnn(), gnn);
    EXPECT_EQ(loaded->config().hid, 16);
    const GraphInputs g = MakeInputs(SmallCnn(), 8, 2);
    torch::NoGradGuard no_grad;
    const torch::Tensor all = (*created)->Forward(g.x, g.edge_type, g.edge_index, g.pos);
    const torch::Tensor ref = loaded->Forward(g.x, g.edge_type, g.edge_index, g.pos, {}, 5);
    EXPECT_LE(MaxAbsDiff(all.select(2, 4), ref), 1e-6);
  }
}

TEST(TrainableNiNo, ExportsTheOfficialKeysAndModelArgs) {
  auto wnn = TrainableNiNo::Create(SmallConfig(false, 128), 0);
  ASSERT_TRUE(wnn.ok());
  // nino_mlp.pt: 11 tensors, 57,384 weights, model_args {'gnn': False}.
  EXPECT_EQ((*wnn)->StateDict().size(), 11u);
  EXPECT_EQ((*wnn)->num_weights(), 57384);
  EXPECT_EQ((*wnn)->ModelArgs().DebugString(), "{'gnn': False}");
  auto gnn = TrainableNiNo::Create(SmallConfig(true, 128), 0);
  ASSERT_TRUE(gnn.ok());
  // nino_no_posw.pt: 49 tensors, 549,992 weights, model_args {'wte_pos_enc': False}.
  EXPECT_EQ((*gnn)->StateDict().size(), 49u);
  EXPECT_EQ((*gnn)->num_weights(), 549992);
  EXPECT_EQ((*gnn)->ModelArgs().DebugString(), "{'wte_pos_enc': False}");
  // Official initialisation: N(0, 0.02) weights, zero biases.
  for (const auto& [key, t] : (*gnn)->StateDict()) {
    if (key.size() > 5 && key.substr(key.size() - 5) == ".bias") {
      EXPECT_EQ(t.abs().max().item<float>(), 0.0f) << key;
    } else if (t.numel() > 1000) {
      EXPECT_NEAR(t.std().item<double>(), 0.02, 0.002) << key;
    }
  }
}

}  // namespace
}  // namespace nino::metatrain
