#include "common/nino/graph_from_description.h"

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status/status_macros.h"

namespace nino {
namespace {

using OpKind = DescriptionOp::Kind;

// Bounds every group so node and edge counts stay far from int64 overflow.
constexpr int64_t kMaxUnits = int64_t{1} << 40;

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("(", absl::StrJoin(shape, ", "), ")");
}

// ---- Resolve pass: which nodes exist and what every parameter connects, without node ids ----

// Units [begin, begin + count) of unit group `group`.
struct Segment {
  int64_t group = 0, begin = 0, count = 0;
};
using Units = std::vector<Segment>;  // a group's units in order (a concatenation has several)

int64_t CountUnits(const Units& units) {
  int64_t n = 0;
  for (const Segment& s : units) n += s.count;
  return n;
}

// Nodes allocated together, in creation order (which is node order): one auxiliary node per
// entry of `aux`, then `units` units. A norm op on a concatenation makes one with units = 0.
struct UnitGroup {
  int64_t units = 0;
  std::vector<size_t> aux;  // parameter indices of the attached 1-D parameters, in node order
  int64_t first_node = 0;   // set by AllocateNodes
};

enum class Role { kDenseWeight, kShift, kGain };  // kShift: a dense bias or a norm shift

struct ParamUse {
  size_t op = 0;
  Role role = Role::kDenseWeight;
  Units in;   // kDenseWeight: its input units
  Units out;  // the units it writes to (a dense weight's own group; a 1-D parameter's units)
  int64_t aux_group = -1, aux_index = -1;  // 1-D: its auxiliary node
};

// Structural edges of one op (constant 1.0, type 10): flatten (positions > 0) ties unit c of
// `from` to units c * positions + p of `to`; add (positions = 0) unit k of `from` to unit k.
struct Tie {
  Units from, to;
  int64_t positions = 0;
};

struct ResolvedDescription {
  std::vector<UnitGroup> groups;
  std::vector<ParamUse> uses;  // one per parameter, parameter-table order
  std::vector<Tie> ties;       // op order
  int64_t feat_size = 1;
};

class Resolver {
 public:
  Resolver(const std::vector<ParamSpec>& params, const ModelDescription& d)
      : params_(params), d_(d), claimed_by_(params.size(), kUnclaimed) {}

  absl::StatusOr<ResolvedDescription> Run() {
    NINO_RETURN_IF_ERROR(ValidateModelDescription(d_));
    NINO_RETURN_IF_ERROR(IndexParams());
    r_.uses.resize(params_.size());
    for (size_t i = 0; i < d_.ops.size(); ++i) NINO_RETURN_IF_ERROR(Op(i));
    for (size_t p = 0; p < params_.size(); ++p) {
      if (claimed_by_[p] == kUnclaimed) {
        return absl::InvalidArgumentError(
            absl::StrCat("parameter '", params_[p].name,
                         "' is in no op of the description (every parameter must be in "
                         "exactly one op, as a weight or a bias)"));
      }
    }
    return std::move(r_);
  }

 private:
  static constexpr size_t kUnclaimed = ~size_t{0};

  absl::Status IndexParams() {
    if (params_.empty()) return absl::InvalidArgumentError("the model has no parameters");
    for (size_t p = 0; p < params_.size(); ++p) {
      if (!by_name_.emplace(params_[p].name, p).second) {
        return absl::InvalidArgumentError(
            absl::StrCat("duplicate parameter name '", params_[p].name, "'"));
      }
    }
    return absl::OkStatus();
  }

  absl::Status Error(size_t i, absl::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat(DescriptionOpLabel(i, d_.ops[i]), ": ", what));
  }

  const Units& Group(const std::string& name) const { return named_.at(name); }

