// The LM token-embedding subsampling: which tensors are reduced, the uniform sorted subsets,
// the flat rows of the reduced vector, pos_w = kept ids + 1, and no subsampling at or below
// wte_size rows or for non-LM graphs.
#include "metatrain/token_subsample.h"

#include <gtest/gtest.h>

#include <random>
#include <set>
#include <vector>

#include "metatrain/test_trajectories.h"

namespace nino::metatrain {
namespace {

std::vector<ParamSpec> Gpt2Params(int64_t vocab) {
  testing::Gpt2TestShape shape;
  shape.vocab = vocab;
  return *MakeParamTable(testing::Gpt2NamedShapes(shape));
}

GraphSpec Gpt2Spec() {
  GraphSpec spec;
  spec.kind = GraphSpec::Kind::kGpt2;
  spec.num_heads = 2;
  return spec;
}

TEST(TokenSubsample, ReducesTheGpt2EmbeddingOnly) {
  const auto params = Gpt2Params(40);
  auto s = TokenSubsample::Create(params, Gpt2Spec(), 16);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_TRUE(s->active());
  EXPECT_EQ(s->vocab(), 40);
  const auto& r = s->reduced_params();
  ASSERT_EQ(r.size(), params.size());
  EXPECT_EQ(r[0].name, "transformer.wte.weight");
  EXPECT_EQ(r[0].shape, (std::vector<int64_t>{16, 8}));
  for (size_t t = 1; t < r.size(); ++t) {
    EXPECT_EQ(r[t].shape, params[t].shape) << r[t].name;
    EXPECT_EQ(r[t].offset, params[t].offset - 24 * 8) << r[t].name;
  }
  // The graph builder takes the reduced layout.
  auto graph = BuildGraph(r, Gpt2Spec());
  ASSERT_TRUE(graph.ok()) << graph.status();
  EXPECT_EQ(graph->num_params, TotalParams(params) - 24 * 8);
}

TEST(TokenSubsample, DrawsUniformSortedSubsets) {
  auto s = TokenSubsample::Create(Gpt2Params(40), Gpt2Spec(), 16);
  ASSERT_TRUE(s.ok());
  std::mt19937_64 rng(7);
  std::vector<int64_t> count(40, 0);
  std::set<std::vector<int64_t>> distinct;
  const int kDraws = 400;
  for (int i = 0; i < kDraws; ++i) {
    const torch::Tensor ids = s->Draw(&rng);
    ASSERT_EQ(ids.numel(), 16);
    ASSERT_EQ(ids.scalar_type(), torch::kInt64);
    std::vector<int64_t> v(ids.data_ptr<int64_t>(), ids.data_ptr<int64_t>() + 16);
    for (size_t j = 0; j < v.size(); ++j) {
      ASSERT_GE(v[j], 0);
      ASSERT_LT(v[j], 40);
      if (j > 0) {
        ASSERT_LT(v[j - 1], v[j]);  // sorted and distinct
      }
      ++count[v[j]];
    }
    distinct.insert(v);
  }
  EXPECT_GT(distinct.size(), kDraws - 5u);
  // Each id is kept with probability 16/40: 160 of 400 expected, sd ~ 9.8.
  for (int64_t id = 0; id < 40; ++id) {
    EXPECT_GT(count[id], 110) << id;
    EXPECT_LT(count[id], 210) << id;
  }
  std::mt19937_64 a(3), b(3);
  EXPECT_TRUE(torch::equal(s->Draw(&a), s->Draw(&b)));
}

TEST(TokenSubsample, FlatRowsGatherTheKeptTokensAndEverythingElse) {
  const auto params = Gpt2Params(40);
  auto s = TokenSubsample::Create(params, Gpt2Spec(), 16);
  ASSERT_TRUE(s.ok());
  std::vector<int64_t> ids_v = {0, 1, 5, 6, 7, 9, 12, 13, 20, 21, 22, 30, 31, 37, 38, 39};
  const torch::Tensor rows = s->FlatRows(torch::tensor(ids_v, torch::kInt64));
  const int64_t P = TotalParams(params), Pr = TotalParams(s->reduced_params());
  ASSERT_EQ(rows.numel(), Pr);
  for (int64_t i = 0; i < 16; ++i)
    for (int64_t j = 0; j < 8; ++j) EXPECT_EQ(rows[i * 8 + j].item<int64_t>(), ids_v[i] * 8 + j);
  EXPECT_TRUE(
      torch::equal(rows.narrow(0, 16 * 8, Pr - 16 * 8), torch::arange(40 * 8, P, torch::kInt64)));
  EXPECT_THROW(s->FlatRows(torch::arange(15, torch::kInt64)), c10::Error);
  EXPECT_THROW(s->FlatRows(torch::arange(16, torch::kInt64) + 30), c10::Error);  // ids >= 40
}

TEST(TokenSubsample, PosWHoldsTheKeptIdsPlusOne) {
  auto s = TokenSubsample::Create(Gpt2Params(40), Gpt2Spec(), 16);
  ASSERT_TRUE(s.ok());
  auto graph = BuildGraph(s->reduced_params(), Gpt2Spec());
  ASSERT_TRUE(graph.ok());
  const torch::Tensor base = graph->PosWTensor();
  EXPECT_TRUE(torch::equal(base.narrow(0, 0, 16), torch::arange(1, 17, torch::kInt64)));
  std::mt19937_64 rng(1);
  const torch::Tensor ids = s->Draw(&rng);
  const torch::Tensor pos_w = TokenSubsample::PosW(base, ids);
  ASSERT_EQ(pos_w.numel(), graph->num_nodes);
  EXPECT_TRUE(torch::equal(pos_w.narrow(0, 0, 16), ids + 1));
  EXPECT_EQ(pos_w.narrow(0, 16, graph->num_nodes - 16).abs().sum().item<int64_t>(), 0);
}

TEST(TokenSubsample, NothingToDoAtOrBelowWteSizeOrWithoutTokenRows) {
  for (int64_t wte_size : {0, 40, 1000}) {
    auto s = TokenSubsample::Create(Gpt2Params(40), Gpt2Spec(), wte_size);
    ASSERT_TRUE(s.ok());
    EXPECT_FALSE(s->active()) << wte_size;
    EXPECT_EQ(s->reduced_params()[0].shape, (std::vector<int64_t>{40, 8}));
  }
  const auto mlp = *MakeParamTable({{"fc.0.weight", {5000, 6}}, {"fc.0.bias", {5000}}});
  auto generic = TokenSubsample::Create(mlp, GraphSpec{}, 16);
  ASSERT_TRUE(generic.ok());
  EXPECT_FALSE(generic->active());
  EXPECT_EQ(generic->vocab(), 0);
  EXPECT_EQ(TokenSubsample::Create(Gpt2Params(40), Gpt2Spec(), -1).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(TokenSubsample, LlamaKeepsTheSameTokensInEmbeddingAndUntiedHead) {
  LlamaShape shape;
  shape.vocab = 40;
  shape.dim = 8;
  shape.layers = 1;
  shape.heads = 2;
  shape.kv_heads = 1;
  shape.ffn = 16;
  const auto params = *MakeParamTable(LlamaNamedShapes(shape));
  GraphSpec spec;
  spec.kind = GraphSpec::Kind::kLlama;
  spec.num_heads = 2;
  spec.num_kv_heads = 1;
  auto s = TokenSubsample::Create(params, spec, 16);
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_TRUE(s->active());
  const auto& r = s->reduced_params();
  EXPECT_EQ(r.front().shape, (std::vector<int64_t>{16, 8}));
  EXPECT_EQ(r.back().name, "lm_head.weight");
  EXPECT_EQ(r.back().shape, (std::vector<int64_t>{16, 8}));
  auto graph = BuildGraph(r, spec);
  ASSERT_TRUE(graph.ok()) << graph.status();
  std::mt19937_64 rng(2);
  const torch::Tensor ids = s->Draw(&rng);
  const torch::Tensor rows = s->FlatRows(ids);
  const ParamSpec& head = params.back();
  const ParamSpec& head_r = r.back();
  for (int64_t i = 0; i < 16; ++i) {
    EXPECT_EQ(rows[i * 8 + 3].item<int64_t>(), ids[i].item<int64_t>() * 8 + 3);
    EXPECT_EQ(rows[head_r.offset + i * 8 + 5].item<int64_t>(),
              head.offset + ids[i].item<int64_t>() * 8 + 5);
  }
  const torch::Tensor pos_w = TokenSubsample::PosW(graph->PosWTensor(), ids);
  EXPECT_TRUE(torch::equal(pos_w.narrow(0, 0, 16), ids + 1));
  EXPECT_EQ((pos_w > 0).sum().item<int64_t>(), 16);
}

}  // namespace
}  // namespace nino::metatrain
