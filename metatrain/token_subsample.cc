#include "metatrain/token_subsample.h"

#include <algorithm>
#include <set>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace nino::metatrain {
namespace {

bool IsTokenRowTensor(const std::string& name, GraphSpec::Kind kind) {
  if (kind == GraphSpec::Kind::kGpt2)
    return name == "wte.weight" || absl::EndsWith(name, ".wte.weight");
  if (kind == GraphSpec::Kind::kLlama)
    return name == "model.embed_tokens.weight" || name == "lm_head.weight";
  return false;
}

}  // namespace

absl::StatusOr<TokenSubsample> TokenSubsample::Create(const std::vector<ParamSpec>& params,
                                                      const GraphSpec& spec, int64_t wte_size) {
  if (wte_size < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("wte_size must be >= 0 (0: no subsampling), got ", wte_size));
  }
  TokenSubsample s;
  s.full_ = params;
  s.wte_size_ = wte_size;
  for (const auto& p : params) {
    const bool token_rows = IsTokenRowTensor(p.name, spec.kind);
    s.token_rows_.push_back(token_rows);
    if (!token_rows) continue;
    if (p.shape.size() != 2 || (s.vocab_ > 0 && p.shape[0] != s.vocab_)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "token-row tensor '", p.name, "' must be (V, d) with the same V as the embedding"));
    }
    s.vocab_ = p.shape[0];
  }
  s.active_ = wte_size > 0 && s.vocab_ > wte_size;
  if (!s.active_) {
    s.reduced_ = params;
    return s;
  }
  std::vector<std::pair<std::string, std::vector<int64_t>>> named;
  for (size_t t = 0; t < params.size(); ++t) {
    std::vector<int64_t> shape = params[t].shape;
    if (s.token_rows_[t]) shape[0] = wte_size;
    named.push_back({params[t].name, shape});
  }
  auto reduced = MakeParamTable(named);
  if (!reduced.ok()) return reduced.status();
  s.reduced_ = std::move(*reduced);
  return s;
}

torch::Tensor TokenSubsample::Draw(std::mt19937_64* rng) const {
  // Floyd's algorithm: a uniform wte_size-subset of [0, V) with exactly wte_size draws.
  std::set<int64_t> kept;
  for (int64_t j = vocab_ - wte_size_; j < vocab_; ++j) {
    const int64_t t = std::uniform_int_distribution<int64_t>(0, j)(*rng);
    kept.insert(kept.count(t) ? j : t);
  }
  return torch::tensor(std::vector<int64_t>(kept.begin(), kept.end()), torch::kInt64);
}

torch::Tensor TokenSubsample::FlatRows(const torch::Tensor& token_ids) const {
  TORCH_CHECK(active_, "FlatRows on an inactive token subsample");
  TORCH_CHECK(token_ids.dim() == 1 && token_ids.numel() == wte_size_, "token_ids must be [",
              wte_size_, "], got ", token_ids.sizes());
  const torch::Tensor ids = token_ids.to(torch::kInt64);
  TORCH_CHECK(ids.min().item<int64_t>() >= 0 && ids.max().item<int64_t>() < vocab_,
              "token ids must be in [0, ", vocab_, ")");
  std::vector<torch::Tensor> rows;
  for (size_t t = 0; t < full_.size(); ++t) {
    const ParamSpec& p = full_[t];
    if (!token_rows_[t]) {
      rows.push_back(torch::arange(p.offset, p.offset + p.numel, torch::kInt64));
      continue;
    }
    const int64_t d = p.shape[1];
    rows.push_back((p.offset + ids.unsqueeze(1) * d + torch::arange(d, torch::kInt64).unsqueeze(0))
                       .view({-1}));
  }
  return torch::cat(rows);
}

torch::Tensor TokenSubsample::PosW(const torch::Tensor& reduced_pos_w,
                                   const torch::Tensor& token_ids) {
  const torch::Tensor token_node = reduced_pos_w > 0;
  const torch::Tensor which = (reduced_pos_w - 1).clamp_min(0);
  TORCH_CHECK(reduced_pos_w.max().item<int64_t>() <= token_ids.numel(),
              "the graph has more token nodes than kept token ids");
  return torch::where(token_node, token_ids.to(torch::kInt64).index_select(0, which) + 1,
                      torch::zeros_like(reduced_pos_w));
}

}  // namespace nino::metatrain
