#include "client/nowcast_transaction.h"

#include <exception>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

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
  absl::StatusOr<torch::Tensor> r = absl::UnknownError("not run");
  try {
    r = inner_->Nowcast(states, k);
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("the nowcaster threw: ", e.what()));
  }
  if (!r.ok()) return r.status();
  if (!r->defined() || r->numel() != num_params_) {
    return absl::InternalError(absl::StrCat("the prediction has ", r->defined() ? r->numel() : 0,
                                            " values, the model ", num_params_));
  }
  if (!r->is_floating_point())
    return absl::InternalError("the prediction is not a floating-point tensor");
  torch::Tensor flat = r->detach().reshape({-1}).to(torch::kCPU, torch::kFloat32).contiguous();
  if (!torch::isfinite(flat).all().item<bool>()) {
    return absl::InternalError("the prediction holds NaN or Inf values");
  }
  return flat;
}

absl::StatusOr<torch::Tensor> DataParallelNowcaster::Nowcast(const torch::Tensor& states, int k) {
  absl::StatusOr<torch::Tensor> local = absl::AbortedError("the nowcast was rejected on rank 0");
  if (is_root()) local = PredictAndValidate(states, k);
  if (collectives_ == nullptr || collectives_->world_size() == 1) return local;

  // Everyone learns rank 0's verdict; a failure on any rank makes all fall back alike.
  auto agreed = collectives_->AllreduceMin(is_root() ? (local.ok() ? 1.0 : 0.0) : 1.0);
  if (!agreed.ok()) return agreed.status();
  if (*agreed < 1)
    return is_root() ? local.status() : absl::AbortedError("the nowcast was rejected on rank 0");
  torch::Tensor pred = is_root() ? *local : torch::empty({num_params_}, torch::kFloat32);
  if (absl::Status s = collectives_->Broadcast(pred, 0); !s.ok()) return s;
  return pred;
}

}  // namespace nino::client
