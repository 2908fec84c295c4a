// Model descriptions without a parameter table (model_description.h): version 2's ops and fields
// (embedding, attention, transposed) in ValidateModelDescription, the JSON form and the C++
// builder; versions 1 to 4 accepted, a description using an op or field of a later version
// refused naming the op; version 3's `groups` (grouped convolutions). The version-1 ops' JSON and
// builder tests live in graph_from_description_test.cc.
#include "common/nino/model_description.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace nino {
namespace {

using Kind = DescriptionOp::Kind;

void ExpectInvalid(const absl::Status& s, const std::vector<std::string>& mentions) {
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  for (const std::string& m : mentions) {
    EXPECT_NE(s.message().find(m), std::string::npos) << "'" << m << "' not in: " << s.message();
  }
}

// A small GPT-like model with every version-2 construct: token and position tables, packed
// transposed attention, a transposed dense, split attention with biases.
ModelDescription Version2Description() {
  ModelDescriptionBuilder b;
  std::string x = b.Embedding("wte.weight", "token", "", "tok");
  x = b.Embedding("wpe.weight", "position", x, "pos");
  std::string h = b.Norm(x, "ln.weight", "ln.bias", "ln");
  h = b.Attention(h, 2, "attn.c_attn.weight", "attn.c_attn.bias", true, "attn");
  h = b.DenseTransposed(h, "attn.c_proj.weight", "attn.c_proj.bias", "proj");
  x = b.Add(x, h, "res");  // x is "pos": wpe's output names wte's group
  h = b.Attention(x, 4, {"q.weight", "k.weight", "v.weight", "q.bias", "", "v.bias"}, "attn2");
  b.Dense(h, "o.weight", "", "o");
  return b.description();
}

TEST(ModelDescriptionV2, TheBuilderWritesVersion1UntilAVersion2OpOrFieldIsUsed) {
  ModelDescriptionBuilder b;
  std::string h = b.Dense(b.Input(4, "x"), "a.weight", "a.bias", "a");
  EXPECT_EQ(b.description().version, 1);
  h = b.DenseTransposed(h, "b.weight", "", "b");
  EXPECT_EQ(b.description().version, 2);
  EXPECT_TRUE(b.description().ops[2].transposed);
  EXPECT_TRUE(ValidateModelDescription(b.description()).ok());

  ModelDescriptionBuilder e;
  e.Embedding("wte.weight", "token");
  EXPECT_EQ(e.description().version, 2);
  ModelDescriptionBuilder a;
  a.Attention(a.Input(4), 1, "in_proj_weight");
  EXPECT_EQ(a.description().version, 2);

  const ModelDescription d = Version2Description();
  ASSERT_TRUE(ValidateModelDescription(d).ok()) << ValidateModelDescription(d);
  EXPECT_EQ(d.version, 2);
  const DescriptionOp& pos = d.ops[1];
  EXPECT_EQ(pos.kind, Kind::kEmbedding);
  EXPECT_EQ(pos.inputs, std::vector<std::string>{"tok"});
  EXPECT_EQ(pos.alias_kind, "position");
  EXPECT_TRUE(d.ops[0].inputs.empty());
  const DescriptionOp& attn = d.ops[3];
  EXPECT_EQ(attn.heads, 2);
  EXPECT_TRUE(attn.transposed);
  EXPECT_EQ(attn.weight, "attn.c_attn.weight");
  EXPECT_EQ(attn.bias, "attn.c_attn.bias");
  const DescriptionOp& split = d.ops[6];
  EXPECT_EQ(split.query, "q.weight");
  EXPECT_EQ(split.key, "k.weight");
  EXPECT_EQ(split.value, "v.weight");
  EXPECT_EQ(split.query_bias, "q.bias");
  EXPECT_EQ(split.key_bias, "");
  EXPECT_EQ(split.value_bias, "v.bias");
  EXPECT_TRUE(split.weight.empty());
}

TEST(ModelDescriptionV2, JsonRoundTripsAndWritesOnlyWhatEachOpReads) {
  const ModelDescription d = Version2Description();
  const std::string json = ModelDescriptionToJson(d);
  const std::string expected = R"({"version": 2, "ops": [
  {"op":"embedding","output":"tok","weight":"wte.weight","kind":"token"},
  {"op":"embedding","output":"pos","inputs":["tok"],"weight":"wpe.weight","kind":"position"},
  {"op":"norm","output":"ln","inputs":["pos"],"weight":"ln.weight","bias":"ln.bias"},
  {"op":"attention","output":"attn","inputs":["ln"],"weight":"attn.c_attn.weight","bias":"attn.c_attn.bias","heads":2,"transposed":true},
  {"op":"dense","output":"proj","inputs":["attn"],"weight":"attn.c_proj.weight","bias":"attn.c_proj.bias","transposed":true},
  {"op":"add","output":"res","inputs":["pos","proj"]},
  {"op":"attention","output":"attn2","inputs":["res"],"heads":4,"query":"q.weight","key":"k.weight","value":"v.weight","query_bias":"q.bias","value_bias":"v.bias"},
  {"op":"dense","output":"o","inputs":["attn2"],"weight":"o.weight"}
]}
)";
  EXPECT_EQ(json, expected);
  absl::StatusOr<ModelDescription> back = ModelDescriptionFromJson(json);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->version, 2);
  ASSERT_EQ(back->ops.size(), d.ops.size());
  for (size_t i = 0; i < d.ops.size(); ++i) {
    const DescriptionOp &x = back->ops[i], &y = d.ops[i];
    EXPECT_EQ(x.kind, y.kind) << i;
    EXPECT_EQ(x.output, y.output) << i;
    EXPECT_EQ(x.inputs, y.inputs) << i;
    EXPECT_EQ(x.weight, y.weight) << i;
    EXPECT_EQ(x.bias, y.bias) << i;
    EXPECT_EQ(x.alias_kind, y.alias_kind) << i;
    EXPECT_EQ(x.transposed, y.transposed) << i;
    EXPECT_EQ(x.heads, y.heads) << i;
    EXPECT_EQ(x.query, y.query) << i;
    EXPECT_EQ(x.key, y.key) << i;
    EXPECT_EQ(x.value, y.value) << i;
    EXPECT_EQ(x.query_bias, y.query_bias) << i;
    EXPECT_EQ(x.key_bias, y.key_bias) << i;
    EXPECT_EQ(x.value_bias, y.value_bias) << i;
  }
  EXPECT_EQ(ModelDescriptionToJson(*back), json);
  // "transposed": false is accepted and means the default.
  absl::StatusOr<ModelDescription> explicit_false = ModelDescriptionFromJson(
      R"({"version": 2, "ops": [{"op": "input", "output": "x", "units": 2},
      {"op": "dense", "output": "d", "inputs": ["x"], "weight": "w", "transposed": false}]})");
  ASSERT_TRUE(explicit_false.ok()) << explicit_false.status();
  EXPECT_FALSE(explicit_false->ops[1].transposed);
}

