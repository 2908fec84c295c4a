#include "common/nino/nowcast_engine.h"

#include <chrono>
#include <cmath>
#include <cstring>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/status/status_macros.h"
#include "common/status/torch_guard.h"

namespace nino {
namespace {

double SecondsSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

absl::StatusOr<std::vector<ParamGroup>> SplitIntoBlocks(const std::vector<ParamSpec>& params,
                                                        const GraphSpec& spec) {
  if (spec.kind != GraphSpec::Kind::kGpt2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "subgraph mode splits GPT-2 layouts (blocks 'transformer.h.<i>.' or 'h.<i>.'); this job's "
        "graph kind is ",
        GraphKindName(spec.kind),
        " (the official per-block graphs of other kinds are not specified in NINO_SPEC.md)"));
  }
  // The block index of a name, or -1; `prefix` receives what precedes "<i>.", `digits` the
  // length of "<i>".
  auto block_of = [](const std::string& name, std::string* prefix, size_t* digits) -> int64_t {
    for (const char* p : {"transformer.h.", "h."}) {
      if (!absl::StartsWith(name, p)) continue;
      const size_t start = std::strlen(p);
      const size_t dot = name.find('.', start);
      int64_t b = -1;
      if (dot == std::string::npos || !absl::SimpleAtoi(name.substr(start, dot - start), &b)) {
        return -1;
      }
      *prefix = p;
      *digits = dot - start;
      return b;
    }
    return -1;
  };
  std::vector<int64_t> block(params.size(), -1);
  std::vector<std::string> prefix(params.size());
  std::vector<size_t> digits(params.size(), 0);
  int64_t last = -1;
  for (size_t i = 0; i < params.size(); ++i) {
    block[i] = block_of(params[i].name, &prefix[i], &digits[i]);
    if (block[i] >= 0) {
      if (block[i] < last || block[i] > last + 1) {
        return absl::InvalidArgumentError(
            absl::StrCat("subgraph mode: parameter '", params[i].name, "' of block ", block[i],
                         " follows block ", last, "; blocks must come in order 0, 1, 2, ..."));
      }
      last = block[i];
    }
  }
  if (last < 0) {
    return absl::InvalidArgumentError(
        "subgraph mode: no transformer blocks ('transformer.h.<i>.' or 'h.<i>.') in the layout");
  }
  // Parameters before block 0 join group 0, those after the last block the last group.
  std::vector<ParamGroup> groups(static_cast<size_t>(last + 1));
  int64_t current = 0;
  for (size_t i = 0; i < params.size(); ++i) {
    if (block[i] >= 0) current = block[i];
    ParamGroup& g = groups[static_cast<size_t>(current)];
    ParamSpec p = params[i];
    if (g.params.empty()) g.row_begin = p.offset;
    if (p.offset != g.row_begin + g.rows) {
      return absl::InvalidArgumentError(
          absl::StrCat("subgraph mode: parameter '", p.name, "' is not contiguous with its group"));
    }
    if (block[i] >= 0) {
      p.name = absl::StrCat(prefix[i], "0", p.name.substr(prefix[i].size() + digits[i]));
    }
    p.offset -= g.row_begin;
    g.rows += p.numel;
    g.params.push_back(std::move(p));
  }
  return groups;
}

absl::Status ApplyTuning(const NowcastTuning& tuning, const NiNoConfig& config,
                         NowcastEngineOptions* options) {
  if (!(tuning.edge_sample_ratio >= 0 && tuning.edge_sample_ratio <= 1)) {
    return absl::InvalidArgumentError(absl::StrCat("edge_sample_ratio: ", tuning.edge_sample_ratio,
                                                   ", expected 0 (all edges) to 1"));
  }
  if (tuning.chunk_bytes < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("chunk_bytes: ", tuning.chunk_bytes, ", expected >= 0 (0 = default)"));
  }
  options->forward.edge_sample_ratio = tuning.edge_sample_ratio;
  options->forward.edge_sample_seed = tuning.edge_sample_seed;
  options->forward.edge_state_dtype = tuning.bf16_edge_state ? torch::kBFloat16 : torch::kFloat32;
  options->forward.matmul_dtype = tuning.bf16_matmul ? torch::kBFloat16 : torch::kFloat32;
  options->forward.chunk_rows =
      tuning.chunk_bytes > 0 ? ChunkRowsForBudget(tuning.chunk_bytes, config.hid, config.gnn) : 0;
  options->subgraph = tuning.subgraph;
  return absl::OkStatus();
}

