#include "trainer/models.h"

#include <gtest/gtest.h>

#include "common/nino/neural_graph.h"

namespace nino::trainer {
namespace {

std::vector<ParamSpec> Table(torch::nn::Module& m) {
  std::vector<std::pair<std::string, std::vector<int64_t>>> s;
  for (const auto& p : m.named_parameters()) s.push_back({p.key(), p.value().sizes().vec()});
  return *MakeParamTable(s);
}

TEST(VisionNet, Fm16HasTheOfficialLayout) {
  VisionNet net(VisionNetOptions{});
  auto t = Table(*net);
  std::vector<std::string> names;
  for (const auto& p : t) names.push_back(p.name);
  EXPECT_EQ(names,
            (std::vector<std::string>{"fc.0.weight", "fc.0.bias", "fc.2.weight", "fc.2.bias",
                                      "fc.4.weight", "fc.4.bias", "fc.8.weight", "fc.8.bias"}));
  EXPECT_EQ(TotalParams(t), 14378);
  EXPECT_EQ(net->forward(torch::randn({3, 1, 28, 28})).sizes(), (std::vector<int64_t>{3, 10}));
  auto g = BuildGenericGraph(t);
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g->num_edges(), 2057);
  VisionNetOptions fm32;
  fm32.hid = {32, 64, 64};
  VisionNet net32(fm32);
  EXPECT_EQ(TotalParams(Table(*net32)), 56394);
}

TEST(VisionNet, WiderKernelsKeepTheLayoutAndGiveMoreSlotsPerEdge) {
  VisionNetOptions o;
  o.kernel_size = 5;
  VisionNet net(o);
  auto t = Table(*net);
  EXPECT_EQ(t[0].shape, (std::vector<int64_t>{16, 1, 5, 5}));
  EXPECT_EQ(TotalParams(t), 16 * 25 + 16 + 32 * 16 * 25 + 32 + 32 * 32 * 25 + 32 + 32 * 10 + 10);
  EXPECT_EQ(net->forward(torch::randn({2, 1, 28, 28})).sizes(), (std::vector<int64_t>{2, 10}));
  auto g = BuildGenericGraph(t);
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g->num_edges(), 2057);  // the same neurons and connections as 3x3
  EXPECT_EQ(g->feat_size, 25);
  o.kernel_size = 4;
  EXPECT_THROW(VisionNet{o}, c10::Error);
}

TEST(VisionNet, MlpIsAChainTheGenericGraphMaps) {
  VisionNetOptions o;
  o.conv = false;
  o.hid = {512, 512};
  VisionNet net(o);
  auto t = Table(*net);
  EXPECT_EQ(t.front().name, "fc.0.weight");
  EXPECT_EQ(t.back().name, "fc.4.bias");
  EXPECT_EQ(TotalParams(t), 784 * 512 + 512 + 512 * 512 + 512 + 512 * 10 + 10);
  EXPECT_EQ(net->forward(torch::randn({2, 1, 28, 28})).sizes(), (std::vector<int64_t>{2, 10}));
  auto g = BuildGenericGraph(t);
  ASSERT_TRUE(g.ok());
  EXPECT_TRUE(g->Validate().ok());
}

TEST(Gpt2LM, NamedLikeHuggingFaceAndMappedByTheGpt2Graph) {
  Gpt2Options o;  // 3 layers, d=64, 4 heads, 256 bytes, 128 positions
  Gpt2LM lm(o);
  auto t = Table(*lm);
  EXPECT_EQ(t[0].name, "transformer.wte.weight");
  EXPECT_EQ(t[1].name, "transformer.wpe.weight");
  EXPECT_EQ(t[2].name, "transformer.h.0.ln_1.weight");
  EXPECT_EQ(t[4].name, "transformer.h.0.attn.c_attn.weight");
  EXPECT_EQ(t[4].shape, (std::vector<int64_t>{64, 192}));
  EXPECT_EQ(t.back().name, "transformer.ln_f.bias");
  auto g = BuildGpt2Graph(t, o.n_head);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_TRUE(g->Validate().ok());
  EXPECT_EQ(g->num_params, TotalParams(t));
}

TEST(Gpt2LM, IsCausal) {
  torch::manual_seed(0);
  Gpt2Options o;
  o.n_layer = 2;
  o.n_embd = 32;
  Gpt2LM lm(o);
  torch::Tensor x = torch::randint(0, 256, {2, 16}, torch::kInt64);
  torch::Tensor y = x.clone();
  y.narrow(1, 10, 6).random_(0, 256);
  torch::Tensor a = lm->forward(x), b = lm->forward(y);
  EXPECT_EQ(a.sizes(), (std::vector<int64_t>{2, 16, 256}));
  EXPECT_TRUE(torch::allclose(a.narrow(1, 0, 10), b.narrow(1, 0, 10), 1e-5, 1e-6));
  EXPECT_FALSE(torch::allclose(a.narrow(1, 10, 6), b.narrow(1, 10, 6)));
}

}  // namespace
}  // namespace nino::trainer
