#include "common/nino/gpt2_description.h"

#include <map>
#include <set>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/nino/gpt2_params.h"
#include "common/nino/shape_string.h"
#include "common/status/status_macros.h"

namespace nino {
namespace {

// GPT-2's dimensions, checked as the hand-written builder checked them (same order, same
// messages).
struct Gpt2Dims {
  std::string pre;  // "transformer." or ""
  int64_t d = 0, fb = 0, blocks = 0;
  bool wte = false, wpe = false, ln_f = false;
};

absl::StatusOr<Gpt2Dims> Gpt2DimsOf(const std::vector<ParamSpec>& params, int64_t num_heads,
                                    Gpt2Params* named) {
  if (params.empty()) return absl::InvalidArgumentError("the model has no parameters");
  Gpt2Dims g;
  g.pre = absl::StartsWith(params.front().name, "transformer.") ? "transformer." : "";
  const ParamSpec* attn0 = named->Raw(g.pre + "h.0.attn.c_attn.weight");
  if (attn0 == nullptr || attn0->shape.size() != 2) {
    return absl::InvalidArgumentError(absl::StrCat("GPT-2 graph: missing parameter '", g.pre,
                                                   "h.0.attn.c_attn.weight' of shape (d, 3d)"));
  }
  g.d = attn0->shape[0];
  if (attn0->shape[1] != 3 * g.d) {
    return absl::InvalidArgumentError(absl::StrCat(
        "GPT-2 graph: c_attn.weight has shape ", ShapeString(attn0->shape), ", expected (d, 3d)"));
  }
  if (num_heads <= 0 || g.d % num_heads != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("GPT-2 graph: n_embd ", g.d, " is not divisible by num_heads ", num_heads));
  }
  const ParamSpec* fc0 = named->Raw(g.pre + "h.0.mlp.c_fc.weight");
  if (fc0 == nullptr || fc0->shape.size() != 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("GPT-2 graph: missing parameter '", g.pre, "h.0.mlp.c_fc.weight'"));
  }
  g.fb = fc0->shape[1];
  while (named->Has(absl::StrCat(g.pre, "h.", g.blocks, ".attn.c_attn.weight"))) ++g.blocks;
  for (const char* table : {"wte", "wpe"}) {
    const std::string name = absl::StrCat(g.pre, table, ".weight");
    if (!named->Has(name)) continue;
    const ParamSpec* raw = named->Raw(name);
    if (raw->shape.size() != 2) {
      return absl::InvalidArgumentError(absl::StrCat("GPT-2 graph: ", table, " must be 2-D"));
    }
    NINO_RETURN_IF_ERROR(named->Get(name, {raw->shape[0], g.d}).status());
    (table[1] == 't' ? g.wte : g.wpe) = true;
  }
  g.ln_f = named->Has(g.pre + "ln_f.weight");
  return g;
}

// Every block's parameters with their shapes, then ln_f's, then nothing else.
absl::Status CheckGpt2Shapes(const Gpt2Dims& g, Gpt2Params* named) {
  const int64_t d = g.d, fb = g.fb;
  for (int64_t b = 0; b < g.blocks; ++b) {
    const std::string h = absl::StrCat(g.pre, "h.", b, ".");
    const std::pair<const char*, std::vector<int64_t>> shapes[] = {
        {"ln_1.weight", {d}},
        {"ln_1.bias", {d}},
        {"attn.c_attn.weight", {d, 3 * d}},
        {"attn.c_attn.bias", {3 * d}},
        {"attn.c_proj.weight", {d, d}},
        {"attn.c_proj.bias", {d}},
        {"ln_2.weight", {d}},
        {"ln_2.bias", {d}},
        {"mlp.c_fc.weight", {d, fb}},
        {"mlp.c_fc.bias", {fb}},
        {"mlp.c_proj.weight", {fb, d}},
        {"mlp.c_proj.bias", {d}}};
    for (const auto& [name, shape] : shapes) {
      NINO_RETURN_IF_ERROR(named->Get(h + name, shape).status());
    }
  }
  if (g.ln_f) {
    NINO_RETURN_IF_ERROR(named->Get(g.pre + "ln_f.weight", {d}).status());
    NINO_RETURN_IF_ERROR(named->Get(g.pre + "ln_f.bias", {d}).status());
  }
  return named->CheckAllUsed();
}

}  // namespace

absl::StatusOr<ModelDescription> DescribeGpt2(const std::vector<ParamSpec>& params,
                                              int64_t num_heads) {
  Gpt2Params named(params);
  NINO_ASSIGN_OR_RETURN(const Gpt2Dims g, Gpt2DimsOf(params, num_heads, &named));
  NINO_RETURN_IF_ERROR(CheckGpt2Shapes(g, &named));
  const std::string& pre = g.pre;
  ModelDescriptionBuilder b;
  std::string x;
  if (g.wte) x = b.Embedding(pre + "wte.weight", "token", "", "wte");
  if (g.wpe) x = b.Embedding(pre + "wpe.weight", "position", x, "wpe");
  if (x.empty()) x = b.Input(g.d, "input");
  for (int64_t blk = 0; blk < g.blocks; ++blk) {
    const std::string h = absl::StrCat(pre, "h.", blk, ".");
    const std::string n = absl::StrCat("h.", blk, ".");  // group names
    std::string y = b.Norm(x, h + "ln_1.weight", h + "ln_1.bias", n + "ln_1");
    y = b.Attention(y, num_heads, h + "attn.c_attn.weight", h + "attn.c_attn.bias",
                    /*transposed=*/true, n + "attn");
    y = b.DenseTransposed(y, h + "attn.c_proj.weight", h + "attn.c_proj.bias", n + "attn.c_proj");
    x = b.Add(x, y, n + "add_1");
    y = b.Norm(x, h + "ln_2.weight", h + "ln_2.bias", n + "ln_2");
    y = b.DenseTransposed(y, h + "mlp.c_fc.weight", h + "mlp.c_fc.bias", n + "mlp.c_fc");
    y = b.Alias(y, "gelu", n + "mlp.act");
    y = b.DenseTransposed(y, h + "mlp.c_proj.weight", h + "mlp.c_proj.bias", n + "mlp.c_proj");
    x = b.Add(x, y, n + "add_2");
  }
  if (g.ln_f) b.Norm(x, pre + "ln_f.weight", pre + "ln_f.bias", "ln_f");
  return b.description();
}

}  // namespace nino
