#include "metatrain/layout_graph.h"

#include <utility>

#include "common/nino/laplacian_pe.h"
#include "common/nino/scaling.h"

namespace nino::metatrain {

absl::StatusOr<std::shared_ptr<const LayoutGraph>> LayoutGraph::Create(
    std::vector<ParamSpec> params, const GraphSpec& spec, int64_t lpe_dim, bool global_scale) {
  auto graph = BuildGraph(params, spec);
  if (!graph.ok()) return graph.status();
  std::shared_ptr<LayoutGraph> g(new LayoutGraph());
  g->params_ = std::move(params);
  g->graph_ = std::move(*graph);
  if (lpe_dim > 0) {
    LpeOptions opts;
    opts.dim = lpe_dim;
    auto lpe = ComputeLaplacianPE(g->graph_, opts);
    if (!lpe.ok()) return lpe.status();
    g->pos_ = lpe->pos;
  }
  g->edge_index_ = g->graph_.EdgeIndexTensor();
  g->edge_type_ = g->graph_.EdgeTypeTensor();
  g->pos_w_ = g->graph_.PosWTensor();
  const int64_t P = g->graph_.num_params;
  torch::Tensor pi = g->graph_.ParamIndexTensor().view({-1});
  g->slot_valid_ = (pi >= 0).to(torch::kFloat32);
  torch::Tensor gather = pi.clone();
  gather.masked_fill_(pi == kSlotZero, P);
  gather.masked_fill_(pi == kSlotOne, P + 1);
  gather.masked_fill_(pi == kSlotTwo, P + 2);
  g->gather_ = gather;
  g->global_scale_ = global_scale;
  if (global_scale) {
    ParamSpec all;
    all.name = "all";
    all.shape = {P};
    all.numel = P;
    g->scale_params_ = {all};
  } else {
    g->scale_params_ = g->params_;
  }
  g->row_tensor_ = torch::empty({P}, torch::kInt64);
  for (size_t t = 0; t < g->scale_params_.size(); ++t) {
    const ParamSpec& p = g->scale_params_[t];
    g->row_tensor_.narrow(0, p.offset, p.numel).fill_(static_cast<int64_t>(t));
  }
  return std::shared_ptr<const LayoutGraph>(std::move(g));
}

GraphSample LayoutGraph::MakeSample(const torch::Tensor& inputs, const torch::Tensor& targets,
                                    int64_t seq_len, const torch::Tensor& pos_sign,
                                    const torch::Tensor& pos_w) const {
  torch::NoGradGuard no_grad;
  const int64_t P = graph_.num_params, E = graph_.num_edges(), Fs = graph_.feat_size;
  const int64_t C = inputs.size(0), K = targets.size(0);
  TORCH_CHECK(inputs.dim() == 2 && inputs.size(1) == P, "inputs must be [ctx, ", P, "]");
  TORCH_CHECK(targets.dim() == 2 && targets.size(1) == P && K <= seq_len,
              "targets must be [K <= ", seq_len, ", ", P, "]");
  const ScaledStates s = ScaleStates(inputs, scale_params_);  // scaled [P, C]
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat32);
  torch::Tensor consts = torch::tensor({0.0f, 1.0f, 2.0f}, f32).unsqueeze(1).expand({3, C});
  GraphSample out;
  out.x = torch::cat({s.scaled, consts}, 0).index_select(0, gather_).view({E, Fs * C});
  // Targets in the inputs' scale: (y - mu_t) / (sigma_t + eps), rows [P, K].
  const torch::Tensor mu = s.mu.index_select(0, row_tensor_).unsqueeze(1);
  const torch::Tensor sd = s.sigma.index_select(0, row_tensor_).unsqueeze(1) + kScaleEps;
  torch::Tensor ys = (targets.to(torch::kFloat32).t() - mu) / sd;
  torch::Tensor yrows = torch::zeros({P + 3, seq_len}, f32);
  yrows.narrow(0, 0, P).narrow(1, 0, K).copy_(ys);
  out.y = yrows.index_select(0, gather_).view({E, Fs, seq_len});
  torch::Tensor horizon = (torch::arange(seq_len) < K).to(torch::kFloat32);
  out.y_mask = (slot_valid_.unsqueeze(1) * horizon.unsqueeze(0)).view({E, Fs, seq_len});
  out.edge_type = edge_type_;
  out.edge_index = edge_index_;
  if (pos_.defined()) out.pos = pos_sign.defined() ? pos_ * pos_sign.unsqueeze(0) : pos_;
  TORCH_CHECK(!pos_w.defined() || pos_w.numel() == graph_.num_nodes, "pos_w must be [",
              graph_.num_nodes, "]");
  out.pos_w = pos_w.defined() ? pos_w : pos_w_;
  out.num_nodes = graph_.num_nodes;
  return out;
}

}  // namespace nino::metatrain