  absl::Status Op(size_t i) {
    const DescriptionOp& op = d_.ops[i];
    switch (op.kind) {
      case OpKind::kInput:
        return Input(i, op);
      case OpKind::kDense:
        return Dense(i, op);
      case OpKind::kNorm:
        return Norm(i, op);
      case OpKind::kAlias:
        named_[op.output] = Group(op.inputs[0]);
        return absl::OkStatus();
      case OpKind::kFlatten:
        return Flatten(i, op);
      case OpKind::kAdd:
        return Add(i, op);
      case OpKind::kConcat:
        return Concat(op);
    }
    return Error(i, "unknown op kind");
  }

  int64_t NewGroup(int64_t units) {
    r_.groups.push_back(UnitGroup{units, {}, 0});
    return static_cast<int64_t>(r_.groups.size()) - 1;
  }

  Units WholeGroup(int64_t g) const { return {Segment{g, 0, r_.groups[g].units}}; }

  // The parameter `name` that op i names as its `field`, which no earlier op has named.
  absl::StatusOr<size_t> Claim(size_t i, const char* field, const std::string& name) {
    auto it = by_name_.find(name);
    if (it == by_name_.end()) {
      return Error(i, absl::StrCat(field, " '", name, "' is not a parameter of the model"));
    }
    const size_t p = it->second;
    if (claimed_by_[p] != kUnclaimed) {
      return Error(i, absl::StrCat(field, " '", name, "' is already used by ",
                                   DescriptionOpLabel(claimed_by_[p], d_.ops[claimed_by_[p]]),
                                   " (every parameter is in exactly one op)"));
    }
    claimed_by_[p] = i;
    return p;
  }

  // A 1-D parameter of op i acting on `units`: its auxiliary node joins group `aux_group`.
  absl::Status AttachOneD(size_t i, const char* field, const std::string& name, Role role,
                          const Units& units, int64_t aux_group) {
    NINO_ASSIGN_OR_RETURN(const size_t p, Claim(i, field, name));
    const ParamSpec& spec = params_[p];
    const int64_t n = CountUnits(units);
    if (spec.shape != std::vector<int64_t>{n}) {
      return Error(
          i, absl::StrCat(field, " '", name, "' has shape ", ShapeString(spec.shape),
                          ", expected (", n, "): one entry per unit of the group it acts on"));
    }
    std::vector<size_t>& aux = r_.groups[aux_group].aux;
    r_.uses[p] = ParamUse{i, role, {}, units, aux_group, static_cast<int64_t>(aux.size())};
    aux.push_back(p);
    return absl::OkStatus();
  }

  absl::Status CheckUnits(size_t i, int64_t units) const {
    if (units > kMaxUnits) {
      return Error(i, absl::StrCat("the group would have ", units, " units (at most 2^40)"));
    }
    return absl::OkStatus();
  }

  absl::Status Input(size_t i, const DescriptionOp& op) {
    NINO_RETURN_IF_ERROR(CheckUnits(i, op.units));
    named_[op.output] = WholeGroup(NewGroup(op.units));
    return absl::OkStatus();
  }

  // The weight's shape against its input group: 2-D or 4-D, non-empty, `in` = the group's units.
  absl::Status CheckDenseWeight(size_t i, const DescriptionOp& op, const ParamSpec& w,
                                int64_t in_units) const {
    const std::vector<int64_t>& s = w.shape;
    const bool dims_ok = s.size() == 2 || s.size() == 4;
    if (!dims_ok || std::any_of(s.begin(), s.end(), [](int64_t x) { return x <= 0; })) {
      return Error(i, absl::StrCat("weight '", w.name, "' has shape ", ShapeString(s),
                                   "; a dense weight is a non-empty (out, in) (linear) or "
                                   "(out, in, kh, kw) (conv)"));
    }
    if (s[1] == in_units) return absl::OkStatus();
    const std::string base =
        absl::StrCat("weight '", w.name, "' ", ShapeString(s), " reads ", s[1],
                     " input units but its input group '", op.inputs[0], "' has ", in_units);
    if (s.size() == 4 && in_units % s[1] == 0 && s[0] % (in_units / s[1]) == 0) {
      return Error(i, absl::StrCat(base, ": a grouped or depthwise convolution (groups = ",
                                   in_units / s[1], "), not in description version 1"));
    }
    return Error(i, base);
  }

