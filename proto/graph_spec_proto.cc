#include "proto/graph_spec_proto.h"

#include <memory>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status/status_macros.h"

namespace nino::wire {
namespace {

using OpKind = DescriptionOp::Kind;

constexpr OpKind kOpKinds[] = {
    OpKind::kInput, OpKind::kDense,  OpKind::kNorm,      OpKind::kAlias,     OpKind::kFlatten,
    OpKind::kAdd,   OpKind::kConcat, OpKind::kEmbedding, OpKind::kAttention, OpKind::kMultiply};

constexpr char kDescribedKind[] = "described";

absl::StatusOr<OpKind> ParseOpKind(const std::string& name) {
  std::string known;
  for (OpKind kind : kOpKinds) {
    if (DescriptionOpKindName(kind) == name) return kind;
    absl::StrAppend(&known, known.empty() ? "" : ", ", DescriptionOpKindName(kind));
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown op '", name, "' (known: ", known, ")"));
}

absl::StatusOr<DescriptionOp> OpFromProto(const v1::DescriptionOp& proto) {
  absl::StatusOr<OpKind> kind = ParseOpKind(proto.op());
  if (!kind.ok()) return kind.status();
  DescriptionOp op;
  op.kind = *kind;
  op.output = proto.output();
  op.inputs.assign(proto.inputs().begin(), proto.inputs().end());
  op.weight = proto.weight();
  op.bias = proto.bias();
  op.units = proto.units();
  op.positions = proto.positions();
  op.alias_kind = proto.kind();
  op.transposed = proto.transposed();
  op.heads = proto.heads();
  op.query = proto.query();
  op.key = proto.key();
  op.value = proto.value();
  op.query_bias = proto.query_bias();
  op.key_bias = proto.key_bias();
  op.value_bias = proto.value_bias();
  op.groups = proto.groups() == 0 ? 1 : proto.groups();  // unset = 1
  op.kv_heads = proto.kv_heads();                        // unset = 0 = heads
  return op;
}

void OpToProto(const DescriptionOp& op, v1::DescriptionOp* proto) {
  proto->set_op(DescriptionOpKindName(op.kind));
  proto->set_output(op.output);
  for (const std::string& input : op.inputs) proto->add_inputs(input);
  proto->set_weight(op.weight);
  proto->set_bias(op.bias);
  proto->set_units(op.units);
  proto->set_positions(op.positions);
  proto->set_kind(op.alias_kind);
  proto->set_transposed(op.transposed);
  proto->set_heads(op.heads);
  proto->set_query(op.query);
  proto->set_key(op.key);
  proto->set_value(op.value);
  proto->set_query_bias(op.query_bias);
  proto->set_key_bias(op.key_bias);
  proto->set_value_bias(op.value_bias);
  if (op.groups != 1) proto->set_groups(op.groups);
  proto->set_kv_heads(op.kv_heads);
}

}  // namespace

absl::StatusOr<ModelDescription> ModelDescriptionFromProto(const v1::ModelDescription& proto) {
  // Before the ops, whose meaning it sets.
  if (proto.version() < kMinModelDescriptionVersion || proto.version() > kModelDescriptionVersion) {
    return absl::InvalidArgumentError(
        absl::StrCat("version: ", proto.version(), ", this reader reads versions ",
                     kMinModelDescriptionVersion, " to ", kModelDescriptionVersion));
  }
  ModelDescription description;
  description.version = proto.version();
  description.ops.reserve(proto.ops_size());
  for (int i = 0; i < proto.ops_size(); ++i) {
    absl::StatusOr<DescriptionOp> op = OpFromProto(proto.ops(i));
    if (!op.ok()) {  // named as DescriptionOpLabel would, without the kind it lacks
      return absl::InvalidArgumentError(absl::StrCat("op ", i, " (output '", proto.ops(i).output(),
                                                     "'): ", op.status().message()));
    }
    description.ops.push_back(std::move(*op));
  }
  NINO_RETURN_IF_ERROR(ValidateModelDescription(description));  // as the JSON reader does
  return description;
}

void ModelDescriptionToProto(const ModelDescription& description, v1::ModelDescription* proto) {
  proto->Clear();
  proto->set_version(description.version);
  for (const DescriptionOp& op : description.ops) OpToProto(op, proto->add_ops());
}

absl::StatusOr<GraphSpec> GraphSpecFromProto(const v1::GraphSpec& proto) {
  const std::string kind = proto.kind().empty() ? "generic" : proto.kind();
  if (kind != kDescribedKind) {
    if (proto.has_description()) {
      return absl::InvalidArgumentError(absl::StrCat("description: given with kind '", kind,
                                                     "', which does not read one (use kind '",
                                                     kDescribedKind, "')"));
    }
    return ParseGraphKind(kind, proto.num_heads(), proto.num_kv_heads());  // names the kind
  }
  if (!proto.has_description() || proto.description().ops_size() == 0) {
    return absl::InvalidArgumentError(
        "description: kind 'described' needs a model description with at least one op");
  }
  absl::StatusOr<ModelDescription> description = ModelDescriptionFromProto(proto.description());
  if (!description.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("description: ", description.status().message()));
  }
  return ParseGraphKind(kind, proto.num_heads(), proto.num_kv_heads(),
                        std::make_shared<const ModelDescription>(std::move(*description)));
}

void GraphSpecToProto(const GraphSpec& spec, v1::GraphSpec* proto) {
  proto->Clear();
  proto->set_kind(GraphKindName(spec.kind));
  proto->set_num_heads(spec.num_heads);
  proto->set_num_kv_heads(spec.num_kv_heads);
  if (spec.kind == GraphSpec::Kind::kDescribed && spec.description != nullptr) {
    ModelDescriptionToProto(*spec.description, proto->mutable_description());
  }
}

}  // namespace nino::wire
