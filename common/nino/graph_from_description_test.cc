// The graph builder driven by a model description (docs/GRAPH_DESCRIPTION.md): derived graphs
// equal the hand-written generic graph edge for edge; new structures (LeNet, residual blocks,
// concatenation, pooling, flatten) have closed-form sizes and carry every parameter in exactly
// one slot and back; every refusal is INVALID_ARGUMENT naming the op and the parameter; the JSON
// form and the C++ builder. Synthetic layouts only: nothing here reads ../shared.
#include "common/nino/graph_from_description.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "common/nino/model_description.h"
#include "common/nino/neural_graph.h"
#include "common/nino/test_layouts.h"

namespace nino {
namespace {

using Shapes = std::vector<std::pair<std::string, std::vector<int64_t>>>;

std::vector<ParamSpec> Table(const Shapes& s) {
  auto t = MakeParamTable(s);
  EXPECT_TRUE(t.ok()) << t.status();
  return *t;
}

void ExpectSameGraph(const NeuralGraph& a, const NeuralGraph& b) {
  EXPECT_EQ(a.num_nodes, b.num_nodes);
  EXPECT_EQ(a.num_params, b.num_params);
  EXPECT_EQ(a.feat_size, b.feat_size);
  ASSERT_EQ(a.num_edges(), b.num_edges());
  for (int64_t e = 0; e < a.num_edges(); ++e) {
    ASSERT_EQ(a.src[e], b.src[e]) << "edge " << e;
    ASSERT_EQ(a.dst[e], b.dst[e]) << "edge " << e;
    ASSERT_EQ(a.type[e], b.type[e]) << "edge " << e;
  }
  EXPECT_EQ(a.param_index, b.param_index);
  EXPECT_EQ(a.pos_w, b.pos_w);
}

// Every scalar parameter in exactly one slot and back: distinct values go into edge slots through
// param_index and are written back to a fresh flat vector; constants sit in slot 0 only.
void ExpectEveryParameterRoundTrips(const NeuralGraph& g) {
  ASSERT_TRUE(g.Validate().ok()) << g.Validate();
  const int64_t F = g.feat_size;
  std::vector<double> flat(g.num_params);
  for (int64_t r = 0; r < g.num_params; ++r) flat[r] = 1000.0 + static_cast<double>(r);
  std::vector<double> slots(g.param_index.size(), 0.0);
  for (size_t i = 0; i < slots.size(); ++i) {
    const int64_t r = g.param_index[i];
    slots[i] = r >= 0 ? flat[r] : r == kSlotOne ? 1.0 : r == kSlotTwo ? 2.0 : 0.0;
  }
  std::vector<double> back(g.num_params, std::nan(""));
  std::vector<int> hits(g.num_params, 0);
  for (size_t i = 0; i < slots.size(); ++i) {
    const int64_t r = g.param_index[i];
    if (r < 0) continue;
    back[r] = slots[i];
    ++hits[r];
  }
  for (int64_t r = 0; r < g.num_params; ++r) {
    ASSERT_EQ(hits[r], 1) << "row " << r;
    ASSERT_EQ(back[r], flat[r]) << "row " << r;
  }
  for (int64_t e = 0; e < g.num_edges(); ++e) {
    const int64_t slot0 = g.param_index[e * F];
    if (g.type[e] == kEdgeResidual) {
      EXPECT_EQ(slot0, kSlotOne) << e;
    }
    if (g.type[e] == kEdgeSelfLoop) {
      EXPECT_EQ(slot0, kSlotTwo) << e;
    }
    if (slot0 < 0) {
      for (int64_t f = 1; f < F; ++f) EXPECT_EQ(g.param_index[e * F + f], kSlotZero) << e;
    }
  }
}

// Builds, checks the invariants and that the count (CountGraphFromDescription) is exact.
NeuralGraph BuildChecked(const std::vector<ParamSpec>& params, const ModelDescription& d) {
  absl::StatusOr<NeuralGraph> g = BuildGraphFromDescription(params, d);
  EXPECT_TRUE(g.ok()) << g.status();
  if (!g.ok()) return NeuralGraph{};
  ExpectEveryParameterRoundTrips(*g);
  absl::StatusOr<DescribedGraphSize> size = CountGraphFromDescription(params, d);
  EXPECT_TRUE(size.ok()) << size.status();
  if (size.ok()) {
    EXPECT_EQ(size->nodes, g->num_nodes);
    EXPECT_EQ(size->edges, g->num_edges());
    EXPECT_EQ(size->feat_size, g->feat_size);
  }
  return std::move(*g);
}

int64_t CountType(const NeuralGraph& g, int64_t type) {
  int64_t n = 0;
  for (int64_t t : g.type) n += t == type;
  return n;
}

// The generic graph and the graph of DescribeGenericChain's description are the same.
void ExpectChainParity(const Shapes& shapes) {
  const std::vector<ParamSpec> params = Table(shapes);
  absl::StatusOr<NeuralGraph> generic = BuildGenericGraph(params);
  ASSERT_TRUE(generic.ok()) << generic.status();
  absl::StatusOr<ModelDescription> d = DescribeGenericChain(params);
  ASSERT_TRUE(d.ok()) << d.status();
  ExpectSameGraph(BuildChecked(params, *d), *generic);
}

// ---- Layouts ----

Shapes Mlp() {
  return {{"fc.0.weight", {32, 784}}, {"fc.0.bias", {32}},       {"fc.2.weight", {32, 32}},
          {"fc.2.bias", {32}},        {"fc.4.weight", {10, 32}}, {"fc.4.bias", {10}}};
}

Shapes CnnWithBatchNorm() {
  return {{"c.0.weight", {4, 3, 3, 3}},
          {"c.0.bias", {4}},
          {"c.1.weight", {4}},
          {"c.1.bias", {4}},
          {"c.3.weight", {6, 4, 3, 3}},
          {"c.4.weight", {6}},
          {"c.4.bias", {6}},
          {"fc.weight", {2, 6}},
          {"fc.bias", {2}}};
}

Shapes LeNet() {
  return {{"conv1.weight", {6, 1, 5, 5}},  {"conv1.bias", {6}},
          {"conv2.weight", {16, 6, 5, 5}}, {"conv2.bias", {16}},
          {"fc1.weight", {120, 256}},      {"fc1.bias", {120}},
          {"fc2.weight", {84, 120}},       {"fc2.bias", {84}},
          {"fc3.weight", {10, 84}},        {"fc3.bias", {10}}};
}

ModelDescription LeNetDescription() {
  ModelDescriptionBuilder b;
  std::string h = b.Input(1, "x");
  h = b.Dense(h, "conv1.weight", "conv1.bias", "conv1");
  h = b.Alias(h, "relu", "relu1");
  h = b.Alias(h, "max_pool2d", "pool1");
  h = b.Dense(h, "conv2.weight", "conv2.bias", "conv2");
  h = b.Alias(h, "relu", "relu2");
  h = b.Alias(h, "max_pool2d", "pool2");
  h = b.Flatten(h, 16, "flatten");
  h = b.Dense(h, "fc1.weight", "fc1.bias", "fc1");
  h = b.Alias(h, "relu", "relu3");
  h = b.Dense(h, "fc2.weight", "fc2.bias", "fc2");
  h = b.Alias(h, "relu", "relu4");
  b.Dense(h, "fc3.weight", "fc3.bias", "fc3");
  return b.description();
}

// Stem conv0+bn0 (3 -> 8), a basic block conv1/bn1/relu/conv2/bn2 (8 -> `width`) plus a shortcut
// (identity when width == 8, else a 1x1 projection conv + BN computed after bn2, as torchvision
// orders it), relu, global pooling, fc (10, width).
Shapes ResidualLayout(int64_t width) {
  Shapes s = {
      {"conv0.weight", {8, 3, 3, 3}},         {"bn0.weight", {8}},     {"bn0.bias", {8}},
      {"conv1.weight", {width, 8, 3, 3}},     {"bn1.weight", {width}}, {"bn1.bias", {width}},
      {"conv2.weight", {width, width, 3, 3}}, {"bn2.weight", {width}}, {"bn2.bias", {width}}};
  if (width != 8) {
    s.push_back({"down.0.weight", {width, 8, 1, 1}});
    s.push_back({"down.1.weight", {width}});
    s.push_back({"down.1.bias", {width}});
  }
  s.push_back({"fc.weight", {10, width}});
  s.push_back({"fc.bias", {10}});
  return s;
}

ModelDescription ResidualDescription(bool projection, bool shortcut_first) {
  ModelDescriptionBuilder b;
  std::string x = b.Input(3, "x");
  x = b.Dense(x, "conv0.weight", "", "conv0");
  x = b.Norm(x, "bn0.weight", "bn0.bias", "bn0");
  x = b.Alias(x, "relu", "relu0");
  std::string h = b.Dense(x, "conv1.weight", "", "conv1");
  h = b.Norm(h, "bn1.weight", "bn1.bias", "bn1");
  h = b.Alias(h, "relu", "relu1");
  h = b.Dense(h, "conv2.weight", "", "conv2");
  h = b.Norm(h, "bn2.weight", "bn2.bias", "bn2");
  std::string shortcut = x;
  if (projection) {
    shortcut = b.Dense(x, "down.0.weight", "", "down0");
    shortcut = b.Norm(shortcut, "down.1.weight", "down.1.bias", "down1");
  }
  h = shortcut_first ? b.Add(shortcut, h, "add") : b.Add(h, shortcut, "add");
  h = b.Alias(h, "relu", "relu2");
  h = b.Alias(h, "adaptive_avg_pool2d", "pool");
  h = b.Flatten(h, 1, "flatten");
  b.Dense(h, "fc.weight", "fc.bias", "fc");
  return b.description();
}

// ---- Derived == hand-written ----

TEST(DescribedGraph, GenericChainsEqualTheHandWrittenGraph) {
  ExpectChainParity(Mlp());
  ExpectChainParity(testing::Fm16Layout());
  ExpectChainParity(CnnWithBatchNorm());
  // LayerNorm between linear layers, a bias-free layer, a BatchNorm without a conv bias.
  ExpectChainParity({{"fc.0.weight", {24, 30}},
                     {"fc.0.bias", {24}},
                     {"ln.weight", {24}},
                     {"ln.bias", {24}},
                     {"fc.2.weight", {7, 24}}});
  ExpectChainParity({{"conv.weight", {5, 2, 3, 3}},
                     {"bn.weight", {5}},
                     {"bn.bias", {5}},
                     {"head.weight", {3, 5}},
                     {"head.bias", {3}}});
  // Odd 1-D parameters keep parameter order: a second shift of the layer's own module, a norm
  // whose shift comes before its gain, a norm module with two shifts.
  ExpectChainParity({{"fc.weight", {6, 4}},
                     {"fc.bias", {6}},
                     {"fc.shift", {6}},
                     {"n.bias", {6}},
                     {"n.weight", {6}},
                     {"m.a", {6}},
                     {"m.b", {6}},
                     {"out.weight", {2, 6}}});
}

TEST(DescribedGraph, Fm16MatchesTheSpecWorkedExample) {
  const std::vector<ParamSpec> params = Table(testing::Fm16Layout());
  // What the tracer writes for utils.vision.Net: activations, pooling and a flatten of 1x1.
  ModelDescriptionBuilder b;
  std::string h = b.Input(1);
  for (const char* conv : {"fc.0", "fc.2", "fc.4"}) {
    h = b.Dense(h, std::string(conv) + ".weight", std::string(conv) + ".bias");
    h = b.Alias(h, "relu");
  }
  h = b.Alias(h, "adaptive_avg_pool2d");
  h = b.Flatten(h, 1);
  b.Dense(h, "fc.8.weight", "fc.8.bias");
  const NeuralGraph g = BuildChecked(params, b.description());
  EXPECT_EQ(g.num_nodes, 95);
  EXPECT_EQ(g.num_edges(), 2057);
  EXPECT_EQ(g.feat_size, 9);
  absl::StatusOr<NeuralGraph> generic = BuildGenericGraph(params);
  ASSERT_TRUE(generic.ok());
  ExpectSameGraph(g, *generic);
}

TEST(DescribedGraph, MlpMatchesTheSpecWorkedExample) {
  const std::vector<ParamSpec> params = Table(Mlp());
  absl::StatusOr<ModelDescription> d = DescribeGenericChain(params);
  ASSERT_TRUE(d.ok()) << d.status();
  const NeuralGraph g = BuildChecked(params, *d);
  EXPECT_EQ(g.num_nodes, 861);
  EXPECT_EQ(g.num_edges(), 27367);
  EXPECT_EQ(g.src[25088], 784);  // fc.0's bias node
  EXPECT_EQ(g.dst[25088], 785);
}

TEST(DescribedGraph, BuildGraphDispatchesOnTheDescribedKind) {
  const std::vector<ParamSpec> params = Table(LeNet());
  auto d = std::make_shared<const ModelDescription>(LeNetDescription());
  absl::StatusOr<GraphSpec> spec = ParseGraphKind("described", 0, 0, d);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->kind, GraphSpec::Kind::kDescribed);
  EXPECT_EQ(spec->description, d);
  EXPECT_EQ(GraphKindName(spec->kind), "described");
  absl::StatusOr<NeuralGraph> via_spec = BuildGraph(params, *spec);
  ASSERT_TRUE(via_spec.ok()) << via_spec.status();
  ExpectSameGraph(*via_spec, BuildChecked(params, *d));

