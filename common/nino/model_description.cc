#include "common/nino/model_description.h"

#include <algorithm>
#include <cstdint>
#include <iterator>
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

constexpr Kind kKinds[] = {Kind::kInput,     Kind::kDense,   Kind::kNorm,   Kind::kAlias,
                           Kind::kFlatten,   Kind::kAdd,     Kind::kConcat, Kind::kEmbedding,
                           Kind::kAttention, Kind::kMultiply};

// What each kind of op reads (docs/GRAPH_DESCRIPTION.md, the op tables).
struct OpFields {
  int min_inputs = 1, max_inputs = 1;  // max -1: unbounded
  bool units = false, weight = false, bias = false, positions = false, alias_kind = false;
  bool transposed = false, heads = false, split = false;  // version 2; split: query ... value_bias
  bool groups = false;                                    // version 3
  bool kv_heads = false;                                  // version 4
};

// The version that introduced the op kind.
int64_t KindVersion(Kind kind) {
  if (kind == Kind::kMultiply) return 4;
  return kind == Kind::kEmbedding || kind == Kind::kAttention ? 2 : 1;
}

// The first of query, key, value and their biases that `op` sets ("" if none).
std::string SplitField(const DescriptionOp& op) {
  const std::pair<const char*, const std::string*> split[] = {
      {"query", &op.query},           {"key", &op.key},           {"value", &op.value},
      {"query_bias", &op.query_bias}, {"key_bias", &op.key_bias}, {"value_bias", &op.value_bias}};
  for (const auto& [name, value] : split) {
    if (!value->empty()) return name;
  }
  return "";
}

// The first version-2 field `op` sets ("" if none): what a version-1 description may not use.
std::string Version2Field(const DescriptionOp& op) {
  if (op.transposed) return "transposed";
  if (op.heads != 0) return "heads";
  return SplitField(op);
}

// The first version-3 field `op` sets ("" if none).
std::string Version3Field(const DescriptionOp& op) { return op.groups != 1 ? "groups" : ""; }

// The first version-4 field `op` sets ("" if none).
std::string Version4Field(const DescriptionOp& op) { return op.kv_heads != 0 ? "kv_heads" : ""; }

// The first field of exactly version `v` (2, 3 or 4) that `op` sets ("" if none).
std::string FieldOfVersion(const DescriptionOp& op, int64_t v) {
  if (v == 2) return Version2Field(op);
  return v == 3 ? Version3Field(op) : Version4Field(op);
}

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
    case Kind::kMultiply:
      f.min_inputs = f.max_inputs = 2;
      break;
    case Kind::kConcat:
      f.min_inputs = 2;
      f.max_inputs = -1;
      break;
    case Kind::kEmbedding:
      f.min_inputs = 0;
      f.weight = f.alias_kind = true;
      break;
    case Kind::kAttention:
      f.weight = f.bias = f.transposed = f.heads = f.split = f.kv_heads = true;
      break;
  }
  if (kind == Kind::kDense) f.transposed = f.groups = true;
  return f;
}

constexpr const char* kSplitKeys[] = {"query",      "key",      "value",
                                      "query_bias", "key_bias", "value_bias"};

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
  if (f.transposed) keys.push_back("transposed");
  if (f.heads) keys.push_back("heads");
  if (f.groups) keys.push_back("groups");
  if (f.kv_heads) keys.push_back("kv_heads");
  if (f.split) keys.insert(keys.end(), std::begin(kSplitKeys), std::end(kSplitKeys));
  return keys;
}

// Keys a JSON op may leave out (the others are required).
bool OptionalKey(Kind kind, const std::string& key) {
  if (key == "bias" || key == "transposed" || key == "groups") return true;
  if (kind == Kind::kNorm && key == "weight") return true;
  if (kind == Kind::kEmbedding && key == "inputs") return true;
  if (kind == Kind::kAttention && key != "op" && key != "output" && key != "inputs" &&
      key != "heads") {
    return true;  // packed or split: ValidateModelDescription checks which
  }
  return false;
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
  if (!f.transposed && op.transposed) return unread("transposed");
  if (!f.heads && op.heads != 0) return unread("heads");
  if (!f.groups && op.groups != 1) return unread("groups");
  if (!f.kv_heads && op.kv_heads != 0) return unread("kv_heads");
  if (!f.split) {
    const std::string split = SplitField(op);
    if (!split.empty()) return unread(split.c_str());
  }
  return absl::OkStatus();
}

