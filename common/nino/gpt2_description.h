// The model description of HF GPT-2 (docs/GRAPH_DESCRIPTION.md, "Version 2", GPT-2): the `gpt2`
// graph kind is this description built by BuildGraphFromDescription, which gives the official
// NeuralGraphGPT graph (NINO_SPEC.md 3.5) node for node and edge for edge, order included
// (gpt2_description_test, against the hand-written builder kept as a test reference).
#ifndef NINO_COMMON_NINO_GPT2_DESCRIPTION_H_
#define NINO_COMMON_NINO_GPT2_DESCRIPTION_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "common/nino/model_description.h"
#include "common/nino/neural_graph.h"

namespace nino {

// The description (version 2) of a GPT-2 parameter table: HF names, optionally prefixed
// "transformer.": wte.weight (V, d) and wpe.weight (P, d) (each optional), blocks
// h.<b>.{ln_1, attn.c_attn, attn.c_proj, ln_2, mlp.c_fc, mlp.c_proj}.{weight, bias} for
// b = 0 .. L-1 (L >= 1; Conv1D weights stored (in, out): c_attn (d, 3d), c_proj (d, d), c_fc
// (d, F), mlp.c_proj (F, d)), ln_f.{weight, bias} (optional); a tied lm_head (no lm_head.weight).
// These are the layouts subgraph mode makes too (one block, with or without the embeddings and
// ln_f). Ops: embedding wte (token), embedding wpe (position) into it (or an input of d units
// without either); per block norm ln_1, attention (packed, transposed, num_heads), dense c_proj
// (transposed), add, norm ln_2, dense c_fc (transposed), alias gelu, dense mlp.c_proj
// (transposed), add; norm ln_f. INVALID_ARGUMENT ("GPT-2 graph: ...", naming the parameter) for
// any other layout: a missing or misshapen parameter, n_embd not divisible by num_heads, a
// parameter outside the layout, no block 0.
absl::StatusOr<ModelDescription> DescribeGpt2(const std::vector<ParamSpec>& params,
                                              int64_t num_heads);

}  // namespace nino

#endif  // NINO_COMMON_NINO_GPT2_DESCRIPTION_H_
