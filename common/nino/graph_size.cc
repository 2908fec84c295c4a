#include "common/nino/graph_size.h"

#include <algorithm>
#include <map>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/nino/graph_from_description.h"
#include "common/nino/nowcast_engine.h"

namespace nino {
namespace {

// BuildGenericGraph's cursor pass (neural_graph.cc) without the edges: each parameter's source
// rows start at r, its targets at c + the auxiliary-node shift of its group.
absl::StatusOr<GraphSize> CountGeneric(const std::vector<ParamSpec>& params) {
  if (params.empty()) return absl::InvalidArgumentError("the model has no parameters");
  struct Raw {
    int64_t r, c, n_in, n_out, group;
  };
  std::vector<Raw> raw;
  std::map<int64_t, int64_t> group_of_c;
  std::vector<int64_t> group_flags;
  int64_t r = 0, c = 0, prev_out = -1, feat = 1, edges = 0;
  for (size_t l = 0; l < params.size(); ++l) {
    const ParamSpec& p = params[l];
    if (p.shape.empty()) continue;
    if (p.shape.size() > 4) {
      return absl::InvalidArgumentError(absl::StrCat("parameter '", p.name, "' has ",
                                                     p.shape.size(),
                                                     " dimensions; the generic "
                                                     "graph supports at most 4"));
    }
    const int64_t n_out = p.shape[0];
    const int64_t n_in = p.shape.size() >= 2 ? p.shape[1] : 1;
    if (n_out <= 0 || n_in <= 0) {
      return absl::InvalidArgumentError(absl::StrCat("parameter '", p.name, "' is empty"));
    }
    if (p.shape.size() >= 3) {
      int64_t slots = 1;
      for (size_t d = 2; d < p.shape.size(); ++d) slots *= p.shape[d];
      feat = std::max(feat, slots);
    }
    if (p.shape.size() == 1) {
      c = std::max<int64_t>(0, c - n_out);
    } else {
      if (l == 0) c = n_in;
      prev_out = n_out;
    }
    auto it = group_of_c.find(c);
    if (it == group_of_c.end()) {
      it = group_of_c.emplace(c, static_cast<int64_t>(group_flags.size())).first;
      group_flags.push_back(0);
    }
    const bool residual = !absl::EndsWith(p.name, ".weight") && absl::StrContains(p.name, ".res");
    if (p.shape.size() == 1 && !residual) group_flags[it->second] += 1;
    raw.push_back(Raw{r, c, n_in, n_out, it->second});
    edges += n_in * n_out;
    r += n_in;
    c += n_out;
  }
  (void)prev_out;
  std::vector<int64_t> shift(group_flags.size());
  int64_t total = 0;
  for (size_t g = 0; g < group_flags.size(); ++g) shift[g] = (total += group_flags[g]);
  int64_t nodes = 0;  // largest node id + 1 over every edge
  for (const Raw& x : raw) {
    nodes = std::max({nodes, x.r + x.n_in, x.c + x.n_out + shift[x.group]});
  }
  return GraphSize{nodes, edges + nodes, feat, TotalParams(params)};
}

const ParamSpec* Find(const std::vector<ParamSpec>& params, const std::string& name) {
  for (const ParamSpec& p : params) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

// Dimension `dim` of parameter `name`, or INVALID_ARGUMENT naming it.
absl::StatusOr<int64_t> Dim(const std::vector<ParamSpec>& params, const std::string& name,
                            size_t dim, absl::string_view graph) {
  const ParamSpec* p = Find(params, name);
  if (p == nullptr || p->shape.size() <= dim || p->shape[dim] <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(graph, " graph: missing or malformed parameter '", name, "'"));
  }
  return p->shape[dim];
}

// BuildGpt2Graph's node and edge counts (neural_graph.cc): per block 4d + H + Fb + 10 nodes and
// 4d^2 + 2 d Fb + Fb + 13 d edges; wte/wpe add V + Ppos token/position nodes and (V + Ppos) d
// edges, ln_f 2 nodes and 2 d edges, the last block's output d nodes.
absl::StatusOr<GraphSize> CountGpt2(const std::vector<ParamSpec>& params, int64_t num_heads) {
  if (params.empty()) return absl::InvalidArgumentError("the model has no parameters");
  const std::string pre =
      absl::StartsWith(params.front().name, "transformer.") ? "transformer." : "";
  absl::StatusOr<int64_t> d = Dim(params, pre + "h.0.attn.c_attn.weight", 0, "GPT-2");
  if (!d.ok()) return d.status();
  absl::StatusOr<int64_t> fb = Dim(params, pre + "h.0.mlp.c_fc.weight", 1, "GPT-2");
  if (!fb.ok()) return fb.status();
  if (num_heads <= 0 || *d % num_heads != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("GPT-2 graph: n_embd ", *d, " is not divisible by num_heads ", num_heads));
  }
  int64_t L = 0;
  while (Find(params, absl::StrCat(pre, "h.", L, ".attn.c_attn.weight")) != nullptr) ++L;
  const ParamSpec* wte = Find(params, pre + "wte.weight");
  const ParamSpec* wpe = Find(params, pre + "wpe.weight");
  const int64_t V = wte != nullptr && !wte->shape.empty() ? wte->shape[0] : 0;
  const int64_t Ppos = wpe != nullptr && !wpe->shape.empty() ? wpe->shape[0] : 0;
  const bool lnf = Find(params, pre + "ln_f.weight") != nullptr;
  const int64_t D = *d, H = num_heads, Fb = *fb;
  const int64_t base0 = V + Ppos;
  int64_t nodes = 0;
  if (L == 0) {
    nodes = base0 + (lnf ? 2 : 0) + D;
  } else {
    nodes = base0 + L * (4 * D + H + Fb + 10) + (lnf ? 2 : 0) + D;
  }
  const int64_t edges =
      (V + Ppos) * D + L * (4 * D * D + 2 * D * Fb + Fb + 13 * D) + (lnf ? 2 * D : 0) + nodes;
  return GraphSize{nodes, edges, 1, TotalParams(params)};
}

// BuildLlamaGraph's closed form (neural_graph.cc, above BuildLlamaGraph).
absl::StatusOr<GraphSize> CountLlama(const std::vector<ParamSpec>& params, int64_t num_heads,
                                     int64_t num_kv_heads) {
  absl::StatusOr<int64_t> V = Dim(params, "model.embed_tokens.weight", 0, "Llama");
  if (!V.ok()) return V.status();
  absl::StatusOr<int64_t> d = Dim(params, "model.embed_tokens.weight", 1, "Llama");
  if (!d.ok()) return d.status();
  absl::StatusOr<int64_t> ff = Dim(params, "model.layers.0.mlp.gate_proj.weight", 0, "Llama");
  if (!ff.ok()) return ff.status();
  const int64_t H = num_heads, KV = num_kv_heads == 0 ? num_heads : num_kv_heads;
  if (H <= 0 || KV <= 0 || H % KV != 0 || *d % H != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("Llama graph: heads ", H, " / kv heads ", KV, " do not fit hidden size ", *d));
  }
  int64_t L = 0;
  while (Find(params, absl::StrCat("model.layers.", L, ".self_attn.q_proj.weight")) != nullptr) {
    ++L;
  }
  const int64_t D = *d, hd = D / H, Dq = H * hd, Dkv = KV * hd;
  const bool untied = Find(params, "lm_head.weight") != nullptr;
  const int64_t nodes = *V + L * (3 * D + H + Dq + Dkv + *ff + 2) + 1 + D + (untied ? *V : 0);
  const int64_t edges = *V * D + L * (2 * D * Dq + 2 * D * Dkv + Dq + Dkv + 3 * D * *ff + 5 * D) +
                        D + (untied ? *V * D : 0) + nodes;
  return GraphSize{nodes, edges, 1, TotalParams(params)};
}

