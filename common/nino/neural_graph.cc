#include "common/nino/neural_graph.h"

#include <algorithm>
#include <map>
#include <set>
#include <unordered_map>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace nino {
namespace {

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("(", absl::StrJoin(shape, ", "), ")");
}

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

absl::StatusOr<GraphSpec> ParseGraphKind(const std::string& kind, int64_t num_heads) {
  GraphSpec spec;
  if (kind == "generic" || kind == "mlp" || kind == "cnn") {
    spec.kind = GraphSpec::Kind::kGeneric;
  } else if (kind == "gpt2") {
    spec.kind = GraphSpec::Kind::kGpt2;
    if (num_heads <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("graph kind gpt2 needs num_heads > 0, got ", num_heads));
    }
    spec.num_heads = num_heads;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown graph kind '", kind, "' (expected generic or gpt2)"));
  }
  return spec;
}

std::string GraphKindName(GraphSpec::Kind kind) {
  return kind == GraphSpec::Kind::kGpt2 ? "gpt2" : "generic";
}

torch::Tensor NeuralGraph::EdgeIndexTensor() const {
  const int64_t e = num_edges();
  auto t = torch::empty({2, e}, torch::kInt64);
  std::copy(src.begin(), src.end(), t.data_ptr<int64_t>());
  std::copy(dst.begin(), dst.end(), t.data_ptr<int64_t>() + e);
  return t;
}

torch::Tensor NeuralGraph::EdgeTypeTensor() const {
  return torch::tensor(type, torch::kInt64);
}

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
                                                     p.shape.size(), " dimensions; the generic "
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
          return absl::InvalidArgumentError(absl::StrCat(
              "parameters of module '", m, "' are not contiguous in named_parameters order "
              "(at '", p.name, "'); the generic chain graph cannot map this layout"));
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
        return absl::InvalidArgumentError(absl::StrCat(
            "weight '", p.name, "' ", ShapeString(p.shape), " takes ", n_in,
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
          for (int64_t f = 0; f < slots; ++f) b.SetSlot(e, f, p.offset + (j * rp.n_in + i) * slots + f);
        }
      }
    }
  }
  return b.Finish(TotalParams(params));
}

