#include "common/nino/neural_graph.h"

#include <algorithm>
#include <cctype>
#include <map>
#include <memory>
#include <set>
#include <unordered_map>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "common/nino/gpt2_description.h"
#include "common/nino/graph_from_description.h"
#include "common/nino/shape_string.h"
#include "common/status/status_macros.h"

namespace nino {
namespace {

// Edge-list builder shared by the graph classes.
class GraphBuilder {
 public:
  explicit GraphBuilder(int64_t feat_size) : feat_(feat_size) {}

  // Adds one edge and returns its index; all slots start as kSlotZero.
  int64_t Add(int64_t s, int64_t d, int64_t type) {
    g_.src.push_back(s);
    g_.dst.push_back(d);
    g_.type.push_back(type);
    g_.param_index.resize(g_.param_index.size() + feat_, kSlotZero);
    return g_.num_edges() - 1;
  }
  void AddWithSlot0(int64_t s, int64_t d, int64_t type, int64_t slot0) {
    int64_t e = Add(s, d, type);
    g_.param_index[e * feat_] = slot0;
  }
  void SetSlot(int64_t e, int64_t f, int64_t value) { g_.param_index[e * feat_ + f] = value; }
  NeuralGraph& graph() { return g_; }

  // Appends self-loops for every node 0..max id and fixes num_nodes.
  NeuralGraph Finish(int64_t num_params, int64_t num_nodes_hint = -1) {
    int64_t max_id = -1;
    for (size_t e = 0; e < g_.src.size(); ++e) max_id = std::max({max_id, g_.src[e], g_.dst[e]});
    const int64_t n = std::max(max_id + 1, num_nodes_hint);
    for (int64_t v = 0; v < n; ++v) AddWithSlot0(v, v, kEdgeSelfLoop, kSlotTwo);
    g_.num_nodes = n;
    g_.num_params = num_params;
    g_.feat_size = feat_;
    if (g_.pos_w.empty()) g_.pos_w.assign(n, 0);
    return std::move(g_);
  }

 private:
  int64_t feat_;
  NeuralGraph g_;
};

// Generic edge-type rules (spec 3.1), evaluated in priority order.
int64_t GenericEdgeType(const ParamSpec& p) {
  const size_t dim = p.shape.size();
  const bool is_weight = absl::EndsWith(p.name, ".weight");
  if (dim == 1 && is_weight) return kEdgeNormWeight;
  if (dim == 4) return kEdgeConv;
  if (dim == 2) return kEdgeFullyConnected;
  if (!is_weight && absl::StrContains(p.name, ".res")) return kEdgeResidual;
  if (!is_weight && absl::StrContains(p.name, ".self_loop")) return kEdgeSelfLoop;
  return kEdgeBias;
}

std::string ModuleName(const std::string& param_name) {
  size_t dot = param_name.rfind('.');
  return dot == std::string::npos ? std::string() : param_name.substr(0, dot);
}

}  // namespace

absl::StatusOr<std::vector<ParamSpec>> MakeParamTable(
    const std::vector<std::pair<std::string, std::vector<int64_t>>>& named_shapes) {
  std::vector<ParamSpec> out;
  std::set<std::string> seen;
  int64_t offset = 0;
  for (const auto& [name, shape] : named_shapes) {
    if (!seen.insert(name).second) {
      return absl::InvalidArgumentError(absl::StrCat("duplicate parameter name '", name, "'"));
    }
    int64_t numel = 1;
    for (int64_t s : shape) {
      if (s < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("parameter '", name, "' has a negative dimension ", ShapeString(shape)));
      }
      numel *= s;
    }
    out.push_back(ParamSpec{name, shape, offset, numel});
    offset += numel;
  }
  return out;
}

int64_t TotalParams(const std::vector<ParamSpec>& params) {
  return params.empty() ? 0 : params.back().offset + params.back().numel;
}