// The description's resolve pass without the edge list (graph_from_description.h): exact, and
// O(ops + parameters), so no closed form of its own.
absl::StatusOr<GraphSize> CountDescribed(const std::vector<ParamSpec>& params,
                                         const GraphSpec& spec) {
  if (spec.description == nullptr) {
    return absl::InvalidArgumentError("graph kind described: no model description given");
  }
  absl::StatusOr<DescribedGraphSize> size = CountGraphFromDescription(params, *spec.description);
  if (!size.ok()) return size.status();
  return GraphSize{size->nodes, size->edges, size->feat_size, TotalParams(params)};
}

}  // namespace

absl::StatusOr<GraphSize> CountGraph(const std::vector<ParamSpec>& params, const GraphSpec& spec) {
  switch (spec.kind) {
    case GraphSpec::Kind::kAuto: {
      absl::StatusOr<GraphSpec> inferred =
          InferGraphSpec(params, spec.num_heads, spec.num_kv_heads);
      if (!inferred.ok()) return inferred.status();
      return CountGraph(params, *inferred);
    }
    case GraphSpec::Kind::kGpt2:
      return CountGpt2(params, spec.num_heads);
    case GraphSpec::Kind::kLlama:
      return CountLlama(params, spec.num_heads, spec.num_kv_heads);
    case GraphSpec::Kind::kDescribed:
      return CountDescribed(params, spec);
    case GraphSpec::Kind::kGeneric:
      break;
  }
  return CountGeneric(params);
}

absl::StatusOr<std::vector<GraphSize>> CountEngineGraphs(const std::vector<ParamSpec>& params,
                                                         const GraphSpec& spec, bool subgraph) {
  GraphSpec resolved = spec;
  if (spec.kind == GraphSpec::Kind::kAuto) {
    absl::StatusOr<GraphSpec> inferred = InferGraphSpec(params, spec.num_heads, spec.num_kv_heads);
    if (!inferred.ok()) return inferred.status();
    resolved = *inferred;
  }
  std::vector<GraphSize> sizes;
  if (!subgraph) {
    absl::StatusOr<GraphSize> one = CountGraph(params, resolved);
    if (!one.ok()) return one.status();
    sizes.push_back(*one);
    return sizes;
  }
  absl::StatusOr<std::vector<ParamGroup>> groups = SplitIntoBlocks(params, resolved);
  if (!groups.ok()) return groups.status();
  for (size_t i = 0; i < groups->size(); ++i) {
    absl::StatusOr<GraphSize> part = CountGraph((*groups)[i].params, resolved);
    if (!part.ok()) {
      return absl::Status(part.status().code(),
                          absl::StrCat("subgraph ", i, ": ", part.status().message()));
    }
    sizes.push_back(*part);
  }
  return sizes;
}

}  // namespace nino