  absl::StatusOr<GraphSpec> missing = ParseGraphKind("described", 0);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(missing.status().message().find("needs a model description"), std::string::npos);
  absl::StatusOr<GraphSpec> unread = ParseGraphKind("generic", 0, 0, d);
  ASSERT_FALSE(unread.ok());
  EXPECT_NE(unread.status().message().find("generic"), std::string::npos);
  EXPECT_EQ(ParseGraphKind("auto", 0, 0, d).status().code(), absl::StatusCode::kInvalidArgument);
  GraphSpec null_description;
  null_description.kind = GraphSpec::Kind::kDescribed;
  EXPECT_EQ(BuildGraph(params, null_description).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// ---- New structures ----

TEST(DescribedGraph, LeNetFlattenGivesEveryLinearInputItsOwnNode) {
  const std::vector<ParamSpec> params = Table(LeNet());
  EXPECT_EQ(BuildGenericGraph(params).status().code(), absl::StatusCode::kInvalidArgument);
  const NeuralGraph g = BuildChecked(params, LeNetDescription());
  // Nodes: input 0; conv1 bias 1, channels 2..7; conv2 bias 8, channels 9..24; flatten units
  // 25..280 (16 channels x 16 positions); fc1 bias 281, units 282..401; fc2 bias 402, units
  // 403..486; fc3 bias 487, logits 488..497.
  const int64_t nodes = 1 + (1 + 6) + (1 + 16) + 16 * 16 + (1 + 120) + (1 + 84) + (1 + 10);
  EXPECT_EQ(g.num_nodes, nodes);
  const int64_t params_edges =
      6 * 1 + 6 + 16 * 6 + 16 + 120 * 256 + 120 + 84 * 120 + 84 + 10 * 84 + 10;
  const int64_t ties = 16 * 16;
  EXPECT_EQ(g.num_edges(), params_edges + ties + nodes);
  EXPECT_EQ(g.feat_size, 25);
  EXPECT_EQ(CountType(g, kEdgeConv), 6 + 96);
  EXPECT_EQ(CountType(g, kEdgeResidual), ties);
  // conv1's one edge 0 -> 2 carries the 5x5 kernel W[0, 0] in slots 0..24.
  EXPECT_EQ(g.src[0], 0);
  EXPECT_EQ(g.dst[0], 2);
  for (int f = 0; f < 25; ++f) EXPECT_EQ(g.param_index[f], f);
  // Edges in op order: conv1, conv2, the flatten's ties, fc1, fc2, fc3.
  // fc1's first edge: flatten unit 0 (node 25) -> fc1 unit 0 (node 282); then 25 -> 283.
  const int64_t e_fc1 = 6 + 6 + 96 + 16 + ties;
  EXPECT_EQ(g.src[e_fc1], 25);
  EXPECT_EQ(g.dst[e_fc1], 282);
  EXPECT_EQ(g.param_index[e_fc1 * 25], params[4].offset);
  EXPECT_EQ(g.dst[e_fc1 + 1], 283);
  EXPECT_EQ(g.param_index[(e_fc1 + 1) * 25], params[4].offset + 256);  // W[1, 0]
  // The ties follow conv2's edges: channel c of conv2 (node 9 + c) -> units 25 + 16c + p.
  const int64_t e_tie = 6 + 6 + 96 + 16;
  for (int64_t c : {0, 5, 15}) {
    for (int64_t p : {0, 7, 15}) {
      const int64_t e = e_tie + c * 16 + p;
      EXPECT_EQ(g.src[e], 9 + c);
      EXPECT_EQ(g.dst[e], 25 + c * 16 + p);
      EXPECT_EQ(g.type[e], kEdgeResidual);
    }
  }
  EXPECT_EQ(g.src[params_edges + ties], 0);  // self-loops last
}

TEST(DescribedGraph, ResidualBlockWithIdentityShortcut) {
  const std::vector<ParamSpec> params = Table(ResidualLayout(8));
  const NeuralGraph g = BuildChecked(params, ResidualDescription(false, false));
  // input 0..2; conv0: bn0 aux 3, 4, channels 5..12; conv1: aux 13, 14, channels 15..22;
  // conv2: aux 23, 24, channels 25..32; fc: aux 33, logits 34..43.
  const int64_t nodes = 3 + 3 * (2 + 8) + (1 + 10);
  EXPECT_EQ(g.num_nodes, nodes);
  const int64_t params_edges = 8 * 3 + 16 + 64 + 16 + 64 + 16 + 80 + 10;
  EXPECT_EQ(g.num_edges(), params_edges + 8 + nodes);
  EXPECT_EQ(g.feat_size, 9);
  EXPECT_EQ(CountType(g, kEdgeNormWeight), 3 * 8);
  EXPECT_EQ(CountType(g, kEdgeBias), 3 * 8 + 10);
  // The shortcut's units (conv0's channels) feed the block's output (conv2's channels): the
  // residual edges come first among conv2's (after conv0, bn0, conv1, bn1).
  const int64_t e_res = 8 * 3 + 16 + 64 + 16;
  for (int64_t k = 0; k < 8; ++k) {
    EXPECT_EQ(g.src[e_res + k], 5 + k);
    EXPECT_EQ(g.dst[e_res + k], 25 + k);
    EXPECT_EQ(g.type[e_res + k], kEdgeResidual);
  }
  EXPECT_EQ(g.dst[e_res + 8], 25);  // then conv2's weight
  EXPECT_EQ(g.type[e_res + 8], kEdgeConv);
  // fc reads the add's result: its first edge leaves conv2's channel 0.
  const int64_t e_fc = params_edges + 8 - 80 - 10;
  EXPECT_EQ(g.src[e_fc], 25);
  EXPECT_EQ(g.dst[e_fc], 34);
  // The operand order of the add does not matter: the later-allocated operand is the result.
  ExpectSameGraph(BuildChecked(params, ResidualDescription(false, true)), g);
}

TEST(DescribedGraph, ResidualBlockWithProjectionShortcut) {
  const std::vector<ParamSpec> params = Table(ResidualLayout(16));
  const NeuralGraph g = BuildChecked(params, ResidualDescription(true, false));
  // input 0..2; conv0 aux 3, 4, ch 5..12; conv1 aux 13, 14, ch 15..30; conv2 aux 31, 32,
  // ch 33..48; down.0 aux (down.1's) 49, 50, ch 51..66; fc aux 67, logits 68..77.
  const int64_t nodes = 3 + (2 + 8) + 3 * (2 + 16) + (1 + 10);
  EXPECT_EQ(g.num_nodes, nodes);
  const int64_t params_edges = 8 * 3 + 16 + 16 * 8 + 32 + 16 * 16 + 32 + 16 * 8 + 32 + 160 + 10;
  EXPECT_EQ(g.num_edges(), params_edges + 16 + nodes);
  // The 1x1 projection conv uses slot 0 of its 9; its first edge: conv0 channel 0 -> node 51,
  // after the residual edges into its channels.
  const int64_t e_res = 8 * 3 + 16 + 16 * 8 + 32 + 16 * 16 + 32;
  const int64_t e_down = e_res + 16;
  EXPECT_EQ(g.type[e_down], kEdgeConv);
  EXPECT_EQ(g.src[e_down], 5);
  EXPECT_EQ(g.dst[e_down], 51);
  EXPECT_EQ(g.param_index[e_down * 9], params[9].offset);
  for (int f = 1; f < 9; ++f) EXPECT_EQ(g.param_index[e_down * 9 + f], kSlotZero);
  // torchvision computes the projection after bn2: the projection is allocated later and is the
  // add's result; the main path's channels feed it, and fc reads it.
  for (int64_t k = 0; k < 16; ++k) {
    EXPECT_EQ(g.src[e_res + k], 33 + k);
    EXPECT_EQ(g.dst[e_res + k], 51 + k);
  }
  EXPECT_EQ(g.src[params_edges + 16 - 170], 51);
  ExpectSameGraph(BuildChecked(params, ResidualDescription(true, true)), g);
}

TEST(DescribedGraph, ConcatJoinsUnitsAndANormOnItGetsItsOwnNodes) {
  const std::vector<ParamSpec> params = Table({{"a.weight", {3, 4}},
                                               {"a.bias", {3}},
                                               {"b.weight", {5, 4}},
                                               {"b.bias", {5}},
                                               {"in_norm.weight", {4}},
                                               {"ln.weight", {8}},
                                               {"ln.bias", {8}},
                                               {"c.weight", {2, 8}}});
  ModelDescriptionBuilder b;
  std::string x = b.Input(4, "x");
  x = b.Norm(x, "in_norm.weight", "", "in_norm");
  const std::string a = b.Dense(x, "a.weight", "a.bias", "a");
  const std::string bb = b.Dense(x, "b.weight", "b.bias", "b");
  std::string h = b.Concat({a, bb}, "cat");
  h = b.Norm(h, "ln.weight", "ln.bias", "ln");
  b.Dense(h, "c.weight", "", "c");
  const NeuralGraph g = BuildChecked(params, b.description());
  // in_norm aux 0 (a norm on an input precedes its units), inputs 1..4; a: aux 5, units 6..8;
  // b: aux 9, units 10..14; ln's aux 15, 16 where the norm stands; c: units 17, 18.
  EXPECT_EQ(g.num_nodes, 1 + 4 + (1 + 3) + (1 + 5) + 2 + 2);
  EXPECT_EQ(g.num_edges(), 12 + 3 + 20 + 5 + 4 + 8 + 8 + 16 + g.num_nodes);
  // Edges in op order: in_norm first, then a.weight: input 0 (node 1) -> a's unit 0 (node 6).
  EXPECT_EQ(g.src[0], 0);
  EXPECT_EQ(g.dst[0], 1);
  EXPECT_EQ(g.type[0], kEdgeNormWeight);
  EXPECT_EQ(g.src[4], 1);
  EXPECT_EQ(g.dst[4], 6);
  const int64_t e_ln = 4 + 12 + 3 + 20 + 5;
  for (int64_t k = 0; k < 8; ++k) {
    const int64_t unit = k < 3 ? 6 + k : 10 + (k - 3);
    EXPECT_EQ(g.src[e_ln + k], 15);  // ln.weight's node -> the k-th unit of the concatenation
    EXPECT_EQ(g.dst[e_ln + k], unit);
    EXPECT_EQ(g.src[e_ln + 8 + k], 16);
    EXPECT_EQ(g.type[e_ln + 8 + k], kEdgeBias);
    // c.weight reads the concatenation: input k -> c's units 17, 18.
    EXPECT_EQ(g.src[e_ln + 16 + 2 * k], unit);
    EXPECT_EQ(g.dst[e_ln + 16 + 2 * k + 1], 18);
  }
}

TEST(DescribedGraph, PoolingAndFlattenOfOnePositionAreAliases) {
  const std::vector<ParamSpec> params = Table(testing::Fm16Layout());
  auto describe = [](bool with_aliases) {
    ModelDescriptionBuilder b;
    std::string h = b.Input(1);
    for (const char* conv : {"fc.0", "fc.2", "fc.4"}) {
      h = b.Dense(h, std::string(conv) + ".weight", std::string(conv) + ".bias");
      if (with_aliases) {
        for (const char* kind : {"relu", "max_pool2d", "avg_pool2d", "dropout", "identity"}) {
          h = b.Alias(h, kind);
        }
      }
    }
    if (with_aliases) {
      h = b.Alias(h, "adaptive_avg_pool2d");
      h = b.Flatten(h, 1);
    }
    b.Dense(h, "fc.8.weight", "fc.8.bias");
    return b.description();
  };
  const NeuralGraph bare = BuildChecked(params, describe(false));
  ExpectSameGraph(BuildChecked(params, describe(true)), bare);
  EXPECT_EQ(CountType(bare, kEdgeResidual), 0);
}

TEST(DescribedGraph, ChainedAddsAndANormAfterAnAdd) {
  // x -> d1 -> d2 ; s = d2 + x ; n = norm(s) ; t = d3(n) + s ; out = d4(t).
  const std::vector<ParamSpec> params = Table({{"d1.weight", {4, 4}},
                                               {"d2.weight", {4, 4}},
                                               {"n.weight", {4}},
                                               {"n.bias", {4}},
                                               {"d3.weight", {4, 4}},
                                               {"d4.weight", {2, 4}}});
  ModelDescriptionBuilder b;
  const std::string x = b.Input(4, "x");
  std::string h = b.Dense(b.Dense(x, "d1.weight"), "d2.weight");
  const std::string s = b.Add(h, x);
  const std::string n = b.Norm(s, "n.weight", "n.bias");
  const std::string t = b.Add(b.Dense(n, "d3.weight"), s);
  b.Dense(t, "d4.weight");
  const NeuralGraph g = BuildChecked(params, b.description());
  // inputs 0..3; d1 4..7; d2: n's aux 8, 9 (the add's result is d2's group), units 10..13;
  // d3 14..17; d4 18, 19.
  EXPECT_EQ(g.num_nodes, 20);
  EXPECT_EQ(g.num_edges(), 16 * 3 + 8 + 8 + 8 + 20);  // weights, norm, d4, two adds, loops
  // Op order, each add's residual edges just before the weight of the dense op it joins:
  // d1, x -> d2, d2, n, s -> d3, d3, d4.
  EXPECT_EQ(g.src[16], 0);  // x -> d2
  EXPECT_EQ(g.dst[16], 10);
  EXPECT_EQ(g.type[16], kEdgeResidual);
  const int64_t e_res2 = 16 + 4 + 16 + 8;
  EXPECT_EQ(g.src[e_res2], 10);  // s (d2) -> d3
  EXPECT_EQ(g.dst[e_res2], 14);
  EXPECT_EQ(g.type[e_res2], kEdgeResidual);
  EXPECT_EQ(g.src[e_res2 + 4 + 16], 14);  // d4 reads d3's units
}

// ---- Refusals ----

void ExpectRefused(const Shapes& shapes, const ModelDescription& d,
                   const std::vector<std::string>& mentions) {
  const std::vector<ParamSpec> params = Table(shapes);
  absl::StatusOr<NeuralGraph> g = BuildGraphFromDescription(params, d);
  ASSERT_FALSE(g.ok());
  EXPECT_EQ(g.status().code(), absl::StatusCode::kInvalidArgument) << g.status();
  for (const std::string& m : mentions) {
    EXPECT_NE(g.status().message().find(m), std::string::npos)
        << "'" << m << "' not in: " << g.status().message();
  }
  absl::StatusOr<DescribedGraphSize> size = CountGraphFromDescription(params, d);
  EXPECT_EQ(size.status(), g.status());
}

// LeNet's description with one op changed by `edit`.
ModelDescription EditedLeNet(const std::function<void(ModelDescription*)>& edit) {
  ModelDescription d = LeNetDescription();
  edit(&d);
  return d;
}

TEST(DescribedGraphErrors, ParametersMustBeNamedExactlyOnce) {
  ExpectRefused(LeNet(), EditedLeNet([](ModelDescription* d) { d->ops[1].weight = "conv1.w"; }),
                {"op 1 (dense 'conv1')", "weight 'conv1.w'", "not a parameter"});
  ExpectRefused(LeNet(), EditedLeNet([](ModelDescription* d) { d->ops[4].bias = "conv1.bias"; }),
                {"op 4 (dense 'conv2')", "'conv1.bias'", "already used by op 1 (dense 'conv1')"});
  ExpectRefused(LeNet(), EditedLeNet([](ModelDescription* d) { d->ops[12].bias = ""; }),
                {"parameter 'fc3.bias'", "in no op"});
  ExpectRefused({}, LeNetDescription(), {"no parameters"});
}

TEST(DescribedGraphErrors, ShapesMustMatchTheGroups) {
  // The flatten says 4x4 positions but fc1 reads 16 * 5 * 5.
  Shapes wide = LeNet();
  wide[4].second = {120, 400};
  ExpectRefused(wide, LeNetDescription(),
                {"op 8 (dense 'fc1')", "'fc1.weight' (120, 400)", "'flatten' has 256"});
  Shapes bad_bias = LeNet();
  bad_bias[5].second = {119};
  ExpectRefused(bad_bias, LeNetDescription(), {"op 8 (dense 'fc1')", "bias 'fc1.bias'", "(119)"});
  Shapes conv1d = LeNet();
  conv1d[0].second = {6, 1, 5};
  ExpectRefused(conv1d, LeNetDescription(),
                {"op 1 (dense 'conv1')", "'conv1.weight'", "(6, 1, 5)"});
  Shapes bias_2d = LeNet();
  bias_2d[1].second = {6, 1};
  ExpectRefused(bias_2d, LeNetDescription(), {"op 1 (dense 'conv1')", "bias 'conv1.bias'"});
  // A BatchNorm of the wrong width.
  Shapes bn = ResidualLayout(8);
  bn[4].second = {7};
  ExpectRefused(bn, ResidualDescription(false, false),
                {"op 5 (norm 'bn1')", "weight 'bn1.weight'", "(7)", "expected (8)"});
}

TEST(DescribedGraphErrors, GroupedConvolutionsAreNamed) {
  const Shapes depthwise = {{"dw.weight", {8, 1, 3, 3}}};
  ModelDescriptionBuilder b;
  b.Dense(b.Input(8, "x"), "dw.weight", "", "dw");
  ExpectRefused(depthwise, b.description(),
                {"op 1 (dense 'dw')", "'dw.weight'", "grouped or depthwise", "groups = 8"});
  const Shapes grouped = {{"g.weight", {8, 2, 3, 3}}};
  ModelDescriptionBuilder b2;
  b2.Dense(b2.Input(4, "x"), "g.weight", "", "g");
  ExpectRefused(grouped, b2.description(), {"'g.weight'", "groups = 2"});
}

TEST(DescribedGraphErrors, AddOperandsMustHaveEqualSizes) {
  const Shapes shapes = {{"a.weight", {4, 3}}, {"b.weight", {5, 3}}};
  ModelDescriptionBuilder b;
  const std::string x = b.Input(3, "x");
  b.Add(b.Dense(x, "a.weight", "", "a"), b.Dense(x, "b.weight", "", "b"), "sum");
  ExpectRefused(shapes, b.description(), {"op 3 (add 'sum')", "'a' (4 units)", "'b' (5 units)"});
}

TEST(DescribedGraphErrors, GroupNamesMustExistAndBeUnique) {
  ExpectRefused(LeNet(), EditedLeNet([](ModelDescription* d) { d->ops[4].inputs = {"pool9"}; }),
                {"op 4 (dense 'conv2')", "input 'pool9'", "not the output of an earlier op"});
  ExpectRefused(LeNet(), EditedLeNet([](ModelDescription* d) { d->ops[4].inputs = {"relu2"}; }),
                {"op 4", "input 'relu2'"});  // defined later
  ExpectRefused(LeNet(), EditedLeNet([](ModelDescription* d) { d->ops[5].output = "conv1"; }),
                {"op 5 (alias 'conv1')", "already a group"});
  ExpectRefused(LeNet(), EditedLeNet([](ModelDescription* d) { d->ops[2].output = ""; }),
                {"op 2", "missing field 'output'"});
}

TEST(DescribedGraphErrors, OpsMustCarryTheirFieldsOnly) {
  ExpectRefused(LeNet(), EditedLeNet([](ModelDescription* d) { d->ops[0].units = 0; }),
                {"op 0 (input 'x')", "units must be >= 1"});
  ExpectRefused(LeNet(), EditedLeNet([](ModelDescription* d) { d->ops[7].positions = 0; }),
                {"op 7 (flatten 'flatten')", "positions must be >= 1"});
  ExpectRefused(LeNet(), EditedLeNet([](ModelDescription* d) { d->ops[2].alias_kind = ""; }),
                {"op 2 (alias 'relu1')", "missing field 'kind'"});
  ExpectRefused(LeNet(), EditedLeNet([](ModelDescription* d) { d->ops[1].weight = ""; }),
                {"op 1 (dense 'conv1')", "missing field 'weight'"});
  ExpectRefused(LeNet(),
                EditedLeNet([](ModelDescription* d) { d->ops[0].weight = "conv1.weight"; }),
                {"op 0 (input 'x')", "field 'weight' does not apply"});
  ExpectRefused(LeNet(), EditedLeNet([](ModelDescription* d) { d->ops[2].inputs.push_back("x"); }),
                {"op 2 (alias 'relu1')", "takes 1 input group(s), got 2"});
  ExpectRefused(LeNet(), EditedLeNet([](ModelDescription* d) { d->version = 5; }),
                {"version: 5", "reads versions 1 to 4"});
  ExpectRefused(LeNet(), ModelDescription{}, {"no ops"});
  ModelDescriptionBuilder b;
  b.Concat({b.Input(2, "x")}, "cat");
  ExpectRefused({{"w", {1, 2}}}, b.description(), {"op 1 (concat 'cat')", "at least 2"});
  ModelDescriptionBuilder empty_norm;
  empty_norm.Norm(empty_norm.Input(2, "x"), "", "", "n");
  ExpectRefused({{"w", {1, 2}}}, empty_norm.description(), {"op 1 (norm 'n')", "'weight'"});
}

TEST(DescribedGraphErrors, HugeGroupsAreRefusedBeforeAnythingIsAllocated) {
  ModelDescriptionBuilder b;
  b.Input(int64_t{1} << 41, "x");
  ExpectRefused({{"w", {1, 2}}}, b.description(), {"op 0 (input 'x')", "2^40"});
  ModelDescriptionBuilder f;
  f.Flatten(f.Input(4, "x"), int64_t{1} << 39, "flat");
  ExpectRefused({{"w", {1, 2}}}, f.description(), {"op 1 (flatten 'flat')", "2^40"});
}

TEST(DescribedGraphErrors, DescribeGenericChainRefusesWhatTheChainCannotMap) {
  auto refused = [](const Shapes& s, const std::string& mention) {
    absl::StatusOr<ModelDescription> d = DescribeGenericChain(Table(s));
    ASSERT_FALSE(d.ok()) << mention;
    EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(d.status().message().find(mention), std::string::npos) << d.status();
  };
  refused({}, "no parameters");
  refused({{"n.weight", {4}}, {"a.weight", {2, 4}}}, "'n.weight' is 1-D");
  refused({{"a.weight", {8, 4}}, {"b.weight", {8, 8}}, {"a.bias", {8}}}, "module 'a'");
  refused({{"c.weight", {8, 4, 3}}}, "'c.weight' has shape (8, 4, 3)");
  refused({{"a.weight", {8, 4}}, {"a.res.bias", {8}}}, "'a.res.bias'");
  // A chain that does not connect is described, and the builder names the layer.
  const std::vector<ParamSpec> broken = Table({{"a.weight", {8, 4}}, {"b.weight", {3, 5}}});
  absl::StatusOr<ModelDescription> d = DescribeGenericChain(broken);
  ASSERT_TRUE(d.ok()) << d.status();
  absl::StatusOr<NeuralGraph> g = BuildGraphFromDescription(broken, *d);
  ASSERT_FALSE(g.ok());
  EXPECT_NE(g.status().message().find("'b.weight' (3, 5) reads 5"), std::string::npos)
      << g.status();
}

// ---- Version 2: embeddings, attention, (in, out) weights ----

// A small ViT on 1-channel images: patch conv (d, 1, p, p) + bias, class token (1, 1, d) and
// position table (1, n + 1, d) into the patch group, L pre-norm blocks with packed attention as
// nn.MultiheadAttention names it (in_proj_weight (3d, d), in_proj_bias, out_proj), MLP 4d with
// GELU, final LayerNorm, head Linear(d, 10). `split`: q / k / v as three (d, d) weights and
// three biases, consecutive where the packed ones were (so the flat layout is the same).
struct VitConfig {
  int L = 2;
  int64_t d = 8, heads = 2, patch = 4, patches = 4;  // 8x8 images
};

Shapes VitLayout(const VitConfig& c, bool split) {
  const int64_t d = c.d;
  Shapes s = {{"cls_token", {1, 1, d}},
              {"pos_embed", {1, c.patches + 1, d}},
              {"patch_embed.weight", {d, 1, c.patch, c.patch}},
              {"patch_embed.bias", {d}}};
  for (int b = 0; b < c.L; ++b) {
    const std::string h = "blocks." + std::to_string(b) + ".";
    s.push_back({h + "norm1.weight", {d}});
    s.push_back({h + "norm1.bias", {d}});
    if (split) {
      for (const char* w : {"q", "k", "v"}) s.push_back({h + "attn." + w + ".weight", {d, d}});
      for (const char* w : {"q", "k", "v"}) s.push_back({h + "attn." + w + ".bias", {d}});
    } else {
      s.push_back({h + "attn.in_proj_weight", {3 * d, d}});
      s.push_back({h + "attn.in_proj_bias", {3 * d}});
    }
    s.push_back({h + "attn.out_proj.weight", {d, d}});
    s.push_back({h + "attn.out_proj.bias", {d}});
    s.push_back({h + "norm2.weight", {d}});
    s.push_back({h + "norm2.bias", {d}});
    s.push_back({h + "mlp.0.weight", {4 * d, d}});
    s.push_back({h + "mlp.0.bias", {4 * d}});
    s.push_back({h + "mlp.2.weight", {d, 4 * d}});
    s.push_back({h + "mlp.2.bias", {d}});
  }
  s.push_back({"norm.weight", {d}});
  s.push_back({"norm.bias", {d}});
  s.push_back({"head.weight", {10, d}});
  s.push_back({"head.bias", {10}});
  return s;
}

ModelDescription VitDescription(const VitConfig& c, bool split) {
  ModelDescriptionBuilder b;
  std::string x = b.Input(1, "image");
  x = b.Dense(x, "patch_embed.weight", "patch_embed.bias", "patch_embed");
  x = b.Embedding("cls_token", "token", x, "cls");
  x = b.Embedding("pos_embed", "position", x, "pos");
  for (int blk = 0; blk < c.L; ++blk) {
    const std::string h = "blocks." + std::to_string(blk) + ".";
    std::string y = b.Norm(x, h + "norm1.weight", h + "norm1.bias", h + "norm1");
    if (split) {
      const std::string a = h + "attn.";
      y = b.Attention(y, c.heads,
                      {a + "q.weight", a + "k.weight", a + "v.weight", a + "q.bias", a + "k.bias",
                       a + "v.bias"},
                      h + "attn");
    } else {
      y = b.Attention(y, c.heads, h + "attn.in_proj_weight", h + "attn.in_proj_bias", false,
                      h + "attn");
    }
    y = b.Dense(y, h + "attn.out_proj.weight", h + "attn.out_proj.bias", h + "out_proj");
    x = b.Add(x, y, h + "add1");
    y = b.Norm(x, h + "norm2.weight", h + "norm2.bias", h + "norm2");
    y = b.Dense(y, h + "mlp.0.weight", h + "mlp.0.bias", h + "fc1");
    y = b.Alias(y, "gelu", h + "gelu");
    y = b.Dense(y, h + "mlp.2.weight", h + "mlp.2.bias", h + "fc2");
    x = b.Add(x, y, h + "add2");
  }
  x = b.Norm(x, "norm.weight", "norm.bias", "norm");
  b.Dense(x, "head.weight", "head.bias", "head");
  return b.description();
}

TEST(DescribedGraphV2, SmallVitHasItsClosedFormSize) {
  for (const VitConfig& c : {VitConfig{}, VitConfig{1, 12, 3, 2, 16}, VitConfig{3, 8, 8, 4, 4}}) {
    const std::vector<ParamSpec> params = Table(VitLayout(c, false));
    const ModelDescription d = VitDescription(c, false);
    EXPECT_EQ(d.version, 2);
    const NeuralGraph g = BuildChecked(params, d);
    const int64_t L = c.L, D = c.d, H = c.heads, n = c.patches;
    // N = input 1 + patch bias 1 + class-token row 1 + position rows n+1 + patch units d
    //   + L (H heads + q/v bias 2 + q and v units 2d + out_proj bias, units 1 + d + fc1 bias,
    //        units 1 + 4d + fc2 bias, units 1 + d + norm1 2 + key bias 1 + norm2 2)
    //   + final norm 2 + head bias, logits 1 + 10.
    const int64_t nodes = 1 + 1 + 1 + (n + 1) + D + L * (8 * D + H + 10) + 2 + 11;
    EXPECT_EQ(g.num_nodes, nodes);
    // E = patch conv d (one edge per channel, p x p slots) + its bias d + class token d
    //   + positions (n+1) d + L (12 d^2 + 17 d) + final norm 2d + head 10d + 10 + N.
    const int64_t edges =
        D + D + D + (n + 1) * D + L * (12 * D * D + 17 * D) + 2 * D + 10 * D + 10 + nodes;
    EXPECT_EQ(g.num_edges(), edges);
    EXPECT_EQ(g.feat_size, c.patch * c.patch);
    EXPECT_EQ(CountType(g, kEdgeWordEmbedding), D);
    EXPECT_EQ(CountType(g, kEdgePosEmbedding), (n + 1) * D);
    EXPECT_EQ(CountType(g, kEdgeQuery), L * D * D);
    EXPECT_EQ(CountType(g, kEdgeKey), L * D * D);
    EXPECT_EQ(CountType(g, kEdgeValue), L * D * D);
    EXPECT_EQ(CountType(g, kEdgeHead), L * 2 * D);
    EXPECT_EQ(CountType(g, kEdgeResidual), L * 2 * D);
    // Node 0 is the image channel; the patch group's prelude: the class-token row (pos_w 1), the
    // n + 1 position rows (pos_w 0), the patch bias, block 0's norm1 gain and shift, its key
    // bias; then the d patch units.
    EXPECT_EQ(g.pos_w[1], 1);
    for (int64_t r = 0; r <= n; ++r) EXPECT_EQ(g.pos_w[2 + r], 0);
    EXPECT_EQ(g.src[0], 0);  // the patch conv's first edge: image -> patch unit 0
    EXPECT_EQ(g.dst[0], 1 + 1 + (n + 1) + 4);
    EXPECT_EQ(g.type[0], kEdgeConv);
  }
}

TEST(DescribedGraphV2, SplitProjectionsGiveThePackedGraph) {
  const VitConfig c;
  const NeuralGraph packed = BuildChecked(Table(VitLayout(c, false)), VitDescription(c, false));
  // q, k, v weights then biases where in_proj_weight and in_proj_bias were: the flat layout is
  // the same, so the graphs are identical, slots included.
  const NeuralGraph split = BuildChecked(Table(VitLayout(c, true)), VitDescription(c, true));
  ExpectSameGraph(split, packed);
  // With the biases interleaved (q.weight, q.bias, k.weight, ...) only the slot rows move.
  Shapes interleaved;
  for (const auto& p : VitLayout(c, true)) {
    if (p.first.find(".attn.") != std::string::npos && p.first.find("_proj") == std::string::npos &&
        p.first.find(".bias") != std::string::npos) {
      continue;
    }
    interleaved.push_back(p);
    if (p.first.find(".attn.") != std::string::npos && p.first.find("_proj") == std::string::npos) {
      const std::string bias = p.first.substr(0, p.first.size() - 6) + "bias";
      interleaved.push_back({bias, {c.d}});
    }
  }
  const std::vector<ParamSpec> params = Table(interleaved);
  const NeuralGraph moved = BuildChecked(params, VitDescription(c, true));
  EXPECT_EQ(moved.src, packed.src);
  EXPECT_EQ(moved.dst, packed.dst);
  EXPECT_EQ(moved.type, packed.type);
  EXPECT_EQ(moved.pos_w, packed.pos_w);
  EXPECT_NE(moved.param_index, packed.param_index);
  // Each slot holds the same parameter entry in both: map rows to (name, index in tensor).
  auto entry = [](const std::vector<ParamSpec>& table, int64_t row) {
    for (const ParamSpec& p : table) {
      if (row >= p.offset && row < p.offset + p.numel) {
        return std::make_pair(p.name, row - p.offset);
      }
    }
    return std::make_pair(std::string(), row);  // constants
  };
  const std::vector<ParamSpec> split_table = Table(VitLayout(c, true));
  for (size_t s = 0; s < moved.param_index.size(); ++s) {
    ASSERT_EQ(entry(params, moved.param_index[s]), entry(split_table, split.param_index[s])) << s;
  }
}

TEST(DescribedGraphV2, TinyGptWithSplitProjectionsAndAnUntiedHead) {
  const int64_t V = 11, P = 5, d = 8, H = 2, L = 2;
  Shapes s = {{"tok.weight", {V, d}}, {"pos.weight", {P, d}}};
  ModelDescriptionBuilder b;
  std::string x = b.Embedding("tok.weight", "token", "", "tok");
  x = b.Embedding("pos.weight", "position", x, "pos");
  for (int blk = 0; blk < L; ++blk) {
    const std::string h = "blocks." + std::to_string(blk) + ".";
    for (const char* w : {"ln1.weight", "ln1.bias"}) s.push_back({h + w, {d}});
    for (const char* w : {"q.weight", "k.weight", "v.weight", "o.weight"}) {
      s.push_back({h + w, {d, d}});
    }
    for (const char* w : {"ln2.weight", "ln2.bias"}) s.push_back({h + w, {d}});
    s.push_back({h + "fc1.weight", {4 * d, d}});
    s.push_back({h + "fc1.bias", {4 * d}});
    s.push_back({h + "fc2.weight", {d, 4 * d}});
    s.push_back({h + "fc2.bias", {d}});
    std::string y = b.Norm(x, h + "ln1.weight", h + "ln1.bias");
    y = b.Attention(y, H, {h + "q.weight", h + "k.weight", h + "v.weight"});
    x = b.Add(x, b.Dense(y, h + "o.weight"));
    y = b.Norm(x, h + "ln2.weight", h + "ln2.bias");
    y = b.Dense(b.Alias(b.Dense(y, h + "fc1.weight", h + "fc1.bias"), "gelu"), h + "fc2.weight",
                h + "fc2.bias");
    x = b.Add(x, y);
  }
  s.push_back({"ln_f.weight", {d}});
  s.push_back({"ln_f.bias", {d}});
  s.push_back({"head.weight", {V, d}});
  b.Dense(b.Norm(x, "ln_f.weight", "ln_f.bias"), "head.weight");
  const std::vector<ParamSpec> params = Table(s);
  const NeuralGraph g = BuildChecked(params, b.description());
  // N = token rows V + position rows P + units d + L (norm1 2 + H heads + q, v units 2d + norm2
  //     2 + o units d + fc1 bias, units 1 + 4d + fc2 bias, units 1 + d) + ln_f 2 + logits V.
  const int64_t nodes = V + P + d + L * (8 * d + H + 6) + 2 + V;
  EXPECT_EQ(g.num_nodes, nodes);
  // E = tables (V + P) d + L (12 d^2 + 13 d) + ln_f 2d + head V d + N.
  EXPECT_EQ(g.num_edges(), (V + P) * d + L * (12 * d * d + 13 * d) + 2 * d + V * d + nodes);
  for (int64_t v = 0; v < V; ++v) EXPECT_EQ(g.pos_w[v], v + 1);
  for (int64_t p = 0; p < P; ++p) EXPECT_EQ(g.pos_w[V + p], 0);
  EXPECT_EQ(g.pos_w[nodes - 1], 0);  // the untied head's logits are not token nodes
  EXPECT_EQ(CountType(g, kEdgeBias), L * (2 * d + 4 * d + d) + d);  // no attention biases
  // Block 0's q edge X[0] -> Q[0] carries q.weight[0, 0]; the reversed k edge Q[0] -> X[0]
  // k.weight[0, 0]. X = V + P + 2 (the norm's gain and shift), heads follow X, then Q.
  const int64_t X = V + P + 2, Q = X + d + H;
  const int64_t e_q = (V + P) * d + 2 * d;
  EXPECT_EQ(g.src[e_q], X);
  EXPECT_EQ(g.dst[e_q], Q);
  EXPECT_EQ(g.type[e_q], kEdgeQuery);
  EXPECT_EQ(g.param_index[e_q], params[4].offset);
  EXPECT_EQ(g.param_index[e_q + 1], params[4].offset + d);  // W_q[1, 0]
  const int64_t e_k = e_q + d * d + d;                      // after q and its heads
  EXPECT_EQ(g.src[e_k], Q);
  EXPECT_EQ(g.dst[e_k], X);
  EXPECT_EQ(g.type[e_k], kEdgeKey);
  EXPECT_EQ(g.param_index[e_k], params[5].offset);
}

TEST(DescribedGraphV2, TransposedDenseReadsInOutWeights) {
  const std::vector<ParamSpec> params = Table({{"w", {3, 2}}, {"b", {2}}});
  ModelDescriptionBuilder b;
  b.DenseTransposed(b.Input(3, "x"), "w", "b", "fc");
  const NeuralGraph g = BuildChecked(params, b.description());
  // input 0..2, bias 3, units 4, 5; edge i -> o carries W[i, o] = row 2 i + o, input-major.
  ASSERT_EQ(g.num_edges(), 6 + 2 + 6);
  for (int64_t i = 0; i < 3; ++i) {
    for (int64_t o = 0; o < 2; ++o) {
      EXPECT_EQ(g.src[2 * i + o], i);
      EXPECT_EQ(g.dst[2 * i + o], 4 + o);
      EXPECT_EQ(g.param_index[2 * i + o], 2 * i + o);
    }
  }
}

TEST(DescribedGraphV2, AttentionOnAConcatenationGetsItsKeyBiasNodeWhereItStands) {
  const std::vector<ParamSpec> params =
      Table({{"a.weight", {2, 4}}, {"b.weight", {2, 4}}, {"attn.w", {12, 4}}, {"attn.b", {12}}});
  ModelDescriptionBuilder b;
  const std::string x = b.Input(4, "x");
  const std::string cat = b.Concat({b.Dense(x, "a.weight"), b.Dense(x, "b.weight")});
  b.Attention(cat, 2, "attn.w", "attn.b");
  const NeuralGraph g = BuildChecked(params, b.description());
  // x 0..3, a 4, 5, b 6, 7, key bias 8, heads 9, 10, q bias 11, v bias 12, Q 13..16, V 17..20.
  EXPECT_EQ(g.num_nodes, 21);
  const int64_t e_kb = 8 + 8 + 16 + 4 + 4 + 16;  // a, b, q, heads, q bias, k
  for (int64_t j = 0; j < 4; ++j) {
    EXPECT_EQ(g.src[e_kb + j], 8);
    EXPECT_EQ(g.dst[e_kb + j], 4 + j);
    EXPECT_EQ(g.param_index[e_kb + j], params[3].offset + 4 + j);
  }
}

TEST(DescribedGraphV2Errors, RefusalsNameTheOpAndTheParameter) {
  const VitConfig c;
  const Shapes vit = VitLayout(c, false);
  auto with_shape = [&vit](const std::string& name, std::vector<int64_t> shape) {
    Shapes s = vit;
    for (auto& p : s) {
      if (p.first == name) p.second = shape;
    }
    return s;
  };
  const ModelDescription d = VitDescription(c, false);
  // op 2 (cls), op 3 (pos), op 5 (blocks.0.attn).
  ExpectRefused(with_shape("pos_embed", {1, 5, 7}), d,
                {"op 3 (embedding 'pos')", "weight 'pos_embed' (1, 5, 7)", "rows of 7 entries",
                 "'cls' has 8 units"});
  ExpectRefused(with_shape("cls_token", {1, 0, 8}), d,
                {"op 2 (embedding 'cls')", "weight 'cls_token' has shape (1, 0, 8)"});
  ExpectRefused(with_shape("blocks.0.attn.in_proj_weight", {24, 7}), d,
                {"op 5 (attention 'blocks.0.attn')", "weight 'blocks.0.attn.in_proj_weight'",
                 "(24, 7)", "(3 D, d) with d = 8"});
  ExpectRefused(
      with_shape("blocks.0.attn.in_proj_weight", {8, 8}), d,
      {"op 5 (attention 'blocks.0.attn')", "'blocks.0.attn.in_proj_weight' has shape (8, 8)"});
  ExpectRefused(
      with_shape("blocks.0.attn.in_proj_bias", {8}), d,
      {"op 5 (attention 'blocks.0.attn')", "bias 'blocks.0.attn.in_proj_bias'", "expected (24)"});
  ModelDescription heads = d;
  heads.ops[5].heads = 3;
  ExpectRefused(vit, heads,
                {"op 5 (attention 'blocks.0.attn')", "8 query units",
                 "'blocks.0.attn.in_proj_weight'", "not divisible by heads 3"});
  ModelDescription transposed = d;
  transposed.ops[5].transposed = true;  // (24, 8) read as (d, 3 D): d = 24 is not 8
  ExpectRefused(vit, transposed, {"op 5 (attention 'blocks.0.attn')", "(d, 3 D) with d = 8"});
  ModelDescription conv_transposed = d;
  conv_transposed.ops[1].transposed = true;
  ExpectRefused(vit, conv_transposed,
                {"op 1 (dense 'patch_embed')", "'patch_embed.weight'", "2-D (in, out) weights"});
  // Split projections: k / v smaller than q is grouped-query attention.
  const Shapes split = VitLayout(c, true);
  const ModelDescription ds = VitDescription(c, true);
  auto split_with = [&split](const std::string& name, std::vector<int64_t> shape) {
    Shapes s = split;
    for (auto& p : s) {
      if (p.first == name) p.second = shape;
    }
    return s;
  };
  ExpectRefused(split_with("blocks.0.attn.k.weight", {4, 8}), ds,
                {"op 5 (attention 'blocks.0.attn')", "key 'blocks.0.attn.k.weight' (4, 8)",
                 "fewer than the query's 8",
                 "grouped-query attention? (then say kv_heads = 1, description version 4)"});
  ExpectRefused(split_with("blocks.0.attn.v.weight", {16, 8}), ds,
                {"op 5 (attention 'blocks.0.attn')", "value 'blocks.0.attn.v.weight' (16, 8)",
                 "expected 8 as the query"});
  ExpectRefused(
      split_with("blocks.0.attn.q.weight", {8, 7}), ds,
      {"op 5 (attention 'blocks.0.attn')", "query 'blocks.0.attn.q.weight'", "(D, d) with d = 8"});
  ExpectRefused(
      split_with("blocks.0.attn.v.bias", {7}), ds,
      {"op 5 (attention 'blocks.0.attn')", "value_bias 'blocks.0.attn.v.bias'", "expected (8)"});
  ModelDescription missing = ds;
  missing.ops[5].key = "blocks.0.attn.kk.weight";
  ExpectRefused(split, missing,
                {"op 5 (attention 'blocks.0.attn')",
                 "key 'blocks.0.attn.kk.weight' is not a "
                 "parameter"});
  // An embedding feeding a concatenation.
  ModelDescriptionBuilder b;
  const std::string x = b.Input(2, "x");
  b.Embedding("t", "token", b.Concat({x, b.Dense(x, "w")}, "cat"), "e");
  ExpectRefused({{"w", {2, 2}}, {"t", {3, 4}}}, b.description(),
                {"op 3 (embedding 'e')", "'cat' is a concatenation"});
}

// ---- Version 3: grouped and depthwise convolutions ----

// input 4 channels -> depthwise 3x3 (4, 1, 3, 3) + BatchNorm -> pointwise 1x1 (8, 4, 1, 1) ->
// grouped 3x3 (8, 2, 3, 3), groups 4, with a bias: a MobileNet / ResNeXt block in small.
Shapes GroupedLayout() {
  return {{"dw.weight", {4, 1, 3, 3}}, {"bn.weight", {4}},         {"bn.bias", {4}},
          {"pw.weight", {8, 4, 1, 1}}, {"g.weight", {8, 2, 3, 3}}, {"g.bias", {8}}};
}

ModelDescription GroupedDescription() {
  ModelDescriptionBuilder b;
  std::string h = b.GroupedConv(b.Input(4, "x"), 4, "dw.weight", "", "dw");
  h = b.Norm(h, "bn.weight", "bn.bias", "bn");
  h = b.Dense(b.Alias(h, "relu", "relu"), "pw.weight", "", "pw");
  b.GroupedConv(h, 4, "g.weight", "g.bias", "g");
  return b.description();
}

// The source and destination node of the edge whose slot 0 holds parameter row `row`.
std::pair<int64_t, int64_t> EdgeOfRow(const NeuralGraph& g, int64_t row) {
  for (int64_t e = 0; e < g.num_edges(); ++e) {
    if (g.param_index[e * g.feat_size] == row) return {g.src[e], g.dst[e]};
  }
  ADD_FAILURE() << "no edge holds row " << row;
  return {-1, -1};
}

TEST(DescribedGraphV3, GroupedConvolutionsReadTheirGroupsOnly) {
  const std::vector<ParamSpec> params = Table(GroupedLayout());
  const ModelDescription d = GroupedDescription();
  EXPECT_EQ(d.version, 3);
  const NeuralGraph g = BuildChecked(params, d);
  // Nodes: 4 inputs; the BatchNorm's 2 aux nodes + dw's 4 units; pw 8 units; g's bias node + 8
  // units.
  const int64_t nodes = 4 + (2 + 4) + 8 + (1 + 8);
  EXPECT_EQ(g.num_nodes, nodes);
  // Edges: depthwise 4 (one per channel), BN 2 x 4, pointwise 32, grouped 8 x 2, bias 8.
  EXPECT_EQ(g.num_edges(), 4 + 8 + 32 + 16 + 8 + nodes);
  EXPECT_EQ(CountType(g, kEdgeConv), 4 + 32 + 16);
  EXPECT_EQ(g.feat_size, 9);
  const int64_t dw = params[0].offset, pw = params[3].offset, gw = params[4].offset;
  // The pointwise conv (groups 1) names the nodes: pw.weight[o, i] is edge dw_unit[i] -> pw[o].
  std::vector<int64_t> dw_node(4), pw_node(8);
  for (int64_t o = 0; o < 8; ++o) {
    for (int64_t i = 0; i < 4; ++i) {
      const auto [src, dst] = EdgeOfRow(g, pw + o * 4 + i);
      if (o == 0) dw_node[i] = src;
      EXPECT_EQ(src, dw_node[i]);
      if (i == 0) pw_node[o] = dst;
      EXPECT_EQ(dst, pw_node[o]);
    }
  }
  // Depthwise: channel c reads input c only; its 3x3 kernel fills the 9 slots in order.
  for (int64_t c = 0; c < 4; ++c) {
    const auto [src, dst] = EdgeOfRow(g, dw + c * 9);
    EXPECT_EQ(src, c);  // the input group's units are the first nodes
    EXPECT_EQ(dst, dw_node[c]);
  }
  // Grouped: output o (group o / 2) reads pw units 2 (o / 2) and 2 (o / 2) + 1, g.weight[o, i]
  // on edge pw[2 (o / 2) + i] -> g[o]; outputs of one group share their destination node.
  std::vector<int64_t> g_node(8, -1);
  for (int64_t o = 0; o < 8; ++o) {
    for (int64_t i = 0; i < 2; ++i) {
      const auto [src, dst] = EdgeOfRow(g, gw + (o * 2 + i) * 9);
      EXPECT_EQ(src, pw_node[(o / 2) * 2 + i]) << "o " << o << " i " << i;
      if (i == 0) g_node[o] = dst;
      EXPECT_EQ(dst, g_node[o]);
    }
  }
  EXPECT_EQ(std::set<int64_t>(g_node.begin(), g_node.end()).size(), 8u);
  // Edge order: the depthwise edges come first, channel by channel (group-major).
  for (int64_t c = 0; c < 4; ++c) {
    EXPECT_EQ(g.param_index[c * 9], dw + c * 9) << c;
  }
}

TEST(DescribedGraphV3, GroupsOfOneAreTheOrdinaryDenseOp) {
  const Shapes shapes = {{"c.weight", {6, 4, 3, 3}}, {"c.bias", {6}}};
  ModelDescriptionBuilder plain, grouped;
  plain.Dense(plain.Input(4, "x"), "c.weight", "c.bias", "c");
  grouped.GroupedConv(grouped.Input(4, "x"), 1, "c.weight", "c.bias", "c");
  EXPECT_EQ(grouped.description().version, 1);
  ExpectSameGraph(BuildChecked(Table(shapes), grouped.description()),
                  BuildChecked(Table(shapes), plain.description()));
}

TEST(DescribedGraphV3, AGroupedConvolutionOnAConcatenationSlicesIt) {
  // concat(a: 2 units, b: 4 units) -> grouped conv groups 3: group k reads units 2k, 2k + 1 of
  // the concatenation, i.e. a's two units, then b's first two, then b's last two.
  const Shapes shapes = {
      {"a.weight", {2, 1, 1, 1}}, {"b.weight", {4, 1, 1, 1}}, {"g.weight", {3, 2, 3, 3}}};
  ModelDescriptionBuilder b;
  const std::string x = b.Input(1, "x");
  b.GroupedConv(b.Concat({b.Dense(x, "a.weight", "", "a"), b.Dense(x, "b.weight", "", "b")}), 3,
                "g.weight", "", "g");
  const std::vector<ParamSpec> params = Table(shapes);
  const NeuralGraph g = BuildChecked(params, b.description());
  std::vector<int64_t> cat_node(6);
  for (int64_t u = 0; u < 2; ++u) cat_node[u] = EdgeOfRow(g, params[0].offset + u).second;
  for (int64_t u = 0; u < 4; ++u) cat_node[2 + u] = EdgeOfRow(g, params[1].offset + u).second;
  for (int64_t o = 0; o < 3; ++o) {
    for (int64_t i = 0; i < 2; ++i) {
      EXPECT_EQ(EdgeOfRow(g, params[2].offset + (o * 2 + i) * 9).first, cat_node[o * 2 + i])
          << "o " << o << " i " << i;
    }
  }
}

TEST(DescribedGraphV3Errors, GroupsMustFitTheWeightAndTheInput) {
  auto edited = [](int64_t groups) {
    ModelDescription d = GroupedDescription();
    d.ops.back().groups = groups;
    return d;
  };
  // groups 3 divides neither the 8 input units nor the 8 output channels.
  ExpectRefused(GroupedLayout(), edited(3),
                {"op 5 (dense 'g')", "groups = 3 does not divide the 8 input units of 'pw'"});
  // groups 2: 8 = 2 x 4, but the weight reads 2 units per group.
  ExpectRefused(GroupedLayout(), edited(2),
                {"op 5 (dense 'g')", "'g.weight' (8, 2, 3, 3) reads 2 input units per group",
                 "'pw' has 8 = 2 groups of 4"});
  // A grouped linear layer is not a convolution.
  ModelDescriptionBuilder b;
  b.GroupedConv(b.Input(4, "x"), 2, "l.weight", "", "l");
  ExpectRefused({{"l.weight", {4, 2}}}, b.description(),
                {"op 1 (dense 'l')", "groups = 2 needs a conv weight"});
}

// ---- Version 4: products and grouped-query attention ----

// x (4) -> gate (6) -> silu; x -> up (6); gate * up -> down (4): a gated MLP.
TEST(DescribedGraphV4, MultiplyTiesTheGateToTheUpUnitsAsAnAdd) {
  const std::vector<ParamSpec> params =
      Table({{"gate.weight", {6, 4}}, {"up.weight", {6, 4}}, {"down.weight", {4, 6}}});
  ModelDescriptionBuilder b;
  const std::string x = b.Input(4, "x");
  const std::string gate = b.Alias(b.Dense(x, "gate.weight", "", "gate"), "silu");
  const std::string up = b.Dense(x, "up.weight", "", "up");
  b.Dense(b.Multiply(gate, up, "gated"), "down.weight", "", "down");
  EXPECT_EQ(b.description().version, 4);
  const NeuralGraph g = BuildChecked(params, b.description());
  // x 0..3, gate 4..9, up 10..15, down 16..19.
  EXPECT_EQ(g.num_nodes, 20);
  EXPECT_EQ(g.num_edges(), 24 + 6 + 24 + 24 + 20);
  // The ties are written just before up's weight: after gate's 24 edges.
  for (int64_t k = 0; k < 6; ++k) {
    EXPECT_EQ(g.src[24 + k], 4 + k);
    EXPECT_EQ(g.dst[24 + k], 10 + k);
    EXPECT_EQ(g.type[24 + k], kEdgeResidual);
  }
  // down reads up's units (the product stands for them).
  EXPECT_EQ(g.src[24 + 6 + 24], 10);
  EXPECT_EQ(g.dst[24 + 6 + 24], 16);
  // The same description with add gives the same graph.
  ModelDescription with_add = b.description();
  with_add.ops[4].kind = DescriptionOp::Kind::kAdd;
  with_add.version = 1;
  ExpectSameGraph(BuildChecked(params, with_add), g);
}

// d 8, H 4, KV 2 (hd 2): the packed weight (D + 2 D_kv, d) = (16, 8) and split weights (8, 8),
// (4, 8), (4, 8) at the same rows give one graph; so do their biases (16) and (8), (4), (4).
TEST(DescribedGraphV4, PackedAndSplitGroupedQueryAttentionGiveOneGraph) {
  const Shapes packed = {{"w", {16, 8}}, {"b", {16}}, {"o.weight", {8, 8}}};
  const Shapes split = {{"q", {8, 8}}, {"k", {4, 8}}, {"v", {4, 8}},       {"qb", {8}},
                        {"kb", {4}},   {"vb", {4}},   {"o.weight", {8, 8}}};
  // Split rows in the packed order: weights first, then biases, as the packed table has them.
  ModelDescriptionBuilder bp;
  ModelDescription dp;
  {
    const std::string x = bp.Input(8, "x");
    bp.Attention(x, 4, "w", "b", false, "attn");
    dp = bp.description();
    dp.ops[1].kv_heads = 2;
    dp.version = 4;
    DescriptionOp o;
    o.kind = DescriptionOp::Kind::kDense;
    o.output = "o";
    o.inputs = {"attn"};
    o.weight = "o.weight";
    dp.ops.push_back(o);
  }
  ModelDescriptionBuilder bs;
  const std::string x = bs.Input(8, "x");
  ModelDescriptionBuilder::AttentionWeights w{"q", "k", "v", "qb", "kb", "vb", 2};
  bs.Dense(bs.Attention(x, 4, w, "attn"), "o.weight", "", "o");
  const NeuralGraph gp = BuildChecked(Table(packed), dp);
  const NeuralGraph gs = BuildChecked(Table(split), bs.description());
  ExpectSameGraph(gp, gs);
  // x 0..7, heads 8..11, q-bias 12, k-bias 13, v-bias 14 (D_kv = 4 != d: the key bias is on the
  // query group), Q 15..22, V 23..26, per-head outputs 27..34, o 35..42.
  EXPECT_EQ(gs.num_nodes, 43);
  // The key bias: node 13 -> the query units the keys attach to, Q[0, 1] (head 0) and Q[4, 5]
  // (head 2), carrying kb[0..3] in order.
  const std::vector<ParamSpec> params = Table(split);
  std::vector<std::pair<int64_t, int64_t>> kb;
  for (int64_t e = 0; e < gs.num_edges(); ++e) {
    if (gs.param_index[e] >= params[4].offset && gs.param_index[e] < params[4].offset + 4) {
      kb.push_back({gs.src[e], gs.dst[e]});
      EXPECT_EQ(gs.param_index[e], params[4].offset + static_cast<int64_t>(kb.size()) - 1);
    }
  }
  EXPECT_EQ(kb, (std::vector<std::pair<int64_t, int64_t>>{{13, 15}, {13, 16}, {13, 19}, {13, 20}}));
  // o reads the 8 per-head outputs, each tied to its value unit.
  EXPECT_EQ(CountType(gs, kEdgeResidual), 8);
  EXPECT_EQ(CountType(gs, kEdgeHead), 16);
}

// Without grouped-query attention a key bias with D != d (an inner size of its own) joins the
// query units; before version 4 this failed with INTERNAL.
TEST(DescribedGraphV4, AKeyBiasWithMoreKeysThanInputsJoinsTheQueryUnits) {
  const std::vector<ParamSpec> params =
      Table({{"q", {8, 4}}, {"k", {8, 4}}, {"v", {8, 4}}, {"qb", {8}}, {"kb", {8}}, {"vb", {8}}});
  ModelDescriptionBuilder b;
  b.Attention(b.Input(4, "x"), 2, {"q", "k", "v", "qb", "kb", "vb"}, "attn");
  const NeuralGraph g = BuildChecked(params, b.description());
  EXPECT_EQ(b.description().version, 2);
  // x 0..3, heads 4, 5, q-bias 6, k-bias 7, v-bias 8, Q 9..16, V 17..24.
  EXPECT_EQ(g.num_nodes, 25);
  for (int64_t e = 0; e < g.num_edges(); ++e) {
    const int64_t r = g.param_index[e] - params[4].offset;
    if (r < 0 || r >= 8) continue;
    EXPECT_EQ(g.src[e], 7);
    EXPECT_EQ(g.dst[e], 9 + r);
  }
}

TEST(DescribedGraphV4, KvHeadsEqualToHeadsIsTheVersion2Graph) {
  const VitConfig c;
  const Shapes s = VitLayout(c, true);
  const ModelDescription v2 = VitDescription(c, true);
  ModelDescription v4 = v2;
  v4.version = 4;
  for (DescriptionOp& op : v4.ops) {
    if (op.kind == DescriptionOp::Kind::kAttention) op.kv_heads = op.heads;
  }
  ExpectSameGraph(BuildChecked(Table(s), v4), BuildChecked(Table(s), v2));
}

TEST(DescribedGraphV4Errors, RefusalsNameTheOpAndTheWeight) {
  const Shapes gqa = {{"q", {8, 8}}, {"k", {4, 8}}, {"v", {4, 8}}};
  auto attention = [](int64_t kv_heads) {
    ModelDescriptionBuilder b;
    ModelDescriptionBuilder::AttentionWeights w{"q", "k", "v", "", "", "", kv_heads};
    b.Attention(b.Input(8, "x"), 4, w, "attn");
    return b.description();
  };
  // k / v smaller than q without kv_heads: the hint.
  ExpectRefused(
      gqa, attention(0),
      {"op 1 (attention 'attn')", "key 'k' (4, 8) has 4 units", "fewer than the query's 8",
       "grouped-query attention? (then say kv_heads = 2, description version 4)"});
  // kv_heads that does not fit the weights.
  ExpectRefused(
      gqa, attention(1),
      {"op 1 (attention 'attn')", "key 'k' (4, 8) has 4 units; expected 2 (1 of 4 heads)"});
  // kv_heads that does not divide heads (ValidateModelDescription).
  ExpectRefused(gqa, attention(3),
                {"op 1 (attention 'attn')", "kv_heads 3 does not divide heads 4"});
  // A packed weight whose rows are not D + 2 D_kv.
  ModelDescriptionBuilder bp;
  bp.Attention(bp.Input(8, "x"), 4, "w", "", false, "attn");
  ModelDescription packed = bp.description();
  packed.ops[1].kv_heads = 2;
  packed.version = 4;
  ExpectRefused({{"w", {15, 8}}}, packed,
                {"op 1 (attention 'attn')", "weight 'w' has shape (15, 8)",
                 "(D + 2 D_kv, d) with d = 8", "(2 of 4 heads)"});
  // Products of groups of different sizes.
  ModelDescriptionBuilder bm;
  const std::string x = bm.Input(4, "x");
  bm.Multiply(x, bm.Dense(x, "w"), "m");
  ExpectRefused({{"w", {3, 4}}}, bm.description(),
                {"op 2 (multiply 'm')", "differ in size (broadcasting products"});
  // Version 4 in a version-3 description.
  ModelDescription old = bm.description();
  old.version = 3;
  ExpectRefused({{"w", {4, 4}}}, old,
                {"op 2 (multiply 'm')",
                 "multiply is version 4, the "
                 "description says version 3"});
  ModelDescription old_kv = attention(2);
  old_kv.version = 2;
  ExpectRefused(gqa, old_kv,
                {"op 1 (attention 'attn')",
                 "field 'kv_heads' is version 4, the description "
                 "says version 2"});
}

// ---- JSON and the C++ builder ----

void ExpectSameDescription(const ModelDescription& a, const ModelDescription& b) {
  EXPECT_EQ(a.version, b.version);
  ASSERT_EQ(a.ops.size(), b.ops.size());
  for (size_t i = 0; i < a.ops.size(); ++i) {
    const DescriptionOp &x = a.ops[i], &y = b.ops[i];
    EXPECT_EQ(x.kind, y.kind) << i;
    EXPECT_EQ(x.output, y.output) << i;
    EXPECT_EQ(x.inputs, y.inputs) << i;
    EXPECT_EQ(x.weight, y.weight) << i;
    EXPECT_EQ(x.bias, y.bias) << i;
    EXPECT_EQ(x.units, y.units) << i;
    EXPECT_EQ(x.positions, y.positions) << i;
    EXPECT_EQ(x.alias_kind, y.alias_kind) << i;
  }
}

TEST(ModelDescriptionJson, RoundTripsEveryOpKind) {
  for (const ModelDescription& d :
       {LeNetDescription(), ResidualDescription(true, false), ResidualDescription(false, true)}) {
    const std::string json = ModelDescriptionToJson(d);
    absl::StatusOr<ModelDescription> back = ModelDescriptionFromJson(json);
    ASSERT_TRUE(back.ok()) << back.status() << "\n" << json;
    ExpectSameDescription(*back, d);
    EXPECT_EQ(ModelDescriptionToJson(*back), json);
  }
  ModelDescriptionBuilder b;
  const std::string x = b.Input(2, "x");
  b.Norm(b.Concat({b.Dense(x, "a.weight"), b.Dense(x, "b.weight", "b.bias")}), "", "n.bias");
  absl::StatusOr<ModelDescription> back =
      ModelDescriptionFromJson(ModelDescriptionToJson(b.description()));
  ASSERT_TRUE(back.ok()) << back.status();
  ExpectSameDescription(*back, b.description());
}

TEST(ModelDescriptionJson, NamesThatAreNotUtf8AreReplacedNotThrown) {
  ModelDescriptionBuilder b;
  b.Dense(b.Input(2, "x"), "bad\xff.weight", "", "d");
  const std::string json = ModelDescriptionToJson(b.description());
  absl::StatusOr<ModelDescription> back = ModelDescriptionFromJson(json);
  ASSERT_TRUE(back.ok()) << back.status() << "\n" << json;
  EXPECT_EQ(back->ops[1].weight, "bad\xef\xbf\xbd.weight");  // U+FFFD
}

TEST(ModelDescriptionJson, TheBuilderWritesTheLeNetOfTheDocs) {
  const std::string expected = R"({"version": 1, "ops": [
  {"op":"input","output":"x","units":1},
  {"op":"dense","output":"conv1","inputs":["x"],"weight":"conv1.weight","bias":"conv1.bias"},
  {"op":"alias","output":"relu1","inputs":["conv1"],"kind":"relu"},
  {"op":"alias","output":"pool1","inputs":["relu1"],"kind":"max_pool2d"},
  {"op":"dense","output":"conv2","inputs":["pool1"],"weight":"conv2.weight","bias":"conv2.bias"},
  {"op":"alias","output":"relu2","inputs":["conv2"],"kind":"relu"},
  {"op":"alias","output":"pool2","inputs":["relu2"],"kind":"max_pool2d"},
  {"op":"flatten","output":"flatten","inputs":["pool2"],"positions":16},
  {"op":"dense","output":"fc1","inputs":["flatten"],"weight":"fc1.weight","bias":"fc1.bias"},
  {"op":"alias","output":"relu3","inputs":["fc1"],"kind":"relu"},
  {"op":"dense","output":"fc2","inputs":["relu3"],"weight":"fc2.weight","bias":"fc2.bias"},
  {"op":"alias","output":"relu4","inputs":["fc2"],"kind":"relu"},
  {"op":"dense","output":"fc3","inputs":["relu4"],"weight":"fc3.weight","bias":"fc3.bias"}
]}
)";
  EXPECT_EQ(ModelDescriptionToJson(LeNetDescription()), expected);
  absl::StatusOr<ModelDescription> parsed = ModelDescriptionFromJson(expected);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  ExpectSameDescription(*parsed, LeNetDescription());
}

