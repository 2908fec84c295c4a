// The hand-written GPT-2 graph builder (official NeuralGraphGPT, NINO_SPEC.md 3.5) that the
// library used before BuildGpt2Graph became DescribeGpt2 + BuildGraphFromDescription. Test-only:
// the reference the derived graph must equal node for node and edge for edge, order included.
#ifndef NINO_COMMON_NINO_TESTING_GPT2_REFERENCE_GRAPH_H_
#define NINO_COMMON_NINO_TESTING_GPT2_REFERENCE_GRAPH_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "common/nino/neural_graph.h"

namespace nino::testing {

// HF GPT-2 naming (optionally prefixed "transformer."), Conv1D weights stored (in, out), tied
// lm_head; wte / wpe / ln_f optional, at least one block. INVALID_ARGUMENT naming the parameter
// for any other layout.
absl::StatusOr<NeuralGraph> BuildGpt2ReferenceGraph(const std::vector<ParamSpec>& params,
                                                    int64_t num_heads);

}  // namespace nino::testing

#endif  // NINO_COMMON_NINO_TESTING_GPT2_REFERENCE_GRAPH_H_