absl::StatusOr<GraphSpec> ParseGraphKind(const std::string& kind, int64_t num_heads,
                                         int64_t num_kv_heads,
                                         std::shared_ptr<const ModelDescription> description) {
  GraphSpec spec;
  if (kind == "described") {
    if (description == nullptr) {
      return absl::InvalidArgumentError(
          "graph kind described needs a model description (docs/GRAPH_DESCRIPTION.md)");
    }
    spec.kind = GraphSpec::Kind::kDescribed;
    spec.description = std::move(description);
    return spec;
  }
  if (description != nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "graph kind ", kind, " does not read a model description (use kind described)"));
  }
  if (kind == "generic" || kind == "mlp" || kind == "cnn") {
    spec.kind = GraphSpec::Kind::kGeneric;
  } else if (kind == "auto") {
    if (num_heads < 0 || num_kv_heads < 0) {
      return absl::InvalidArgumentError(absl::StrCat("graph kind auto: negative head counts (",
                                                     num_heads, ", ", num_kv_heads, ")"));
    }
    spec.kind = GraphSpec::Kind::kAuto;
    spec.num_heads = num_heads;
    spec.num_kv_heads = num_kv_heads;
  } else if (kind == "gpt2" || kind == "llama") {
    spec.kind = kind == "gpt2" ? GraphSpec::Kind::kGpt2 : GraphSpec::Kind::kLlama;
    if (num_heads <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("graph kind ", kind, " needs num_heads > 0, got ", num_heads));
    }
    spec.num_heads = num_heads;
    if (spec.kind == GraphSpec::Kind::kLlama) {
      if (num_kv_heads < 0 || (num_kv_heads > 0 && num_heads % num_kv_heads != 0)) {
        return absl::InvalidArgumentError(
            absl::StrCat("graph kind llama needs num_kv_heads = 0 (same as num_heads) or a divisor "
                         "of num_heads ",
                         num_heads, ", got ", num_kv_heads));
      }
      spec.num_kv_heads = num_kv_heads;
    }
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "unknown graph kind '", kind, "' (expected generic, gpt2, llama, auto or described)"));
  }
  return spec;
}

std::string GraphKindName(GraphSpec::Kind kind) {
  switch (kind) {
    case GraphSpec::Kind::kGpt2:
      return "gpt2";
    case GraphSpec::Kind::kLlama:
      return "llama";
    case GraphSpec::Kind::kAuto:
      return "auto";
    case GraphSpec::Kind::kDescribed:
      return "described";
    case GraphSpec::Kind::kGeneric:
      break;
  }
  return "generic";
}

torch::Tensor NeuralGraph::EdgeIndexTensor() const {
  const int64_t e = num_edges();
  auto t = torch::empty({2, e}, torch::kInt64);
  std::copy(src.begin(), src.end(), t.data_ptr<int64_t>());
  std::copy(dst.begin(), dst.end(), t.data_ptr<int64_t>() + e);
  return t;
}

torch::Tensor NeuralGraph::EdgeTypeTensor() const { return torch::tensor(type, torch::kInt64); }

torch::Tensor NeuralGraph::ParamIndexTensor() const {
  return torch::tensor(param_index, torch::kInt64).view({num_edges(), feat_size});
}

torch::Tensor NeuralGraph::PosWTensor() const { return torch::tensor(pos_w, torch::kInt64); }

absl::Status NeuralGraph::Validate() const {
  const int64_t e = num_edges();
  if (static_cast<int64_t>(dst.size()) != e || static_cast<int64_t>(type.size()) != e ||
      static_cast<int64_t>(param_index.size()) != e * feat_size) {
    return absl::InternalError("neural graph arrays have inconsistent lengths");
  }
  std::vector<uint8_t> covered(num_params, 0);
  std::vector<uint8_t> self_loop(num_nodes, 0);
  for (int64_t i = 0; i < e; ++i) {
    if (src[i] < 0 || src[i] >= num_nodes || dst[i] < 0 || dst[i] >= num_nodes) {
      return absl::InternalError(absl::StrCat("edge ", i, " has a node id out of [0, ", num_nodes,
                                              "): ", src[i], " -> ", dst[i]));
    }
    if (type[i] < 0 || type[i] > 14) {
      return absl::InternalError(absl::StrCat("edge ", i, " has type ", type[i]));
    }
    if (type[i] == kEdgeSelfLoop && src[i] == dst[i]) self_loop[src[i]] = 1;
    for (int64_t f = 0; f < feat_size; ++f) {
      const int64_t r = param_index[i * feat_size + f];
      if (r >= num_params || r < kSlotTwo) {
        return absl::InternalError(absl::StrCat("slot (", i, ", ", f, ") maps to ", r));
      }
      if (r >= 0) {
        if (covered[r]) {
          return absl::InternalError(absl::StrCat("parameter row ", r, " appears in two slots"));
        }
        covered[r] = 1;
      }
    }
  }
  for (int64_t r = 0; r < num_params; ++r) {
    if (!covered[r]) return absl::InternalError(absl::StrCat("parameter row ", r, " has no slot"));
  }
  for (int64_t v = 0; v < num_nodes; ++v) {
    if (!self_loop[v]) return absl::InternalError(absl::StrCat("node ", v, " has no self-loop"));
  }
  return absl::OkStatus();
}