absl::Status CheckEmbeddingFields(size_t index, const DescriptionOp& op) {
  if (op.weight.empty()) return OpError(index, op, "missing field 'weight' (the table)");
  if (op.alias_kind != "token" && op.alias_kind != "position") {
    return OpError(
        index, op,
        absl::StrCat("kind must be \"token\" or \"position\", got \"", op.alias_kind, "\""));
  }
  return absl::OkStatus();
}

// Packed (`weight` [+ `bias`]) or split (query, key, value [+ their biases]), not both.
absl::Status CheckAttentionFields(size_t index, const DescriptionOp& op) {
  if (op.heads < 1) return OpError(index, op, absl::StrCat("heads must be >= 1, got ", op.heads));
  if (op.kv_heads < 0 || (op.kv_heads > 0 && op.heads % op.kv_heads != 0)) {
    return OpError(index, op,
                   absl::StrCat("kv_heads ", op.kv_heads, " does not divide heads ", op.heads,
                                " (grouped-query attention: each key / value head serves "
                                "heads / kv_heads query heads)"));
  }
  const bool split = !SplitField(op).empty();
  if (!op.weight.empty()) {
    if (split) {
      return OpError(index, op,
                     "packed projections ('weight') and split ones ('query', 'key', 'value' and "
                     "their biases) exclude each other");
    }
    return absl::OkStatus();
  }
  if (!op.bias.empty()) return OpError(index, op, "'bias' (packed q|k|v) needs a packed 'weight'");
  for (const auto& [name, value] : {std::pair<const char*, const std::string*>{"query", &op.query},
                                    {"key", &op.key},
                                    {"value", &op.value}}) {
    if (value->empty()) {
      return OpError(index, op,
                     absl::StrCat("missing field '", name,
                                  "': an attention op has a packed 'weight' or all of "
                                  "'query', 'key', 'value'"));
    }
  }
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
  if (f.groups && op.groups < 1) {
    return OpError(index, op, absl::StrCat("groups must be >= 1, got ", op.groups));
  }
  if (op.groups > 1 && op.transposed) {
    return OpError(index, op,
                   "'groups' and 'transposed' exclude each other (a grouped op is a "
                   "convolution, (out, in / groups, kh, kw))");
  }
  if (op.kind == Kind::kNorm && op.weight.empty() && op.bias.empty()) {
    return OpError(index, op, "a norm op needs a 'weight' (gain) and/or a 'bias' (shift)");
  }
  if (op.kind == Kind::kEmbedding) return CheckEmbeddingFields(index, op);
  if (op.kind == Kind::kAttention) return CheckAttentionFields(index, op);
  return absl::OkStatus();
}

