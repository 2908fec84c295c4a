#include "common/nino/neural_graph.h"

#include <gtest/gtest.h>

#include <map>

#include "common/nino/test_layouts.h"

namespace nino {
namespace {

using Shapes = std::vector<std::pair<std::string, std::vector<int64_t>>>;

std::vector<ParamSpec> Table(const Shapes& s) {
  auto t = MakeParamTable(s);
  EXPECT_TRUE(t.ok()) << t.status();
  return *t;
}

std::map<int64_t, int64_t> TypeCounts(const NeuralGraph& g) {
  std::map<int64_t, int64_t> c;
  for (int64_t t : g.type) c[t]++;
  return c;
}

Shapes Mlp() {
  return {{"fc.0.weight", {32, 784}}, {"fc.0.bias", {32}},       {"fc.2.weight", {32, 32}},
          {"fc.2.bias", {32}},        {"fc.4.weight", {10, 32}}, {"fc.4.bias", {10}}};
}

Shapes Fm16() { return testing::Fm16Layout(); }

Shapes Gpt2(int L, int64_t d, int64_t V, int64_t Ppos, int64_t Fb, bool lnf = true) {
  return testing::Gpt2Layout(L, d, V, Ppos, Fb, lnf);
}

TEST(GenericGraph, MlpMatchesTheSpecWorkedExample) {
  auto g = BuildGenericGraph(Table(Mlp()));
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->num_params, 26506);
  EXPECT_EQ(g->num_nodes, 861);
  EXPECT_EQ(g->num_edges(), 27367);
  EXPECT_EQ(g->feat_size, 1);
  auto c = TypeCounts(*g);
  EXPECT_EQ(c[kEdgeFullyConnected], 26432);
  EXPECT_EQ(c[kEdgeBias], 74);
  EXPECT_EQ(c[kEdgeSelfLoop], 861);
  // First weight: input 0 -> hidden-1 unit 0 (node 785) carries W[0, 0]; input 1 -> 785 is W[0,1].
  EXPECT_EQ(g->src[0], 0);
  EXPECT_EQ(g->dst[0], 785);
  EXPECT_EQ(g->param_index[0], 0);
  EXPECT_EQ(g->dst[1], 786);
  EXPECT_EQ(g->param_index[1], 784);  // W[1, 0] at row-major 1*784 + 0
  // Bias of fc.0: node 784 -> hidden units.
  EXPECT_EQ(g->src[25088], 784);
  EXPECT_EQ(g->dst[25088], 785);
  EXPECT_EQ(g->param_index[25088], 25088);
  // Logits are 851..860; the self-loops come last with constant 2.
  EXPECT_EQ(g->dst[27367 - 861 - 1], 860);
  EXPECT_EQ(g->param_index.back(), kSlotTwo);
  EXPECT_TRUE(g->Validate().ok()) << g->Validate();
}

TEST(GenericGraph, Fm16ConvEdgesCarryTheirKernelInSlots) {
  auto g = BuildGenericGraph(Table(Fm16()));
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->num_params, 14378);
  EXPECT_EQ(g->num_nodes, 95);
  EXPECT_EQ(g->num_edges(), 2057);
  EXPECT_EQ(g->feat_size, 9);
  // Edge 0 -> first conv channel (node 2), slot f = W[0, 0, f/3, f%3].
  EXPECT_EQ(g->src[0], 0);
  EXPECT_EQ(g->dst[0], 2);
  for (int f = 0; f < 9; ++f) EXPECT_EQ(g->param_index[f], f);
  // Linear fc.8 edges use slot 0 only.
  const int64_t e_fc8 = 16 + 16 + 512 + 32 + 1024 + 32;  // first edge of fc.8.weight
  EXPECT_EQ(g->type[e_fc8], kEdgeFullyConnected);
  EXPECT_EQ(g->src[e_fc8], 52);
  EXPECT_EQ(g->dst[e_fc8], 85);
  EXPECT_EQ(g->param_index[e_fc8 * 9 + 1], kSlotZero);
  EXPECT_TRUE(g->Validate().ok());
}