  absl::Status Dense(size_t i, const DescriptionOp& op) {
    const Units& in = Group(op.inputs[0]);
    NINO_ASSIGN_OR_RETURN(const size_t p, Claim(i, "weight", op.weight));
    const ParamSpec& w = params_[p];
    NINO_RETURN_IF_ERROR(CheckDenseWeight(i, op, w, CountUnits(in)));
    NINO_RETURN_IF_ERROR(CheckUnits(i, w.shape[0]));
    const int64_t g = NewGroup(w.shape[0]);
    r_.uses[p] = ParamUse{i, Role::kDenseWeight, in, WholeGroup(g), -1, -1};
    if (w.shape.size() == 4) r_.feat_size = std::max(r_.feat_size, w.shape[2] * w.shape[3]);
    if (!op.bias.empty()) {
      NINO_RETURN_IF_ERROR(AttachOneD(i, "bias", op.bias, Role::kShift, WholeGroup(g), g));
    }
    named_[op.output] = WholeGroup(g);
    return absl::OkStatus();
  }

  // A norm on one unit group joins that group's auxiliary nodes; on a concatenation it gets
  // auxiliary nodes of its own, allocated here.
  absl::Status Norm(size_t i, const DescriptionOp& op) {
    const Units& units = Group(op.inputs[0]);
    const int64_t owner = units.size() == 1 ? units[0].group : NewGroup(0);
    if (!op.weight.empty()) {
      NINO_RETURN_IF_ERROR(AttachOneD(i, "weight", op.weight, Role::kGain, units, owner));
    }
    if (!op.bias.empty()) {
      NINO_RETURN_IF_ERROR(AttachOneD(i, "bias", op.bias, Role::kShift, units, owner));
    }
    named_[op.output] = units;
    return absl::OkStatus();
  }

  absl::Status Flatten(size_t i, const DescriptionOp& op) {
    const Units& in = Group(op.inputs[0]);
    if (op.positions == 1) {
      named_[op.output] = in;
      return absl::OkStatus();
    }
    const int64_t channels = CountUnits(in);
    if (op.positions > kMaxUnits / std::max<int64_t>(channels, 1)) {
      return Error(i, absl::StrCat(channels, " channels x ", op.positions,
                                   " positions is more than 2^40 units"));
    }
    const int64_t g = NewGroup(channels * op.positions);
    r_.ties.push_back(Tie{in, WholeGroup(g), op.positions});
    named_[op.output] = WholeGroup(g);
    return absl::OkStatus();
  }

  // (group, unit) of the last-allocated unit: node order, since groups are allocated in order.
  static std::pair<int64_t, int64_t> LastUnit(const Units& units) {
    std::pair<int64_t, int64_t> last{-1, -1};
    for (const Segment& s : units) last = std::max(last, {s.group, s.begin + s.count - 1});
    return last;
  }

  absl::Status Add(size_t i, const DescriptionOp& op) {
    const Units& a = Group(op.inputs[0]);
    const Units& b = Group(op.inputs[1]);
    if (CountUnits(a) != CountUnits(b)) {
      return Error(i,
                   absl::StrCat("operands '", op.inputs[0], "' (", CountUnits(a), " units) and '",
                                op.inputs[1], "' (", CountUnits(b),
                                " units) differ in size (broadcasting adds are not in version 1)"));
    }
    const bool b_later = LastUnit(b) >= LastUnit(a);
    const Units result = b_later ? b : a;
    r_.ties.push_back(Tie{b_later ? a : b, result, 0});
    named_[op.output] = result;
    return absl::OkStatus();
  }

