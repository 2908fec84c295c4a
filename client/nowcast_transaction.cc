#include "client/nowcast_transaction.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status/status_macros.h"
#include "common/status/torch_guard.h"

namespace nino::client {

DataParallelNowcaster::DataParallelNowcaster(std::shared_ptr<Nowcaster> inner,
                                             Collectives* collectives, int64_t num_params)
    : inner_(std::move(inner)), collectives_(collectives), num_params_(num_params) {}

bool DataParallelNowcaster::is_root() const {
  return collectives_ == nullptr || collectives_->rank() == 0;
}

absl::StatusOr<torch::Tensor> DataParallelNowcaster::PredictAndValidate(const torch::Tensor& states,
                                                                        int k) {
  if (!inner_) return absl::FailedPreconditionError("rank 0 has no nowcaster");
  absl::StatusOr<torch::Tensor> r = GuardTorch(
      "the nowcaster threw", [&] { return inner_->Nowcast(states, k); },
      absl::StatusCode::kInternal);
  NINO_RETURN_IF_ERROR(r);
  if (!r->defined() || r->numel() != num_params_) {
    return absl::InternalError(absl::StrCat("the prediction has ", r->defined() ? r->numel() : 0,
                                            " values, the model ", num_params_));
  }
  if (!r->is_floating_point())
    return absl::InternalError("the prediction is not a floating-point tensor");
  torch::Tensor flat = r->detach().reshape({-1}).to(torch::kCPU, torch::kFloat32).contiguous();
  NINO_RETURN_IF_ERROR(CheckReceived(flat));
  return flat;
}

absl::Status DataParallelNowcaster::CheckReceived(const torch::Tensor& flat) const {
  if (!flat.defined() || flat.numel() != num_params_ || flat.scalar_type() != torch::kFloat32) {
    return absl::InternalError(absl::StrCat("the prediction has ",
                                            flat.defined() ? flat.numel() : 0,
                                            " float32 values, the model ", num_params_));
  }
  if (!torch::isfinite(flat).all().item<bool>()) {
    return absl::InternalError("the prediction holds NaN or Inf values");
  }
  return absl::OkStatus();
}

absl::StatusOr<torch::Tensor> DataParallelNowcaster::Nowcast(const torch::Tensor& states, int k) {
  absl::StatusOr<torch::Tensor> local = absl::AbortedError("the nowcast was rejected on rank 0");
  if (is_root()) local = PredictAndValidate(states, k);
  if (collectives_ == nullptr || collectives_->world_size() == 1) return local;

  // Round 1: everyone learns rank 0's verdict; a failure there makes all fall back alike.
  NINO_ASSIGN_OR_RETURN(const double root_ok,
                        collectives_->AllreduceMin(is_root() ? (local.ok() ? 1.0 : 0.0) : 1.0));
  if (root_ok < 1)
    return is_root() ? local.status() : absl::AbortedError("the nowcast was rejected on rank 0");
  torch::Tensor pred = is_root() ? *local : torch::empty({num_params_}, torch::kFloat32);
  // Round 2: every rank checks what it received (a broadcast can fail, or deliver damaged values,
  // on one rank only) and all agree again: the prediction is applied on every rank or on none.
  // A rank whose broadcast failed still takes part, so that no rank waits for it.
  absl::Status received = collectives_->Broadcast(pred, 0);
  if (received.ok()) received = CheckReceived(pred);
  NINO_ASSIGN_OR_RETURN(const double all_ok, collectives_->AllreduceMin(received.ok() ? 1.0 : 0.0));
  if (all_ok < 1) {
    if (!received.ok()) {
      return absl::Status(received.code(),
                          absl::StrCat("rank ", collectives_->rank(), ": ", received.message()));
    }
    return absl::AbortedError("the prediction failed its check on another rank");
  }
  return pred;
}

}  // namespace nino::client
