// The one graph builder driven by a model description (issue 15): any model whose connectivity a
// ModelDescription states (chains, flatten, pooling, residual blocks, concatenation; version 2:
// embeddings, attention, (in, out) weights) becomes a neural graph without per-architecture code.
// docs/GRAPH_DESCRIPTION.md is the contract: node allocation, edge order, edge types and slots, and
// the invariants below.
//
// For a strict chain of linear / conv layers, DescribeGenericChain + BuildGraphFromDescription
// equals BuildGenericGraph node for node and edge for edge (graph_from_description_test); for
// GPT-2, DescribeGpt2 + BuildGraphFromDescription is the gpt2 kind (gpt2_description.h).
#ifndef NINO_COMMON_NINO_GRAPH_FROM_DESCRIPTION_H_
#define NINO_COMMON_NINO_GRAPH_FROM_DESCRIPTION_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "common/nino/model_description.h"
#include "common/nino/neural_graph.h"

namespace nino {

// The graph of `params` (named_parameters order, as MakeParamTable makes it) connected as `d`
// says. Checks, each refusal INVALID_ARGUMENT naming the op (DescriptionOpLabel) and, where one
// is involved, the parameter: ValidateModelDescription; every parameter named in exactly one op
// and every name a parameter; dense weights 2-D (out, in) or 4-D (out, in, kh, kw), non-empty,
// with `in` equal to the input group's units (a 4-D weight whose `in` divides them is named a
// grouped / depthwise convolution); `transposed` dense weights 2-D (in, out); a dense bias 1-D of
// length out; norm gains and shifts 1-D with one entry per unit of the input group; add operands
// of equal size; embedding tables non-empty, their last dimension = the units of the one group
// they feed; attention weights (3 D, d) packed, (d, 3 D) packed transposed, three (D, d) split
// ((d, D) transposed) with d the input's units, k / v as large as q (grouped-query attention is
// refused), D divisible by heads, biases (3 D) packed or (D) each; at most 2^40 units per group.
// Edges come in op order (docs/GRAPH_DESCRIPTION.md, "Version 2"). The built graph passes
// NeuralGraph::Validate() (every parameter row in exactly one slot, one self-loop per node); a
// failure there is INTERNAL.
absl::StatusOr<NeuralGraph> BuildGraphFromDescription(const std::vector<ParamSpec>& params,
                                                      const ModelDescription& d);

// The size of that graph, from the same checks without building the edge list (O(ops + params)
// time and memory): what graph_size.h's CountGraph reports for GraphSpec::Kind::kDescribed.
struct DescribedGraphSize {
  int64_t nodes = 0;
  int64_t edges = 0;  // including one self-loop per node
  int64_t feat_size = 1;
};
absl::StatusOr<DescribedGraphSize> CountGraphFromDescription(const std::vector<ParamSpec>& params,
                                                             const ModelDescription& d);

// The description of the generic chain graph (BuildGenericGraph) of `params`: an input of
// shape[1] of the first weight, then per 2-D / 4-D weight a dense op named after its module
// (with the module's first following 1-D parameter not named "*.weight" as its bias), and the
// other 1-D parameters as norm ops (one per module; "*.weight" is the gain, anything else the
// shift). INVALID_ARGUMENT, naming the parameter, where BuildGenericGraph refuses the layout
// (first parameter 1-D, a module's parameters not contiguous) and for what version 1 cannot say
// as the generic graph does: 0-D and 3-D (Conv1d) parameters, 1-D parameters the generic graph
// types as residual / self-loop edges (names containing ".res" / ".self_loop", not "*.weight").
// Shape mismatches between layers are left to BuildGraphFromDescription.
absl::StatusOr<ModelDescription> DescribeGenericChain(const std::vector<ParamSpec>& params);

}  // namespace nino

#endif  // NINO_COMMON_NINO_GRAPH_FROM_DESCRIPTION_H_
