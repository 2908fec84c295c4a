// GraphSpec / ModelDescription through nino.v1 and back: every field survives, and what the
// message alone decides (kind, version, op names, a description where one belongs) is refused
// with the field named.
#include "proto/graph_spec_proto.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "common/nino/model_description.h"

namespace nino::wire {
namespace {

// A LeNet-5 style CNN as a C++ user describes it.
ModelDescription LeNet() {
  ModelDescriptionBuilder b;
  std::string x = b.Input(1, "x");
  x = b.Dense(x, "conv1.weight", "conv1.bias", "conv1");
  x = b.Alias(x, "relu");
  x = b.Alias(x, "max_pool2d");
  x = b.Dense(x, "conv2.weight", "conv2.bias");
  x = b.Alias(x, "max_pool2d");
  x = b.Flatten(x, 16, "flat");
  x = b.Dense(x, "fc1.weight", "fc1.bias");
  x = b.Norm(x, "ln.weight", "ln.bias");
  std::string y = b.Dense(x, "fc2.weight");
  x = b.Add(x, y);
  x = b.Concat({x, y});
  return b.description();
}

GraphSpec Described(ModelDescription d) {
  GraphSpec spec;
  spec.kind = GraphSpec::Kind::kDescribed;
  spec.description = std::make_shared<const ModelDescription>(std::move(d));
  return spec;
}

TEST(GraphSpecProto, ADescriptionSurvivesTheRoundTripFieldForField) {
  const ModelDescription lenet = LeNet();
  v1::GraphSpec proto;
  GraphSpecToProto(Described(lenet), &proto);
  EXPECT_EQ(proto.kind(), "described");
  ASSERT_EQ(proto.description().version(), 1);
  ASSERT_EQ(proto.description().ops_size(), static_cast<int>(lenet.ops.size()));
  // The wire fields themselves, as the contract names them.
  const v1::DescriptionOp& input = proto.description().ops(0);
  EXPECT_EQ(input.op(), "input");
  EXPECT_EQ(input.output(), "x");
  EXPECT_EQ(input.units(), 1);
  const v1::DescriptionOp& conv1 = proto.description().ops(1);
  EXPECT_EQ(conv1.op(), "dense");
  EXPECT_EQ(conv1.output(), "conv1");
  ASSERT_EQ(conv1.inputs_size(), 1);
  EXPECT_EQ(conv1.inputs(0), "x");
  EXPECT_EQ(conv1.weight(), "conv1.weight");
  EXPECT_EQ(conv1.bias(), "conv1.bias");
  EXPECT_EQ(proto.description().ops(2).kind(), "relu");
  EXPECT_EQ(proto.description().ops(6).op(), "flatten");
  EXPECT_EQ(proto.description().ops(6).positions(), 16);
  EXPECT_EQ(proto.description().ops(8).op(), "norm");
  EXPECT_EQ(proto.description().ops(10).op(), "add");
  EXPECT_EQ(proto.description().ops(11).op(), "concat");
  EXPECT_EQ(proto.description().ops(11).inputs_size(), 2);

  absl::StatusOr<GraphSpec> back = GraphSpecFromProto(proto);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->kind, GraphSpec::Kind::kDescribed);
  ASSERT_NE(back->description, nullptr);
  EXPECT_EQ(ModelDescriptionToJson(*back->description), ModelDescriptionToJson(lenet));
  for (size_t i = 0; i < lenet.ops.size(); ++i) {
    const DescriptionOp& a = lenet.ops[i];
    const DescriptionOp& b = back->description->ops[i];
    EXPECT_EQ(a.kind, b.kind) << i;
    EXPECT_EQ(a.output, b.output) << i;
    EXPECT_EQ(a.inputs, b.inputs) << i;
    EXPECT_EQ(a.weight, b.weight) << i;
    EXPECT_EQ(a.bias, b.bias) << i;
    EXPECT_EQ(a.units, b.units) << i;
    EXPECT_EQ(a.positions, b.positions) << i;
    EXPECT_EQ(a.alias_kind, b.alias_kind) << i;
  }
}

// Version 2: embeddings, packed transposed attention, a transposed dense, split attention.
ModelDescription Version2() {
  ModelDescriptionBuilder b;
  std::string x = b.Embedding("wte.weight", "token", "", "wte");
  x = b.Embedding("wpe.weight", "position", x, "wpe");
  std::string h = b.Attention(x, 2, "c_attn.weight", "c_attn.bias", true, "attn");
  x = b.Add(x, b.DenseTransposed(h, "c_proj.weight", "c_proj.bias", "proj"));
  h = b.Attention(x, 4, {"q.weight", "k.weight", "v.weight", "q.bias", "k.bias", "v.bias"},
                  "split");
  b.Dense(h, "o.weight");
  return b.description();
}

TEST(GraphSpecProto, Version2FieldsSurviveTheRoundTrip) {
  const ModelDescription d = Version2();
  v1::GraphSpec proto;
  GraphSpecToProto(Described(d), &proto);
  EXPECT_EQ(proto.description().version(), 2);
  const v1::DescriptionOp& wpe = proto.description().ops(1);
  EXPECT_EQ(wpe.op(), "embedding");
  EXPECT_EQ(wpe.kind(), "position");
  ASSERT_EQ(wpe.inputs_size(), 1);
  const v1::DescriptionOp& attn = proto.description().ops(2);
  EXPECT_EQ(attn.op(), "attention");
  EXPECT_EQ(attn.heads(), 2);
  EXPECT_TRUE(attn.transposed());
  EXPECT_EQ(attn.weight(), "c_attn.weight");
  EXPECT_TRUE(proto.description().ops(3).transposed());  // the dense c_proj
  const v1::DescriptionOp& split = proto.description().ops(5);
  EXPECT_EQ(split.query(), "q.weight");
  EXPECT_EQ(split.key(), "k.weight");
  EXPECT_EQ(split.value(), "v.weight");
  EXPECT_EQ(split.query_bias(), "q.bias");
  EXPECT_EQ(split.key_bias(), "k.bias");
  EXPECT_EQ(split.value_bias(), "v.bias");
  EXPECT_FALSE(split.transposed());
  absl::StatusOr<GraphSpec> back = GraphSpecFromProto(proto);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->description->version, 2);
  EXPECT_EQ(ModelDescriptionToJson(*back->description), ModelDescriptionToJson(d));
  for (size_t i = 0; i < d.ops.size(); ++i) {
    const DescriptionOp& a = d.ops[i];
    const DescriptionOp& b = back->description->ops[i];
    EXPECT_EQ(a.transposed, b.transposed) << i;
    EXPECT_EQ(a.heads, b.heads) << i;
    EXPECT_EQ(a.query, b.query) << i;
    EXPECT_EQ(a.key, b.key) << i;
    EXPECT_EQ(a.value, b.value) << i;
    EXPECT_EQ(a.query_bias, b.query_bias) << i;
    EXPECT_EQ(a.key_bias, b.key_bias) << i;
    EXPECT_EQ(a.value_bias, b.value_bias) << i;
    EXPECT_EQ(a.alias_kind, b.alias_kind) << i;
  }
}

