// The Llama neural graph (BuildLlamaGraph, spec 3.7): closed-form counts, the official node
// numbering on a small GQA model, the parameter <-> slot bijection, a bitwise round trip of the
// flat vector, the wiring of every projection, clear errors, and a NiNo step on llama-tiny.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <set>
#include <tuple>
#include <utility>

#include "common/nino/neural_graph.h"
#include "common/nino/nino_model.h"
#include "common/nino/nowcast_engine.h"

namespace nino {
namespace {

using Shapes = std::vector<std::pair<std::string, std::vector<int64_t>>>;

struct Cfg {
  int64_t V, d, L, H, KV, ff;
  bool tie;
  // Counts produced by a re-enactment of the official NeuralGraphLlama construction for this
  // configuration (nodes, edges incl. self-loops); 0 where not computed.
  int64_t official_nodes = 0, official_edges = 0;
};

LlamaShape ShapeOf(const Cfg& c) { return LlamaShape{c.V, c.d, c.L, c.H, c.KV, c.ff, c.tie}; }

std::vector<ParamSpec> Table(const Shapes& s) {
  auto t = MakeParamTable(s);
  EXPECT_TRUE(t.ok()) << t.status();
  return *t;
}

NeuralGraph Build(const Cfg& c) {
  auto g = BuildLlamaGraph(Table(LlamaNamedShapes(ShapeOf(c))), c.H, c.KV);
  EXPECT_TRUE(g.ok()) << g.status();
  return g.ok() ? *g : NeuralGraph{};
}

const std::vector<Cfg>& Configs() {
  static const std::vector<Cfg> cfgs = {
      {5, 4, 2, 2, 1, 6, false, 71, 407},
      {5, 4, 2, 2, 1, 6, true, 66, 382},
      {15, 12, 2, 6, 2, 24, false, 211, 3231},
      {15, 12, 2, 6, 2, 24, true, 196, 3036},
      {9, 12, 3, 6, 3, 20, false, 277, 4195},
      {64, 32, 2, 4, 2, 64, false, 589, 23565},
      {64, 32, 2, 4, 2, 64, true, 525, 21453},
      {7, 8, 1, 4, 4, 5, true, 67, 563},
      {11, 6, 3, 3, 1, 9, true, 138, 1098},
      {4, 8, 1, 8, 1, 16, false, 76, 725},
      {10, 16, 1, 2, 2, 48, false},
  };
  return cfgs;
}

// Closed forms (hd = d/H, Dq = H*hd, Dkv = KV*hd, u = 1 if lm_head is untied else 0):
//   P     = V d + L (2 d Dq + 2 d Dkv + 3 d ff + 2 d) + d + u V d
//   N     = V + L (3 d + H + Dq + Dkv + ff + 2) + 1 + d + u V
//   E     = V d + L (2 d Dq + 2 d Dkv + Dq + Dkv + 3 d ff + 5 d) + d + u V d + N
// by type: 5: V d; 7: L d Dq; 8, 9: L d Dkv each; 11 (head membership): L (Dq + Dkv);
//   10 (residual: attention, after gate_proj, after up_proj): 3 L d; 4 (RMSNorm gains, 2L + 1
//   vectors): (2L + 1) d; 1 (o, gate, up, down, lm_head): L (d Dq + 3 d ff) + u V d; 13: N.
struct Expected {
  int64_t P, N, E;
  std::map<int64_t, int64_t> types;
};
Expected ClosedForm(const Cfg& c) {
  const int64_t hd = c.d / c.H, Dq = c.H * hd, Dkv = c.KV * hd, u = c.tie ? 0 : 1;
  const int64_t V = c.V, d = c.d, L = c.L, ff = c.ff;
  Expected x;
  x.P = V * d + L * (2 * d * Dq + 2 * d * Dkv + 3 * d * ff + 2 * d) + d + u * V * d;
  x.N = V + L * (3 * d + c.H + Dq + Dkv + ff + 2) + 1 + d + u * V;
  x.E =
      V * d + L * (2 * d * Dq + 2 * d * Dkv + Dq + Dkv + 3 * d * ff + 5 * d) + d + u * V * d + x.N;
  x.types = {{kEdgeWordEmbedding, V * d},
             {kEdgeQuery, L * d * Dq},
             {kEdgeKey, L * d * Dkv},
             {kEdgeValue, L * d * Dkv},
             {kEdgeHead, L * (Dq + Dkv)},
             {kEdgeResidual, 3 * L * d},
             {kEdgeNormWeight, (2 * L + 1) * d},
             {kEdgeFullyConnected, L * (d * Dq + 3 * d * ff) + u * V * d},
             {kEdgeSelfLoop, x.N}};
  return x;
}

std::string Name(const Cfg& c) {
  return "V" + std::to_string(c.V) + " d" + std::to_string(c.d) + " L" + std::to_string(c.L) +
         " H" + std::to_string(c.H) + " KV" + std::to_string(c.KV) + " ff" + std::to_string(c.ff) +
         (c.tie ? " tied" : " untied");
}

// Inverse of param_index: the edge of every parameter row (F = 1 for Llama), -1 if none.
std::vector<int64_t> EdgeOfRow(const NeuralGraph& g) {
  std::vector<int64_t> inv(g.num_params, -1);
  for (int64_t e = 0; e < g.num_edges(); ++e) {
    const int64_t r = g.param_index[e];
    if (r >= 0 && r < g.num_params) inv[r] = e;
  }
  return inv;
}

TEST(LlamaGraph, ValidatesAndFollowsTheClosedForms) {
  for (const Cfg& c : Configs()) {
    SCOPED_TRACE(Name(c));
    NeuralGraph g = Build(c);
    EXPECT_TRUE(g.Validate().ok()) << g.Validate();
    const Expected x = ClosedForm(c);
    EXPECT_EQ(g.num_params, x.P);
    EXPECT_EQ(g.num_nodes, x.N);
    EXPECT_EQ(g.num_edges(), x.E);
    EXPECT_EQ(g.feat_size, 1);
    if (c.official_nodes) {
      EXPECT_EQ(g.num_nodes, c.official_nodes);
      EXPECT_EQ(g.num_edges(), c.official_edges);
    }
    std::map<int64_t, int64_t> types;
    for (int64_t t : g.type) types[t]++;
    EXPECT_EQ(types, x.types);
    ASSERT_EQ(static_cast<int64_t>(g.pos_w.size()), g.num_nodes);
    for (int64_t v = 0; v < g.num_nodes; ++v) EXPECT_EQ(g.pos_w[v], v < c.V ? v + 1 : 0) << v;
    // Self-loops last, n -> n in increasing n, constant 2.
    const int64_t first_loop = g.num_edges() - g.num_nodes;
    for (int64_t n = 0; n < g.num_nodes; ++n) {
      ASSERT_EQ(g.src[first_loop + n], n);
      ASSERT_EQ(g.dst[first_loop + n], n);
      ASSERT_EQ(g.param_index[first_loop + n], kSlotTwo);
    }
    // Constant slots: 1.0 exactly on residual and head edges.
    for (int64_t e = 0; e < first_loop; ++e) {
      const bool constant = g.type[e] == kEdgeResidual || g.type[e] == kEdgeHead;
      ASSERT_EQ(g.param_index[e] == kSlotOne, constant) << e;
    }
  }
}

TEST(LlamaGraph, EveryScalarMapsToExactlyOneSlotAndBack) {
  for (const Cfg& c : Configs()) {
    SCOPED_TRACE(Name(c));
    NeuralGraph g = Build(c);
    std::vector<int64_t> seen(g.num_params, 0);
    int64_t param_slots = 0;
    for (int64_t r : g.param_index) {
      ASSERT_GE(r, kSlotTwo);
      ASSERT_LT(r, g.num_params);
      if (r < 0) continue;
      ++param_slots;
      ++seen[r];
    }
    EXPECT_EQ(param_slots, g.num_params);
    for (int64_t r = 0; r < g.num_params; ++r) ASSERT_EQ(seen[r], 1) << "row " << r;
    // The inverse map composed with param_index is the identity on [0, P).
    std::vector<int64_t> inv = EdgeOfRow(g);
    for (int64_t r = 0; r < g.num_params; ++r) ASSERT_EQ(g.param_index[inv[r]], r);
  }
}

TEST(LlamaGraph, FlatVectorRoundTripsBitForBit) {
  for (const Cfg& c : Configs()) {
    SCOPED_TRACE(Name(c));
    NeuralGraph g = Build(c);
    const int64_t P = g.num_params;
    torch::manual_seed(7);
    torch::Tensor flat = torch::randn({P}) * 3.7 + 0.1;
    // Gather: padded = [flat; 0; 1; 2], kSlotZero -> P, kSlotOne -> P+1, kSlotTwo -> P+2.
    torch::Tensor padded = torch::cat({flat, torch::tensor({0.0f, 1.0f, 2.0f})});
    torch::Tensor pi = g.ParamIndexTensor().view({-1});
    torch::Tensor gather = pi.clone();
    gather.masked_fill_(pi == kSlotZero, P);
    gather.masked_fill_(pi == kSlotOne, P + 1);
    gather.masked_fill_(pi == kSlotTwo, P + 2);
    torch::Tensor edges = padded.index_select(0, gather);
    ASSERT_EQ(edges.size(0), g.num_edges());
    // Scatter back.
    torch::Tensor slots = torch::nonzero(pi >= 0).view({-1});
    torch::Tensor back = torch::full({P}, std::nanf(""));
    back.index_put_({pi.index_select(0, slots)}, edges.index_select(0, slots));
    EXPECT_TRUE(torch::equal(back, flat));
    EXPECT_TRUE(
        torch::equal(edges.masked_select(pi == kSlotTwo), torch::full({g.num_nodes}, 2.0f)));
  }
}

// For each named parameter: its edges' sources and targets.
struct ParamEdges {
  const ParamSpec* p;
  std::vector<int64_t> src, dst, type;  // per element, in row-major element order
};
std::map<std::string, ParamEdges> EdgesByParam(const NeuralGraph& g,
                                               const std::vector<ParamSpec>& table) {
  std::vector<int64_t> inv = EdgeOfRow(g);
  std::map<std::string, ParamEdges> out;
  for (const ParamSpec& p : table) {
    ParamEdges pe{&p, {}, {}, {}};
    for (int64_t k = 0; k < p.numel; ++k) {
      const int64_t e = inv[p.offset + k];
      pe.src.push_back(g.src[e]);
      pe.dst.push_back(g.dst[e]);
      pe.type.push_back(g.type[e]);
    }
    out[p.name] = std::move(pe);
  }
  return out;
}

// Checks that a (rows, cols) matrix parameter is wired as a complete bipartite block with
// node(element [o, i]) = (in(i), out(o)), in/out injective; returns {inputs, outputs} in index
// order. `reversed` (k_proj): the edge runs out(o) -> in(i).
std::pair<std::vector<int64_t>, std::vector<int64_t>> Bipartite(const ParamEdges& pe,
                                                                bool reversed) {
  const int64_t rows = pe.p->shape[0], cols = pe.p->shape[1];
  std::vector<int64_t> in(cols), out(rows);
  for (int64_t o = 0; o < rows; ++o) {
    for (int64_t i = 0; i < cols; ++i) {
      const int64_t k = o * cols + i;
      const int64_t a = reversed ? pe.dst[k] : pe.src[k], b = reversed ? pe.src[k] : pe.dst[k];
      if (o == 0) in[i] = a;
      if (i == 0) out[o] = b;
      EXPECT_EQ(a, in[i]) << pe.p->name << " [" << o << ", " << i << "]";
      EXPECT_EQ(b, out[o]) << pe.p->name << " [" << o << ", " << i << "]";
    }
  }
  EXPECT_EQ(std::set<int64_t>(in.begin(), in.end()).size(), in.size()) << pe.p->name;
  EXPECT_EQ(std::set<int64_t>(out.begin(), out.end()).size(), out.size()) << pe.p->name;
  return {in, out};
}

std::vector<int64_t> Range(int64_t a, int64_t n) {
  std::vector<int64_t> r(n);
  for (int64_t i = 0; i < n; ++i) r[i] = a + i;
  return r;
}

// The official numbering of V=5, d=4, L=2, H=2, KV=1 (hd=2), ff=6, untied, as printed by a
// re-enactment of the official construction: tokens 0..4, X0 5..8, heads 9,10, Q 11..14,
// Vn 15..16, Y 17..20, U 21..24, M 25..30, input/post norms 31, 32, X1 33..36; layer 1 from 33
// (+28), model.norm 61, X_L 62..65, logits 66..70. o_proj reads 13..16 (quirk 1).
TEST(LlamaGraph, MatchesTheOfficialNumberingOnASmallGqaModel) {
  const Cfg c{5, 4, 2, 2, 1, 6, false};
  auto table = Table(LlamaNamedShapes(ShapeOf(c)));
  auto g = BuildLlamaGraph(table, 2, 1);
  ASSERT_TRUE(g.ok()) << g.status();
  auto pe = EdgesByParam(*g, table);
  // embed_tokens is (V, d) = (token, unit): element [v, j] is edge v -> X0[j], so the matrix's
  // "outputs" (rows) are the token nodes and its "inputs" (columns) X0.
  auto embed = Bipartite(pe["model.embed_tokens.weight"], true);
  EXPECT_EQ(embed.second, Range(0, 5));
  EXPECT_EQ(embed.first, Range(5, 4));
  for (int64_t blk = 0; blk < 2; ++blk) {
    const int64_t o = 28 * blk;
    const std::string p = "model.layers." + std::to_string(blk) + ".";
    auto q = Bipartite(pe[p + "self_attn.q_proj.weight"], false);
    EXPECT_EQ(q.first, Range(5 + o, 4));
    EXPECT_EQ(q.second, Range(11 + o, 4));
    auto k = Bipartite(pe[p + "self_attn.k_proj.weight"], true);
    EXPECT_EQ(k.first, Range(5 + o, 4));
    EXPECT_EQ(k.second, Range(11 + o, 2));
    auto v = Bipartite(pe[p + "self_attn.v_proj.weight"], false);
    EXPECT_EQ(v.first, Range(5 + o, 4));
    EXPECT_EQ(v.second, Range(15 + o, 2));
    auto out = Bipartite(pe[p + "self_attn.o_proj.weight"], false);
    EXPECT_EQ(out.first, Range(13 + o, 4));
    EXPECT_EQ(out.second, Range(17 + o, 4));
    auto gate = Bipartite(pe[p + "mlp.gate_proj.weight"], false);
    EXPECT_EQ(gate.first, Range(17 + o, 4));
    EXPECT_EQ(gate.second, Range(25 + o, 6));
    auto up = Bipartite(pe[p + "mlp.up_proj.weight"], false);
    EXPECT_EQ(up.first, Range(21 + o, 4));
    EXPECT_EQ(up.second, Range(25 + o, 6));
    auto down = Bipartite(pe[p + "mlp.down_proj.weight"], false);
    EXPECT_EQ(down.first, Range(25 + o, 6));
    EXPECT_EQ(down.second, Range(33 + o + (blk == 1 ? 1 : 0), 4));
    for (const char* norm : {"input_layernorm.weight", "post_attention_layernorm.weight"}) {
      const ParamEdges& n = pe[p + norm];
      const int64_t node = (std::string(norm) == "input_layernorm.weight" ? 31 : 32) + o;
      EXPECT_EQ(n.src, std::vector<int64_t>(4, node)) << norm;
      EXPECT_EQ(n.dst, Range(33 + o + (blk == 1 ? 1 : 0), 4)) << norm;
    }
  }
  EXPECT_EQ(pe["model.norm.weight"].src, std::vector<int64_t>(4, 61));
  EXPECT_EQ(pe["model.norm.weight"].dst, Range(62, 4));
  auto head = Bipartite(pe["lm_head.weight"], false);
  EXPECT_EQ(head.first, Range(62, 4));
  EXPECT_EQ(head.second, Range(66, 5));
  // Structural edges: q heads 9 -> 11,12 and 10 -> 13,14; the one v head 9 -> 15,16; residuals.
  std::multiset<std::tuple<int64_t, int64_t, int64_t>> structural;
  for (int64_t e = 0; e < g->num_edges(); ++e) {
    if (g->param_index[e] == kSlotOne) structural.insert({g->src[e], g->dst[e], g->type[e]});
  }
  for (auto [s, t] : std::vector<std::pair<int64_t, int64_t>>{
           {9, 11}, {9, 12}, {10, 13}, {10, 14}, {9, 15}, {9, 16}})
    EXPECT_EQ(structural.count({s, t, kEdgeHead}), 1u) << s << " -> " << t;
  for (int64_t j = 0; j < 4; ++j) {
    EXPECT_EQ(structural.count({5 + j, 17 + j, kEdgeResidual}), 1u);   // attention
    EXPECT_EQ(structural.count({17 + j, 33 + j, kEdgeResidual}), 1u);  // after gate_proj
    EXPECT_EQ(structural.count({21 + j, 33 + j, kEdgeResidual}), 1u);  // after up_proj
  }
  EXPECT_EQ(structural.size(), 2u * (4 + 2 + 3 * 4));
  // Edge order: embed_tokens first (token-major), then layer 0's q_proj.
  EXPECT_EQ(g->src[0], 0);
  EXPECT_EQ(g->dst[0], 5);
  EXPECT_EQ(g->param_index[0], 0);
  EXPECT_EQ(g->dst[1], 6);
  EXPECT_EQ(g->param_index[1], 1);  // E[0, 1]
  EXPECT_EQ(g->type[20], kEdgeQuery);
  EXPECT_EQ(g->src[20], 5);
  EXPECT_EQ(g->dst[20], 11);
  EXPECT_EQ(g->param_index[21], table[1].offset + 4);  // Wq[1, 0]: input-major enumeration
}

// The wiring of every configuration: projections chain into each other.
TEST(LlamaGraph, ProjectionsChainThroughTheLayers) {
  for (const Cfg& c : Configs()) {
    SCOPED_TRACE(Name(c));
    auto table = Table(LlamaNamedShapes(ShapeOf(c)));
    auto g = BuildLlamaGraph(table, c.H, c.KV);
    ASSERT_TRUE(g.ok()) << g.status();
    auto pe = EdgesByParam(*g, table);
    const int64_t hd = c.d / c.H, Dkv = c.KV * hd;
    for (const auto& [name, e] : pe) {
      if (name.find("norm") == std::string::npos) continue;
      EXPECT_EQ(std::set<int64_t>(e.src.begin(), e.src.end()).size(), 1u) << name;
      EXPECT_EQ(std::set<int64_t>(e.dst.begin(), e.dst.end()).size(), e.dst.size()) << name;
      for (int64_t t : e.type) ASSERT_EQ(t, kEdgeNormWeight);
    }
    std::vector<int64_t> x = Bipartite(pe["model.embed_tokens.weight"], true).first;
    for (int64_t t : pe["model.embed_tokens.weight"].type) ASSERT_EQ(t, kEdgeWordEmbedding);
    for (int64_t blk = 0; blk < c.L; ++blk) {
      const std::string p = "model.layers." + std::to_string(blk) + ".";
      auto q = Bipartite(pe[p + "self_attn.q_proj.weight"], false);
      auto k = Bipartite(pe[p + "self_attn.k_proj.weight"], true);
      auto v = Bipartite(pe[p + "self_attn.v_proj.weight"], false);
      auto o = Bipartite(pe[p + "self_attn.o_proj.weight"], false);
      auto gate = Bipartite(pe[p + "mlp.gate_proj.weight"], false);
      auto up = Bipartite(pe[p + "mlp.up_proj.weight"], false);
      auto down = Bipartite(pe[p + "mlp.down_proj.weight"], false);
      EXPECT_EQ(q.first, x);
      EXPECT_EQ(k.first, x);
      EXPECT_EQ(v.first, x);
      // k's outputs are the first Dkv query units; o reads Q[Dkv..Dq) then Vn (quirk 1).
      EXPECT_EQ(k.second, std::vector<int64_t>(q.second.begin(), q.second.begin() + Dkv));
      std::vector<int64_t> o_in(q.second.begin() + Dkv, q.second.end());
      o_in.insert(o_in.end(), v.second.begin(), v.second.end());
      EXPECT_EQ(o.first, o_in);
      if (c.KV == c.H) {
        EXPECT_EQ(o.first, v.second);
      }
      EXPECT_EQ(gate.first, o.second);
      EXPECT_EQ(gate.second, up.second);
      EXPECT_EQ(down.first, gate.second);
      EXPECT_EQ(pe[p + "input_layernorm.weight"].dst, down.second);
      EXPECT_EQ(pe[p + "post_attention_layernorm.weight"].dst, down.second);
      for (const char* w : {"self_attn.o_proj.weight", "mlp.gate_proj.weight", "mlp.up_proj.weight",
                            "mlp.down_proj.weight"})
        for (int64_t t : pe[p + w].type) ASSERT_EQ(t, kEdgeFullyConnected) << w;
      for (int64_t t : pe[p + "self_attn.q_proj.weight"].type) ASSERT_EQ(t, kEdgeQuery);
      for (int64_t t : pe[p + "self_attn.k_proj.weight"].type) ASSERT_EQ(t, kEdgeKey);
      for (int64_t t : pe[p + "self_attn.v_proj.weight"].type) ASSERT_EQ(t, kEdgeValue);
      x = down.second;
    }
    EXPECT_EQ(pe["model.norm.weight"].dst, x);
    if (!c.tie) {
      auto head = Bipartite(pe["lm_head.weight"], false);
      EXPECT_EQ(head.first, x);
      EXPECT_EQ(head.second, Range(g->num_nodes - c.V, c.V));  // logits are the last nodes
    }
  }
}

std::string ErrorOf(const Shapes& s, int64_t heads, int64_t kv) {
  auto t = MakeParamTable(s);
  if (!t.ok()) return "MakeParamTable: " + std::string(t.status().message());
  auto g = BuildLlamaGraph(*t, heads, kv);
  if (g.ok()) return "OK";
  EXPECT_EQ(g.status().code(), absl::StatusCode::kInvalidArgument) << g.status();
  return std::string(g.status().message());
}

void ExpectError(const Shapes& s, int64_t heads, int64_t kv,
                 const std::vector<std::string>& fragments) {
  const std::string msg = ErrorOf(s, heads, kv);
  EXPECT_NE(msg, "OK");
  for (const std::string& f : fragments)
    EXPECT_NE(msg.find(f), std::string::npos) << f << " in: " << msg;
}

Shapes::iterator Find(Shapes& s, const std::string& name) {
  return std::find_if(s.begin(), s.end(), [&](const auto& p) { return p.first == name; });
}

TEST(LlamaGraph, RejectsLayoutsItCannotMap) {
  const LlamaShape tiny{64, 32, 2, 4, 2, 64};
  const Shapes good = LlamaNamedShapes(tiny);
  EXPECT_EQ(ErrorOf(good, 4, 2), "OK");
  // A bias (Llama has none) or any unknown name.
  Shapes s = good;
  s.insert(s.begin() + 2, Shapes::value_type{"model.layers.0.self_attn.q_proj.bias", {32}});
  ExpectError(s, 4, 2, {"model.layers.0.self_attn.q_proj.bias", "not part of the Llama layout"});
  s = good;
  s.push_back({"model.rotary_emb.inv_freq", {4}});
  ExpectError(s, 4, 2, {"model.rotary_emb.inv_freq", "not part of"});
  s = good;
  s.insert(s.begin() + 1, Shapes::value_type{"model.layers.01.self_attn.q_proj.weight", {32, 32}});
  ExpectError(s, 4, 2, {"model.layers.01.self_attn.q_proj.weight"});
  // Wrong kv heads for the shapes: k_proj is (16, 32), 4 kv heads would need (32, 32).
  ExpectError(good, 4, 4, {"model.layers.0.self_attn.k_proj.weight", "(16, 32)", "(32, 32)"});
  ExpectError(good, 4, 0, {"model.layers.0.self_attn.k_proj.weight"});
  // Mismatched shapes deeper in the model.
  s = good;
  Find(s, "model.layers.1.mlp.down_proj.weight")->second = {32, 65};
  ExpectError(s, 4, 2, {"model.layers.1.mlp.down_proj.weight", "(32, 65)", "expected (32, 64)"});
  s = good;
  Find(s, "model.layers.1.self_attn.o_proj.weight")->second = {32, 16};
  ExpectError(s, 4, 2, {"model.layers.1.self_attn.o_proj.weight", "(32, 16)"});
  s = good;
  Find(s, "model.layers.0.input_layernorm.weight")->second = {32, 1};
  ExpectError(s, 4, 2, {"model.layers.0.input_layernorm.weight"});
  s = good;
  Find(s, "lm_head.weight")->second = {65, 32};
  ExpectError(s, 4, 2, {"lm_head.weight", "(65, 32)"});
  s = good;
  Find(s, "model.layers.1.mlp.up_proj.weight")->second = {48, 32};
  ExpectError(s, 4, 2, {"model.layers.1.mlp.up_proj.weight", "(48, 32)"});
  // Heads that do not divide.
  ExpectError(good, 5, 0, {"num_heads 5", "model.embed_tokens.weight"});
  ExpectError(good, 4, 3, {"num_kv_heads 3"});
  ExpectError(good, 0, 0, {"num_heads"});
  ExpectError(good, 4, -1, {"num_kv_heads"});
  // Missing projections / embeddings / final norm.
  s = good;
  s.erase(Find(s, "model.layers.1.self_attn.v_proj.weight"));
  ExpectError(s, 4, 2, {"missing parameter 'model.layers.1.self_attn.v_proj.weight'"});
  s = good;
  s.erase(Find(s, "model.layers.0.mlp.gate_proj.weight"));
  ExpectError(s, 4, 2, {"missing parameter 'model.layers.0.mlp.gate_proj.weight'"});
  s = good;
  s.erase(s.begin());
  ExpectError(s, 4, 2, {"missing parameter 'model.embed_tokens.weight'"});
  s = good;
  s.erase(Find(s, "model.norm.weight"));
  ExpectError(s, 4, 2, {"missing parameter 'model.norm.weight'"});
  s = good;
  s.push_back({"model.layers.7.mlp.up_proj.weight", {64, 32}});
  ExpectError(s, 4, 2, {"missing parameter 'model.layers.2.self_attn.q_proj.weight'"});
  // Layers (or parameters) out of order.
  s = good;
  std::rotate(s.begin() + 1, s.begin() + 10, s.begin() + 19);  // layer 1 before layer 0
  ExpectError(s, 4, 2, {"'model.layers.1.self_attn.q_proj.weight' is out of order", "position 1"});
  s = good;
  std::swap(*Find(s, "model.layers.0.self_attn.k_proj.weight"),
            *Find(s, "model.layers.0.self_attn.v_proj.weight"));
  ExpectError(s, 4, 2, {"model.layers.0.self_attn.v_proj.weight", "out of order"});
  s = good;
  std::swap(s[s.size() - 1], s[s.size() - 2]);  // lm_head before model.norm
  ExpectError(s, 4, 2, {"lm_head.weight", "out of order"});
  EXPECT_FALSE(BuildLlamaGraph({}, 4, 2).ok());
  // GPT-2 names are not Llama.
  ExpectError({{"transformer.wte.weight", {64, 32}}}, 4, 2, {"transformer.wte.weight"});
}

TEST(LlamaGraph, ParseGraphKindAndDispatch) {
  auto spec = ParseGraphKind("llama", 4, 2);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->kind, GraphSpec::Kind::kLlama);
  EXPECT_EQ(spec->num_heads, 4);
  EXPECT_EQ(spec->num_kv_heads, 2);
  EXPECT_EQ(GraphKindName(spec->kind), "llama");
  auto mha = ParseGraphKind("llama", 4);  // two-argument form: kv heads = heads
  ASSERT_TRUE(mha.ok());
  EXPECT_EQ(mha->num_kv_heads, 0);
  EXPECT_FALSE(ParseGraphKind("llama", 0, 0).ok());
  EXPECT_FALSE(ParseGraphKind("llama", 4, 3).ok());
  EXPECT_FALSE(ParseGraphKind("llama", 4, -2).ok());
  auto gpt2 = ParseGraphKind("gpt2", 4);
  ASSERT_TRUE(gpt2.ok());
  EXPECT_EQ(gpt2->kind, GraphSpec::Kind::kGpt2);
  EXPECT_EQ(GraphKindName(GraphSpec::Kind::kGpt2), "gpt2");
  EXPECT_EQ(GraphKindName(GraphSpec::Kind::kGeneric), "generic");
  auto table = Table(LlamaNamedShapes({64, 32, 2, 4, 2, 64}));
  auto g = BuildGraph(table, *spec);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->num_nodes, 589);
  EXPECT_FALSE(BuildGraph(table, *mha).ok());         // k_proj is (16, 32): needs 2 kv heads
  EXPECT_FALSE(BuildGraph(table, GraphSpec{}).ok());  // not a chain
}

