// The hand-written GPT-2 graph (official NeuralGraphGPT, NINO_SPEC.md 3.5), as the library
// built it before the gpt2 kind was derived from a description (DescribeGpt2): the reference
// the derived graph is tested against, node for node and edge for edge (gpt2_description_test).
// Moved here unchanged from neural_graph.cc, except that its parameter lookup (Gpt2Params) and
// ShapeString are now the library's, shared with DescribeGpt2.
#include "common/nino/testing/gpt2_reference_graph.h"

#include <algorithm>
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

namespace nino::testing {
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

}  // namespace

absl::StatusOr<NeuralGraph> BuildGpt2ReferenceGraph(const std::vector<ParamSpec>& params,
                                                    int64_t num_heads) {
  if (params.empty()) return absl::InvalidArgumentError("the model has no parameters");
  Gpt2Params named(params);
  const std::string pre =
      absl::StartsWith(params.front().name, "transformer.") ? "transformer." : "";
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
    NINO_ASSIGN_OR_RETURN(auto p, named.Get(pre + "wte.weight", {V, d}));
    wte = p;
  }
  if (named.Has(pre + "wpe.weight")) {
    const ParamSpec* raw = named.Raw(pre + "wpe.weight");
    if (raw->shape.size() != 2) return absl::InvalidArgumentError("GPT-2 graph: wpe must be 2-D");
    Ppos = raw->shape[0];
    NINO_ASSIGN_OR_RETURN(auto p, named.Get(pre + "wpe.weight", {Ppos, d}));
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
    for (int64_t j = 0; j < d; ++j)
      b.AddWithSlot0(v, x0 + j, kEdgeWordEmbedding, wte->offset + v * d + j);
  for (int64_t p = 0; p < Ppos; ++p)
    for (int64_t j = 0; j < d; ++j)
      b.AddWithSlot0(V + p, x0 + j, kEdgePosEmbedding, wpe->offset + p * d + j);

  int64_t base = base0;
  for (int64_t blk = 0; blk < L; ++blk) {
    const std::string h = absl::StrCat(pre, "h.", blk, ".");
    NINO_ASSIGN_OR_RETURN(auto ln1w, named.Get(h + "ln_1.weight", {d}));
    NINO_ASSIGN_OR_RETURN(auto ln1b, named.Get(h + "ln_1.bias", {d}));
    NINO_ASSIGN_OR_RETURN(auto attw, named.Get(h + "attn.c_attn.weight", {d, 3 * d}));
    NINO_ASSIGN_OR_RETURN(auto attb, named.Get(h + "attn.c_attn.bias", {3 * d}));
    NINO_ASSIGN_OR_RETURN(auto cpw, named.Get(h + "attn.c_proj.weight", {d, d}));
    NINO_ASSIGN_OR_RETURN(auto cpb, named.Get(h + "attn.c_proj.bias", {d}));
    NINO_ASSIGN_OR_RETURN(auto ln2w, named.Get(h + "ln_2.weight", {d}));
    NINO_ASSIGN_OR_RETURN(auto ln2b, named.Get(h + "ln_2.bias", {d}));
    NINO_ASSIGN_OR_RETURN(auto fcw, named.Get(h + "mlp.c_fc.weight", {d, Fb}));
    NINO_ASSIGN_OR_RETURN(auto fcb, named.Get(h + "mlp.c_fc.bias", {Fb}));
    NINO_ASSIGN_OR_RETURN(auto mpw, named.Get(h + "mlp.c_proj.weight", {Fb, d}));
    NINO_ASSIGN_OR_RETURN(auto mpb, named.Get(h + "mlp.c_proj.bias", {d}));

    const int64_t B = base;
    const int64_t LN1W = B, LN1B = B + 1, KB = B + 2, X = B + 3, HD = B + 3 + d;
    const int64_t QB = B + 3 + d + H, VB = QB + 1, Q = VB + 1, VN = Q + d, CPB = VN + d;
    const int64_t LN2W = CPB + 1, LN2B = CPB + 2, Y = CPB + 3, FB = Y + d, M = FB + 1, MPB = M + Fb;
    const int64_t next_base = MPB + 1;
    const int64_t XN = next_base + lead_after(blk);

    for (int64_t j = 0; j < d; ++j) b.AddWithSlot0(LN1W, X + j, kEdgeNormWeight, ln1w->offset + j);
    for (int64_t j = 0; j < d; ++j) b.AddWithSlot0(LN1B, X + j, kEdgeBias, ln1b->offset + j);
    // q: X[i] -> Q[j], c_attn.weight[i, j]
    for (int64_t i = 0; i < d; ++i)
      for (int64_t j = 0; j < d; ++j)
        b.AddWithSlot0(X + i, Q + j, kEdgeQuery, attw->offset + i * 3 * d + j);
    for (int64_t hh = 0; hh < H; ++hh)
      for (int64_t j = 0; j < dh; ++j)
        b.AddWithSlot0(HD + hh, Q + hh * dh + j, kEdgeHead, kSlotOne);
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
      for (int64_t j = 0; j < dh; ++j)
        b.AddWithSlot0(HD + hh, VN + hh * dh + j, kEdgeHead, kSlotOne);
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
    NINO_ASSIGN_OR_RETURN(auto lnfw, named.Get(pre + "ln_f.weight", {d}));
    NINO_ASSIGN_OR_RETURN(auto lnfb, named.Get(pre + "ln_f.bias", {d}));
    const int64_t XL = base + 2;
    for (int64_t j = 0; j < d; ++j) b.AddWithSlot0(base, XL + j, kEdgeNormWeight, lnfw->offset + j);
    for (int64_t j = 0; j < d; ++j) b.AddWithSlot0(base + 1, XL + j, kEdgeBias, lnfb->offset + j);
  }
  NINO_RETURN_IF_ERROR(named.CheckAllUsed());
  g.pos_w.assign(num_nodes, 0);
  for (int64_t v = 0; v < V; ++v) g.pos_w[v] = v + 1;
  return b.Finish(TotalParams(params), num_nodes);
}

}  // namespace nino::testing