absl::StatusOr<NeuralGraph> BuildGenericGraph(const std::vector<ParamSpec>& params) {
  if (params.empty()) return absl::InvalidArgumentError("the model has no parameters");
  // Feature slots: kh*kw of conv-like (>= 3-D) weights.
  int64_t feat = 1;
  for (const auto& p : params) {
    if (p.shape.size() > 4) {
      return absl::InvalidArgumentError(absl::StrCat("parameter '", p.name, "' has ",
                                                     p.shape.size(),
                                                     " dimensions; the generic "
                                                     "graph supports at most 4"));
    }
    if (p.shape.size() >= 3) {
      int64_t slots = 1;
      for (size_t d = 2; d < p.shape.size(); ++d) slots *= p.shape[d];
      feat = std::max(feat, slots);
    }
  }
  // The official class groups edges by module name; requiring each module's parameters to be
  // contiguous makes that order equal to parameter order (spec 3.2, 8.5), so reject the rest.
  {
    std::set<std::string> closed;
    std::string current;
    bool first = true;
    for (const auto& p : params) {
      std::string m = ModuleName(p.name);
      if (first || m != current) {
        if (!first) closed.insert(current);
        if (closed.count(m)) {
          return absl::InvalidArgumentError(
              absl::StrCat("parameters of module '", m,
                           "' are not contiguous in named_parameters order "
                           "(at '",
                           p.name, "'); the generic chain graph cannot map this layout"));
        }
        current = m;
        first = false;
      }
    }
  }
  if (params.front().shape.size() == 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the first parameter '", params.front().name,
        "' is 1-D; the generic chain graph needs a weight first (e.g. Linear or Conv2d)"));
  }

  struct RawParam {
    const ParamSpec* p;
    int64_t r, c, n_in, n_out, type, group;
  };
  std::vector<RawParam> raw;
  std::map<int64_t, int64_t> group_of_c;  // column cursor -> group id (creation order)
  std::vector<int64_t> group_flags;
  int64_t r = 0, c = 0;
  int64_t prev_out = -1;
  for (size_t l = 0; l < params.size(); ++l) {
    const ParamSpec& p = params[l];
    if (p.shape.empty()) continue;  // 0-d parameters are skipped
    const int64_t n_out = p.shape[0];
    const int64_t n_in = p.shape.size() >= 2 ? p.shape[1] : 1;
    if (n_out <= 0 || n_in <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("parameter '", p.name, "' has an empty shape ", ShapeString(p.shape)));
    }
    if (p.shape.size() == 1) {
      if (n_out != prev_out) {
        return absl::InvalidArgumentError(absl::StrCat(
            "1-D parameter '", p.name, "' has ", n_out, " entries but the preceding layer has ",
            prev_out, " outputs; the generic chain graph cannot map this layout"));
      }
      c = std::max<int64_t>(0, c - n_out);
    } else {
      if (l == 0) {
        c = n_in;
      } else if (n_in != prev_out) {
        return absl::InvalidArgumentError(
            absl::StrCat("weight '", p.name, "' ", ShapeString(p.shape), " takes ", n_in,
                         " inputs but the preceding layer has ", prev_out,
                         " outputs; the generic chain graph needs a strict chain of layers"));
      }
      prev_out = n_out;
    }
    const int64_t type = GenericEdgeType(p);
    auto it = group_of_c.find(c);
    if (it == group_of_c.end()) {
      it = group_of_c.emplace(c, static_cast<int64_t>(group_flags.size())).first;
      group_flags.push_back(0);
    }
    if (p.shape.size() == 1 && type != kEdgeResidual) group_flags[it->second] += 1;
    raw.push_back(RawParam{&p, r, c, n_in, n_out, type, it->second});
    r += n_in;
    c += n_out;
  }
  // Running total of auxiliary nodes, added to the target ids of each group's edges.
  std::vector<int64_t> shift(group_flags.size());
  int64_t total = 0;
  for (size_t gi = 0; gi < group_flags.size(); ++gi) {
    total += group_flags[gi];
    shift[gi] = total;
  }

  GraphBuilder b(feat);
  for (const RawParam& rp : raw) {
    const ParamSpec& p = *rp.p;
    const int64_t slots = p.numel / (rp.n_in * rp.n_out);
    const int64_t sh = shift[rp.group];
    for (int64_t i = 0; i < rp.n_in; ++i) {
      for (int64_t j = 0; j < rp.n_out; ++j) {
        const int64_t e = b.Add(rp.r + i, rp.c + j + sh, rp.type);
        if (rp.type == kEdgeResidual) {
          b.SetSlot(e, 0, kSlotOne);
        } else if (p.shape.size() == 1) {
          b.SetSlot(e, 0, p.offset + j);
        } else {
          // weight (out, in, k...): slot f of edge i -> j holds W[j, i, f].
          for (int64_t f = 0; f < slots; ++f)
            b.SetSlot(e, f, p.offset + (j * rp.n_in + i) * slots + f);
        }
      }
    }
  }
  return b.Finish(TotalParams(params));
}

