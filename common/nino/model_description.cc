#include "common/nino/model_description.h"

#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status/status_macros.h"

namespace nino {
namespace {

using Kind = DescriptionOp::Kind;
using Json = nlohmann::json;

constexpr Kind kKinds[] = {Kind::kInput,   Kind::kDense, Kind::kNorm,  Kind::kAlias,
                           Kind::kFlatten, Kind::kAdd,   Kind::kConcat};

// What each kind of op reads (docs/GRAPH_DESCRIPTION.md, the op table).
struct OpFields {
  int min_inputs = 1, max_inputs = 1;  // max -1: unbounded
  bool units = false, weight = false, bias = false, positions = false, alias_kind = false;
};

OpFields FieldsOf(Kind kind) {
  OpFields f;
  switch (kind) {
    case Kind::kInput:
      f.min_inputs = f.max_inputs = 0;
      f.units = true;
      break;
    case Kind::kDense:
    case Kind::kNorm:
      f.weight = f.bias = true;
      break;
    case Kind::kAlias:
      f.alias_kind = true;
      break;
    case Kind::kFlatten:
      f.positions = true;
      break;
    case Kind::kAdd:
      f.min_inputs = f.max_inputs = 2;
      break;
    case Kind::kConcat:
      f.min_inputs = 2;
      f.max_inputs = -1;
      break;
  }
  return f;
}

std::string KnownKinds() {
  std::vector<std::string> names;
  for (Kind k : kKinds) names.push_back(DescriptionOpKindName(k));
  return absl::StrJoin(names, ", ");
}

// The JSON keys an op of `kind` may carry.
std::vector<std::string> JsonKeysOf(Kind kind) {
  const OpFields f = FieldsOf(kind);
  std::vector<std::string> keys = {"op", "output"};
  if (f.max_inputs != 0) keys.push_back("inputs");
  if (f.units) keys.push_back("units");
  if (f.weight) keys.push_back("weight");
  if (f.bias) keys.push_back("bias");
  if (f.positions) keys.push_back("positions");
  if (f.alias_kind) keys.push_back("kind");
  return keys;
}

absl::Status OpError(size_t index, const DescriptionOp& op, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(DescriptionOpLabel(index, op), ": ", what));
}

// Fields the op's kind does not read must be empty / 0 (a set one means a misunderstanding).
absl::Status CheckUnreadFields(size_t index, const DescriptionOp& op, const OpFields& f) {
  auto unread = [&](const char* field) {
    return OpError(index, op,
                   absl::StrCat("field '", field, "' does not apply to ",
                                DescriptionOpKindName(op.kind), " ops"));
  };
  if (!f.units && op.units != 0) return unread("units");
  if (!f.weight && !op.weight.empty()) return unread("weight");
  if (!f.bias && !op.bias.empty()) return unread("bias");
  if (!f.positions && op.positions != 0) return unread("positions");
  if (!f.alias_kind && !op.alias_kind.empty()) return unread("kind");
  return absl::OkStatus();
}

absl::Status CheckReadFields(size_t index, const DescriptionOp& op, const OpFields& f) {
  if (f.units && op.units < 1) {
    return OpError(index, op, absl::StrCat("units must be >= 1, got ", op.units));
  }
  if (f.positions && op.positions < 1) {
    return OpError(index, op, absl::StrCat("positions must be >= 1, got ", op.positions));
  }
  if (f.alias_kind && op.alias_kind.empty()) return OpError(index, op, "missing field 'kind'");
  if (op.kind == Kind::kDense && op.weight.empty()) {
    return OpError(index, op, "missing field 'weight'");
  }
  if (op.kind == Kind::kNorm && op.weight.empty() && op.bias.empty()) {
    return OpError(index, op, "a norm op needs a 'weight' (gain) and/or a 'bias' (shift)");
  }
  return absl::OkStatus();
}

absl::Status CheckInputs(size_t index, const DescriptionOp& op, const OpFields& f,
                         const std::set<std::string>& earlier) {
  const int n = static_cast<int>(op.inputs.size());
  if (n < f.min_inputs || (f.max_inputs >= 0 && n > f.max_inputs)) {
    const std::string expected =
        f.max_inputs < 0
            ? absl::StrCat("at least ", f.min_inputs)
            : absl::StrCat(f.min_inputs == f.max_inputs ? "" : "at most ", f.max_inputs);
    return OpError(index, op, absl::StrCat("takes ", expected, " input group(s), got ", n));
  }
  for (const std::string& in : op.inputs) {
    if (!earlier.count(in)) {
      return OpError(index, op,
                     absl::StrCat("input '", in, "' is not the output of an earlier op"));
    }
  }
  return absl::OkStatus();
}

// ---- JSON ----

absl::StatusOr<std::string> JsonString(const Json& j, const char* key, absl::string_view where) {
  const Json& v = j.at(key);
  if (!v.is_string()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": field '", key, "' must be a string, got ", v.dump()));
  }
  return v.get<std::string>();
}