TEST(ModelDescriptionV2, Version1DescriptionsUsingVersion2AreRefusedNamingTheOp) {
  ModelDescription d = Version2Description();
  d.version = 1;
  ExpectInvalid(
      ValidateModelDescription(d),
      {"op 0 (embedding 'tok')", "embedding is version 2, the description says version 1"});
  ModelDescriptionBuilder b;
  const std::string x = b.Input(4, "x");
  b.Attention(x, 1, "w", "", false, "attn");
  ModelDescription attn = b.description();
  attn.version = 1;
  ExpectInvalid(ValidateModelDescription(attn),
                {"op 1 (attention 'attn')", "attention is version 2"});
  ModelDescriptionBuilder t;
  t.DenseTransposed(t.Input(4, "x"), "w", "", "fc");
  ModelDescription transposed = t.description();
  transposed.version = 1;
  ExpectInvalid(ValidateModelDescription(transposed),
                {"op 1 (dense 'fc')", "field 'transposed' is version 2"});
  ExpectInvalid(ModelDescriptionFromJson(R"({"version": 1, "ops": [
      {"op": "embedding", "output": "e", "weight": "wte.weight", "kind": "token"}]})")
                    .status(),
                {"op 0 (embedding 'e')", "embedding is version 2"});
  ExpectInvalid(ModelDescriptionFromJson(R"({"version": 1, "ops": [
      {"op": "input", "output": "x", "units": 2},
      {"op": "dense", "output": "d", "inputs": ["x"], "weight": "w", "transposed": true}]})")
                    .status(),
                {"op 1 (dense 'd')", "field 'transposed' is version 2"});
  ExpectInvalid(ModelDescriptionFromJson(R"({"version": 5, "ops": []})").status(),
                {"version: 5", "reads versions 1 to 4"});
}