TEST(GraphSpecProto, GroupsSurviveTheRoundTripAndUnsetMeansOne) {
  ModelDescriptionBuilder b;
  const std::string dw = b.GroupedConv(b.Input(8, "x"), 8, "dw.weight", "dw.bias", "dw");
  b.Dense(dw, "pw.weight", "", "pw");
  v1::GraphSpec proto;
  GraphSpecToProto(Described(b.description()), &proto);
  EXPECT_EQ(proto.description().version(), 3);
  EXPECT_EQ(proto.description().ops(1).groups(), 8);
  EXPECT_EQ(proto.description().ops(2).groups(), 0);  // 1 is left unset on the wire
  absl::StatusOr<GraphSpec> back = GraphSpecFromProto(proto);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->description->version, 3);
  EXPECT_EQ(back->description->ops[1].groups, 8);
  EXPECT_EQ(back->description->ops[2].groups, 1);
  EXPECT_EQ(ModelDescriptionToJson(*back->description), ModelDescriptionToJson(b.description()));
  // A version-2 message with groups is refused as the JSON form refuses it.
  v1::GraphSpec v2 = proto;
  v2.mutable_description()->set_version(2);
  absl::StatusOr<GraphSpec> refused = GraphSpecFromProto(v2);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("field 'groups' is version 3"), std::string::npos)
      << refused.status();
}

TEST(GraphSpecProto, KvHeadsAndMultiplySurviveTheRoundTrip) {
  ModelDescriptionBuilder b;
  ModelDescriptionBuilder::AttentionWeights w{"q", "k", "v", "", "", "", 2};
  const std::string a = b.Attention(b.Input(8, "x"), 4, w, "attn");
  b.Multiply(a, b.Dense(a, "o.weight", "", "o"), "m");
  v1::GraphSpec proto;
  GraphSpecToProto(Described(b.description()), &proto);
  EXPECT_EQ(proto.description().version(), 4);
  EXPECT_EQ(proto.description().ops(1).kv_heads(), 2);
  EXPECT_EQ(proto.description().ops(2).kv_heads(), 0);
  EXPECT_EQ(proto.description().ops(3).op(), "multiply");
  absl::StatusOr<GraphSpec> back = GraphSpecFromProto(proto);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->description->ops[1].kv_heads, 2);
  EXPECT_EQ(back->description->ops[3].kind, DescriptionOp::Kind::kMultiply);
  EXPECT_EQ(ModelDescriptionToJson(*back->description), ModelDescriptionToJson(b.description()));
  v1::GraphSpec v3 = proto;
  v3.mutable_description()->set_version(3);
  absl::StatusOr<GraphSpec> refused = GraphSpecFromProto(v3);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("field 'kv_heads' is version 4"), std::string::npos)
      << refused.status();
}