absl::StatusOr<int64_t> JsonInt(const Json& j, const char* key, absl::string_view where) {
  const Json& v = j.at(key);
  const bool too_big =
      v.is_number_unsigned() &&
      v.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  if (!v.is_number_integer() || too_big) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": field '", key, "' must be an integer, got ", v.dump()));
  }
  return v.get<int64_t>();
}

absl::StatusOr<std::vector<std::string>> JsonStrings(const Json& j, const char* key,
                                                     absl::string_view where) {
  const Json& v = j.at(key);
  std::vector<std::string> out;
  if (v.is_array()) {
    for (const Json& e : v) {
      if (!e.is_string()) break;
      out.push_back(e.get<std::string>());
    }
  }
  if (!v.is_array() || out.size() != v.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": field '", key, "' must be an array of group names, got ", v.dump()));
  }
  return out;
}

absl::StatusOr<Kind> ParseKind(const Json& j, absl::string_view where) {
  if (!j.contains("op")) return absl::InvalidArgumentError(absl::StrCat(where, ": missing 'op'"));
  NINO_ASSIGN_OR_RETURN(const std::string name, JsonString(j, "op", where));
  for (Kind k : kKinds) {
    if (DescriptionOpKindName(k) == name) return k;
  }
  return absl::InvalidArgumentError(
      absl::StrCat(where, ": unknown op '", name, "' (known: ", KnownKinds(), ")"));
}

// Missing required keys (the ones ValidateModelDescription cannot tell from an empty value) and
// keys the op's kind does not read.
absl::Status CheckJsonKeys(const Json& j, Kind kind, absl::string_view where) {
  const std::vector<std::string> allowed = JsonKeysOf(kind);
  for (const auto& item : j.items()) {
    bool known = false;
    for (const std::string& k : allowed) known = known || k == item.key();
    if (!known) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": unknown field '", item.key(), "' (a ", DescriptionOpKindName(kind),
                       " op has ", absl::StrJoin(allowed, ", "), ")"));
    }
  }
  for (const std::string& k : allowed) {
    const bool optional = k == "bias" || (kind == Kind::kNorm && k == "weight");
    if (!optional && !j.contains(k)) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": missing field '", k, "'"));
    }
  }
  return absl::OkStatus();
}

// The op's fields that `j` carries (CheckJsonKeys has refused the ones its kind does not read).
absl::Status ReadOpFields(const Json& j, absl::string_view where, DescriptionOp* op) {
  auto read_string = [&](const char* key, std::string* field) -> absl::Status {
    if (j.contains(key)) {
      NINO_ASSIGN_OR_RETURN(*field, JsonString(j, key, where));
    }
    return absl::OkStatus();
  };
  auto read_int = [&](const char* key, int64_t* field) -> absl::Status {
    if (j.contains(key)) {
      NINO_ASSIGN_OR_RETURN(*field, JsonInt(j, key, where));
    }
    return absl::OkStatus();
  };
  NINO_RETURN_IF_ERROR(read_string("output", &op->output));
  NINO_RETURN_IF_ERROR(read_string("weight", &op->weight));
  NINO_RETURN_IF_ERROR(read_string("bias", &op->bias));
  NINO_RETURN_IF_ERROR(read_string("kind", &op->alias_kind));
  NINO_RETURN_IF_ERROR(read_int("units", &op->units));
  NINO_RETURN_IF_ERROR(read_int("positions", &op->positions));
  if (j.contains("inputs")) {
    NINO_ASSIGN_OR_RETURN(op->inputs, JsonStrings(j, "inputs", where));
  }
  return absl::OkStatus();
}