TEST(ModelDescriptionV2, FieldChecksNameTheOpAndTheField) {
  auto edited = [](void (*edit)(ModelDescription*)) {
    ModelDescription d = Version2Description();
    edit(&d);
    return ValidateModelDescription(d);
  };
  ExpectInvalid(edited([](ModelDescription* d) { d->ops[0].alias_kind = "class"; }),
                {"op 0 (embedding 'tok')", "kind must be \"token\" or \"position\"", "class"});
  ExpectInvalid(edited([](ModelDescription* d) { d->ops[0].alias_kind = ""; }),
                {"op 0 (embedding 'tok')", "missing field 'kind'"});
  ExpectInvalid(edited([](ModelDescription* d) { d->ops[0].weight = ""; }),
                {"op 0 (embedding 'tok')", "missing field 'weight'"});
  ExpectInvalid(edited([](ModelDescription* d) {
                  d->ops[1].inputs = {"tok", "tok"};
                }),
                {"op 1 (embedding 'pos')", "at most 1 input group(s), got 2"});
  ExpectInvalid(edited([](ModelDescription* d) { d->ops[0].bias = "b"; }),
                {"op 0 (embedding 'tok')", "field 'bias' does not apply"});
  ExpectInvalid(edited([](ModelDescription* d) { d->ops[3].heads = 0; }),
                {"op 3 (attention 'attn')", "heads must be >= 1, got 0"});
  ExpectInvalid(edited([](ModelDescription* d) { d->ops[3].query = "q"; }),
                {"op 3 (attention 'attn')", "exclude each other"});
  ExpectInvalid(edited([](ModelDescription* d) { d->ops[6].key = ""; }),
                {"op 6 (attention 'attn2')", "missing field 'key'"});
  ExpectInvalid(edited([](ModelDescription* d) { d->ops[6].bias = "b"; }),
                {"op 6 (attention 'attn2')", "'bias' (packed q|k|v) needs a packed 'weight'"});
  ExpectInvalid(edited([](ModelDescription* d) { d->ops[6].inputs = {}; }),
                {"op 6 (attention 'attn2')", "takes 1 input group(s), got 0"});
  ExpectInvalid(edited([](ModelDescription* d) { d->ops[2].heads = 2; }),
                {"op 2 (norm 'ln')", "field 'heads' does not apply"});
  ExpectInvalid(edited([](ModelDescription* d) { d->ops[2].transposed = true; }),
                {"op 2 (norm 'ln')", "field 'transposed' does not apply"});
  ExpectInvalid(edited([](ModelDescription* d) { d->ops[4].key_bias = "kb"; }),
                {"op 4 (dense 'proj')", "field 'key_bias' does not apply"});
  ExpectInvalid(edited([](ModelDescription* d) { d->ops[0].transposed = true; }),
                {"op 0 (embedding 'tok')", "field 'transposed' does not apply"});
}

