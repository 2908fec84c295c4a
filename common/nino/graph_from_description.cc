#include "common/nino/graph_from_description.h"

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/nino/shape_string.h"
#include "common/status/status_macros.h"

namespace nino {
namespace {

using OpKind = DescriptionOp::Kind;

// Bounds every group so node and edge counts stay far from int64 overflow.
constexpr int64_t kMaxUnits = int64_t{1} << 40;

// ---- Resolve pass: which nodes exist and which edges each op writes, without node ids ----

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

// Units [begin, begin + count) of `units` (which may span several segments).
Units SliceUnits(const Units& units, int64_t begin, int64_t count) {
  Units out;
  for (const Segment& s : units) {
    if (count == 0) break;
    if (begin >= s.count) {
      begin -= s.count;
      continue;
    }
    const int64_t take = std::min(count, s.count - begin);
    out.push_back(Segment{s.group, s.begin + begin, take});
    begin = 0;
    count -= take;
  }
  return out;
}

// Nodes allocated together, in creation order (which is node order): the prelude (`rows`
// embedding-row nodes, then `aux` auxiliary nodes), then `units` units. Attention's head nodes
// are a group of units nothing names; a norm (or key bias) on a concatenation makes a group
// with units = 0.
struct UnitGroup {
  int64_t units = 0;
  int64_t rows = 0;
  int64_t aux = 0;
  int64_t dense_op = -1;   // the dense op that created it: residual edges into it go there
  int64_t first_node = 0;  // set by AllocateNodes
};

// A run of edges one op writes (docs/GRAPH_DESCRIPTION.md, "Version 2", Edges).
struct EdgeBlock {
  enum class Kind {
    kWeight,  // in[i] -> out[o] (out[o] -> in[i] if reversed), i-major; slots = kernel
    kAux,     // auxiliary node `index` of `group` -> out[j], row first_row + j
    kRows,    // embedding row r (of `count` from `index` in `group`'s prelude) -> out[j]
    kTie,     // constant 1.0: in[k] -> out[k] (positions 0), or in[c] -> out[c * positions + p]
  };
  Kind kind = Kind::kWeight;
  int64_t type = 0;
  Units in, out;
  int64_t group = -1, index = 0, count = 0;  // kAux, kRows
  // kWeight: slot f of edge (i, o) holds row first_row + o * stride_out + i * stride_in + f.
  int64_t first_row = 0, stride_out = 0, stride_in = 0, slots = 1;
  bool reversed = false;
  int64_t positions = 0;  // kTie
};

int64_t BlockEdges(const EdgeBlock& b) {
  switch (b.kind) {
    case EdgeBlock::Kind::kWeight:
      return CountUnits(b.in) * CountUnits(b.out);
    case EdgeBlock::Kind::kAux:
      return CountUnits(b.out);
    case EdgeBlock::Kind::kRows:
      return b.count * CountUnits(b.out);
    case EdgeBlock::Kind::kTie:
      return b.positions == 0 ? CountUnits(b.in) : CountUnits(b.in) * b.positions;
  }
  return 0;
}

// Rows of a token table: pos_w = row + 1.
struct TokenRows {
  int64_t group = 0, index = 0, count = 0;
};

struct ResolvedDescription {
  std::vector<UnitGroup> groups;
  // Per op: the residual edges it writes first (a dense op: the adds whose result is its
  // group), then its own edges.
  std::vector<std::vector<EdgeBlock>> residuals, edges;
  std::vector<TokenRows> token_rows;
  int64_t feat_size = 1;
};

class Resolver {
 public:
  Resolver(const std::vector<ParamSpec>& params, const ModelDescription& d)
      : params_(params), d_(d), claimed_by_(params.size(), kUnclaimed) {}

  absl::StatusOr<ResolvedDescription> Run() {
    NINO_RETURN_IF_ERROR(ValidateModelDescription(d_));
    NINO_RETURN_IF_ERROR(IndexParams());
    r_.residuals.resize(d_.ops.size());
    r_.edges.resize(d_.ops.size());
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
      case OpKind::kMultiply:
        return Join(i, op);
      case OpKind::kConcat:
        return Concat(op);
      case OpKind::kEmbedding:
        return Embedding(i, op);
      case OpKind::kAttention:
        return Attention(i, op);
    }
    return Error(i, "unknown op kind");
  }

