// The gpt2 graph kind derived from a description (DescribeGpt2 + BuildGraphFromDescription)
// equals the hand-written official NeuralGraphGPT graph (testing::BuildGpt2ReferenceGraph) node
// for node and edge for edge, order included, for the configurations of NINO_SPEC.md 3.5, with
// and without the "transformer." prefix, without wte / wpe / ln_f and for every subset subgraph
// mode makes; both refuse the same layouts with the same messages. Synthetic layouts only.
#include "common/nino/gpt2_description.h"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/nino/graph_from_description.h"
#include "common/nino/neural_graph.h"
#include "common/nino/nowcast_engine.h"
#include "common/nino/test_layouts.h"
#include "common/nino/testing/gpt2_reference_graph.h"

namespace nino {
namespace {

using testing::Shapes;

std::vector<ParamSpec> Table(const Shapes& s) {
  auto t = MakeParamTable(s);
  EXPECT_TRUE(t.ok()) << t.status();
  return *t;
}

Shapes WithoutPrefix(Shapes s) {
  for (auto& [name, shape] : s) name = name.substr(std::string("transformer.").size());
  return s;
}

Shapes Without(Shapes s, const std::string& needle) {
  Shapes out;
  for (auto& p : s) {
    if (p.first.find(needle) == std::string::npos) out.push_back(std::move(p));
  }
  return out;
}

// Node for node and edge for edge: src, dst, type, param_index (every slot), pos_w, N, F, P.
void ExpectSameGraph(const NeuralGraph& derived, const NeuralGraph& reference,
                     const std::string& what) {
  SCOPED_TRACE(what);
  EXPECT_EQ(derived.num_nodes, reference.num_nodes);
  EXPECT_EQ(derived.num_params, reference.num_params);
  EXPECT_EQ(derived.feat_size, reference.feat_size);
  ASSERT_EQ(derived.num_edges(), reference.num_edges());
  for (int64_t e = 0; e < derived.num_edges(); ++e) {
    ASSERT_EQ(derived.src[e], reference.src[e]) << "edge " << e;
    ASSERT_EQ(derived.dst[e], reference.dst[e]) << "edge " << e;
    ASSERT_EQ(derived.type[e], reference.type[e]) << "edge " << e;
  }
  EXPECT_EQ(derived.param_index, reference.param_index);
  EXPECT_EQ(derived.pos_w, reference.pos_w);
}

// BuildGpt2Graph (the library's, derived) against the reference, and the described size.
void ExpectDerivedEqualsReference(const std::vector<ParamSpec>& params, int64_t heads,
                                  const std::string& what) {
  absl::StatusOr<NeuralGraph> reference = testing::BuildGpt2ReferenceGraph(params, heads);
  ASSERT_TRUE(reference.ok()) << what << ": " << reference.status();
  absl::StatusOr<NeuralGraph> derived = BuildGpt2Graph(params, heads);
  ASSERT_TRUE(derived.ok()) << what << ": " << derived.status();
  ExpectSameGraph(*derived, *reference, what);
  absl::StatusOr<ModelDescription> d = DescribeGpt2(params, heads);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->version, 2);
  absl::StatusOr<DescribedGraphSize> size = CountGraphFromDescription(params, *d);
  ASSERT_TRUE(size.ok()) << size.status();
  EXPECT_EQ(size->nodes, reference->num_nodes) << what;
  EXPECT_EQ(size->edges, reference->num_edges()) << what;
  // The description survives JSON (what nino_nowcast --model_description reads).
  absl::StatusOr<ModelDescription> back = ModelDescriptionFromJson(ModelDescriptionToJson(*d));
  ASSERT_TRUE(back.ok()) << back.status();
  absl::StatusOr<NeuralGraph> from_json = BuildGraphFromDescription(params, *back);
  ASSERT_TRUE(from_json.ok()) << from_json.status();
  ExpectSameGraph(*from_json, *reference, what + " (through JSON)");
}

struct Config {
  int L;
  int64_t d, V, P, Fb;
  std::vector<int64_t> heads;
};

// NINO_SPEC.md 3.5's configurations (L, d, H, V, P_pos, F_b).
const Config kConfigs[] = {{2, 6, 5, 3, 24, {2}},
                           {2, 32, 100, 64, 128, {1, 2, 4}},
                           {3, 24, 50, 16, 40, {1, 2, 4}},
                           {1, 8, 10, 4, 32, {1, 2, 4}}};

TEST(DescribeGpt2, EqualsTheHandWrittenGraphForTheSpecConfigurations) {
  for (const Config& c : kConfigs) {
    for (int64_t h : c.heads) {
      const std::string what =
          absl::StrCat("L=", c.L, " d=", c.d, " H=", h, " V=", c.V, " P=", c.P, " Fb=", c.Fb);
      const Shapes full = testing::Gpt2Layout(c.L, c.d, c.V, c.P, c.Fb);
      ExpectDerivedEqualsReference(Table(full), h, what);
      ExpectDerivedEqualsReference(Table(WithoutPrefix(full)), h, what + " no prefix");
      ExpectDerivedEqualsReference(Table(testing::Gpt2Layout(c.L, c.d, 0, 0, c.Fb)), h,
                                   what + " no wte/wpe");
      ExpectDerivedEqualsReference(Table(testing::Gpt2Layout(c.L, c.d, c.V, 0, c.Fb)), h,
                                   what + " no wpe");
      ExpectDerivedEqualsReference(Table(testing::Gpt2Layout(c.L, c.d, 0, c.P, c.Fb)), h,
                                   what + " no wte");
      ExpectDerivedEqualsReference(Table(testing::Gpt2Layout(c.L, c.d, c.V, c.P, c.Fb, false)), h,
                                   what + " no ln_f");
      ExpectDerivedEqualsReference(
          Table(WithoutPrefix(testing::Gpt2Layout(c.L, c.d, 0, 0, c.Fb, false))), h,
          what + " blocks only, no prefix");
    }
  }
}

TEST(DescribeGpt2, TheSpecWorkedExampleAndItsDescription) {
  const std::vector<ParamSpec> params = Table(testing::Gpt2Layout(2, 32, 100, 64, 128));
  absl::StatusOr<NeuralGraph> g = BuildGpt2Graph(params, 4);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->num_nodes, 738);
  EXPECT_EQ(g->num_edges(), 31714);
  EXPECT_EQ(g->pos_w[0], 1);
  EXPECT_EQ(g->pos_w[99], 100);
  EXPECT_EQ(g->pos_w[100], 0);  // wpe's rows
  absl::StatusOr<ModelDescription> d = DescribeGpt2(params, 4);
  ASSERT_TRUE(d.ok()) << d.status();
  ASSERT_EQ(d->ops.size(), 2u + 2 * 9 + 1);
  EXPECT_EQ(d->ops[0].kind, DescriptionOp::Kind::kEmbedding);
  EXPECT_EQ(d->ops[1].inputs, std::vector<std::string>{"wte"});
  const DescriptionOp& attn = d->ops[3];
  EXPECT_EQ(attn.kind, DescriptionOp::Kind::kAttention);
  EXPECT_EQ(attn.weight, "transformer.h.0.attn.c_attn.weight");
  EXPECT_EQ(attn.heads, 4);
  EXPECT_TRUE(attn.transposed);
  EXPECT_EQ(d->ops.back().weight, "transformer.ln_f.weight");
}