  absl::Status Concat(const DescriptionOp& op) {
    Units out;
    for (const std::string& in : op.inputs) {
      const Units& u = Group(in);
      out.insert(out.end(), u.begin(), u.end());
    }
    named_[op.output] = std::move(out);
    return absl::OkStatus();
  }

  const std::vector<ParamSpec>& params_;
  const ModelDescription& d_;
  std::map<std::string, size_t> by_name_;
  std::vector<size_t> claimed_by_;  // the op that names each parameter
  std::map<std::string, Units> named_;
  ResolvedDescription r_;
};

// ---- Emit pass: node ids, then the edge list ----

// Node ids: each group's auxiliary nodes, then its units, groups in creation order. Returns N.
int64_t AllocateNodes(std::vector<UnitGroup>* groups) {
  int64_t next = 0;
  for (UnitGroup& g : *groups) {
    g.first_node = next;
    next += static_cast<int64_t>(g.aux.size()) + g.units;
  }
  return next;
}

std::vector<int64_t> NodesOf(const Units& units, const std::vector<UnitGroup>& groups) {
  std::vector<int64_t> nodes;
  nodes.reserve(CountUnits(units));
  for (const Segment& s : units) {
    const int64_t first =
        groups[s.group].first_node + static_cast<int64_t>(groups[s.group].aux.size()) + s.begin;
    for (int64_t k = 0; k < s.count; ++k) nodes.push_back(first + k);
  }
  return nodes;
}

// The edge list, grown edge by edge as neural_graph.cc's builders grow theirs (the vectors'
// capacities are what memory_estimate.cc counts).
class EdgeList {
 public:
  explicit EdgeList(int64_t feat_size) : feat_(feat_size) {}
  int64_t Add(int64_t src, int64_t dst, int64_t type, int64_t slot0) {
    g_.src.push_back(src);
    g_.dst.push_back(dst);
    g_.type.push_back(type);
    g_.param_index.resize(g_.param_index.size() + feat_, kSlotZero);
    g_.param_index[(g_.num_edges() - 1) * feat_] = slot0;
    return g_.num_edges() - 1;
  }
  void SetSlot(int64_t e, int64_t f, int64_t row) { g_.param_index[e * feat_ + f] = row; }
  NeuralGraph Finish(int64_t num_nodes, int64_t num_params) {
    for (int64_t v = 0; v < num_nodes; ++v) Add(v, v, kEdgeSelfLoop, kSlotTwo);
    g_.num_nodes = num_nodes;
    g_.num_params = num_params;
    g_.feat_size = feat_;
    g_.pos_w.assign(num_nodes, 0);
    return std::move(g_);
  }

 private:
  int64_t feat_;
  NeuralGraph g_;
};

// Weight (out, in[, kh, kw]): edge i -> o, input-major; slot f = W[o, i, f / kw, f % kw].
void EmitDense(const ParamSpec& w, const ParamUse& use, const std::vector<UnitGroup>& groups,
               EdgeList* edges) {
  const std::vector<int64_t> in = NodesOf(use.in, groups);
  const std::vector<int64_t> out = NodesOf(use.out, groups);
  const int64_t n_in = w.shape[1], n_out = w.shape[0];
  const int64_t k = w.shape.size() == 4 ? w.shape[2] * w.shape[3] : 1;
  const int64_t type = w.shape.size() == 4 ? kEdgeConv : kEdgeFullyConnected;
  for (int64_t i = 0; i < n_in; ++i) {
    for (int64_t o = 0; o < n_out; ++o) {
      const int64_t row = w.offset + (o * n_in + i) * k;
      const int64_t e = edges->Add(in[i], out[o], type, row);
      for (int64_t f = 1; f < k; ++f) edges->SetSlot(e, f, row + f);
    }
  }
}