TEST(GenericGraph, BatchNormParametersBecomeAuxiliaryNodes) {
  Shapes s = {{"c.0.weight", {4, 3, 3, 3}}, {"c.0.bias", {4}},
              {"c.1.weight", {4}},          {"c.1.bias", {4}},
              {"c.3.weight", {2, 4}},       {"c.3.bias", {2}}};
  auto g = BuildGenericGraph(Table(s));
  ASSERT_TRUE(g.ok()) << g.status();
  // Nodes: 3 inputs, aux(conv bias)=3, aux(bn w)=4, aux(bn b)=5, 4 channels 6..9, aux(fc bias)=10,
  // 2 logits.
  EXPECT_EQ(g->num_nodes, 13);
  auto c = TypeCounts(*g);
  EXPECT_EQ(c[kEdgeNormWeight], 4);
  EXPECT_EQ(c[kEdgeConv], 12);
  EXPECT_TRUE(g->Validate().ok()) << g->Validate();
}

TEST(GenericGraph, RejectsLayoutsItCannotMap) {
  auto not_chain = BuildGenericGraph(Table({{"a.weight", {8, 4}}, {"b.weight", {3, 5}}}));
  ASSERT_FALSE(not_chain.ok());
  EXPECT_EQ(not_chain.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(not_chain.status().message().find("b.weight"), std::string::npos);
  auto first_1d = BuildGenericGraph(Table({{"n.weight", {4}}, {"a.weight", {2, 4}}}));
  EXPECT_FALSE(first_1d.ok());
  auto bad_bias = BuildGenericGraph(Table({{"a.weight", {8, 4}}, {"a.bias", {7}}}));
  EXPECT_FALSE(bad_bias.ok());
  auto split_module =
      BuildGenericGraph(Table({{"a.weight", {8, 4}}, {"b.weight", {8, 8}}, {"a.bias", {8}}}));
  EXPECT_FALSE(split_module.ok());
  EXPECT_FALSE(BuildGenericGraph({}).ok());
  EXPECT_FALSE(MakeParamTable({{"x", {2}}, {"x", {3}}}).ok());
}

TEST(Gpt2Graph, MatchesTheSpecWorkedExample) {
  auto g = BuildGpt2Graph(Table(Gpt2(2, 32, 100, 64, 128)), 4);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->num_params, 30720);
  EXPECT_EQ(g->num_nodes, 738);
  EXPECT_EQ(g->num_edges(), 31714);
  EXPECT_EQ(g->pos_w[0], 1);
  EXPECT_EQ(g->pos_w[99], 100);
  EXPECT_EQ(g->pos_w[100], 0);
  EXPECT_TRUE(g->Validate().ok()) << g->Validate();
}

TEST(Gpt2Graph, EdgeCountFollowsTheClosedForm) {
  struct Cfg {
    int L;
    int64_t d, H, V, P, Fb;
  };
  for (Cfg c : {Cfg{2, 6, 2, 5, 3, 24}, Cfg{3, 24, 4, 50, 16, 40}, Cfg{1, 8, 1, 10, 4, 32},
                Cfg{3, 24, 2, 0, 0, 96}}) {
    auto g = BuildGpt2Graph(Table(Gpt2(c.L, c.d, c.V, c.P, c.Fb)), c.H);
    ASSERT_TRUE(g.ok()) << g.status();
    const int64_t nodes = c.V + c.P + c.L * (4 * c.d + c.Fb + c.H + 10) + 2 + c.d;
    EXPECT_EQ(g->num_nodes, nodes);
    const int64_t edges = c.V * c.d + c.P * c.d +
                          c.L * (4 * c.d * c.d + 2 * c.d * c.Fb + c.Fb + 13 * c.d) + 2 * c.d +
                          nodes;
    EXPECT_EQ(g->num_edges(), edges);
    EXPECT_TRUE(g->Validate().ok()) << g->Validate();
  }
}

TEST(Gpt2Graph, RejectsWrongLayouts) {
  auto shapes = Gpt2(2, 32, 100, 64, 128);
  EXPECT_FALSE(BuildGpt2Graph(Table(shapes), 5).ok());  // 32 % 5 != 0
  auto missing = shapes;
  missing.erase(missing.begin() + 5);  // h.0.ln_1.bias... wte,wpe,ln1w,ln1b,c_attn.w,c_attn.b
  auto r = BuildGpt2Graph(Table(missing), 4);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("missing"), std::string::npos) << r.status();
  auto extra = shapes;
  extra.push_back({"lm_head.weight", {100, 32}});
  auto r2 = BuildGpt2Graph(Table(extra), 4);
  ASSERT_FALSE(r2.ok());
  EXPECT_NE(r2.status().message().find("lm_head.weight"), std::string::npos);
  EXPECT_FALSE(ParseGraphKind("gpt2", 0).ok());
  EXPECT_FALSE(ParseGraphKind("llama9", 4).ok());
}

