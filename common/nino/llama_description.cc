#include "common/nino/llama_description.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "common/status/status_macros.h"

namespace nino {

absl::StatusOr<ModelDescription> DescribeLlama(const std::vector<ParamSpec>& params,
                                               int64_t num_heads, int64_t num_kv_heads) {
  NINO_ASSIGN_OR_RETURN(const LlamaShape s, CheckLlamaLayout(params, num_heads, num_kv_heads));
  ModelDescriptionBuilder b;
  std::string x = b.Embedding("model.embed_tokens.weight", "token", "", "embed_tokens");
  for (int64_t i = 0; i < s.layers; ++i) {
    const std::string p = absl::StrCat("model.layers.", i, ".");
    const std::string g = absl::StrCat("layers.", i, ".");
    const std::string normed = b.Norm(x, p + "input_layernorm.weight", "", g + "input_layernorm");
    ModelDescriptionBuilder::AttentionWeights w;
    w.query = p + "self_attn.q_proj.weight";
    w.key = p + "self_attn.k_proj.weight";
    w.value = p + "self_attn.v_proj.weight";
    w.kv_heads = s.kv_heads < s.heads ? s.kv_heads : 0;  // 0: as many as the query heads
    const std::string attn = b.Attention(normed, s.heads, w, g + "self_attn");
    const std::string o = b.Dense(attn, p + "self_attn.o_proj.weight", "", g + "o_proj");
    x = b.Add(x, o, g + "attention_residual");
    const std::string m =
        b.Norm(x, p + "post_attention_layernorm.weight", "", g + "post_attention_layernorm");
    const std::string gate =
        b.Alias(b.Dense(m, p + "mlp.gate_proj.weight", "", g + "gate_proj"), "silu", g + "act_fn");
    const std::string up = b.Dense(m, p + "mlp.up_proj.weight", "", g + "up_proj");
    const std::string down =
        b.Dense(b.Multiply(gate, up, g + "gated"), p + "mlp.down_proj.weight", "", g + "down_proj");
    x = b.Add(x, down, g + "mlp_residual");
  }
  x = b.Norm(x, "model.norm.weight", "", "norm");
  if (!s.tie_embeddings) b.Dense(x, "lm_head.weight", "", "lm_head");
  return b.description();
}

}  // namespace nino