TEST(ModelDescriptionJson, TheDocsExampleParses) {
  // docs/GRAPH_DESCRIPTION.md, "The description (version 1)".
  absl::StatusOr<ModelDescription> d = ModelDescriptionFromJson(R"({"version": 1, "ops": [
    {"op": "input",   "output": "x",     "units": 1},
    {"op": "dense",   "output": "conv1", "inputs": ["x"], "weight": "conv1.weight", "bias": "conv1.bias"},
    {"op": "alias",   "output": "relu",  "inputs": ["conv1"], "kind": "relu"},
    {"op": "alias",   "output": "pool",  "inputs": ["relu"], "kind": "max_pool2d"},
    {"op": "flatten", "output": "flat",  "inputs": ["pool"], "positions": 16},
    {"op": "dense",   "output": "fc1",   "inputs": ["flat"], "weight": "fc1.weight", "bias": "fc1.bias"}
  ]})");
  ASSERT_TRUE(d.ok()) << d.status();
  ASSERT_EQ(d->ops.size(), 6u);
  EXPECT_EQ(d->ops[4].kind, DescriptionOp::Kind::kFlatten);
  EXPECT_EQ(d->ops[4].positions, 16);
  const NeuralGraph g = BuildChecked(Table({{"conv1.weight", {6, 1, 5, 5}},
                                            {"conv1.bias", {6}},
                                            {"fc1.weight", {10, 96}},
                                            {"fc1.bias", {10}}}),
                                     *d);
  EXPECT_EQ(g.num_nodes, 1 + 7 + 96 + 11);
}