absl::StatusOr<DescriptionOp> OpFromJson(const Json& j, size_t index) {
  std::string where = absl::StrCat("op ", index);
  if (!j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": must be an object, got ", j.dump()));
  }
  if (j.contains("output") && j.at("output").is_string()) {
    absl::StrAppend(&where, " (output '", j.at("output").get<std::string>(), "')");
  }
  DescriptionOp op;
  NINO_ASSIGN_OR_RETURN(op.kind, ParseKind(j, where));
  NINO_RETURN_IF_ERROR(CheckJsonKeys(j, op.kind, where));
  NINO_RETURN_IF_ERROR(ReadOpFields(j, where, &op));
  return op;
}

absl::Status CheckTopLevel(const Json& j) {
  if (!j.is_object()) {
    return absl::InvalidArgumentError(
        "a model description is a JSON object {\"version\", \"ops\"}");
  }
  for (const auto& item : j.items()) {
    if (item.key() != "version" && item.key() != "ops") {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown field '", item.key(), "' (a model description has version, ops)"));
    }
  }
  if (!j.contains("version")) return absl::InvalidArgumentError("missing field 'version'");
  if (!j.contains("ops")) return absl::InvalidArgumentError("missing field 'ops'");
  if (!j.at("ops").is_array()) return absl::InvalidArgumentError("field 'ops' must be an array");
  return absl::OkStatus();
}

absl::Status CheckVersion(int64_t version) {
  if (version != kModelDescriptionVersion) {
    return absl::InvalidArgumentError(absl::StrCat(
        "version: ", version, ", this reader reads version ", kModelDescriptionVersion));
  }
  return absl::OkStatus();
}

nlohmann::ordered_json OpToJson(const DescriptionOp& op) {
  const OpFields f = FieldsOf(op.kind);
  nlohmann::ordered_json j;
  j["op"] = DescriptionOpKindName(op.kind);
  j["output"] = op.output;
  if (f.max_inputs != 0) j["inputs"] = op.inputs;
  if (f.units) j["units"] = op.units;
  if (f.weight && !op.weight.empty()) j["weight"] = op.weight;
  if (f.bias && !op.bias.empty()) j["bias"] = op.bias;
  if (f.positions) j["positions"] = op.positions;
  if (f.alias_kind) j["kind"] = op.alias_kind;
  return j;
}

}  // namespace

std::string DescriptionOpKindName(DescriptionOp::Kind kind) {
  switch (kind) {
    case Kind::kInput:
      return "input";
    case Kind::kDense:
      return "dense";
    case Kind::kNorm:
      return "norm";
    case Kind::kAlias:
      return "alias";
    case Kind::kFlatten:
      return "flatten";
    case Kind::kAdd:
      return "add";
    case Kind::kConcat:
      return "concat";
  }
  return "unknown";
}

std::string DescriptionOpLabel(size_t index, const DescriptionOp& op) {
  return absl::StrCat("op ", index, " (", DescriptionOpKindName(op.kind), " '", op.output, "')");
}

absl::Status ValidateModelDescription(const ModelDescription& description) {
  NINO_RETURN_IF_ERROR(CheckVersion(description.version));
  if (description.ops.empty()) return absl::InvalidArgumentError("the description has no ops");
  std::set<std::string> earlier;
  for (size_t i = 0; i < description.ops.size(); ++i) {
    const DescriptionOp& op = description.ops[i];
    const OpFields f = FieldsOf(op.kind);
    if (op.output.empty()) return OpError(i, op, "missing field 'output'");
    if (earlier.count(op.output)) {
      return OpError(i, op, absl::StrCat("output '", op.output, "' is already a group"));
    }
    NINO_RETURN_IF_ERROR(CheckInputs(i, op, f, earlier));
    NINO_RETURN_IF_ERROR(CheckUnreadFields(i, op, f));
    NINO_RETURN_IF_ERROR(CheckReadFields(i, op, f));
    earlier.insert(op.output);
  }
  return absl::OkStatus();
}

