#include "common/nino/nino_optimizer.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "common/nino/schedule.h"
#include "common/status/torch_guard.h"

namespace nino {

NinoOptimizer::NinoOptimizer(torch::optim::Optimizer* base, std::vector<torch::Tensor> params,
                             std::shared_ptr<Nowcaster> nowcaster, NinoOptimizerOptions options)
    : base_(base), params_(std::move(params)), nowcaster_(std::move(nowcaster)), options_(options) {
  TORCH_CHECK(options_.ctx >= 1 && options_.period >= options_.ctx,
              "NiNo needs period >= ctx >= 1, got period ", options_.period, ", ctx ",
              options_.ctx);
  ctx_interval_ = options_.period / options_.ctx;
  schedule_ = HorizonSchedule(options_.max_train_steps, options_.period, options_.k_decay,
                              options_.seq_len);
  for (const auto& p : params_) num_params_ += p.numel();
}

bool NinoOptimizer::need_grads() const {
  if (!nowcaster_) return true;
  const bool records = (step_idx_ + 1) % ctx_interval_ == 0;
  return !(records && static_cast<int64_t>(history_.size()) + 1 >= options_.ctx);
}

torch::Tensor NinoOptimizer::FlatParams() const {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> flat;
  flat.reserve(params_.size());
  for (const auto& p : params_)
    flat.push_back(p.detach().reshape({-1}).to(torch::kCPU, torch::kFloat32));
  return torch::cat(flat);
}

torch::Tensor NinoOptimizer::ContextRow(int64_t i) {
  if (!context_.defined()) context_ = torch::empty({options_.ctx, num_params_}, torch::kFloat32);
  return context_[i];
}

torch::Tensor NinoOptimizer::RecordRow(int64_t i) {
  torch::NoGradGuard no_grad;
  torch::Tensor row = ContextRow(i);
  std::vector<torch::Tensor> flat;
  flat.reserve(params_.size());
  for (const auto& p : params_)
    flat.push_back(p.detach().reshape({-1}).to(torch::kCPU, torch::kFloat32));
  torch::cat_out(row, flat);
  return row;
}

absl::Status NinoOptimizer::SetFlatParams(const torch::Tensor& flat) {
  if (!flat.defined() || flat.dim() != 1 || flat.numel() != num_params_) {
    return absl::InvalidArgumentError(
        absl::StrCat("expected a flat vector of ", num_params_, " parameters"));
  }
  torch::NoGradGuard no_grad;
  int64_t off = 0;
  for (auto& p : params_) {
    const int64_t n = p.numel();
    p.copy_(flat.narrow(0, off, n).view(p.sizes()).to(p.device(), p.scalar_type()));
    off += n;
  }
  return absl::OkStatus();
}

absl::Status NinoOptimizer::Restore(int64_t step_idx, std::vector<torch::Tensor> history) {
  if (step_idx < 0) return absl::InvalidArgumentError("negative step index");
  if (static_cast<int64_t>(history.size()) >= options_.ctx) {
    return absl::InvalidArgumentError(absl::StrCat(
        "history holds ", history.size(), " states; at most ", options_.ctx - 1, " expected"));
  }
  for (const auto& h : history) {
    if (!h.defined() || h.numel() != num_params_) {
      return absl::InvalidArgumentError(
          absl::StrCat("a history state does not have ", num_params_, " parameters"));
    }
  }
  step_idx_ = step_idx;
  history_.clear();
  for (auto& h : history) {
    torch::Tensor row = ContextRow(static_cast<int64_t>(history_.size()));
    row.copy_(h.reshape({-1}));
    history_.push_back(row);
  }
  return absl::OkStatus();
}

NinoStepOutcome NinoOptimizer::step() {
  NinoStepOutcome out;
  out.step_idx = step_idx_;
  if (nowcaster_ && (step_idx_ + 1) % ctx_interval_ == 0) {
    history_.push_back(RecordRow(static_cast<int64_t>(history_.size())));
    out.state_recorded = true;
  }
  if (nowcaster_ && static_cast<int64_t>(history_.size()) == options_.ctx) {
    out.nino_step = true;
    out.k = HorizonAt(schedule_, step_idx_, options_.period);
    const auto t0 = std::chrono::steady_clock::now();
    absl::StatusOr<torch::Tensor> pred = absl::UnknownError("not run");
    try {
      pred = nowcaster_->Nowcast(context_.narrow(0, 0, options_.ctx), out.k);
    } catch (...) {
      pred = StatusFromCurrentException("nowcaster threw", absl::StatusCode::kInternal);
    }
    out.nowcast_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    history_.clear();
    if (pred.ok()) {
      if (!torch::isfinite(*pred).all().item<bool>()) {
        out.status = absl::InternalError("the prediction holds NaN or Inf values");
      } else {
        out.status = SetFlatParams(*pred);
      }
    } else {
      out.status = pred.status();
    }
    out.applied = out.status.ok();
    if (!out.applied) base_->step();  // fall back to a normal step; the run goes on
  } else {
    base_->step();
  }
  ++step_idx_;
  return out;
}

}  // namespace nino
