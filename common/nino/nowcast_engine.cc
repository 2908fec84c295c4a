#include "common/nino/nowcast_engine.h"

#include <chrono>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace nino {
namespace {

double SecondsSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

absl::StatusOr<std::unique_ptr<NowcastEngine>> NowcastEngine::Create(
    std::shared_ptr<const NiNoModel> model, std::vector<ParamSpec> params, GraphSpec spec,
    NowcastEngineOptions options) {
  if (!model) return absl::InvalidArgumentError("no NiNo model given");
  auto t0 = std::chrono::steady_clock::now();
  auto graph = BuildGraph(params, spec);
  if (!graph.ok()) return graph.status();
  std::unique_ptr<NowcastEngine> e(new NowcastEngine());
  e->graph_build_seconds_ = SecondsSince(t0);
  e->model_ = std::move(model);
  e->params_ = std::move(params);
  e->graph_ = std::move(*graph);
  e->options_ = options;
  const NiNoConfig& cfg = e->model_->config();
  const NeuralGraph& g = e->graph_;
  if (cfg.gnn && g.feat_size > cfg.max_feat_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the model has conv kernels with ", g.feat_size, " weights per edge; this GNN NiNo takes at "
        "most ", cfg.max_feat_size, " (3x3); use a WNN+ checkpoint (nino_mlp.pt)"));
  }
  const torch::Device dev = options.device;
  e->edge_index_ = g.EdgeIndexTensor().to(dev);
  e->edge_type_ = g.EdgeTypeTensor().to(dev);
  e->pos_w_ = g.PosWTensor().to(dev);
  // Gather/scatter indices: slot value r >= 0 -> row r; kSlotZero -> P; kSlotOne -> P+1;
  // kSlotTwo -> P+2 of the padded scaled-state matrix.
  const int64_t P = g.num_params;
  torch::Tensor pi = g.ParamIndexTensor().view({-1});
  torch::Tensor gather = pi.clone();
  gather.masked_fill_(pi == kSlotZero, P);
  gather.masked_fill_(pi == kSlotOne, P + 1);
  gather.masked_fill_(pi == kSlotTwo, P + 2);
  e->gather_index_ = gather.to(dev);
  torch::Tensor slots = torch::nonzero(pi >= 0).view({-1});
  e->scatter_slots_ = slots.to(dev);
  e->scatter_rows_ = pi.index_select(0, slots).to(dev);
  if (cfg.gnn && cfg.lpe > 0 && options.compute_lpe) {
    auto t1 = std::chrono::steady_clock::now();
    LpeOptions lo = options.lpe;
    lo.dim = cfg.lpe;
    auto lpe = ComputeLaplacianPE(g, lo);
    if (!lpe.ok()) return lpe.status();
    e->pos_ = lpe->pos.to(dev);
    e->lpe_seconds_ = SecondsSince(t1);
  }
  return e;
}

absl::Status NowcastEngine::SetPositionalEncoding(const torch::Tensor& pos) {
  const int64_t lpe = model_->config().lpe;
  if (pos.dim() != 2 || pos.size(0) != graph_.num_nodes || pos.size(1) != lpe) {
    return absl::InvalidArgumentError(absl::StrCat("positional encoding must be [", graph_.num_nodes,
                                                   ", ", lpe, "], got ", c10::str(pos.sizes())));
  }
  pos_ = pos.to(torch::kFloat32).to(options_.device).contiguous();
  return absl::OkStatus();
}

absl::StatusOr<torch::Tensor> NowcastEngine::Nowcast(const torch::Tensor& states, int k,
                                                     NowcastDetails* details) const {
  const NiNoConfig& cfg = model_->config();
  if (cfg.gnn && cfg.lpe > 0 && !pos_.defined()) {
    return absl::FailedPreconditionError("no positional encoding: call SetPositionalEncoding()");
  }
  const int64_t P = graph_.num_params, C = cfg.ctx, Fs = graph_.feat_size, E = graph_.num_edges();
  if (!states.defined() || states.dim() != 2 || states.size(0) != C || states.size(1) != P) {
    return absl::InvalidArgumentError(absl::StrCat(
        "states must be [", C, ", ", P, "] (", C, " snapshots of ", P, " parameters), got ",
        states.defined() ? c10::str(states.sizes()) : std::string("undefined")));
  }
  if (k < 1 || k > cfg.seq_len) {
    return absl::InvalidArgumentError(absl::StrCat("horizon k must be in 1..", cfg.seq_len, ", got ", k));
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
    torch::Tensor padded = torch::cat({sc, torch::zeros({1, C}, topt), torch::ones({1, C}, topt),
                                       torch::full({1, C}, 2.0, topt)});
    torch::Tensor x = padded.index_select(0, gather_index_).view({E, Fs * C});
    torch::Tensor y = model_->Forward(x, edge_type_, edge_index_, pos_, pos_w_, k,
                                      details ? &details->trace : nullptr);  // [E, F]
    torch::Tensor y_flat = sc.select(1, C - 1).clone();  // rows without a slot keep their value
    y_flat.index_put_({scatter_rows_}, y.reshape({-1}).index_select(0, scatter_slots_));
    if (!torch::isfinite(y_flat).all().item<bool>()) {
      return absl::InternalError("NaNs in the predicted parameters");
    }
    torch::Tensor out = UnscaleFlat(y_flat.cpu(), scaled, params_);
    if (details) {
      details->scaled = scaled;
      details->edge_attr = x.cpu();
      details->pred_edges = y.cpu();
      details->pred_scaled_flat = y_flat.cpu();
    }
    return out;
  } catch (const c10::Error& err) {
    return absl::InternalError(absl::StrCat("NiNo forward failed: ", err.what_without_backtrace()));
  }
}

}  // namespace nino