TEST(LlamaGraph, NamedShapesFollowHfOrder) {
  Shapes s = LlamaNamedShapes({64, 32, 1, 4, 2, 64, /*tie_embeddings=*/true});
  std::vector<std::string> names;
  for (const auto& [n, shape] : s) names.push_back(n);
  EXPECT_EQ(names,
            (std::vector<std::string>{
                "model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight",
                "model.layers.0.self_attn.k_proj.weight", "model.layers.0.self_attn.v_proj.weight",
                "model.layers.0.self_attn.o_proj.weight", "model.layers.0.mlp.gate_proj.weight",
                "model.layers.0.mlp.up_proj.weight", "model.layers.0.mlp.down_proj.weight",
                "model.layers.0.input_layernorm.weight",
                "model.layers.0.post_attention_layernorm.weight", "model.norm.weight"}));
  EXPECT_EQ(s[2].second, (std::vector<int64_t>{16, 32}));
  EXPECT_EQ(s[4].second, (std::vector<int64_t>{32, 32}));
  EXPECT_EQ(LlamaNamedShapes({64, 32, 1, 4, 0, 64}).back(),
            (std::pair<std::string, std::vector<int64_t>>{"lm_head.weight", {64, 32}}));
  EXPECT_EQ(LlamaNamedShapes({64, 32, 1, 4, 0, 64})[2].second, (std::vector<int64_t>{32, 32}));
}