absl::StatusOr<ModelDescription> ModelDescriptionFromJson(const std::string& json) {
  Json j;
  try {
    j = Json::parse(json);
  } catch (const Json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("model description: not JSON: ", e.what()));
  }
  NINO_RETURN_IF_ERROR(CheckTopLevel(j));
  ModelDescription d;
  NINO_ASSIGN_OR_RETURN(d.version, JsonInt(j, "version", "model description"));
  NINO_RETURN_IF_ERROR(CheckVersion(d.version));
  const Json& ops = j.at("ops");
  for (size_t i = 0; i < ops.size(); ++i) {
    NINO_ASSIGN_OR_RETURN(DescriptionOp op, OpFromJson(ops[i], i));
    d.ops.push_back(std::move(op));
  }
  NINO_RETURN_IF_ERROR(ValidateModelDescription(d));
  return d;
}

std::string ModelDescriptionToJson(const ModelDescription& description) {
  std::string out = absl::StrCat("{\"version\": ", description.version, ", \"ops\": [");
  for (size_t i = 0; i < description.ops.size(); ++i) {
    // Names that are not UTF-8 (only C++ callers can make them) are written with U+FFFD
    // instead of throwing.
    const std::string op =
        OpToJson(description.ops[i]).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    absl::StrAppend(&out, i == 0 ? "\n  " : ",\n  ", op);
  }
  absl::StrAppend(&out, "\n]}\n");
  return out;
}

// ---- ModelDescriptionBuilder ----

std::string ModelDescriptionBuilder::NameOr(std::string name) {
  if (!name.empty()) return name;
  auto used = [this](const std::string& n) {
    for (const DescriptionOp& op : description_.ops) {
      if (op.output == n) return true;
    }
    return false;
  };
  do {
    name = absl::StrCat("g", next_++);
  } while (used(name));
  return name;
}

std::string ModelDescriptionBuilder::Input(int64_t units, std::string name) {
  DescriptionOp op;
  op.kind = Kind::kInput;
  op.output = NameOr(std::move(name));
  op.units = units;
  description_.ops.push_back(op);
  return op.output;
}

std::string ModelDescriptionBuilder::Dense(const std::string& input, std::string weight,
                                           std::string bias, std::string name) {
  DescriptionOp op;
  op.kind = Kind::kDense;
  op.output = NameOr(std::move(name));
  op.inputs = {input};
  op.weight = std::move(weight);
  op.bias = std::move(bias);
  description_.ops.push_back(op);
  return op.output;
}

std::string ModelDescriptionBuilder::Norm(const std::string& input, std::string weight,
                                          std::string bias, std::string name) {
  DescriptionOp op;
  op.kind = Kind::kNorm;
  op.output = NameOr(std::move(name));
  op.inputs = {input};
  op.weight = std::move(weight);
  op.bias = std::move(bias);
  description_.ops.push_back(op);
  return op.output;
}

std::string ModelDescriptionBuilder::Alias(const std::string& input, std::string alias_kind,
                                           std::string name) {
  DescriptionOp op;
  op.kind = Kind::kAlias;
  op.output = NameOr(std::move(name));
  op.inputs = {input};
  op.alias_kind = std::move(alias_kind);
  description_.ops.push_back(op);
  return op.output;
}

std::string ModelDescriptionBuilder::Flatten(const std::string& input, int64_t positions,
                                             std::string name) {
  DescriptionOp op;
  op.kind = Kind::kFlatten;
  op.output = NameOr(std::move(name));
  op.inputs = {input};
  op.positions = positions;
  description_.ops.push_back(op);
  return op.output;
}

std::string ModelDescriptionBuilder::Add(const std::string& a, const std::string& b,
                                         std::string name) {
  DescriptionOp op;
  op.kind = Kind::kAdd;
  op.output = NameOr(std::move(name));
  op.inputs = {a, b};
  description_.ops.push_back(op);
  return op.output;
}

std::string ModelDescriptionBuilder::Concat(std::vector<std::string> inputs, std::string name) {
  DescriptionOp op;
  op.kind = Kind::kConcat;
  op.output = NameOr(std::move(name));
  op.inputs = std::move(inputs);
  description_.ops.push_back(op);
  return op.output;
}

}  // namespace nino
