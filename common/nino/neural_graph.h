// Neural graphs: a model's parameters as a directed graph whose nodes are neurons (plus
// auxiliary nodes for biases, norm gains and attention heads) and whose edges carry the
// parameter values (shared/spec/NINO_SPEC.md section 3).
//
// The graph depends only on parameter names and shapes, never on values: build it once per
// model and reuse it for every nowcast.
#ifndef NINO_COMMON_NINO_NEURAL_GRAPH_H_
#define NINO_COMMON_NINO_NEURAL_GRAPH_H_

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "common/nino/model_description.h"

namespace nino {

// One named parameter tensor of the model, in named_parameters() order (tied parameters once).
struct ParamSpec {
  std::string name;
  std::vector<int64_t> shape;
  int64_t offset = 0;  // first row of this tensor in the flat parameter vector
  int64_t numel = 1;
};

// Fills offset/numel from names and shapes, in order. INVALID_ARGUMENT on a negative dimension
// or a duplicate name.
absl::StatusOr<std::vector<ParamSpec>> MakeParamTable(
    const std::vector<std::pair<std::string, std::vector<int64_t>>>& named_shapes);
int64_t TotalParams(const std::vector<ParamSpec>& params);

// Which graph construction applies to a model.
struct GraphSpec {
  // kAuto: chosen from the parameter names when the graph is built (InferGraphSpec).
  // kDescribed: built from `description` (graph_from_description.h, docs/GRAPH_DESCRIPTION.md).
  enum class Kind { kGeneric, kGpt2, kLlama, kAuto, kDescribed };
  Kind kind = Kind::kGeneric;
  int64_t num_heads = 0;     // gpt2 and llama
  int64_t num_kv_heads = 0;  // llama only: key/value heads (grouped-query attention); 0 = num_heads
  // kDescribed only (required there; read by no other kind, InferGraphSpec included). Shared and
  // immutable: copies of a GraphSpec are cheap.
  std::shared_ptr<const ModelDescription> description;
};
// kind: "generic" (also "mlp", "cnn"), "gpt2", "llama", "auto" or "described". num_kv_heads is
// read for llama and auto only. "described" needs a non-null `description` (then kept in the
// spec; its ops are checked against the parameters when the graph is built); every other kind
// refuses one. INVALID_ARGUMENT naming the kind otherwise.
absl::StatusOr<GraphSpec> ParseGraphKind(
    const std::string& kind, int64_t num_heads, int64_t num_kv_heads = 0,
    std::shared_ptr<const ModelDescription> description = nullptr);
std::string GraphKindName(GraphSpec::Kind kind);

// The model description -> graph mapping without per-model code: the parameter names and shapes
// in named_parameters() order decide the construction. HF GPT-2 attention blocks
// ("h.<i>.attn.c_attn.weight") select the GPT-2 graph, HF Llama blocks
// ("layers.<i>.self_attn.q_proj.weight") the Llama graph, anything else the generic chain of
// linear / conv layers (whose builder checks that consecutive layers connect). Attention models
// need num_heads > 0 (num_kv_heads: Llama's key/value heads, 0 = num_heads). INVALID_ARGUMENT,
// naming the parameter, for a layout none of the constructions can map (e.g. attention in
// another naming scheme, or GPT-2 and Llama blocks mixed).
absl::StatusOr<GraphSpec> InferGraphSpec(const std::vector<ParamSpec>& params, int64_t num_heads,
                                         int64_t num_kv_heads = 0);

// Special param_index values (slots that do not hold a parameter).
inline constexpr int64_t kSlotZero = -1;  // padding, value 0.0
inline constexpr int64_t kSlotOne = -2;   // constant 1.0 (residual / head-membership edges)
inline constexpr int64_t kSlotTwo = -3;   // constant 2.0 (self-loops)

// Edge types (index into NiNo's layer_embed), spec section 3.1.
enum EdgeType : int64_t {
  kEdgeFullyConnected = 1,
  kEdgeBias = 2,
  kEdgeConv = 3,
  kEdgeNormWeight = 4,
  kEdgeWordEmbedding = 5,
  kEdgePosEmbedding = 6,
  kEdgeQuery = 7,
  kEdgeKey = 8,
  kEdgeValue = 9,
  kEdgeResidual = 10,
  kEdgeHead = 11,
  kEdgeSelfLoop = 13,
};

struct NeuralGraph {
  int64_t num_nodes = 0;
  int64_t num_params = 0;     // P, length of the flat parameter vector
  int64_t feat_size = 1;      // F: feature slots per edge (max kh*kw of conv weights, else 1)
  std::vector<int64_t> src;   // [E] source node of each edge
  std::vector<int64_t> dst;   // [E] target node (messages are averaged here)
  std::vector<int64_t> type;  // [E] edge type 0..14
  std::vector<int64_t> param_index;  // [E * F] row of the flat vector per slot, or kSlot*
  std::vector<int64_t> pos_w;        // [N] token id + 1 for wte rows of GPT-2 graphs, else 0