absl::StatusOr<NeuralGraph> BuildGpt2Graph(const std::vector<ParamSpec>& params,
                                           int64_t num_heads) {
  NINO_ASSIGN_OR_RETURN(ModelDescription d, DescribeGpt2(params, num_heads));
  return BuildGraphFromDescription(params, d);
}

// ---------------------------------------------------------------------------------------------
// Llama (official NeuralGraphLlama, spec 3.7).
//
// The official class expands named_parameters() with constant entries (q heads 0..H-1 after
// q_proj, v heads 0..KV-1 and a "v_proj.res" residual after v_proj, a "res" after gate_proj and
// after up_proj) and runs the transformer cursor arithmetic of graph_transformer.py with
// model_first_dim_out = True. Replaying that arithmetic for the HF layout gives the closed form
// below; it was checked edge by edge (src, dst, type, order) and for N against a re-enactment of
// the official construction for 14 configurations (L = 1..3, KV < H and KV = H, ff != 4d,
// tied and untied).
//
// Symbols: V vocab, d hidden, L layers, H heads, KV key/value heads, hd = d / H, Dq = H*hd,
// Dkv = KV*hd, ff intermediate size. Nodes:
//   tokens 0..V-1 (embed_tokens rows; pos_w = token id + 1), X_0[j] = V + j.
//   layer b with x = X_b[0]: HD_h = x+d+h (head nodes, shared by q and v), Q[j] = x+d+H+j (j < Dq),
//   Vn[j] = Q[0]+Dq+j (j < Dkv), Y[j] = Vn[0]+Dkv+j (after attention), U[j] = Y[0]+d+j (the
//   input units of up_proj, see quirk 2), M[j] = U[0]+d+j (j < ff), IN = M[0]+ff
//   (input_layernorm gain node), PN = IN+1 (post_attention_layernorm gain node); after the last
//   layer NF = PN+1 (model.norm gain node); X_{b+1}[j] = PN+1+j, or NF+1+j after the last layer.
//   Layer size 3d + H + Dq + Dkv + ff + 2 nodes. lm_head outputs (logits) X_L[0]+d+j, j < V.
//   N = V + L (3d + H + Dq + Dkv + ff + 2) + 1 + d + (untied ? V : 0).
// Edges, in this order (type; value on slot 0), every weight enumerated input-major:
//   embed_tokens: v -> X_0[j] (5; E[v, j])
//   per layer: q: X[i] -> Q[j] (7; Wq[j, i]); q heads: HD_h -> Q[h*hd+j] (11; 1);
//   k, reversed: Q[j] -> X[i], j < Dkv, i-major (8; Wk[j, i]); v: X[i] -> Vn[j] (9; Wv[j, i]);
//   v heads: HD_g -> Vn[g*hd+j], g < KV (11; 1); attention residual X[j] -> Y[j] (10; 1);
//   o: R[i] -> Y[j], R[i] = Q[0]+Dkv+i, i < Dq (1; Wo[j, i]); gate: Y[i] -> M[j] (1; Wg[j, i]);
//   gate res: Y[j] -> X_{b+1}[j] (10; 1); up: U[i] -> M[j] (1; Wu[j, i]);
//   up res: U[j] -> X_{b+1}[j] (10; 1); down: M[i] -> X_{b+1}[j] (1; Wd[j, i]);
//   IN -> X_{b+1}[j] (4; input_layernorm[j]); PN -> X_{b+1}[j] (4; post_attention_layernorm[j])
//   then NF -> X_L[j] (4; norm[j]); lm_head: X_L[i] -> logit[j] (1; W[j, i]); self-loops (13; 2).
//   E = V d + L (2 d Dq + 2 d Dkv + Dq + Dkv + 3 d ff + 5 d) + d + (untied ? V d : 0) + N.
//
// Official quirks kept on purpose (the code is marked experimental upstream; we keep its
// numbering so that graphs, LPE and node counts match the official class):
//   1. GQA (KV < H): o_proj's Dq input rows start Dkv nodes after Q[0], i.e. they are the last
//      Dq - Dkv query units followed by the Dkv value units (for KV = H exactly the value units);
//      k_proj's Dkv outputs attach to the first Dkv query units.
//   2. up_proj reads a separate copy U of the post-attention units (linked to the block output by
//      its own residual), not Y itself; gate_proj and up_proj write the same M units.
//   3. Both RMSNorm gains of layer b act on the layer's output X_{b+1} (the official code keeps
//      named_parameters order, where the norms come after the MLP).
// Chosen differently: the official to_edges permutes embed_tokens (V, d) like an (out, in)
// Linear although its edges are enumerated token-major, which scrambles the values (edge
// v -> X_0[j] would carry E[(v*d+j) % V, (v*d+j) / V]). Here edge v -> X_0[j] carries E[v, j],
// as wte does in the GPT-2 graph, so that token node v really holds token v's embedding.
namespace {

constexpr const char* kLlamaLayerParams[] = {
    "self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
    "self_attn.o_proj.weight", "mlp.gate_proj.weight",    "mlp.up_proj.weight",
    "mlp.down_proj.weight",    "input_layernorm.weight",  "post_attention_layernorm.weight"};

constexpr const char* kLlamaEmbed = "model.embed_tokens.weight";
constexpr const char* kLlamaNorm = "model.norm.weight";
constexpr const char* kLlamaHead = "lm_head.weight";

// Layer index of "model.layers.<i>.<one of kLlamaLayerParams>", or -1 for any other name.
int64_t LlamaLayerOf(const std::string& name) {
  constexpr absl::string_view kPrefix = "model.layers.";
  if (!absl::StartsWith(name, kPrefix)) return -1;
  const absl::string_view rest = absl::string_view(name).substr(kPrefix.size());
  const size_t dot = rest.find('.');
  if (dot == absl::string_view::npos) return -1;
  const absl::string_view digits = rest.substr(0, dot);
  int64_t layer = -1;
  if (!absl::SimpleAtoi(digits, &layer) || layer < 0 || absl::StrCat(layer) != digits) return -1;
  const absl::string_view suffix = rest.substr(dot + 1);
  for (const char* p : kLlamaLayerParams) {
    if (suffix == p) return layer;
  }
  return -1;
}

}  // namespace