// A description uses no op or field of a later version than it says.
absl::Status CheckOpVersion(size_t index, const DescriptionOp& op, int64_t version) {
  if (ModelDescriptionOpVersion(op) <= version) return absl::OkStatus();
  if (KindVersion(op.kind) > version) {
    return OpError(index, op,
                   absl::StrCat(DescriptionOpKindName(op.kind), " is version ",
                                KindVersion(op.kind), ", the description says version ", version));
  }
  for (int64_t v = version + 1; v <= kModelDescriptionVersion; ++v) {
    const std::string field = FieldOfVersion(op, v);
    if (!field.empty()) {
      return OpError(index, op,
                     absl::StrCat("field '", field, "' is version ", v,
                                  ", the description says version ", version));
    }
  }
  return absl::InternalError("CheckOpVersion: no field of a later version");
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

absl::StatusOr<bool> JsonBool(const Json& j, const char* key, absl::string_view where) {
  const Json& v = j.at(key);
  if (!v.is_boolean()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": field '", key, "' must be true or false, got ", v.dump()));
  }
  return v.get<bool>();
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
    if (!OptionalKey(kind, k) && !j.contains(k)) {
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
  NINO_RETURN_IF_ERROR(read_int("heads", &op->heads));
  NINO_RETURN_IF_ERROR(read_int("groups", &op->groups));
  NINO_RETURN_IF_ERROR(read_int("kv_heads", &op->kv_heads));
  if (j.contains("kv_heads") && op->kv_heads < 1) {  // 0 means "unset" in C++ and the protocol
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": kv_heads must be >= 1 when present, got ", op->kv_heads));
  }
  std::string* split[] = {&op->query,      &op->key,      &op->value,
                          &op->query_bias, &op->key_bias, &op->value_bias};
  for (size_t k = 0; k < 6; ++k) NINO_RETURN_IF_ERROR(read_string(kSplitKeys[k], split[k]));
  if (j.contains("transposed")) {
    NINO_ASSIGN_OR_RETURN(op->transposed, JsonBool(j, "transposed", where));
  }
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
  if (version < kMinModelDescriptionVersion || version > kModelDescriptionVersion) {
    return absl::InvalidArgumentError(
        absl::StrCat("version: ", version, ", this reader reads versions ",
                     kMinModelDescriptionVersion, " to ", kModelDescriptionVersion));
  }
  return absl::OkStatus();
}

nlohmann::ordered_json OpToJson(const DescriptionOp& op) {
  const OpFields f = FieldsOf(op.kind);
  nlohmann::ordered_json j;
  j["op"] = DescriptionOpKindName(op.kind);
  j["output"] = op.output;
  if (f.max_inputs != 0 && (f.min_inputs > 0 || !op.inputs.empty())) j["inputs"] = op.inputs;
  if (f.units) j["units"] = op.units;
  if (f.weight && !op.weight.empty()) j["weight"] = op.weight;
  if (f.bias && !op.bias.empty()) j["bias"] = op.bias;
  if (f.positions) j["positions"] = op.positions;
  if (f.alias_kind) j["kind"] = op.alias_kind;
  if (f.heads) j["heads"] = op.heads;
  if (f.split) {
    const std::string* split[] = {&op.query,      &op.key,      &op.value,
                                  &op.query_bias, &op.key_bias, &op.value_bias};
    for (size_t k = 0; k < 6; ++k) {
      if (!split[k]->empty()) j[kSplitKeys[k]] = *split[k];
    }
  }
  if (f.transposed && op.transposed) j["transposed"] = true;
  if (f.groups && op.groups != 1) j["groups"] = op.groups;
  if (f.kv_heads && op.kv_heads != 0) j["kv_heads"] = op.kv_heads;
  return j;
}

// A dense or norm op: one input group, a weight and an optional bias.
DescriptionOp WeightOp(DescriptionOp::Kind kind, const std::string& input, std::string weight,
                       std::string bias) {
  DescriptionOp op;
  op.kind = kind;
  op.inputs = {input};
  op.weight = std::move(weight);
  op.bias = std::move(bias);
  return op;
}

}  // namespace

int64_t ModelDescriptionOpVersion(const DescriptionOp& op) {
  int64_t v = KindVersion(op.kind);
  for (int64_t later = 2; later <= kModelDescriptionVersion; ++later) {
    if (!FieldOfVersion(op, later).empty()) v = std::max(v, later);
  }
  return v;
}

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
    case Kind::kEmbedding:
      return "embedding";
    case Kind::kAttention:
      return "attention";
    case Kind::kMultiply:
      return "multiply";
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
    NINO_RETURN_IF_ERROR(CheckOpVersion(i, op, description.version));
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

std::string ModelDescriptionBuilder::Append(DescriptionOp op, std::string name) {
  op.output = NameOr(std::move(name));
  description_.version = std::max(description_.version, ModelDescriptionOpVersion(op));
  description_.ops.push_back(std::move(op));
  return description_.ops.back().output;
}

std::string ModelDescriptionBuilder::Input(int64_t units, std::string name) {
  DescriptionOp op;
  op.kind = Kind::kInput;
  op.units = units;
  return Append(std::move(op), std::move(name));
}

