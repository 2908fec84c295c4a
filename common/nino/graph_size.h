// The size of the neural graph a parameter layout maps to (nodes, edges, feature slots),
// counted from parameter names and shapes in closed form: no edge list is built, so counting a
// 100M-parameter layout costs microseconds. Used to estimate a nowcast's memory before the
// graph exists (memory_estimate.h).
//
// Contract: for every layout that BuildGraph() accepts, CountGraph() returns exactly the
// num_nodes, num_edges() and feat_size of the graph BuildGraph() builds (checked by
// memory_estimate_test for generic, GPT-2, Llama and described layouts). Described graphs are
// counted by the description's resolve pass (CountGraphFromDescription), which checks as much
// as BuildGraphFromDescription does. For a layout BuildGraph() rejects,
// CountGraph() either returns INVALID_ARGUMENT or some size; it never crashes. It checks only
// what it needs to count (the builders keep the authority over what is mappable).
#ifndef NINO_COMMON_NINO_GRAPH_SIZE_H_
#define NINO_COMMON_NINO_GRAPH_SIZE_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "common/nino/neural_graph.h"

namespace nino {

struct GraphSize {
  int64_t nodes = 0;
  int64_t edges = 0;      // including one self-loop per node
  int64_t feat_size = 1;  // F: slots per edge
  int64_t params = 0;     // rows of the flat vector the graph covers
};

// Sizes of the graph BuildGraph(params, spec) would build. kAuto is resolved by InferGraphSpec.
absl::StatusOr<GraphSize> CountGraph(const std::vector<ParamSpec>& params, const GraphSpec& spec);

// The graphs a NowcastEngine builds for the layout: one, or one per transformer block in
// subgraph mode (SplitIntoBlocks), in order.
absl::StatusOr<std::vector<GraphSize>> CountEngineGraphs(const std::vector<ParamSpec>& params,
                                                         const GraphSpec& spec, bool subgraph);

}  // namespace nino

#endif  // NINO_COMMON_NINO_GRAPH_SIZE_H_