// 1-D parameter: its auxiliary node -> unit j, slot 0 = p[j].
void EmitOneD(const ParamSpec& p, const ParamUse& use, const std::vector<UnitGroup>& groups,
              EdgeList* edges) {
  const int64_t aux = groups[use.aux_group].first_node + use.aux_index;
  const int64_t type = use.role == Role::kGain ? kEdgeNormWeight : kEdgeBias;
  const std::vector<int64_t> units = NodesOf(use.out, groups);
  for (size_t j = 0; j < units.size(); ++j) {
    edges->Add(aux, units[j], type, p.offset + static_cast<int64_t>(j));
  }
}

void EmitTie(const Tie& tie, const std::vector<UnitGroup>& groups, EdgeList* edges) {
  const std::vector<int64_t> from = NodesOf(tie.from, groups);
  const std::vector<int64_t> to = NodesOf(tie.to, groups);
  if (tie.positions == 0) {
    for (size_t k = 0; k < from.size(); ++k) edges->Add(from[k], to[k], kEdgeResidual, kSlotOne);
    return;
  }
  for (size_t c = 0; c < from.size(); ++c) {
    for (int64_t p = 0; p < tie.positions; ++p) {
      edges->Add(from[c], to[c * tie.positions + p], kEdgeResidual, kSlotOne);
    }
  }
}

int64_t TieEdges(const Tie& tie) {
  const int64_t from = CountUnits(tie.from);
  return tie.positions == 0 ? from : from * tie.positions;
}

// ---- DescribeGenericChain ----

std::string ModuleOf(const std::string& param_name) {
  const size_t dot = param_name.rfind('.');
  return dot == std::string::npos ? std::string() : param_name.substr(0, dot);
}

// The generic chain, op by op: dense per weight, its bias, norm ops for the other 1-D params.
class ChainDescriber {
 public:
  explicit ChainDescriber(const std::vector<ParamSpec>& params) : params_(params) {}

  absl::StatusOr<ModelDescription> Run() {
    NINO_RETURN_IF_ERROR(CheckLayout());
    current_ = Unique("input");
    Append(OpKind::kInput, current_, {}).units = params_.front().shape[1];
    for (const ParamSpec& p : params_) {
      if (p.shape.size() == 1) {
        OneD(p);
      } else {
        Weight(p);
      }
    }
    NINO_RETURN_IF_ERROR(ValidateModelDescription(d_));
    return std::move(d_);
  }