std::vector<std::pair<std::string, std::vector<int64_t>>> LlamaNamedShapes(const LlamaShape& s) {
  const int64_t kv = s.kv_heads > 0 ? s.kv_heads : s.heads;
  const int64_t hd = s.heads > 0 ? s.dim / s.heads : 0;
  const int64_t dq = s.heads * hd, dkv = kv * hd;
  std::vector<std::pair<std::string, std::vector<int64_t>>> out;
  out.push_back({kLlamaEmbed, {s.vocab, s.dim}});
  for (int64_t i = 0; i < s.layers; ++i) {
    const std::string p = absl::StrCat("model.layers.", i, ".");
    out.push_back({p + "self_attn.q_proj.weight", {dq, s.dim}});
    out.push_back({p + "self_attn.k_proj.weight", {dkv, s.dim}});
    out.push_back({p + "self_attn.v_proj.weight", {dkv, s.dim}});
    out.push_back({p + "self_attn.o_proj.weight", {s.dim, dq}});
    out.push_back({p + "mlp.gate_proj.weight", {s.ffn, s.dim}});
    out.push_back({p + "mlp.up_proj.weight", {s.ffn, s.dim}});
    out.push_back({p + "mlp.down_proj.weight", {s.dim, s.ffn}});
    out.push_back({p + "input_layernorm.weight", {s.dim}});
    out.push_back({p + "post_attention_layernorm.weight", {s.dim}});
  }
  out.push_back({kLlamaNorm, {s.dim}});
  if (!s.tie_embeddings) out.push_back({kLlamaHead, {s.vocab, s.dim}});
  return out;
}