  int64_t NewGroup(int64_t units) {
    r_.groups.push_back(UnitGroup{units, 0, 0, -1, 0});
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

  // A new auxiliary node of the group `units` stand for (of a new unit-less group where they
  // span several groups: a concatenation): returns (group, index).
  std::pair<int64_t, int64_t> NewAux(const Units& units) {
    const int64_t g = units.size() == 1 ? units[0].group : NewGroup(0);
    return {g, r_.groups[g].aux++};
  }

  // Edges from an auxiliary node to `units`, carrying rows first_row.. (one per unit).
  static EdgeBlock AuxEdges(std::pair<int64_t, int64_t> aux, const Units& units, int64_t type,
                            int64_t first_row) {
    EdgeBlock b;
    b.kind = EdgeBlock::Kind::kAux;
    b.type = type;
    b.out = units;
    b.group = aux.first;
    b.index = aux.second;
    b.first_row = first_row;
    return b;
  }

  // The 1-D parameter of op i named `name`, of shape (n); returns its index.
  absl::StatusOr<size_t> ClaimOneD(size_t i, const char* field, const std::string& name,
                                   int64_t n) {
    NINO_ASSIGN_OR_RETURN(const size_t p, Claim(i, field, name));
    const ParamSpec& spec = params_[p];
    if (spec.shape != std::vector<int64_t>{n}) {
      return Error(
          i, absl::StrCat(field, " '", name, "' has shape ", ShapeString(spec.shape),
                          ", expected (", n, "): one entry per unit of the group it acts on"));
    }
    return p;
  }

  // A 1-D parameter of op i acting on `units`, with an auxiliary node of its own.
  absl::Status AttachOneD(size_t i, const char* field, const std::string& name, int64_t type,
                          const Units& units) {
    NINO_ASSIGN_OR_RETURN(const size_t p, ClaimOneD(i, field, name, CountUnits(units)));
    r_.edges[i].push_back(AuxEdges(NewAux(units), units, type, params_[p].offset));
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

  static bool NonEmpty(const std::vector<int64_t>& s) {
    return std::all_of(s.begin(), s.end(), [](int64_t x) { return x > 0; });
  }

  // The weight's shape against its input group: 2-D or 4-D, non-empty, `in` = the group's units
  // (`in` * groups for a grouped convolution, whose groups divide both unit counts).
  absl::Status CheckDenseWeight(size_t i, const DescriptionOp& op, const ParamSpec& w,
                                int64_t in_units) const {
    const std::vector<int64_t>& s = w.shape;
    const bool dims_ok = s.size() == 2 || s.size() == 4;
    if (!dims_ok || !NonEmpty(s)) {
      return Error(i, absl::StrCat("weight '", w.name, "' has shape ", ShapeString(s),
                                   "; a dense weight is a non-empty (out, in) (linear) or "
                                   "(out, in, kh, kw) (conv)",
                                   op.transposed ? ", or (in, out) when transposed" : ""));
    }
    if (op.transposed && s.size() != 2) {
      return Error(i, absl::StrCat("weight '", w.name, "' has shape ", ShapeString(s),
                                   "; 'transposed' applies to 2-D (in, out) weights only"));
    }
    if (op.groups > 1) return CheckGroupedWeight(i, op, w, in_units);
    const int64_t in = op.transposed ? s[0] : s[1];
    if (in == in_units) return absl::OkStatus();
    const std::string base =
        absl::StrCat("weight '", w.name, "' ", ShapeString(s), " reads ", in,
                     " input units but its input group '", op.inputs[0], "' has ", in_units);
    if (s.size() == 4 && in_units % s[1] == 0 && s[0] % (in_units / s[1]) == 0) {
      return Error(i, absl::StrCat(base,
                                   ": a grouped or depthwise convolution? (then say "
                                   "groups = ",
                                   in_units / s[1], ", description version 3)"));
    }
    return Error(i, base);
  }

  // (out, in / groups, kh, kw) with groups dividing out and the input group's units.
  absl::Status CheckGroupedWeight(size_t i, const DescriptionOp& op, const ParamSpec& w,
                                  int64_t in_units) const {
    const std::vector<int64_t>& s = w.shape;
    const int64_t g = op.groups;
    if (s.size() != 4) {
      return Error(
          i, absl::StrCat("weight '", w.name, "' has shape ", ShapeString(s), "; groups = ", g,
                          " needs a conv weight (out, in / groups, kh, "
                          "kw)"));
    }
    if (in_units % g != 0 || s[0] % g != 0) {
      return Error(i, absl::StrCat("groups = ", g, " does not divide the ", in_units,
                                   " input units of '", op.inputs[0], "' and the ", s[0],
                                   " output channels of weight '", w.name, "'"));
    }
    if (s[1] * g != in_units) {
      return Error(i, absl::StrCat("weight '", w.name, "' ", ShapeString(s), " reads ", s[1],
                                   " input units per group, but its input group '", op.inputs[0],
                                   "' has ", in_units, " = ", g, " groups of ", in_units / g));
    }
    return absl::OkStatus();
  }

  // One weight block per convolution group (one for an ordinary dense op): output units
  // [k * out_g, (k + 1) * out_g) read input units [k * in_g, (k + 1) * in_g), i-major within
  // the group, groups in order.
  absl::Status Dense(size_t i, const DescriptionOp& op) {
    const Units& in = Group(op.inputs[0]);
    NINO_ASSIGN_OR_RETURN(const size_t p, Claim(i, "weight", op.weight));
    const ParamSpec& w = params_[p];
    NINO_RETURN_IF_ERROR(CheckDenseWeight(i, op, w, CountUnits(in)));
    const int64_t n_out = op.transposed ? w.shape[1] : w.shape[0];
    NINO_RETURN_IF_ERROR(CheckUnits(i, n_out));
    const int64_t g = NewGroup(n_out);
    r_.groups[g].dense_op = static_cast<int64_t>(i);
    const int64_t in_g = CountUnits(in) / op.groups, out_g = n_out / op.groups;
    const int64_t slots = w.shape.size() == 4 ? w.shape[2] * w.shape[3] : 1;
    if (w.shape.size() == 4) r_.feat_size = std::max(r_.feat_size, slots);
    for (int64_t k = 0; k < op.groups; ++k) {
      EdgeBlock b;
      b.kind = EdgeBlock::Kind::kWeight;
      b.type = w.shape.size() == 4 ? kEdgeConv : kEdgeFullyConnected;
      b.slots = slots;
      b.in = SliceUnits(in, k * in_g, in_g);
      b.out = SliceUnits(WholeGroup(g), k * out_g, out_g);
      b.first_row = w.offset + k * out_g * in_g * slots;
      b.stride_in = op.transposed ? n_out : slots;
      b.stride_out = op.transposed ? 1 : in_g * slots;
      r_.edges[i].push_back(std::move(b));
    }
    if (!op.bias.empty()) {
      NINO_RETURN_IF_ERROR(AttachOneD(i, "bias", op.bias, kEdgeBias, WholeGroup(g)));
    }
    named_[op.output] = WholeGroup(g);
    return absl::OkStatus();
  }

  // A norm on one unit group joins that group's auxiliary nodes; on a concatenation it gets
  // auxiliary nodes of its own, allocated here.
  absl::Status Norm(size_t i, const DescriptionOp& op) {
    const Units& units = Group(op.inputs[0]);
    if (!op.weight.empty()) {
      NINO_RETURN_IF_ERROR(AttachOneD(i, "weight", op.weight, kEdgeNormWeight, units));
    }
    if (!op.bias.empty()) {
      NINO_RETURN_IF_ERROR(AttachOneD(i, "bias", op.bias, kEdgeBias, units));
    }
    named_[op.output] = units;
    return absl::OkStatus();
  }

  static EdgeBlock Tie(const Units& from, const Units& to, int64_t positions, int64_t type) {
    EdgeBlock b;
    b.kind = EdgeBlock::Kind::kTie;
    b.type = type;
    b.in = from;
    b.out = to;
    b.positions = positions;
    return b;
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
    r_.edges[i].push_back(Tie(in, WholeGroup(g), op.positions, kEdgeResidual));
    named_[op.output] = WholeGroup(g);
    return absl::OkStatus();
  }

  // (group, unit) of the last-allocated unit: node order, since groups are allocated in order.
  static std::pair<int64_t, int64_t> LastUnit(const Units& units) {
    std::pair<int64_t, int64_t> last{-1, -1};
    for (const Segment& s : units) last = std::max(last, {s.group, s.begin + s.count - 1});
    return last;
  }

  // add and multiply: the result is the operand allocated later; its residual edges go to the
  // dense op that created it (written before that op's weight), else here.
  absl::Status Join(size_t i, const DescriptionOp& op) {
    const Units& a = Group(op.inputs[0]);
    const Units& b = Group(op.inputs[1]);
    if (CountUnits(a) != CountUnits(b)) {
      return Error(i, absl::StrCat("operands '", op.inputs[0], "' (", CountUnits(a),
                                   " units) and '", op.inputs[1], "' (", CountUnits(b),
                                   " units) differ in size (broadcasting ",
                                   op.kind == OpKind::kAdd ? "adds" : "products",
                                   " are not in the model description)"));
    }
    const bool b_later = LastUnit(b) >= LastUnit(a);
    const Units result = b_later ? b : a;
    const int64_t owner = result.size() == 1 ? r_.groups[result[0].group].dense_op : -1;
    (owner >= 0 ? r_.residuals[owner] : r_.edges[i])
        .push_back(Tie(b_later ? a : b, result, 0, kEdgeResidual));
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

  // A table of rows of shape[-1] entries; without an input a new group of that many units,
  // else rows feeding the input's unit group.
  absl::Status Embedding(size_t i, const DescriptionOp& op) {
    NINO_ASSIGN_OR_RETURN(const size_t p, Claim(i, "weight", op.weight));
    const ParamSpec& w = params_[p];
    if (w.shape.empty() || !NonEmpty(w.shape)) {
      return Error(i, absl::StrCat("weight '", w.name, "' has shape ", ShapeString(w.shape),
                                   "; an embedding table is non-empty with at least one "
                                   "dimension (its last: the entries of a row)"));
    }
    const int64_t units = w.shape.back();
    Units target;
    if (op.inputs.empty()) {
      NINO_RETURN_IF_ERROR(CheckUnits(i, units));
      target = WholeGroup(NewGroup(units));
    } else {
      target = Group(op.inputs[0]);
      if (target.size() != 1) {
        return Error(i, absl::StrCat("input '", op.inputs[0],
                                     "' is a concatenation; an embedding's rows feed one unit "
                                     "group"));
      }
      if (CountUnits(target) != units) {
        return Error(i, absl::StrCat("weight '", w.name, "' ", ShapeString(w.shape),
                                     " has rows of ", units, " entries but its input group '",
                                     op.inputs[0], "' has ", CountUnits(target), " units"));
      }
    }
    UnitGroup& g = r_.groups[target[0].group];
    EdgeBlock b;
    b.kind = EdgeBlock::Kind::kRows;
    b.type = op.alias_kind == "token" ? kEdgeWordEmbedding : kEdgePosEmbedding;
    b.out = target;
    b.group = target[0].group;
    b.index = g.rows;
    b.count = w.numel / units;
    b.first_row = w.offset;
    g.rows += b.count;
    if (b.type == kEdgeWordEmbedding) r_.token_rows.push_back({b.group, b.index, b.count});
    r_.edges[i].push_back(std::move(b));
    named_[op.output] = target;
    return absl::OkStatus();
  }

  // One of q, k, v: where its weights are in the parameter vector.
  struct Projection {
    size_t param = 0;
    int64_t first_row = 0, stride_out = 0, stride_in = 0;
  };

  // The packed weight (D + 2 D_kv, d) (= (3 D, d) without grouped-query attention), or
  // transposed; sets *D and *D_kv.
  absl::StatusOr<std::vector<Projection>> PackedWeight(size_t i, const DescriptionOp& op, int64_t d,
                                                       int64_t kv, int64_t* D, int64_t* D_kv) {
    NINO_ASSIGN_OR_RETURN(const size_t p, Claim(i, "weight", op.weight));
    const ParamSpec& w = params_[p];
    const std::vector<int64_t>& s = w.shape;
    const bool grouped = kv != op.heads;
    const int64_t rows = s.size() == 2 ? s[op.transposed ? 1 : 0] : 0;
    const int64_t parts = grouped ? op.heads + 2 * kv : 3;  // head sizes, or thirds
    const bool ok =
        s.size() == 2 && NonEmpty(s) && s[op.transposed ? 0 : 1] == d && rows % parts == 0;
    if (!ok) {
      const std::string layout = grouped ? "D + 2 D_kv" : "3 D";
      return Error(
          i,
          absl::StrCat(
              "weight '", w.name, "' has shape ", ShapeString(s), "; a packed q|k|v weight is ",
              op.transposed ? absl::StrCat("(d, ", layout, ")") : absl::StrCat("(", layout, ", d)"),
              " with d = ", d, ", the units of input group '", op.inputs[0], "'",
              grouped ? absl::StrCat(" (", kv, " of ", op.heads, " heads)") : ""));
    }
    *D = grouped ? rows / parts * op.heads : rows / 3;
    *D_kv = grouped ? rows / parts * kv : *D;
    std::vector<Projection> out;
    for (const int64_t start : {int64_t{0}, *D, *D + *D_kv}) {
      out.push_back(op.transposed ? Projection{p, w.offset + start, 1, rows}
                                  : Projection{p, w.offset + start * d, d, 1});
    }
    return out;
  }

  // One split projection (out, d), or (d, out) transposed, with out = *expected (0: any; set
  // from the weight, as the query sets D).
  absl::StatusOr<Projection> SplitWeight(size_t i, const DescriptionOp& op, const char* field,
                                         const std::string& name, int64_t d, int64_t* expected) {
    NINO_ASSIGN_OR_RETURN(const size_t p, Claim(i, field, name));
    const ParamSpec& w = params_[p];
    const std::vector<int64_t>& s = w.shape;
    const int64_t in = s.size() == 2 ? s[op.transposed ? 0 : 1] : -1;
    const int64_t out = s.size() == 2 ? s[op.transposed ? 1 : 0] : -1;
    const std::string layout = op.transposed ? "(d, D)" : "(D, d)";
    if (s.size() != 2 || !NonEmpty(s) || in != d) {
      return Error(
          i, absl::StrCat(field, " '", name, "' has shape ", ShapeString(s), "; expected ", layout,
                          " with d = ", d, ", the units of input group '", op.inputs[0], "'"));
    }
    if (*expected == 0) *expected = out;
    if (out != *expected) {
      return Error(i, absl::StrCat(field, " '", name, "' ", ShapeString(s), " has ", out,
                                   " units; ", KeyValueHint(op, out, *expected)));
    }
    return op.transposed ? Projection{p, w.offset, 1, out} : Projection{p, w.offset, d, 1};
  }

  // What a key / value of `out` units should have been (`expected`), with the grouped-query
  // hint where `out` is a whole number of heads that divides them.
  static std::string KeyValueHint(const DescriptionOp& op, int64_t out, int64_t expected) {
    if (op.kv_heads != 0) {
      return absl::StrCat("expected ", expected, " (", op.kv_heads, " of ", op.heads, " heads)");
    }
    const int64_t hd = expected / op.heads;  // expected = D here, divisible by heads
    if (out < expected && out % hd == 0 && op.heads % (out / hd) == 0) {
      return absl::StrCat("fewer than the query's ", expected,
                          ": grouped-query attention? (then say kv_heads = ", out / hd,
                          ", description version 4)");
    }
    return absl::StrCat("expected ", expected, " as the query");
  }

  // Bias rows of q, k, v (-1: none): packed (D + 2 D_kv) or split (D, D_kv, D_kv).
  absl::StatusOr<std::vector<int64_t>> AttentionBiases(size_t i, const DescriptionOp& op, int64_t D,
                                                       int64_t D_kv) {
    std::vector<int64_t> rows(3, -1);
    if (!op.weight.empty()) {
      if (op.bias.empty()) return rows;
      NINO_ASSIGN_OR_RETURN(const size_t p, ClaimOneD(i, "bias", op.bias, D + 2 * D_kv));
      rows = {params_[p].offset, params_[p].offset + D, params_[p].offset + D + D_kv};
      return rows;
    }
    const std::tuple<const char*, const std::string*, int64_t> split[] = {
        {"query_bias", &op.query_bias, D},
        {"key_bias", &op.key_bias, D_kv},
        {"value_bias", &op.value_bias, D_kv}};
    for (int part = 0; part < 3; ++part) {
      const auto& [field, name, size] = split[part];
      if (name->empty()) continue;
      NINO_ASSIGN_OR_RETURN(const size_t p, ClaimOneD(i, field, *name, size));
      rows[part] = params_[p].offset;
    }
    return rows;
  }

  static EdgeBlock WeightEdges(const Projection& w, const Units& in, const Units& out, int64_t type,
                               bool reversed) {
    EdgeBlock b;
    b.kind = EdgeBlock::Kind::kWeight;
    b.type = type;
    b.in = in;
    b.out = out;
    b.first_row = w.first_row;
    b.stride_out = w.stride_out;
    b.stride_in = w.stride_in;
    b.reversed = reversed;
    return b;
  }

  // q, k, v projections (packed or split) of input units d: sets *D and *D_kv.
  absl::StatusOr<std::vector<Projection>> Projections(size_t i, const DescriptionOp& op, int64_t d,
                                                      int64_t* D, int64_t* D_kv) {
    const int64_t kv = op.kv_heads == 0 ? op.heads : op.kv_heads;
    std::vector<Projection> qkv;
    if (!op.weight.empty()) {
      NINO_ASSIGN_OR_RETURN(qkv, PackedWeight(i, op, d, kv, D, D_kv));
    } else {
      NINO_ASSIGN_OR_RETURN(Projection q, SplitWeight(i, op, "query", op.query, d, D));
      qkv.push_back(q);
    }
    if (*D % op.heads != 0) {
      return Error(i, absl::StrCat(*D, " query units (", op.weight.empty() ? "query '" : "weight '",
                                   op.weight.empty() ? op.query : op.weight,
                                   "') are not divisible by heads ", op.heads));
    }
    if (!op.weight.empty()) return qkv;
    *D_kv = *D / op.heads * kv;
    for (const auto& [field, name] :
         {std::pair<const char*, const std::string*>{"key", &op.key}, {"value", &op.value}}) {
      NINO_ASSIGN_OR_RETURN(Projection w, SplitWeight(i, op, field, *name, d, D_kv));
      qkv.push_back(w);
    }
    return qkv;
  }

  // The query units key row (g, t) is attached to: query head g * rep's unit t (all of Q
  // without grouped-query attention).
  static Units KeyUnits(const Units& q, int64_t D_kv, int64_t hd, int64_t rep) {
    if (rep == 1) return q;
    Units out;
    for (int64_t g = 0; g < D_kv / hd; ++g) {
      const Units head = SliceUnits(q, g * rep * hd, hd);
      out.insert(out.end(), head.begin(), head.end());
    }
    return out;
  }

  // Nodes: the key bias joins the input's group (or, when the keys are not as many as the
  // inputs, the query group); then head nodes, q / k / v bias nodes, D query units, D_kv value
  // units, and with grouped-query attention D per-head outputs (the output). Edges in the order
  // of the doc (versions 2 and 4).
  absl::Status Attention(size_t i, const DescriptionOp& op) {
    const Units& x = Group(op.inputs[0]);
    const int64_t d = CountUnits(x);
    int64_t D = 0, D_kv = 0;
    NINO_ASSIGN_OR_RETURN(const std::vector<Projection> qkv, Projections(i, op, d, &D, &D_kv));
    NINO_RETURN_IF_ERROR(CheckUnits(i, D));
    NINO_ASSIGN_OR_RETURN(const std::vector<int64_t> bias, AttentionBiases(i, op, D, D_kv));
    const int64_t hd = D / op.heads, rep = D / D_kv;
    const bool kb_on_x = bias[1] >= 0 && D_kv == d;  // the official graphs' key bias
    const std::pair<int64_t, int64_t> none{-1, 0};
    const std::pair<int64_t, int64_t> kb_x = kb_on_x ? NewAux(x) : none;
    const Units heads = WholeGroup(NewGroup(op.heads));
    const int64_t qg = NewGroup(D);
    const Units q = WholeGroup(qg);
    const std::pair<int64_t, int64_t> qb = bias[0] >= 0 ? NewAux(q) : none;
    const std::pair<int64_t, int64_t> kb = bias[1] >= 0 && !kb_on_x ? NewAux(q) : kb_x;
    const std::pair<int64_t, int64_t> vb = bias[2] >= 0 ? NewAux(q) : none;
    const Units v = WholeGroup(NewGroup(D_kv));
    const Units key_units = KeyUnits(q, D_kv, hd, rep);
    std::vector<EdgeBlock>& e = r_.edges[i];
    e.push_back(WeightEdges(qkv[0], x, q, kEdgeQuery, false));
    e.push_back(Tie(heads, q, hd, kEdgeHead));
    if (bias[0] >= 0) e.push_back(AuxEdges(qb, q, kEdgeBias, bias[0]));
    e.push_back(WeightEdges(qkv[1], x, key_units, kEdgeKey, true));
    if (bias[1] >= 0) e.push_back(AuxEdges(kb, kb_on_x ? x : key_units, kEdgeBias, bias[1]));
    e.push_back(WeightEdges(qkv[2], x, v, kEdgeValue, false));
    for (int64_t h = 0; h < op.heads; ++h) {  // each value unit to every head that reads it
      e.push_back(Tie(SliceUnits(heads, h, 1), SliceUnits(v, h / rep * hd, hd), hd, kEdgeHead));
    }
    if (bias[2] >= 0) e.push_back(AuxEdges(vb, v, kEdgeBias, bias[2]));
    if (rep == 1) {
      named_[op.output] = v;
      return absl::OkStatus();
    }
    const Units outputs = WholeGroup(NewGroup(D));  // value head h / rep, repeated for head h
    for (int64_t h = 0; h < op.heads; ++h) {
      e.push_back(
          Tie(SliceUnits(v, h / rep * hd, hd), SliceUnits(outputs, h * hd, hd), 0, kEdgeResidual));
    }
    named_[op.output] = outputs;
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

// Node ids: each group's prelude (rows, auxiliary nodes), then its units, groups in creation
// order. Returns N.
int64_t AllocateNodes(std::vector<UnitGroup>* groups) {
  int64_t next = 0;
  for (UnitGroup& g : *groups) {
    g.first_node = next;
    next += g.rows + g.aux + g.units;
  }
  return next;
}

std::vector<int64_t> NodesOf(const Units& units, const std::vector<UnitGroup>& groups) {
  std::vector<int64_t> nodes;
  nodes.reserve(CountUnits(units));
  for (const Segment& s : units) {
    const UnitGroup& g = groups[s.group];
    const int64_t first = g.first_node + g.rows + g.aux + s.begin;
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

void EmitWeight(const EdgeBlock& b, const std::vector<UnitGroup>& groups, EdgeList* edges) {
  const std::vector<int64_t> in = NodesOf(b.in, groups);
  const std::vector<int64_t> out = NodesOf(b.out, groups);
  for (size_t i = 0; i < in.size(); ++i) {
    for (size_t o = 0; o < out.size(); ++o) {
      const int64_t row = b.first_row + static_cast<int64_t>(o) * b.stride_out +
                          static_cast<int64_t>(i) * b.stride_in;
      const int64_t e = b.reversed ? edges->Add(out[o], in[i], b.type, row)
                                   : edges->Add(in[i], out[o], b.type, row);
      for (int64_t f = 1; f < b.slots; ++f) edges->SetSlot(e, f, row + f);
    }
  }
}

void EmitBlock(const EdgeBlock& b, const std::vector<UnitGroup>& groups, EdgeList* edges) {
  if (b.kind == EdgeBlock::Kind::kWeight) return EmitWeight(b, groups, edges);
  const std::vector<int64_t> out = NodesOf(b.out, groups);
  const int64_t n = static_cast<int64_t>(out.size());
  if (b.kind == EdgeBlock::Kind::kAux) {
    const int64_t aux = groups[b.group].first_node + groups[b.group].rows + b.index;
    for (int64_t j = 0; j < n; ++j) edges->Add(aux, out[j], b.type, b.first_row + j);
    return;
  }
  if (b.kind == EdgeBlock::Kind::kRows) {
    const int64_t first = groups[b.group].first_node + b.index;
    for (int64_t r = 0; r < b.count; ++r) {
      for (int64_t j = 0; j < n; ++j)
        edges->Add(first + r, out[j], b.type, b.first_row + r * n + j);
    }
    return;
  }
  const std::vector<int64_t> in = NodesOf(b.in, groups);
  if (b.positions == 0) {
    for (size_t k = 0; k < in.size(); ++k) edges->Add(in[k], out[k], b.type, kSlotOne);
    return;
  }
  for (size_t c = 0; c < in.size(); ++c) {
    for (int64_t p = 0; p < b.positions; ++p) {
      edges->Add(in[c], out[c * b.positions + p], b.type, kSlotOne);
    }
  }
}

// ---- DescribeGenericChain ----

std::string ModuleOf(const std::string& param_name) {
  const size_t dot = param_name.rfind('.');
  return dot == std::string::npos ? std::string() : param_name.substr(0, dot);
}

// The generic chain, op by op: dense per weight, its bias, norm ops for the other 1-D params.
class ChainDescriber {
 public:
  explicit ChainDescriber(const std::vector<ParamSpec>& params) : params_(params) {
    d_.version = 1;  // the lowest version that says it
  }

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
  for (size_t i = 0; i < d.ops.size(); ++i) {
    for (const EdgeBlock& b : r.residuals[i]) EmitBlock(b, r.groups, &edges);
    for (const EdgeBlock& b : r.edges[i]) EmitBlock(b, r.groups, &edges);
  }
  NeuralGraph g = edges.Finish(num_nodes, TotalParams(params));
  for (const TokenRows& t : r.token_rows) {
    const int64_t first = r.groups[t.group].first_node + t.index;
    for (int64_t row = 0; row < t.count; ++row) g.pos_w[first + row] = row + 1;
  }
  NINO_RETURN_IF_ERROR(g.Validate());
  return g;
}

absl::StatusOr<DescribedGraphSize> CountGraphFromDescription(const std::vector<ParamSpec>& params,
                                                             const ModelDescription& d) {
  NINO_ASSIGN_OR_RETURN(ResolvedDescription r, Resolver(params, d).Run());
  DescribedGraphSize size;
  size.nodes = AllocateNodes(&r.groups);
  size.feat_size = r.feat_size;
  for (size_t i = 0; i < d.ops.size(); ++i) {
    for (const EdgeBlock& b : r.residuals[i]) size.edges += BlockEdges(b);
    for (const EdgeBlock& b : r.edges[i]) size.edges += BlockEdges(b);
  }
  size.edges += size.nodes;
  return size;
}

absl::StatusOr<ModelDescription> DescribeGenericChain(const std::vector<ParamSpec>& params) {
  return ChainDescriber(params).Run();
}

}  // namespace nino