TEST(GraphSpecProto, NameBasedKindsCarryNoDescription) {
  GraphSpec gpt2;
  gpt2.kind = GraphSpec::Kind::kGpt2;
  gpt2.num_heads = 4;
  v1::GraphSpec proto;
  GraphSpecToProto(gpt2, &proto);
  EXPECT_EQ(proto.kind(), "gpt2");
  EXPECT_EQ(proto.num_heads(), 4);
  EXPECT_FALSE(proto.has_description());
  absl::StatusOr<GraphSpec> back = GraphSpecFromProto(proto);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->kind, GraphSpec::Kind::kGpt2);
  EXPECT_EQ(back->num_heads, 4);
  EXPECT_EQ(back->description, nullptr);

  absl::StatusOr<GraphSpec> empty = GraphSpecFromProto(v1::GraphSpec());
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_EQ(empty->kind, GraphSpec::Kind::kGeneric) << "kind \"\" is generic";
}

void ExpectRefused(const v1::GraphSpec& proto, const std::string& want) {
  absl::StatusOr<GraphSpec> spec = GraphSpecFromProto(proto);
  ASSERT_FALSE(spec.ok()) << "accepted: " << proto.ShortDebugString();
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument) << spec.status();
  EXPECT_NE(spec.status().message().find(want), std::string::npos)
      << "'" << spec.status().message() << "' does not say '" << want << "'";
}

TEST(GraphSpecProto, WhatTheMessageAloneDecidesIsRefusedByField) {
  v1::GraphSpec good;
  GraphSpecToProto(Described(LeNet()), &good);

  v1::GraphSpec unknown_op = good;
  unknown_op.mutable_description()->mutable_ops(1)->set_op("conv2d");
  ExpectRefused(unknown_op, "description: op 1 (output 'conv1'): unknown op 'conv2d'");
  ExpectRefused(unknown_op,
                "known: input, dense, norm, alias, flatten, add, concat, embedding, "
                "attention, multiply");

  v1::GraphSpec version5 = good;
  version5.mutable_description()->set_version(5);
  ExpectRefused(version5, "description: version: 5, this reader reads versions 1 to 4");
  // Version 1 does not say version-2 ops or fields.
  v1::GraphSpec v1_attention;
  GraphSpecToProto(Described(Version2()), &v1_attention);
  v1_attention.mutable_description()->set_version(1);
  ExpectRefused(v1_attention,
                "description: op 0 (embedding 'wte'): embedding is version 2, the description "
                "says version 1");
  v1::GraphSpec v1_transposed = good;
  v1_transposed.mutable_description()->mutable_ops(1)->set_transposed(true);
  ExpectRefused(v1_transposed, "op 1 (dense 'conv1'): field 'transposed' is version 2");
  v1::GraphSpec heads_on_dense = good;
  heads_on_dense.mutable_description()->set_version(2);
  heads_on_dense.mutable_description()->mutable_ops(1)->set_heads(2);
  ExpectRefused(heads_on_dense, "op 1 (dense 'conv1'): field 'heads' does not apply");
  v1::GraphSpec unversioned = good;
  unversioned.mutable_description()->clear_version();
  ExpectRefused(unversioned, "description: version: 0");

  // The JSON reader's checks (ValidateModelDescription), on the wire form too.
  v1::GraphSpec unread_field = good;
  unread_field.mutable_description()->mutable_ops(1)->set_units(6);
  ExpectRefused(unread_field, "description: op 1 (dense 'conv1')");
  v1::GraphSpec unknown_group = good;
  unknown_group.mutable_description()->mutable_ops(4)->set_inputs(0, "nowhere");
  ExpectRefused(unknown_group, "nowhere");

  v1::GraphSpec no_description;
  no_description.set_kind("described");
  ExpectRefused(no_description, "kind 'described' needs a model description");
  v1::GraphSpec no_ops = no_description;
  no_ops.mutable_description()->set_version(1);
  ExpectRefused(no_ops, "at least one op");

  v1::GraphSpec stray = good;
  stray.set_kind("generic");
  ExpectRefused(stray, "description: given with kind 'generic'");

  v1::GraphSpec bad_kind;
  bad_kind.set_kind("rnn");
  ExpectRefused(bad_kind, "unknown graph kind 'rnn'");
}

}  // namespace
}  // namespace nino::wire