// One NiNo step on llama-tiny (vocab 64, d 32, 2 layers, 4 heads, 2 kv heads, ffn 64).
TEST(LlamaGraph, NowcastRunsOnLlamaTiny) {
  NiNoConfig config;  // a synthetic GNN in nino_no_posw.pt's layout: no ../shared needed
  config.wte_pos_enc = false;
  auto m = NiNoModel::Synthetic(config, /*seed=*/0);
  ASSERT_TRUE(m.ok()) << m.status();
  auto table = Table(LlamaNamedShapes({64, 32, 2, 4, 2, 64}));
  const int64_t P = TotalParams(table);
  ASSERT_EQ(P, 22688);
  auto spec = ParseGraphKind("llama", 4, 2);
  ASSERT_TRUE(spec.ok());
  auto engine = NowcastEngine::Create(std::make_shared<NiNoModel>(std::move(*m)), table, *spec);
  ASSERT_TRUE(engine.ok()) << engine.status();
  EXPECT_EQ((*engine)->graph().num_nodes, 589);
  EXPECT_EQ((*engine)->positional_encoding().size(0), 589);
  // A smooth trajectory: a fixed direction plus a slowly decaying drift.
  torch::manual_seed(3);
  torch::Tensor base = torch::randn({P}) * 0.05;
  torch::Tensor dir = torch::randn({P}) * 0.01;
  std::vector<torch::Tensor> rows;
  for (int t = 0; t < 5; ++t) rows.push_back(base + dir * (1.0 - std::pow(0.8, t + 1)) / 0.2);
  torch::Tensor states = torch::stack(rows);
  auto pred = (*engine)->Nowcast(states, 10);
  ASSERT_TRUE(pred.ok()) << pred.status();
  ASSERT_EQ(pred->dim(), 1);
  EXPECT_EQ(pred->size(0), P);
  EXPECT_TRUE(torch::isfinite(*pred).all().item<bool>());
  EXPECT_GT((*pred - states[4]).abs().max().item<double>(), 1e-6);
}

}  // namespace
}  // namespace nino