 private:
  absl::Status CheckLayout() const {
    if (params_.empty()) return absl::InvalidArgumentError("the model has no parameters");
    std::set<std::string> closed;
    for (size_t l = 0; l < params_.size(); ++l) {
      const ParamSpec& p = params_[l];
      NINO_RETURN_IF_ERROR(CheckParam(p, l == 0));
      const std::string m = ModuleOf(p.name);
      if (l > 0 && m != ModuleOf(params_[l - 1].name)) closed.insert(ModuleOf(params_[l - 1].name));
      if (closed.count(m)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "parameters of module '", m, "' are not contiguous in named_parameters order (at '",
            p.name, "'); the generic chain graph cannot map this layout"));
      }
    }
    return absl::OkStatus();
  }

  static absl::Status CheckParam(const ParamSpec& p, bool first) {
    const size_t dims = p.shape.size();
    if (dims == 0 || dims == 3 || dims > 4) {
      return absl::InvalidArgumentError(absl::StrCat(
          "parameter '", p.name, "' has shape ", ShapeString(p.shape),
          "; a model description (version 1) takes 1-D, 2-D (linear) and 4-D (conv) parameters"));
    }
    if (first && dims == 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the first parameter '", p.name,
          "' is 1-D; the generic chain graph needs a weight first (e.g. Linear or Conv2d)"));
    }
    const bool gain = absl::EndsWith(p.name, ".weight");
    if (dims == 1 && !gain &&
        (absl::StrContains(p.name, ".res") || absl::StrContains(p.name, ".self_loop"))) {
      return absl::InvalidArgumentError(absl::StrCat(
          "1-D parameter '", p.name,
          "': the generic graph types it as a residual / self-loop edge (its name contains "
          "'.res' or '.self_loop'), which a description cannot say; describe the model instead"));
    }
    return absl::OkStatus();
  }

  std::string Unique(std::string name) {
    if (name.empty()) name = "layer";
    std::string candidate = name;
    for (int k = 1; !names_.insert(candidate).second; ++k) candidate = absl::StrCat(name, "_", k);
    return candidate;
  }

  DescriptionOp& Append(OpKind kind, std::string output, std::vector<std::string> inputs) {
    DescriptionOp op;
    op.kind = kind;
    op.output = std::move(output);
    op.inputs = std::move(inputs);
    d_.ops.push_back(std::move(op));
    return d_.ops.back();
  }

  void Weight(const ParamSpec& p) {
    const std::string m = ModuleOf(p.name);
    DescriptionOp& op = Append(OpKind::kDense, Unique(m), {current_});
    op.weight = p.name;
    current_ = op.output;
    module_ = m;
  }

  // The dense op's bias if it is the module's first 1-D parameter after its weight and not a
  // gain; else a gain or shift of the module's norm op (a new one where the slot is taken, so
  // that auxiliary nodes stay in parameter order).
  void OneD(const ParamSpec& p) {
    const std::string m = ModuleOf(p.name);
    const bool gain = absl::EndsWith(p.name, ".weight");
    DescriptionOp& last = d_.ops.back();
    const bool same_module = m == module_;
    if (same_module && last.kind == OpKind::kDense && last.bias.empty() && !gain) {
      last.bias = p.name;
      return;
    }
    const bool fits = last.kind == OpKind::kNorm && same_module && last.bias.empty() &&
                      (!gain || last.weight.empty());
    DescriptionOp& norm = fits ? last : Append(OpKind::kNorm, Unique(m), {current_});
    (gain ? norm.weight : norm.bias) = p.name;
    current_ = norm.output;
    module_ = m;
  }

  const std::vector<ParamSpec>& params_;
  ModelDescription d_;
  std::set<std::string> names_;
  std::string current_;  // the group the next op reads
  std::string module_;   // module of the last op
};

}  // namespace

absl::StatusOr<NeuralGraph> BuildGraphFromDescription(const std::vector<ParamSpec>& params,
                                                      const ModelDescription& d) {
  NINO_ASSIGN_OR_RETURN(ResolvedDescription r, Resolver(params, d).Run());
  const int64_t num_nodes = AllocateNodes(&r.groups);
  EdgeList edges(r.feat_size);
  for (size_t p = 0; p < params.size(); ++p) {
    if (r.uses[p].role == Role::kDenseWeight) {
      EmitDense(params[p], r.uses[p], r.groups, &edges);
    } else {
      EmitOneD(params[p], r.uses[p], r.groups, &edges);
    }
  }
  for (const Tie& tie : r.ties) EmitTie(tie, r.groups, &edges);
  NeuralGraph g = edges.Finish(num_nodes, TotalParams(params));
  NINO_RETURN_IF_ERROR(g.Validate());
  return g;
}

absl::StatusOr<DescribedGraphSize> CountGraphFromDescription(const std::vector<ParamSpec>& params,
                                                             const ModelDescription& d) {
  NINO_ASSIGN_OR_RETURN(ResolvedDescription r, Resolver(params, d).Run());
  DescribedGraphSize size;
  size.nodes = AllocateNodes(&r.groups);
  size.feat_size = r.feat_size;
  for (size_t p = 0; p < params.size(); ++p) {
    const ParamSpec& spec = params[p];
    size.edges += r.uses[p].role == Role::kDenseWeight ? spec.shape[0] * spec.shape[1] : spec.numel;
  }
  for (const Tie& tie : r.ties) size.edges += TieEdges(tie);
  size.edges += size.nodes;
  return size;
}

absl::StatusOr<ModelDescription> DescribeGenericChain(const std::vector<ParamSpec>& params) {
  return ChainDescriber(params).Run();
}

}  // namespace nino