TEST(ModelDescriptionJson, RefusalsNameTheOpAndTheField) {
  auto refused = [](const std::string& json, const std::vector<std::string>& mentions) {
    absl::StatusOr<ModelDescription> d = ModelDescriptionFromJson(json);
    ASSERT_FALSE(d.ok()) << json;
    EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
    for (const std::string& m : mentions) {
      EXPECT_NE(d.status().message().find(m), std::string::npos)
          << "'" << m << "' not in: " << d.status().message();
    }
  };
  const std::string x = R"({"op": "input", "output": "x", "units": 3})";
  auto with = [&x](const std::string& op) {
    return R"({"version": 1, "ops": [)" + x + ", " + op + "]}";
  };
  refused("{\"version\": 1, \"ops\": [", {"not JSON"});
  refused("[]", {"JSON object"});
  refused(R"({"version": 5, "ops": []})", {"version: 5", "reads versions 1 to 4"});
  refused(R"({"version": 0, "ops": []})", {"version: 0", "reads versions 1 to 4"});
  refused(R"({"version": "1", "ops": []})", {"'version' must be an integer"});
  refused(R"({"ops": []})", {"missing field 'version'"});
  refused(R"({"version": 1})", {"missing field 'ops'"});
  refused(R"({"version": 1, "ops": [], "name": "x"})", {"unknown field 'name'"});
  refused(R"({"version": 1, "ops": []})", {"no ops"});
  refused(with(R"({"op": "conv", "output": "c", "inputs": ["x"]})"),
          {"op 1 (output 'c')", "unknown op 'conv'", "dense"});
  refused(with(R"({"op": "dense", "output": "c", "inputs": ["x"], "wieght": "c.weight"})"),
          {"op 1 (output 'c')", "unknown field 'wieght'", "weight, bias"});
  refused(with(R"({"op": "dense", "output": "c", "inputs": ["x"]})"),
          {"op 1 (output 'c')", "missing field 'weight'"});
  refused(with(R"({"op": "alias", "output": "r", "kind": "relu"})"),
          {"op 1 (output 'r')", "missing field 'inputs'"});
  refused(with(R"({"op": "input", "output": "y", "units": 3, "inputs": []})"),
          {"op 1 (output 'y')", "unknown field 'inputs'"});
  refused(with(R"({"op": "flatten", "output": "f", "inputs": ["x"], "positions": 2.5})"),
          {"op 1 (output 'f')", "'positions' must be an integer"});
  refused(with(R"({"op": "flatten", "output": "f", "inputs": "x", "positions": 2})"),
          {"op 1 (output 'f')", "'inputs' must be an array"});
  refused(with(R"({"op": "dense", "output": "c", "inputs": ["x"], "weight": 7})"),
          {"op 1 (output 'c')", "'weight' must be a string"});
  refused(with(R"({"output": "c"})"), {"op 1 (output 'c')", "missing 'op'"});
  refused(with("3"), {"op 1", "must be an object"});
  // What the JSON carries correctly but ValidateModelDescription refuses.
  refused(with(R"({"op": "add", "output": "s", "inputs": ["x", "y"]})"),
          {"op 1 (add 's')", "input 'y'"});
}

TEST(ModelDescriptionBuilder, GeneratesUnusedGroupNames) {
  ModelDescriptionBuilder b;
  const std::string g1 = b.Input(3, "g1");
  const std::string a = b.Dense(g1, "w");    // g0
  const std::string c = b.Alias(a, "relu");  // g1 is taken: g2
  EXPECT_EQ(a, "g0");
  EXPECT_EQ(c, "g2");
  EXPECT_TRUE(ValidateModelDescription(b.description()).ok());
  EXPECT_EQ(b.description().ops[1].inputs, std::vector<std::string>{"g1"});
}

}  // namespace
}  // namespace nino