// Subgraph mode splits a GPT-2 into one-block parts (wte / wpe with block 0, ln_f with the
// last); each part's graph is the gpt2 graph of its renamed parameters.
TEST(DescribeGpt2, EqualsTheHandWrittenGraphForEverySubgraphPart) {
  GraphSpec spec;
  spec.kind = GraphSpec::Kind::kGpt2;
  spec.num_heads = 2;
  for (const Shapes& layout :
       {testing::Gpt2Layout(3, 24, 50, 16, 40), WithoutPrefix(testing::Gpt2Layout(2, 8, 10, 4, 32)),
        testing::Gpt2Layout(1, 8, 10, 4, 32), testing::Gpt2Layout(2, 8, 0, 0, 32, false),
        testing::Gpt2Layout(2, 8, 10, 0, 32)}) {
    absl::StatusOr<std::vector<ParamGroup>> parts = SplitIntoBlocks(Table(layout), spec);
    ASSERT_TRUE(parts.ok()) << parts.status();
    for (size_t i = 0; i < parts->size(); ++i) {
      ExpectDerivedEqualsReference((*parts)[i].params, spec.num_heads,
                                   absl::StrCat(layout.front().first, " part ", i));
    }
  }
}

// Both builders refuse the same layouts with the same message.
void ExpectSameRefusal(const Shapes& shapes, int64_t heads, const std::string& mention) {
  const std::vector<ParamSpec> params = Table(shapes);
  absl::StatusOr<NeuralGraph> reference = testing::BuildGpt2ReferenceGraph(params, heads);
  absl::StatusOr<NeuralGraph> derived = BuildGpt2Graph(params, heads);
  ASSERT_FALSE(reference.ok()) << mention;
  ASSERT_FALSE(derived.ok()) << mention;
  EXPECT_EQ(derived.status(), reference.status());
  EXPECT_EQ(derived.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(derived.status().message().find(mention), std::string::npos) << derived.status();
  EXPECT_EQ(DescribeGpt2(params, heads).status(), derived.status());
}

TEST(DescribeGpt2, RefusesWhatTheHandWrittenBuilderRefuses) {
  const Shapes full = testing::Gpt2Layout(2, 32, 100, 64, 128);
  ExpectSameRefusal(full, 5, "n_embd 32 is not divisible by num_heads 5");
  ExpectSameRefusal(full, 0, "num_heads 0");
  ExpectSameRefusal({}, 4, "no parameters");
  // L = 0: the hand-written builder reads d from block 0 and refuses a layout without one.
  ExpectSameRefusal(testing::Gpt2Layout(0, 32, 100, 64, 128), 4,
                    "missing parameter 'transformer.h.0.attn.c_attn.weight'");
  ExpectSameRefusal(Without(full, "h.0.ln_1.bias"), 4,
                    "missing parameter 'transformer.h.0.ln_1.bias'");
  ExpectSameRefusal(Without(full, "h.1.mlp.c_proj.bias"), 4, "'transformer.h.1.mlp.c_proj.bias'");
  ExpectSameRefusal(Without(full, "ln_f.weight"), 4, "'transformer.ln_f.bias'");  // left over
  ExpectSameRefusal(Without(full, "ln_f.bias"), 4, "missing parameter 'transformer.ln_f.bias'");
  Shapes extra = full;
  extra.push_back({"lm_head.weight", {100, 32}});
  ExpectSameRefusal(extra, 4, "'lm_head.weight' (100, 32) is not part of the GPT-2 layout");
  Shapes gap = testing::Gpt2Layout(3, 8, 10, 4, 32);
  gap = Without(gap, "h.1.");
  ExpectSameRefusal(gap, 2, "'transformer.h.2.");
  Shapes wide_fc = full;
  for (auto& [name, shape] : wide_fc) {
    if (name == "transformer.h.1.mlp.c_fc.weight") shape = {32, 64};
  }
  ExpectSameRefusal(wide_fc, 4, "'transformer.h.1.mlp.c_fc.weight' has shape (32, 64)");
  Shapes bad_attn = full;
  bad_attn[2 + 2].second = {32, 64};  // h.0.attn.c_attn.weight
  ExpectSameRefusal(bad_attn, 4, "c_attn.weight has shape (32, 64), expected (d, 3d)");
  Shapes wte_3d = full;
  wte_3d[0].second = {100, 32, 1};
  ExpectSameRefusal(wte_3d, 4, "wte must be 2-D");
  Shapes wpe_wide = full;
  wpe_wide[1].second = {64, 33};
  ExpectSameRefusal(wpe_wide, 4, "'transformer.wpe.weight' has shape (64, 33), expected (64, 32)");
  ExpectSameRefusal(Without(full, "h.0.mlp.c_fc.weight"), 4,
                    "missing parameter 'transformer.h.0.mlp.c_fc.weight'");
}

}  // namespace
}  // namespace nino