namespace {

// Locates GPT-2 parameters by name: optional "transformer." prefix, wte/wpe, blocks h.<b>.*,
// ln_f. Every expected name must exist with the expected shape.
class Gpt2Params {
 public:
  explicit Gpt2Params(const std::vector<ParamSpec>& params) {
    for (const auto& p : params) by_name_[p.name] = &p;
  }
  absl::StatusOr<const ParamSpec*> Get(const std::string& name,
                                       const std::vector<int64_t>& shape) {
    auto it = by_name_.find(name);
    if (it == by_name_.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("GPT-2 graph: missing parameter '", name, "'"));
    }
    if (it->second->shape != shape) {
      return absl::InvalidArgumentError(absl::StrCat("GPT-2 graph: parameter '", name,
                                                     "' has shape ", ShapeString(it->second->shape),
                                                     ", expected ", ShapeString(shape)));
    }
    used_.insert(name);
    return it->second;
  }
  bool Has(const std::string& name) const { return by_name_.count(name) > 0; }
  const ParamSpec* Raw(const std::string& name) const {
    auto it = by_name_.find(name);
    return it == by_name_.end() ? nullptr : it->second;
  }
  absl::Status CheckAllUsed() const {
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

 private:
  std::map<std::string, const ParamSpec*> by_name_;
  std::set<std::string> used_;
};

#define NINO_ASSIGN_OR_RETURN(lhs, expr) \
  auto lhs##_or = (expr);                \
  if (!lhs##_or.ok()) return lhs##_or.status(); \
  auto lhs = *lhs##_or

}  // namespace

absl::StatusOr<NeuralGraph> BuildGpt2Graph(const std::vector<ParamSpec>& params,
                                           int64_t num_heads) {
  if (params.empty()) return absl::InvalidArgumentError("the model has no parameters");
  Gpt2Params named(params);
  const std::string pre = absl::StartsWith(params.front().name, "transformer.") ? "transformer."
                                                                                  : "";
  // Dimensions from the first block / embeddings.
  const ParamSpec* attn0 = named.Raw(pre + "h.0.attn.c_attn.weight");
  if (attn0 == nullptr || attn0->shape.size() != 2) {
    return absl::InvalidArgumentError(absl::StrCat("GPT-2 graph: missing parameter '", pre,
                                                   "h.0.attn.c_attn.weight' of shape (d, 3d)"));
  }
  const int64_t d = attn0->shape[0];
  if (attn0->shape[1] != 3 * d) {
    return absl::InvalidArgumentError(absl::StrCat(
        "GPT-2 graph: c_attn.weight has shape ", ShapeString(attn0->shape), ", expected (d, 3d)"));
  }
  if (num_heads <= 0 || d % num_heads != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("GPT-2 graph: n_embd ", d, " is not divisible by num_heads ", num_heads));
  }
  const int64_t H = num_heads, dh = d / H;
  const ParamSpec* fc0 = named.Raw(pre + "h.0.mlp.c_fc.weight");
  if (fc0 == nullptr || fc0->shape.size() != 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("GPT-2 graph: missing parameter '", pre, "h.0.mlp.c_fc.weight'"));
  }
  const int64_t Fb = fc0->shape[1];
  int64_t L = 0;
  while (named.Has(absl::StrCat(pre, "h.", L, ".attn.c_attn.weight"))) ++L;

  int64_t V = 0, Ppos = 0;
  const ParamSpec *wte = nullptr, *wpe = nullptr;
  if (named.Has(pre + "wte.weight")) {
    const ParamSpec* raw = named.Raw(pre + "wte.weight");
    if (raw->shape.size() != 2) return absl::InvalidArgumentError("GPT-2 graph: wte must be 2-D");
    V = raw->shape[0];
    NINO_ASSIGN_OR_RETURN(p, named.Get(pre + "wte.weight", {V, d}));
    wte = p;
  }
  if (named.Has(pre + "wpe.weight")) {
    const ParamSpec* raw = named.Raw(pre + "wpe.weight");
    if (raw->shape.size() != 2) return absl::InvalidArgumentError("GPT-2 graph: wpe must be 2-D");
    Ppos = raw->shape[0];
    NINO_ASSIGN_OR_RETURN(p, named.Get(pre + "wpe.weight", {Ppos, d}));
    wpe = p;
  }
  const bool has_lnf = named.Has(pre + "ln_f.weight");

  GraphBuilder b(1);
  NeuralGraph& g = b.graph();
  const int64_t base0 = V + Ppos;
  auto lead_after = [&](int64_t block) -> int64_t {  // lead of what follows block `block`
    if (block + 1 < L) return 3;
    return has_lnf ? 2 : 0;
  };
  const int64_t lead0 = L > 0 ? 3 : (has_lnf ? 2 : 0);
  int64_t x0 = base0 + lead0;  // X_0[0]
  for (int64_t v = 0; v < V; ++v)
    for (int64_t j = 0; j < d; ++j) b.AddWithSlot0(v, x0 + j, kEdgeWordEmbedding, wte->offset + v * d + j);
  for (int64_t p = 0; p < Ppos; ++p)
    for (int64_t j = 0; j < d; ++j)
      b.AddWithSlot0(V + p, x0 + j, kEdgePosEmbedding, wpe->offset + p * d + j);

  int64_t base = base0;
  for (int64_t blk = 0; blk < L; ++blk) {
    const std::string h = absl::StrCat(pre, "h.", blk, ".");
    NINO_ASSIGN_OR_RETURN(ln1w, named.Get(h + "ln_1.weight", {d}));
    NINO_ASSIGN_OR_RETURN(ln1b, named.Get(h + "ln_1.bias", {d}));
    NINO_ASSIGN_OR_RETURN(attw, named.Get(h + "attn.c_attn.weight", {d, 3 * d}));
    NINO_ASSIGN_OR_RETURN(attb, named.Get(h + "attn.c_attn.bias", {3 * d}));
    NINO_ASSIGN_OR_RETURN(cpw, named.Get(h + "attn.c_proj.weight", {d, d}));
    NINO_ASSIGN_OR_RETURN(cpb, named.Get(h + "attn.c_proj.bias", {d}));
    NINO_ASSIGN_OR_RETURN(ln2w, named.Get(h + "ln_2.weight", {d}));
    NINO_ASSIGN_OR_RETURN(ln2b, named.Get(h + "ln_2.bias", {d}));
    NINO_ASSIGN_OR_RETURN(fcw, named.Get(h + "mlp.c_fc.weight", {d, Fb}));
    NINO_ASSIGN_OR_RETURN(fcb, named.Get(h + "mlp.c_fc.bias", {Fb}));
    NINO_ASSIGN_OR_RETURN(mpw, named.Get(h + "mlp.c_proj.weight", {Fb, d}));
    NINO_ASSIGN_OR_RETURN(mpb, named.Get(h + "mlp.c_proj.bias", {d}));

    const int64_t B = base;
    const int64_t LN1W = B, LN1B = B + 1, KB = B + 2, X = B + 3, HD = B + 3 + d;
    const int64_t QB = B + 3 + d + H, VB = QB + 1, Q = VB + 1, VN = Q + d, CPB = VN + d;
    const int64_t LN2W = CPB + 1, LN2B = CPB + 2, Y = CPB + 3, FB = Y + d, M = FB + 1,
                  MPB = M + Fb;
    const int64_t next_base = MPB + 1;
    const int64_t XN = next_base + lead_after(blk);

    for (int64_t j = 0; j < d; ++j) b.AddWithSlot0(LN1W, X + j, kEdgeNormWeight, ln1w->offset + j);
    for (int64_t j = 0; j < d; ++j) b.AddWithSlot0(LN1B, X + j, kEdgeBias, ln1b->offset + j);
    // q: X[i] -> Q[j], c_attn.weight[i, j]
    for (int64_t i = 0; i < d; ++i)
      for (int64_t j = 0; j < d; ++j) b.AddWithSlot0(X + i, Q + j, kEdgeQuery, attw->offset + i * 3 * d + j);
    for (int64_t hh = 0; hh < H; ++hh)
      for (int64_t j = 0; j < dh; ++j) b.AddWithSlot0(HD + hh, Q + hh * dh + j, kEdgeHead, kSlotOne);
    for (int64_t j = 0; j < d; ++j) b.AddWithSlot0(QB, Q + j, kEdgeBias, attb->offset + j);
    // k (reversed): Q[j] -> X[i], c_attn.weight[i, d + j], i-major
    for (int64_t i = 0; i < d; ++i)
      for (int64_t j = 0; j < d; ++j)
        b.AddWithSlot0(Q + j, X + i, kEdgeKey, attw->offset + i * 3 * d + d + j);
    for (int64_t j = 0; j < d; ++j) b.AddWithSlot0(KB, X + j, kEdgeBias, attb->offset + d + j);
    // v
    for (int64_t i = 0; i < d; ++i)
      for (int64_t j = 0; j < d; ++j)
        b.AddWithSlot0(X + i, VN + j, kEdgeValue, attw->offset + i * 3 * d + 2 * d + j);
    for (int64_t hh = 0; hh < H; ++hh)
      for (int64_t j = 0; j < dh; ++j) b.AddWithSlot0(HD + hh, VN + hh * dh + j, kEdgeHead, kSlotOne);
    for (int64_t j = 0; j < d; ++j) b.AddWithSlot0(VB, VN + j, kEdgeBias, attb->offset + 2 * d + j);
    for (int64_t j = 0; j < d; ++j) b.AddWithSlot0(X + j, Y + j, kEdgeResidual, kSlotOne);
    for (int64_t i = 0; i < d; ++i)
      for (int64_t j = 0; j < d; ++j)
        b.AddWithSlot0(VN + i, Y + j, kEdgeFullyConnected, cpw->offset + i * d + j);
    for (int64_t j = 0; j < d; ++j) b.AddWithSlot0(CPB, Y + j, kEdgeBias, cpb->offset + j);
    for (int64_t j = 0; j < d; ++j) b.AddWithSlot0(LN2W, Y + j, kEdgeNormWeight, ln2w->offset + j);
    for (int64_t j = 0; j < d; ++j) b.AddWithSlot0(LN2B, Y + j, kEdgeBias, ln2b->offset + j);
    for (int64_t i = 0; i < d; ++i)
      for (int64_t j = 0; j < Fb; ++j)
        b.AddWithSlot0(Y + i, M + j, kEdgeFullyConnected, fcw->offset + i * Fb + j);
    for (int64_t j = 0; j < Fb; ++j) b.AddWithSlot0(FB, M + j, kEdgeBias, fcb->offset + j);
    for (int64_t j = 0; j < d; ++j) b.AddWithSlot0(Y + j, XN + j, kEdgeResidual, kSlotOne);
    for (int64_t i = 0; i < Fb; ++i)
      for (int64_t j = 0; j < d; ++j)
        b.AddWithSlot0(M + i, XN + j, kEdgeFullyConnected, mpw->offset + i * d + j);
    for (int64_t j = 0; j < d; ++j) b.AddWithSlot0(MPB, XN + j, kEdgeBias, mpb->offset + j);
    base = next_base;
  }
  int64_t num_nodes = base + (has_lnf ? 2 : 0) + d;
  if (L == 0) num_nodes = base0 + lead0 + d;
  if (has_lnf) {
    NINO_ASSIGN_OR_RETURN(lnfw, named.Get(pre + "ln_f.weight", {d}));
    NINO_ASSIGN_OR_RETURN(lnfb, named.Get(pre + "ln_f.bias", {d}));
    const int64_t XL = base + 2;
    for (int64_t j = 0; j < d; ++j) b.AddWithSlot0(base, XL + j, kEdgeNormWeight, lnfw->offset + j);
    for (int64_t j = 0; j < d; ++j) b.AddWithSlot0(base + 1, XL + j, kEdgeBias, lnfb->offset + j);
  }
  absl::Status used = named.CheckAllUsed();
  if (!used.ok()) return used;
  g.pos_w.assign(num_nodes, 0);
  for (int64_t v = 0; v < V; ++v) g.pos_w[v] = v + 1;
  return b.Finish(TotalParams(params), num_nodes);
}

absl::StatusOr<NeuralGraph> BuildGraph(const std::vector<ParamSpec>& params,
                                       const GraphSpec& spec) {
  if (spec.kind == GraphSpec::Kind::kGpt2) return BuildGpt2Graph(params, spec.num_heads);
  return BuildGenericGraph(params);
}

}  // namespace nino
