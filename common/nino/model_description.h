// A model description: how a model's parameters connect, not only their names and shapes
// (issue 15). It is the input of the one graph builder (graph_from_description.h) and travels in
// the protocol (nino.v1.ModelDescription) and as a JSON file (`nino_nowcast --model_description`).
//
// Vocabulary (docs/GRAPH_DESCRIPTION.md has the full contract and the graph each op produces):
// * A *group* is a named set of neurons: a model input, a layer's output units (channels of a
//   conv, features of a linear layer), or the units a structural op yields. Groups are named by
//   the description's author (the Python tracer uses torch.fx node names).
// * *Ops* come in execution order and refer to groups created by earlier ops:
//     input    name, units                      a model input (features, or channels of an image)
//     dense    weight [, bias], input -> output  nn.Linear (out, in) or nn.Conv2d (out, in, kh, kw)
//     norm     weight and/or bias, input -> output  per-unit affine params (BatchNorm, LayerNorm,
//                                               GroupNorm gains/shifts); output aliases input
//     alias    kind, input -> output            parameter-free, unit-preserving ops (activation,
//                                               pooling, dropout, identity): output = input
//     flatten  input -> output, positions        (B, C, *spatial) -> (B, C * positions); positions
//                                               = prod(spatial); 1 position = alias
//     add      inputs [a, b] -> output           residual addition of two groups of equal size
//     concat   inputs [a, b, ...] -> output      channel concatenation (no new neurons)
//   Version 2 adds (docs/GRAPH_DESCRIPTION.md, "Version 2"):
//     embedding weight, kind [, input] -> output a table of rows (token / class-token /
//                                               position embeddings): each row a node feeding
//                                               every unit of a new group, or of `input`'s group
//     attention weight | query, key, value [+ biases], heads, input -> output
//                                               self-attention's q / k / v projections (packed as
//                                               nn.MultiheadAttention / GPT-2 c_attn, or three
//                                               weights); output = the value units
//   and `transposed` on dense / attention: weights stored (in, out) (GPT-2's Conv1D).
//   Version 3 adds `groups` on dense: a grouped or depthwise convolution (nn.Conv2d groups > 1,
//   weight (out, in / groups, kh, kw)); output unit o reads only the input units of its group.
//   Version 4 adds:
//     multiply inputs [a, b] -> output           elementwise product of two groups of equal size
//                                               (a gated MLP: silu(gate(x)) * up(x)); its graph
//                                               is add's
//   and `kv_heads` on attention: grouped-query attention (k / v of kv_heads heads; the output
//   group is then the query heads' outputs, heads * head size units).
// * Every parameter of the model appears in exactly one op (weight or bias), by its
//   named_parameters() name; the builder checks names and shapes against the parameter table.
//
// Versioned: readers accept versions kMinModelDescriptionVersion..kModelDescriptionVersion and
// refuse others; a description uses no op or field of a later version than it says
// (ModelDescriptionOpVersion). Writers (the Python tracer, DescribeGpt2, the builder) write the
// lowest version that can say what they describe.
#ifndef NINO_COMMON_NINO_MODEL_DESCRIPTION_H_
#define NINO_COMMON_NINO_MODEL_DESCRIPTION_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace nino {

inline constexpr int64_t kMinModelDescriptionVersion = 1;
inline constexpr int64_t kModelDescriptionVersion = 4;

struct DescriptionOp {
  enum class Kind {
    kInput,
    kDense,
    kNorm,
    kAlias,
    kFlatten,
    kAdd,
    kConcat,
    kEmbedding,
    kAttention,
    kMultiply
  };
  Kind kind = Kind::kInput;
  std::string output;               // the group this op creates (every op has one)
  std::vector<std::string> inputs;  // input groups: none (input), one, or >= 2 (add, multiply,
                                    // concat)
  std::string weight;               // dense: the weight; norm: the gain ("" if none);
                                    // embedding: the table; attention: packed q|k|v ("" if split)
  std::string bias;                 // dense/norm: the bias or shift ("" if none); attention: the
                                    // packed q|k|v bias ("" if none or split)
  int64_t units = 0;                // input: its number of units
  int64_t positions = 0;            // flatten: spatial positions per channel
  std::string alias_kind;           // alias: what it stands for ("relu", "max_pool2d", ...);
                                    // embedding: "token" (edge type 5) or "position" (type 6)
  // Version 2.
  bool transposed = false;        // dense, attention: weights stored (in, out), not (out, in)
  int64_t heads = 0;              // attention: query heads (>= 1)
  std::string query, key, value;  // attention with split projections (then `weight` is "")
  std::string query_bias, key_bias, value_bias;  // their biases ("" = none)
  // Version 3.
  int64_t groups = 1;  // dense: convolution groups (>= 1; > 1 only for 4-D, not transposed)
  // Version 4.
  int64_t kv_heads = 0;  // attention: key / value heads (0 = heads; else >= 1, divides heads)
};