  int64_t num_edges() const { return static_cast<int64_t>(src.size()); }

  // Tensor views (new CPU int64 tensors): [2, E], [E], [E, F], [N].
  torch::Tensor EdgeIndexTensor() const;
  torch::Tensor EdgeTypeTensor() const;
  torch::Tensor ParamIndexTensor() const;
  torch::Tensor PosWTensor() const;

  // Checks the invariants every builder guarantees: every parameter row appears in exactly one
  // slot, node ids in range, one self-loop per node. INTERNAL with details otherwise.
  absl::Status Validate() const;
};

// The generic chain graph for sequential MLPs / CNNs (official NeuralGraph, spec 3.3),
// reproducing the official node numbering exactly.
absl::StatusOr<NeuralGraph> BuildGenericGraph(const std::vector<ParamSpec>& params);

// The GPT-2 transformer graph (official NeuralGraphGPT, spec 3.5): HF GPT-2 naming
// (optionally prefixed "transformer."), Conv1D weights stored (in, out), tied lm_head.
absl::StatusOr<NeuralGraph> BuildGpt2Graph(const std::vector<ParamSpec>& params, int64_t num_heads);

// The Llama graph (official NeuralGraphLlama, spec 3.7), HF LlamaForCausalLM naming:
// model.embed_tokens.weight (V, d); per layer i, in this order, model.layers.<i>.
// self_attn.{q,k,v,o}_proj.weight ((H*hd, d), (KV*hd, d), (KV*hd, d), (d, H*hd)),
// mlp.{gate,up,down}_proj.weight ((ff, d), (ff, d), (d, ff)), input_layernorm.weight (d),
// post_attention_layernorm.weight (d); then model.norm.weight (d) and lm_head.weight (V, d)
// (absent when tied to embed_tokens). hd = d / num_heads; num_kv_heads = 0 means num_heads.
// Parameters must come in exactly this (named_parameters) order. INVALID_ARGUMENT, naming the
// parameter, for any other layout. Node numbering and edge order: see neural_graph.cc.
absl::StatusOr<NeuralGraph> BuildLlamaGraph(const std::vector<ParamSpec>& params, int64_t num_heads,
                                            int64_t num_kv_heads);

// A Llama configuration, and its parameter names and shapes in named_parameters() order (the
// layout BuildLlamaGraph takes). kv_heads = 0 means heads; head size = dim / heads.
struct LlamaShape {
  int64_t vocab = 0, dim = 0, layers = 0, heads = 0, kv_heads = 0, ffn = 0;
  bool tie_embeddings = false;  // true: no lm_head.weight (shared with embed_tokens)
};
std::vector<std::pair<std::string, std::vector<int64_t>>> LlamaNamedShapes(const LlamaShape& s);

// The checks of BuildLlamaGraph, which DescribeLlama (llama_description.h) shares: every name in
// the Llama layout, layers 0..L-1 complete, the shapes LlamaNamedShapes gives for the
// configuration read from embed_tokens (V, d) and the first gate_proj (ff, d) with num_heads /
// num_kv_heads (0 = num_heads), in named_parameters order. The configuration (kv_heads resolved)
// or INVALID_ARGUMENT ("Llama graph: ...", naming the parameter).
absl::StatusOr<LlamaShape> CheckLlamaLayout(const std::vector<ParamSpec>& params, int64_t num_heads,
                                            int64_t num_kv_heads);

// The graph `spec` selects: kAuto resolved by InferGraphSpec, kDescribed by
// BuildGraphFromDescription (INVALID_ARGUMENT if its description is null).
absl::StatusOr<NeuralGraph> BuildGraph(const std::vector<ParamSpec>& params, const GraphSpec& spec);

}  // namespace nino

#endif  // NINO_COMMON_NINO_NEURAL_GRAPH_H_