absl::Status NowcastEngine::BuildPart(std::vector<ParamSpec> params, const GraphSpec& spec,
                                      Part* part) {
  auto t0 = std::chrono::steady_clock::now();
  NINO_ASSIGN_OR_RETURN(part->graph, BuildGraph(params, spec));
  const NiNoConfig& cfg = model_->config();
  const NeuralGraph& g = part->graph;
  if (cfg.gnn && g.feat_size > cfg.max_feat_size) {
    return absl::InvalidArgumentError(absl::StrCat("the model has conv kernels with ", g.feat_size,
                                                   " weights per edge; this GNN NiNo takes at "
                                                   "most ",
                                                   cfg.max_feat_size,
                                                   " (3x3); use a WNN+ checkpoint (nino_mlp.pt)"));
  }
  const torch::Device dev = options_.device;
  part->edge_index = g.EdgeIndexTensor().to(dev);
  part->edge_type = g.EdgeTypeTensor().to(dev);
  part->pos_w = g.PosWTensor().to(dev);
  // Gather/scatter indices: slot value r >= 0 -> row r; kSlotZero -> P; kSlotOne -> P+1;
  // kSlotTwo -> P+2 of the padded scaled-state matrix.
  const int64_t P = g.num_params;
  torch::Tensor pi = g.ParamIndexTensor().view({-1});
  torch::Tensor gather = pi.clone();
  gather.masked_fill_(pi == kSlotZero, P);
  gather.masked_fill_(pi == kSlotOne, P + 1);
  gather.masked_fill_(pi == kSlotTwo, P + 2);
  part->gather_index = gather.to(dev);
  torch::Tensor slots = torch::nonzero(pi >= 0).view({-1});
  part->scatter_slots = slots.to(dev);
  part->scatter_rows = pi.index_select(0, slots).to(dev);
  graph_build_seconds_ += SecondsSince(t0);
  if (cfg.gnn && cfg.lpe > 0 && options_.compute_lpe) {
    auto t1 = std::chrono::steady_clock::now();
    LpeOptions lo = options_.lpe;
    lo.dim = cfg.lpe;
    NINO_ASSIGN_OR_RETURN(LpeResult lpe, ComputeLaplacianPE(g, lo));
    part->pos = lpe.pos.to(dev);
    lpe_seconds_ += SecondsSince(t1);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<NowcastEngine>> NowcastEngine::Create(
    std::shared_ptr<const NiNoModel> model, std::vector<ParamSpec> params, GraphSpec spec,
    NowcastEngineOptions options) {
  if (!model) return absl::InvalidArgumentError("no NiNo model given");
  if (options.forward.edge_sample_ratio < 0 || !std::isfinite(options.forward.edge_sample_ratio)) {
    return absl::InvalidArgumentError(
        absl::StrCat("edge_sample_ratio must be >= 0, got ", options.forward.edge_sample_ratio));
  }
  if (options.forward.edge_state_dtype != torch::kFloat32 &&
      options.forward.edge_state_dtype != torch::kBFloat16) {
    return absl::InvalidArgumentError("the edge state is stored as float32 or bfloat16");
  }
  if (options.forward.matmul_dtype != torch::kFloat32 &&
      options.forward.matmul_dtype != torch::kBFloat16) {
    return absl::InvalidArgumentError("the per-edge products run in float32 or bfloat16");
  }
  std::unique_ptr<NowcastEngine> e(new NowcastEngine());
  e->model_ = std::move(model);
  e->options_ = options;
  if (spec.kind == GraphSpec::Kind::kAuto) {
    NINO_ASSIGN_OR_RETURN(spec, InferGraphSpec(params, spec.num_heads, spec.num_kv_heads));
  }
  if (!options.subgraph) {
    e->parts_.resize(1);
    e->parts_[0].rows = TotalParams(params);
    NINO_RETURN_IF_ERROR(e->BuildPart(params, spec, &e->parts_[0]));
  } else {
    NINO_ASSIGN_OR_RETURN(std::vector<ParamGroup> groups, SplitIntoBlocks(params, spec));
    e->parts_.resize(groups.size());
    for (size_t i = 0; i < groups.size(); ++i) {
      ParamGroup& g = groups[i];
      e->parts_[i].row_begin = g.row_begin;
      e->parts_[i].rows = g.rows;
      absl::Status s = e->BuildPart(std::move(g.params), spec, &e->parts_[i]);
      if (!s.ok()) {
        return absl::Status(s.code(), absl::StrCat("subgraph ", i, ": ", s.message()));
      }
    }
  }
  e->params_ = std::move(params);
  return e;
}

int64_t NowcastEngine::total_nodes() const {
  int64_t n = 0;
  for (const Part& p : parts_) n += p.graph.num_nodes;
  return n;
}

int64_t NowcastEngine::total_edges() const {
  int64_t n = 0;
  for (const Part& p : parts_) n += p.graph.num_edges();
  return n;
}

absl::Status NowcastEngine::SetPositionalEncoding(const torch::Tensor& pos) {
  if (parts_.size() != 1) {
    return absl::FailedPreconditionError("SetPositionalEncoding: the engine has several graphs");
  }
  const int64_t lpe = model_->config().lpe;
  const int64_t N = parts_[0].graph.num_nodes;
  if (pos.dim() != 2 || pos.size(0) != N || pos.size(1) != lpe) {
    return absl::InvalidArgumentError(absl::StrCat("positional encoding must be [", N, ", ", lpe,
                                                   "], got ", c10::str(pos.sizes())));
  }
  parts_[0].pos = pos.to(torch::kFloat32).to(options_.device).contiguous();
  return absl::OkStatus();
}

absl::StatusOr<torch::Tensor> NowcastEngine::Nowcast(const torch::Tensor& states, int k,
                                                     NowcastDetails* details) const {
  const NiNoConfig& cfg = model_->config();
  if (cfg.gnn && cfg.lpe > 0 && !parts_.front().pos.defined()) {
    return absl::FailedPreconditionError("no positional encoding: call SetPositionalEncoding()");
  }
  const int64_t P = TotalParams(params_), C = cfg.ctx;
  if (!states.defined() || states.dim() != 2 || states.size(0) != C || states.size(1) != P) {
    return absl::InvalidArgumentError(absl::StrCat(
        "states must be [", C, ", ", P, "] (", C, " snapshots of ", P, " parameters), got ",
        states.defined() ? c10::str(states.sizes()) : std::string("undefined")));
  }
  if (k < 1 || k > cfg.seq_len) {
    return absl::InvalidArgumentError(
        absl::StrCat("horizon k must be in 1..", cfg.seq_len, ", got ", k));
  }
  torch::NoGradGuard no_grad;
  try {
    torch::Tensor s = states.to(options_.device, torch::kFloat32);
    if (!torch::isfinite(s).all().item<bool>()) {
      return absl::InvalidArgumentError("the context states contain NaN or Inf values");
    }
    ScaledStates scaled = ScaleStates(s.cpu(), params_);
    torch::Tensor sc = scaled.scaled.to(options_.device);  // [P, C]
    auto topt = sc.options();
    const torch::Tensor constants = torch::cat(
        {torch::zeros({1, C}, topt), torch::ones({1, C}, topt), torch::full({1, C}, 2.0, topt)});
    torch::Tensor y_flat = sc.select(1, C - 1).clone();  // rows without a slot keep their value
    for (size_t i = 0; i < parts_.size(); ++i) {
      const Part& part = parts_[i];
      const int64_t E = part.graph.num_edges(), Fs = part.graph.feat_size;
      torch::Tensor padded = torch::cat({sc.narrow(0, part.row_begin, part.rows), constants});
      torch::Tensor x = padded.index_select(0, part.gather_index).view({E, Fs * C});
      padded = torch::Tensor();
      NiNoTrace* trace = details && i == 0 ? &details->trace : nullptr;
      torch::Tensor y = model_->Forward(x, part.edge_type, part.edge_index, part.pos, part.pos_w, k,
                                        trace, options_.forward);  // [E, F]
      y_flat.narrow(0, part.row_begin, part.rows)
          .index_put_({part.scatter_rows}, y.reshape({-1}).index_select(0, part.scatter_slots));
      if (details && parts_.size() == 1) {
        details->edge_attr = x.cpu();
        details->pred_edges = y.cpu();
      }
    }
    if (!torch::isfinite(y_flat).all().item<bool>()) {
      return absl::InternalError("NaNs in the predicted parameters");
    }
    torch::Tensor out = UnscaleFlat(y_flat.cpu(), scaled, params_);
    if (details) {
      details->scaled = scaled;
      details->pred_scaled_flat = y_flat.cpu();
    }
    return out;
  } catch (...) {
    // Out of memory is RESOURCE_EXHAUSTED (the caller may retry with smaller chunks).
    return StatusFromCurrentException("NiNo forward failed", absl::StatusCode::kInternal);
  }
}

}  // namespace nino