TEST(ModelDescriptionV2, JsonRefusalsNameTheOpAndTheField) {
  auto refused = [](const std::string& op, const std::vector<std::string>& mentions) {
    const std::string json =
        R"({"version": 2, "ops": [{"op": "input", "output": "x", "units": 4}, )" + op + "]}";
    ExpectInvalid(ModelDescriptionFromJson(json).status(), mentions);
  };
  refused(R"({"op": "attention", "output": "a", "inputs": ["x"], "weight": "w"})",
          {"op 1 (output 'a')", "missing field 'heads'"});
  refused(R"({"op": "attention", "output": "a", "inputs": ["x"], "weight": "w", "heads": "2"})",
          {"op 1 (output 'a')", "'heads' must be an integer"});
  refused(R"({"op": "dense", "output": "d", "inputs": ["x"], "weight": "w", "transposed": 1})",
          {"op 1 (output 'd')", "'transposed' must be true or false"});
  refused(R"({"op": "dense", "output": "d", "inputs": ["x"], "weight": "w", "heads": 1})",
          {"op 1 (output 'd')", "unknown field 'heads'"});
  refused(R"({"op": "embedding", "output": "e", "weight": "w"})",
          {"op 1 (output 'e')", "missing field 'kind'"});
  refused(R"({"op": "embedding", "output": "e", "weight": "w", "kind": "token", "units": 3})",
          {"op 1 (output 'e')", "unknown field 'units'"});
  refused(R"({"op": "attention", "output": "a", "inputs": ["x"], "heads": 1, "query": "q"})",
          {"op 1 (attention 'a')", "missing field 'key'"});
  refused(R"({"op": "attention", "output": "a", "inputs": ["x"], "heads": 1, "query": 3})",
          {"op 1 (output 'a')", "'query' must be a string"});
  refused(R"({"op": "attention", "output": "a", "inputs": ["x"], "heads": 1, "weight": "w",
              "attn_mask": "m"})",
          {"op 1 (output 'a')", "unknown field 'attn_mask'", "heads", "value_bias"});
}

TEST(ModelDescriptionV3, GroupsAreVersion3AndOnlyForDenseOps) {
  ModelDescriptionBuilder b;
  const std::string x = b.Input(8, "x");
  EXPECT_EQ(b.description().version, 1);
  const std::string dw = b.GroupedConv(x, 8, "dw.weight", "dw.bias", "dw");
  EXPECT_EQ(b.description().version, 3);
  EXPECT_EQ(b.description().ops[1].groups, 8);
  b.Dense(dw, "pw.weight", "", "pw");
  EXPECT_EQ(b.description().ops[2].groups, 1);
  ASSERT_TRUE(ValidateModelDescription(b.description()).ok());
  EXPECT_EQ(ModelDescriptionOpVersion(b.description().ops[1]), 3);
  EXPECT_EQ(ModelDescriptionOpVersion(b.description().ops[2]), 1);

  // JSON: written only where it is not 1, read back; a version-2 op keeps version 2 elsewhere.
  const std::string json = ModelDescriptionToJson(b.description());
  EXPECT_NE(json.find(R"("groups":8)"), std::string::npos) << json;
  EXPECT_EQ(json.find(R"("groups":1)"), std::string::npos) << json;
  absl::StatusOr<ModelDescription> back = ModelDescriptionFromJson(json);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->version, 3);
  EXPECT_EQ(back->ops[1].groups, 8);
  EXPECT_EQ(back->ops[2].groups, 1);
  EXPECT_EQ(ModelDescriptionToJson(*back), json);

  ModelDescription v2 = b.description();
  v2.version = 2;
  ExpectInvalid(
      ValidateModelDescription(v2),
      {"op 1 (dense 'dw')", "field 'groups' is version 3, the description says version 2"});
  v2.version = 1;
  ExpectInvalid(ValidateModelDescription(v2), {"op 1 (dense 'dw')", "field 'groups' is version 3"});
  ModelDescription zero = b.description();
  zero.ops[1].groups = 0;
  ExpectInvalid(ValidateModelDescription(zero),
                {"op 1 (dense 'dw')", "groups must be >= 1, got 0"});
  ModelDescription transposed = b.description();
  transposed.ops[1].transposed = true;
  ExpectInvalid(ValidateModelDescription(transposed),
                {"op 1 (dense 'dw')", "'groups' and 'transposed' exclude each other"});
  ModelDescription norm = b.description();
  norm.ops[2].kind = Kind::kNorm;
  norm.ops[2].groups = 2;
  ExpectInvalid(ValidateModelDescription(norm),
                {"op 2 (norm 'pw')", "field 'groups' does not apply to norm ops"});
  ExpectInvalid(ModelDescriptionFromJson(R"({"version": 3, "ops": [
      {"op": "input", "output": "x", "units": 2},
      {"op": "alias", "output": "r", "inputs": ["x"], "kind": "relu", "groups": 2}]})")
                    .status(),
                {"op 1 (output 'r')", "unknown field 'groups'"});
  ExpectInvalid(ModelDescriptionFromJson(R"({"version": 3, "ops": [
      {"op": "input", "output": "x", "units": 2},
      {"op": "dense", "output": "d", "inputs": ["x"], "weight": "w", "groups": "2"}]})")
                    .status(),
                {"op 1 (output 'd')", "'groups' must be an integer"});
}

