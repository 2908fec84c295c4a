// DescribeLlama (llama_description.h): the described Llama graph has its closed-form size for
// multi-head, grouped-query and multi-query attention, tied and untied; grouped-query attention
// and the gated MLP are wired as docs/GRAPH_DESCRIPTION.md "Version 4" says; the layout checks
// and their messages are BuildLlamaGraph's; the JSON form is the fixture the Python
// describe_llama must also write (python/tests/describe_test.py).
#include "common/nino/llama_description.h"

#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "common/nino/graph_from_description.h"
#include "common/nino/neural_graph.h"

namespace nino {
namespace {

struct Cfg {
  int64_t V, d, L, H, KV, ff;
  bool tie;
};

std::string Name(const Cfg& c) {
  std::ostringstream s;
  s << "V" << c.V << " d" << c.d << " L" << c.L << " H" << c.H << " KV" << c.KV << " ff" << c.ff
    << (c.tie ? " tied" : " untied");
  return s.str();
}

std::vector<ParamSpec> Table(const Cfg& c) {
  auto t = MakeParamTable(LlamaNamedShapes(LlamaShape{c.V, c.d, c.L, c.H, c.KV, c.ff, c.tie}));
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? *t : std::vector<ParamSpec>{};
}

NeuralGraph Build(const Cfg& c) {
  const std::vector<ParamSpec> params = Table(c);
  auto d = DescribeLlama(params, c.H, c.KV);
  EXPECT_TRUE(d.ok()) << d.status();
  if (!d.ok()) return {};
  auto g = BuildGraphFromDescription(params, *d);
  EXPECT_TRUE(g.ok()) << g.status();
  if (!g.ok()) return {};
  auto size = CountGraphFromDescription(params, *d);
  EXPECT_TRUE(size.ok()) << size.status();
  if (size.ok()) {
    EXPECT_EQ(size->nodes, g->num_nodes);
    EXPECT_EQ(size->edges, g->num_edges());
  }
  return *g;
}

int64_t CountType(const NeuralGraph& g, int64_t type) {
  int64_t n = 0;
  for (int64_t t : g.type) n += t == type;
  return n;
}

// The edge whose slot 0 holds parameter row `row` (-1 if none).
int64_t EdgeOfRow(const NeuralGraph& g, int64_t row) {
  for (int64_t e = 0; e < g.num_edges(); ++e) {
    if (g.param_index[e * g.feat_size] == row) return e;
  }
  return -1;
}

const ParamSpec& Param(const std::vector<ParamSpec>& params, const std::string& name) {
  for (const ParamSpec& p : params) {
    if (p.name == name) return p;
  }
  ADD_FAILURE() << "no parameter " << name;
  return params.front();
}

const std::vector<Cfg>& Configs() {
  static const std::vector<Cfg> cfgs = {
      {5, 4, 2, 2, 1, 6, false},    {5, 4, 2, 2, 1, 6, true},     {15, 12, 2, 6, 2, 24, false},
      {9, 12, 3, 6, 3, 20, true},   {7, 8, 1, 4, 4, 5, true},     {4, 8, 1, 8, 1, 16, false},
      {10, 16, 1, 2, 2, 48, false}, {64, 32, 2, 4, 2, 64, false},
  };
  return cfgs;
}

// Closed forms (hd = d / H, Dq = H hd, Dkv = KV hd, rep = H / KV, x = 1 if rep > 1 else 0,
// u = 1 if lm_head is untied): per layer the nodes are input_layernorm's gain node, H head
// nodes, Dq query units, Dkv value units, x Dq per-head outputs (the value heads repeated for
// their query heads), o_proj's d units, post_attention_layernorm's gain node, gate_proj's and
// up_proj's ff units and down_proj's d units:
//   N = V + d + L (H + Dq + Dkv + x Dq + 2 d + 2 ff + 2) + 1 + u V
//   E = V d + L (2 d Dq + 2 d Dkv + 3 d ff + 2 Dq + x Dq + 4 d + ff) + d + u V d + N
// by type: 7: L d Dq; 8, 9: L d Dkv; 11: 2 L Dq (each query unit and each value unit to the
// heads that read it); 10: L (x Dq + 2 d + ff) (the repeat, two residuals, gate -> up);
// 4: (2 L + 1) d; 1: L (d Dq + 3 d ff) + u V d; 5: V d; 13: N.
TEST(DescribedLlama, FollowsTheClosedForms) {
  for (const Cfg& c : Configs()) {
    SCOPED_TRACE(Name(c));
    const NeuralGraph g = Build(c);
    const int64_t hd = c.d / c.H, Dq = c.H * hd, Dkv = c.KV * hd, x = c.KV < c.H ? 1 : 0;
    const int64_t u = c.tie ? 0 : 1, V = c.V, d = c.d, L = c.L, ff = c.ff;
    const int64_t N = V + d + L * (c.H + Dq + Dkv + x * Dq + 2 * d + 2 * ff + 2) + 1 + u * V;
    EXPECT_EQ(g.num_nodes, N);
    EXPECT_EQ(g.num_edges(),
              V * d + L * (2 * d * Dq + 2 * d * Dkv + 3 * d * ff + 2 * Dq + x * Dq + 4 * d + ff) +
                  d + u * V * d + N);
    EXPECT_EQ(g.feat_size, 1);
    EXPECT_EQ(CountType(g, kEdgeQuery), L * d * Dq);
    EXPECT_EQ(CountType(g, kEdgeKey), L * d * Dkv);
    EXPECT_EQ(CountType(g, kEdgeValue), L * d * Dkv);
    EXPECT_EQ(CountType(g, kEdgeHead), 2 * L * Dq);
    EXPECT_EQ(CountType(g, kEdgeResidual), L * (x * Dq + 2 * d + ff));
    EXPECT_EQ(CountType(g, kEdgeNormWeight), (2 * L + 1) * d);
    EXPECT_EQ(CountType(g, kEdgeFullyConnected), L * (d * Dq + 3 * d * ff) + u * V * d);
    EXPECT_EQ(CountType(g, kEdgeWordEmbedding), V * d);
    EXPECT_EQ(CountType(g, kEdgeSelfLoop), N);
    for (int64_t v = 0; v < V; ++v) EXPECT_EQ(g.pos_w[v], v + 1);
    EXPECT_EQ(g.pos_w[V], 0);
  }
}

// d 8, H 4, KV 2 (hd 2, rep 2), ff 3, one layer, untied. Node numbering: tokens 0..V-1, X (d),
// then the prelude / units in creation order (docs: version 4's attention).
TEST(DescribedLlama, GroupedQueryAttentionAndTheGatedMlpAreWiredAsTheModelComputes) {
  const Cfg c{5, 8, 1, 4, 2, 3, false};
  const std::vector<ParamSpec> params = Table(c);
  const NeuralGraph g = Build(c);
  const int64_t V = 5, d = 8, H = 4, hd = 2, Dq = 8, Dkv = 4, ff = 3;
  const int64_t IN = V, X = IN + 1, HEADS = X + d, Q = HEADS + H, VAL = Q + Dq, OUT = VAL + Dkv;
  const int64_t PN = OUT + Dq, Y = PN + 1, G = Y + d, U = G + ff, NF = U + ff, Z = NF + 1;
  auto edge = [&](const std::string& name, int64_t flat) {
    const int64_t e = EdgeOfRow(g, Param(params, name).offset + flat);
    EXPECT_GE(e, 0) << name << "[" << flat << "]";
    return std::make_pair(g.src[e], g.dst[e]);
  };
  const std::string p = "model.layers.0.";
  // input_layernorm's gain sits on the residual stream X, whose node precedes X's units.
  EXPECT_EQ(edge(p + "input_layernorm.weight", 3), std::make_pair(IN, X + 3));
  // q: X[i] -> Q[j] carries W_q[j, i].
  EXPECT_EQ(edge(p + "self_attn.q_proj.weight", 5 * d + 2), std::make_pair(X + 2, Q + 5));
  // k, reversed: key unit (g, t) attaches to query head g * rep's unit t: key row 3 = (1, 1)
  // -> query head 2, unit 1 = Q[5].
  EXPECT_EQ(edge(p + "self_attn.k_proj.weight", 3 * d + 6), std::make_pair(Q + 5, X + 6));
  EXPECT_EQ(edge(p + "self_attn.k_proj.weight", 1 * d + 0), std::make_pair(Q + 1, X + 0));
  // v: X[i] -> V[j].
  EXPECT_EQ(edge(p + "self_attn.v_proj.weight", 3 * d + 7), std::make_pair(X + 7, VAL + 3));
  // o_proj reads the Dq per-head outputs.
  EXPECT_EQ(edge(p + "self_attn.o_proj.weight", 4 * Dq + 6), std::make_pair(OUT + 6, Y + 4));
  EXPECT_EQ(edge(p + "post_attention_layernorm.weight", 0), std::make_pair(PN, Y));
  EXPECT_EQ(edge(p + "mlp.gate_proj.weight", 2 * d + 1), std::make_pair(Y + 1, G + 2));
  EXPECT_EQ(edge(p + "mlp.up_proj.weight", 2 * d + 1), std::make_pair(Y + 1, U + 2));
  EXPECT_EQ(edge(p + "mlp.down_proj.weight", 7 * ff + 2), std::make_pair(U + 2, Z + 7));
  EXPECT_EQ(edge("model.norm.weight", 5), std::make_pair(NF, Z + 5));  // Z's prelude
  EXPECT_EQ(edge("lm_head.weight", 4 * d + 7), std::make_pair(Z + 7, Z + d + 4));
  // The constant edges, as (src, dst, type) sets.
  std::multimap<int64_t, std::pair<int64_t, int64_t>> constant;
  for (int64_t e = 0; e < g.num_edges(); ++e) {
    if (g.param_index[e] == kSlotOne) constant.insert({g.type[e], {g.src[e], g.dst[e]}});
  }
  auto has = [&](int64_t type, int64_t src, int64_t dst) {
    auto [lo, hi] = constant.equal_range(type);
    for (auto it = lo; it != hi; ++it) {
      if (it->second == std::make_pair(src, dst)) return true;
    }
    return false;
  };
  for (int64_t h = 0; h < H; ++h) {
    for (int64_t t = 0; t < hd; ++t) {
      EXPECT_TRUE(has(kEdgeHead, HEADS + h, Q + h * hd + t)) << h << " " << t;
      // Value head h / rep is read by query head h; its output for head h is a unit of OUT.
      EXPECT_TRUE(has(kEdgeHead, HEADS + h, VAL + (h / 2) * hd + t)) << h << " " << t;
      EXPECT_TRUE(has(kEdgeResidual, VAL + (h / 2) * hd + t, OUT + h * hd + t)) << h << " " << t;
    }
  }
  for (int64_t j = 0; j < d; ++j) {
    EXPECT_TRUE(has(kEdgeResidual, X + j, Y + j)) << j;  // attention residual
    EXPECT_TRUE(has(kEdgeResidual, Y + j, Z + j)) << j;  // MLP residual
  }
  for (int64_t j = 0; j < ff; ++j) EXPECT_TRUE(has(kEdgeResidual, G + j, U + j)) << j;  // gate * up
  EXPECT_EQ(CountType(g, kEdgeHead), 2 * Dq);
}

TEST(DescribedLlama, TheLayoutIsCheckedAsBuildLlamaGraphChecksIt) {
  const Cfg c{5, 8, 2, 4, 2, 3, false};
  std::vector<ParamSpec> params = Table(c);
  struct Case {
    std::vector<ParamSpec> params;
    int64_t heads, kv_heads;
  };
  std::vector<ParamSpec> missing = params;
  missing.erase(missing.begin() + 3);  // layer 0's v_proj
  std::vector<ParamSpec> swapped = params;
  std::swap(swapped[1], swapped[2]);  // q and k out of order
  std::vector<ParamSpec> stray = params;
  stray.push_back(ParamSpec{"model.layers.0.self_attn.q_proj.bias", {8}, 1000, 8});
  for (const Case& k : std::vector<Case>{{params, 3, 0},
                                         {params, 4, 3},
                                         {params, 0, 0},
                                         {missing, 4, 2},
                                         {swapped, 4, 2},
                                         {stray, 4, 2},
                                         {{}, 4, 2}}) {
    const auto built = BuildLlamaGraph(k.params, k.heads, k.kv_heads);
    const auto described = DescribeLlama(k.params, k.heads, k.kv_heads);
    ASSERT_FALSE(built.ok());
    ASSERT_FALSE(described.ok());
    EXPECT_EQ(described.status(), built.status());
  }
  // A wrong KV for the shapes: k_proj has 4 rows, KV = 1 expects 2.
  const auto kv = DescribeLlama(params, 4, 1);
  ASSERT_FALSE(kv.ok());
  EXPECT_NE(kv.status().message().find("k_proj.weight' has shape (4, 8), expected (2, 8)"),
            std::string::npos)
      << kv.status();
}

TEST(DescribedLlama, MultiHeadAttentionNeedsNoKvHeadsAndIsTheVersion2Attention) {
  const Cfg c{7, 8, 1, 4, 4, 5, true};
  const std::vector<ParamSpec> params = Table(c);
  auto d = DescribeLlama(params, 4, 0);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->version, 4);  // multiply is version 4
  for (const DescriptionOp& op : d->ops) EXPECT_EQ(op.kv_heads, 0) << op.output;
  // kv_heads said explicitly (= heads) gives the same graph.
  ModelDescription explicit_kv = *d;
  for (DescriptionOp& op : explicit_kv.ops) {
    if (op.kind == DescriptionOp::Kind::kAttention) op.kv_heads = 4;
  }
  auto a = BuildGraphFromDescription(params, *d);
  auto b = BuildGraphFromDescription(params, explicit_kv);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->src, b->src);
  EXPECT_EQ(a->dst, b->dst);
  EXPECT_EQ(a->type, b->type);
  EXPECT_EQ(a->param_index, b->param_index);
}

// The tiny configuration of the shared fixture: V 6, d 8, L 2, H 4, KV 2, ff 12, untied.
TEST(DescribedLlama, TheJsonFormIsTheFixtureThePythonClientWritesToo) {
  const Cfg c{6, 8, 2, 4, 2, 12, false};
  auto d = DescribeLlama(Table(c), c.H, c.KV);
  ASSERT_TRUE(d.ok()) << d.status();
  std::ifstream in("common/nino/testdata/llama_tiny_description.json");
  ASSERT_TRUE(in) << "missing fixture common/nino/testdata/llama_tiny_description.json";
  std::stringstream text;
  text << in.rdbuf();
  auto fixture = ModelDescriptionFromJson(text.str());
  ASSERT_TRUE(fixture.ok()) << fixture.status();
  EXPECT_EQ(ModelDescriptionToJson(*d), ModelDescriptionToJson(*fixture));
}

}  // namespace
}  // namespace nino