std::string ModelDescriptionBuilder::Dense(const std::string& input, std::string weight,
                                           std::string bias, std::string name) {
  return Append(WeightOp(Kind::kDense, input, std::move(weight), std::move(bias)), std::move(name));
}

std::string ModelDescriptionBuilder::DenseTransposed(const std::string& input, std::string weight,
                                                     std::string bias, std::string name) {
  DescriptionOp op = WeightOp(Kind::kDense, input, std::move(weight), std::move(bias));
  op.transposed = true;
  return Append(std::move(op), std::move(name));
}

std::string ModelDescriptionBuilder::GroupedConv(const std::string& input, int64_t groups,
                                                 std::string weight, std::string bias,
                                                 std::string name) {
  DescriptionOp op = WeightOp(Kind::kDense, input, std::move(weight), std::move(bias));
  op.groups = groups;
  return Append(std::move(op), std::move(name));
}

std::string ModelDescriptionBuilder::Norm(const std::string& input, std::string weight,
                                          std::string bias, std::string name) {
  return Append(WeightOp(Kind::kNorm, input, std::move(weight), std::move(bias)), std::move(name));
}

std::string ModelDescriptionBuilder::Alias(const std::string& input, std::string alias_kind,
                                           std::string name) {
  DescriptionOp op;
  op.kind = Kind::kAlias;
  op.inputs = {input};
  op.alias_kind = std::move(alias_kind);
  return Append(std::move(op), std::move(name));
}

std::string ModelDescriptionBuilder::Flatten(const std::string& input, int64_t positions,
                                             std::string name) {
  DescriptionOp op;
  op.kind = Kind::kFlatten;
  op.inputs = {input};
  op.positions = positions;
  return Append(std::move(op), std::move(name));
}

std::string ModelDescriptionBuilder::Add(const std::string& a, const std::string& b,
                                         std::string name) {
  DescriptionOp op;
  op.kind = Kind::kAdd;
  op.inputs = {a, b};
  return Append(std::move(op), std::move(name));
}

std::string ModelDescriptionBuilder::Multiply(const std::string& a, const std::string& b,
                                              std::string name) {
  DescriptionOp op;
  op.kind = Kind::kMultiply;
  op.inputs = {a, b};
  return Append(std::move(op), std::move(name));
}

std::string ModelDescriptionBuilder::Concat(std::vector<std::string> inputs, std::string name) {
  DescriptionOp op;
  op.kind = Kind::kConcat;
  op.inputs = std::move(inputs);
  return Append(std::move(op), std::move(name));
}

std::string ModelDescriptionBuilder::Embedding(std::string weight, std::string kind,
                                               std::string into, std::string name) {
  DescriptionOp op;
  op.kind = Kind::kEmbedding;
  if (!into.empty()) op.inputs = {std::move(into)};
  op.weight = std::move(weight);
  op.alias_kind = std::move(kind);
  return Append(std::move(op), std::move(name));
}

std::string ModelDescriptionBuilder::Attention(const std::string& input, int64_t heads,
                                               std::string weight, std::string bias,
                                               bool transposed, std::string name) {
  DescriptionOp op;
  op.kind = Kind::kAttention;
  op.inputs = {input};
  op.heads = heads;
  op.weight = std::move(weight);
  op.bias = std::move(bias);
  op.transposed = transposed;
  return Append(std::move(op), std::move(name));
}

std::string ModelDescriptionBuilder::Attention(const std::string& input, int64_t heads,
                                               AttentionWeights weights, std::string name) {
  DescriptionOp op;
  op.kind = Kind::kAttention;
  op.inputs = {input};
  op.heads = heads;
  op.query = std::move(weights.query);
  op.key = std::move(weights.key);
  op.value = std::move(weights.value);
  op.query_bias = std::move(weights.query_bias);
  op.key_bias = std::move(weights.key_bias);
  op.value_bias = std::move(weights.value_bias);
  op.kv_heads = weights.kv_heads;
  return Append(std::move(op), std::move(name));
}

}  // namespace nino