TEST(ModelDescriptionV4, MultiplyAndKvHeadsAreVersion4) {
  ModelDescriptionBuilder b;
  const std::string x = b.Input(8, "x");
  ModelDescriptionBuilder::AttentionWeights w{"q", "k", "v", "", "", "", 2};
  const std::string a = b.Attention(x, 4, w, "attn");
  EXPECT_EQ(b.description().version, 4);
  EXPECT_EQ(ModelDescriptionOpVersion(b.description().ops[1]), 4);
  b.Multiply(a, b.Dense(a, "o.weight", "", "o"), "m");
  EXPECT_EQ(ModelDescriptionOpVersion(b.description().ops[3]), 4);
  ASSERT_TRUE(ValidateModelDescription(b.description()).ok());

  // JSON: kv_heads written where set, multiply by name; both read back.
  const std::string json = ModelDescriptionToJson(b.description());
  EXPECT_NE(json.find(R"("kv_heads":2)"), std::string::npos) << json;
  EXPECT_NE(json.find(R"({"op":"multiply","output":"m","inputs":["attn","o"]})"), std::string::npos)
      << json;
  absl::StatusOr<ModelDescription> back = ModelDescriptionFromJson(json);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->ops[1].kv_heads, 2);
  EXPECT_EQ(back->ops[3].kind, Kind::kMultiply);
  EXPECT_EQ(ModelDescriptionToJson(*back), json);

  ModelDescription v3 = b.description();
  v3.version = 3;
  ExpectInvalid(ValidateModelDescription(v3), {"op 1 (attention 'attn')",
                                               "field 'kv_heads' is version 4, the description "
                                               "says version 3"});
  v3.ops[1].kv_heads = 0;
  ExpectInvalid(ValidateModelDescription(v3),
                {"op 3 (multiply 'm')", "multiply is version 4, the description says version 3"});
  ModelDescription bad_kv = b.description();
  bad_kv.ops[1].kv_heads = 3;
  ExpectInvalid(ValidateModelDescription(bad_kv),
                {"op 1 (attention 'attn')", "kv_heads 3 does not divide heads 4"});
  ModelDescription on_dense = b.description();
  on_dense.ops[2].kv_heads = 2;
  ExpectInvalid(ValidateModelDescription(on_dense),
                {"op 2 (dense 'o')", "field 'kv_heads' does not apply to dense ops"});
  ModelDescription one_input = b.description();
  one_input.ops[3].inputs.pop_back();
  ExpectInvalid(ValidateModelDescription(one_input),
                {"op 3 (multiply 'm')", "takes 2 input group(s), got 1"});
  ExpectInvalid(ModelDescriptionFromJson(R"({"version": 4, "ops": [
      {"op": "input", "output": "x", "units": 8},
      {"op": "attention", "output": "a", "inputs": ["x"], "heads": 4, "query": "q",
       "key": "k", "value": "v", "kv_heads": 0}]})")
                    .status(),
                {"op 1 (output 'a')", "kv_heads must be >= 1 when present, got 0"});
  ExpectInvalid(ModelDescriptionFromJson(R"({"version": 4, "ops": [
      {"op": "input", "output": "x", "units": 2},
      {"op": "multiply", "output": "m", "inputs": ["x", "x"], "weight": "w"}]})")
                    .status(),
                {"op 1 (output 'm')", "unknown field 'weight'"});
}

}  // namespace
}  // namespace nino
