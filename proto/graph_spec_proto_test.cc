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
  ExpectRefused(unknown_op, "known: input, dense, norm, alias, flatten, add, concat");

  v1::GraphSpec version2 = good;
  version2.mutable_description()->set_version(2);
  ExpectRefused(version2, "description: version: 2, this reader reads version 1");
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