absl::StatusOr<LlamaShape> CheckLlamaLayout(const std::vector<ParamSpec>& params, int64_t num_heads,
                                            int64_t num_kv_heads) {
  if (params.empty()) return absl::InvalidArgumentError("the model has no parameters");
  if (num_heads <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("Llama graph: num_heads must be > 0, got ", num_heads));
  }
  const int64_t H = num_heads;
  const int64_t KV = num_kv_heads == 0 ? num_heads : num_kv_heads;
  if (KV < 0 || H % KV != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("Llama graph: num_kv_heads ", num_kv_heads, " does not divide num_heads ", H));
  }
  // 1. Every name belongs to the layout; the number of layers is 1 + the largest layer index.
  std::map<std::string, const ParamSpec*> by_name;
  int64_t L = 0;
  for (const ParamSpec& p : params) {
    by_name[p.name] = &p;
    if (p.name == kLlamaEmbed || p.name == kLlamaNorm || p.name == kLlamaHead) continue;
    const int64_t layer = LlamaLayerOf(p.name);
    if (layer < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "Llama graph: parameter '", p.name, "' ", ShapeString(p.shape),
          " is not part of the Llama layout (model.embed_tokens.weight, model.layers.<i>."
          "{self_attn.{q,k,v,o}_proj, mlp.{gate,up,down}_proj, input_layernorm, "
          "post_attention_layernorm}.weight, model.norm.weight, lm_head.weight; no biases)"));
    }
    L = std::max(L, layer + 1);
  }
  if (L == 0) {
    return absl::InvalidArgumentError(
        "Llama graph: no decoder layers (missing parameter 'model.layers.0.self_attn.q_proj."
        "weight')");
  }
  // Every layer 0..L-1 complete (stops at the first gap, so a stray huge index costs nothing).
  for (int64_t i = 0; i < L; ++i) {
    for (const char* suffix : kLlamaLayerParams) {
      const std::string name = absl::StrCat("model.layers.", i, ".", suffix);
      if (!by_name.count(name)) {
        return absl::InvalidArgumentError(absl::StrCat("Llama graph: missing parameter '", name,
                                                       "' (the model has parameters of layer ",
                                                       L - 1, ")"));
      }
    }
  }
  // 2. Dimensions from embed_tokens (V, d) and the first gate_proj (ff, d).
  auto it = by_name.find(kLlamaEmbed);
  if (it == by_name.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat("Llama graph: missing parameter '", kLlamaEmbed, "' (vocab, dim)"));
  }
  const ParamSpec* embed = it->second;
  if (embed->shape.size() != 2 || embed->shape[0] <= 0 || embed->shape[1] <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("Llama graph: parameter '", kLlamaEmbed,
                                                   "' has shape ", ShapeString(embed->shape),
                                                   ", expected a non-empty (vocab, dim)"));
  }
  const int64_t V = embed->shape[0], d = embed->shape[1];
  if (d % H != 0) {
    return absl::InvalidArgumentError(absl::StrCat("Llama graph: hidden size ", d, " of '",
                                                   kLlamaEmbed, "' is not divisible by num_heads ",
                                                   H));
  }
  const std::string gate0 = "model.layers.0.mlp.gate_proj.weight";
  it = by_name.find(gate0);
  if (it == by_name.end()) {
    return absl::InvalidArgumentError(absl::StrCat("Llama graph: missing parameter '", gate0, "'"));
  }
  if (it->second->shape.size() != 2 || it->second->shape[0] <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("Llama graph: parameter '", gate0,
                                                   "' has shape ", ShapeString(it->second->shape),
                                                   ", expected a non-empty (ffn, ", d, ")"));
  }
  const int64_t ff = it->second->shape[0];
  // 3. Every expected parameter present with its shape, then the exact order.
  LlamaShape shape{V, d, L, H, KV, ff, by_name.count(kLlamaHead) == 0};
  const auto expected = LlamaNamedShapes(shape);
  for (const auto& [name, s] : expected) {
    it = by_name.find(name);
    if (it == by_name.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("Llama graph: missing parameter '", name, "' ", ShapeString(s)));
    }
    if (it->second->shape != s) {
      return absl::InvalidArgumentError(
          absl::StrCat("Llama graph: parameter '", name, "' has shape ",
                       ShapeString(it->second->shape), ", expected ", ShapeString(s), " (vocab ", V,
                       ", dim ", d, ", heads ", H, ", kv heads ", KV, ", ffn ", ff, ")"));
    }
  }
  if (params.size() != expected.size()) {
    return absl::InvalidArgumentError(absl::StrCat("Llama graph: ", params.size(),
                                                   " parameters listed (duplicates?), expected ",
                                                   expected.size()));
  }
  for (size_t k = 0; k < expected.size(); ++k) {
    if (params[k].name != expected[k].first) {
      return absl::InvalidArgumentError(
          absl::StrCat("Llama graph: parameter '", params[k].name, "' is out of order at position ",
                       k, "; expected '", expected[k].first,
                       "' there (HF named_parameters order: embed_tokens, "
                       "layers 0..L-1 each q, k, v, o, gate, up, down, input_layernorm, "
                       "post_attention_layernorm, then norm, lm_head)"));
    }
  }
  return shape;
}

