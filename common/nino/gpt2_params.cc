#include "common/nino/gpt2_params.h"

#include "absl/strings/str_cat.h"
#include "common/nino/shape_string.h"

namespace nino {

Gpt2Params::Gpt2Params(const std::vector<ParamSpec>& params) {
  for (const auto& p : params) by_name_[p.name] = &p;
}

absl::StatusOr<const ParamSpec*> Gpt2Params::Get(const std::string& name,
                                                 const std::vector<int64_t>& shape) {
  auto it = by_name_.find(name);
  if (it == by_name_.end()) {
    return absl::InvalidArgumentError(absl::StrCat("GPT-2 graph: missing parameter '", name, "'"));
  }
  if (it->second->shape != shape) {
    return absl::InvalidArgumentError(absl::StrCat("GPT-2 graph: parameter '", name, "' has shape ",
                                                   ShapeString(it->second->shape), ", expected ",
                                                   ShapeString(shape)));
  }
  used_.insert(name);
  return it->second;
}

const ParamSpec* Gpt2Params::Raw(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

absl::Status Gpt2Params::CheckAllUsed() const {
  for (const auto& [name, p] : by_name_) {
    if (!used_.count(name)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "GPT-2 graph: parameter '", name, "' ", ShapeString(p->shape),
          " is not part of the GPT-2 layout (wte, wpe, h.<b>.{ln_1, attn.c_attn, attn.c_proj, "
          "ln_2, mlp.c_fc, mlp.c_proj}, ln_f; tied lm_head)"));
    }
  }
  return absl::OkStatus();
}

}  // namespace nino