struct ModelDescription {
  int64_t version = kModelDescriptionVersion;
  std::vector<DescriptionOp> ops;
};

std::string DescriptionOpKindName(DescriptionOp::Kind kind);  // "input", "dense", ...

// The lowest description version that has `op`'s kind and every field it sets (1 to 4).
int64_t ModelDescriptionOpVersion(const DescriptionOp& op);

// How errors name an op: `op 3 (dense 'conv1')` (index in `ops`, kind, output group).
std::string DescriptionOpLabel(size_t index, const DescriptionOp& op);

// The checks that need no parameter table: the version (and no op or field of a later version
// than the description says); at least one op; every output named and
// unique; each op's inputs named groups of earlier ops, as many as its kind takes (input none;
// dense, norm, alias, flatten one; add, multiply two; concat two or more); the fields its kind
// reads set
// (input: units >= 1; dense: weight; norm: weight and/or bias; alias: kind; flatten:
// positions >= 1; embedding: weight and kind "token" or "position", no or one input;
// attention: one input, heads >= 1, and either `weight` (+ optional `bias`) or all of query,
// key, value (+ optional query_bias, key_bias, value_bias), not both, and kv_heads 0 or a
// divisor of heads; dense: groups >= 1) and the fields it does not read left empty / 0 / false
// (groups: 1). INVALID_ARGUMENT naming the op
// (DescriptionOpLabel) otherwise. ModelDescriptionFromJson and BuildGraphFromDescription run it.
absl::Status ValidateModelDescription(const ModelDescription& description);

// JSON form (docs/GRAPH_DESCRIPTION.md): {"version": 1, "ops": [{"op": "dense", "weight": ...}]}.
// INVALID_ARGUMENT, naming the op by index and output, for malformed JSON, an unknown op or
// field, a wrong version, a missing field, a field of the wrong JSON type, or a description
// ValidateModelDescription refuses. ToJson writes one op per line, only the fields each op reads
// (bytes of names that are not UTF-8 become U+FFFD).
absl::StatusOr<ModelDescription> ModelDescriptionFromJson(const std::string& json);
std::string ModelDescriptionToJson(const ModelDescription& description);

// A small builder for C++ users; each call appends an op and returns the name of its output
// group. Group names are generated ("g0", "g1", ...; skipping names already used) unless given.
// The builder does not check: ValidateModelDescription / BuildGraphFromDescription do.
class ModelDescriptionBuilder {
 public:
  std::string Input(int64_t units, std::string name = "");
  std::string Dense(const std::string& input, std::string weight, std::string bias = "",
                    std::string name = "");
  // Dense with weights stored (in, out) (GPT-2's Conv1D).
  std::string DenseTransposed(const std::string& input, std::string weight, std::string bias = "",
                              std::string name = "");
  // Version 3: a grouped or depthwise convolution, weight (out, in / groups, kh, kw).
  std::string GroupedConv(const std::string& input, int64_t groups, std::string weight,
                          std::string bias = "", std::string name = "");
  std::string Norm(const std::string& input, std::string weight, std::string bias = "",
                   std::string name = "");
  std::string Alias(const std::string& input, std::string alias_kind, std::string name = "");
  std::string Flatten(const std::string& input, int64_t positions, std::string name = "");
  std::string Add(const std::string& a, const std::string& b, std::string name = "");
  // Version 4: the elementwise product of two groups of equal size.
  std::string Multiply(const std::string& a, const std::string& b, std::string name = "");
  std::string Concat(std::vector<std::string> inputs, std::string name = "");
  // Version 2 (the builder writes version 2 once one of these is used). `into` = "" makes a new
  // group of weight.shape[-1] units; otherwise the table's rows feed `into`'s group, and the
  // output names the same units.
  std::string Embedding(std::string weight, std::string kind, std::string into = "",
                        std::string name = "");
  // Packed q|k|v projections: (3 D, d) rows, or (d, 3 D) columns when `transposed`.
  std::string Attention(const std::string& input, int64_t heads, std::string weight,
                        std::string bias = "", bool transposed = false, std::string name = "");
  // Split projections (out, in) each; biases "" = none; kv_heads > 0 (version 4): grouped-query
  // attention, key and value (kv_heads * head size, in).
  struct AttentionWeights {
    std::string query, key, value;
    std::string query_bias, key_bias, value_bias;
    int64_t kv_heads = 0;
  };
  std::string Attention(const std::string& input, int64_t heads, AttentionWeights weights,
                        std::string name = "");
  const ModelDescription& description() const { return description_; }

 private:
  std::string NameOr(std::string name);
  // Names `op`'s output, appends it, raises the version to ModelDescriptionOpVersion(op).
  std::string Append(DescriptionOp op, std::string name);
  ModelDescription description_{kMinModelDescriptionVersion, {}};
  int64_t next_ = 0;
};

}  // namespace nino

#endif  // NINO_COMMON_NINO_MODEL_DESCRIPTION_H_