absl::StatusOr<NeuralGraph> BuildLlamaGraph(const std::vector<ParamSpec>& params, int64_t num_heads,
                                            int64_t num_kv_heads) {
  NINO_ASSIGN_OR_RETURN(const LlamaShape shape, CheckLlamaLayout(params, num_heads, num_kv_heads));
  const int64_t V = shape.vocab, d = shape.dim, L = shape.layers, H = shape.heads;
  const int64_t KV = shape.kv_heads, ff = shape.ffn;
  const ParamSpec* embed = &params.front();
  const int64_t hd = d / H, Dq = H * hd, Dkv = KV * hd;
  const bool untied = !shape.tie_embeddings;
  const int64_t layer_nodes = 3 * d + H + Dq + Dkv + ff + 2;
  const int64_t num_nodes = V + L * layer_nodes + 1 + d + (untied ? V : 0);
  GraphBuilder b(1);
  // embed_tokens (V, d): token v -> X_0[j] carries E[v, j].
  for (int64_t v = 0; v < V; ++v)
    for (int64_t j = 0; j < d; ++j)
      b.AddWithSlot0(v, V + j, kEdgeWordEmbedding, embed->offset + v * d + j);
  int64_t x = V;  // X_b[0]
  for (int64_t blk = 0; blk < L; ++blk) {
    const size_t base = 1 + static_cast<size_t>(blk) * 9;  // index of q_proj in `params`
    const ParamSpec &wq = params[base], &wk = params[base + 1], &wv = params[base + 2],
                    &wo = params[base + 3], &wg = params[base + 4], &wu = params[base + 5],
                    &wd = params[base + 6], &nin = params[base + 7], &npost = params[base + 8];
    const int64_t HD = x + d, Q = HD + H, VN = Q + Dq, Y = VN + Dkv, U = Y + d, M = U + d;
    const int64_t IN = M + ff, PN = IN + 1;
    const bool last = blk + 1 == L;
    const int64_t XN = last ? PN + 2 : PN + 1;  // after the last layer, NF = PN + 1 comes first
    const int64_t R = Q + Dkv;                  // o_proj input rows (quirk 1)
    for (int64_t i = 0; i < d; ++i)
      for (int64_t j = 0; j < Dq; ++j)
        b.AddWithSlot0(x + i, Q + j, kEdgeQuery, wq.offset + j * d + i);
    for (int64_t h = 0; h < H; ++h)
      for (int64_t j = 0; j < hd; ++j) b.AddWithSlot0(HD + h, Q + h * hd + j, kEdgeHead, kSlotOne);
    for (int64_t i = 0; i < d; ++i)
      for (int64_t j = 0; j < Dkv; ++j)
        b.AddWithSlot0(Q + j, x + i, kEdgeKey, wk.offset + j * d + i);
    for (int64_t i = 0; i < d; ++i)
      for (int64_t j = 0; j < Dkv; ++j)
        b.AddWithSlot0(x + i, VN + j, kEdgeValue, wv.offset + j * d + i);
    for (int64_t g = 0; g < KV; ++g)
      for (int64_t j = 0; j < hd; ++j) b.AddWithSlot0(HD + g, VN + g * hd + j, kEdgeHead, kSlotOne);
    for (int64_t j = 0; j < d; ++j) b.AddWithSlot0(x + j, Y + j, kEdgeResidual, kSlotOne);
    for (int64_t i = 0; i < Dq; ++i)
      for (int64_t j = 0; j < d; ++j)
        b.AddWithSlot0(R + i, Y + j, kEdgeFullyConnected, wo.offset + j * Dq + i);
    for (int64_t i = 0; i < d; ++i)
      for (int64_t j = 0; j < ff; ++j)
        b.AddWithSlot0(Y + i, M + j, kEdgeFullyConnected, wg.offset + j * d + i);
    for (int64_t j = 0; j < d; ++j) b.AddWithSlot0(Y + j, XN + j, kEdgeResidual, kSlotOne);
    for (int64_t i = 0; i < d; ++i)
      for (int64_t j = 0; j < ff; ++j)
        b.AddWithSlot0(U + i, M + j, kEdgeFullyConnected, wu.offset + j * d + i);
    for (int64_t j = 0; j < d; ++j) b.AddWithSlot0(U + j, XN + j, kEdgeResidual, kSlotOne);
    for (int64_t i = 0; i < ff; ++i)
      for (int64_t j = 0; j < d; ++j)
        b.AddWithSlot0(M + i, XN + j, kEdgeFullyConnected, wd.offset + j * ff + i);
    for (int64_t j = 0; j < d; ++j) b.AddWithSlot0(IN, XN + j, kEdgeNormWeight, nin.offset + j);
    for (int64_t j = 0; j < d; ++j) b.AddWithSlot0(PN, XN + j, kEdgeNormWeight, npost.offset + j);
    if (last) {
      const ParamSpec& norm = params[base + 9];
      for (int64_t j = 0; j < d; ++j)
        b.AddWithSlot0(PN + 1, XN + j, kEdgeNormWeight, norm.offset + j);
    }
    x = XN;
  }
  if (untied) {
    const ParamSpec& head = params.back();
    for (int64_t i = 0; i < d; ++i)
      for (int64_t j = 0; j < V; ++j)
        b.AddWithSlot0(x + i, x + d + j, kEdgeFullyConnected, head.offset + j * d + i);
  }
  NeuralGraph& g = b.graph();
  g.pos_w.assign(num_nodes, 0);
  for (int64_t v = 0; v < V; ++v) g.pos_w[v] = v + 1;
  return b.Finish(TotalParams(params), num_nodes);
}

