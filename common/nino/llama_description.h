// The model description of a Hugging Face Llama layout with the model's real connectivity
// (docs/GRAPH_DESCRIPTION.md, "Version 4", Llama): grouped-query attention and the gated MLP
// (SwiGLU) as the model computes them. It is not the `llama` graph kind, which stays the official
// NeuralGraphLlama graph (with its quirks, for parity with the official code); this is the graph
// a user gets under the `described` kind by passing this description. Which of the two NiNo
// predicts better is a measurement no official checkpoint was meta-trained for.
#ifndef NINO_COMMON_NINO_LLAMA_DESCRIPTION_H_
#define NINO_COMMON_NINO_LLAMA_DESCRIPTION_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "common/nino/model_description.h"
#include "common/nino/neural_graph.h"

namespace nino {

// The description (version 4 when num_kv_heads < num_heads or always: it uses `multiply`) of
// the layout BuildLlamaGraph takes (HF LlamaForCausalLM names, in named_parameters order; the
// same checks, with the same messages: CheckLlamaLayout). Ops: embedding embed_tokens (token);
// per layer: norm input_layernorm (gain) on the residual stream, attention (split q / k / v,
// heads = num_heads, kv_heads = num_kv_heads when smaller), dense o_proj, add (residual), norm
// post_attention_layernorm, dense gate_proj, alias silu, dense up_proj, multiply (gate * up),
// dense down_proj, add (residual); then norm model.norm and, when untied, dense lm_head. Group
// names follow the parameter names ("layers.<i>.q_proj", ...).
absl::StatusOr<ModelDescription> DescribeLlama(const std::vector<ParamSpec>& params,
                                               int64_t num_heads, int64_t num_kv_heads);

}  // namespace nino

#endif  // NINO_COMMON_NINO_LLAMA_DESCRIPTION_H_