// The model description (names and shapes in order, heads) selects the construction by itself,
// and "auto" graphs equal the ones built with the explicit kind.
TEST(InferGraphSpec, ChoosesTheConstructionFromTheNames) {
  auto fm16 = InferGraphSpec(Table(Fm16()), 0);
  ASSERT_TRUE(fm16.ok()) << fm16.status();
  EXPECT_EQ(fm16->kind, GraphSpec::Kind::kGeneric);

  auto gpt2 = InferGraphSpec(Table(Gpt2(2, 32, 100, 64, 128)), 4);
  ASSERT_TRUE(gpt2.ok()) << gpt2.status();
  EXPECT_EQ(gpt2->kind, GraphSpec::Kind::kGpt2);
  EXPECT_EQ(gpt2->num_heads, 4);
  // Without the "transformer." prefix too.
  Shapes bare = Gpt2(1, 32, 100, 64, 128);
  for (auto& [n, s] : bare) n = n.substr(std::string("transformer.").size());
  auto gpt2_bare = InferGraphSpec(Table(bare), 4);
  ASSERT_TRUE(gpt2_bare.ok()) << gpt2_bare.status();
  EXPECT_EQ(gpt2_bare->kind, GraphSpec::Kind::kGpt2);

  LlamaShape ls;
  ls.vocab = 64, ls.dim = 32, ls.layers = 2, ls.heads = 4, ls.kv_heads = 2, ls.ffn = 64;
  auto llama = InferGraphSpec(Table(LlamaNamedShapes(ls)), 4, 2);
  ASSERT_TRUE(llama.ok()) << llama.status();
  EXPECT_EQ(llama->kind, GraphSpec::Kind::kLlama);
  EXPECT_EQ(llama->num_kv_heads, 2);

  // kAuto builds exactly the graph of the explicit kind.
  auto spec = ParseGraphKind("auto", 4);
  ASSERT_TRUE(spec.ok()) << spec.status();
  auto a = BuildGraph(Table(Gpt2(2, 32, 100, 64, 128)), *spec);
  auto b = BuildGpt2Graph(Table(Gpt2(2, 32, 100, 64, 128)), 4);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->src, b->src);
  EXPECT_EQ(a->dst, b->dst);
  EXPECT_EQ(a->type, b->type);
  EXPECT_EQ(a->param_index, b->param_index);
  EXPECT_EQ(GraphKindName(spec->kind), "auto");
}

TEST(InferGraphSpec, RefusesLayoutsItCannotMapNamingTheParameter) {
  // Attention without heads.
  auto r = InferGraphSpec(Table(Gpt2(1, 32, 100, 64, 128)), 0);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("transformer.h.0.attn.c_attn.weight"), std::string::npos)
      << r.status();
  // Attention in another naming scheme (BERT-style).
  Shapes bert = {{"embeddings.word_embeddings.weight", {100, 32}},
                 {"encoder.layer.0.attention.self.query.weight", {32, 32}},
                 {"encoder.layer.0.attention.self.query.bias", {32}}};
  auto r2 = InferGraphSpec(Table(bert), 4);
  ASSERT_FALSE(r2.ok());
  EXPECT_EQ(r2.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r2.status().message().find("encoder.layer.0.attention.self.query.weight"),
            std::string::npos)
      << r2.status();
  // GPT-2 and Llama blocks mixed.
  LlamaShape ls;
  ls.vocab = 64, ls.dim = 32, ls.layers = 1, ls.heads = 4, ls.kv_heads = 4, ls.ffn = 64;
  Shapes mixed = Gpt2(1, 32, 100, 64, 128);
  for (auto& p : LlamaNamedShapes(ls)) mixed.push_back(p);
  auto r3 = InferGraphSpec(Table(mixed), 4);
  ASSERT_FALSE(r3.ok());
  EXPECT_NE(r3.status().message().find("mixes"), std::string::npos) << r3.status();
  // A generic model whose layers do not connect: the builder names the problem.
  Shapes broken = {{"fc.0.weight", {32, 784}}, {"fc.1.weight", {10, 31}}};
  auto spec = ParseGraphKind("auto", 0);
  ASSERT_TRUE(spec.ok());
  auto g = BuildGraph(Table(broken), *spec);
  EXPECT_FALSE(g.ok());
  EXPECT_FALSE(ParseGraphKind("auto", -1).ok());
}

}  // namespace
}  // namespace nino
