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
#include <string>
#include <vector>

#include "absl/status/statusor.h"

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
  enum class Kind { kGeneric, kGpt2 };
  Kind kind = Kind::kGeneric;
  int64_t num_heads = 0;  // gpt2 only
};
absl::StatusOr<GraphSpec> ParseGraphKind(const std::string& kind, int64_t num_heads);
std::string GraphKindName(GraphSpec::Kind kind);

// Special param_index values (slots that do not hold a parameter).
inline constexpr int64_t kSlotZero = -1;   // padding, value 0.0
inline constexpr int64_t kSlotOne = -2;    // constant 1.0 (residual / head-membership edges)
inline constexpr int64_t kSlotTwo = -3;    // constant 2.0 (self-loops)

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
  int64_t num_params = 0;      // P, length of the flat parameter vector
  int64_t feat_size = 1;       // F: feature slots per edge (max kh*kw of conv weights, else 1)
  std::vector<int64_t> src;    // [E] source node of each edge
  std::vector<int64_t> dst;    // [E] target node (messages are averaged here)
  std::vector<int64_t> type;   // [E] edge type 0..14
  std::vector<int64_t> param_index;  // [E * F] row of the flat vector per slot, or kSlot*
  std::vector<int64_t> pos_w;  // [N] token id + 1 for wte rows of GPT-2 graphs, else 0

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
absl::StatusOr<NeuralGraph> BuildGpt2Graph(const std::vector<ParamSpec>& params,
                                           int64_t num_heads);

absl::StatusOr<NeuralGraph> BuildGraph(const std::vector<ParamSpec>& params,
                                       const GraphSpec& spec);

}  // namespace nino

#endif  // NINO_COMMON_NINO_NEURAL_GRAPH_H_