namespace {

// "<anything>.<block>.<digits>.<rest>" or "<block>.<digits>.<rest>" at the start.
bool HasBlockPattern(const std::string& name, const std::string& block, const std::string& rest) {
  for (size_t at = name.find(block + "."); at != std::string::npos;
       at = name.find(block + ".", at + 1)) {
    if (at != 0 && name[at - 1] != '.') continue;
    size_t i = at + block.size() + 1, digits = 0;
    while (i < name.size() && std::isdigit(static_cast<unsigned char>(name[i]))) ++i, ++digits;
    if (digits > 0 && name.compare(i, std::string::npos, "." + rest) == 0) return true;
  }
  return false;
}

bool LooksLikeAttention(const std::string& name) {
  for (const char* key :
       {"attn", "attention", "q_proj", "k_proj", "v_proj", "query", "key", "value", "qkv"}) {
    if (name.find(key) != std::string::npos) return true;
  }
  return false;
}

}  // namespace

absl::StatusOr<GraphSpec> InferGraphSpec(const std::vector<ParamSpec>& params, int64_t num_heads,
                                         int64_t num_kv_heads) {
  const ParamSpec* gpt2 = nullptr;
  const ParamSpec* llama = nullptr;
  const ParamSpec* other_attention = nullptr;
  for (const auto& p : params) {
    if (HasBlockPattern(p.name, "h", "attn.c_attn.weight")) {
      if (!gpt2) gpt2 = &p;
    } else if (HasBlockPattern(p.name, "layers", "self_attn.q_proj.weight")) {
      if (!llama) llama = &p;
    } else if (!other_attention && LooksLikeAttention(p.name)) {
      other_attention = &p;
    }
  }
  if (gpt2 && llama) {
    return absl::InvalidArgumentError(absl::StrCat("the model mixes GPT-2 blocks ('", gpt2->name,
                                                   "') and Llama blocks ('", llama->name, "')"));
  }
  if (gpt2 || llama) {
    const char* kind = gpt2 ? "gpt2" : "llama";
    if (num_heads <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("parameter '", (gpt2 ? gpt2 : llama)->name, "' makes this a ", kind,
                       " model: its graph needs the number of attention heads (num_heads > 0)"));
    }
    return ParseGraphKind(kind, num_heads, num_kv_heads);
  }
  if (other_attention) {
    return absl::InvalidArgumentError(absl::StrCat(
        "parameter '", other_attention->name,
        "' looks like attention, but the model follows "
        "neither the GPT-2 layout (transformer.h.<i>.attn.c_attn.weight) nor the Llama layout "
        "(model.layers.<i>.self_attn.q_proj.weight); the generic graph maps only chains of linear "
        "and conv layers"));
  }
  return GraphSpec{};
}

absl::StatusOr<NeuralGraph> BuildGraph(const std::vector<ParamSpec>& params,
                                       const GraphSpec& spec) {
  if (spec.kind == GraphSpec::Kind::kAuto) {
    NINO_ASSIGN_OR_RETURN(const GraphSpec inferred,
                          InferGraphSpec(params, spec.num_heads, spec.num_kv_heads));
    return BuildGraph(params, inferred);
  }
  if (spec.kind == GraphSpec::Kind::kDescribed) {
    if (spec.description == nullptr) {
      return absl::InvalidArgumentError("graph kind described: no model description given");
    }
    return BuildGraphFromDescription(params, *spec.description);
  }
  if (spec.kind == GraphSpec::Kind::kGpt2) return BuildGpt2Graph(params, spec.num_heads);
  if (spec.kind == GraphSpec::Kind::kLlama) {
    return BuildLlamaGraph(params, spec.num_heads, spec.num_kv_heads);
  }
  return BuildGenericGraph(params);
}

}  // namespace nino
