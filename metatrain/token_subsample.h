// The LM recipe's token-embedding subsampling (shared/spec/META_TRAINING.md section 2, item 5):
// when a language model's embedding has more rows than `wte_size` (1000 officially, for GPT-2's
// 50,257 tokens), each training sample keeps a random subset of wte_size token rows, so that the
// neural graph stays small. The graph is built once for the reduced layout (the embedding
// (wte_size, d)); a sample only changes which flat rows fill it and the token ids in pos_w.
//
// Token-row tensors (one row per vocabulary token, shape (V, d)): GPT-2 `wte.weight` (the
// official case; lm_head is tied to it and has no parameter); Llama `model.embed_tokens.weight`
// and, when untied, `lm_head.weight` (our extension: the same kept tokens in both, so the graph's
// token nodes and logit nodes stay consistent; the official code never trained on Llama).
//
// Contract: Create() never fails for a layout without token-row tensors (nothing to subsample).
// A subsampler is active() iff wte_size > 0 and V > wte_size; when inactive, reduced_params() is
// the full layout and the other calls must not be used. Immutable after Create(): thread-safe.
#ifndef NINO_METATRAIN_TOKEN_SUBSAMPLE_H_
#define NINO_METATRAIN_TOKEN_SUBSAMPLE_H_

#include <torch/torch.h>

#include <cstdint>
#include <random>
#include <vector>

#include "absl/status/statusor.h"
#include "common/nino/neural_graph.h"

namespace nino::metatrain {

class TokenSubsample {
 public:
  // `params`: the full layout; `spec`: its resolved graph kind (kGpt2 / kLlama look for token
  // rows, kGeneric never subsamples). wte_size 0 disables subsampling. INVALID_ARGUMENT for a
  // negative wte_size or token-row tensors that are not 2-D with the same number of rows.
  static absl::StatusOr<TokenSubsample> Create(const std::vector<ParamSpec>& params,
                                               const GraphSpec& spec, int64_t wte_size);

  bool active() const { return active_; }
  int64_t vocab() const { return vocab_; }  // V, 0 when the layout has no token rows
  int64_t wte_size() const { return wte_size_; }
  // The layout the graph is built for: token-row tensors (wte_size, d), offsets recomputed.
  const std::vector<ParamSpec>& reduced_params() const { return reduced_; }

  // wte_size distinct token ids in [0, V), uniformly without replacement (Floyd's algorithm,
  // wte_size draws from `rng`), sorted ascending: [wte_size] int64.
  torch::Tensor Draw(std::mt19937_64* rng) const;
  // token_ids [wte_size] int64 (each in [0, V)) -> [P'] int64: for every row of the reduced
  // flat vector, its row in the full flat vector (so full.index_select(-1, rows) is the
  // reduced vector). INVALID_ARGUMENT (c10::Error) for a wrong count or an id out of range.
  torch::Tensor FlatRows(const torch::Tensor& token_ids) const;
  // The reduced graph's pos_w [N] (token node i holds i + 1, other nodes 0) with the kept
  // tokens' ids: node i gets token_ids[i] + 1 (1-based, as the official code); others stay 0.
  static torch::Tensor PosW(const torch::Tensor& reduced_pos_w, const torch::Tensor& token_ids);

 private:
  TokenSubsample() = default;

  bool active_ = false;
  int64_t vocab_ = 0, wte_size_ = 0;
  std::vector<ParamSpec> full_, reduced_;
  std::vector<bool> token_rows_;  // per tensor: one row per token
};

}  // namespace nino::metatrain

#endif  // NINO_METATRAIN_TOKEN_SUBSAMPLE_H_
